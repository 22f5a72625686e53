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


def history_figure(rows: Sequence[HistoryRow]) -> Figure:
    """Top-5 error by year above; the depth and multiply-adds of the networks below (log scale)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    entries = [r.entry for r in rows]
    places = _positions(rows)
    fig = figures.new_figure(10.5, 8.4)
    ax, cost = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.3, 1]})
    fig.subplots_adjust(left=0.08, right=0.97, top=0.87, bottom=0.07, hspace=0.08)
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


def history_chart(rows: Sequence[HistoryRow], out: str | Path) -> Path:
    """Write the history chart to `out` (.png or .svg); returns the path."""
    figures.check_output(out)
    return figures.save(history_figure(rows), out)
