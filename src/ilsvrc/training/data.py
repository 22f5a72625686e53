"""Datasets: ImageNet-layout image folders, a generated dataset that needs no download, augmentation.

Every dataset here yields `(image, label)` with `image` a uint8 tensor of shape 3 x H x W in RGB order
(0..255) and `label` an int; resizing, cropping and normalising belong to the transforms
(`ilsvrc.transforms`), applied through `Augmented`, which seeds the random number generator per
sample so that a run is reproducible whatever the number of loader workers and wherever it resumes.

- `SyntheticShapes`: ten classes of procedurally drawn images (shapes and textures), deterministic by
  (seed, split, index), at any size; the default when no data folder is given.
- `ImageFolderRGB`: `root/<split>/<class_id>/<image>` trees, as torchvision's `ImageFolder` reads them,
  with every image converted to RGB (greyscale, palette, CMYK, 16-bit); with `skip_unreadable`, a file
  that cannot be decoded gives a `Skipped` marker instead of an error, and `collate_skipping` (the
  loader's collate function) drops it from its batch and hands it on, so a run counts and logs it.
- `open_dataset`: one of the two from a `--data` value.
- `save_classes` / `load_classes`: the class list (index, id, name) a run saves for `predict`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from .images import IMAGE_EXTENSIONS, DataError, read_image, unreadable_reason

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())  # a run reports skipped files in its own log; no stderr copy


@dataclass(frozen=True)
class ClassInfo:
    """One class: its label `index`, its `id` (folder name, e.g. a WordNet id) and a readable `name`."""

    index: int
    id: str
    name: str


# --------------------------------------------------------------------------------------------------
# The generated dataset


# Shapes and textures alternate, so that the first k classes (`num_classes=k`) always mix the two:
# the four-class subset is circle, hstripes, square, vstripes, not four outlines. Measured (ResNet-18,
# batch 16, 32 px, 192 images, 72 steps): the four shapes alone stay at chance (75% val error; the
# network memorises the images by their random colours before it learns outlines), the mixed four
# reach 34%. `_DRAWN_AS` keeps each class drawn as before whatever its place in this list.
SHAPE_CLASSES: tuple[tuple[str, str], ...] = (
    ("circle", "filled circle"),
    ("hstripes", "horizontal stripes"),
    ("square", "filled square"),
    ("vstripes", "vertical stripes"),
    ("triangle", "filled triangle"),
    ("checkerboard", "checkerboard"),
    ("ring", "ring"),
    ("dstripes", "diagonal stripes"),
    ("cross", "cross"),
    ("dots", "grid of dots"),
)

# the drawing (`_shape_distance`'s kind) of each class id: shapes 0-4, textures 5-9
_DRAWN_AS: dict[str, int] = {cid: kind for kind, cid in enumerate(
    ("circle", "square", "triangle", "ring", "cross", "hstripes", "vstripes", "checkerboard", "dstripes",
     "dots"))}  # fmt: skip

_SPLIT_LENGTHS = {"train": 2000, "val": 500}


def _rotate(u: np.ndarray, v: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    return c * u + s * v, -s * u + c * v


def _triangle_wave(t: np.ndarray) -> np.ndarray:
    """Signed distance, in periods, to the nearest edge of a 50% duty-cycle stripe (positive inside)."""
    return 0.25 - np.abs(t - np.floor(t) - 0.5)


def _shape_distance(kind: int, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signed distance (in image half-widths, positive inside) of drawing `kind` (`_DRAWN_AS`) at (u, v).

    Shapes (circle ... cross) get a random centre, size and rotation; textures (stripes ... dots) a
    random period, phase and, within their class's orientation, a small tilt.
    """
    if kind <= 4:  # a single shape somewhere in the middle of the image
        cu, cv = rng.uniform(-0.3, 0.3, size=2)
        r = rng.uniform(0.35, 0.6)
        x, y = _rotate(u - cu, v - cv, rng.uniform(0, 2 * math.pi))
        if kind == 0:
            return r - np.sqrt(x * x + y * y)
        if kind == 1:
            return 0.85 * r - np.maximum(np.abs(x), np.abs(y))
        if kind == 2:  # equilateral triangle: inside all three half-planes at distance r/2 from the centre
            d = np.full_like(x, np.inf)
            for k in range(3):
                a = 2 * math.pi * k / 3
                d = np.minimum(d, 0.5 * r - (math.cos(a) * x + math.sin(a) * y))
            return d * 1.4
        if kind == 3:
            width = rng.uniform(0.2, 0.35) * r
            return width - np.abs(np.sqrt(x * x + y * y) - (r - width))
        width = rng.uniform(0.18, 0.3) * r
        bar1 = np.minimum(width - np.abs(x), r - np.abs(y))
        bar2 = np.minimum(width - np.abs(y), r - np.abs(x))
        return np.maximum(bar1, bar2)
    cycles = rng.uniform(2.5, 6.0)  # periods across the image (2 half-widths)
    freq = cycles / 2.0
    phase = rng.uniform(0, 1)
    tilt = math.radians(rng.uniform(-12, 12))
    if kind == 5:  # stripes run horizontally: the pattern varies along v
        _, y = _rotate(u, v, tilt)
        return _triangle_wave(freq * y + phase) / freq
    if kind == 6:
        x, _ = _rotate(u, v, tilt)
        return _triangle_wave(freq * x + phase) / freq
    if kind == 8:
        angle = math.pi / 4 + (math.pi / 2 if rng.random() < 0.5 else 0.0) + tilt
        x, _ = _rotate(u, v, angle)
        return _triangle_wave(freq * x + phase) / freq
    x, y = _rotate(u, v, rng.uniform(0, 2 * math.pi))
    phase2 = rng.uniform(0, 1)
    if kind == 7:
        dx = _triangle_wave(freq * x + phase)
        dy = _triangle_wave(freq * y + phase2)
        return np.sign(dx * dy) * np.minimum(np.abs(dx), np.abs(dy)) / freq
    gx = freq * x + phase
    gy = freq * y + phase2
    gx = gx - np.floor(gx) - 0.5
    gy = gy - np.floor(gy) - 0.5
    return (rng.uniform(0.2, 0.32) - np.sqrt(gx * gx + gy * gy)) / freq


class SyntheticShapes(Dataset):
    """Procedurally drawn images of up to ten classes; needs no download, deterministic, any size.

    Classes (ids), in label order: circle, hstripes, square, vstripes, triangle, checkerboard, ring,
    dstripes, cross, dots: shapes (one shape: random centre, size, rotation) and textures (random
    period, phase, small tilt) alternate, so that any first-k subset mixes the two.
    Every image has a random background colour, a foreground colour that differs from it by 0.3 to
    0.7 in every channel, a faint brightness gradient and pixel noise, so the mean colour says almost
    nothing about the class: the shape has to be seen.

    Item `i` is drawn from a generator seeded with (seed, split, i) alone, so it is the same whatever
    the process, worker or order of access; train and val use different derived seeds. Labels cycle
    `i % num_classes`, so every class has the same number of images (to within one).
    """

    def __init__(
        self,
        split: str = "train",
        image_size: int = 128,
        num_classes: int = 10,
        length: int | None = None,
        seed: int = 0,
    ) -> None:
        if split not in _SPLIT_LENGTHS:
            raise DataError(f"The generated dataset has the splits 'train' and 'val', not {split!r}.")
        if not isinstance(image_size, int) or image_size < 16:
            raise DataError(f"The generated dataset needs image_size >= 16 pixels, got {image_size!r}.")
        if not isinstance(num_classes, int) or not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise DataError(
                f"The generated dataset has 2 to {len(SHAPE_CLASSES)} classes; num_classes={num_classes!r}."
            )
        if not isinstance(seed, int) or seed < 0:
            raise DataError(f"The seed must be a whole number >= 0, got {seed!r}.")
        if length is None:
            length = _SPLIT_LENGTHS[split]
        if not isinstance(length, int) or length < 1:
            raise DataError(f"The dataset length must be a positive whole number, got {length!r}.")
        self.split = split
        self.image_size = image_size
        self.num_classes = num_classes
        self.length = length
        self.seed = seed
        self.classes = [ClassInfo(i, cid, name) for i, (cid, name) in enumerate(SHAPE_CLASSES[:num_classes])]
        self._split_code = zlib.crc32(split.encode())
        centres = (np.arange(image_size, dtype=np.float32) + 0.5) * (2.0 / image_size) - 1.0
        self._v, self._u = np.meshgrid(centres, centres, indexing="ij")  # v down the rows, u across

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        index %= self.length
        label = index % self.num_classes
        return torch.from_numpy(self._draw(index, label)), label

    def _draw(self, index: int, label: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self._split_code, index])
        distance = _shape_distance(_DRAWN_AS[self.classes[label].id], self._u, self._v, rng)
        # Anti-aliased coverage: a one-pixel ramp across the edge (a pixel is 2/size half-widths).
        coverage = distance.astype(np.float32, copy=False)
        coverage *= self.image_size / 2.0
        coverage += 0.5
        np.clip(coverage, 0.0, 1.0, out=coverage)
        background = rng.uniform(0.0, 1.0, size=3)
        foreground = (background + rng.uniform(0.3, 0.7, size=3)) % 1.0
        # Brightness shared by the three channels (a gradient and noise), so it is not a colour cue.
        # Uniform noise: rng.random in float32 is faster than standard_normal.
        angle = rng.uniform(0, 2 * math.pi)
        slope = rng.uniform(0.0, 0.15) * 255.0
        noise_amplitude = rng.uniform(0.03, 0.12) * 255.0  # noise std = amplitude / sqrt(12)
        shade = rng.random(coverage.shape, dtype=np.float32)
        shade -= 0.5
        shade *= noise_amplitude
        shade += (slope * math.cos(angle)) * self._u
        shade += (slope * math.sin(angle)) * self._v
        image = np.empty((3, *coverage.shape), dtype=np.float32)
        for c in range(3):  # in place, channel by channel: no (3, H, W) temporaries
            bg = background[c] * 255.0 + 0.5  # + 0.5: the cast to uint8 below truncates
            np.multiply(coverage, (foreground[c] - background[c]) * 255.0, out=image[c])
            image[c] += shade
            image[c] += bg
        np.clip(image, 0.0, 255.0, out=image)
        return image.astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Image folders


def _read_class_names(path: Path) -> dict[str, str]:
    """id -> name from a classes.txt whose lines are `index id name [anything else]`."""
    names: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 3 or not fields[0].isdigit():
            raise DataError(
                f"{path}, line {number}: expected 'index id name', e.g. '0 n01440764 tench', got {line!r}."
            )
        names[fields[1]] = fields[2]
    return names


@dataclass(frozen=True)
class Skipped:
    """In place of an image that could not be read: the file's `path` and the `reason` (the decoder's
    message). `ImageFolderRGB(..., skip_unreadable=True)` gives it; `collate_skipping` takes it out."""

    path: str
    reason: str


def _image_files(folder: Path) -> list[Path]:
    """The image files in `folder` and its subfolders (hidden ones skipped), sorted by path.

    os.walk rather than Path.rglob + is_file: it reads file types from the directory listing, one
    system call per folder instead of one per file (ImageNet's train split has 1.28 million).
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(
            Path(dirpath, name)
            for name in filenames
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(found, key=lambda p: p.as_posix())


class ImageFolderRGB(Dataset):
    """Images in the ImageNet layout, `root/<split>/<class_id>/<image>`, read as uint8 RGB tensors.

    Class ids are the class folders' names, sorted (so labels agree with torchvision's `ImageFolder`);
    class names come from `root/classes.txt` when it exists (lines `index id name [...]`, as Imagenette
    ships it), otherwise the name is the id. Images are found in each class folder and its subfolders
    by extension (.jpg .jpeg .png .bmp .gif .webp .tif .tiff, any case), sorted by path.

    Every image comes out as 3 x H x W uint8 RGB: greyscale is repeated, palette colours looked up,
    CMYK converted, 16-bit greyscale scaled to 8 bits. Alpha (RGBA, LA, palette transparency) is
    dropped, not composited onto a background: that is what torchvision's decoder in RGB mode and PIL's
    `convert("RGB")` both do, so the pixels are those torchvision's reference pipelines (and so its
    pretrained weights) saw.

    A file that cannot be read or decoded (truncated, corrupt, empty, not an image, unreadable) raises
    `DataError` naming it; with `skip_unreadable=True` the item is `(Skipped(path, reason), label)`
    instead, for `collate_skipping` to drop from its batch. Truncated files are skipped whole, never
    decoded in part with the missing rows grey (`read_image`). Only files are samples: a folder named
    like an image (`x.jpg/`) is not one. The dataset keeps no record of what it skipped (loader
    workers are separate processes): the markers travel in the batches to the main process.
    """

    def __init__(self, root: str | Path, split: str, skip_unreadable: bool = False) -> None:
        self.root = Path(root)
        self.split = split
        self.skip_unreadable = skip_unreadable
        if not self.root.is_dir():
            raise DataError(
                f"The data folder {self.root} does not exist (or is not a folder). Give a folder "
                "that holds train/<class>/... and val/<class>/..., or no --data for the generated dataset."
            )
        folder = self.root / split
        if not folder.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise DataError(
                f"The data folder {self.root} has no {split!r} split folder ({folder} is missing); "
                f"it has {', '.join(present) if present else 'no folders'}. Expected "
                f"{self.root}/{split}/<class_id>/<image files>."
            )
        class_dirs = sorted(
            (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
        )
        if not class_dirs:
            raise DataError(
                f"{folder} has no class folders; put each class's images in {folder}/<class_id>/."
            )
        names_file = self.root / "classes.txt"
        names = _read_class_names(names_file) if names_file.is_file() else {}
        self.classes = [ClassInfo(i, d.name, names.get(d.name, d.name)) for i, d in enumerate(class_dirs)]
        self.samples: list[tuple[Path, int]] = []
        for info, class_dir in zip(self.classes, class_dirs):
            files = _image_files(class_dir)
            if not files:
                raise DataError(
                    f"The class folder {class_dir} (class {info.id!r}) has no images; give it image "
                    f"files ({' '.join(IMAGE_EXTENSIONS)}) or remove it."
                )
            self.samples.extend((path, info.index) for path in files)

    decoded = None  # a cache.DecodedImages of `samples`, once `use_cache` has made one

    def use_cache(
        self, root: Path | None = None, progress: bool = False, max_bytes: int | None = None
    ) -> bool:
        """Decode every image once into a memory-mapped cache (`ilsvrc.cache`) and read from it from
        now on; the pixels are the same. Returns False, changing nothing, when the decoded images would
        take more than the cache's cap, `max_bytes` (default `ILSVRC_CACHE_MAX_GB`, see
        `cache.cap_bytes`), with every unused entry evicted, or more than half the free space where
        the cache goes. Raises `DataError` if writing the cache fails all the same."""
        from . import cache

        paths = [path for path, _ in self.samples]
        folder = root or cache.cache_root()
        try:
            limit = cache.cap_bytes() if max_bytes is None else max_bytes
            needed = cache.estimated_bytes(paths)
            if needed > limit or needed > cache.free_bytes(folder) // 2:  # leave the disk half its room
                return False
            self.decoded = cache.DecodedImages(paths, root, progress, source=str(self.root.resolve()),
                                               split=self.split, cap=limit, needed=needed)  # fmt: skip
        except cache.CacheFull:
            return False
        except cache.CacheError as error:
            raise DataError(str(error)) from None
        return True

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor | Skipped, int]:
        path, label = self.samples[index]
        try:
            image = self.decoded.get(index) if self.decoded is not None else read_image(path)
            return image, label
        except DataError as error:
            if not self.skip_unreadable:
                raise
            reason = self.decoded.reason(index) if self.decoded is not None else None
            return Skipped(str(path), reason or unreadable_reason(path, error)), label

    def _take_evenly(self, length: int) -> ImageFolderRGB:
        """A copy with `length` samples spread evenly over the sorted list (so over every class)."""
        subset = object.__new__(ImageFolderRGB)
        subset.__dict__.update(self.__dict__)
        n = len(self.samples)
        subset.samples = [self.samples[k * n // length] for k in range(min(length, n))]
        subset.decoded = None  # its indices are the full list's: cache the subset anew if wanted
        return subset

    def _relabel(self, classes: list[ClassInfo]) -> None:
        """Use another split's class list: each sample's label becomes that list's index of its class."""
        index_of = {c.id: c.index for c in classes}
        ids = [c.id for c in self.classes]
        self.samples = [(path, index_of[ids[label]]) for path, label in self.samples]
        self.classes = list(classes)


def check_splits(train: Dataset, val: Dataset) -> None:
    """Check that `val`'s classes are `train`'s, and make their labels agree.

    Raises `DataError` naming the validation classes the training set lacks. When the validation set
    has only some of the training classes, its labels would be positions in its own shorter list and
    mean other classes; an `ImageFolderRGB` is then relabelled in place to the training set's indices.
    """
    train_classes: list[ClassInfo] = list(train.classes)
    val_classes: list[ClassInfo] = list(val.classes)
    train_ids = {c.id for c in train_classes}
    missing = [c.id for c in val_classes if c.id not in train_ids]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataError(
            f"The validation set has {len(missing)} class(es) the training set lacks: {shown}. A model "
            "trained on the training set cannot predict them; give both splits the same class folders."
        )
    index_of = {c.id: c.index for c in train_classes}
    if all(index_of[c.id] == c.index for c in val_classes):
        return
    if isinstance(val, ImageFolderRGB):
        val._relabel(train_classes)
        return
    raise DataError(
        "The validation set numbers its classes differently from the training set; give both splits "
        "the same class folders."
    )


def open_dataset(
    data: str | Path | None,
    split: str,
    image_size: int = 128,
    seed: int = 0,
    num_classes: int = 10,
    length: int | None = None,
    skip_unreadable: bool = False,
) -> Dataset:
    """The dataset a `--data` value names: None for `SyntheticShapes`, else an `ImageFolderRGB` root.

    `image_size`, `seed` and `num_classes` apply to the generated dataset only (a folder has its own
    images and classes), `skip_unreadable` to a folder only (see `ImageFolderRGB`). `length` caps
    either: a folder keeps `length` images spread evenly over its sorted list, so every class keeps its
    share (deterministic, no seed).
    """
    if data is None:
        return SyntheticShapes(
            split, image_size=image_size, num_classes=num_classes, length=length, seed=seed
        )
    dataset = ImageFolderRGB(data, split, skip_unreadable=skip_unreadable)
    if length is not None:
        if not isinstance(length, int) or length < 1:
            raise DataError(f"The dataset length must be a positive whole number, got {length!r}.")
        dataset = dataset._take_evenly(length)
    return dataset


# --------------------------------------------------------------------------------------------------
# Augmentation, reproducibly


class Augmented(Dataset):
    """`base` with `transform` applied to each image, the random numbers seeded per sample.

    Item `i` in epoch `e` runs `transform` with torch's CPU generator seeded from (seed, e, i), inside
    `torch.random.fork_rng`, so the augmentation of a sample depends on nothing else: not the loader
    worker, its position in the batch, the order of access or where a resumed run starts; and the
    caller's global generator is left as it was. Transforms must draw their randomness from torch's
    global generator (torchvision.transforms.v2 and `ilsvrc.transforms` do; Python's `random` and
    numpy's are not seeded here).

    The epoch lives in a shared-memory tensor, so `set_epoch` reaches loader workers even when they
    are persistent; call it before iterating over the loader for that epoch. So does the output size
    of a `transforms.Pipeline`: `set_image_size(n)` gives n x n images from then on (progressive
    resizing), the random crops of each sample still drawn from (seed, epoch, index).

    A DataLoader with batches fetches them through `__getitems__`: with a `Pipeline` transform, each
    image goes through its uint8 steps and the whole batch is normalised at once into one float
    tensor (channels-last, in shared memory in a loader worker), which `collate_skipping` hands on
    without copying; any other collate function stacks the same values. Item `i` of such a batch is
    `self[i]`, exactly.
    """

    def __init__(self, base: Dataset, transform: Callable[[Tensor], Tensor], seed: int = 0) -> None:
        self.base = base
        self.transform = transform
        if int(seed) < 0:
            raise DataError(f"The seed must be a whole number >= 0, got {seed!r}.")
        self.seed = int(seed)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._size = torch.zeros((), dtype=torch.int64).share_memory_()  # 0: the transform's own size
        self._sized: dict[int, Callable[[Tensor], Tensor]] = {}

    @property
    def classes(self) -> list[ClassInfo]:
        """The base dataset's classes."""
        return self.base.classes

    @property
    def epoch(self) -> int:
        """The epoch whose augmentations `__getitem__` gives."""
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Give the augmentations of epoch `epoch` from now on (in this process and in loader workers)."""
        if int(epoch) < 0:
            raise DataError(f"The epoch must be a whole number >= 0, got {epoch!r}.")
        self._epoch.fill_(int(epoch))

    @property
    def image_size(self) -> int | None:
        """The side of the images given now: the one `set_image_size` set, else the transform's own
        (None when the transform does not say)."""
        return int(self._size.item()) or getattr(self.transform, "image_size", None)

    def set_image_size(self, image_size: int) -> None:
        """Give image_size x image_size images from now on (here and in loader workers, persistent
        ones too), through the transform's `at_size` (a `transforms.Pipeline` has it). Cheap: each
        process makes the transform for a size once, when it first needs it."""
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
            raise DataError(f"The image size must be a whole number of pixels >= 1, got {image_size!r}.")
        if not callable(getattr(self.transform, "at_size", None)):
            raise DataError(
                f"This dataset's transform ({type(self.transform).__name__}) has a fixed output size; "
                "make it with transforms.train_transform (or another Pipeline with a factory) to resize it."
            )
        self._size.fill_(image_size)

    def current_transform(self) -> Callable[[Tensor], Tensor]:
        """The transform at the size `set_image_size` asked for (the one given, when it asked none)."""
        size = int(self._size.item())
        if not size:
            return self.transform
        if size not in self._sized:
            self._sized[size] = self.transform.at_size(size)  # type: ignore[attr-defined]
        return self._sized[size]

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def sample_seed(self, index: int, epoch: int | None = None) -> int:
        """The 64-bit seed of item `index` in the current epoch (or in `epoch`)."""
        epoch = self.epoch if epoch is None else epoch
        state = np.random.SeedSequence([self.seed, epoch, int(index)]).generate_state(2, np.uint32)
        return int(state[0]) | (int(state[1]) << 32)

    def __getitem__(self, index: int) -> tuple[Tensor | Skipped, Any]:
        image, label = self.base[index]
        if isinstance(image, Skipped):  # nothing to transform; no other sample's randomness changes
            return image, label
        transform = self.current_transform()
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(self.sample_seed(index))
            image = transform(image)
        return image, label

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor | Skipped, Any]]:
        """The items `indices` as a `Batch`, normalised together (see the class's note)."""
        from .transforms import Pipeline

        transform = self.current_transform()
        if not isinstance(transform, Pipeline):
            return [self[i] for i in indices]
        epoch = self.epoch
        items: list[tuple[Any, Any]] = []
        pixels, shifts = [], []
        with torch.random.fork_rng(devices=[]):  # once per batch; each sample seeded alone
            for index in indices:
                image, label = self.base[index]
                if not isinstance(image, Skipped):
                    torch.random.default_generator.manual_seed(self.sample_seed(index, epoch))
                    image = transform.geometry(image).permute(1, 2, 0)  # H x W x 3
                    pixels.append(image)
                    shifts.append(transform.normalise.image_shift())
                items.append((image, label))
        if len({p.shape for p in pixels}) > 1:  # a transform giving several sizes: each image alone
            return [self[i] for i in indices]
        return Batch(items, pixels, shifts, transform.normalise)


# --------------------------------------------------------------------------------------------------
# Skipped files: out of the batches, into the run's counts and log


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An uninitialised tensor; in a loader worker, in shared memory (as `default_collate` makes its
    batches there), so that handing it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = math.prod(shape)
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel, device="cpu")
    return torch.empty(0, dtype=dtype).new(storage).view(shape)


class Batch(list):
    """The items of one batch (a list of `(image, label)`, `Skipped` markers in their places) with the
    readable images already stacked and normalised: `images` (float32 N x 3 x H x W, channels-last
    in memory, None when none was readable), `targets` (int64, N) and `skipped` (the markers).

    The readable items' images are views of `images`; `collate_skipping` hands the three on as they
    are, any other collate function stacks the list as usual.
    """

    def __init__(self, items: list[tuple[Any, Any]], pixels: list[Tensor], shifts: list[Tensor],
                 normalise: Any) -> None:  # fmt: skip
        self.skipped = [image for image, _ in items if isinstance(image, Skipped)]
        labels = [label for image, label in items if not isinstance(image, Skipped)]
        self.images: Tensor | None = None
        self.targets: Tensor | None = None
        if pixels:
            out = _empty((len(pixels), *pixels[0].shape), torch.float32)  # N x H x W x 3
            self.images = normalise.batch(pixels, torch.stack(shifts), out)
            self.targets = torch.as_tensor(labels)
        views = iter(self.images if self.images is not None else [])
        super().__init__((x if isinstance(x, Skipped) else next(views), label) for x, label in items)


def collate_skipping(samples: list[tuple[Any, Any]]) -> tuple[Tensor | None, Tensor | None, list[Skipped]]:
    """A DataLoader collate function: `(images, targets, skipped)` with the `Skipped` samples taken out.

    `images` and `targets` stack the readable samples as `default_collate` does (so a batch may be
    smaller than asked); both are None when every sample of the batch was skipped. `skipped` lists the
    markers, which is how they reach the main process from loader workers. A `Batch` (what
    `Augmented` fetches for a loader) is already stacked: its tensors are handed on as they are.
    """
    if isinstance(samples, Batch):
        return samples.images, samples.targets, list(samples.skipped)
    kept = [s for s in samples if not isinstance(s[0], Skipped)]
    skipped = [s[0] for s in samples if isinstance(s[0], Skipped)]
    if not kept:
        return None, None, skipped
    images, targets = default_collate(kept)
    return images, targets, skipped


class SkipLog:
    """The files a run has skipped: `add` returns those not seen before and logs each once (WARNING on
    the "ilsvrc.data" logger); `paths` maps every path seen to its reason."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def add(self, skipped: list[Skipped]) -> list[Skipped]:
        new = []
        for item in skipped:
            if item.path not in self.paths:
                self.paths[item.path] = item.reason
                logger.warning("Skipped unreadable image %s: %s", item.path, item.reason)
                new.append(item)
        return new


# --------------------------------------------------------------------------------------------------
# The class list a run saves


def save_classes(path: Path, classes: list[ClassInfo]) -> None:
    """Write `classes` to `path` as a JSON list of {"index", "id", "name"} objects, in index order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"index": c.index, "id": c.id, "name": c.name} for c in sorted(classes, key=lambda c: c.index)]
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_classes(path: Path) -> list[ClassInfo]:
    """Read a class list written by `save_classes`; `DataError` if it is missing or malformed."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DataError(f"The class list {path} does not exist; a training run writes it.") from error
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"Cannot read the class list {path}: {error}.") from error
    try:
        classes = [ClassInfo(int(r["index"]), str(r["id"]), str(r["name"])) for r in rows]
    except (TypeError, KeyError, ValueError) as error:
        raise DataError(
            f"The class list {path} is malformed ({error!r}); expected a JSON list of "
            '{"index": 0, "id": "...", "name": "..."} objects.'
        ) from error
    if [c.index for c in classes] != list(range(len(classes))):
        raise DataError(f"The class list {path} must number its classes 0, 1, 2, ... in order.")
    return classes
