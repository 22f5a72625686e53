"""Decoded images kept on disk: every image of a folder dataset decoded once, then memory-mapped.

Decoding a JPEG costs more than everything an epoch does to it afterwards (crop, flip, normalise), and
it is the same work every epoch. `DecodedImages` decodes each file once with `images.read_image` (so the
pixels are exactly those the uncached path gives), writes them one after another into a single file,
and afterwards reads an image as a slice of a memory-mapped array: a copy of about 150 KB instead of a
decode. Loader workers share the mapping (the page cache holds it once).

Pixels are stored H x W x 3 and handed out as a 3 x H x W view of that memory (channels-last strides):
torch's uint8 antialiased resize, the heart of every crop-and-resize augmentation, has a vectorised
path for that layout, faster than on planar 3 x H x W images (by how much: benchmarks/RESULTS.md, "The
data pipeline's parts", made by benchmarks/pipeline_parts.py). The values are the same.

The cache lives in `ILSVRC_CACHE_DIR` (default `~/.cache/ilsvrc`), one folder (an *entry*) per list of
files, named by a hash of the files' paths, sizes and modification times: a changed, added or removed
file makes a new entry, never stale pixels. An entry is written under a temporary name and renamed when
complete, so a crash leaves no half entry.

The entries together stay under a cap, `ILSVRC_CACHE_MAX_GB` gibibytes (default 8; 0 caches nothing):
before an entry is built, the least recently used entries are removed whole until the new one fits,
and a data set that cannot fit is not cached. An entry in use is never removed: each process that opens
an entry (or builds one) holds a shared `flock` on its `lock` file for as long as it uses it (loader
workers inherit it), and removal first takes the lock exclusively without waiting, then renames the
entry away before deleting it, so a process opening it meanwhile sees it gone and builds it anew. The
kernel drops a dead process's locks, so a crash leaves nothing locked. "Last used" is the time the
`used` file was last touched: when the entry was built or last opened.

This module imports torch only to hand out images: `entries`, `clear` and `make_room` (what
`ilsvrc cache` runs) need numpy alone.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IlsvrcError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; an open memory-mapped file cannot be removed there
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

GIB = 2**30
DEFAULT_CAP_GIB = 8.0  # an Imagenette-sized data set (a few GiB decoded) several times over
PIXELS, INDEX, REASONS = "pixels.u8", "index.npy", "unreadable.json"
META, LOCK, USED = "meta.json", "lock", "used"  # where from; held while in use; touched when opened
_ENTRY_NAME = re.compile(r"[0-9a-f]{24}")  # only folders named like this are ever treated as entries
_TMP, _TRASH = ".tmp-", ".trash-"


class CacheError(IlsvrcError):
    """The cache folder or its cap setting is unusable, or an entry cannot be removed."""


class CacheFull(CacheError):
    """A data set would not fit under the cap, even with every unused entry removed."""


def cache_root() -> Path:
    """`ILSVRC_CACHE_DIR`, or `~/.cache/ilsvrc`."""
    return Path(os.environ.get("ILSVRC_CACHE_DIR") or Path.home() / ".cache" / "ilsvrc")


def cap_bytes() -> int:
    """The cap on all entries together, in bytes: `ILSVRC_CACHE_MAX_GB` GiB (default 8)."""
    text = os.environ.get("ILSVRC_CACHE_MAX_GB", "").strip()
    if not text:
        return int(DEFAULT_CAP_GIB * GIB)
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and gib >= 0):
        raise CacheError(
            f"ILSVRC_CACHE_MAX_GB is {text[:40]!r}, not a size in GiB: set it to a number such as 8 (the "
            f"cap on the decoded-image cache in GiB; 0 caches nothing), or unset it for the default "
            f"{DEFAULT_CAP_GIB:g} GiB."
        )
    return int(gib * GIB)


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
    from .images import DataError, read_image

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


# --------------------------------------------------------------------------------------------------
# Locks: a shared lock while an entry is used or built, an exclusive one (never waited for) to remove it


def _flock(fd: int, exclusive: bool, wait: bool) -> bool:
    """Lock `fd`; False when `wait` is off and another open file holds a conflicting lock."""
    if fcntl is None:
        return True
    flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, flags)
    except BlockingIOError:
        return False
    return True


def _open_lock(folder: Path) -> int:
    """A descriptor of `folder/lock` (created if missing; read-only when the folder is)."""
    try:
        return os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        return os.open(folder / LOCK, os.O_RDONLY)


def _hold(folder: Path) -> int | None:
    """A shared lock on the complete entry `folder` (its descriptor, to keep open while the entry is
    used), or None when there is no such entry (never built, or removed while we waited)."""
    try:
        fd = _open_lock(folder)
    except OSError:
        return None
    _flock(fd, exclusive=False, wait=True)  # waits out a removal in progress (a rename: an instant)
    try:
        current = os.stat(folder / LOCK).st_ino == os.fstat(fd).st_ino and (folder / INDEX).is_file()
    except OSError:
        current = False
    if not current:  # the entry was renamed away while we waited: it is gone
        os.close(fd)
        return None
    return fd


def _busy(folder: Path) -> bool:
    """Whether a process holds `folder`'s lock (uses or builds it). Takes and drops it if free."""
    try:
        fd = _open_lock(folder)
    except OSError:
        return False
    try:
        return not _flock(fd, exclusive=True, wait=False)
    finally:
        os.close(fd)  # closing drops the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache is still readable
        path.touch()


# --------------------------------------------------------------------------------------------------
# Entries: what is in the cache, and removing them


@dataclass(frozen=True)
class Entry:
    """One cache entry (or one being built). Sizes in bytes, times in seconds since the epoch.

    `state`: "ready" (complete, no process uses it), "in use" (a process has it open), "building"
    (a live process is writing it) or "abandoned" (a build whose process died; removed on sight).
    `source` is the data set folder the images came from and `split` its split ("" when unknown).
    """

    key: str
    folder: Path
    source: str
    split: str
    images: int
    unreadable: int
    bytes: int
    last_used: float
    state: str
    pid: int | None = None  # the building process, for "building" and "abandoned"

    def to_dict(self) -> dict:
        used = datetime.fromtimestamp(self.last_used).astimezone().isoformat(timespec="seconds")
        return {"key": self.key, "folder": str(self.folder), "source": self.source, "split": self.split,
                "images": self.images, "unreadable": self.unreadable, "bytes": self.bytes,
                "last_used": used, "state": self.state}  # fmt: skip


def _folder_bytes(folder: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for child in folder.iterdir():
            with contextlib.suppress(OSError):
                total += child.stat().st_size if child.is_file() else 0
    return total


def _read_entry(folder: Path, key: str, state: str, pid: int | None = None) -> Entry:
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError):
        meta = {}  # an entry built before meta.json existed, or one just begun
    images = meta.get("images")
    if images is None:
        try:
            images = int(np.load(folder / INDEX, mmap_mode="r").shape[0])
        except (OSError, ValueError):
            images = 0
    last_used = 0.0
    for stamp in (folder / USED, folder / INDEX, folder):  # an older entry has no `used` file
        with contextlib.suppress(OSError):
            last_used = stamp.stat().st_mtime
            break
    return Entry(key, folder, str(meta.get("source", "")), str(meta.get("split", "")), int(images),
                 int(meta.get("unreadable", 0)), _folder_bytes(folder), last_used, state, pid)  # fmt: skip


def entries(root: Path | None = None) -> list[Entry]:
    """Every entry in `root` (default `cache_root()`), and every build in progress or abandoned, least
    recently used first. An absent folder has none."""
    root = Path(root or cache_root())
    try:
        children = sorted(root.iterdir()) if root.exists() else []
    except OSError as error:
        raise CacheError(
            f"Cannot read the decoded-image cache folder {root}: {error.strerror or error}. Point "
            "ILSVRC_CACHE_DIR at a folder (or unset it for ~/.cache/ilsvrc)."
        ) from None
    found = []
    for child in children:
        if not child.is_dir():
            continue
        if _ENTRY_NAME.fullmatch(child.name):
            found.append(_read_entry(child, child.name, "in use" if _busy(child) else "ready"))
        elif child.name.startswith(_TMP):
            key, _, pid_text = child.name[len(_TMP) :].rpartition("-")
            pid = int(pid_text) if pid_text.isdigit() else None
            building = _busy(child) or (pid is not None and _alive(pid))
            found.append(_read_entry(child, key, "building" if building else "abandoned", pid))
    return sorted(found, key=lambda e: e.last_used)


def _remove(entry: Entry) -> str | None:
    """Remove `entry` whole; None when done, else why it was kept."""
    try:
        fd = _open_lock(entry.folder)
    except FileNotFoundError:
        return None if not entry.folder.exists() else "cannot be locked"
    except OSError as error:
        return f"cannot be locked ({error.strerror or error})"
    try:
        building = entry.folder.name.startswith(_TMP)
        if not _flock(fd, exclusive=True, wait=False):
            return f"being built by process {entry.pid}" if building else "in use by a running process"
        if building and entry.pid is not None and _alive(entry.pid):
            return f"being built by process {entry.pid}"
        trash = entry.folder.with_name(f"{_TRASH}{entry.key}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(entry.folder, trash)  # from now on no process can open it
        except OSError as error:
            return f"cannot be removed ({error.strerror or error})"
    finally:
        os.close(fd)  # drops the lock: a process waiting to open the entry finds it gone
    shutil.rmtree(trash, ignore_errors=True)
    return None


def _sweep(root: Path) -> None:
    """Delete what removals and dead builds left behind (`.trash-*`, abandoned `.tmp-*`)."""
    with contextlib.suppress(OSError):
        for child in root.iterdir():
            if child.name.startswith(_TRASH):
                shutil.rmtree(child, ignore_errors=True)
    for entry in entries(root):
        if entry.state == "abandoned":
            _remove(entry)


def make_room(root: Path, needed: int, cap: int) -> tuple[list[Entry], bool]:
    """Remove the least recently used unused entries of `root` until `needed` more bytes fit under
    `cap` bytes. Returns the entries removed and whether the room is there now; entries in use and
    builds in progress are never removed (nor counted out: they take their room)."""
    _sweep(root)
    present = entries(root)
    total = sum(e.bytes for e in present)
    removed = []
    for entry in present:  # least recently used first
        if total + needed <= cap:
            break
        if entry.state == "ready" and _remove(entry) is None:
            total -= entry.bytes
            removed.append(entry)
            logger.info("evicted the decoded-image cache entry %s (%s, %d bytes)", entry.key, entry.source,
                        entry.bytes)  # fmt: skip
    return removed, total + needed <= cap


def select(
    found: Iterable[Entry], *, everything: bool = False, older_than_days: float | None = None,
    pattern: str | None = None, now: float | None = None,
) -> list[Entry]:  # fmt: skip
    """The entries `ilsvrc cache clear` would remove: all, those unused for more than
    `older_than_days` days, or those whose data set folder matches the shell pattern `pattern` (an
    existing folder given as a relative path counts as its absolute path) or whose key starts with it."""
    found = list(found)
    if everything:
        return found
    if older_than_days is not None:
        limit = (time.time() if now is None else now) - older_than_days * 86400
        return [e for e in found if e.last_used < limit]
    assert pattern is not None
    full = str(Path(pattern).resolve()) if Path(pattern).is_dir() else pattern
    return [e for e in found if e.key.startswith(pattern) or
            any(fnmatch.fnmatchcase(e.source, p) for p in (pattern, full))]  # fmt: skip


def clear(chosen: Iterable[Entry]) -> tuple[list[Entry], list[tuple[Entry, str]]]:
    """Remove the `chosen` entries: (those removed, (those kept, why)). In use or being built: kept."""
    removed, kept = [], []
    for entry in chosen:
        if entry.state in ("in use", "building"):
            kept.append((entry, "in use by a running process" if entry.state == "in use"
                         else f"being built by process {entry.pid}"))  # fmt: skip
            continue
        why = _remove(entry)
        if why is None:
            removed.append(entry)
        else:
            kept.append((entry, why))
    return removed, kept


# --------------------------------------------------------------------------------------------------
# The decoded images


class DecodedImages:
    """The uint8 3 x H x W pixels of `paths`, decoded once into `root/<hash>/` and memory-mapped.

    Opens the entry if it exists, else builds it, first removing least recently used entries so that
    the cache stays under `cap` bytes (default `cap_bytes()`; raises `CacheFull` when even that leaves
    too little room). `source` and `split` (default: the files' common folder) are recorded for
    `ilsvrc cache list`; `needed` is the expected decoded size in bytes (default: estimated).
    The entry stays locked (never evicted) until this object is garbage-collected.

    `get(i)` returns the image tensor, or raises the `DataError` that decoding the file raised (with
    the same message). Build cost: one decode per file, with a progress bar when `progress` is set.
    """

    def __init__(
        self, paths: Sequence[Path], root: Path | None = None, progress: bool = False, *,
        source: str | None = None, split: str = "", cap: int | None = None, needed: int | None = None,
    ) -> None:  # fmt: skip
        self.paths = [Path(p) for p in paths]
        self.root = Path(root or cache_root())
        self.folder = self.root / _key(self.paths)
        fd = _hold(self.folder)
        built = fd is None
        if built:
            cap = cap_bytes() if cap is None else cap
            if source is None:
                source = os.path.commonpath([str(p.resolve()) for p in self.paths]) if self.paths else ""
            fd = self._build(progress, source, split, cap, needed)
        _touch(self.folder / USED)
        self._lock = fd
        weakref.finalize(self, os.close, fd)  # closing the last copy of it (workers share it) unlocks
        self._map()
        if built:  # the estimate can fall short: others make way, never this one (locked)
            make_room(self.root, 0, cap)

    def _map(self) -> None:
        self.index = np.load(self.folder / INDEX)  # rows: offset, height, width (offset -1: unreadable)
        self.reasons = json.loads((self.folder / REASONS).read_text())
        empty = (self.folder / PIXELS).stat().st_size == 0  # np.memmap refuses an empty file
        self.pixels = np.zeros(0, np.uint8) if empty else np.memmap(self.folder / PIXELS, np.uint8, mode="r")
        # what `get` reads, without numpy's per-call overheads: the mapping as a plain array (slicing
        # an np.memmap makes a memmap object each time) and the index as Python ints
        self._flat = self.pixels.view(np.ndarray)
        self._rows = self.index.tolist()

    def __getstate__(self) -> dict:
        """Pickled (a loader worker under spawn): the names, not the pixels nor the lock."""
        return {"paths": self.paths, "root": self.root, "folder": self.folder}

    def __setstate__(self, state: dict) -> None:
        from .images import DataError

        self.__dict__.update(state)
        fd = _hold(self.folder)
        if fd is None:
            raise DataError(f"The decoded-image cache entry {self.folder} is gone; run again to rebuild it.")
        self._lock = fd
        weakref.finalize(self, os.close, fd)
        self._map()

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> Tensor:
        import torch

        offset, height, width = self._rows[i]
        if offset < 0:
            from .images import DataError

            raise DataError(self.reasons[str(i)]["message"])
        flat = self._flat[offset : offset + 3 * height * width]
        hwc = torch.from_numpy(flat.reshape(height, width, 3).copy())  # a copy: writable, unshared
        return hwc.permute(2, 0, 1)  # 3 x H x W, channels-last in memory (see the module's note)

    def reason(self, i: int) -> str | None:
        """The short reason recorded for an unreadable file (None for a readable one)."""
        entry = self.reasons.get(str(i))
        return entry["reason"] if entry else None

    def _build(self, progress: bool, source: str, split: str, cap: int, needed: int | None) -> int:
        """Write the entry under a temporary name and rename it; returns its lock, held shared."""
        from .images import DataError, read_image, unreadable_reason

        tmp = self.folder.with_name(f"{_TMP}{self.folder.name}-{os.getpid()}")
        index = np.zeros((len(self.paths), 3), dtype=np.int64)
        reasons: dict[str, dict[str, str]] = {}
        offset = 0
        bar = None
        fd = None
        meta = {"source": source, "split": split, "images": len(self.paths), "created": time.time()}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            needed = estimated_bytes(self.paths) if needed is None else needed
            _, fits = make_room(self.root, needed, cap)
            if not fits:
                raise CacheFull(
                    f"{len(self.paths)} images of {source} take about {needed / GIB:.2f} GiB decoded, more "
                    f"than the {cap / GIB:.2f} GiB cap (ILSVRC_CACHE_MAX_GB) leaves beside the entries in "
                    "use; raise the cap or free entries (`ilsvrc cache list`, `ilsvrc cache clear`)."
                )
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            fd = _open_lock(tmp)
            _flock(fd, exclusive=False, wait=True)  # "building": no removal while we write
            (tmp / META).write_text(json.dumps(meta))
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(self.paths), desc=f"decoding {len(self.paths)} images once", unit="img",
                           leave=False)  # fmt: skip
            with open(tmp / PIXELS, "wb") as out:
                for i, path in enumerate(self.paths):
                    try:
                        image = read_image(path)
                    except DataError as error:
                        index[i] = (-1, 0, 0)
                        reasons[str(i)] = {"message": str(error), "reason": unreadable_reason(path, error)}
                    else:
                        out.write(image.permute(1, 2, 0).numpy().tobytes())  # stored H x W x 3
                        index[i] = (offset, image.shape[1], image.shape[2])
                        offset += image.numel()
                    if bar is not None:
                        bar.update()
            np.save(tmp / INDEX, index)
            (tmp / REASONS).write_text(json.dumps(reasons))
            (tmp / META).write_text(json.dumps({**meta, "unreadable": len(reasons), "bytes": offset}))
            (tmp / USED).touch()
            try:
                os.replace(tmp, self.folder)
            except OSError:  # another process (a torchrun rank) finished the same entry first
                os.close(fd)
                fd = _hold(self.folder)
                if fd is None:
                    raise
            held, fd = fd, None
            return held
        except OSError as error:
            raise DataError(
                f"Cannot write the decoded-image cache in {self.root}: {error.strerror or error}. "
                "Set ILSVRC_CACHE_DIR to a folder with room, or train with --no-cache."
            ) from None
        finally:
            if fd is not None:
                os.close(fd)
            shutil.rmtree(tmp, ignore_errors=True)
            if bar is not None:
                bar.close()


def describe(entry: Entry) -> str:
    """`/data/imagenette (train)`: where an entry's images came from, for messages."""
    where = entry.source or "an unknown data set (built by an older ilsvrc)"
    return f"{where} ({entry.split})" if entry.split else where


__all__ = ["CacheError", "CacheFull", "DecodedImages", "Entry", "cache_root", "cap_bytes", "clear",
           "describe", "entries", "estimated_bytes", "free_bytes", "make_room", "select"]  # fmt: skip
