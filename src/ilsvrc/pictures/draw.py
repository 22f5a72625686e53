"""The architecture diagram: a network's volumes as 3-D boxes, in the style of the AlexNet paper's figure.

Everything comes from `analysis.analyze`: one box per volume that a convolution or a pooling layer
gives, one thin bar per fully connected layer. A box's front face is height x depth (channels), its
oblique edge the width, as in the AlexNet paper. Scales, stated in the figure's legend:

- height and width: proportional to the square root of the pixels (a 4x larger side looks 2x larger);
- depth (channels): proportional to log2(channels), so that 3 and 512 channels both fit;
- fully connected bars: height proportional to log2(units).

Between boxes, the arrow names what made the next volume: kernel/stride (p = padding, g = groups,
d = dilation, ceil = the output size rounded up), max or average pooling, flatten. Under each box: its
volume W x H x D and its parameters (weights + biases). A volume that two groups of a grouped
convolution work on (the two GPUs of the published AlexNet: conv2, conv4 and conv5 have groups=2) is
drawn as two boxes, one per group, top and bottom: parallel arrows stay within a group, crossing
arrows connect both (conv3 and fc6 in AlexNet). Consecutive convolutions that give the same volume
with the same settings (a VGG stage) are drawn as one deck of boxes.

Branched networks: an Inception module is its branches side by side, in rows between a fork and the
concatenated volume; a residual block is its body beside its shortcut (the identity, or the 1x1
projection where the volume changes), between a fork and the + of the sum, named as torchvision names
the block (layer3.4). Consecutive identical modules, the same layers on the same input volume, are
drawn once in a dashed frame marked with their count: ResNet-152's layer3 is layer3.0, which halves
the size and so differs, then layer3.1 - layer3.35 x35. An auxiliary classifier (GoogLeNet's) hangs
below the main line, which passes on.

Layout is computed in points (1/72 inch), so font sizes and box sizes share one unit; text widths are
measured with matplotlib's TextPath. No torch is imported here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.analyzer import LayerStats, Report, Volume, describe, is_module, window
from ..analysis.render import short
from ..networks.spec import (
    LRN,
    AdaptiveAvgPool,
    Aux,
    BatchNorm,
    Block,
    Concat,
    Conv,
    Dropout,
    Flatten,
    Layer,
    Linear,
    Opaque,
    Pool,
    ReLU,
    Residual,
)
from . import figures

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Sizes in points
FONT = 8.5  # names and volumes
SMALL = 7.5  # parameters, arrow labels, extras
GAP = 14  # least horizontal space between a box's column and an arrow
PART_GAP = 8  # between the two halves of a split volume (added to the oblique rise)
DECK = 7  # offset between the boxes of a deck (same-volume convolutions in a row)
BAR_THICK = 7
MAX_ROW = 940  # a row of the diagram wraps past this width (13 inches with the margins)
MAX_EDGE = 84  # the largest height or width drawn, in points
MAX_PARTS = 4  # more groups than this are named, not drawn as separate boxes
OBLIQUE = (0.42, 0.30)  # x and y of the oblique (width) edge per point of drawn width


# ---------------------------------------------------------------------------------------------------
# Numbers and text


@functools.lru_cache(maxsize=4096)
def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width of `text` in points at font `size` (matplotlib's default font), from the font's advances."""
    if not text:
        return 0.0
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    prop = FontProperties(weight="bold" if bold else "normal", size=size)
    width, _, _ = text_to_path.get_text_width_height_descent(text, prop, ismath=False)
    return width + 1.0


def op_label(layer: Layer, count: int = 1) -> str:
    """What the arrow into a layer's volume says: '11x11/4', '3x3/1 p1 g2', 'max 3x3/2', 'fc'."""
    if isinstance(layer, Conv):
        return window(layer) + (f" \u00d7{count}" if count > 1 else "")
    if isinstance(layer, Pool):
        return f"{layer.op} {window(layer)}"
    if isinstance(layer, AdaptiveAvgPool):
        return f"avg {describe(layer)}"
    if isinstance(layer, Linear):
        return "fc"
    if isinstance(layer, Opaque):
        return f"{layer.what.rpartition('.')[2]} (MACs ?)"
    return layer.kind


def extra_label(layer: Layer) -> str:
    """A shape-keeping layer as the small note under the box it follows: 'LRN', 'dropout 0.5'."""
    if isinstance(layer, LRN):
        return "LRN"
    if isinstance(layer, BatchNorm):
        return "BN"
    if isinstance(layer, Dropout):
        return f"dropout {layer.p:g}"
    if isinstance(layer, Opaque):  # what a trace could not map: its parameters, MACs unknown
        size = f"{short(layer.params)} params, " if layer.params else ""
        return f"opaque {layer.what.rpartition('.')[2]} ({size}MACs ?)"
    return layer.kind


def _new_volume(layer: Layer, row: LayerStats) -> bool:
    """An opaque layer (one a trace could not map) that makes a volume of its own: drawn as a box."""
    return isinstance(layer, Opaque) and not row.output.flat and row.output != row.input


def _kind_colour(layer: Layer | None) -> str:
    if layer is None:
        return figures.COLOURS["input"]
    if isinstance(layer, Conv):
        return figures.COLOURS["conv"]
    if isinstance(layer, (Pool, AdaptiveAvgPool)):
        return figures.COLOURS["pool"]
    if isinstance(layer, Linear):
        return figures.COLOURS["linear"]
    if isinstance(layer, Concat):
        return figures.COLOURS["norm"]
    return figures.COLOURS["other"]


def _shade(colour: str, factor: float) -> tuple[float, float, float]:
    """`colour` made darker (factor < 1) or lighter (factor > 1)."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    if factor <= 1:
        return (r * factor, g * factor, b * factor)
    t = factor - 1
    return (r + (1 - r) * t, g + (1 - g) * t, b + (1 - b) * t)


def _cuboid(ax: Axes, x0: float, y0: float, t: float, h: float, dx: float, dy: float,
            colour: str | tuple[float, ...]) -> None:  # fmt: skip
    """A box seen from the front-right: front face t x h at (x0, y0), its top and side going back by
    (dx, dy); the side darker and the top lighter than the front."""
    from matplotlib.patches import Polygon

    front = [(x0, y0), (x0 + t, y0), (x0 + t, y0 + h), (x0, y0 + h)]
    top = [(x0, y0 + h), (x0 + t, y0 + h), (x0 + t + dx, y0 + h + dy), (x0 + dx, y0 + h + dy)]
    side = [(x0 + t, y0), (x0 + t + dx, y0 + dy), (x0 + t + dx, y0 + h + dy), (x0 + t, y0 + h)]
    for poly, f in ((side, 0.78), (top, 1.35), (front, 1.0)):
        ax.add_patch(Polygon(poly, closed=True, facecolor=_shade(colour, f), edgecolor=figures.INK,
                             linewidth=0.6, zorder=3))  # fmt: skip


@dataclass
class Scale:
    """Points per unit: edges = k * sqrt(pixels), depth = a * log2(channels) + b, bars = c * log2(units)."""

    k: float
    depth_a: float = 5.0
    depth_b: float = 3.0
    bar_c: float = 8.0

    def edge(self, pixels: int) -> float:
        return max(self.k * math.sqrt(pixels), 3.0)

    def depth(self, channels: int) -> float:
        return self.depth_a * math.log2(max(channels, 1)) + self.depth_b

    def bar(self, units: int) -> float:
        return max(self.bar_c * math.log2(max(units, 2)), 12.0)


# ---------------------------------------------------------------------------------------------------
# Nodes: what a row holds. Each knows its size (width, extent above and below the centre line), where
# arrows attach, and how to draw itself at (x, yc): x its left edge, yc the row's centre line.


@dataclass
class Node(ABC):
    """What a row holds (a `Box`, a `Bar` or `Branches`): made from the analysis, drawn in points."""

    layer: Layer | None  # the layer that made this volume (None: the network's input)
    stats: list[LayerStats]  # one, or several for a deck
    extras: list[str] = field(default_factory=list)
    arrow: str = ""  # the label of the arrow into this node
    parts: int = 1  # boxes drawn for a grouped volume
    show_params: bool = True  # False for a concat's joined volume (its parameters are its branches')
    title: str = ""  # the name drawn, when not the layer's own (a ResNet block's: `layer3.4`)

    @abstractmethod
    def size(self, scale: Scale) -> tuple[float, float, float]:
        """(width, extent above the centre line, extent below it), in points, texts included."""

    @abstractmethod
    def ports_in(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        """Where arrows into the node end, drawn with its left edge at x and its centre line at yc."""

    @abstractmethod
    def ports_out(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        """Where arrows out of the node start (one per group of a split volume)."""

    @abstractmethod
    def draw(self, ax: Axes, x: float, yc: float, scale: Scale) -> None:
        """Draw the node with its left edge at x and its centre line at yc."""

    def inner_rows(self) -> list[Row]:
        """The rows drawn inside this node (branches, a repeated block, an auxiliary classifier)."""
        return []

    # texts shared by boxes and bars
    def name(self) -> str:
        if self.title:
            return self.title
        if self.layer is None:
            return "input"
        names = [s.name.rsplit(".", 1)[-1] for s in self.stats]
        return names[0] if len(names) == 1 else f"{names[0]}\u2013{names[-1]}"

    def volume_text(self) -> str:
        return str(self.stats[-1].output) if self.stats else ""

    def params_text(self) -> str:
        values = [s.params for s in self.stats]
        if not any(values) or not self.show_params:
            return ""
        groups: list[list[int]] = []
        for v in values:
            if groups and groups[-1][0] == v:
                groups[-1].append(v)
            else:
                groups.append([v])
        text = " + ".join(short(g[0]) if len(g) == 1 else f"{len(g)}\u00d7{short(g[0])}" for g in groups)
        return text + " params"

    def lines_below(self) -> list[tuple[str, float, bool]]:
        """(text, size, bold) lines under the node."""
        lines = [(self.volume_text(), FONT, True)]
        if self.parts > 1 and self.stats:
            out = self.stats[-1].output
            half = f"{out.width}x{out.height}x{out.channels // self.parts}"
            lines.append((f"{self.parts} groups \u00d7 {half}", SMALL, False))
        if self.params_text():
            lines.append((self.params_text(), SMALL, False))
        if self.extras:
            lines.append(("+ " + ", ".join(dict.fromkeys(self.extras)), SMALL, False))
        return lines

    def text_width(self) -> float:
        widths = [text_width(self.name(), FONT, True)]
        widths += [text_width(t, s, b) for t, s, b in self.lines_below()]
        return max(widths)

    def draw_texts(self, ax: Axes, cx: float, top: float, bottom: float) -> None:
        ax.text(cx, top + 3, self.name(), ha="center", va="bottom", fontsize=FONT, weight="bold",
                color=figures.INK)  # fmt: skip
        y = bottom - 3
        for text, size, bold in self.lines_below():
            ax.text(cx, y, text, ha="center", va="top", fontsize=size, weight="bold" if bold else "normal",
                    color=figures.INK if bold else figures.MUTED)  # fmt: skip
            y -= size * 1.3


TEXT_ABOVE = FONT * 1.3 + 4


def _text_below(node: Node) -> float:
    return 4 + sum(size * 1.3 for _, size, _ in node.lines_below())


@dataclass
class Box(Node):
    """A volume (or a deck of same-volume convolutions), drawn as 3-D boxes."""

    def _geometry(self, scale: Scale) -> tuple[float, float, float, float, float, float]:
        """(thickness, height, dx, dy, part pitch, body width) of the drawing."""
        v: Volume = self.stats[-1].output if self.stats else self.volume
        t = scale.depth(v.channels // self.parts)
        h = scale.edge(v.height)
        w = scale.edge(v.width)
        dx, dy = OBLIQUE[0] * w, OBLIQUE[1] * w
        pitch = h + dy + PART_GAP
        body = t + (len(self.stats) - 1) * DECK + dx if self.stats else t + dx
        return t, h, dx, dy, pitch, body

    volume: Volume = field(default_factory=lambda: Volume(3, 1, 1))  # the input's, when stats is empty

    def volume_text(self) -> str:
        return str(self.stats[-1].output) if self.stats else str(self.volume)

    def _centres(self, yc: float, scale: Scale) -> list[float]:
        _, _, _, dy, pitch, _ = self._geometry(scale)
        first = yc + (self.parts - 1) * pitch / 2 - dy / 2
        return [first - j * pitch for j in range(self.parts)]

    def size(self, scale: Scale) -> tuple[float, float, float]:
        t, h, dx, dy, pitch, body = self._geometry(scale)
        half = ((self.parts - 1) * pitch + h + dy) / 2
        return max(body, self.text_width()), half + TEXT_ABOVE, half + _text_below(self)

    def _left(self, x: float, scale: Scale) -> float:
        width = self.size(scale)[0]
        return x + (width - self._geometry(scale)[5]) / 2

    def ports_in(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        left = self._left(x, scale)
        return [(left, c) for c in self._centres(yc, scale)]

    def ports_out(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        t, h, dx, dy, _, _ = self._geometry(scale)
        right = self._left(x, scale) + t + (len(self.stats) - 1) * DECK + dx / 2
        return [(right, c + dy / 2) for c in self._centres(yc, scale)]

    def draw(self, ax: Axes, x: float, yc: float, scale: Scale) -> None:
        t, h, dx, dy, pitch, body = self._geometry(scale)
        left = self._left(x, scale)
        colour = _kind_colour(self.layer)
        centres = self._centres(yc, scale)
        for j, c in enumerate(reversed(centres)):  # bottom part first: the upper one's top face in front
            part = self.parts - 1 - j
            base = _shade(colour, 0.9) if part % 2 else colour
            for i in range(max(len(self.stats), 1)):
                _cuboid(ax, left + i * DECK, c - h / 2, t, h, dx, dy, base)
        if self.parts > 1:  # name the groups: GPU 1 on top, as in the AlexNet paper
            for j, c in enumerate(centres):
                label = f"GPU {j + 1}" if self.parts == 2 else str(j + 1)
                size = min(SMALL - 1, 0.8 * h, (t - 2) / max(text_width(label, 1.0), 1e-9))
                ax.text(left + t / 2, c, label, ha="center", va="center", fontsize=size, color=figures.INK,
                        zorder=4)  # fmt: skip
        top_y = centres[0] + h / 2 + dy
        bottom_y = centres[-1] - h / 2
        self.draw_texts(ax, left + body / 2, top_y, bottom_y)


@dataclass
class Bar(Node):
    """A fully connected layer: a thin bar, its height on a log scale of its units."""

    def _h(self, scale: Scale) -> float:
        return scale.bar(self.stats[-1].output.channels)

    def size(self, scale: Scale) -> tuple[float, float, float]:
        half = (self._h(scale) + 3) / 2
        return max(BAR_THICK + 3, self.text_width()), half + TEXT_ABOVE, half + _text_below(self)

    def _left(self, x: float, scale: Scale) -> float:
        return x + (self.size(scale)[0] - BAR_THICK - 3) / 2

    def ports_in(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        return [(self._left(x, scale), yc)]

    def ports_out(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        return [(self._left(x, scale) + BAR_THICK + 1.5, yc + 1.5)]

    def draw(self, ax: Axes, x: float, yc: float, scale: Scale) -> None:
        h, t, d = self._h(scale), BAR_THICK, 3.0
        x0, y0 = self._left(x, scale), yc - self._h(scale) / 2 - 1.5
        _cuboid(ax, x0, y0, t, h, d, d, figures.COLOURS["linear"])
        self.draw_texts(ax, x0 + (t + d) / 2, y0 + h + d, y0)


@dataclass
class Branches(Node):
    """Parallel rows between a fork and a join: concat (a box of the joined volume) or add (a circle)."""

    rows: list[Row] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # branch names
    join: Box | None = None  # concat: the joined volume; residual: None (a + circle)
    named: bool = True  # a residual's name at its top left (not inside a Repeat's frame, which names it)
    FORK = 16
    ROW_GAP = 10
    IDENTITY_H = 18

    def _rows(self, scale: Scale) -> list[tuple[float, float, float]]:
        out = []
        for row in self.rows:
            out.append(row.size(scale) if row.nodes else (60.0, self.IDENTITY_H / 2, self.IDENTITY_H / 2))
        return out

    def _layout(self, scale: Scale) -> tuple[float, float, float, list[float]]:
        """(rows' width, height above, below the centre, each row's centre offset)."""
        sizes = self._rows(scale)
        total = sum(u + d for _, u, d in sizes) + self.ROW_GAP * (len(sizes) - 1)
        y, centres = total / 2, []
        for _, u, d in sizes:
            centres.append(y - u)
            y -= u + d + self.ROW_GAP
        return max(w for w, _, _ in sizes), total / 2, total / 2, centres

    def _join_size(self, scale: Scale) -> tuple[float, float, float]:
        return self.join.size(scale) if self.join else (16.0, 8.0, 8.0)

    def inner_rows(self) -> list[Row]:
        return self.rows

    def _title_width(self) -> float:
        """A residual's name is written at its top left (its join is a small circle); a concat's
        stands over its joined volume."""
        return text_width(self.name(), FONT, True) + 4 if self._titled() else 0.0

    def _titled(self) -> bool:
        return self.join is None and self.named

    def size(self, scale: Scale) -> tuple[float, float, float]:
        rows_w, up, down, _ = self._layout(scale)
        jw, ju, jd = self._join_size(scale)
        width = max(self._lead() + rows_w + GAP + 24 + jw, self._title_width())
        above = max(up + (TEXT_ABOVE if self._titled() else 0), ju)
        return width, above + 10, max(down, jd)

    def ports_in(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        return [(x, yc)]

    def _join_x(self, x: float, scale: Scale) -> float:
        rows_w = self._layout(scale)[0]
        return x + self._lead() + rows_w + GAP + 24

    def _row_label(self, row: Row, name: str) -> str:
        return f"{name}: {row.nodes[0].arrow}" if row.nodes and row.nodes[0].arrow else name

    def _lead(self) -> float:
        """From the node's left edge to its rows: the fork, and room for the first arrows' labels."""
        widths = [text_width(self._row_label(r, n), SMALL) for r, n in zip(self.rows, self.labels) if r.nodes]
        return self.FORK + max([GAP, *widths]) + 14

    def ports_out(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        jx = self._join_x(x, scale)
        if self.join:
            return self.join.ports_out(jx, yc, scale)
        return [(jx + 16, yc)]

    def draw(self, ax: Axes, x: float, yc: float, scale: Scale) -> None:
        from matplotlib.patches import Circle

        _, _, _, centres = self._layout(scale)
        fork = (x + self.FORK / 2, yc)
        ax.add_patch(Circle(fork, 2.5, color=figures.INK, zorder=4))
        jx = self._join_x(x, scale)
        join_in = self.join.ports_in(jx, yc, scale)[0] if self.join else (jx, yc)
        for row, label, dy in zip(self.rows, self.labels, centres):
            ry = yc + dy
            rx = x + self._lead()
            if not row.nodes:
                _arrow(ax, [fork, (fork[0] + 6, ry), (join_in[0] - 6, ry)], join_in, "")
                ax.text((fork[0] + join_in[0]) / 2, ry + 2.5, label, ha="center", va="bottom", fontsize=SMALL,
                        style="italic", color=figures.MUTED)  # fmt: skip
                continue
            start = row.nodes[0].ports_in(rx, ry, scale)
            for p in start:
                _arrow(ax, [fork, (fork[0] + 6, p[1])], p, "")
            ax.text(fork[0] + 8, max(p[1] for p in start) + 2.5, self._row_label(row, label), fontsize=SMALL,
                    color=figures.INK, va="bottom", zorder=5)  # fmt: skip
            end = row.draw(ax, rx, ry, scale)
            for p in end:
                _arrow(ax, [p, (join_in[0] - 8, p[1])], join_in, "")
        if self.join:
            self.join.draw(ax, jx, yc, scale)
        else:
            ax.add_patch(Circle((jx + 8, yc), 7, facecolor="white", edgecolor=figures.INK, lw=0.8, zorder=4))
            ax.text(jx + 8, yc, "+", ha="center", va="center", fontsize=FONT + 2, zorder=5, color=figures.INK)
            if self._titled():
                top = yc + self._layout(scale)[1] + 4
                ax.text(x, top, self.name(), ha="left", va="bottom", fontsize=FONT, weight="bold",
                        color=figures.INK)  # fmt: skip


@dataclass
class Repeat(Node):
    """Consecutive identical modules (ResNet's layer3.1 to layer3.35: the same layers on the same input
    volume) drawn once, in a dashed frame marked with their count (x35) and their first and last names."""

    row: Row | None = None  # the first of the repeated modules
    count: int = 1
    names: tuple[str, str] = ("", "")  # the first and the last module's names
    PAD = 8.0

    def inner_rows(self) -> list[Row]:
        return [self.row] if self.row else []

    def name(self) -> str:
        return f"{self.names[0]} \u2013 {self.names[1]}"

    def times(self) -> str:
        return f"\u00d7{self.count}"

    def _header(self) -> float:
        return (FONT + 3) * 1.3 + 4

    def size(self, scale: Scale) -> tuple[float, float, float]:
        assert self.row is not None
        w, up, down = self.row.size(scale)
        labels = text_width(self.name(), FONT, True) + text_width(self.times(), FONT + 3, True) + 24
        return max(w + 2 * self.PAD, labels), up + self.PAD + self._header(), down + self.PAD

    def _inner_x(self, x: float, scale: Scale) -> float:
        assert self.row is not None
        return x + (self.size(scale)[0] - self.row.size(scale)[0]) / 2

    def ports_in(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        assert self.row is not None
        return self.row.ports_in(self._inner_x(x, scale), yc, scale)

    def ports_out(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        assert self.row is not None
        return self.row.ports_out(self._inner_x(x, scale), yc, scale)

    def draw(self, ax: Axes, x: float, yc: float, scale: Scale) -> None:
        from matplotlib.patches import FancyBboxPatch

        assert self.row is not None
        width, up, down = self.size(scale)
        ax.add_patch(FancyBboxPatch((x, yc - down), width, up + down, boxstyle="round,pad=0,rounding_size=6",
                                    facecolor="#f7f9fa", edgecolor=figures.MUTED, lw=0.8, ls=(0, (4, 3)),
                                    zorder=0))  # fmt: skip
        top = yc + up - 3
        ax.text(x + 6, top, self.name(), ha="left", va="top", fontsize=FONT, weight="bold", color=figures.INK)
        ax.text(x + width - 6, top + 1, self.times(), ha="right", va="top", fontsize=FONT + 3, weight="bold",
                color=figures.INK, gid="times")  # fmt: skip
        self.row.draw(ax, self._inner_x(x, scale), yc, scale)


@dataclass
class AuxHead(Node):
    """An auxiliary classifier (GoogLeNet's): the main line passes through; its row hangs below it,
    fed from a fork, and ends in its own logits (training only, its loss weighted)."""

    row: Row | None = None
    weight: float = 0.0
    DROP = 6.0  # from the main line down to the caption

    def inner_rows(self) -> list[Row]:
        return [self.row] if self.row else []

    def caption(self) -> str:
        return f"{self.name()}: auxiliary classifier, training only, loss \u00d7 {self.weight:g}"

    def _lead(self) -> float:
        assert self.row is not None
        return 8 + max(GAP * 2, text_width(self.row.nodes[0].arrow, SMALL) + 10)

    def _row_centre(self, yc: float, scale: Scale) -> float:
        assert self.row is not None
        return yc - self.DROP - SMALL * 1.3 - 4 - self.row.size(scale)[1]

    def size(self, scale: Scale) -> tuple[float, float, float]:
        assert self.row is not None
        w, up, down = self.row.size(scale)
        width = max(self._lead() + w + 6, text_width(self.caption(), SMALL) + 16)
        return width, 6.0, self.DROP + SMALL * 1.3 + 4 + up + down

    def ports_in(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        return [(x + 6, yc)]

    def ports_out(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        return [(x + self.size(scale)[0], yc)]

    def draw(self, ax: Axes, x: float, yc: float, scale: Scale) -> None:
        from matplotlib.patches import Circle

        assert self.row is not None
        width = self.size(scale)[0]
        fork = (x + 6, yc)
        ax.plot([fork[0], x + width], [yc, yc], color=figures.MUTED, lw=0.8, zorder=1)
        ax.add_patch(Circle(fork, 2.5, color=figures.INK, zorder=4))
        ax.text(x + 14, yc - self.DROP, self.caption(), ha="left", va="top", fontsize=SMALL, style="italic",
                color=figures.MUTED)  # fmt: skip
        ry = self._row_centre(yc, scale)
        rx = x + self._lead()
        first = self.row.nodes[0]
        for p in first.ports_in(rx, ry, scale):
            _arrow(ax, [fork, (fork[0], p[1])], p, "")
        if first.arrow:
            ax.text((fork[0] + rx) / 2 + 2, max(p[1] for p in first.ports_in(rx, ry, scale)) + 2.5,
                    first.arrow, ha="center", va="bottom", fontsize=SMALL, color=figures.INK,
                    zorder=5)  # fmt: skip
        self.row.draw(ax, rx, ry, scale)


# ---------------------------------------------------------------------------------------------------
# Rows


@dataclass
class Row:
    """Nodes left to right, joined by arrows labelled with what makes the next volume."""

    nodes: list[Node]

    def gaps(self) -> list[float]:
        """The space before each node (after the first): room for its arrow's label."""
        return [max(GAP * 2, text_width(n.arrow, SMALL) + 8) for n in self.nodes[1:]]

    def size(self, scale: Scale) -> tuple[float, float, float]:
        sizes = [n.size(scale) for n in self.nodes]
        width = sum(w for w, _, _ in sizes) + sum(self.gaps())
        return width, max(u for _, u, _ in sizes), max(d for _, _, d in sizes)

    def lefts(self, x: float, scale: Scale) -> list[float]:
        """The left edge of each node, the row drawn from x."""
        out = []
        for node, gap in zip(self.nodes, [0.0, *self.gaps()]):
            x += gap
            out.append(x)
            x += node.size(scale)[0]
        return out

    def ports_in(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        return self.nodes[0].ports_in(x, yc, scale)

    def ports_out(self, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        return self.nodes[-1].ports_out(self.lefts(x, scale)[-1], yc, scale)

    def draw(self, ax: Axes, x: float, yc: float, scale: Scale) -> list[tuple[float, float]]:
        """Draw at (x, yc); returns the last node's out-ports."""
        gaps = [0.0, *self.gaps()]
        prev: list[tuple[float, float]] = []
        prev_node: Node | None = None
        for node, gap in zip(self.nodes, gaps):
            x += gap
            if prev_node is not None:
                _connect(ax, prev, node.ports_in(x, yc, scale), node, x - gap / 2)
            node.draw(ax, x, yc, scale)
            prev, prev_node = node.ports_out(x, yc, scale), node
            x += node.size(scale)[0]
        return prev


def _connect(ax: Axes, src: list[tuple[float, float]], dst: list[tuple[float, float]], node: Node,
             label_x: float) -> None:  # fmt: skip
    """Arrows from `prev` to `node`: one per group when the layer keeps the groups apart, else all to all."""
    keeps = _parallel(len(src), node) and len(src) == len(dst)
    pairs = list(zip(src, dst)) if keeps else [(s, d) for s in src for d in dst]
    top = max(max(s[1], d[1]) for s, d in pairs)
    for s, d in pairs:
        _arrow(ax, [s], d, "")
    if node.arrow:
        ax.text(label_x, top + 2.5, node.arrow, ha="center", va="bottom", fontsize=SMALL, color=figures.INK,
                zorder=5)  # fmt: skip


def _parallel(parts: int, node: Node) -> bool:
    """Whether the layer making `node` keeps the `parts` groups of its input apart (one arrow each)."""
    layer = node.layer
    if parts < 2 or node.parts != parts:
        return False
    return isinstance(layer, (Pool, AdaptiveAvgPool)) or (isinstance(layer, Conv) and layer.groups == parts)


def _arrow(ax: Axes, path: list[tuple[float, float]], end: tuple[float, float], label: str) -> None:
    """A polyline through `path` ending in an arrow head at `end`."""
    from matplotlib.patches import FancyArrowPatch

    pts = [*path, end]
    if len(pts) > 2:
        xs, ys = zip(*pts[:-1])
        ax.plot(xs, ys, color=figures.MUTED, lw=0.8, zorder=1, solid_capstyle="round")
    ax.add_patch(FancyArrowPatch(pts[-2], end, arrowstyle="-|>", mutation_scale=7, color=figures.MUTED,
                                 lw=0.8, shrinkA=0, shrinkB=1, zorder=2))  # fmt: skip
    if label:
        ax.text((pts[-2][0] + end[0]) / 2, end[1] + 2.5, label, ha="center", va="bottom", fontsize=SMALL,
                color=figures.INK, zorder=5)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# From the report to nodes


def build_nodes(report: Report) -> list[Node]:
    """The top-level nodes of `report`'s network, the input first."""
    stats = {r.name: r for r in report.rows}
    nodes: list[Node] = [Box(None, [], volume=report.input)]
    nodes += _nodes(report.network.layers, "", stats)
    _mark_parts(nodes)
    return nodes


def _nodes(layers: tuple[Layer, ...], prefix: str, stats: dict[str, LayerStats]) -> list[Node]:
    out: list[Node] = []
    pending: list[str] = []  # flatten (and extras with no node before them) label the next arrow
    i = 0
    while i < len(layers):
        layer = layers[i]
        name = prefix + layer.name
        count = 1
        while i + count < len(layers) and _same_module(layer, layers[i + count], prefix, stats):
            count += 1
        last = prefix + layers[i + count - 1].name
        i += count
        node: Node | None = None
        if count > 1:
            inner = _nodes((layer,), prefix, stats)
            if len(inner) == 1 and isinstance(inner[0], Branches):
                inner[0].named = False  # the frame names it
            pending.append(inner[0].arrow)  # drawn on the arrow into the frame (a row's first is not)
            inner[0].arrow = ""
            node = Repeat(layer, [stats[name]], row=Row(inner), count=count, names=(name, last))
        elif isinstance(layer, Block):
            inner = _nodes(layer.layers, name + ".", stats)
            if inner and pending:
                inner[0].arrow = _joined([*pending, inner[0].arrow])
                pending = []
            if is_module(layer) and len(inner) == 1 and isinstance(inner[0], Branches):
                inner[0].title = name  # ResNet's layer3.4, not the `add` inside it
            out += inner
            continue
        elif isinstance(layer, Concat):
            rows = [Row(_nodes(b.layers, f"{name}.{b.name}.", stats)) for b in layer.branches]
            join = Box(layer, [stats[name]], arrow="", show_params=False)
            node = Branches(
                layer, [stats[name]], rows=rows, labels=[b.name for b in layer.branches], join=join
            )
        elif isinstance(layer, Residual):
            parts = [layer.body, layer.shortcut]
            rows = [Row(_nodes(p.layers, f"{name}.{p.name}.", stats) if p else []) for p in parts]
            labels = [layer.body.name, layer.shortcut.name if layer.shortcut else "identity"]
            node = Branches(layer, [stats[name]], rows=rows, labels=labels)
        elif isinstance(layer, Aux):
            row = Row(_nodes(layer.layers, name + ".", stats))
            node = AuxHead(layer, [stats[name]], row=row, weight=layer.weight)
        elif isinstance(layer, (Conv, Pool, AdaptiveAvgPool)) or _new_volume(layer, stats[name]):
            node = Box(layer, [stats[name]])
        elif isinstance(layer, Linear):
            node = Bar(layer, [stats[name]])
        elif isinstance(layer, Flatten):
            pending.append("flatten")
            continue
        elif isinstance(layer, ReLU):
            continue  # after nearly every conv and fc: said once in the legend
        else:  # LRN, batch norm, dropout: a note under the box they follow
            if out and not isinstance(out[-1], AuxHead):
                out[-1].extras.append(extra_label(layer))
            else:
                pending.append(extra_label(layer))
            continue
        inside = isinstance(node, (Branches, Repeat, AuxHead))  # their rows' arrows say what they do
        node.arrow = _joined(pending if inside else [*pending, op_label(layer)])
        pending = []
        if _stacks(out[-1] if out else None, node):
            out[-1].stats.append(stats[name])
            out[-1].arrow = op_label(layer, len(out[-1].stats))
        else:
            out.append(node)
    return out


def _joined(labels: list[str]) -> str:
    return " + ".join(x for x in labels if x)


def _same_module(a: Layer, b: Layer, prefix: str, stats: dict[str, LayerStats]) -> bool:
    """Whether `b` repeats the module `a` just before it: the same layers (all but its own name) on the
    same input volume, so the same output, parameters and multiply-adds (ResNet's layer3.1 to 3.35).
    A stage's first block, which changes the volume, differs from the rest and is drawn apart."""
    return (
        isinstance(a, (Block, Concat, Residual))
        and type(a) is type(b)
        and dataclasses.replace(a, name=b.name) == b
        and stats[prefix + a.name].input == stats[prefix + b.name].input
    )


def _stacks(prev: Node | None, node: Node) -> bool:
    """A convolution joins the deck before it: same settings, same volume, nothing else in between."""
    if not isinstance(prev, Box) or not isinstance(node, Box) or set(prev.extras) - {"BN"} or not prev.stats:
        return False
    a, b = prev.layer, node.layer
    return (
        isinstance(a, Conv)
        and isinstance(b, Conv)
        and prev.stats[-1].output == node.stats[0].output
        and (a.kernel, a.stride, a.padding, a.groups, a.dilation)
        == (b.kernel, b.stride, b.padding, b.groups, b.dilation)
    )


def _groups(node: Node) -> int:
    layer = node.layer
    g = layer.groups if isinstance(layer, Conv) else 1
    return g if 2 <= g <= MAX_PARTS and not any(s.output.channels % g for s in node.stats) else 1


def _keeps_groups(node: Node) -> bool:
    return isinstance(node, Box) and isinstance(node.layer, (Pool, AdaptiveAvgPool))


def _mark_parts(nodes: list[Node]) -> None:
    """Split a volume into the groups that made it or that the next grouped convolution reads.

    Forward: a grouped convolution's output is in `groups` parts, and pooling keeps them apart.
    Backward: a volume read by a grouped convolution (through pooling) is in that many parts.
    """
    forward = []
    for i, node in enumerate(nodes):
        g = _groups(node)
        if g == 1 and _keeps_groups(node) and i:
            g = forward[-1]
        forward.append(g)
    backward = [1] * len(nodes)
    for i in range(len(nodes) - 2, -1, -1):
        nxt = nodes[i + 1]
        backward[i] = (
            _groups(nxt) if isinstance(nxt.layer, Conv) else backward[i + 1] if _keeps_groups(nxt) else 1
        )
    for node, f, b in zip(nodes, forward, backward):
        parts = max(f, b)
        channels = (
            node.stats[-1].output.channels
            if node.stats
            else getattr(node, "volume", Volume(1, 1, 1)).channels
        )
        if isinstance(node, Box) and channels % parts == 0 and node.layer is not None:
            node.parts = parts
    for node in nodes:
        for row in node.inner_rows():
            _mark_parts(row.nodes)


# ---------------------------------------------------------------------------------------------------
# The figure


def _wrap(nodes: list[Node], scale: Scale) -> list[Row]:
    """Top-level nodes cut into rows of about equal width, as few as keep each under MAX_ROW points
    (a single node wider than that gets a row of its own).

    A cut between two volumes whose groups stay apart (parallel arrows) is avoided where another is
    nearly as even: the arrow that wraps to the next row is drawn as one line.
    """
    widths = [n.size(scale)[0] + (max(GAP * 2, text_width(n.arrow, SMALL) + 8) if i else 0)
              for i, n in enumerate(nodes)]  # fmt: skip
    count = max(1, math.ceil(sum(widths) / MAX_ROW))
    while True:
        cuts = _cuts(nodes, widths, count)
        spans = zip([0, *cuts], [*cuts, len(nodes)])
        if count >= len(nodes) or all(sum(widths[a:b]) <= MAX_ROW or b - a == 1 for a, b in spans):
            break
        count += 1  # the rest did not fit in the last row: one row more, all evened out again
    return [Row(nodes[a:b]) for a, b in zip([0, *cuts], [*cuts, len(nodes)])]


def _cuts(nodes: list[Node], widths: list[float], count: int) -> list[int]:
    """Where to cut `nodes` into `count` rows near the same width: the index each row after the first
    starts at."""
    target = sum(widths) / count
    cuts: list[int] = []
    start = 0
    while len(cuts) < count - 1 and start < len(nodes) - 1:
        best, best_cost, width = start + 1, math.inf, 0.0
        for end in range(start + 1, len(nodes)):  # the row is nodes[start:end]
            width += widths[end - 1]
            if width > MAX_ROW and end > start + 1:
                break
            parallel = _parallel(nodes[end - 1].parts, nodes[end])
            cost = abs(width - target) / target + (0.3 if parallel else 0.0)
            if cost < best_cost:
                best, best_cost = end, cost
        cuts.append(best)
        start = best
    return cuts


def _scale(report: Report) -> Scale:
    sides = [max(r.output.height, r.output.width) for r in report.leaves if not r.output.flat]
    biggest = max([report.input.height, report.input.width, *sides])
    return Scale(k=min(5.0, MAX_EDGE / math.sqrt(biggest)))


def diagram_figure(report: Report) -> Figure:
    """The architecture diagram of an analysed network as a matplotlib figure (sizes in points)."""
    scale = _scale(report)
    nodes = build_nodes(report)
    rows = _wrap(nodes, scale)
    sizes = [r.size(scale) for r in rows]
    margin, title_h, row_gap = 24.0, 40.0, 26.0
    head, sub = _title_texts(report)
    titles = max(text_width(head, 12, bold=True), text_width(sub, SMALL + 0.5))
    width = max(max(w for w, _, _ in sizes) + 2 * margin + 30, titles + 2 * margin, 560)
    legend = [x for line in _legend_lines(report, nodes) for x in wrap_text(line, width - 2 * margin, SMALL)]
    legend_h = 14 + 12 * len(legend)
    height = title_h + sum(u + d for _, u, d in sizes) + row_gap * (len(rows) - 1) + legend_h + margin
    fig = figures.new_figure(width / 72, height / 72)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    _title(ax, report, margin, height - 12)
    y = height - title_h
    prev_end: list[tuple[float, float]] = []
    for i, (row, (_, up, down)) in enumerate(zip(rows, sizes)):
        yc = y - up
        x = margin + 30 if i else margin  # room for the arrow coming from the row above
        if prev_end:  # the arrow from the end of the previous row wraps to the start of this one
            first = row.nodes[0]
            dst = first.ports_in(x, yc, scale)
            turn = y + row_gap / 2 - 4
            sx, sy = max(prev_end)
            for d in dst:
                _arrow(ax, [(sx, sy), (sx + 12, sy), (sx + 12, turn), (margin + 6, turn), (margin + 6, d[1])],
                       d, "")  # fmt: skip
            if first.arrow:
                ax.text(margin + 2, turn + 3, first.arrow, fontsize=SMALL, color=figures.INK, va="bottom")
        prev_end = row.draw(ax, x, yc, scale)
        y -= up + down + row_gap
    _legend(ax, legend, margin, margin - 8 + legend_h - 12, nodes)
    return fig


def _title_texts(report: Report) -> tuple[str, str]:
    net = report.network
    i = report.input
    head = f"{net.name}" + (f": {net.info.title}" if net.info.title else "")
    layers = f"{report.weight_layers} layers with weights"
    if report.depth != report.weight_layers:  # branched: the lecture's depth is the longest path
        layers = (
            f"{report.depth} layers deep (weight layers on the longest path), {report.weight_layers} in all"
        )
    sub = (
        f"input {i.width}x{i.height}x{i.channels}; {report.params:,} parameters ({short(report.params)}); "
        f"{'' if report.macs_exact else 'at least '}{short(report.macs)} multiply-adds per image; {layers}"
    )
    if report.aux_params:
        sub += f"; auxiliary classifiers +{short(report.aux_params)} parameters (training only)"
    return head, sub


def _title(ax: Axes, report: Report, x: float, y: float) -> None:
    head, sub = _title_texts(report)
    ax.text(x, y, head, fontsize=12, weight="bold", va="top", color=figures.INK)
    ax.text(x, y - 16, sub, fontsize=SMALL + 0.5, va="top", color=figures.MUTED)


def _legend_lines(report: Report, nodes: list[Node]) -> list[str]:
    lines = [
        "Boxes: output volumes W x H x D; height and width drawn proportional to the square root of the "
        "pixels, depth to log2(channels). Bars: fully connected layers, height proportional to log2(units).",
        "Arrows: kernel/stride of what makes the next volume (p = padding, g = groups, d = dilation, "
        "ceil = output size rounded up, xN = N layers). "
        "Parameters = weights + biases. ReLU layers are not drawn.",
    ]
    if any(n.parts > 1 for n in _all(nodes)):
        lines.append(
            "Split boxes: the groups of a grouped convolution (the AlexNet paper's two GPUs, 1 on top, "
            "2 below). Parallel arrows stay on one GPU; crossing arrows connect both."
        )
    if any(isinstance(n, Box) and len(n.stats) > 1 for n in _all(nodes)):
        lines.append("Decks: consecutive convolutions with the same settings and output volume.")
    every = _all(nodes)
    if any(isinstance(n, Branches) and n.join is not None for n in every):
        lines.append("Forks: branches that read the same volume; their outputs are concatenated along the "
                     "depth into the volume after them (an Inception module).")  # fmt: skip
    if any(isinstance(n, Branches) and n.join is None for n in every):
        lines.append("+: a residual block's sum, body(x) + shortcut(x), element by element; the shortcut "
                     "is the identity or a 1x1 projection where the volume changes.")  # fmt: skip
    if any(isinstance(n, Repeat) for n in every):
        lines.append(
            "Dashed frames \u00d7N: N consecutive identical blocks (the same layers on the same volume), "
            "drawn once; a stage's first block changes the volume and is drawn apart."
        )
    if any(isinstance(n, AuxHead) for n in every):
        lines.append(
            "Auxiliary classifiers hang below the main line: run in training only, their loss added "
            "with the weight shown; not in the parameters and multiply-adds above."
        )
    return lines


def wrap_text(text: str, width: float, size: float) -> list[str]:
    """`text` cut at spaces into lines no wider than `width` points at font `size`."""
    lines: list[str] = []
    for word in text.split():
        if lines and text_width(f"{lines[-1]} {word}", size) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def _all(nodes: list[Node]) -> list[Node]:
    out = []
    for n in nodes:
        out.append(n)
        for row in n.inner_rows():
            out += _all(row.nodes)
    return out


def _legend(ax: Axes, lines: list[str], x: float, y: float, nodes: list[Node]) -> None:
    for k, line in enumerate(lines):
        ax.text(x, y - 12 * k, line, fontsize=SMALL, color=figures.MUTED, va="top")


def draw(report: Report, out: str | Path) -> Path:
    """Write the diagram of `report` to `out` (.svg or .png); returns the path."""
    figures.check_output(out)  # a bad name or folder fails before the drawing
    return figures.save(diagram_figure(report), out)
