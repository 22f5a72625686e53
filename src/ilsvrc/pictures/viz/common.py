"""What the views share: the error they raise, layer lookup by dotted spec name (checked, with a
did-you-mean), the input image (checked against the model, made from a file with the run's evaluation
transform, turned back into RGB for drawing), class lookup by index, id or name, and saving a figure.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ...analysis.analyzer import analyze
from ...errors import IlsvrcError
from ...networks.spec import walk

if TYPE_CHECKING:
    from ...analysis.analyzer import LayerStats
    from ...nn import Model
    from ...training.data import ClassInfo
    from ...training.loop import TrainConfig

__all__ = [
    "VisualizationError",
    "analyzer_rows",
    "check_image",
    "check_layer",
    "class_index",
    "display_image",
    "eval_image",
    "layer_names",
    "no_ticks",
    "save",
    "to_display",
]


class VisualizationError(IlsvrcError):
    """A visualisation cannot be made as asked (unknown layer, wrong image size, unknown class...)."""


def layer_names(model: Model, spatial: bool = False) -> list[str]:
    """The model's layer names (dotted spec names, in order). With `spatial`, only the layers whose
    output is a C x H x W volume (what feature maps and projections need), per the analyzer."""
    names = [name for name, _ in walk(model.spec.layers)]
    if not spatial:
        return names
    flat = {row.name for row in analyzer_rows(model) if row.output.flat}
    return [name for name in names if name not in flat]


def analyzer_rows(model: Model) -> list[LayerStats]:
    """The analyzer's rows for the model's spec at its input size: output shapes, receptive fields."""
    return analyze(model.spec, model.input_shape, suggest=False).rows


def check_layer(model: Model, name: str, spatial: bool, what: str) -> None:
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


def check_image(model: Model, image: Tensor) -> Tensor:
    """`image` as a 1 x 3 x H x W float batch, checked against the model's input size."""
    c, h, w = model.input_shape
    if not isinstance(image, Tensor) or image.dim() != 3 or tuple(image.shape) != (c, h, w):
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise VisualizationError(
            f"{model.spec.name} was built for {c}x{h}x{w} images, got {got}. Prepare the image with "
            f"ilsvrc.pictures.viz.eval_image(path, config), the run's own evaluation transform."
        )
    return image.unsqueeze(0).float()


def eval_image(path: str | Path, config: TrainConfig) -> Tensor:
    """The image file at `path` as the run's evaluation sees it: a normalised float 3 x S x S tensor
    (S = the run's image size), resized and centre-cropped by `eval_input_transform("center", ...)`,
    the transform `ilsvrc predict` uses, read by `ilsvrc.training.images.read_image`."""
    from ...training.evaluate import eval_input_transform
    from ...training.images import read_image

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


def display_image(model: Model, image: Tensor) -> np.ndarray:
    """`image` as RGB in [0, 1] for drawing (`to_display` with the model's own mean and std)."""
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
    """Write `fig` to `path`, PNG or SVG by the suffix (`ilsvrc.pictures.figures.save`: PNG at figures.DPI
    pixels per inch, white background); return the path. Errors are `FigureError`s naming the path."""
    from ..figures import save as save_figure

    return save_figure(fig, path)


def no_ticks(ax: Any) -> None:
    """Take the tick marks and their labels off a matplotlib axes (pictures, not plots)."""
    ax.set_xticks([])
    ax.set_yticks([])
