"""Decoded images kept on disk: every image of a folder dataset decoded once, then memory-mapped.

Decoding a JPEG costs more than everything an epoch does to it afterwards (crop, flip, normalise), and
it is the same work every epoch. `DecodedImages` decodes each file once with `data.read_image` (so the
pixels are exactly those the uncached path gives), writes them one after another into a single file,
and afterwards reads an image as a slice of a memory-mapped array: a copy of about 150 KB instead of a
decode. Loader workers share the mapping (the page cache holds it once).

Pixels are stored H x W x 3 and handed out as a 3 x H x W view of that memory (channels-last strides):
torch's uint8 antialiased resize, the heart of every crop-and-resize augmentation, has a vectorised
path for that layout: a random 224 -> 128 crop takes 143 us instead of 211 us on planar 3 x H x W
images, 1.5x faster (benchmarks/pipeline_parts.py). The values are the same.

The cache lives in `ILSVRC_CACHE_DIR` (default `~/.cache/ilsvrc`), in a folder named by a hash of the
files' paths, sizes and modification times: a changed, added or removed file makes a new cache, never
stale pixels. It is written under a temporary name and renamed when complete, so a crash leaves no
half cache. Files that cannot be decoded are recorded with their reason and come back as such.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data import DataError, read_image

MAX_BYTES = 16 * 2**30  # decoded size above which a dataset is not cached (ImageNet's 1.28M are ~250 GB)
PIXELS, INDEX, REASONS = "pixels.u8", "index.npy", "unreadable.json"


def cache_root() -> Path:
    return Path(os.environ.get("ILSVRC_CACHE_DIR") or Path.home() / ".cache" / "ilsvrc")


def _key(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            st = path.stat()
            digest.update(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:24]


def free_bytes(folder: Path) -> int:
    """Free space where `folder` is (or would be created)."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            return shutil.disk_usage(parent).free
    return 0


def estimated_bytes(paths: Sequence[Path], probe: int = 16) -> int:
    """Decoded size of `paths`, estimated from up to `probe` images spread over the list."""
    if not paths:
        return 0
    picks = [paths[k * len(paths) // min(probe, len(paths))] for k in range(min(probe, len(paths)))]
    sizes = []
    for path in picks:
        try:
            sizes.append(read_image(path).numel())
        except DataError:
            continue
    return int(np.mean(sizes) * len(paths)) if sizes else 0


class DecodedImages:
    """The uint8 3 x H x W pixels of `paths`, decoded once into `root/<hash>/` and memory-mapped.

    `get(i)` returns the image tensor, or raises the `DataError` that decoding the file raised (with
    the same message). Build cost: one decode per file, with a progress bar when `progress` is set.
    """

    def __init__(self, paths: Sequence[Path], root: Path | None = None, progress: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.folder = (root or cache_root()) / _key(self.paths)
        if not (self.folder / INDEX).is_file():
            self._build(progress)
        self.index = np.load(self.folder / INDEX)  # rows: offset, height, width (offset -1: unreadable)
        self.reasons = json.loads((self.folder / REASONS).read_text())
        empty = (self.folder / PIXELS).stat().st_size == 0  # np.memmap refuses an empty file
        self.pixels = np.zeros(0, np.uint8) if empty else np.memmap(self.folder / PIXELS, np.uint8, mode="r")

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> Tensor:
        offset, height, width = (int(v) for v in self.index[i])
        if offset < 0:
            raise DataError(self.reasons[str(i)]["message"])
        flat = self.pixels[offset : offset + 3 * height * width]
        hwc = torch.from_numpy(np.array(flat).reshape(height, width, 3))  # a copy: writable, unshared
        return hwc.permute(2, 0, 1)  # 3 x H x W, channels-last in memory (see the module's note)

    def reason(self, i: int) -> str | None:
        """The short reason recorded for an unreadable file (None for a readable one)."""
        entry = self.reasons.get(str(i))
        return entry["reason"] if entry else None

    def _build(self, progress: bool) -> None:
        tmp = self.folder.with_name(f".tmp-{self.folder.name}-{os.getpid()}")
        index = np.zeros((len(self.paths), 3), dtype=np.int64)
        reasons: dict[str, dict[str, str]] = {}
        offset = 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(self.paths), desc=f"decoding {len(self.paths)} images once", unit="img",
                       leave=False)  # fmt: skip
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            with open(tmp / PIXELS, "wb") as out:
                for i, path in enumerate(self.paths):
                    try:
                        image = read_image(path)
                    except DataError as error:
                        from .data import _unreadable_reason

                        index[i] = (-1, 0, 0)
                        reasons[str(i)] = {"message": str(error), "reason": _unreadable_reason(path, error)}
                    else:
                        out.write(image.permute(1, 2, 0).numpy().tobytes())  # stored H x W x 3
                        index[i] = (offset, image.shape[1], image.shape[2])
                        offset += image.numel()
                    if bar is not None:
                        bar.update()
            np.save(tmp / INDEX, index)
            (tmp / REASONS).write_text(json.dumps(reasons))
            try:
                os.replace(tmp, self.folder)
            except OSError:  # another process (a torchrun rank) finished the same cache first
                if not (self.folder / INDEX).is_file():
                    raise
        except OSError as error:
            raise DataError(
                f"Cannot write the decoded-image cache in {self.folder.parent}: {error.strerror or error}. "
                "Set ILSVRC_CACHE_DIR to a folder with room, or train with --no-cache."
            ) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if bar is not None:
                bar.close()
