"""What the network learned, checked where the answer is known: filters, feature maps, occlusion,
deconvnet projections and the max-pooling gradient. No data set and no long training: tiny models built
from specs, some with weights set by hand, and one run of a few steps for the command line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from ilsvrc.cli import main
from ilsvrc.networks import specfile
from ilsvrc.networks.spec import Conv
from ilsvrc.nn import create_model
from ilsvrc.pictures import viz
from ilsvrc.pictures.figures import DPI
from ilsvrc.pictures.viz import VisualizationError
from ilsvrc.training.loop import make_config, train

DOCS = Path(__file__).resolve().parent.parent / "docs"


def opened(path: Path, fig=None) -> np.ndarray:
    """Open a written picture with PIL, check its size (when the figure is given) and that it is not
    blank: many colours, and not one flat tone."""
    with Image.open(path) as im:
        im.load()
        if fig is not None:
            w, h = fig.get_size_inches() * DPI
            assert abs(im.size[0] - w) <= 1 and abs(im.size[1] - h) <= 1
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 10
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    return pixels


def net(text: str, classes: int = 3, seed: int = 0):
    """A freshly initialised model from a YAML spec written inline."""
    torch.manual_seed(seed)
    return create_model(specfile.loads(text, "yaml"), num_classes=classes).eval()


# ---------------------------------------------------------------------------------------------------
# (d) first-layer filters


def test_alexnet_filters_are_96_tiles_in_two_groups_as_conv2_sees_them(tmp_path: Path) -> None:
    model = create_model("alexnet", num_classes=10, input_size=99)
    weight = model.conv1.weight
    grid = viz.filter_grid(weight, groups=2)
    tiles, count = ndimage.label(~np.isnan(grid.image[..., 0]))  # background is NaN between the tiles
    assert count == 96 and len(grid.boxes) == 96 and grid.columns == 16
    # each tile is its filter, min-max scaled to [0, 1]; group 1 (filters 1-48) lies above group 2
    for i in (0, 47, 48, 95):
        top, left, h, w = grid.boxes[i]
        f = weight[i].detach()
        expected = ((f - f.min()) / (f.max() - f.min())).permute(1, 2, 0).numpy()
        assert np.allclose(grid.image[top : top + h, left : left + w], expected, atol=1e-6)
    assert max(b[0] for b in grid.boxes[:48]) + 11 < min(b[0] for b in grid.boxes[48:])
    assert viz.filters.first_conv(model)[2:] == (2, "conv2")  # the split comes from conv2's groups=2
    fig = viz.filters_figure(model)
    assert "96 filters 11x11x3" in fig._suptitle.get_text()
    opened(viz.save(fig, tmp_path / "filters.png"), fig)


def test_a_filter_grid_of_one_channel_filters_without_groups() -> None:
    grid = viz.filter_grid(torch.randn(10, 1, 5, 5))
    assert ndimage.label(~np.isnan(grid.image[..., 0]))[1] == 10 and grid.columns == 4
    assert viz.filter_grid(torch.zeros(4, 3, 3, 3)).image[0, 0, 0] == 0.5  # a flat filter is mid-grey
    with pytest.raises(VisualizationError, match="cannot be split into 4 groups"):
        viz.filter_grid(torch.randn(6, 3, 3, 3), groups=4)


# ---------------------------------------------------------------------------------------------------
# (e) feature maps and layer names

NESTED = """
name: nested
input: [3, 24, 24]
layers:
  - {type: conv, name: conv1, out_channels: 6, kernel: 3, padding: 1}
  - {type: relu, name: relu1}
  - type: block
    name: features
    layers:
      - {type: maxpool, name: pool2, kernel: 2}
      - {type: conv, name: conv3, out_channels: 5, kernel: 3, padding: 1}
      - {type: relu, name: relu3}
  - {type: flatten, name: flatten}
  - {type: linear, name: fc6, out_features: 3}
"""


def test_feature_maps_are_the_layer_output_even_before_an_in_place_relu(tmp_path: Path) -> None:
    model = net(NESTED)
    x = torch.randn(3, 24, 24)
    maps = viz.feature_maps(model, x, "conv1")
    assert torch.allclose(
        maps, F.conv2d(x[None], model.conv1.weight, model.conv1.bias, padding=1)[0], atol=1e-6
    )
    assert (maps < 0).any()  # relu1 works in place, yet the maps kept their negative values
    inner = viz.feature_maps(model, x, "features.conv3")
    assert inner.shape == (5, 12, 12)
    # a block: its output. The same forward pass up to conv3, and a ReLU only selects values; equal up
    # to float rounding, since at inference conv3 and relu3 are one oneDNN call (hooked, conv3 runs alone)
    block = viz.feature_maps(model, x, "features")
    torch.testing.assert_close(block, inner.clamp_min(0), rtol=1e-5, atol=1e-6)
    fig = viz.feature_maps_figure(model, x, "conv1", count=4)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 1 + 4  # the input, then one panel per channel shown
    assert panels[0].get_title() == "input (24x24)"
    means = maps.mean(dim=(1, 2))
    assert [int(ax.get_title().split()[1]) for ax in panels[1:]] == torch.argsort(means, descending=True)[
        :4
    ].tolist()
    opened(viz.save(fig, tmp_path / "features.png"), fig)
    all_maps = viz.feature_maps_figure(model, x, "features.conv3", count=99)
    assert len([ax for ax in all_maps.axes if ax.images]) == 1 + 5


def test_a_bad_layer_name_lists_the_names_with_a_did_you_mean() -> None:
    model = net(NESTED)
    x = torch.randn(3, 24, 24)
    with pytest.raises(VisualizationError) as err:
        viz.feature_maps(model, x, "features.conv_3")
    message = str(err.value)
    assert "no layer 'features.conv_3'" in message and "Did you mean 'features.conv3'?" in message
    assert "conv1, relu1, features, features.pool2, features.conv3, features.relu3" in message
    with pytest.raises(VisualizationError, match="'fc6' gives a flat vector, not feature maps"):
        viz.feature_maps(model, x, "fc6")
    with pytest.raises(VisualizationError, match=r"built for 3x24x24 images, got \(3, 32, 32\)"):
        viz.feature_maps(model, torch.randn(3, 32, 32), "conv1")
    assert viz.layer_names(model, spatial=True)[-1] == "features.relu3"


# ---------------------------------------------------------------------------------------------------
# (a) occlusion: a model that looks only at the top-left quadrant

QUADRANT = """
name: quadrant
input: [3, 16, 16]
layers:
  - {type: conv, name: conv1, out_channels: 1, kernel: 1}
  - {type: flatten, name: flatten}
  - {type: linear, name: fc, out_features: 2}
"""


def quadrant_model():
    """Class 0's score is 0.05 * the sum of the pixels (all channels) of the top-left 8x8 quadrant."""
    model = net(QUADRANT, classes=2)
    with torch.no_grad():
        model.conv1.weight.fill_(1.0)
        model.conv1.bias.zero_()
        model.fc.weight.zero_()
        model.fc.weight[0].view(16, 16)[:8, :8] = 0.05
        model.fc.bias.zero_()
    return model


def test_occlusion_is_hottest_where_the_class_looks_and_flat_elsewhere(tmp_path: Path) -> None:
    model = quadrant_model()
    image = torch.full((3, 16, 16), 0.5)
    probs = viz.occlusion_map(model, image, target=0, patch=4, stride=2)
    assert probs.shape == (7, 7)  # corners 0, 2, ..., 12 on each axis
    full = torch.softmax(model(image[None]), 1)[0, 0]
    drop = full - probs
    corners = torch.arange(0, 13, 2)
    touches = (corners < 8)[:, None] & (corners < 8)[None, :]  # the square overlaps the quadrant
    inside = (corners + 4 <= 8)[:, None] & (corners + 4 <= 8)[None, :]
    assert drop[~touches].abs().max() < 1e-7  # elsewhere: exactly no change
    assert drop[inside].min() > 0.01 and torch.allclose(drop[inside], drop[inside][0])  # same drop
    assert drop.max() == drop[inside].max()  # hottest inside the quadrant
    # the predicted class is 0 (exact: the very same batches as above); one-at-a-time passes agree
    # up to float32 rounding (other batch sizes, other kernels), far below the 0.01 drops above
    assert torch.equal(viz.occlusion_map(model, image, patch=4, stride=2), probs)
    assert torch.allclose(viz.occlusion_map(model, image, 0, 4, 2, batch_size=1), probs)
    fig = viz.occlusion_figure(model, image, 0, patch=4, stride=2, class_names=["left", "right"])
    assert "p(left)" in fig.axes[0].get_title()
    opened(viz.save(fig, tmp_path / "occlusion.png"), fig)
    with pytest.raises(VisualizationError, match="from 0 to 1, got 2"):
        viz.occlusion_map(model, image, target=2)
    with pytest.raises(VisualizationError, match="1 to 16 pixels wide"):
        viz.occlusion_map(model, image, patch=17)


# ---------------------------------------------------------------------------------------------------
# (b) where max pooling sends its gradient


def test_the_max_pool_gradient_lands_only_on_the_maxima() -> None:
    ex = viz.maxpool_gradient_example(kernel=2, stride=2)
    x, grad, argmax = ex["input"], ex["grad"], ex["argmax"]
    assert ex["output"].tolist() == [[6, 8], [9, 6]]
    maxima = torch.zeros(16, dtype=torch.bool)
    maxima[argmax.flatten()] = True
    assert torch.equal(grad.flatten() != 0, maxima)  # non-zero exactly at the argmax positions
    assert torch.equal(grad.flatten()[argmax.flatten()], ex["upstream"].flatten())
    assert torch.equal(x.flatten()[argmax.flatten()], ex["output"].flatten())


def test_overlapping_pooling_adds_the_gradients_of_the_windows_sharing_a_max() -> None:
    ex = viz.maxpool_gradient_example(kernel=3, stride=2)  # AlexNet's pooling on a 5x5 input
    assert ex["output"].tolist() == [[9, 9], [8, 7]]
    assert ex["windows"][1, 2] == 2  # x[1, 2] = 9 is the max of the two top windows
    assert ex["grad"][1, 2] == 0.5 + 1.0
    assert ex["grad"].sum() == ex["upstream"].sum()  # exact: 0.5, 1, -2 and 0.25 add up exactly
    # any input without ties: the gradient is the upstream gradient added up at each window's argmax.
    # Exact whatever order autograd adds them in: the upstream values are multiples of 1/8 (sums of a
    # few are exact in float64), and a gradient sent to a wrong position is off by 1/8 or more
    torch.manual_seed(0)
    x = torch.randperm(81).double().view(9, 9)
    up = torch.randint(1, 17, (4, 4)).double() / 8 * (torch.randint(0, 2, (4, 4)) * 2 - 1)
    ex = viz.maxpool_gradient_example(x, kernel=3, stride=2, upstream=up)
    expected = torch.zeros(81, dtype=torch.float64).index_add_(0, ex["argmax"].flatten(), up.flatten())
    assert torch.equal(ex["grad"].flatten(), expected)
    assert ((ex["grad"] != 0) <= (ex["windows"] > 0)).all()


def test_the_max_pool_gradient_picture_and_the_worked_example_in_the_docs(tmp_path: Path) -> None:
    fig = viz.maxpool_gradient_figure()
    opened(viz.save(fig, tmp_path / "pool.png"), fig)
    doc = (DOCS / "maxpool-gradient.md").read_text()
    for kernel in (2, 3):  # the doc's tables are what the code prints
        assert viz.maxpool_gradient_markdown(viz.maxpool_gradient_example(kernel=kernel, stride=2)) in doc


# ---------------------------------------------------------------------------------------------------
# (c) deconvnet projections

# conv with stride and padding, ReLU, LRN, AlexNet's overlapping pooling, a grouped conv, pooling again
DECONV = """
name: deconv
input: [3, 40, 40]
layers:
  - {type: conv, name: conv1, out_channels: 8, kernel: 5, stride: 2, padding: 2}
  - {type: relu, name: relu1}
  - {type: lrn, name: norm1, size: 5}
  - {type: maxpool, name: pool1, kernel: 3, stride: 2}
  - {type: conv, name: conv2, out_channels: 8, kernel: 3, padding: 1, groups: 2}
  - {type: relu, name: relu2}
  - {type: maxpool, name: pool2, kernel: 3, stride: 2}
  - {type: flatten, name: flatten}
  - {type: linear, name: fc, out_features: 3}
"""


def support(p: torch.Tensor) -> torch.Tensor:
    """H x W mask of the pixels where a 3 x H x W projection is non-zero. Exact by construction: outside
    the receptive field every term of the way back is a product with an exact zero."""
    return (p != 0).any(0)


def projection_tolerance(p: torch.Tensor) -> float:
    """How far two computations of projection `p` may differ: a few float32 roundings of its largest
    value. The batched way back (N units at once) runs other conv_transpose2d kernels than a single
    one (on AVX2 they differ by about 1e-8 where values reach 0.4: 16 eps * 0.4 is 8e-7)."""
    return 16 * torch.finfo(p.dtype).eps * float(p.abs().max())


def box_mask(box: tuple[int, int, int, int], size: int = 40) -> torch.Tensor:
    top, left, bottom, right = box
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


def test_a_projection_is_zero_outside_the_units_receptive_field() -> None:
    model = net(DECONV)
    x = torch.randn(3, 40, 40)
    nonzero = 0
    for layer in ("conv1", "pool1", "conv2", "relu2", "pool2"):
        c, h, w = viz.feature_maps(model, x, layer).shape
        units = [((row + col) % c, row, col) for row in range(h) for col in range(w)]
        projections = viz.deconv_units(model, x, layer, units)  # every position, one unit each
        for (_, row, col), p in zip(units, projections):
            box = viz.receptive_box(model, layer, row, col)
            assert not (support(p) & ~box_mask(box)).any(), (layer, row, col, box)
            nonzero += bool(support(p).any())
    assert nonzero > 100
    # pool2's field: 25 pixels, 8 apart, the first centred on pixel 6, so rows -6..18, clipped
    assert viz.receptive_box(model, "pool2", 0, 0) == (0, 0, 19, 19)
    assert viz.receptive_box(model, "pool2", 3, 1) == (18, 2, 40, 27)


def test_without_relu_and_lrn_the_projection_is_the_gradient_of_the_unit() -> None:
    # conv transposes (stride, padding, groups) and unpooling with switches, sums where windows overlap
    linear = [line for line in DECONV.splitlines() if "relu" not in line and "lrn" not in line]
    model = net("\n".join(linear))
    x = torch.randn(3, 40, 40)
    for layer, (ch, r, c) in [("conv1", (3, 7, 11)), ("pool1", (1, 4, 4)), ("pool2", (6, 2, 1))]:
        xg = x[None].clone().requires_grad_(True)
        out: dict[str, torch.Tensor] = {}
        handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o, out=out: out.update(y=o))
        model(xg)
        handle.remove()
        (grad,) = torch.autograd.grad(out["y"][0, ch, r, c], xg)
        p = viz.deconv_unit(model, x, layer, ch, r, c)
        assert torch.allclose(p, grad[0] * out["y"][0, ch, r, c].detach(), atol=1e-5), layer


def test_a_projection_through_positive_filters_fills_the_receptive_field_exactly() -> None:
    model = net(
        "name: positive\ninput: [3, 40, 40]\nlayers:\n"
        "  - {type: conv, name: conv1, out_channels: 4, kernel: 5, stride: 2, padding: 2}\n"
        "  - {type: conv, name: conv2, out_channels: 4, kernel: 3, stride: 2, padding: 1, groups: 2}\n"
        "  - {type: flatten, name: flatten}\n  - {type: linear, name: fc, out_features: 2}\n"
    )
    with torch.no_grad():
        for conv in (model.conv1, model.conv2):
            conv.weight.uniform_(0.5, 1.0)
            conv.bias.fill_(1.0)
    x = torch.rand(3, 40, 40) + 0.5
    for row, col in [(0, 0), (4, 7), (9, 9)]:
        p = viz.deconv_unit(model, x, "conv2", 1, row, col)
        assert torch.equal(support(p), box_mask(viz.receptive_box(model, "conv2", row, col)))  # boolean


def test_deconv_projection_of_the_strongest_channels_and_its_picture(tmp_path: Path) -> None:
    model = net(DECONV)
    x = torch.randn(3, 40, 40)
    proj = viz.deconv_projection(model, x, "relu2", top=5)
    maps = viz.feature_maps(model, x, "relu2")
    strongest = maps.flatten(1).max(1).values
    assert proj.channels == torch.argsort(strongest, descending=True)[:5].tolist()
    assert proj.images.shape == (5, 3, 40, 40)
    c, h, w = maps.shape
    for k, ch in enumerate(proj.channels):
        row, col = proj.positions[k]
        assert maps[ch, row, col] == strongest[ch]  # exact: the map's maximum, read from the same tensor
        eps = torch.finfo(torch.float32).eps  # the projection's own forward goes leaf by leaf: rounding
        assert proj.activations[k] == pytest.approx(float(strongest[ch]), rel=16 * eps)
        single = viz.deconv_unit(model, x, "relu2", ch, row, col)
        tolerance = projection_tolerance(single)
        torch.testing.assert_close(proj.images[k], single, rtol=0, atol=tolerance)
        # the tolerance tells units apart: a neighbouring position or another channel projects to a
        # picture off by a thousand tolerances or more
        neighbours = [(ch, r, q) for r, q in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1))
                      if 0 <= r < h and 0 <= q < w] + [((ch + 1) % c, row, col)]  # fmt: skip
        for other in viz.deconv_units(model, x, "relu2", neighbours):
            assert (other - single).abs().max() > 1000 * tolerance
        assert not (support(proj.images[k]) & ~box_mask(proj.boxes[k])).any()
    fig = viz.deconv_figure(model, x, "pool1", top=4)
    opened(viz.save(fig, tmp_path / "deconv.png"), fig)
    with pytest.raises(VisualizationError, match="no layer 'pool3'.*Did you mean 'pool2'"):
        viz.deconv_projection(model, x, "pool3")


def test_models_keep_their_training_mode() -> None:
    model = net(DECONV).train()
    viz.deconv_projection(model, torch.randn(3, 40, 40), "conv2", top=2)
    viz.occlusion_map(model, torch.randn(3, 40, 40), patch=20, stride=20)
    assert all(m.training for m in model.modules())


# ---------------------------------------------------------------------------------------------------
# The command line, on a run of a few steps


@pytest.fixture(scope="module")
def run(spec: str, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("viz") / "run"
    cfg = make_config(spec, "cpu", out=str(out), image_size=32, synthetic_classes=4, workers=0, epochs=1,
                      synthetic_train=16, synthetic_val=8, batch_size=8)  # fmt: skip
    return train(cfg, progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 60, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("filters", []),
        ("features", ["--layer", "conv2"]),
        ("occlusion", ["--label", "1", "--patch", "8", "--stride", "4"]),
        ("deconv", ["--layer", "pool2", "--top", "4"]),
    ],
)
def test_visualize_writes_a_picture(kind: str, extra: list[str], run: Path, photo: Path, tmp_path: Path,
                                    capsys) -> None:  # fmt: skip
    out = tmp_path / f"{kind}.png"
    args = [str(run)] + ([] if kind == "filters" else [str(photo)])
    assert main(["visualize", kind, *args, *extra, "-o", str(out)]) == 0
    assert f"written: {out}" in capsys.readouterr().out
    opened(out)


def test_visualize_pool_gradient_needs_no_run(tmp_path: Path) -> None:
    out = tmp_path / "pool.png"
    assert main(["visualize", "pool-gradient", "-o", str(out)]) == 0
    opened(out)


@pytest.mark.parametrize(
    "args, message",
    [
        (["features", "RUN", "IMAGE", "--layer", "conv_1"], "no layer 'conv_1'. Did you mean 'conv1'?"),
        (["features", "RUN", "IMAGE", "--layer", "fc6"], "'fc6' gives a flat vector"),
        (["occlusion", "RUN", "IMAGE", "--label", "unicorn"], "no class 'unicorn'"),
        (["occlusion", "RUN", "IMAGE", "--patch", "99"], "1 to 32 pixels wide"),
        (["deconv", "RUN"], "needs an image file"),
        (["filters"], "needs a run directory"),
        (["filters", "NOWHERE"], "NOWHERE"),
        (["features", "RUN", "NOWHERE.jpg"], "NOWHERE.jpg"),
        (["filters", "RUN", "IMAGE"], "IMAGE does not apply to `ilsvrc visualize filters`"),
        (["deconv", "RUN", "IMAGE", "--label", "1"], "--label does not apply"),
        (["pool-gradient", "RUN"], "RUN_DIR does not apply"),
        (["filters", "RUN", "-o", "x.jpg"], "end it in .png or .svg"),
    ],
)
def test_visualize_errors_are_one_paragraph_and_exit_2(args: list[str], message: str, run: Path, photo: Path,
                                                       tmp_path: Path, capsys) -> None:  # fmt: skip
    args = [{"RUN": str(run), "IMAGE": str(photo)}.get(a, a) for a in args]
    args = [str(tmp_path / a) if a.startswith("NOWHERE") else a for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "x.png")]
    assert main(["visualize", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ilsvrc: error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_eval_image_is_what_predict_feeds_the_model(run: Path, photo: Path) -> None:
    from ilsvrc.training.evaluate import predict_probs
    from ilsvrc.training.inference import predict_images
    from ilsvrc.training.loop import load_trained

    model, config, classes, _ = load_trained(run)
    x = viz.eval_image(photo, config)
    probs = predict_probs(model, x[None], "center", crop=config.image_size)[0]
    (_, top), *_ = predict_images(run, [str(photo)], k=1)
    assert top[0][0].index == int(probs.argmax()) and abs(top[0][1] - float(probs.max())) < 1e-6
    assert viz.class_index(classes, classes[2].name.upper()) == 2
    assert viz.class_index(classes, classes[3].id) == 3
    with pytest.raises(VisualizationError, match=re.escape(f"Did you mean {classes[1].name!r}")):
        viz.class_index(classes, classes[1].name[:-1])


def test_conv_layers_of_the_zoo_nets_are_found_by_their_spec_names() -> None:
    model = create_model("vgg11", num_classes=4, input_size=32)
    name, conv, groups, _ = viz.filters.first_conv(model)
    assert (name, groups) == ("conv1_1", 1) and isinstance(conv, Conv)
    assert "conv5_2" in viz.layer_names(model, spatial=True)


def test_each_view_imports_only_common_and_the_layers_below() -> None:
    """The views are independent: a view module reaches the package's shared pieces through `common`
    only, never another view, the report or the command line; the max-pool gradient needs no run."""
    import ast

    folder = Path(viz.__file__).parent
    views = sorted(p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "common"))
    assert views == ["deconv", "features", "filters", "occlusion", "pool_gradient"]
    for view in views:
        tree = ast.parse((folder / f"{view}.py").read_text())
        found = {("." * n.level) + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        ours = {m for m in found if m.startswith(".")}
        assert {m for m in ours if not m.startswith("...")} == {".common"}, view
        assert all(
            m.split(".")[3] in ("networks", "analysis", "nn", "training") for m in ours - {".common"}
        ), view
    pool = ast.parse((folder / "pool_gradient.py").read_text())
    assert not [n for n in ast.walk(pool) if isinstance(n, ast.ImportFrom) and n.level > 1]
