"""Charts of an analysis: parameters and multiply-adds per layer, as bars, for one network or two.

The lecture's point at a glance: the fully connected layers hold most of the parameters, the
convolutions do most of the arithmetic. Each network gets two panels, parameters per layer above,
multiply-adds per layer below, one bar per layer with weights (convolutions and fully connected
layers, in order), coloured by kind, and the shares from `Report.split()` written in the panel
("FC: 96.2% of params, 8.1% of MACs" for AlexNet).

Conventions, as everywhere in ilsvrc: parameters = weights + biases; one multiply-add (MAC) = one
multiplication and one addition (FLOPs = 2 x MACs), for one image, bias additions not counted.
With two networks the panels stand side by side and share their vertical scale.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.analyzer import LayerStats, Report
from ..analysis.render import short
from ..networks.spec import BatchNorm, Linear
from . import figures

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def weight_layers(report: Report) -> list[LayerStats]:
    """The bars: convolutions and fully connected layers, in the network's order."""
    return report.with_weights()


def share_lines(report: Report) -> list[str]:
    """The panel's annotation, from `Report.split()`: one line per kind that has parameters.

    e.g. ['FC: 96.2% of params, 8.1% of MACs', 'conv: 3.8% of params, 91.9% of MACs'] for AlexNet.
    """
    split = report.split()
    lines = []
    for key, label in (("fc", "FC"), ("conv", "conv"), ("other", "batch norm")):
        part = split[key]
        if part["params"] or part["macs"]:
            lines.append(f"{label}: {part['params_pct']:.1f}% of params, {part['macs_pct']:.1f}% of MACs")
    return lines


def _layer_name(row: LayerStats) -> str:
    return row.name.rsplit(".", 1)[-1] if row.name.count(".") > 1 else row.name


def chart_figure(reports: Sequence[Report], log: bool = False) -> Figure:
    """Parameters (top row) and multiply-adds (bottom row) per layer; one column per network.

    `log` puts both rows on a logarithmic scale (small layers become visible; the shares stay in the
    text). With two networks the rows share their scale, so bars compare across columns.
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    bars = [weight_layers(r) for r in reports]
    most = max(len(b) for b in bars)
    width = (
        max(7.0, min(7.0 + 0.28 * most, 11.0))
        if len(reports) == 1
        else max(12.0, 0.25 * sum(map(len, bars)) + 6)
    )
    note = "One bar per layer with weights. MACs: per image, bias additions not counted; FLOPs = 2 x MACs."
    if log:
        note += " Logarithmic scale."
    if any(isinstance(r.layer, BatchNorm) for rep in reports for r in rep.leaves):
        note += " Batch norm (2 parameters per channel) is not drawn."
    # The header, in inches from the top: the title, the note (wrapped to the width), the legend on a
    # row of its own under the note (so neither covers the other at any width), then the panels.
    note_lines = textwrap.wrap(note, width=int(width * 13.5))
    note_top = 0.36
    legend_top = note_top + 0.15 * len(note_lines) + 0.06
    header = legend_top + 0.3 + 0.32  # the legend's row, then room for the panels' titles
    height = 6.54 + header  # 6.54 inches of panels, whatever the header
    fig = figures.new_figure(width, height)
    ratios = [len(b) + 2 for b in bars]  # the same bar width in every column
    axes = fig.subplots(2, len(reports), squeeze=False, sharey="row", gridspec_kw={"width_ratios": ratios})
    rotated = most > 10
    bottom, hspace = (0.12, 0.45) if rotated else (0.06, 0.3)
    left = 0.08 if len(reports) == 1 else 0.06
    fig.subplots_adjust(left=left, right=0.98, top=1 - header / height, bottom=bottom * 7.6 / height,
                        hspace=hspace, wspace=0.06)  # fmt: skip
    axis_format = FuncFormatter(lambda v, _: short(v) if v else "0")
    for col, (report, rows) in enumerate(zip(reports, bars)):
        colours = [figures.COLOURS["linear" if isinstance(r.layer, Linear) else "conv"] for r in rows]
        names = [_layer_name(r) for r in rows]
        for row_i, (attr, what) in enumerate((("params", "parameters"), ("macs", "multiply-adds per image"))):
            ax: Axes = axes[row_i, col]
            values = [getattr(r, attr) for r in rows]
            ax.bar(range(len(rows)), values, color=colours, edgecolor=figures.INK, linewidth=0.5, width=0.75)
            if log:
                ax.set_yscale("log")
            ax.yaxis.set_major_formatter(axis_format)
            ax.set_xticks(range(len(rows)), names, rotation=60 if rotated else 0, fontsize=8,
                          ha="right" if rotated else "center", rotation_mode="anchor")  # fmt: skip
            ax.set_xlim(-0.6, max(len(rows), 3) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
            total = getattr(report, attr)
            ax.set_title(f"{report.network.name}: {what}, total {short(total)}", fontsize=10, loc="left",
                         color=figures.INK)  # fmt: skip
            if col == 0:
                label = (
                    "parameters (weights + biases)" if attr == "params" else "MACs (1 MAC = 1 mul + 1 add)"
                )
                ax.set_ylabel(label, fontsize=9)
            if len(rows) <= 24:  # the value over each bar
                for i, v in enumerate(values):
                    if v:
                        ax.text(i, v, short(v), ha="center", va="bottom", fontsize=6.5, color=figures.MUTED)
        box = dict(boxstyle="round,pad=0.4", facecolor="white", edgecolor="#cfd8dc")
        axes[0, col].text(0.02, 0.96, "\n".join(share_lines(report)), transform=axes[0, col].transAxes,
                          va="top", fontsize=9, color=figures.INK, gid="shares", bbox=box)  # fmt: skip
    for row_i, attr in enumerate(("params", "macs")):  # headroom for the shares and the value labels
        values = [getattr(r, attr) for rows in bars for r in rows if getattr(r, attr)] or [1]
        if log:
            axes[row_i, 0].set_ylim(min(values) / 3, max(values) * (60 if row_i == 0 else 4))
        else:
            axes[row_i, 0].set_ylim(0, max(values) * (1.45 if row_i == 0 else 1.12))
    names = " vs ".join(r.network.name for r in reports)
    fig.suptitle(f"Where the parameters and the arithmetic are: {names}", fontsize=13, x=0.01, ha="left",
                 y=1 - 0.11 / height, color=figures.INK)  # fmt: skip
    fig.text(0.01, 1 - note_top / height, "\n".join(note_lines), fontsize=8.5, color=figures.MUTED, va="top",
             gid="note")  # fmt: skip
    handles = [Patch(facecolor=figures.COLOURS[k], edgecolor=figures.INK, label=label)
               for k, label in (("conv", "convolution"), ("linear", "fully connected"))]  # fmt: skip
    fig.legend(handles=handles, loc="upper left", ncol=2, fontsize=9, frameon=False, borderaxespad=0,
               bbox_to_anchor=(0.01, 1 - legend_top / height), borderpad=0.2)  # fmt: skip
    return fig


def chart(reports: Sequence[Report], out: str | Path, log: bool = False) -> Path:
    """Write the chart of one or two analysed networks to `out` (.png or .svg); returns the path."""
    figures.check_output(out)  # a bad name or folder fails before the drawing
    return figures.save(chart_figure(reports, log=log), out)
