"""The challenge's history as one chart: the winners' top-5 error by year, and what the networks cost.

The upper panel is the published top-5 error of each entry (hand-made features in grey, CNNs in the
convolution colour), joined year to year through each year's best; the fall of 2012 is marked with its
size. The lower panel, on its own logarithmic axis, carries the depth of each entry's network (layers
with weights along the longest path, the lecture's count) and its multiply-adds per image in billions:
depth grew
19-fold from 2012 to 2015 while the arithmetic grew 16-fold, and not steadily (GoogLeNet is cheaper
than VGG). Human error is drawn twice, as the two sources put it. Every number comes from
`ilsvrc.analysis.history`; nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.history import HistoryRow, best_by_year, largest_drop
from ..networks.history import HUMAN
from . import figures

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CLASSICAL = "#9e9e9e"  # hand-made features
HUMAN_COLOURS = ("#c62828", "#ef6c00")
DEPTH_COLOUR = "#5e35b1"
MACS_COLOUR = "#00897b"


def _positions(rows: Sequence[HistoryRow]) -> list[tuple[float, int]]:
    """x of each entry, its year spread a little when a year has several entries (2014), and which side
    its label goes: -1 left, 0 above, 1 right, -2 below left."""
    out = []
    for row in rows:
        same = [r for r in rows if r.entry.year == row.entry.year]
        k = same.index(row)
        side = 0 if len(same) == 1 else -1 if k == 0 else 1 if k == len(same) - 1 else 0
        if side == 0 and row.entry.top5_error < max(h.top5_error for h in HUMAN) + 1:
            side = -2  # among the human lines: below the point, not across the lines
        out.append((row.entry.year + (k - (len(same) - 1) / 2) * 0.3, side))
    return out


def _draw_published(
    ax: Axes, rows: Sequence[HistoryRow], places: list[tuple[float, int]], labels: bool = True
) -> dict[int, float]:
    """The published top-5 error of each entry, each year's best joined, human error, the 2012 fall."""
    entries = [r.entry for r in rows]
    # the best of each year, joined
    best = best_by_year(entries)
    ax.plot(list(best), list(best.values()), color=figures.INK, linewidth=1.2, alpha=0.5, zorder=1)
    for (x, side), row in zip(places, rows):
        e = row.entry
        colour = figures.COLOURS["conv"] if e.deep else CLASSICAL
        ax.scatter([x], [e.top5_error], s=90, color=colour, edgecolor=figures.INK, linewidth=0.8, zorder=3,
                   gid=f"entry-{e.year}-{e.entry}")  # fmt: skip
        label = f"{e.entry}  {e.top5_error:g}%" + (f"\n{e.model}" if e.model else "")
        offset = {-2: (-9, -6), -1: (-9, 6), 0: (0, 11), 1: (9, 6)}[side]
        if labels:
            ax.annotate(label, (x, e.top5_error), xytext=offset, textcoords="offset points",
                        ha="center" if side == 0 else "left" if side == 1 else "right",
                        va="top" if side == -2 else "bottom", fontsize=8.5,
                        color=figures.INK)  # fmt: skip
    for h, colour in zip(HUMAN, HUMAN_COLOURS):
        ax.axhline(h.top5_error, color=colour, linestyle="--", linewidth=1, zorder=0)
        ax.text(min(best) - 0.35, h.top5_error, h.label, color=colour, fontsize=8, va="bottom", ha="left")
    if len(best) > 1:
        drop = largest_drop(entries)
        x = drop.year - 0.5
        red = figures.RUN_COLOURS[1]
        arrow = ax.annotate("", (x, drop.after), (x, drop.before),
                            arrowprops=dict(arrowstyle="->", color=red, linewidth=1.6))  # fmt: skip
        arrow.arrow_patch.set_gid("drop")
        text = f"{drop.year}: -{drop.points:g} points\n(the first CNN)"
        ax.text(x - 0.06, (drop.before + drop.after) / 2, text, ha="right", va="center", fontsize=9,
                color=red)  # fmt: skip
    ax.set_xlim(min(best) - 0.45, max(best) + 0.45)
    ax.set_ylim(0, max(e.top5_error for e in entries) * 1.22)
    ax.set_ylabel("top-5 error on the test set (%)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return best


def history_figure(rows: Sequence[HistoryRow]) -> Figure:
    """Top-5 error by year above; the depth and multiply-adds of the networks below (log scale)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    places = _positions(rows)
    fig = figures.new_figure(10.5, 8.4)
    ax, cost = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.3, 1]})
    fig.subplots_adjust(left=0.08, right=0.97, top=0.87, bottom=0.07, hspace=0.08)
    best = _draw_published(ax, rows, places)
    # what the networks cost, below on a log scale
    deep = [(x, r) for (x, _), r in zip(places, rows) if r.report is not None]
    cost.set_yscale("log")
    if deep:
        dx = [x for x, _ in deep]
        depth = [r.depth for _, r in deep]
        gmacs = [r.macs / 1e9 for _, r in deep]
        cost.plot(dx, depth, marker="^", color=DEPTH_COLOUR, linestyle=":", linewidth=1, markersize=7,
                  gid="depth")  # fmt: skip
        cost.plot(dx, gmacs, marker="s", color=MACS_COLOUR, linestyle=":", linewidth=1, markersize=6,
                  gid="macs")  # fmt: skip
        for x, d, g in zip(dx, depth, gmacs):
            above, below = (d, g) if d >= g else (g, d)
            for value, text, colour in ((d, str(d), DEPTH_COLOUR), (g, f"{g:.3g}G", MACS_COLOUR)):
                up = value == above
                cost.annotate(text, (x, value), xytext=(0, 7 if up else -8), textcoords="offset points",
                              ha="center", va="bottom" if up else "top", fontsize=7.5,
                              color=colour)  # fmt: skip
        cost.set_ylim(min(depth + gmacs) / 4, max(depth + gmacs) * 4)
    cost.set_ylabel("log scale", fontsize=9)
    cost.grid(axis="y", alpha=0.3, which="major")
    cost.set_xticks(list(best), [str(y) for y in best])
    cost.set_xlabel("year of the challenge", fontsize=10)
    cost.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if any(r.report is None for r in rows):
        first = min(r.entry.year for r in rows if r.report is None)
        last = max(r.entry.year for r in rows if r.report is None)
        cost.text((first + last) / 2, 0.5, "no network:\nhand-made features", ha="center", va="center",
                  transform=cost.get_xaxis_transform(), fontsize=8.5, color=CLASSICAL)  # fmt: skip
    cost.legend(handles=[
        Line2D([], [], marker="^", linestyle=":", color=DEPTH_COLOUR,
               label="depth: layers with weights, longest path"),
        Line2D([], [], marker="s", linestyle=":", color=MACS_COLOUR, label="multiply-adds per image (G)"),
    ], loc="upper left", fontsize=8.5, frameon=False)  # fmt: skip
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=8, markerfacecolor=CLASSICAL,
               markeredgecolor=figures.INK, label="hand-made features + classifier"),
        Line2D([], [], marker="o", linestyle="", markersize=8, markerfacecolor=figures.COLOURS["conv"],
               markeredgecolor=figures.INK, label="convolutional network (its zoo network below the name)"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="upper left", ncol=2, fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.075, 0.93))  # fmt: skip
    fig.suptitle("ILSVRC classification, 2010-2015: the winners' top-5 error, and what their networks cost",
                 fontsize=12.5, x=0.01, ha="left", y=0.985, color=figures.INK)  # fmt: skip
    return fig


def replay_figure(rows: Sequence[HistoryRow], plan: dict, results: Sequence[dict]) -> Figure:
    """The published history (left) beside the replay's measured errors (right), by the year each
    replayed entry stands for. `plan` and `results` are the plain dicts of a replay's replay.json."""
    from matplotlib.lines import Line2D

    fig = figures.new_figure(12.5, 6.2)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.15]})
    fig.subplots_adjust(left=0.06, right=0.98, top=0.8, bottom=0.1, wspace=0.16)
    best = _draw_published(left, rows, _positions(rows))
    left.set_title("published: ILSVRC test set, 1000 classes", fontsize=10, loc="left", color=figures.INK)
    years = sorted({r["year"] for r in results} | set(best))
    # the measured errors: each replayed entry at the year it stands for, spread within a year
    xs = []
    for r in results:
        same = [q for q in results if q["year"] == r["year"]]
        xs.append(r["year"] + (same.index(r) - (len(same) - 1) / 2) * 0.3)
    top1 = [100 * r["top1_error"] for r in results]
    top5 = [100 * r["top5_error"] for r in results]
    colours = [CLASSICAL if r["year"] < 2012 else figures.COLOURS["conv"] for r in results]
    right.plot(xs, top1, color=figures.INK, alpha=0.5, linewidth=1.2, zorder=1)
    right.scatter(xs, top1, s=90, c=colours, edgecolors=figures.INK, linewidths=0.8, zorder=3, gid="top1")
    right.plot(xs, top5, color=figures.MUTED, alpha=0.6, linewidth=1, linestyle="--", zorder=1)
    right.scatter(xs, top5, s=45, marker="s", facecolors="white", edgecolors=figures.INK, linewidths=0.8,
                  zorder=3, gid="top5")  # fmt: skip
    for x, r, e1 in zip(xs, results, top1):
        right.annotate(f"{r['name']}\n{e1:.1f}%", (x, e1), xytext=(0, 9), textcoords="offset points",
                       ha="center", va="bottom", fontsize=8, color=figures.INK)  # fmt: skip
    classes = plan.get("classes") or plan.get("synthetic_classes")
    chance = 100 * (1 - 1 / classes) if classes else None
    if chance:
        right.axhline(chance, color=figures.RUN_COLOURS[1], linestyle=":", linewidth=1)
        right.text(min(years) - 0.35, chance, f"chance, top-1 ({classes} classes)", fontsize=8, va="bottom",
                   color=figures.RUN_COLOURS[1])  # fmt: skip
    right.set_xlim(min(years) - 0.45, max(years) + 0.45)
    right.set_ylim(0, 100)
    right.set_xticks(years, [str(y) for y in years])
    left.set_xticks(list(best), [str(y) for y in best])
    left.set_xlim(min(best) - 0.75, max(best) + 0.45)  # room for the first label in the narrower panel
    right.set_ylabel("error on the val split (%)", fontsize=10)
    right.grid(axis="y", alpha=0.3)
    right.set_axisbelow(True)
    data = plan.get("data") or "the built-in shapes data"
    title = f"replayed: {Path(str(data)).name}, {plan['image_size']} px, {plan['minutes']:g} min each"
    right.set_title(title, fontsize=10, loc="left", color=figures.INK)
    for ax in (left, right):
        ax.set_xlabel("year of the entry it stands for", fontsize=9)
    fig.legend(handles=[
        Line2D([], [], marker="o", linestyle="-", color=figures.INK, alpha=0.7,
               markerfacecolor=figures.COLOURS["conv"], label="top-1 error"),
        Line2D([], [], marker="s", linestyle="--", color=figures.MUTED, markerfacecolor="white",
               label="top-5 error"),
    ], loc="lower right", bbox_to_anchor=(0.98, 0.81), ncol=2, fontsize=8.5, frameon=False)  # fmt: skip
    fig.suptitle("The ILSVRC history replayed: the same data and the same minutes for every era's entry",
                 fontsize=12.5, x=0.01, ha="left", y=0.975, color=figures.INK)  # fmt: skip
    note = (
        "Left: the winners' published top-5 error. Right: one model of each kind trained here on the "
        "same split for the same time and measured the same way (one centre view per image)."
    )
    fig.text(0.01, 0.9, note, fontsize=9, color=figures.MUTED, va="top")
    return fig


def replay_chart(rows: Sequence[HistoryRow], plan: dict, results: Sequence[dict], out: str | Path) -> Path:
    figures.check_output(out)
    return figures.save(replay_figure(rows, plan, results), out)


def history_chart(rows: Sequence[HistoryRow], out: str | Path) -> Path:
    """Write the history chart to `out` (.png or .svg); returns the path."""
    figures.check_output(out)
    return figures.save(history_figure(rows), out)
