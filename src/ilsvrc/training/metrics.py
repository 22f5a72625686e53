"""Reading a run directory without torch (so `ilsvrc plot` and `ilsvrc report` stay instant): its
metrics.jsonl, and the network it trained (config.json and classes.json, see `run_network`).

A run directory's `metrics.jsonl` holds one JSON object per line, written once per epoch by
`ilsvrc train`: `epoch`, `step`, `train_loss` (cross-entropy, nats), `train_top1_error`,
`val_top1_error`, `val_top5_error` (errors as fractions in [0, 1]; null when no validation image could
be read, or when the epoch was not validated: `evaluated` false, before the recipe's `eval_from`),
`lr`, `image_size` (the epoch's training size, which a size schedule changes), `images_per_s`
(training images over the time of the training steps, data waits included, evaluations and
checkpoints not), `seconds` (wall-clock seconds since the run started, evaluations included),
`eval_seconds`, `train_seconds` (the epoch's training steps, data waits included), `estimate` (in the
line of the epoch in which `ilsvrc train` estimated the run's time: see
`ilsvrc.analysis.estimate.StepEstimate`), `complete` (false for a line written by a run stopped
mid-epoch), and counters such as `skipped_images`. Every line has the `step` of the state it describes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IlsvrcError
from ..networks.spec import Network

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"


class RunError(IlsvrcError):
    """A run directory that is missing, or holds no metrics to show."""


def _parse_lines(text: str) -> list[dict[str, Any]]:
    """The JSON lines of metrics.jsonl, leaving out a last line a crash cut short."""
    out = []
    for x in text.splitlines():
        try:
            out.append(json.loads(x))
        except ValueError:
            continue
    return out


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every readable line of `run_dir/metrics.jsonl`, in file order (OSError if it cannot be read)."""
    return _parse_lines((Path(run_dir) / METRICS_FILE).read_text())


def _run_directory(run_dir: str | Path, holds: str = "") -> Path:
    """`run_dir` as a Path; RunError if it is not a directory (`holds`: what it should hold, said)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise RunError(
            f"{run} is not a directory. Give the run directory that `ilsvrc train` wrote (its --out, "
            f"by default runs/MODEL-DATE-TIME){holds}."
        )
    return run


def load_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """The metric lines of one run for plotting: objects with an `epoch`, in file order.

    Raises RunError (one paragraph, what to do) when the directory or its metrics.jsonl is missing or
    unreadable, or when it holds no line with an epoch (a run stopped before its first epoch ended).
    """
    run = _run_directory(run_dir, f", which holds {METRICS_FILE}")
    path = run / METRICS_FILE
    try:
        lines = read_metrics(run)
    except FileNotFoundError:
        raise RunError(
            f"{run} has no {METRICS_FILE}, so it is not a run directory of `ilsvrc train` or the run "
            "ended before its first epoch; give a run directory that holds one."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    rows = [x for x in lines if isinstance(x, dict) and isinstance(x.get("epoch"), (int, float))]
    if not rows:
        raise RunError(
            f"{path} holds no metrics line with an epoch: the run ended before its first epoch "
            "finished. Train for at least one epoch (or resume it with `ilsvrc train --resume`)."
        )
    return rows


@dataclass(frozen=True)
class RunNetwork:
    """The network a run trained, as it trained it: its input and its number of classes."""

    model: str  # as `ilsvrc train` was given it: a zoo name or the path of a spec file
    network: Network  # the last layer gives `num_classes` outputs; input_shape is the training input
    image_size: int  # the training crop's side, in pixels
    num_classes: int


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(
            f"{path.parent} has no {path.name}, so it is not a run directory of `ilsvrc train` (which "
            f"writes {what} there); give the run directory itself (its --out)."
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}.") from None


def run_network(run_dir: str | Path) -> RunNetwork:
    """The network `run_dir` trained, from its config.json (the model, the spec of a spec-file run, the
    image size) and classes.json (the classes), without torch.

    Raises RunError when the directory or either file is missing or unreadable, or says nothing usable.
    """
    from ..networks import specfile
    from ..networks.zoo import get_spec

    run = _run_directory(run_dir)
    config = _read_json(run / CONFIG_FILE, "its settings")
    classes = _read_json(run / CLASSES_FILE, "its class list")
    model = config.get("model") if isinstance(config, dict) else None
    recipe = config.get("recipe") if isinstance(config, dict) else None
    if not isinstance(model, str) or not isinstance(classes, list) or not classes:
        raise RunError(
            f"{run}: {CONFIG_FILE} names no model or {CLASSES_FILE} lists no classes; they are not the "
            "files `ilsvrc train` writes."
        )
    if config.get("classical") is True:
        raise RunError(
            f"{run} is a run of the classical pipeline {model} (features and linear SVMs), not of a "
            f"network: there is no network to show. `ilsvrc plot {run}`, `ilsvrc eval {run}` and `ilsvrc "
            "predict` work on it."
        )
    spec = config.get("spec")
    network = specfile.from_dict(spec, source=f"{run / CONFIG_FILE} (spec)") if spec else get_spec(model)
    recipe_size = recipe.get("image_size") if isinstance(recipe, dict) else None
    size = config.get("image_size") or recipe_size or network.input_shape[1]
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise RunError(f"{run / CONFIG_FILE}: image_size must be a positive whole number, got {size!r}.")
    network = network.with_num_classes(len(classes)).with_input((network.input_shape[0], size, size))
    return RunNetwork(model, network, size, len(classes))
