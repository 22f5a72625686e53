"""The pre-deep-era pipelines, for real: hand-made features, linear SVMs (`ilsvrc train sift-bow|hog-svm`).

- `sift-bow` stands for ILSVRC 2010's and 2011's entries: dense SIFT (OpenCV) on a grid of the grey
  image at two patch sizes, a codebook learned by k-means (scikit-learn's MiniBatchKMeans) on a sample
  of the training descriptors, each image a bag of visual words over a spatial pyramid (1x1, 2x2, 4x4
  cells), square-rooted and L2-normalised, and one-vs-rest linear SVMs (LinearSVC). With
  `encoding="fisher"`, 2011's winning encoding instead: descriptors reduced by PCA, a Gaussian mixture
  with diagonal covariances, and each image's Fisher vector (the gradients of the descriptors'
  log-likelihood with respect to the means and variances), power- and L2-normalised.
- `hog-svm`: Dalal and Triggs' HOG (scikit-image's `hog`, colour gradients, 2x2-cell blocks,
  L2-Hys) on the whole image, and the same linear SVMs.

Both see what the networks' centre protocol sees: the shorter side resized to image_size / 0.875,
then the centre image_size square (`ilsvrc.training.evaluate.eval_input_transform`'s geometry). A run
directory holds what a network's does (config.json, classes.json, metrics.jsonl with one line, the
run's only "epoch"); the model is RUN/model.npz (arrays only, read with `allow_pickle=False`), written
under a temporary name and renamed. `ilsvrc eval` (centre protocol) and `ilsvrc predict` read it
through `evaluate_classical` and `predict_classical`.

Descriptors are computed in parallel over the cores (processes started by a fork server that has
imported the libraries once, see `_context`) and cached in ILSVRC_CACHE_DIR/classical/KEY/ (default
~/.cache/ilsvrc/classical), KEY a hash of the data set (its files' paths, sizes and modification times,
or the built-in data's seed, classes and length), the split, the image size and the descriptor's
settings. They are written in chunks of `CHUNK` images, each under a temporary name then renamed, so a
killed run keeps every finished chunk and a second run (or a resumed one) extracts nothing it has. The
decoded-image cache's cap (ILSVRC_CACHE_MAX_GB) does not cover this folder; remove it by hand.

Deterministic by seed: descriptors depend on the images alone; the sample of descriptors the codebook
learns from, k-means, PCA, the mixture and the SVM are seeded with the run's seed. Only a time limit
makes a run depend on the clock: the training images are then those whose descriptors were extracted
in the time given (see `train_classical`).

This module imports numpy only; OpenCV, scikit-image, scikit-learn (the optional extra `classic`) and
torch are imported inside the functions that need them, so `import ilsvrc` stays light.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IlsvrcError

PIPELINES: dict[str, str] = {
    "sift-bow": "dense SIFT encoded as visual words over a spatial pyramid or as Fisher vectors, then "
    "linear SVMs, as ILSVRC 2010 and 2011 were won",
    "hog-svm": "HOG features of the whole image, then linear SVMs",
}
ENCODINGS = ("bow", "fisher")
MODEL_FILE = "model.npz"
CROP_FRACTION = 0.875  # as the networks' centre protocol: resize to size / 0.875, crop the centre
CHUNK = 128  # images per cache file
DEFAULT_IMAGE_SIZE = 128
INSTALL = "pip install -e '.[classic]'"
_CACHE_VERSION = 1  # bump when the descriptors of the same settings change


class ClassicalError(IlsvrcError):
    """A classical pipeline that cannot run as asked: missing extras, bad settings, a run it cannot read."""


def is_classical(name: str) -> bool:
    """Whether `name` is a classical pipeline (`sift-bow`, `hog-svm`) rather than a network."""
    return name in PIPELINES


def not_a_network(name: str) -> ClassicalError:
    """The error of a command that analyses networks, given a classical pipeline's name."""
    return ClassicalError(
        f"{name} is a classical pipeline ({PIPELINES[name]}), not a network: it has no layers to analyse. "
        f"Train it with `ilsvrc train {name}` (docs/classical.md says what it does); `ilsvrc list` shows "
        "the networks."
    )


def is_classical_run(path: str | Path) -> bool:
    """Whether `path` is the run directory of a classical pipeline (its config.json says so)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("classical") is True


def require_extras() -> None:
    """Raise ClassicalError, naming the install command, unless OpenCV, scikit-image and scikit-learn
    can be imported."""
    missing = []
    for module, package in (("cv2", "opencv-python-headless"), ("skimage", "scikit-image"),
                            ("sklearn", "scikit-learn")):  # fmt: skip
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ClassicalError(
            f"The classical pipelines need {', '.join(missing)}, which {verb} not installed. Install the "
            f"optional extra: `{INSTALL}` (or `pip install opencv-python-headless scikit-image "
            "scikit-learn`)."
        )


# ---------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    """A pipeline's settings; those of `descriptor_key` decide the cached descriptors.

    sift-bow: SIFT descriptors every `step` pixels at each patch side of `patches` (4 x 4 spatial bins of
    side/4 pixels, as VLFeat's dense SIFT), on the grey image. `words` visual words (bow) or Gaussians
    (fisher), learned from `sample` descriptors; a pyramid of `levels` levels (1: 1x1; 2: + 2x2; 3: +
    4x4); fisher reduces the descriptors to `pca` dimensions first. hog-svm: `orientations` bins, cells
    of `cell` pixels, blocks of `block` x `block` cells. Both: the SVM's C.
    """

    pipeline: str
    image_size: int = DEFAULT_IMAGE_SIZE
    encoding: str = "bow"
    step: int = 8
    patches: tuple[int, ...] = (16, 24)
    words: int | None = None  # default: 512 (bow), 64 (fisher)
    levels: int | None = None  # default: 3 (bow), 1 (fisher: 8,192 values for the whole image already)
    sample: int = 100_000
    pca: int = 64
    orientations: int = 9
    cell: int = 8
    block: int = 2
    svm_c: float | None = None  # default: 1.0 (sift-bow), 0.1 (hog-svm)

    def resolved(self) -> Settings:
        """The settings with every default filled in."""
        fisher, sift = self.encoding == "fisher", self.pipeline == "sift-bow"
        return dataclasses.replace(
            self,
            patches=tuple(int(p) for p in self.patches),
            words=self.words if self.words is not None or not sift else (64 if fisher else 512),
            levels=self.levels if self.levels is not None or not sift else (1 if fisher else 3),
            svm_c=self.svm_c if self.svm_c is not None else (1.0 if self.pipeline == "sift-bow" else 0.1),
        )

    def check(self) -> None:
        """ClassicalError naming every setting out of range."""
        s = self.resolved()
        problems = []
        if s.pipeline not in PIPELINES:
            problems.append(f"unknown pipeline {s.pipeline!r} (use {' or '.join(PIPELINES)})")
        if s.encoding not in ENCODINGS:
            problems.append(f"--encoding takes {' or '.join(ENCODINGS)}, not {s.encoding!r}")
        if s.pipeline == "hog-svm" and s.encoding != "bow":
            problems.append("--encoding is a setting of sift-bow; hog-svm feeds HOG to the SVM as it is")
        if s.pipeline == "hog-svm" and self.words is not None:
            problems.append("--codebook is a setting of sift-bow; hog-svm learns no codebook")
        if s.pipeline == "sift-bow" and s.image_size < max(s.patches) + s.step:
            problems.append(f"sift-bow needs --image-size of at least {max(s.patches) + s.step} (two grid "
                            f"points of {max(s.patches)}-pixel patches), got {s.image_size}")  # fmt: skip
        if s.pipeline == "hog-svm" and s.image_size < s.cell * s.block:
            problems.append(f"hog-svm needs --image-size of at least {s.cell * s.block} (one block), "
                            f"got {s.image_size}")  # fmt: skip
        if s.pipeline == "sift-bow" and not 2 <= (s.words or 0) <= 65536:
            problems.append(f"--codebook takes 2 to 65536 words (Gaussians), got {s.words}")
        if s.pipeline == "sift-bow" and not 1 <= (s.levels or 0) <= 4:
            problems.append(f"the spatial pyramid takes 1 to 4 levels, got {s.levels}")
        if not (isinstance(s.svm_c, (int, float)) and math.isfinite(s.svm_c) and s.svm_c > 0):
            problems.append(f"--svm-c must be a positive number, got {s.svm_c}")
        if s.step < 1 or any(p < 4 for p in s.patches) or s.sample < 1 or s.pca < 1:
            problems.append("step, patch sides (at least 4), sample and pca must be positive")
        if problems:
            raise ClassicalError("Bad classical pipeline settings: " + "; ".join(problems) + ".")

    def descriptor_key(self) -> dict[str, Any]:
        """What the cached descriptors depend on (besides the images)."""
        if self.pipeline == "sift-bow":
            return {"descriptor": "dense-sift", "step": self.step, "patches": list(self.patches)}
        return {
            "descriptor": "hog",
            "orientations": self.orientations,
            "cell": self.cell,
            "block": self.block,
        }

    def grid(self) -> np.ndarray:
        """The centres (x, y) of the dense SIFT grid, shared by every patch side (P x 2)."""
        margin = max(self.patches) / 2
        coords = np.arange(margin, self.image_size - margin + 1e-9, self.step)
        ys, xs = np.meshgrid(coords, coords, indexing="ij")
        return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Descriptors of one image


def _pixels(image: Any, size: int) -> np.ndarray:
    """The centre protocol's view of a uint8 3 x H x W tensor: H x W x 3 uint8, size x size."""
    from torchvision.transforms.v2 import functional as TF

    resized = TF.resize(image, [round(size / CROP_FRACTION)], antialias=True)
    return np.ascontiguousarray(TF.center_crop(resized, [size, size]).permute(1, 2, 0).numpy())


def describe(rgb: np.ndarray, settings: Settings) -> np.ndarray:
    """The descriptors of one H x W x 3 uint8 image at the run's size: P x 128 uint8 SIFT (the grid's
    points at each patch side, in that order) for sift-bow, a float32 vector for hog-svm."""
    if settings.pipeline == "sift-bow":
        import cv2

        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        # OpenCV's descriptor spans 4 bins of 3 * size / 2 pixels each: size = side / 6 gives bins of side/4
        points = [cv2.KeyPoint(float(x), float(y), side / 6, 0.0) for side in settings.patches
                  for x, y in settings.grid()]  # fmt: skip
        kept, desc = _sift().compute(grey, points)
        if desc is None or len(kept) != len(points):
            raise ClassicalError(f"OpenCV kept {len(kept)} of the {len(points)} dense SIFT points.")
        return desc.astype(np.uint8)  # OpenCV rounds and saturates SIFT to 0..255: nothing is lost
    from skimage.feature import hog

    return hog(rgb, orientations=settings.orientations, pixels_per_cell=(settings.cell, settings.cell),
               cells_per_block=(settings.block, settings.block), block_norm="L2-Hys", channel_axis=-1,
               feature_vector=True).astype(np.float32)  # fmt: skip


_SIFT: list = []


def _sift():
    if not _SIFT:
        import cv2

        _SIFT.append(cv2.SIFT_create())
    return _SIFT[0]


# ---------------------------------------------------------------------------------------------------
# Extraction: in parallel, cached in chunks


@dataclass
class Features:
    """The descriptors of a split's readable images, in the extraction order (`order`)."""

    values: np.ndarray  # N x P x 128 uint8 (SIFT) or N x D float32 (HOG)
    labels: np.ndarray  # N int64
    index: np.ndarray  # N: each image's index in the dataset
    skipped: list[tuple[str, str]]  # (path, reason) of the unreadable images
    folder: Path  # the cache entry
    extracted: int  # images this call extracted (0: everything came from the cache)
    complete: bool  # every chunk is there (False: a time limit stopped the extraction)


def extraction_order(labels: Sequence[int]) -> list[int]:
    """The dataset's indices, classes taken in turn (the first image of each class, then the second,
    ...), so that any run of chunks holds every class in its share. No seed: the cache does not depend
    on the run's seed."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    longest = max((len(q) for q in queues), default=0)
    return [q[k] for k in range(longest) for q in queues if k < len(q)]


def _dataset_labels(dataset: Any) -> list[int]:
    if hasattr(dataset, "samples"):
        return [label for _, label in dataset.samples]
    return [i % dataset.num_classes for i in range(len(dataset))]


def _dataset_identity(dataset: Any) -> dict[str, Any]:
    if hasattr(dataset, "samples"):  # an image folder: its files, as the decoded-image cache keys them
        from .cache import _key

        return {"files": _key([path for path, _ in dataset.samples]), "images": len(dataset.samples)}
    return {"synthetic": True, "seed": dataset.seed, "classes": dataset.num_classes, "images": len(dataset),
            "drawn_at": dataset.image_size}  # fmt: skip


def cache_folder(dataset: Any, split: str, settings: Settings) -> Path:
    """ILSVRC_CACHE_DIR/classical/KEY: where the descriptors of `dataset`'s `split` go."""
    from .cache import cache_root

    what = {"version": _CACHE_VERSION, "data": _dataset_identity(dataset), "split": split,
            "image_size": settings.image_size, **settings.descriptor_key()}  # fmt: skip
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "classical" / key


_WORKER: dict[str, Any] = {}


def _start_worker(dataset: Any, settings: Settings) -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _WORKER["dataset"], _WORKER["settings"] = dataset, settings


def _chunk(indices: list[int]) -> dict[str, Any]:
    """The descriptors of the images `indices` (run in a worker, or in the process itself)."""
    from .data import Skipped

    dataset, settings = _WORKER["dataset"], _WORKER["settings"]
    values, labels, kept, skipped = [], [], [], []
    for i in indices:
        image, label = dataset[i]
        if isinstance(image, Skipped):
            skipped.append([image.path, image.reason])
            continue
        values.append(describe(_pixels(image, settings.image_size), settings))
        labels.append(label)
        kept.append(i)
    empty = np.zeros(
        (0, *_shape(settings)), dtype=np.uint8 if settings.pipeline == "sift-bow" else np.float32
    )
    return {"values": np.stack(values) if values else empty, "labels": np.asarray(labels, dtype=np.int64),
            "index": np.asarray(kept, dtype=np.int64), "skipped": json.dumps(skipped)}  # fmt: skip


def _shape(settings: Settings) -> tuple[int, ...]:
    if settings.pipeline == "sift-bow":
        return (len(settings.grid()) * len(settings.patches), 128)
    cells = settings.image_size // settings.cell - settings.block + 1
    return (cells * cells * settings.block * settings.block * settings.orientations,)


def _write_chunk(path: Path, arrays: dict[str, Any]) -> None:
    """`path` (.npz) written whole or not at all: a temporary file, synced, renamed."""
    tmp = path.with_name(f".tmp-{path.stem}-{os.getpid()}.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_chunk(path: Path) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("values", "labels", "index", "skipped")}
    except (OSError, ValueError, KeyError, EOFError):
        return None  # damaged (a disk fault): extracted again


# What a worker process needs, imported once by the fork server that starts the workers
_PRELOAD = ["torchvision.transforms.v2.functional", "cv2", "skimage.feature", __name__]


def _context():
    """Workers' start method: a fork server where there is one (Linux), started once per process with
    the libraries imported, so a worker starts quickly and never inherits the threads (OpenMP's,
    torch's) of a process that has already trained: a plain fork of such a process could deadlock
    its child. Elsewhere, spawn."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def extract(
    dataset: Any,
    split: str,
    settings: Settings,
    *,
    workers: int | None = None,
    deadline: Callable[[int, float], bool] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Features:
    """The descriptors of every readable image of `dataset` (its `split`), from the cache where they
    are, extracted (and cached) where not, over `workers` processes (default: every core).

    deadline(images extracted so far, seconds per image): when it returns True, no further chunk is
    started, and the features are those of the chunks done (`complete` False).
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    folder = cache_folder(dataset, split, settings)
    folder.mkdir(parents=True, exist_ok=True)
    order = extraction_order(_dataset_labels(dataset))
    chunks = [order[i : i + CHUNK] for i in range(0, len(order), CHUNK)]
    paths = [folder / f"chunk-{k:05d}.npz" for k in range(len(chunks))]
    meta = folder / "meta.json"
    if not meta.exists():
        from .checkpoint import write_json_atomic

        write_json_atomic(meta, {"split": split, "images": len(order), "chunk": CHUNK,
                                 "image_size": settings.image_size, **settings.descriptor_key(),
                                 "data": _dataset_identity(dataset)})  # fmt: skip
    done: dict[int, dict[str, Any]] = {}
    for k, path in enumerate(paths):
        if path.exists() and (arrays := _read_chunk(path)) is not None:
            done[k] = arrays
    todo = [k for k in range(len(chunks)) if k not in done]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    extracted, began, stopped = 0, time.perf_counter(), False
    if todo:
        name = settings.descriptor_key()["descriptor"]
        log(f"Extracting {name} descriptors of {len(order)} {split} images "
            f"({len(chunks) - len(todo)} of {len(chunks)} chunks cached) with {workers} "
            f"process{'es' if workers > 1 else ''}; cache: {folder}")  # fmt: skip
        bar = _bar(sum(len(chunks[k]) for k in todo), f"{split} descriptors", progress)

        def finish(k: int, arrays: dict[str, Any]) -> None:
            nonlocal extracted
            _write_chunk(paths[k], arrays)
            done[k] = arrays
            extracted += len(chunks[k])
            if bar is not None:
                bar.update(len(chunks[k]))

        def time_up() -> bool:
            rate = (time.perf_counter() - began) / extracted if extracted else 0.0
            return deadline is not None and extracted > 0 and deadline(extracted, rate)

        try:
            if workers == 1:
                import cv2
                import torch

                threads = (torch.get_num_threads(), cv2.getNumThreads())
                _start_worker(dataset, settings)
                try:
                    for k in todo:
                        if time_up():
                            stopped = True
                            break
                        finish(k, _chunk(chunks[k]))
                finally:  # in this process: the threads a network trained next will want, given back
                    torch.set_num_threads(threads[0])
                    cv2.setNumThreads(threads[1])
            else:
                with ProcessPoolExecutor(workers, mp_context=_context(), initializer=_start_worker,
                                         initargs=(dataset, settings)) as pool:  # fmt: skip
                    waiting = list(todo)
                    running: dict[Any, int] = {}
                    while waiting or running:
                        while waiting and len(running) < 2 * workers and not stopped:
                            if time_up():
                                stopped = True
                                break
                            k = waiting.pop(0)
                            running[pool.submit(_chunk, chunks[k])] = k
                        if not running:
                            break
                        finished, _ = wait(running, return_when=FIRST_COMPLETED)
                        for future in finished:
                            finish(running.pop(future), future.result())
        finally:
            if bar is not None:
                bar.close()
    return _join(done, len(chunks), folder, extracted, complete=len(done) == len(chunks))


def _join(done: dict[int, dict[str, Any]], n: int, folder: Path, extracted: int, complete: bool) -> Features:
    parts = [done[k] for k in range(n) if k in done]
    skipped = [tuple(x) for p in parts for x in json.loads(str(p["skipped"]))]
    if not parts:
        raise ClassicalError(f"No descriptors were extracted into {folder}.")
    return Features(
        values=np.concatenate([p["values"] for p in parts]),
        labels=np.concatenate([p["labels"] for p in parts]),
        index=np.concatenate([p["index"] for p in parts]), skipped=skipped, folder=folder,
        extracted=extracted, complete=complete,
    )  # fmt: skip


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False, file=sys.stderr, disable=None)


# ---------------------------------------------------------------------------------------------------
# Encoding: a codebook (k-means, or PCA + a Gaussian mixture), then one vector per image


def _descriptor_sample(values: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` descriptors (float32) drawn without replacement from every image's, seeded."""
    flat = values.reshape(-1, values.shape[-1])
    rng = np.random.default_rng([seed, 1])
    pick = np.sort(rng.choice(len(flat), size=min(n, len(flat)), replace=False))
    return flat[pick].astype(np.float32)


def learn_codebook(values: np.ndarray, settings: Settings, seed: int) -> dict[str, np.ndarray]:
    """The arrays the encoding needs, learned on a seeded sample of the training descriptors:
    bow: `codebook` (words x 128) by MiniBatchKMeans; fisher: `pca_mean`, `pca_components`, and the
    mixture's `gmm_weights`, `gmm_means`, `gmm_variances` (diagonal)."""
    s = settings.resolved()
    sample = _descriptor_sample(values, s.sample, seed)
    if s.encoding == "bow":
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=s.words, random_state=seed, n_init=3, batch_size=4096,
                             max_iter=100)  # fmt: skip
        km.fit(sample)
        return {"codebook": km.cluster_centers_.astype(np.float32)}
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    pca = PCA(n_components=min(s.pca, sample.shape[1]), svd_solver="full").fit(sample)
    reduced = pca.transform(sample).astype(np.float64)
    gmm = GaussianMixture(n_components=s.words, covariance_type="diag", random_state=seed, max_iter=100,
                          reg_covar=1e-3).fit(reduced)  # fmt: skip
    return {"pca_mean": pca.mean_.astype(np.float32), "pca_components": pca.components_.astype(np.float32),
            "gmm_weights": gmm.weights_, "gmm_means": gmm.means_,
            "gmm_variances": gmm.covariances_}  # fmt: skip


def _cells(settings: Settings, level: int) -> np.ndarray:
    """Each descriptor's cell at pyramid level `level` (2**level x 2**level cells), row-major."""
    grid = settings.grid()
    g = 2**level
    cx = np.minimum((grid[:, 0] * g / settings.image_size).astype(np.int64), g - 1)
    cy = np.minimum((grid[:, 1] * g / settings.image_size).astype(np.int64), g - 1)
    return np.tile(cy * g + cx, len(settings.patches))  # the same grid at each patch side


def _assign(desc: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """The nearest word of each descriptor (rows of `desc`), by squared distance."""
    x = desc.astype(np.float32)
    dist = (codebook * codebook).sum(axis=1)[None, :] - 2.0 * (x @ codebook.T)
    return dist.argmin(axis=1)


def encode(values: np.ndarray, model: dict[str, np.ndarray], settings: Settings,
           batch: int = 64) -> np.ndarray:  # fmt: skip
    """One vector per image (rows of the result, float32): the descriptors `values` encoded."""
    s = settings.resolved()
    if s.pipeline == "hog-svm":
        return values.astype(np.float32)
    out = []
    for start in range(0, len(values), batch):
        part = values[start : start + batch]
        out.append(_bow(part, model, s) if s.encoding == "bow" else _fisher(part, model, s))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _l2(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def _bow(values: np.ndarray, model: dict[str, np.ndarray], s: Settings) -> np.ndarray:
    """Histograms of words per pyramid cell, each level's summing to its weight (Lazebnik et al.'s:
    1/2**(L-1) for the whole image, 1/2**(L-l) for level l >= 1), square-rooted (the Hellinger kernel,
    as a linear one) and L2-normalised."""
    n, p, _ = values.shape
    words = _assign(values.reshape(n * p, -1), model["codebook"]).reshape(n, p)
    k, top = len(model["codebook"]), s.levels - 1
    parts = []
    for level in range(s.levels):
        cells = _cells(s, level)
        g2 = 4**level
        codes = (np.arange(n)[:, None] * g2 + cells[None, :]) * k + words
        hist = np.bincount(codes.ravel(), minlength=n * g2 * k).reshape(n, g2 * k).astype(np.float32)
        weight = 1 / 2**top if level == 0 else 1 / 2 ** (top - level + 1)
        parts.append(hist * (weight / p))
    return _l2(np.sqrt(np.concatenate(parts, axis=1)))


def _fisher(values: np.ndarray, model: dict[str, np.ndarray], s: Settings) -> np.ndarray:
    """Fisher vectors (Perronnin et al. 2010) per pyramid cell: for each Gaussian k (weight w_k, mean
    mu_k, diagonal variance sigma_k^2) and the cell's descriptors x (after PCA), with gamma_k(x) the
    posterior of k, the means over the cell of gamma_k(x) (x - mu_k) / sigma_k / sqrt(w_k) and of
    gamma_k(x) ((x - mu_k)^2 / sigma_k^2 - 1) / sqrt(2 w_k); then sign(z) sqrt(|z|) and L2 per cell.
    Computed from the posteriors' zeroth, first and second moments, so nothing of size descriptors x
    Gaussians x dimensions is ever made."""
    n, p, _ = values.shape
    x = (values.reshape(n * p, -1).astype(np.float32) - model["pca_mean"]) @ model["pca_components"].T
    x = x.astype(np.float64)
    w, mu, var = model["gmm_weights"], model["gmm_means"], model["gmm_variances"]
    inv = 1.0 / var
    # log w_k + log N(x | mu_k, var_k), expanded: sum x^2/var - 2 x.(mu/var) + sum mu^2/var
    mahal = (x * x) @ inv.T - 2.0 * x @ (mu * inv).T + (mu * mu * inv).sum(axis=1)[None, :]
    log_p = np.log(w)[None, :] - 0.5 * (mahal + np.log(2 * np.pi * var).sum(axis=1)[None, :])
    log_p -= log_p.max(axis=1, keepdims=True)
    gamma = np.exp(log_p)
    gamma /= gamma.sum(axis=1, keepdims=True)
    gamma, x = gamma.reshape(n, p, -1), x.reshape(n, p, -1)
    sigma = np.sqrt(var)
    parts = []
    for level in range(s.levels):
        cells = _cells(s, level)
        member = (cells[:, None] == np.arange(4**level)[None, :]).astype(np.float64)  # p x cells
        count = np.maximum(member.sum(axis=0), 1.0)[None, :, None]  # descriptors per cell
        g = gamma[:, :, None, :] * member[None, :, :, None]  # n x p x cells x K
        s0 = g.sum(axis=1) / count  # n x cells x K
        s1 = np.einsum("npck,npd->nckd", g, x) / count[..., None]
        s2 = np.einsum("npck,npd->nckd", g, x * x) / count[..., None]
        d_mu = (s1 - s0[..., None] * mu) / sigma / np.sqrt(w)[:, None]
        d_var = ((s2 - 2 * mu * s1 + s0[..., None] * mu * mu) * inv - s0[..., None]) / np.sqrt(2 * w)[:, None]
        fv = np.concatenate([d_mu.reshape(n, member.shape[1], -1), d_var.reshape(n, member.shape[1], -1)], 2)
        fv = np.sign(fv) * np.sqrt(np.abs(fv))
        fv /= np.maximum(np.linalg.norm(fv, axis=2, keepdims=True), 1e-12)
        parts.append(fv.reshape(n, -1))
    return np.concatenate(parts, axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# The SVMs


def fit_svm(x: np.ndarray, y: np.ndarray, c: float, seed: int, classes: int) -> dict[str, np.ndarray]:
    """One-vs-rest linear SVMs (LinearSVC, squared hinge loss): `svm_coef` (classes x D), `svm_intercept`."""
    from sklearn.svm import LinearSVC

    present = np.unique(y)
    if len(present) < 2:
        raise ClassicalError(f"The training images hold {len(present)} class; an SVM needs at least two.")
    svm = LinearSVC(C=c, random_state=seed, max_iter=5000, dual=True).fit(x, y)
    coef = np.zeros((classes, x.shape[1]), np.float32)
    intercept = np.full(classes, -np.inf, np.float32)  # a class with no training image is never chosen
    if len(present) == 2:  # sklearn keeps one hyperplane for two classes: the second class's side
        coef[present[1]], intercept[present[1]] = svm.coef_[0], svm.intercept_[0]
        coef[present[0]], intercept[present[0]] = -svm.coef_[0], -svm.intercept_[0]
    else:
        coef[present], intercept[present] = svm.coef_, svm.intercept_
    return {"svm_coef": coef, "svm_intercept": intercept}


def scores(x: np.ndarray, model: dict[str, np.ndarray]) -> np.ndarray:
    """The SVMs' decision values, images x classes (higher: more that class)."""
    return x @ model["svm_coef"].T + model["svm_intercept"]


def _result(s: np.ndarray, labels: np.ndarray, classes: int):
    import torch

    from .evaluate import Meter

    meter = Meter(classes)
    meter.update(torch.from_numpy(np.nan_to_num(s, neginf=-1e30)), torch.from_numpy(labels))
    return meter.result("center")


# ---------------------------------------------------------------------------------------------------
# A run


@dataclass
class ClassicalConfig:
    """Everything a classical run needs; saved as RUN/config.json (with "classical": true)."""

    model: str
    settings: Settings
    data: str | None = None
    out: str | None = None
    seed: int = 0
    time_limit: float | None = None  # minutes
    workers: int | None = None  # extraction processes (None: every core)
    synthetic_classes: int = 10
    synthetic_train: int | None = None
    synthetic_val: int | None = None

    @property
    def image_size(self) -> int:
        return self.settings.image_size

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["settings"] = dataclasses.asdict(self.settings.resolved())
        return {"classical": True, **data, "image_size": self.image_size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassicalConfig:
        data = {k: v for k, v in data.items() if k not in ("classical", "image_size")}
        settings = dict(data.pop("settings"))
        settings["patches"] = tuple(settings["patches"])
        return cls(settings=Settings(**settings), **data)

    def check(self) -> None:
        self.settings.check()
        problems = []
        if not 0 <= self.seed < 2**32:
            problems.append(f"seed must be a whole number from 0 to 2**32 - 1, got {self.seed}")
        if self.workers is not None and self.workers < 1:
            problems.append(f"--workers takes 1 or more extraction processes, got {self.workers}")
        if self.time_limit is not None and not (math.isfinite(self.time_limit) and self.time_limit > 0):
            problems.append(f"--time-limit must be a positive number of minutes, got {self.time_limit}")
        if problems:
            raise ClassicalError("Bad training settings: " + "; ".join(problems) + ".")


def _open(config: ClassicalConfig, split: str, data: str | None = None):
    from .data import open_dataset

    source = round(config.image_size / CROP_FRACTION)  # the built-in data is drawn as the networks get it
    own = data is None and config.data is None
    length = (config.synthetic_train if split == "train" else config.synthetic_val) if own else None
    return open_dataset(data or config.data, split, image_size=source, seed=config.seed,
                        num_classes=config.synthetic_classes, length=length,
                        skip_unreadable=True)  # fmt: skip


def _new_run_dir(out: str | Path | None, name: str) -> Path:
    run = Path(out) if out else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run.exists() and any(run.iterdir()):
        raise ClassicalError(
            f"Run directory {run} already exists and is not empty; resume it with `ilsvrc train --resume "
            f"{run}` or choose another --out."
        )
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClassicalError(f"Cannot create run directory {run}: {exc.strerror or exc}.") from None
    return run


def train_classical(
    name: str,
    out: Path | str | None,
    *,
    data: str | None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = 0,
    time_limit: float | None = None,
    synthetic_train: int | None = None,
    synthetic_val: int | None = None,
    synthetic_classes: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    workers: int | None = None,
    **settings: Any,
) -> Path:
    """Train the classical pipeline `name` into the run directory `out` (default runs/NAME-DATE-TIME),
    on `data` (an image folder with train/ and val/) or the built-in data; returns the run directory.

    `settings`: fields of `Settings` (encoding, words, levels, svm_c, ...). time_limit (minutes) bounds
    the whole run: training images are extracted while the time used, plus the validation images'
    extraction at the rate measured, stays under 60% of it (the rest is for the codebook, encoding
    and SVM); the run then trains on the images extracted, and says how many (`train_images`).
    """
    if not is_classical(name):
        raise ClassicalError(f"{name!r} is not a classical pipeline; they are {', '.join(PIPELINES)}.")
    require_extras()
    config = ClassicalConfig(
        model=name, settings=Settings(pipeline=name, image_size=image_size, **settings),
        data=str(data) if data is not None else None, out=str(out) if out is not None else None, seed=seed,
        time_limit=time_limit, workers=workers, synthetic_classes=synthetic_classes or 10,
        synthetic_train=synthetic_train, synthetic_val=synthetic_val,
    )  # fmt: skip
    config.check()
    began = time.perf_counter()
    train_set, val_set = _open(config, "train"), _open(config, "val")
    from .checkpoint import write_json_atomic
    from .data import check_splits, save_classes

    check_splits(train_set, val_set)
    run = _new_run_dir(config.out, name)
    config.out = str(run)
    write_json_atomic(run / "config.json", config.to_dict())
    save_classes(run / "classes.json", list(train_set.classes))
    (run / "metrics.jsonl").write_text("")
    return _fit(run, config, train_set, val_set, began, progress, log)


def resume_classical(run: str | Path, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Finish a classical run that was stopped before its model was written: the cached descriptors
    are kept, so only what is missing is extracted."""
    run = Path(run)
    config = ClassicalConfig.from_dict(json.loads((run / "config.json").read_text(encoding="utf-8")))
    if (run / MODEL_FILE).is_file():
        raise ClassicalError(
            f"Nothing left to do: the classical run {run} is trained ({run / MODEL_FILE}); it has no epochs "
            f"to add. Evaluate it with `ilsvrc eval {run}`, or train a new run with another --out."
        )
    require_extras()
    began = time.perf_counter()
    train_set, val_set = _open(config, "train"), _open(config, "val")
    from .data import check_splits

    check_splits(train_set, val_set)
    (run / "metrics.jsonl").write_text("")
    return _fit(run, config, train_set, val_set, began, progress, log)


def _fit(run: Path, config: ClassicalConfig, train_set: Any, val_set: Any, began: float, progress: bool,
         log: Callable[[str], None]) -> Path:  # fmt: skip
    """Descriptors, codebook, encoding, SVMs, validation; the model and the metrics line written."""
    s = config.settings.resolved()
    classes = len(train_set.classes)
    limit = config.time_limit * 60 if config.time_limit else None

    def deadline(extracted: int, rate: float) -> bool:
        return limit is not None and (time.perf_counter() - began) + rate * len(val_set) >= 0.6 * limit

    train = extract(
        train_set, "train", s, workers=config.workers, deadline=deadline, progress=progress, log=log
    )
    val = extract(val_set, "val", s, workers=config.workers, progress=progress, log=log)
    extracted = time.perf_counter() - began
    if not train.complete:
        log(f"The time limit left room for the descriptors of {len(train.labels)} of {len(train_set)} "
            "training images; training on those.")  # fmt: skip
    for path, reason in train.skipped + val.skipped:
        log(f"Skipped unreadable image {path}: {reason}")
    fit_began = time.perf_counter()
    with _one_thread():
        model, x_train = _learn(train, s, config, classes, log)
    fit_seconds = time.perf_counter() - fit_began
    train_result = _result(scores(x_train, model), train.labels, classes)
    eval_began = time.perf_counter()
    with _one_thread():
        val_scores = scores(encode(val.values, model, s), model)
    val_result = _result(val_scores, val.labels, classes)
    eval_seconds = time.perf_counter() - eval_began
    _write_model(run / MODEL_FILE, model)
    line = {
        "epoch": 1, "step": len(train.labels), "train_loss": None,
        "train_top1_error": train_result.top1_error, "train_top5_error": train_result.top5_error,
        "val_top1_error": val_result.top1_error, "val_top5_error": val_result.top5_error, "lr": None,
        "images_per_s": len(train.labels) / max(extracted + fit_seconds, 1e-9),
        "seconds": round(time.perf_counter() - began, 3), "eval_seconds": round(eval_seconds, 3),
        "extract_seconds": round(extracted, 3), "fit_seconds": round(fit_seconds, 3),
        "extracted_images": train.extracted + val.extracted, "complete": True,
        "train_images": len(train.labels), "val_images": len(val.labels), "features": int(x_train.shape[1]),
        "skipped_images": len(train.skipped) + len(val.skipped), "skipped_train": len(train.skipped),
        "skipped_val": len(val.skipped), "descriptor_cache": [str(train.folder), str(val.folder)],
    }  # fmt: skip
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    log(f"{config.model}: top-1 error train {train_result.top1_error:.3f} val {val_result.top1_error:.3f}, "
        f"top-5 val {val_result.top5_error:.3f} ({line['seconds']:.0f} s). Run directory: {run}")  # fmt: skip
    return run


def _learn(train: Features, s: Settings, config: ClassicalConfig, classes: int,
           log: Callable[[str], None]) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """The codebook (sift-bow) and the SVMs, learned on the training descriptors; and the training
    images' encoded features."""
    model: dict[str, np.ndarray] = {}
    if s.pipeline == "sift-bow":
        what = f"{s.words}-word codebook (k-means)" if s.encoding == "bow" else f"{s.words}-Gaussian mixture"
        log(f"Learning a {what} from {min(s.sample, train.values.shape[0] * train.values.shape[1])} "
            "descriptors")  # fmt: skip
        model.update(learn_codebook(train.values, s, config.seed))
    x_train = encode(train.values, model, s)
    log(f"Training {classes} linear SVMs on {len(x_train)} images x {x_train.shape[1]} features")
    model.update(fit_svm(x_train, train.labels, float(s.svm_c), config.seed, classes))
    return model, x_train


def _one_thread():
    """scikit-learn's and numpy's thread pools held to one thread: on a machine whose cores are busy,
    OpenMP's waiting threads made MiniBatchKMeans 15 times slower (38 s against 2 s for 64 words on
    20,000 descriptors, 2 cores under a load of 8); the extraction is where the cores are used."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _write_model(path: Path, model: dict[str, np.ndarray]) -> None:
    _write_chunk(path, model)


def load_model(run: str | Path) -> tuple[dict[str, np.ndarray], ClassicalConfig, list, Path]:
    """(model arrays, config, classes, model file) of a classical run directory."""
    from .data import load_classes

    run = Path(run)
    path = run / MODEL_FILE
    try:
        config = ClassicalConfig.from_dict(json.loads((run / "config.json").read_text(encoding="utf-8")))
        with np.load(path, allow_pickle=False) as z:
            model = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ClassicalError(
            f"The classical run {run} has no {MODEL_FILE}: it stopped before its SVMs were trained. Finish "
            f"it with `ilsvrc train --resume {run}` (its cached descriptors are kept)."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClassicalError(f"{path} (or its config.json) cannot be read: {exc}.") from None
    return model, config, load_classes(run / "classes.json"), path


def evaluate_classical(run: str | Path, data: str | None = None, workers: int | None = None,
                       progress: bool = False):  # fmt: skip
    """(EvalResult, model file, classes) of a classical run on `data`'s val split (default: its own),
    centre protocol; the descriptors come from (and go to) the cache."""
    require_extras()
    model, config, classes, path = load_model(run)
    base = _open(config, "val", data)
    theirs, ours = [c.id for c in base.classes], [c.id for c in classes]
    if theirs != ours:
        raise ClassicalError(
            f"The classes of {data} ({', '.join(theirs[:5])}...) are not the ones the run was trained on "
            f"({', '.join(ours[:5])}...); evaluate on data with the same class folders."
        )
    s = config.settings.resolved()
    val = extract(base, "val", s, workers=workers, progress=progress, log=lambda _: None)
    with _one_thread():
        values = scores(encode(val.values, model, s), model)
    return _result(values, val.labels, len(classes)), path, classes


def predict_classical(
    run: str | Path, images: list[str], k: int = 5
) -> list[tuple[str, list[tuple[Any, float]]]]:
    """The k best classes of each image file, with the softmax of the SVMs' decision values (a ranking
    made to sum to one, not a calibrated probability)."""
    from .images import read_image

    require_extras()
    model, config, classes, _ = load_model(run)
    s = config.settings.resolved()
    out = []
    for path in images:
        values = describe(_pixels(read_image(path), s.image_size), s)[None]
        z = scores(encode(values, model, s), model)[0].astype(np.float64)
        z = np.exp(z - z[np.isfinite(z)].max())
        p = z / z.sum()
        top = np.argsort(-p, kind="stable")[: min(k, len(classes))]
        out.append((path, [(classes[i], float(p[i])) for i in top]))
    return out
