"""Checkpoints that survive a crash at any moment.

A checkpoint is a directory `RUN/checkpoints/step-0001234/` holding `model.safetensors` (the weights)
and `state.pt` (optimizer, schedule, random-number states, epoch, step, config; plain tensors and
Python values, read back with `torch.load(weights_only=True)`, which runs no code), and, for a run that
averages its weights (GoogLeNet's Polyak averaging), `averaged.safetensors`: the averaged model's state
dict (`module.`-prefixed weights and `n_averaged`). It is written
under a temporary name and renamed into place only when both files are complete and synced, and only
then do the small pointer files `last.json` and `best.json` (themselves replaced atomically) name it.
A run killed at any instant therefore leaves the previous checkpoint intact and pointed to.
Directories that no pointer names are removed after each save.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import IlsvrcError

WEIGHTS = "model.safetensors"
STATE = "state.pt"
AVERAGED = "averaged.safetensors"


class CheckpointError(IlsvrcError):
    """A checkpoint cannot be found, read or written."""


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with JSON text in one step (temporary file, fsync, rename)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save(
    run_dir: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
    best: bool = False,
    averaged: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint of `weights` and `state` at `step` (and `averaged`, the state dict of the
    averaged weights, when given); point `last` (and `best`) at it."""
    root = Path(run_dir) / "checkpoints"
    try:
        root.mkdir(parents=True, exist_ok=True)
        name = f"step-{step:07d}"
        final = root / name
        n = 1
        while final.exists():
            final = root / f"{name}-{n}"
            n += 1
        tmp = root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        files = [WEIGHTS, STATE]
        save_file(_plain(weights), tmp / WEIGHTS, metadata={"format": "pt"})
        torch.save({**state, "averaged": averaged is not None}, tmp / STATE)
        if averaged is not None:
            save_file(_plain(averaged), tmp / AVERAGED, metadata={"format": "pt"})
            files.append(AVERAGED)
        for f in files:
            _fsync(tmp / f)
        os.replace(tmp, final)
        _fsync(root)
        pointer = {"dir": final.name, "step": step, "epoch": state.get("epoch")}
        write_json_atomic(root / "last.json", pointer)
        if best:
            write_json_atomic(root / "best.json", pointer)
    except (OSError, RuntimeError, SafetensorError) as exc:  # torch.save and safetensors wrap OSErrors
        shutil.rmtree(locals().get("tmp", root / ".none"), ignore_errors=True)
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
        try:
            reason += f" ({shutil.disk_usage(root).free // 1024:,} KB free there)"
        except OSError:
            pass
        raise CheckpointError(
            f"Could not write a checkpoint in {root}: {reason}. The previous checkpoint "
            "is intact; free some space or choose another --out, then resume."
        ) from None
    _prune(root)
    return final


def _plain(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (what safetensors writes)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def _pointed(root: Path) -> set[str]:
    names = set()
    for pointer in ("last.json", "best.json"):
        try:
            names.add(json.loads((root / pointer).read_text())["dir"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return names


def _prune(root: Path) -> None:
    keep = _pointed(root)
    for path in root.iterdir():
        if path.is_dir() and path.name.startswith("step-") and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def resolve(path: str | Path, which: str = "last") -> Path:
    """The checkpoint directory for a run directory, its checkpoints folder, a checkpoint directory
    or a file inside one. `which` picks `last` or `best` when given a run."""
    p = Path(path)
    if p.is_file() and p.name in (WEIGHTS, STATE):
        p = p.parent
    if (p / WEIGHTS).is_file() and (p / STATE).is_file():
        return p
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    pointer = root / f"{which}.json"
    if not p.exists():
        raise CheckpointError(f"{p} does not exist; give a run directory or a checkpoint directory.")
    try:
        name = json.loads(pointer.read_text())["dir"]
        if not isinstance(name, str) or not name.startswith("step-") or "/" in name or "\\" in name:
            raise ValueError(f"{pointer} names {name!r}, not a checkpoint directory beside it")
        target = root / name
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(
            f"{p} holds no readable checkpoint ({pointer.name} is missing or damaged); give a run "
            "directory written by `ilsvrc train` or a checkpoint directory."
        ) from None
    if not ((target / WEIGHTS).is_file() and (target / STATE).is_file()):
        raise CheckpointError(f"Checkpoint {target} is incomplete (needs {WEIGHTS} and {STATE}).")
    return target


def load(path: str | Path, which: str = "last") -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """(weights, state, checkpoint directory). Refuses files that would run code when loaded."""
    ckpt = resolve(path, which)
    try:
        weights = load_file(ckpt / WEIGHTS)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{ckpt / WEIGHTS} is not a readable safetensors file: {exc}.") from None
    try:
        state = torch.load(ckpt / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # an UnpicklingError names what it refused
        raise CheckpointError(
            f"{ckpt / STATE} was refused: it is damaged or holds objects other than tensors and plain "
            f"values (nothing in it was run). Details: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt / STATE} does not hold a checkpoint state dictionary.")
    if state.get("averaged") and not (ckpt / AVERAGED).is_file():
        raise CheckpointError(f"Checkpoint {ckpt} is incomplete: its run averages its weights, and "
                              f"{AVERAGED} is missing.")  # fmt: skip
    return weights, state, ckpt


def load_averaged(ckpt: Path) -> dict[str, torch.Tensor] | None:
    """The averaged weights of the checkpoint directory `ckpt` (the state dict of a
    torch.optim.swa_utils.AveragedModel), or None when its run does not average its weights."""
    path = Path(ckpt) / AVERAGED
    if not path.is_file():
        return None
    try:
        return load_file(path)
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}.") from None
