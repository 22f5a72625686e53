"""What a trained network learned: filters, feature maps, occlusion, deconvnet projections, and where
max pooling sends its gradient. One module per view, each on `common` only:

| module | numbers | picture |
|---|---|---|
| `filters` | `filter_grid(weight, groups)` | `filters_figure(model)` |
| `features` | `feature_maps(model, image, layer)` | `feature_maps_figure(model, image, layer)` |
| `occlusion` | `occlusion_map(model, image, target, patch, stride)` | `occlusion_figure(...)` |
| `deconv` | `deconv_projection(model, image, layer, top)`, `deconv_units(...)` | `deconv_figure(...)` |
| `pool_gradient` | `maxpool_gradient_example(x, kernel, stride, upstream)` | `maxpool_gradient_figure()` |

`common` holds what they share (`VisualizationError`, `layer_names`, `eval_image`, `to_display`,
`class_index`, `save`); this package re-exports the public names of all of them, so
`from ilsvrc.pictures import viz; viz.occlusion_map(...)` reaches any, and holds `visualize`, the
command line's one entry point.

Every picture is a matplotlib `Figure` built without pyplot (no global state, nothing to close), drawn
with the Agg backend; `save(fig, path)` writes it. The numbers behind each picture come from a function
that returns tensors, so they can be checked or drawn another way.

Conventions. `model` is an `ilsvrc.nn.Model` (a chain of submodules named as the spec names its layers);
it is put in eval mode while a function runs and given back in the mode it came in. `image` is one
normalised float tensor 3 x H x W at the model's input size, exactly what evaluation feeds the network:
`eval_image(path, config)` makes it from a file with the run's own centre-crop transform. Layers are
named by their dotted spec names (`conv1`, `features.conv3`: `ilsvrc.networks.spec.walk`), which are
also the torch submodule paths. Pixel positions are (row, column) from the top-left corner, in input
pixels.

Sources: the grey-square occlusion test and the deconvnet are Zeiler & Fergus, "Visualizing and
Understanding Convolutional Networks" (ECCV 2014); the grid of first-layer filters split by GPU is
figure 3 of Krizhevsky, Sutskever & Hinton (NIPS 2012).
"""

from __future__ import annotations

from pathlib import Path

from .common import VisualizationError, class_index, eval_image, layer_names, save, to_display
from .deconv import Projection, deconv_figure, deconv_projection, deconv_unit, deconv_units, receptive_box
from .features import feature_maps, feature_maps_figure
from .filters import FilterGrid, filter_grid, filters_figure, first_conv
from .occlusion import occlusion_figure, occlusion_map
from .pool_gradient import maxpool_gradient_example, maxpool_gradient_figure, maxpool_gradient_markdown

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
    from ..figures import check_output

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
    from ...training.loop import load_trained

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
        return save(feature_maps_figure(model, x, layer or first_conv(model)[0]), out)
    if kind == "deconv":
        return save(deconv_figure(model, x, layer or layer_names(model, spatial=True)[-1], top), out)
    target = class_index(classes, label) if label is not None else None
    fig = occlusion_figure(model, x, target, patch, stride, [c.name for c in classes])
    return save(fig, out)
