"""The decoded-image cache: the same pixels, the same skipped files, the same training, once decoded."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ilsvrc.analysis import render
from ilsvrc.cli import main
from ilsvrc.training import cache, checkpoint
from ilsvrc.training.cache import DecodedImages
from ilsvrc.training.data import ImageFolderRGB, Skipped
from ilsvrc.training.images import DataError, read_image
from ilsvrc.training.loop import make_config, train
from test_bad_data import build_tree, pattern
from work import HANG_GUARD  # child-process timeouts: a hang guard only, never a time budget


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    root = tmp_path_factory.mktemp("cache-data")
    return root, build_tree(root)


def test_cached_pixels_and_skips_are_those_of_the_files(tree, tmp_path: Path) -> None:
    root, bad = tree
    plain = ImageFolderRGB(root, "train", skip_unreadable=True)
    cached = ImageFolderRGB(root, "train", skip_unreadable=True)
    assert cached.use_cache(tmp_path)
    assert len(cached) == len(plain) > 30
    for i in range(len(plain)):
        (a, la), (b, lb) = plain[i], cached[i]
        assert la == lb
        if isinstance(a, Skipped):
            assert b == a  # same path, same reason
        else:
            assert b.dtype == torch.uint8 and torch.equal(a, b), plain.samples[i][0]
            assert b.stride(0) == 1  # handed out channels-last (the fast layout for resizing)
    skipped = {s.path for s, _ in (cached[i] for i in range(len(cached))) if isinstance(s, Skipped)}
    assert skipped == {str(p) for p in bad["train"]}


def test_a_changed_file_makes_a_new_cache(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "train" / "a"
    folder.mkdir(parents=True)
    path = folder / "x.png"
    Image.fromarray(pattern(10, 12, 1)).save(path)
    first = DecodedImages([path], tmp_path / "cache")
    assert torch.equal(first.get(0), read_image(path))
    Image.fromarray(pattern(10, 12, 2)).save(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = DecodedImages([path], tmp_path / "cache")
    assert second.folder != first.folder
    assert torch.equal(second.get(0), read_image(path))
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]  # no half cache


def test_a_dataset_too_large_is_not_cached(tree, tmp_path: Path) -> None:
    root, _ = tree
    data = ImageFolderRGB(root, "val", skip_unreadable=True)
    assert not data.use_cache(tmp_path, max_bytes=100)
    assert data.decoded is None and not list(tmp_path.iterdir())


def test_training_with_and_without_the_cache_ends_with_the_same_weights(tiny: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split, n in (("train", 12), ("val", 4)):
        for c in ("a", "b"):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                array = pattern(30 + i, 34, i) // (2 if c == "a" else 1)
                Image.fromarray(array.astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    runs = {}
    for cached in (True, False):
        cfg = make_config(tiny, "cpu", data=str(root), out=str(tmp_path / f"run-{cached}"), epochs=2,
                          batch_size=8, image_size=32, workers=0, cache=cached)  # fmt: skip
        runs[cached] = load_file(checkpoint.resolve(train(cfg, progress=False, log=lambda *a: None))
                                / "model.safetensors")  # fmt: skip
    assert all(torch.equal(runs[True][k], runs[False][k]) for k in runs[True])  # same pixels, same steps


def test_a_cache_that_cannot_be_written_leaves_the_run_going(tiny: str, tmp_path: Path, monkeypatch,
                                                             caplog) -> None:  # fmt: skip
    """The cache is a speed-up, not a requirement: an unwritable cache folder is a warning."""
    root = tmp_path / "data"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(pattern(20, 20, i)).save(root / split / c / f"{i}.png")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("ILSVRC_CACHE_DIR", str(blocker / "cache"))
    cfg = make_config(tiny, "cpu", data=str(root), out=str(tmp_path / "run"), epochs=1, batch_size=4,
                      image_size=32, workers=0)  # fmt: skip
    run = train(cfg, progress=False, log=lambda *a: None)
    assert checkpoint.resolve(run)
    assert "Training without it" in caplog.text


def test_a_dataset_larger_than_half_the_free_space_is_not_cached(tree, tmp_path: Path, monkeypatch) -> None:
    root, _ = tree
    monkeypatch.setattr(cache, "free_bytes", lambda folder: 1000)
    data = ImageFolderRGB(root, "val", skip_unreadable=True)
    assert not data.use_cache(tmp_path)
    assert data.decoded is None


# --------------------------------------------------------------------------------------------------
# The cap, least-recently-used eviction, entries in use, and `ilsvrc cache list|clear` (issue 10)

HOLD = """
import sys
from pathlib import Path
from ilsvrc.training.data import ImageFolderRGB
data = ImageFolderRGB(sys.argv[1], "train")
assert data.use_cache(Path(sys.argv[2]))
data[0]
print("holding", flush=True)
sys.stdin.read()
"""


def image_set(parent: Path, name: str, n: int, height: int = 20, width: int = 30, bad: int = 0) -> Path:
    """`parent/name/train/c/` with `n` random PNGs of height x width and `bad` unreadable files."""
    folder = parent / name / "train" / "c"
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(pattern(height, width, i)).save(folder / f"{i}.png")
    for i in range(bad):
        (folder / f"bad{i}.jpg").write_text("not an image")
    return (parent / name).resolve()


def by_source(store: Path) -> dict[str, cache.Entry]:
    return {e.source: e for e in cache.entries(store)}


def backdate(entry: cache.Entry, days: float) -> None:
    when = time.time() - days * 86400
    os.utime(entry.folder / cache.USED, (when, when))


def dead_pid() -> int:
    """The process id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return int(done.stdout)


def set_cap(monkeypatch, n_bytes: int) -> None:
    monkeypatch.setenv("ILSVRC_CACHE_MAX_GB", repr(n_bytes / cache.GIB))
    assert abs(cache.cap_bytes() - n_bytes) <= 1


def test_the_least_recently_used_entry_makes_room_under_the_cap(tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "cache"
    sets = {name: image_set(tmp_path, name, 4) for name in "abc"}
    for name in "ab":
        assert ImageFolderRGB(sets[name], "train").use_cache(store)  # no reference kept: not in use
    before = by_source(store)
    backdate(before[str(sets["b"])], 3)  # b was used last three days ago, a just now
    cap = sum(e.bytes for e in before.values()) + 100  # a and b fit; a third entry as large does not
    set_cap(monkeypatch, cap)
    (store / f".tmp-{'0' * 24}-{dead_pid()}").mkdir()  # a build killed midway: swept before c is built
    c = ImageFolderRGB(sets["c"], "train")
    assert c.use_cache(store)
    after = by_source(store)
    assert set(after) == {str(sets["a"]), str(sets["c"])}  # b, the least recently used, made room
    assert sum(e.bytes for e in after.values()) <= cap
    assert not [p for p in store.iterdir() if p.name.startswith(".")]  # nothing left half-removed
    assert torch.equal(c[3][0], read_image(c.samples[3][0]))


def test_the_entry_just_built_stays_even_when_its_estimate_fell_short(tmp_path: Path) -> None:
    store = tmp_path / "cache"
    a, b = image_set(tmp_path, "a", 3), image_set(tmp_path, "b", 3)
    assert ImageFolderRGB(a, "train").use_cache(store)
    paths = sorted((b / "train" / "c").iterdir())
    decoded = DecodedImages(paths, store, cap=1, needed=0)  # told it needs nothing: a 1-byte cap "fits"
    assert set(by_source(store)) == {str(b / "train" / "c")}  # a made room; the new one, over the cap, stays
    assert by_source(store)[str(b / "train" / "c")].state == "in use"
    assert torch.equal(decoded.get(2), read_image(paths[2]))


def test_an_entry_in_use_by_another_process_is_never_evicted(tmp_path: Path, monkeypatch, capsys) -> None:
    store = tmp_path / "cache"
    a, b = image_set(tmp_path, "a", 4), image_set(tmp_path, "b", 4)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(a), str(store)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
        held = by_source(store)[str(a)]
        assert held.state == "in use"
        backdate(held, 30)
        set_cap(monkeypatch, held.bytes + 100)  # b fits only if a goes
        data = ImageFolderRGB(b, "train")
        assert not data.use_cache(store)  # a is in use: it stays and b is not cached
        assert data.decoded is None and set(by_source(store)) == {str(a)}
        monkeypatch.setenv("ILSVRC_CACHE_DIR", str(store))
        assert main(["cache", "clear", "--all"]) == 2
        out, err = capsys.readouterr()
        assert "in use by a running process" in err and err.count("\n") == 1 and not out
        assert (held.folder / cache.PIXELS).is_file()
    finally:
        holder.stdin.close()
        holder.wait(timeout=HANG_GUARD)
    assert data.use_cache(store)  # the holder has ended: now a makes room
    assert set(by_source(store)) == {str(b)}


def test_an_entry_being_built_is_not_removed_and_an_abandoned_one_is(tmp_path: Path, monkeypatch,
                                                                     capsys) -> None:  # fmt: skip
    from ilsvrc.training import images as data_module

    store = tmp_path / "cache"
    monkeypatch.setenv("ILSVRC_CACHE_DIR", str(store))
    a, b = image_set(tmp_path, "a", 3), image_set(tmp_path, "b", 3)
    assert ImageFolderRGB(a, "train").use_cache(store)
    abandoned = store / f".tmp-{'0' * 24}-{dead_pid()}"  # what a killed build leaves
    seen = {}
    real = data_module.read_image

    def read_and_clear(path):
        if not seen:  # in the middle of building b's entry: list it, then try to clear everything
            abandoned.mkdir()  # (made here: building b began by sweeping such leftovers away)
            (abandoned / cache.PIXELS).write_bytes(bytes(1000))
            assert main(["cache", "list", "--format", "json"]) == 0
            seen["list"] = json.loads(capsys.readouterr().out)
            seen["code"] = main(["cache", "clear", "--all"])
            seen["out"], seen["err"] = capsys.readouterr()
        return real(path)

    monkeypatch.setattr(data_module, "read_image", read_and_clear)
    paths = sorted((b / "train" / "c").iterdir())
    decoded = DecodedImages(paths, store, needed=1000)
    states = {e["source"]: e["state"] for e in seen["list"]["entries"]}
    assert states[str(a)] == "ready" and states[str(b / "train" / "c")] == "building"
    assert states[""] == "abandoned"
    assert seen["code"] == 2
    assert f"being built by process {os.getpid()}" in seen["err"] and seen["err"].count("\n") == 1
    assert "removed 2 cache entries" in seen["out"] and str(a) in seen["out"]  # a and the abandoned one
    assert not abandoned.exists()
    monkeypatch.setattr(data_module, "read_image", real)
    assert [e.source for e in cache.entries(store)] == [str(b / "train" / "c")]
    assert torch.equal(decoded.get(1), read_image(paths[1]))


def test_cache_list_and_clear_from_the_command_line(tmp_path: Path, monkeypatch, capsys) -> None:
    store = tmp_path / "cache"
    monkeypatch.setenv("ILSVRC_CACHE_DIR", str(store))
    set_cap(monkeypatch, 3 * 2**20)
    a = image_set(tmp_path, "set-a", 3, 20, 30, bad=1)
    b = image_set(tmp_path, "set-b", 5, 16, 16)
    for folder in (a, b):
        assert ImageFolderRGB(folder, "train", skip_unreadable=True).use_cache()
    assert main(["cache", "list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    rows = {e["source"]: e for e in listed["entries"]}
    on_disk = {s: sum(f.stat().st_size for f in Path(e["folder"]).iterdir()) for s, e in rows.items()}
    assert listed["cap_bytes"] == cache.cap_bytes() and listed["folder"] == str(store)
    assert set(rows) == {str(a), str(b)} and listed["total_bytes"] == sum(on_disk.values())
    assert (rows[str(a)]["images"], rows[str(a)]["unreadable"], rows[str(b)]["images"]) == (4, 1, 5)
    assert all(rows[s]["bytes"] == on_disk[s] and rows[s]["split"] == "train" for s in rows)
    assert (Path(rows[str(a)]["folder"]) / cache.PIXELS).stat().st_size == 3 * 20 * 30 * 3
    assert (Path(rows[str(b)]["folder"]) / cache.PIXELS).stat().st_size == 5 * 16 * 16 * 3

    assert main(["cache", "list"]) == 0
    text = capsys.readouterr().out
    assert "2 decoded-image cache entries" in text and "of the 3.0 MiB cap" in text
    line_a = next(line for line in text.splitlines() if str(a) in line)
    assert line_a.split()[2:6] == ["train", "4", "1", render.human_bytes(on_disk[str(a)]).split()[0]]

    assert main(["cache", "clear", "*set-b"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("removed 1 cache entry") and f"{render.human_bytes(on_disk[str(b)])} freed" in out
    assert not Path(rows[str(b)]["folder"]).exists() and set(by_source(store)) == {str(a)}

    assert main(["cache", "clear", "--older-than", "2"]) == 0
    assert "nothing to remove" in capsys.readouterr().out and set(by_source(store)) == {str(a)}
    backdate(by_source(store)[str(a)], 3)
    monkeypatch.chdir(tmp_path)
    assert main(["cache", "clear", "--older-than", "2"]) == 0
    assert f"removed 1 cache entry from {store}, {render.human_bytes(on_disk[str(a)])} freed" in (
        capsys.readouterr().out
    )
    assert cache.entries(store) == [] and not list(store.iterdir())

    assert main(["cache", "clear", "set-a"]) == 2  # a folder given relative: nothing of it is left
    err = capsys.readouterr().err
    assert "No decoded-image cache entry matches 'set-a'" in err and err.count("\n") == 1


def test_a_bad_cap_is_a_one_paragraph_error_and_a_zero_cap_caches_nothing(tree, tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:  # fmt: skip
    root, _ = tree
    monkeypatch.setenv("ILSVRC_CACHE_MAX_GB", "lots")
    assert main(["cache", "list"]) == 2
    err = capsys.readouterr().err
    assert "ILSVRC_CACHE_MAX_GB is 'lots'" in err and err.count("\n") == 1
    with pytest.raises(DataError, match="ILSVRC_CACHE_MAX_GB"):  # a run warns and goes on uncached
        ImageFolderRGB(root, "val", skip_unreadable=True).use_cache(tmp_path)
    monkeypatch.setenv("ILSVRC_CACHE_MAX_GB", "0")
    data = ImageFolderRGB(root, "val", skip_unreadable=True)
    assert not data.use_cache(tmp_path) and data.decoded is None and not list(tmp_path.iterdir())


def test_cache_commands_do_not_import_torch(tmp_path: Path) -> None:
    store = tmp_path / "cache"
    assert ImageFolderRGB(image_set(tmp_path, "a", 2), "train").use_cache(store)
    code = (
        "import sys; from ilsvrc.cli import main; "
        "assert main(['cache', 'list']) == 0 and main(['cache', 'clear', '--all']) == 0; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = {**os.environ, "ILSVRC_CACHE_DIR": str(store)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "removed 1 cache entry" in done.stdout and cache.entries(store) == []


def test_a_pickled_cache_carries_names_not_pixels(tree, tmp_path: Path) -> None:
    """Loader workers started by spawn get the cache pickled: it must reopen the mapping, not copy it."""
    root, _ = tree
    data = ImageFolderRGB(root, "train", skip_unreadable=True)
    assert data.use_cache(tmp_path)
    pixels = (data.decoded.folder / cache.PIXELS).stat().st_size
    blob = pickle.dumps(data.decoded)
    assert len(blob) < pixels / 10
    copy = pickle.loads(blob)
    readable = [i for i in range(len(copy)) if copy.reason(i) is None]
    assert all(torch.equal(copy.get(i), data.decoded.get(i)) for i in readable)  # the very same bytes
