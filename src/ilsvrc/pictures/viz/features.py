"""Feature maps: the output of one layer for one image, and the most active channels as a picture."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from ...training.evaluate import eval_mode
from .common import check_image, check_layer, display_image, no_ticks

if TYPE_CHECKING:
    from ...nn import Model

__all__ = ["feature_maps", "feature_maps_figure"]


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted layer has run."""


def feature_maps(model: Model, image: Tensor, layer: str) -> Tensor:
    """The output of `layer` for `image`: a C x H x W tensor (a copy: an in-place ReLU that follows
    the layer in the model does not change it, so a conv's maps keep their negative values).

    The forward pass stops right after `layer`. Raises VisualizationError for an unknown layer or one
    whose output is a flat vector, listing the valid names with a did-you-mean.
    """
    check_layer(model, layer, spatial=True, what="channels")
    x = check_image(model, image)
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
    ax.imshow(display_image(model, image), interpolation="nearest")
    ax.set_title(f"input ({image.shape[2]}x{image.shape[1]})", fontsize=9)
    no_ticks(ax)
    axes = right.subplots(rows, cols, squeeze=False).ravel()
    lo, hi = float(maps[shown].min()), float(maps[shown].max())
    drawn = None
    for ax, c in zip(axes, shown):
        drawn = ax.imshow(maps[c].numpy(), cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"ch {c}", fontsize=8)
        no_ticks(ax)
    for ax in axes[n:]:
        right.delaxes(ax)
    right.colorbar(drawn, ax=list(axes[:n]), shrink=0.7, label="activation")
    fig.suptitle(
        f"{model.spec.name} {layer}: {n} of {channels} maps ({w}x{h}), most active first", fontsize=10
    )
    return fig
