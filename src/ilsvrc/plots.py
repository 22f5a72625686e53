"""Pictures of runs: loss and errors against epochs and against minutes (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path


def _metrics(run_dir: Path) -> list[dict]:
    from .train import read_metrics

    return read_metrics(run_dir)


def plot_runs(run_dirs: list[Path], out: Path) -> Path:
    """Training loss and top-1/top-5 errors of one or more runs, against epochs and wall-clock minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(run_dirs):
        rows = _metrics(run)
        if not rows:
            continue
        c = colours[i % len(colours)]
        label = Path(run).name
        ep = [r["epoch"] for r in rows]
        minutes = [r["seconds"] / 60 for r in rows]
        axes[0].plot(ep, [r["train_loss"] for r in rows], "-o", ms=3, color=c, label=label)
        axes[1].plot(ep, [r["train_top1_error"] for r in rows], ":", color=c, label=f"{label} train top-1")
        axes[1].plot(ep, [r["val_top1_error"] for r in rows], "-o", ms=3, color=c, label=f"{label} val top-1")
        axes[1].plot(ep, [r["val_top5_error"] for r in rows], "--", color=c, label=f"{label} val top-5")
        val1, val5 = [r["val_top1_error"] for r in rows], [r["val_top5_error"] for r in rows]
        axes[2].plot(minutes, val1, "-o", ms=3, color=c, label=f"{label} val top-1")
        axes[2].plot(minutes, val5, "--", color=c, label=f"{label} val top-5")
    axes[0].set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    axes[1].set(title="error against epochs", xlabel="epoch", ylabel="error (fraction)", ylim=(0, 1))
    axes[2].set(
        title="validation error against time", xlabel="wall-clock minutes (evaluations included)", ylim=(0, 1)
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
