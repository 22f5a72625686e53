"""Deconvnet projections (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
ECCV 2014): single activations of a layer sent back down to pixel space through the max-pooling
switches, beside the image patch under each unit's receptive field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from ...networks.spec import (
    LRN,
    AdaptiveAvgPool,
    AvgPool,
    BatchNorm,
    Block,
    Conv,
    Dropout,
    MaxPool,
    Pool,
    ReLU,
    walk,
)
from ...training.evaluate import eval_mode
from .common import VisualizationError, analyzer_rows, check_image, check_layer, display_image, no_ticks

if TYPE_CHECKING:
    from ...nn import Model

__all__ = ["Projection", "deconv_figure", "deconv_projection", "deconv_unit", "deconv_units", "receptive_box"]


@dataclass
class _Step:
    """One leaf of the forward pass, as the deconvnet needs to undo it."""

    name: str
    layer: Any
    module: nn.Module
    input_size: tuple[int, int]
    indices: Tensor | None = None  # max pooling's switches: flat argmax positions in the input plane
    input: Tensor | None = None  # kept for the layers undone through autograd (average pooling)


def _forward_trace(model: Model, x: Tensor, layer: str) -> tuple[list[_Step], Tensor]:
    """Run the model leaf by leaf up to `layer` (included; for a block, its last leaf), recording what
    the way back needs: each leaf's input size, max pooling's switches, average pooling's input."""
    check_layer(model, layer, spatial=True, what="positions")
    nodes = walk(model.spec.layers)
    inside = [name for name, _ in nodes if name == layer or name.startswith(layer + ".")]
    last = inside[-1]
    steps: list[_Step] = []
    for name, node in nodes:
        if isinstance(node, Block):
            continue
        if not isinstance(node, (Conv, ReLU, LRN, Pool, AdaptiveAvgPool, BatchNorm, Dropout)):
            raise VisualizationError(
                f"The deconvnet goes back through a single chain of convolution, ReLU, LRN, pooling, batch "
                f"norm and dropout layers; {name} ({node.kind}) comes before {layer}. Choose a layer "
                f"before {name}."
            )
        module = model.get_submodule(name)
        step = _Step(name, node, module, (x.shape[-2], x.shape[-1]))
        if isinstance(node, MaxPool):
            m = module
            x, step.indices = F.max_pool2d(
                x, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode, return_indices=True
            )
        else:
            if isinstance(node, (AvgPool, AdaptiveAvgPool)):
                step.input = x.clone()
            x = module(x.clone())
        steps.append(step)
        if name == last:
            break
    return steps, x


def _unpool(signal: Tensor, indices: Tensor, size: tuple[int, int]) -> Tensor:
    """Put each pooled value back at its switch (the max's position); where overlapping windows share
    a max, their values add, as the gradient does (`max_unpool2d` would keep only one of them)."""
    n, c = signal.shape[:2]
    out = signal.new_zeros(n, c, size[0] * size[1])
    out.scatter_add_(2, indices.expand(n, -1, -1, -1).flatten(2), signal.flatten(2))
    return out.view(n, c, *size)


def _backward(steps: list[_Step], signal: Tensor) -> Tensor:
    """Project `signal` (N x C x h x w at the last step's output) back to pixel space (N x 3 x H x W)."""
    for step in reversed(steps):
        layer, m = step.layer, step.module
        if isinstance(layer, Conv):
            h, w = step.input_size
            pad = []
            for axis, n_in in enumerate((h, w)):
                reach = (signal.shape[2 + axis] - 1) * m.stride[axis] - 2 * m.padding[axis]
                pad.append(n_in - (reach + m.dilation[axis] * (m.kernel_size[axis] - 1) + 1))
            signal = F.conv_transpose2d(
                signal, m.weight, None, m.stride, m.padding, tuple(pad), m.groups, m.dilation
            )
        elif isinstance(layer, ReLU):
            signal = F.relu(signal)
        elif isinstance(layer, MaxPool) and step.indices is not None:
            signal = _unpool(signal, step.indices, step.input_size)
        elif isinstance(layer, (AvgPool, AdaptiveAvgPool)):
            with torch.enable_grad():
                x = step.input.expand(signal.shape[0], -1, -1, -1).clone().requires_grad_(True)
                (signal,) = torch.autograd.grad(m(x), x, signal)
        elif isinstance(layer, BatchNorm):
            scale = m.weight / torch.sqrt(m.running_var + m.eps)
            signal = signal * scale.view(1, -1, 1, 1)
        # LRN and dropout pass the signal through unchanged
    return signal


@dataclass
class Projection:
    """Deconvnet projections of single activations of one layer.

    images: N x 3 x H x W, each projection in the input's (normalised) pixel space; zero outside the
    unit's receptive field. channels, positions ((row, column) in the layer's output), activations:
    which unit each projection starts from and its value. boxes: each unit's receptive field in input
    pixels as (top, left, bottom, right), bottom/right exclusive, clipped to the image.
    """

    layer: str
    images: Tensor
    channels: list[int]
    positions: list[tuple[int, int]]
    activations: list[float]
    boxes: list[tuple[int, int, int, int]]


def receptive_box(model: Model, layer: str, row: int, col: int) -> tuple[int, int, int, int]:
    """The input pixels that unit (row, col) of `layer` can see: (top, left, bottom, right), bottom and
    right exclusive, clipped to the image. From the analyzer's receptive field (size, jump, start): the
    unit's field is centred at start + index * jump and spans size pixels."""
    row_stats = {r.name: r for r in analyzer_rows(model)}[layer]
    rf = row_stats.receptive_field
    _, h, w = model.input_shape
    out = []
    for axis, (i, n) in enumerate(((row, h), (col, w))):
        centre = rf.start[axis] + i * rf.jump[axis]
        half = (rf.size[axis] - 1) / 2
        out.append((max(0, math.floor(centre - half)), min(n, math.ceil(centre + half) + 1)))
    (top, bottom), (left, right) = out
    return top, left, bottom, right


def deconv_units(model: Model, image: Tensor, layer: str, units: Sequence[tuple[int, int, int]]) -> Tensor:
    """Deconvnet projections of several units of `layer`, each on its own: for each (channel, row, col),
    keep that one activation, zero every other, and go back to pixel space (see `deconv_projection`).
    One forward pass, one batched way back. Returns N x 3 x H x W (normalised pixel units)."""
    x = check_image(model, image)
    with eval_mode(model), torch.no_grad():
        steps, out = _forward_trace(model, x, layer)
        c, h, w = out.shape[1:]
        signal = out.new_zeros(len(units), c, h, w)
        for k, (channel, row, col) in enumerate(units):
            if not (0 <= channel < c and 0 <= row < h and 0 <= col < w):
                raise VisualizationError(
                    f"{layer} has {c} channels of {h}x{w}; unit ({channel}, {row}, {col}) is outside it "
                    "(channel, row and column count from 0)."
                )
            signal[k, channel, row, col] = out[0, channel, row, col]
        return _backward(steps, signal)


def deconv_unit(model: Model, image: Tensor, layer: str, channel: int, row: int, col: int) -> Tensor:
    """The deconvnet projection of one unit of `layer` (`deconv_units` for one unit): 3 x H x W."""
    return deconv_units(model, image, layer, [(channel, row, col)])[0]


def deconv_projection(model: Model, image: Tensor, layer: str, top: int = 9) -> Projection:
    """The ZFNet paper's deconvnet: the `top` channels of `layer` with the strongest single activation,
    each projected back to pixel space from its strongest unit alone (all other activations zeroed).

    Going back undoes each layer in reverse order: a convolution by the transposed convolution with the
    same filters (`conv_transpose2d`; groups, stride, padding and dilation kept, bias left out); a max
    pooling by unpooling through the switches recorded on the way forward (`max_pool2d(...,
    return_indices=True)`; values whose windows overlap and share a max are added); a ReLU by a ReLU on
    the projected signal (the deconvnet's rule, not the gradient's mask); average pooling by its
    transpose; batch norm (eval) by its per-channel scale. LRN and dropout pass the signal through
    unchanged: LRN divides each activation by a positive factor computed from the neighbouring channels
    at the same position (it rescales, never moves or zeroes, and is not linear, so it has no
    transpose); the paper describes the reconstruction as unpooling, rectification and filtering only.
    The projections are exactly zero outside each unit's receptive field.
    """
    x = check_image(model, image)
    with eval_mode(model), torch.no_grad():
        steps, out = _forward_trace(model, x, layer)
        out = out[0]
        c, h, w = out.shape
        best, where = out.flatten(1).max(dim=1)
        channels = torch.argsort(best, descending=True)[: max(1, min(top, c))].tolist()
        signal = out.new_zeros(len(channels), c, h, w)
        positions, values = [], []
        for k, ch in enumerate(channels):
            r, col = divmod(int(where[ch]), w)
            signal[k, ch, r, col] = out[ch, r, col]
            positions.append((r, col))
            values.append(float(out[ch, r, col]))
        images = _backward(steps, signal)
    boxes = [receptive_box(model, layer, r, col) for r, col in positions]
    return Projection(layer, images, channels, positions, values, boxes)


def _signed_rgb(p: Tensor) -> np.ndarray:
    """A projection as RGB around grey: 0.5 + p / (2 s), clipped, where s is the 99.5th percentile of |p|
    over its non-zero values (so a few extreme pixels do not wash the rest out); zero is mid-grey."""
    nonzero = p.abs()[p != 0]
    scale = float(torch.quantile(nonzero, 0.995)) if nonzero.numel() else 0.0
    q = p / (2 * scale) + 0.5 if scale > 0 else torch.full_like(p, 0.5)
    return q.clamp(0, 1).permute(1, 2, 0).numpy()


def deconv_figure(model: Model, image: Tensor, layer: str, top: int = 9) -> Figure:
    """Left: the image with the receptive field of each projected unit outlined and its number at the
    field's centre. Right: for each of the `top` strongest channels (`deconv_projection`), its projection
    (grey = 0) beside the image patch under the unit's receptive field, as in the ZFNet paper's figure 2."""
    proj = deconv_projection(model, image, layer, top)
    n = len(proj.channels)
    cols = 1 if n == 1 else 2 if n <= 4 else 3
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 + 2.3 * cols, max(3.1, 1.25 * rows + 0.6)), constrained_layout=True)
    left, right = fig.subfigures(1, 2, width_ratios=(3.0, 2.3 * cols))
    picture = display_image(model, image)
    ax = left.subplots()
    ax.imshow(picture, interpolation="nearest")
    rf = {r.name: r for r in analyzer_rows(model)}[layer].receptive_field
    labels: dict[tuple[float, float], list[str]] = {}  # units at the same place share one label
    for k, ((t, lft, b, r), (row, col)) in enumerate(zip(proj.boxes, proj.positions)):
        colour = f"C{k % 10}"
        ax.add_patch(Rectangle((lft - 0.5, t - 0.5), r - lft, b - t, fill=False, lw=1.2, color=colour))
        _, h, w = model.input_shape
        centre = (
            min(max(rf.start[1] + col * rf.jump[1], 0), w - 1),
            min(max(rf.start[0] + row * rf.jump[0], 0), h - 1),
        )
        labels.setdefault(centre, []).append(str(k + 1))
    for (cx, cy), names in labels.items():
        box = dict(facecolor="white", alpha=0.8, lw=0, pad=1)
        ax.text(cx, cy, ",".join(names), color="black", fontsize=7, ha="center", va="center", bbox=box)
    ax.set_title("input and receptive fields", fontsize=9)
    no_ticks(ax)
    axes = right.subplots(rows, 2 * cols, squeeze=False)
    for k in range(rows * cols):
        a, b = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        for x in (a, b):
            no_ticks(x)
        if k >= n:
            a.set_axis_off()
            b.set_axis_off()
            continue
        t, lft, bot, r = proj.boxes[k]
        a.imshow(_signed_rgb(proj.images[k][:, t:bot, lft:r]), interpolation="nearest")
        b.imshow(picture[t:bot, lft:r], interpolation="nearest")
        row, col = proj.positions[k]
        a.set_title(f"{k + 1}. ch {proj.channels[k]} @ ({row},{col})", fontsize=7)
        b.set_title(f"act {proj.activations[k]:.3g}; {bot - t}x{r - lft} px", fontsize=7)
    right.suptitle("projection (grey = 0) | the image under the unit's receptive field", fontsize=9)
    fig.suptitle(
        f"{model.spec.name} {layer}: deconvnet projections of the {n} strongest channels", fontsize=10
    )
    return fig
