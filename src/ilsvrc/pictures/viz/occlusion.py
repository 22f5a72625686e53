"""Occlusion sensitivity (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
ECCV 2014): the probability of a class as a grey square slides over the image."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ...training.evaluate import eval_mode
from .common import VisualizationError, check_image, display_image, no_ticks

if TYPE_CHECKING:
    from ...nn import Model

__all__ = ["occlusion_figure", "occlusion_map"]


def _default_patch(size: int, patch: int | None, stride: int | None) -> tuple[int, int]:
    """The square's side and step in pixels for an image `size` wide: by default size // 8 and half that."""
    patch = max(1, size // 8) if patch is None else patch
    stride = max(1, patch // 2) if stride is None else stride
    if not (1 <= patch <= size and stride >= 1):
        raise VisualizationError(
            f"The occluding square must be 1 to {size} pixels wide and move at least 1 pixel; got patch "
            f"{patch}, stride {stride}."
        )
    return patch, stride


def _probabilities(model: Model, x: Tensor) -> Tensor:
    """Softmax class probabilities (N x classes, float32) of batch `x`, in eval mode, without gradients."""
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
    x = check_image(model, image)
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
    x = check_image(model, image)
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
    picture = display_image(model, image)
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
        no_ticks(ax)
    fig.suptitle(f"{model.spec.name}: occlusion sensitivity", fontsize=10)
    return fig
