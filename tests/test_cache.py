"""The decoded-image cache: the same pixels, the same skipped files, the same training, once decoded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ilsvrc import checkpoint
from ilsvrc.cache import DecodedImages
from ilsvrc.data import ImageFolderRGB, Skipped, read_image
from ilsvrc.train import make_config, train
from test_bad_data import build_tree, pattern


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
    for cache in (True, False):
        cfg = make_config(tiny, "cpu", data=str(root), out=str(tmp_path / f"run-{cache}"), epochs=2,
                          batch_size=8, image_size=32, workers=0, cache=cache)  # fmt: skip
        runs[cache] = load_file(checkpoint.resolve(train(cfg, progress=False, log=lambda *a: None))
                                / "model.safetensors")  # fmt: skip
    assert all(torch.equal(runs[True][k], runs[False][k]) for k in runs[True])


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
    from ilsvrc import cache

    root, _ = tree
    monkeypatch.setattr(cache, "free_bytes", lambda folder: 1000)
    data = ImageFolderRGB(root, "val", skip_unreadable=True)
    assert not data.use_cache(tmp_path)
    assert data.decoded is None
