"""Reading a run's metrics.jsonl, without torch (so `ilsvrc plot` and `ilsvrc report` stay instant).

A run directory's `metrics.jsonl` holds one JSON object per line, written once per epoch by
`ilsvrc train`: `epoch`, `step`, `train_loss` (cross-entropy, nats), `train_top1_error`,
`val_top1_error`, `val_top5_error` (errors as fractions in [0, 1]; null when no validation image could
be read), `lr`, `images_per_s` (training images over the time of the training steps, data waits
included, evaluations and checkpoints not), `seconds` (wall-clock seconds since the run started,
evaluations included), `eval_seconds`, `complete` (false for a line written by a run stopped
mid-epoch), and counters such as `skipped_images`. Every line has the `step` of the state it describes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import IlsvrcError

METRICS_FILE = "metrics.jsonl"


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


def load_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """The metric lines of one run for plotting: objects with an `epoch`, in file order.

    Raises RunError (one paragraph, what to do) when the directory or its metrics.jsonl is missing or
    unreadable, or when it holds no line with an epoch (a run stopped before its first epoch ended).
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise RunError(
            f"{run} is not a directory. Give the run directory that `ilsvrc train` wrote (its --out, "
            "by default runs/MODEL-DATE-TIME), which holds metrics.jsonl."
        )
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
