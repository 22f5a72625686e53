"""The first convolution's filters as one picture: a grid of tiles, one per filter, split into the
groups the next layer reads them in (AlexNet: two blocks of 48, figure 3 of Krizhevsky, Sutskever &
Hinton, NIPS 2012: the paper's GPU 1 and GPU 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ...networks.spec import LRN, BatchNorm, Block, Conv, Dropout, Pool, ReLU, walk
from .common import VisualizationError, no_ticks

if TYPE_CHECKING:
    from ...nn import Model

__all__ = ["FilterGrid", "filter_grid", "filters_figure", "first_conv"]


@dataclass
class FilterGrid:
    """First-layer filters laid out as one picture.

    image: H x W x 3 floats in [0, 1], NaN between tiles (the background); each tile is one filter,
    min-max normalised over all its values (so its colours keep their proportions). boxes: one
    (row, column, height, width) per filter, in filter order. groups: how many groups the rows are split
    into (each group starts a new block of rows, with a wider gap).
    """

    image: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    groups: int
    columns: int


def filter_grid(weight: Tensor, groups: int = 1, columns: int | None = None, spacing: int = 1) -> FilterGrid:
    """Lay out conv filters `weight` (out x in x kh x kw) as a grid of tiles, `spacing` pixels apart.

    Filters with 3 input channels are drawn in RGB; others as the grey mean over their inputs. Each
    filter is min-max normalised on its own. With `groups` > 1 the filters are split into that many
    consecutive groups, each a block of rows, blocks 3 * spacing apart. `columns` defaults to 16 when a
    group has at least 16 filters, else the ceiling of the square root of a group's size.
    """
    if weight.dim() != 4:
        raise VisualizationError(f"Filters are out x in x height x width, got shape {tuple(weight.shape)}.")
    out, cin, kh, kw = weight.shape
    if groups < 1 or out % groups:
        raise VisualizationError(f"{out} filters cannot be split into {groups} groups.")
    w = weight.detach().float().cpu()
    tiles = w if cin == 3 else w.mean(1, keepdim=True).expand(out, 3, kh, kw)
    lo = tiles.amin(dim=(1, 2, 3), keepdim=True)
    span = tiles.amax(dim=(1, 2, 3), keepdim=True) - lo
    tiles = torch.where(span > 0, (tiles - lo) / span.clamp_min(1e-12), torch.full_like(tiles, 0.5))
    per_group = out // groups
    if columns is None:
        columns = 16 if per_group >= 16 else math.ceil(math.sqrt(per_group))
    rows = math.ceil(per_group / columns)
    gap = 3 * spacing
    block_h = rows * (kh + spacing) - spacing
    height = groups * block_h + (groups - 1) * gap
    width = columns * (kw + spacing) - spacing
    image = np.full((height, width, 3), np.nan)
    boxes = []
    for i in range(out):
        g, j = divmod(i, per_group)
        r, c = divmod(j, columns)
        top, left = g * (block_h + gap) + r * (kh + spacing), c * (kw + spacing)
        image[top : top + kh, left : left + kw] = tiles[i].permute(1, 2, 0).numpy()
        boxes.append((top, left, kh, kw))
    return FilterGrid(image, boxes, groups, columns)


def _leaves(model: Model) -> list[tuple[str, Any]]:
    """The model's layers that are not blocks, with their dotted names, in order."""
    return [(name, layer) for name, layer in walk(model.spec.layers) if not isinstance(layer, Block)]


def first_conv(model: Model) -> tuple[str, Conv, int, str | None]:
    """The first convolution, the groups its filters are shown in, and the layer that splits them.

    The groups are the conv's own, or those of the next convolution when only channel-preserving layers
    (ReLU, LRN, pooling, batch norm, dropout) lie between: AlexNet's conv1 is not grouped, but conv2
    (groups=2) sees filters 1-48 on one GPU and 49-96 on the other, the split of the paper's figure 3.
    """
    leaves = _leaves(model)
    for i, (name, layer) in enumerate(leaves):
        if isinstance(layer, Conv):
            if layer.groups > 1:
                return name, layer, layer.groups, name
            for next_name, nxt in leaves[i + 1 :]:
                if isinstance(nxt, Conv):
                    return (name, layer, nxt.groups, next_name) if nxt.groups > 1 else (name, layer, 1, None)
                if not isinstance(nxt, (ReLU, LRN, Pool, BatchNorm, Dropout)):
                    break
            return name, layer, 1, None
    raise VisualizationError(f"{model.spec.name} has no convolution, so it has no filters to show.")


def filters_figure(model: Model, columns: int | None = None) -> Figure:
    """The first convolution's filters as a grid of tiles (`filter_grid`), split into groups as the next
    layer sees them (AlexNet: two blocks of 48, the paper's GPU 1 and GPU 2), on a white background."""
    name, conv, groups, splitter = first_conv(model)
    weight = model.get_submodule(name).weight
    grid = filter_grid(weight, groups, columns)
    picture = np.where(np.isnan(grid.image), 1.0, grid.image)
    h, w = picture.shape[:2]
    scale = min(9.0 / w, 7.0 / h, 0.45)
    size = (max(w * scale, 3.0) + (1.4 if groups > 1 else 0.2), h * scale + 0.8)
    fig = Figure(figsize=(round(size[0], 1), round(size[1], 1)))  # whole pixels at 110 dpi
    ax = fig.add_axes((0.14 if groups > 1 else 0.02, 0.02, 0.84 if groups > 1 else 0.96, 0.86))
    ax.imshow(picture, interpolation="nearest")
    no_ticks(ax)
    for side in ax.spines.values():
        side.set_visible(False)
    out, cin, kh, kw = weight.shape
    per = out // groups
    for g in range(groups if groups > 1 else 0):
        top = grid.boxes[g * per][0]
        bottom = grid.boxes[(g + 1) * per - 1][0] + kh
        label = f"group {g + 1}\nfilters {g * per + 1}-{(g + 1) * per}"
        ax.text(-1.0, (top + bottom) / 2, label, ha="right", va="center", fontsize=8)
    kh_, kw_ = conv.kernel
    colour = "RGB" if cin == 3 else "mean over inputs"
    title = f"{model.spec.name} {name}: {out} filters {kh_}x{kw_}x{cin} ({colour}, each min-max scaled)"
    if splitter and splitter != name:
        title += f"\nrows split as {splitter} (groups={groups}) sees them"
        if model.spec.name.startswith("alexnet"):
            title += ": the paper's two GPUs"
    elif groups > 1:
        title += f"\n{name} has groups={groups}"
    fig.suptitle(title, fontsize=9)
    return fig
