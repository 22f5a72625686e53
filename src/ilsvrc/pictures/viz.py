"""What a trained network learned: filters, feature maps, occlusion, deconvnet projections, and where
max pooling sends its gradient.

Every picture is a matplotlib `Figure` built without pyplot (no global state, nothing to close), drawn
with the Agg backend; `save(fig, path)` writes it. The numbers behind each picture come from a function
that returns tensors, so they can be checked or drawn another way:

| numbers | picture |
|---|---|
| `filter_grid(weight, groups)` | `filters_figure(model)` |
| `feature_maps(model, image, layer)` | `feature_maps_figure(model, image, layer)` |
| `occlusion_map(model, image, target, patch, stride)` | `occlusion_figure(...)` |
| `deconv_projection(model, image, layer, top)`, `deconv_units(...)` | `deconv_figure(...)` |
| `maxpool_gradient_example(x, kernel, stride, upstream)` | `maxpool_gradient_figure()` |

Conventions. `model` is an `ilsvrc.nn.Model` (a chain of submodules named as the spec names its layers);
it is put in eval mode while a function runs and given back in the mode it came in. `image` is one
normalised float tensor 3 x H x W at the model's input size, exactly what evaluation feeds the network:
`eval_image(path, config)` makes it from a file with the run's own centre-crop transform. Layers are
named by their dotted spec names (`conv1`, `features.conv3`: `ilsvrc.spec.walk`), which are also the
torch submodule paths. Pixel positions are (row, column) from the top-left corner, in input pixels.

Sources: the grey-square occlusion test and the deconvnet are Zeiler & Fergus, "Visualizing and
Understanding Convolutional Networks" (ECCV 2014); the grid of first-layer filters split by GPU is
figure 3 of Krizhevsky, Sutskever & Hinton (NIPS 2012).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from ..analysis.analyzer import analyze
from ..errors import IlsvrcError
from ..networks.spec import (
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
from ..training.evaluate import eval_mode

if TYPE_CHECKING:
    from ..nn import Model
    from ..training.data import ClassInfo
    from ..training.loop import TrainConfig

__all__ = [
    "FilterGrid",
    "KINDS",
    "Projection",
    "VisualizationError",
    "class_index",
    "deconv_figure",
    "deconv_projection",
    "deconv_unit",
    "deconv_units",
    "eval_image",
    "feature_maps",
    "feature_maps_figure",
    "filter_grid",
    "filters_figure",
    "layer_names",
    "maxpool_gradient_example",
    "maxpool_gradient_figure",
    "maxpool_gradient_markdown",
    "occlusion_figure",
    "occlusion_map",
    "receptive_box",
    "save",
    "to_display",
    "visualize",
]

KINDS = ("filters", "features", "occlusion", "deconv", "pool-gradient")


class VisualizationError(IlsvrcError):
    """A visualisation cannot be made as asked (unknown layer, wrong image size, unknown class...)."""


# ---------------------------------------------------------------------------------------------------
# Shared pieces: layer names, images, eval mode


def layer_names(model: Model, spatial: bool = False) -> list[str]:
    """The model's layer names (dotted spec names, in order). With `spatial`, only the layers whose
    output is a C x H x W volume (what feature maps and projections need), per the analyzer."""
    names = [name for name, _ in walk(model.spec.layers)]
    if not spatial:
        return names
    flat = {row.name for row in _rows(model) if row.output.flat}
    return [name for name in names if name not in flat]


def _rows(model: Model) -> list:
    return analyze(model.spec, model.input_shape, suggest=False).rows


def _check_layer(model: Model, name: str, spatial: bool, what: str) -> None:
    """Raise VisualizationError unless `name` is one of the model's (spatial) layers."""
    valid = layer_names(model, spatial=spatial)
    if name in valid:
        return
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    if spatial and name in layer_names(model):
        why = f"{name!r} gives a flat vector, not feature maps: it has no {what} to show."
    else:
        why = f"{model.spec.name} has no layer {name!r}.{hint}"
    raise VisualizationError(
        f"{why} Layers with feature maps: {', '.join(valid)}."
        if spatial
        else f"{why} Its layers: {', '.join(valid)}."
    )


def _check_image(model: Model, image: Tensor) -> Tensor:
    """`image` as a 1 x 3 x H x W float batch, checked against the model's input size."""
    c, h, w = model.input_shape
    if not isinstance(image, Tensor) or image.dim() != 3 or tuple(image.shape) != (c, h, w):
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise VisualizationError(
            f"{model.spec.name} was built for {c}x{h}x{w} images, got {got}. Prepare the image with "
            f"ilsvrc.viz.eval_image(path, config), the run's own evaluation transform."
        )
    return image.unsqueeze(0).float()


def eval_image(path: str | Path, config: TrainConfig) -> Tensor:
    """The image file at `path` as the run's evaluation sees it: a normalised float 3 x S x S tensor
    (S = the run's image size), resized and centre-cropped by `eval_input_transform("center", ...)`,
    the transform `ilsvrc predict` uses, read by `ilsvrc.training.images.read_image`."""
    from ..training.evaluate import eval_input_transform
    from ..training.images import read_image

    net = config.network()
    transform = eval_input_transform(
        "center", config.image_size, net.info.mean, net.info.std, config.recipe.crop_fraction
    )
    return transform(read_image(path))


def to_display(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised 3 x H x W image back to H x W x 3 RGB in [0, 1] for drawing (x * std + mean, clipped)."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (image.detach().float().cpu() * s + m).clamp(0, 1).permute(1, 2, 0).numpy()


def _display(model: Model, image: Tensor) -> np.ndarray:
    return to_display(image, model.spec.info.mean, model.spec.info.std)


def class_index(classes: Sequence[ClassInfo], label: str | int) -> int:
    """The index of a class given by its index (`3`), id (`n03000684`) or name (`chain saw`, any case)."""
    text = str(label).strip()
    for c in classes:
        if text in (str(c.index), c.id) or text.lower() == c.name.lower():
            return c.index
    names = [c.name for c in classes]
    close = difflib.get_close_matches(text, names + [c.id for c in classes], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(f"{c.index} {c.name}" for c in classes[:20]) + (", ..." if len(classes) > 20 else "")
    raise VisualizationError(
        f"The run has no class {text!r}.{hint} Give a class index, folder id or name: {shown}."
    )


def save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` to `path`, PNG or SVG by the suffix (`ilsvrc.figures.save`: PNG at figures.DPI
    pixels per inch, white background); return the path. Errors are `FigureError`s naming the path."""
    from .figures import save as save_figure

    return save_figure(fig, path)


def _no_ticks(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------------------------------
# First-layer filters


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
    return [(name, layer) for name, layer in walk(model.spec.layers) if not isinstance(layer, Block)]


def _first_conv(model: Model) -> tuple[str, Conv, int, str | None]:
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
    name, conv, groups, splitter = _first_conv(model)
    weight = model.get_submodule(name).weight
    grid = filter_grid(weight, groups, columns)
    picture = np.where(np.isnan(grid.image), 1.0, grid.image)
    h, w = picture.shape[:2]
    scale = min(9.0 / w, 7.0 / h, 0.45)
    size = (max(w * scale, 3.0) + (1.4 if groups > 1 else 0.2), h * scale + 0.8)
    fig = Figure(figsize=(round(size[0], 1), round(size[1], 1)))  # whole pixels at 110 dpi
    ax = fig.add_axes((0.14 if groups > 1 else 0.02, 0.02, 0.84 if groups > 1 else 0.96, 0.86))
    ax.imshow(picture, interpolation="nearest")
    _no_ticks(ax)
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


# ---------------------------------------------------------------------------------------------------
# Feature maps


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted layer has run."""


def feature_maps(model: Model, image: Tensor, layer: str) -> Tensor:
    """The output of `layer` for `image`: a C x H x W tensor (a copy: an in-place ReLU that follows
    the layer in the model does not change it, so a conv's maps keep their negative values).

    The forward pass stops right after `layer`. Raises VisualizationError for an unknown layer or one
    whose output is a flat vector, listing the valid names with a did-you-mean.
    """
    _check_layer(model, layer, spatial=True, what="channels")
    x = _check_image(model, image)
    got: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        got.append(output.detach().clone())
        raise _Stop

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        with eval_mode(model), torch.no_grad(), contextlib.suppress(_Stop):
            model(x)
    finally:
        handle.remove()
    return got[0][0]


def feature_maps_figure(model: Model, image: Tensor, layer: str, count: int = 32) -> Figure:
    """The image (left), then the `count` most active channels of `layer` (largest mean activation
    first), one panel each, labelled with the channel index, on one shared colour scale (so a weak
    channel looks weak). Panels with an image: 1 + min(count, channels); plus a colour bar."""
    maps = feature_maps(model, image, layer)
    channels, h, w = maps.shape
    shown = torch.argsort(maps.mean(dim=(1, 2)), descending=True)[: max(1, count)].tolist()
    n = len(shown)
    cols = min(n, 12, max(4, math.ceil(math.sqrt(2 * n))))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.6 + 1.35 * cols + 0.9, max(2.6, 1.4 * rows + 0.5)), constrained_layout=True)
    left, right = fig.subfigures(1, 2, width_ratios=(2.6, 1.35 * cols + 0.9))
    ax = left.subplots()
    ax.imshow(_display(model, image), interpolation="nearest")
    ax.set_title(f"input ({image.shape[2]}x{image.shape[1]})", fontsize=9)
    _no_ticks(ax)
    axes = right.subplots(rows, cols, squeeze=False).ravel()
    lo, hi = float(maps[shown].min()), float(maps[shown].max())
    drawn = None
    for ax, c in zip(axes, shown):
        drawn = ax.imshow(maps[c].numpy(), cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"ch {c}", fontsize=8)
        _no_ticks(ax)
    for ax in axes[n:]:
        right.delaxes(ax)
    right.colorbar(drawn, ax=list(axes[:n]), shrink=0.7, label="activation")
    fig.suptitle(
        f"{model.spec.name} {layer}: {n} of {channels} maps ({w}x{h}), most active first", fontsize=10
    )
    return fig


# ---------------------------------------------------------------------------------------------------
# Occlusion


def _default_patch(size: int, patch: int | None, stride: int | None) -> tuple[int, int]:
    patch = max(1, size // 8) if patch is None else patch
    stride = max(1, patch // 2) if stride is None else stride
    if not (1 <= patch <= size and stride >= 1):
        raise VisualizationError(
            f"The occluding square must be 1 to {size} pixels wide and move at least 1 pixel; got patch "
            f"{patch}, stride {stride}."
        )
    return patch, stride


def _probabilities(model: Model, x: Tensor) -> Tensor:
    with eval_mode(model), torch.no_grad():
        return F.softmax(model(x).float(), dim=1)


def occlusion_map(
    model: Model,
    image: Tensor,
    target: int | None = None,
    patch: int | None = None,
    stride: int | None = None,
    fill: float = 0.0,
    batch_size: int = 64,
) -> Tensor:
    """The probability of class `target` with a grey square over each position of the image.

    A `patch` x `patch` square (default H // 8) of value `fill` (default 0: the normalisation's mean
    colour, a grey) is put with its top-left corner at rows and columns 0, stride, 2 * stride, ...
    (up to H - patch; default stride patch // 2), and the softmax probability of `target` (default: the
    class predicted for the unoccluded image) is read for each. Returns a rows x cols float tensor;
    entry (i, j) is for the square at (i * stride, j * stride). Occluded copies go through the model
    `batch_size` at a time.
    """
    x = _check_image(model, image)
    _, h, w = model.input_shape
    patch, stride = _default_patch(min(h, w), patch, stride)
    full = _probabilities(model, x)[0]
    classes = full.shape[0]
    given = target
    try:
        target = int(full.argmax()) if given is None else operator.index(given)
    except TypeError:
        target = -1  # not a whole number
    if isinstance(given, bool) or not 0 <= target < classes:
        raise VisualizationError(f"The target class must be an index from 0 to {classes - 1}, got {given!r}.")
    tops, lefts = range(0, h - patch + 1, stride), range(0, w - patch + 1, stride)
    corners = [(t, left) for t in tops for left in lefts]
    probs = []
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        batch = x.expand(len(chunk), -1, -1, -1).clone()
        for k, (t, left) in enumerate(chunk):
            batch[k, :, t : t + patch, left : left + patch] = fill
        probs.append(_probabilities(model, batch)[:, target])
    return torch.cat(probs).view(len(tops), len(lefts))


def occlusion_figure(
    model: Model,
    image: Tensor,
    target: int | None = None,
    patch: int | None = None,
    stride: int | None = None,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """Three panels: the image; the probability of the class as a function of the grey square's
    position (the ZFNet paper's view); and the drop in probability (unoccluded minus occluded) laid over
    the image, each cell drawn where its square's centre is: the hottest places are what the class
    depends on. `target` defaults to the predicted class; `class_names` label it."""
    x = _check_image(model, image)
    full = _probabilities(model, x)[0]
    target = int(full.argmax()) if target is None else target
    _, h, w = model.input_shape
    patch, stride = _default_patch(min(h, w), patch, stride)
    probs = occlusion_map(model, image, target, patch, stride)
    rows, cols = probs.shape
    # each cell covers its square's centre, +- stride / 2
    c0 = (patch - 1) / 2
    extent = (c0 - stride / 2, c0 + (cols - 0.5) * stride, c0 + (rows - 0.5) * stride, c0 - stride / 2)
    name = class_names[target] if class_names is not None else f"class {target}"
    picture = _display(model, image)
    fig = Figure(figsize=(10.5, 3.6), constrained_layout=True)
    axes = fig.subplots(1, 3)
    axes[0].imshow(picture, interpolation="nearest")
    axes[0].set_title(f"input ({w}x{h}); p({name}) = {float(full[target]):.3f}", fontsize=9)
    axes[0].add_patch(Rectangle((-0.5, -0.5), patch, patch, fill=True, color="grey", alpha=0.8))
    axes[0].text(
        patch + 1,
        patch / 2,
        f"grey square {patch}x{patch}, stride {stride}",
        fontsize=7,
        va="center",
        color="white",
        bbox=dict(facecolor="black", alpha=0.5, lw=0),
    )
    im = axes[1].imshow(probs.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title(f"p({name}) with the square at each position\n({rows}x{cols} positions)", fontsize=9)
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="probability")
    drop = (full[target] - probs).numpy()
    axes[2].imshow(picture, interpolation="nearest")
    limit = max(float(np.abs(drop).max()), 1e-6)
    opacity = 0.85 * np.clip(drop / limit, 0, 1) ** 0.7  # no drop: the image shows through untouched
    heat = axes[2].imshow(
        drop, cmap="inferno", alpha=opacity, extent=extent, vmin=0, vmax=limit, interpolation="bilinear"
    )
    axes[2].set(xlim=(-0.5, w - 0.5), ylim=(h - 0.5, -0.5))
    axes[2].set_title(f"drop in p({name}) over the image\n(bright: the class needs this region)", fontsize=9)
    fig.colorbar(heat, ax=axes[2], shrink=0.8, label="probability drop")
    for ax in axes:
        _no_ticks(ax)
    fig.suptitle(f"{model.spec.name}: occlusion sensitivity", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------------
# Deconvnet projection


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
    _check_layer(model, layer, spatial=True, what="positions")
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
    row_stats = {r.name: r for r in _rows(model)}[layer]
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
    x = _check_image(model, image)
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
    x = _check_image(model, image)
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
    picture = _display(model, image)
    ax = left.subplots()
    ax.imshow(picture, interpolation="nearest")
    rf = {r.name: r for r in _rows(model)}[layer].receptive_field
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
    _no_ticks(ax)
    axes = right.subplots(rows, 2 * cols, squeeze=False)
    for k in range(rows * cols):
        a, b = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        for x in (a, b):
            _no_ticks(x)
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


# ---------------------------------------------------------------------------------------------------
# Where max pooling sends its gradient

# A 4x4 input with one clear maximum in each 2x2 window, and a 5x5 input for AlexNet's overlapping
# 3x3/2 pooling where x[1, 2] = 9 is the maximum of two windows (top-left and top-right).
EXAMPLE_2X2 = [[1.0, 6.0, 2.0, 4.0], [5.0, 3.0, 8.0, 7.0], [0.0, 2.0, 3.0, 1.0], [4.0, 9.0, 6.0, 5.0]]
UPSTREAM_2X2 = [[0.5, -1.0], [2.0, 0.25]]
EXAMPLE_3X3 = [
    [1.0, 2.0, 0.0, 3.0, 1.0],
    [4.0, 0.0, 9.0, 2.0, 5.0],
    [2.0, 1.0, 3.0, 0.0, 1.0],
    [8.0, 2.0, 1.0, 4.0, 0.0],
    [1.0, 3.0, 0.0, 2.0, 7.0],
]
UPSTREAM_3X3 = [[0.5, 1.0], [-2.0, 0.25]]


def maxpool_gradient_example(
    x: Sequence[Sequence[float]] | Tensor | None = None,
    kernel: int = 2,
    stride: int | None = None,
    upstream: Sequence[Sequence[float]] | Tensor | None = None,
) -> dict[str, Tensor]:
    """Max pooling forward and backward with torch autograd on one small 2-D input.

    Defaults: a 4x4 input with 2x2 windows at stride 2 (or, with kernel 3, a 5x5 input with AlexNet's
    3x3 windows at stride 2) and a fixed upstream gradient dL/dy. Returns tensors, all 2-D:
    "input" x, "output" y = max_pool2d(x), "upstream" dL/dy, "grad" dL/dx (from `backward`), "argmax"
    (each window's max as a flat index into x, from `return_indices=True`), and "windows" (how many
    windows have each input position as their max), "kernel" and "stride" (0-d). dL/dx is dL/dy
    added up over the windows whose max a position is, and zero everywhere else.
    """
    stride = kernel if stride is None else stride
    if x is None:
        x = EXAMPLE_3X3 if kernel == 3 else EXAMPLE_2X2
    if upstream is None and kernel in (2, 3) and stride == 2:
        upstream = UPSTREAM_3X3 if kernel == 3 else UPSTREAM_2X2
    xt = torch.as_tensor(x, dtype=torch.float64).clone().requires_grad_(True)
    y, argmax = F.max_pool2d(xt[None, None], kernel, stride, return_indices=True)
    g = torch.ones_like(y) if upstream is None else torch.as_tensor(upstream, dtype=torch.float64)
    if tuple(g.shape[-2:]) != tuple(y.shape[-2:]):
        raise VisualizationError(f"The upstream gradient must match the pooled output {tuple(y.shape[-2:])}.")
    y.backward(g.view_as(y))
    windows = torch.zeros(xt.numel(), dtype=torch.int64).scatter_add_(
        0, argmax.flatten(), torch.ones(argmax.numel(), dtype=torch.int64)
    )
    return {
        "input": xt.detach(),
        "output": y.detach()[0, 0],
        "upstream": g.view(y.shape[-2:]),
        "grad": xt.grad.detach(),
        "argmax": argmax[0, 0],
        "windows": windows.view_as(xt),
        "kernel": torch.tensor(kernel),
        "stride": torch.tensor(stride),
    }


def _number(v: float) -> str:
    return f"{v:g}"


def maxpool_gradient_markdown(example: dict[str, Tensor]) -> str:
    """The four grids of `maxpool_gradient_example` as Markdown tables (input, output, upstream, input
    gradient), with the maxima in bold in the input: what docs/maxpool-gradient.md shows."""

    def table(t: Tensor, bold: Tensor | None = None) -> str:
        cols = t.shape[1]
        lines = ["| | " + " | ".join(f"col {j}" for j in range(cols)) + " |", "|---" * (cols + 1) + "|"]
        for i in range(t.shape[0]):
            cells = [
                f"**{_number(v)}**" if bold is not None and bold[i, j] else _number(v)
                for j, v in enumerate(t[i].tolist())
            ]
            lines.append(f"| row {i} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    maxima = example["windows"] > 0
    parts = [
        ("input x (the maxima in bold)", table(example["input"], maxima)),
        ("output y = maxpool(x)", table(example["output"])),
        ("upstream gradient dL/dy", table(example["upstream"])),
        ("input gradient dL/dx (torch autograd)", table(example["grad"])),
    ]
    return "\n\n".join(f"{title}:\n\n{body}" for title, body in parts) + "\n"


_WINDOW_COLOURS = ("C0", "C1", "C2", "C4", "C5", "C6", "C8", "C9", "C7")


def _grid_panel(
    ax: Any,
    t: Tensor,
    title: str,
    maxima: Tensor | None = None,
    signed: bool = False,
    frames: Sequence[tuple[int, int, int, int, str]] = (),
    notes: dict[tuple[int, int], str] | None = None,
    stagger: bool = False,
) -> None:
    """Draw a small matrix with its values written in its cells.

    maxima: cells shown bold on a yellow ground; signed: colour by sign (red +, blue -, white 0);
    frames: (top, left, height, width, colour) rectangles in cell units, e.g. pooling windows;
    notes: small text under a cell's value; stagger: inset each frame differently (overlapping ones).
    """
    values = t.numpy().astype(float)
    rows, cols = values.shape
    if signed:
        limit = max(float(np.abs(values).max()), 1e-9)
        ax.imshow(values, cmap="RdBu_r", vmin=-limit * 1.7, vmax=limit * 1.7)
    else:
        ax.imshow(np.zeros_like(values), cmap="Greys", vmin=0, vmax=1)
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            strong = maxima is not None and bool(maxima[i, j])
            if strong and not signed:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="#ffe27a", zorder=1))
            colour = "0.65" if signed and v == 0 else "black"
            weight = "bold" if strong else "normal"
            ax.text(j, i, _number(float(v)), ha="center", va="center", fontsize=11, fontweight=weight,
                    color=colour, zorder=3)  # fmt: skip
            if notes and (i, j) in notes:
                ax.text(j, i + 0.32, notes[(i, j)], ha="center", va="center", fontsize=7, zorder=3)
    for k, (top, left, height, width, colour) in enumerate(frames):
        inset = 0.05 + 0.07 * (k % 4) if stagger else 0.07
        ax.add_patch(Rectangle((left - 0.5 + inset, top - 0.5 + inset), width - 2 * inset, height - 2 * inset,
                               fill=False, lw=2, color=colour, zorder=4))  # fmt: skip
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xticks(np.arange(-0.5, cols), minor=True)
    ax.set_yticks(np.arange(-0.5, rows), minor=True)
    ax.grid(which="minor", color="0.7", lw=0.8)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_title(title, fontsize=9)


def maxpool_gradient_figure(examples: Sequence[dict[str, Tensor]] | None = None) -> Figure:
    """One row per example (`maxpool_gradient_example`; default: the 2x2/2 case and AlexNet's
    overlapping 3x3/2 case): the input with each pooling window framed in its own colour and each
    window's max on yellow, the pooled output and the upstream gradient (cells framed in their window's
    colour), and the input gradient from autograd, non-zero only at the maxima (a max shared by two
    windows receives the sum of their gradients, written under it)."""
    if examples is None:
        examples = [
            maxpool_gradient_example(kernel=2, stride=2),
            maxpool_gradient_example(kernel=3, stride=2),
        ]
    fig = Figure(figsize=(11.0, 3.3 * len(examples) + 0.2), constrained_layout=True)
    subs = np.atleast_1d(fig.subfigures(len(examples), 1))
    for sub, ex in zip(subs, examples):
        x, y, up = ex["input"], ex["output"], ex["upstream"]
        k, s = int(ex["kernel"]), int(ex["stride"])
        rows, cols = y.shape
        colours = {(i, j): _WINDOW_COLOURS[(i * cols + j) % len(_WINDOW_COLOURS)] for i in range(rows)
                   for j in range(cols)}  # fmt: skip
        windows = [(i * s, j * s, k, k, colours[i, j]) for i in range(rows) for j in range(cols)]
        cells = [(i, j, 1, 1, colours[i, j]) for i in range(rows) for j in range(cols)]
        shared = {}
        for flat in sorted(set(ex["argmax"].flatten().tolist())):
            sources = [(i, j) for i in range(rows) for j in range(cols) if int(ex["argmax"][i, j]) == flat]
            if len(sources) > 1:
                shared[divmod(flat, x.shape[1])] = "= " + " + ".join(
                    _number(float(up[i, j])) for i, j in sources
                )
        ratios = (x.shape[1], cols + 0.8, cols + 0.8, x.shape[1])
        axes = sub.subplots(1, 4, width_ratios=ratios)
        maxima = ex["windows"] > 0
        _grid_panel(
            axes[0],
            x,
            "input x: windows framed, maxima on yellow",
            maxima=maxima,
            frames=windows,
            stagger=k > s,
        )
        _grid_panel(axes[1], y, "output y = max of each window", frames=cells)
        _grid_panel(axes[2], up, "upstream gradient dL/dy", signed=True, frames=cells)
        _grid_panel(
            axes[3], ex["grad"], "dL/dx from torch autograd", maxima=maxima, signed=True, notes=shared
        )
        overlap = ": windows overlap, a max shared by two windows gets both gradients" if k > s else ""
        sub.suptitle(f"max pooling {k}x{k}, stride {s}, on a {x.shape[0]}x{x.shape[1]} input{overlap}",
                     fontsize=10)  # fmt: skip
    return fig


# ---------------------------------------------------------------------------------------------------
# One entry point for the command line


# which kinds take each argument of `visualize` (the command line's names)
_USES = {
    "RUN_DIR": ("filters", "features", "occlusion", "deconv"),
    "IMAGE": ("features", "occlusion", "deconv"),
    "--layer": ("features", "deconv"),
    "--label": ("occlusion",),
    "--patch": ("occlusion",),
    "--stride": ("occlusion",),
}


def visualize(
    kind: str,
    run: str | Path | None = None,
    image: str | Path | None = None,
    out: str | Path | None = None,
    layer: str | None = None,
    label: str | None = None,
    patch: int | None = None,
    stride: int | None = None,
    top: int = 9,
    which: str = "last",
) -> Path:
    """Make one picture of `kind` (one of KINDS) from a run directory (or checkpoint) and an image file,
    and write it to `out` (default KIND.png); return the path. `pool-gradient` needs neither run nor
    image. `layer` defaults to the first convolution (features) or the last layer with feature maps
    (deconv); `label` (a class index, id or name) defaults to the predicted class. An argument that
    does not apply to `kind` (an image for filters, --label for deconv...) is an error, not ignored."""
    if kind not in KINDS:
        raise VisualizationError(f"Unknown visualisation {kind!r}; the choices are {', '.join(KINDS)}.")
    given = {"RUN_DIR": run, "IMAGE": image, "--layer": layer, "--label": label, "--patch": patch,
             "--stride": stride}  # fmt: skip
    for option, value in given.items():
        if value is not None and kind not in _USES[option]:
            raise VisualizationError(
                f"{option} does not apply to `ilsvrc visualize {kind}`; it is for {', '.join(_USES[option])}."
            )
    from .figures import check_output

    out = Path(out) if out is not None else Path(f"{kind}.png")
    check_output(out)  # a name that is neither .png nor .svg, or a missing folder, fails before any work
    if kind == "pool-gradient":
        return save(maxpool_gradient_figure(), out)
    if run is None:
        example = "" if kind == "filters" else " photo.jpg"
        raise VisualizationError(
            f"`ilsvrc visualize {kind}` needs a run directory (or checkpoint) with a trained model, e.g. "
            f"`ilsvrc visualize {kind} runs/inette{example} -o {kind}.png`."
        )
    from ..training.loop import load_trained

    model, config, classes, _ = load_trained(run, which)
    if kind == "filters":
        return save(filters_figure(model), out)
    if image is None:
        raise VisualizationError(
            f"`ilsvrc visualize {kind}` needs an image file after the run directory, e.g. "
            f"`ilsvrc visualize {kind} {run} photo.jpg`."
        )
    x = eval_image(image, config)
    if kind == "features":
        return save(feature_maps_figure(model, x, layer or _first_conv(model)[0]), out)
    if kind == "deconv":
        return save(deconv_figure(model, x, layer or layer_names(model, spatial=True)[-1], top), out)
    target = class_index(classes, label) if label is not None else None
    fig = occlusion_figure(model, x, target, patch, stride, [c.name for c in classes])
    return save(fig, out)
