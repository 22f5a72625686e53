"""Pictures of studies: a sweep's validation error against what each variant costs.

Each trained variant is a point: its multiply-adds per image (log scale) across, its validation top-1
error up; the best is marked, and each point is labelled with the edits that make it. The figures come
from the sweep's record (sweep.json); nothing is computed here but the placing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.render import short
from . import figures

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def sweep_figure(plan: dict, results: Sequence[dict]) -> Figure:
    from matplotlib.ticker import FuncFormatter

    costs = {c["label"]: c for c in plan.get("costs", [])}
    done = [r for r in results if r["label"] in costs]
    fig = figures.new_figure(13.0, 6.4)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.07, right=0.69, top=0.86, bottom=0.11)
    xs = [costs[r["label"]]["macs"] for r in done]
    ys = [100 * r["top1_error"] for r in done]
    best = (
        min(range(len(done)), key=lambda i: (done[i]["top1_error"], done[i]["top5_error"])) if done else None
    )
    colours = [figures.RUN_COLOURS[1] if i == best else figures.COLOURS["conv"] for i in range(len(done))]
    ax.scatter(xs, ys, s=[120 if i == best else 70 for i in range(len(done))], c=colours,
               edgecolors=figures.INK, linewidths=0.8, zorder=3, gid="variants")  # fmt: skip
    # each point numbered by its rank; the numbers are listed beside the plot (labels of variants of
    # nearly the same cost would overlap)
    order = sorted(range(len(done)), key=lambda i: (done[i]["top1_error"], done[i]["top5_error"]))
    rank = {i: k + 1 for k, i in enumerate(order)}
    places: dict[tuple[float, float], list[int]] = {}
    for i, (x, y) in enumerate(zip(xs, ys)):
        places.setdefault((x, round(y, 1)), []).append(rank[i])  # variants of the same cost and error
    for (x, y), ranks in places.items():
        ax.annotate(",".join(map(str, sorted(ranks))), (x, y), xytext=(0, 8), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8, color=figures.INK, fontweight="bold")  # fmt: skip
    listing = [f"{rank[i]}. {done[i]['label']}  ({ys[i]:.1f}%)" for i in order]
    fig.text(0.71, 0.84, "\n".join(listing[:30] + (["..."] if len(listing) > 30 else [])), fontsize=7.5,
             color=figures.INK, va="top", family="monospace", gid="ranking")  # fmt: skip
    if xs:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
        ax.set_ylim(0, min(100, max(ys) * 1.25 + 2))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: short(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: short(v)))
    ax.set_xlabel("multiply-adds per image at the training size (log scale)", fontsize=10)
    ax.set_ylabel("validation top-1 error (%)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    budget = " and ".join(([f"{plan['minutes']:g} min"] if plan.get("minutes") else [])
                          + ([f"{plan['epochs']} epochs"] if plan.get("epochs") else []))  # fmt: skip
    data = Path(str(plan.get("data"))).name if plan.get("data") else "the built-in data"
    fig.suptitle(f"Sweep of {plan['model']}: validation error against cost", fontsize=12.5, x=0.01, ha="left",
                 y=0.975, color=figures.INK)  # fmt: skip
    note = (f"{len(done)} of {len(plan['variants'])} variants trained on {data} at {plan['image_size']} px, "
            f"{budget} each, recipe {plan['recipe']}; the best in red")  # fmt: skip
    fig.text(0.01, 0.915, note, fontsize=9, color=figures.MUTED, va="top")
    return fig


def sweep_chart(plan: dict, results: Sequence[dict], out: str | Path) -> Path:
    figures.check_output(out)
    return figures.save(sweep_figure(plan, results), out)


def ablation_figure(ablation: dict, plan: dict, results: Sequence[dict]) -> Figure:
    """Training (left) and validation (right) top-1 error against epochs, one line per variant, the
    target training error drawn where the ablation has one; the paper's claim under the title."""
    import textwrap

    fig = figures.new_figure(12.0, 6.0)
    left, right = fig.subplots(1, 2, sharey=True)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.78, bottom=0.11, wspace=0.06)
    for i, r in enumerate(results):
        colour = figures.RUN_COLOURS[i % len(figures.RUN_COLOURS)]
        curve = [(e, t, v) for e, t, v in r["curve"] if e is not None]
        left.plot([e for e, t, _ in curve if t is not None], [100 * t for _, t, _ in curve if t is not None],
                  marker="o", markersize=3, color=colour, label=r["label"], gid=f"train-{i}")  # fmt: skip
        right.plot([e for e, _, v in curve if v is not None], [100 * v for _, _, v in curve if v is not None],
                   marker="o", markersize=3, color=colour, label=r["label"], gid=f"val-{i}")  # fmt: skip
    target = ablation.get("target")
    if target is not None:
        left.axhline(100 * target, color=figures.MUTED, linestyle="--", linewidth=1)
        left.text(left.get_xlim()[0], 100 * target, f" target: {100 * target:g}% training error", fontsize=8,
                  va="bottom", color=figures.MUTED)  # fmt: skip
    left.set_title("training top-1 error", fontsize=10, loc="left", color=figures.INK)
    right.set_title("validation top-1 error (one centre view)", fontsize=10, loc="left", color=figures.INK)
    left.set_ylabel("top-1 error (%)", fontsize=10)
    from matplotlib.ticker import MaxNLocator

    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
    right.legend(fontsize=8.5, frameon=False, loc="upper right")
    fig.suptitle(f"Ablation {ablation['name']}: {ablation['question']}", fontsize=12.5, x=0.01, ha="left",
                 y=0.975, color=figures.INK)  # fmt: skip
    claim = textwrap.fill(f"The paper: {ablation['claim']} ({ablation['source']})", 170)
    data = Path(str(plan.get("data"))).name if plan.get("data") else "the built-in data"
    fig.text(0.01, 0.91, claim + f"\nHere: {data}, {plan['image_size']} px, recipe {plan['recipe']}.",
             fontsize=8.5, color=figures.MUTED, va="top")  # fmt: skip
    return fig


def ablation_chart(ablation: dict, plan: dict, results: Sequence[dict], out: str | Path) -> Path:
    figures.check_output(out)
    return figures.save(ablation_figure(ablation, plan, results), out)
