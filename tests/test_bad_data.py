"""Bad data (issue 4): every kind of unreadable file is skipped, logged with its path and counted in the
metrics, every odd but valid image is converted, and the run finishes; a data folder that cannot make a
run (empty class, missing split, val classes the train set lacks) is a clear error before training."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ilsvrc.cli import main
from ilsvrc.training import checkpoint
from ilsvrc.training.data import (
    Augmented,
    DataError,
    ImageFolderRGB,
    Skipped,
    collate_skipping,
)
from ilsvrc.training.evaluate import PROTOCOLS, eval_input_transform
from ilsvrc.training.loop import epoch_batches, make_config, read_metrics, train
from ilsvrc.training.transforms import TRAIN_AUGMENTATIONS, train_transform
from work import HANG_GUARD  # child-process timeouts: a hang guard only, never a time budget

CLASSES = ("ant", "bee", "cat")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ROOT = os.geteuid() == 0  # root reads files whatever their permissions


def pattern(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def corrupt_png(seed: int = 0) -> bytes:
    """A PNG whose IDAT data is damaged (checksum wrong): torchvision 0.29's decoder crashes on it."""
    buffer = io.BytesIO()
    Image.fromarray(pattern(16, 16, seed)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    for k in range(length // 3, length // 3 + 6):
        data[start + k] ^= 0x5A
    return bytes(data)


def write_bad(path: Path, kind: str) -> None:
    """One unreadable file of the given kind at `path`."""
    if kind == "truncated":  # cut in the middle of the scan data: PIL could only decode it in part
        path.write_bytes(jpeg_bytes(Image.fromarray(pattern(64, 64, 7)), quality=90)[:600])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("these are not the pixels you are looking for\n")
    elif kind == "corrupt_png":
        path.write_bytes(corrupt_png())
    elif kind == "broken_link":
        path.symlink_to(path.parent / "no-such-file.jpg")
    elif kind == "unreadable":
        Image.fromarray(pattern(8, 8, 5)).save(path)
        path.chmod(0)
    else:
        raise ValueError(kind)


def write_odd(path: Path, kind: str) -> None:
    """One valid image that has to be converted to 3 x H x W uint8 RGB."""
    a = pattern(20, 30, 11)
    if kind == "cmyk":
        Image.fromarray(a).convert("CMYK").save(path, quality=90)
    elif kind == "sixteen":
        wide = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 65535 // 599).astype(np.uint16)
        Image.fromarray(wide).save(path)
    elif kind == "palette":
        Image.fromarray(a).convert("P").save(path, transparency=0)
    elif kind == "rgba":
        Image.fromarray(np.dstack([a, np.full((20, 30), 128, np.uint8)])).save(path)
    elif kind == "grey":
        Image.fromarray(a).convert("L").save(path)
    elif kind == "one":
        Image.fromarray(a[:1, :1]).save(path)
    elif kind == "thin":
        Image.fromarray(pattern(1, 500, 12)).save(path)
    else:
        raise ValueError(kind)


TRAIN_BAD = {  # class folder -> (file name, kind)
    "ant": [("t.jpg", "truncated"), ("r.jpg", "random"), ("link.jpg", "broken_link")],
    "bee": [("z.png", "empty"), ("notes.jpeg", "text")],
    "cat": [("c.png", "corrupt_png")],
}
TRAIN_ODD = {
    "ant": [("cmyk.jpg", "cmyk"), ("sixteen.png", "sixteen")],
    "bee": [("palette.png", "palette"), ("rgba.png", "rgba")],
    "cat": [("one.png", "one"), ("thin.png", "thin")],
}
VAL_BAD = {"ant": [("t.jpg", "truncated")], "bee": [("z.png", "empty")], "cat": [("notes.jpeg", "text")]}
VAL_ODD = {"ant": [("one.png", "one")], "bee": [("cmyk.jpg", "cmyk")], "cat": [("grey.png", "grey")]}


def build_tree(root: Path, good_train: int = 8, good_val: int = 4) -> dict[str, list[Path]]:
    """train/ and val/ with three classes of good images plus every kind of bad and odd file.

    Returns the bad files of each split. 3 x 8 good + 6 bad + 6 odd = 36 training files, a multiple of
    the batch size 4, so every one is in some batch of an epoch (the last partial batch is dropped).
    A folder named like an image (x.jpg/) is not a file, so not a sample, and not counted.
    """
    bad: dict[str, list[Path]] = {"train": [], "val": []}
    for split, good, bad_files, odd_files in (
        ("train", good_train, TRAIN_BAD, TRAIN_ODD),
        ("val", good_val, VAL_BAD, VAL_ODD),
    ):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(good):
                image = Image.fromarray(pattern(24 + i, 28, 100 * c + i))
                image.save(folder / (f"g{i}.jpg" if i % 2 else f"g{i}.png"))
            for file_name, kind in bad_files[name]:
                write_bad(folder / file_name, kind)
                bad[split].append(folder / file_name)
            for file_name, kind in odd_files[name]:
                write_odd(folder / file_name, kind)
        (root / split / "ant" / "x.jpg").mkdir()
    if not ROOT:  # a file nobody may read (root may read anything, so then there is none)
        write_bad(root / "val" / "cat" / "locked.png", "unreadable")
        bad["val"].append(root / "val" / "cat" / "locked.png")
    return bad


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, list[Path]]]:
    root = tmp_path_factory.mktemp("bad-data")
    return root, build_tree(root)


def settings(tree_root: Path, out: Path, **changes) -> dict:
    values = dict(data=str(tree_root), out=str(out), epochs=1, batch_size=4, image_size=32, workers=0,
                  lr=0.02)  # fmt: skip
    values.update(changes)
    return values


# --------------------------------------------------------------------------------------------------
# Reading: unreadable files raise DataError (or give Skipped markers), odd images are converted


def test_corrupt_png_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """torchvision 0.29's PNG decoder segfaults on a damaged IDAT; read_image must raise instead."""
    path = tmp_path / "c.png"
    path.write_bytes(corrupt_png())
    code = (
        "import sys\nfrom ilsvrc.training.images import DataError, read_image\n"
        "try:\n    read_image(sys.argv[1])\nexcept DataError as e:\n    print('DataError', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert done.returncode == 0, f"the process died (code {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.startswith("DataError") and str(path) in done.stdout


def test_every_bad_file_is_a_skipped_marker_with_its_path_and_reason(tree) -> None:
    root, bad = tree
    strict = ImageFolderRGB(root, "train")
    lenient = ImageFolderRGB(root, "train", skip_unreadable=True)
    assert len(lenient) == 36 and all(p.is_file() or p.is_symlink() for p, _ in lenient.samples)  # no x.jpg/
    index = {p: i for i, (p, _) in enumerate(lenient.samples)}
    for path in bad["train"]:
        with pytest.raises(DataError, match=re.escape(str(path))):
            strict[index[path]]
        marker, label = lenient[index[path]]
        assert isinstance(marker, Skipped) and marker.path == str(path) and marker.reason
        assert label == CLASSES.index(path.parent.name)
    reasons = {Path(m.path).name: m.reason for m, _ in (lenient[index[p]] for p in bad["train"])}
    assert "truncated" in reasons["t.jpg"].lower()  # a truncated file is skipped whole, not decoded in part
    assert reasons["z.png"] == "empty file (0 bytes)"
    readable = [i for p, i in index.items() if p not in bad["train"]]
    for i in readable:  # CMYK, 16-bit, palette with transparency, RGBA, 1x1, 1x500: all RGB uint8
        image, _ = lenient[i]
        assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3


@pytest.mark.skipif(ROOT, reason="root can read a file whatever its permissions")
def test_a_file_without_read_permission_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    path = tmp_path / "train" / "a" / "locked.png"
    write_bad(path, "unreadable")
    (marker, _) = ImageFolderRGB(tmp_path, "train", skip_unreadable=True)[0]
    assert isinstance(marker, Skipped) and "Permission" in marker.reason


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (500, 1)])
def test_tiny_and_thin_images_go_through_every_transform(shape: tuple[int, int]) -> None:
    image = torch.from_numpy(pattern(*shape, 1)).permute(2, 0, 1).contiguous()
    for kind in TRAIN_AUGMENTATIONS:
        for seed in range(3):
            torch.manual_seed(seed)
            out = train_transform(kind, 32, MEAN, STD)(image)
            assert out.shape == (3, 32, 32) and torch.isfinite(out).all(), kind
    for protocol in PROTOCOLS:
        out = eval_input_transform(protocol, 32, MEAN, STD)(image)
        assert out.shape[0] == 3 and min(out.shape[1:]) >= 32 and torch.isfinite(out).all(), protocol


def test_collate_drops_skipped_samples_and_hands_them_on() -> None:
    a, b = torch.zeros(3, 2, 2), torch.ones(3, 2, 2)
    gone = Skipped("/x/y.jpg", "empty file (0 bytes)")
    images, targets, skipped = collate_skipping([(a, 0), (gone, 1), (b, 2)])
    assert images.shape == (2, 3, 2, 2) and targets.tolist() == [0, 2] and skipped == [gone]
    assert collate_skipping([(gone, 1), (gone, 2)]) == (None, None, [gone, gone])
    assert Augmented([(gone, 1)], lambda x: x / 0)[0] == (gone, 1)  # markers pass untransformed


# --------------------------------------------------------------------------------------------------
# Training on the bad tree: the run finishes, counts and logs every unreadable file


@pytest.mark.parametrize("workers", [0, 2])
def test_the_run_finishes_and_reports_every_bad_file(tiny: str, tree, tmp_path: Path, workers: int,
                                                     caplog) -> None:  # fmt: skip
    root, bad = tree
    lines: list[str] = []
    with caplog.at_level(logging.WARNING, logger="ilsvrc.training.data"):
        run = train(make_config(tiny, "cpu", **settings(root, tmp_path / "run", workers=workers)),
                    progress=False, log=lambda *a, **k: lines.append(" ".join(map(str, a))))  # fmt: skip
    (line,) = read_metrics(run)
    assert line["complete"] and line["step"] == 9  # 36 files in batches of 4, none of them all bad
    assert line["skipped_train"] == len(bad["train"]) == 6
    assert line["skipped_val"] == len(bad["val"])
    assert line["skipped_images"] == len(bad["train"]) + len(bad["val"])
    log = "\n".join(lines)
    for path in bad["train"] + bad["val"]:
        mentions = [x for x in lines if str(path) in x]
        assert len(mentions) == 1 and mentions[0].startswith("Skipped unreadable image"), (path, log)
    assert str(root / "train" / "ant" / "x.jpg") not in log  # a folder, not a file: not a sample
    logged = {r.getMessage() for r in caplog.records if r.name == "ilsvrc.training.data"}
    assert len(logged) == len(bad["train"]) + len(bad["val"])
    assert all(any(str(p) in m for m in logged) for p in bad["train"] + bad["val"])


def test_an_all_bad_batch_is_skipped_and_resumption_stays_exact(tiny: str, tmp_path: Path) -> None:
    """A batch whose every file is unreadable makes no step; stopping and resuming changes nothing."""
    root = tmp_path / "data"
    build_tree(root)
    samples = ImageFolderRGB(root, "train").samples
    first = epoch_batches(len(samples), 4, 0, 0)[0]
    for i in first:  # make the whole first batch of epoch 1 unreadable
        path = samples[i][0]
        path.unlink()
        path.write_bytes(b"\xff\xd8 not a JPEG at all")
    bad = {samples[i][0] for i in first} | set(train_bad_paths(root))
    quiet = dict(progress=False, log=lambda *a, **k: None)
    straight = train(make_config(tiny, "cpu", **settings(root, tmp_path / "a", epochs=2)), **quiet)
    stopped = train(make_config(tiny, "cpu", **settings(root, tmp_path / "b", epochs=2)),
                    stop_after_steps=3, **quiet)  # fmt: skip
    train(resume=stopped, overrides={"workers": 2}, **quiet)
    a, b = (
        load_file(checkpoint.resolve(straight) / "model.safetensors"),
        load_file(checkpoint.resolve(stopped) / "model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)  # exact resume: the same steps on the same path
    ma = read_metrics(straight)
    mb = [m for m in read_metrics(stopped) if m["complete"]]
    assert [m["step"] for m in ma] == [m["step"] for m in mb]
    assert ma[0]["step"] == 8  # 9 batches, the first all unreadable
    assert [m["skipped_train"] for m in ma] == [m["skipped_train"] for m in mb] == [len(bad)] * 2
    assert ma[-1]["train_loss"] == pytest.approx(mb[-1]["train_loss"], rel=1e-12)


def train_bad_paths(root: Path) -> list[Path]:
    return [root / "train" / name / file_name for name, files in TRAIN_BAD.items() for file_name, _ in files]


# --------------------------------------------------------------------------------------------------
# Folders that cannot make a run: a clear error before training starts


def _good_tree(root: Path) -> Path:
    for split in ("train", "val"):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            Image.fromarray(pattern(12, 12, c)).save(root / split / name / "a.png")
    return root


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda r: [p.unlink() for p in (r / "train" / "bee").iterdir()], "has no images"),
        (lambda r: [p.unlink() for p in (r / "val" / "cat").iterdir()], "has no images"),
        (lambda r: (r / "val" / "cat" / "a.png").rename(r / "val" / "cat" / "a.txt"), "has no images"),
        (lambda r: shutil.rmtree(r / "val"), "has no 'val' split"),
        (lambda r: shutil.rmtree(r / "train"), "has no 'train' split"),
        (lambda r: (r / "val" / "cat").rename(r / "val" / "dog"), "class(es) the training set lacks: dog"),
    ],
    ids=["empty-train-class", "empty-val-class", "no-image-files", "no-val", "no-train", "val-only-class"],
)
def test_a_folder_that_cannot_make_a_run_is_an_error_before_training(
    tiny: str, tmp_path: Path, capsys, damage, match: str
) -> None:
    root = _good_tree(tmp_path / "data")
    damage(root)
    lines: list[str] = []
    with pytest.raises(DataError, match=re.escape(match)):
        train(make_config(tiny, "cpu", **settings(root, tmp_path / "run")), progress=False, log=lines.append)
    assert not lines and not (tmp_path / "run").exists()  # nothing started, no run directory
    args = ["train", tiny, "--recipe", "cpu", "--data", str(root), "--out", str(tmp_path / "cli"),
            "--epochs", "1", "--image-size", "32", "--workers", "0"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.startswith("ilsvrc: error:")
    assert not (tmp_path / "cli").exists()
