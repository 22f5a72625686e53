"""Charts of an analysis: parameters and multiply-adds per layer, as bars, for one network or two.

The lecture's point at a glance: the fully connected layers hold most of the parameters, the
convolutions do most of the arithmetic. Each network gets two panels, parameters per layer above,
multiply-adds per layer below, one bar per layer with weights (convolutions and fully connected
layers, in order), coloured by kind, and the shares from `Report.split()` written in the panel
("FC: 96.2% of params, 8.1% of MACs" for AlexNet).

Conventions, as everywhere in ilsvrc: parameters = weights + biases; one multiply-add (MAC) = one
multiplication and one addition (FLOPs = 2 x MACs), for one image, bias additions not counted.
With two networks the panels stand side by side and share their vertical scale.

A network whose layers with weights sit inside modules or stages (GoogLeNet's convolutions in nine
Inception modules, ResNet-152's in four stages of 3, 8, 36 and 3 blocks) is charted one bar per
top-level part instead
(`Report.groups()`): its layers (conv1, fc) as they are, each module (inception3a) or stage (layer3,
"36 blocks") with its totals, batch norm included, and its auxiliary classifiers hatched in their
place, run in training only and left out of the totals. 150 bars would be unreadable.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.analyzer import LayerStats, Report
from ..analysis.render import short
from ..networks.spec import BatchNorm, Block, Linear
from . import figures

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def weight_layers(report: Report) -> list[LayerStats]:
    """The bars: convolutions and fully connected layers, in the network's order."""
    return report.with_weights()


@dataclass(frozen=True)
class ChartBar:
    """One bar: a layer, or a module or stage with its totals (`Report.groups()`)."""

    label: str
    row: LayerStats
    kind: str  # "conv", "linear" or "aux" (an auxiliary classifier: hatched, not in the totals)

    @property
    def params(self) -> int:
        return self.row.params

    @property
    def macs(self) -> int:
        return self.row.macs


def is_grouped(report: Report) -> bool:
    """Whether the chart groups `report`'s layers: when some layer with weights sits inside a module or
    a stage (GoogLeNet, ResNet), where one bar per layer would be many and named alike ('conv1')."""
    return any(r.depth > 0 for r in report.with_weights())


def chart_bars(report: Report, grouped: bool | None = None) -> list[ChartBar]:
    """The bars of `report`'s columns: one per layer with weights, or with `grouped` (default: when
    `is_grouped`) one per top-level part, a module or stage with its totals (see the module's doc)."""
    if not (is_grouped(report) if grouped is None else grouped):
        return [ChartBar(_layer_name(r), r, "linear" if isinstance(r.layer, Linear) else "conv")
                for r in report.with_weights()]  # fmt: skip
    out = []
    for row in report.groups():
        layer = row.layer
        label = row.name
        if isinstance(layer, Block) and all(isinstance(x, Block) for x in layer.layers):
            label += f"\n{len(layer.layers)} blocks"  # a stage of blocks: ResNet's layer3
        kind = "aux" if row.aux else "linear" if isinstance(layer, Linear) else "conv"
        out.append(ChartBar(label, row, kind))
    return out


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
    if not report.macs_exact:
        lines.append(f"MACs unknown for {len(report.unknown_macs)} layer(s): shares of the known MACs")
    if report.aux_params:
        lines.append(
            f"auxiliary classifiers (training only): +{short(report.aux_params)} params, "
            f"+{short(report.aux_macs)} MACs"
        )
    return lines


def _layer_name(row: LayerStats) -> str:
    return row.name.rsplit(".", 1)[-1] if row.name.count(".") > 1 else row.name


def chart_figure(reports: Sequence[Report], log: bool = False, grouped: bool | None = None) -> Figure:
    """Parameters (top row) and multiply-adds (bottom row) per layer; one column per network.

    `log` puts both rows on a logarithmic scale (small layers become visible; the shares stay in the
    text). With two networks the rows share their scale, so bars compare across columns. `grouped`:
    one bar per module or stage (see `chart_bars`); by default for networks of modules only.
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    bars = [chart_bars(r, grouped) for r in reports]
    by_module = [is_grouped(r) if grouped is None else grouped for r in reports]
    most = max(len(b) for b in bars)
    width = (
        max(7.0, min(7.0 + 0.28 * most, 11.0))
        if len(reports) == 1
        else max(12.0, 0.25 * sum(map(len, bars)) + 6)
    )
    if all(by_module):
        note = "One bar per top-level layer with weights, module or stage (with its batch norm)."
    elif any(by_module):
        note = (
            "One bar per layer with weights; for "
            + ", ".join(r.network.name for r, g in zip(reports, by_module) if g)
            + ", one per top-level layer with weights, module or stage (with its batch norm)."
        )
    else:
        note = "One bar per layer with weights."
    note += " MACs: per image, bias additions not counted; FLOPs = 2 x MACs."
    if any(b.kind == "aux" for col in bars for b in col):
        note += " Hatched: auxiliary classifiers, run in training only, not in the totals."
    if log:
        note += " Logarithmic scale."
    if any(isinstance(r.layer, BatchNorm) for rep, g in zip(reports, by_module) if not g for r in rep.leaves):
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
    two_lines = any("\n" in b.label for col in bars for b in col)
    bottom, hspace = (0.12, 0.45) if rotated else (0.09, 0.36) if two_lines else (0.06, 0.3)
    left = 0.09 if len(reports) == 1 else 0.06  # room for the y label and ticks such as "10M"
    fig.subplots_adjust(left=left, right=0.98, top=1 - header / height, bottom=bottom * 7.6 / height,
                        hspace=hspace, wspace=0.06)  # fmt: skip
    axis_format = FuncFormatter(lambda v, _: short(v) if v else "0")
    for col, (report, rows) in enumerate(zip(reports, bars)):
        colours = [figures.COLOURS["linear" if b.kind == "linear" else "conv"] for b in rows]
        hatches = ["////" if b.kind == "aux" else "" for b in rows]
        names = [b.label for b in rows]
        for row_i, (attr, what) in enumerate((("params", "parameters"), ("macs", "multiply-adds per image"))):
            ax: Axes = axes[row_i, col]
            values = [getattr(b, attr) for b in rows]
            drawn = ax.bar(range(len(rows)), values, color=colours, edgecolor=figures.INK, linewidth=0.5,
                           width=0.75)  # fmt: skip
            for patch, hatch, bar in zip(drawn, hatches, rows):
                patch.set_gid(bar.row.name)
                if hatch:
                    patch.set_hatch(hatch)
                    patch.set_facecolor("white")
            if log:
                ax.set_yscale("log")
            ax.yaxis.set_major_formatter(axis_format)
            ax.set_xticks(range(len(rows)), names, rotation=60 if rotated else 0, fontsize=8,
                          ha="right" if rotated else "center", rotation_mode="anchor")  # fmt: skip
            ax.set_xlim(-0.6, max(len(rows), 3) - 0.4)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
            total = getattr(report, attr)
            per = "per module or stage" if by_module[col] else "per layer"
            bound = "at least " if attr == "macs" and not report.macs_exact else ""
            title = f"{report.network.name}: {what} {per}, total {bound}{short(total)}"
            ax.set_title(title, fontsize=10, loc="left", color=figures.INK)
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
    # headroom for the shares (more for each line past two: batch norm, auxiliary classifiers) and the
    # value labels, so that no bar reaches the box of the shares
    extra = max(0, max(len(share_lines(r)) for r in reports) - 2)
    for row_i, attr in enumerate(("params", "macs")):
        values = [getattr(b, attr) for rows in bars for b in rows if getattr(b, attr)] or [1]
        if log:
            axes[row_i, 0].set_ylim(min(values) / 3, max(values) * (60 * 4**extra if row_i == 0 else 4))
        else:
            axes[row_i, 0].set_ylim(0, max(values) * (1.45 + 0.15 * extra if row_i == 0 else 1.12))
    names = " vs ".join(r.network.name for r in reports)
    fig.suptitle(f"Where the parameters and the arithmetic are: {names}", fontsize=13, x=0.01, ha="left",
                 y=1 - 0.11 / height, color=figures.INK)  # fmt: skip
    fig.text(0.01, 1 - note_top / height, "\n".join(note_lines), fontsize=8.5, color=figures.MUTED, va="top",
             gid="note")  # fmt: skip
    handles = [Patch(facecolor=figures.COLOURS[k], edgecolor=figures.INK, label=label)
               for k, label in (("conv", "convolution"), ("linear", "fully connected"))]  # fmt: skip
    if any(b.kind == "aux" for col in bars for b in col):
        handles.append(Patch(facecolor="white", edgecolor=figures.INK, hatch="////",
                             label="auxiliary classifier (training only)"))  # fmt: skip
    fig.legend(handles=handles, loc="upper left", ncol=len(handles), fontsize=9, frameon=False,
               borderaxespad=0, bbox_to_anchor=(0.01, 1 - legend_top / height), borderpad=0.2)  # fmt: skip
    return fig


def chart(reports: Sequence[Report], out: str | Path, log: bool = False) -> Path:
    """Write the chart of one or two analysed networks to `out` (.png or .svg); returns the path."""
    figures.check_output(out)  # a bad name or folder fails before the drawing
    return figures.save(chart_figure(reports, log=log), out)
