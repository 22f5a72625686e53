"""Pictures of runs: loss and errors against epochs and against wall-clock time, several runs overlaid.

Reads metrics.jsonl through `ilsvrc.metrics` (no torch), draws with matplotlib off-screen.
Errors are fractions in [0, 1]; the loss is the training cross-entropy in nats; time is the run's
wall-clock time in minutes, evaluations included (the `seconds` field of each line).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..training.metrics import load_run, read_metrics
from . import figures

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Run = tuple[str, list[dict[str, Any]]]  # (legend label, metric lines)


def run_labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Legend labels: each run directory's name, or more of its path when two names are the same."""
    paths = [Path(p).resolve() for p in run_dirs]
    labels = [p.name for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{p.parent.name}/{p.name}" for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({i + 1})" for i, label in enumerate(labels)]
    return labels


def curves_figure(runs: Sequence[Run]) -> Figure:
    """Four panels: training loss and errors (top-1 and top-5 on validation, top-1 on training), each
    against epochs and against wall-clock minutes. One colour per run, named in the figure's legend;
    the line style says which error (solid: val top-1, dashed: val top-5, dotted: train top-1)."""
    fig = figures.new_figure(13, 8)
    axes = fig.subplots(2, 2, sharey="row")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.86, bottom=0.08, hspace=0.32, wspace=0.06)
    handles = []
    for i, (label, rows) in enumerate(runs):
        c = figures.RUN_COLOURS[i % len(figures.RUN_COLOURS)]
        xs = {"epoch": [r["epoch"] for r in rows], "min": [_get(r, "seconds") / 60 for r in rows]}
        for col, x in enumerate(xs.values()):
            (line,) = axes[0, col].plot(x, [_get(r, "train_loss") for r in rows], "-o", ms=3, color=c)
            axes[1, col].plot(x, [_get(r, "val_top1_error") for r in rows], "-o", ms=3, color=c)
            axes[1, col].plot(x, [_get(r, "val_top5_error") for r in rows], "--", color=c)
            axes[1, col].plot(x, [_get(r, "train_top1_error") for r in rows], ":", color=c)
        handles.append((line, label))
    axes[0, 0].set(title="training loss against epochs", ylabel="cross-entropy (nats)")
    axes[0, 1].set(title="training loss against time")
    axes[1, 0].set(title="error against epochs", xlabel="epoch", ylabel="error (fraction)", ylim=(0, 1.02))
    axes[1, 1].set(title="error against time", xlabel="wall-clock minutes (evaluations included)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    styles = [
        Line2D([], [], color=figures.INK, ls=ls, marker=m, ms=3)
        for ls, m in (("-", "o"), ("--", ""), (":", ""))
    ]
    axes[1, 1].legend(styles, ["val top-1", "val top-5", "train top-1"], fontsize=8, loc="upper right")
    fig.legend([h for h, _ in handles], [lab for _, lab in handles], loc="upper center",
               ncol=min(len(handles), 4), fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.955))  # fmt: skip
    fig.suptitle("Training runs: loss and top-1/top-5 error", fontsize=13, y=0.995)
    return fig


def _get(row: dict[str, Any], key: str) -> float:
    """A number from a metrics line, or NaN (a gap in the curve) when an older run lacks it."""
    value = row.get(key)
    return float(value) if isinstance(value, (int, float)) else float("nan")


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """(label, metric lines) of each run directory; RunError for a missing one or one without metrics."""
    return [(label, load_run(d)) for label, d in zip(run_labels(run_dirs), run_dirs)]


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Draw the curves of one or more run directories into `out` (.png or .svg); returns the path.

    For `ilsvrc train`, which redraws its run's curves after every epoch: a run without metrics yet is
    left out, and an OSError (full disk) reaches the caller as it is. `ilsvrc plot` checks more.
    """
    runs = [(label, rows) for label, d in zip(run_labels(run_dirs), run_dirs) if (rows := read_metrics(d))]
    out = Path(out)
    curves_figure(runs).savefig(out, format=figures.image_format(out), dpi=figures.DPI)
    return out
