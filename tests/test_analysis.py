"""The analyzer against the papers' and torchvision's published figures (tests/facts.py, from facts.md)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facts import fact
from ilsvrc import analyze, get_spec, list_models
from ilsvrc.analysis.analyzer import (
    Volume,
    check_strict,
    input_sizes,
    is_exact,
    nearest_exact_sizes,
    smallest_input,
    window_out,
)
from ilsvrc.errors import ShapeError, SpecError, StrictModeError, UnknownModelError
from ilsvrc.networks.spec import (
    LRN,
    AvgPool,
    Block,
    Concat,
    Conv,
    Flatten,
    Layer,
    Linear,
    MaxPool,
    Network,
    ReLU,
    Residual,
)

# torchvision 0.29.1 and the papers, as facts.md gives them (carried in tests/facts.py)
EXACT_PARAMS = {
    name: fact(name.replace("-", "_") + "_params")
    for name in ("alexnet", "alexnet-torchvision", "vgg11", "vgg13", "vgg16", "vgg19")
    + ("vgg11-bn", "vgg13-bn", "vgg16-bn", "vgg19-bn")
}
# VGG paper, Table 2, in millions (configurations A, A-LRN, B, C, D, E)
VGG_TABLE2 = {
    name: fact(f"vgg_{config}_millions")
    for name, config in [("vgg11", "a"), ("vgg11-lrn", "a_lrn"), ("vgg13", "b"), ("vgg16-c", "c"),
                         ("vgg16", "d"), ("vgg19", "e")]
}  # fmt: skip


@pytest.mark.parametrize("name,params", EXACT_PARAMS.items())
def test_exact_parameter_counts(name: str, params: int) -> None:
    assert analyze(get_spec(name)).params == params


@pytest.mark.parametrize("name,millions", VGG_TABLE2.items())
def test_vgg_configs_round_to_the_papers_table_2(name: str, millions: int) -> None:
    assert round(analyze(get_spec(name)).params / 1e6) == millions


def test_vgg16_conv_and_fully_connected_split() -> None:
    split = analyze(get_spec("vgg16")).split()
    assert split["conv"]["params"] == fact("vgg16_conv_params")
    assert split["fc"]["params"] == fact("vgg16_fc_params")
    assert split["conv"]["params_pct"] + split["fc"]["params_pct"] == pytest.approx(100)
    # the lecture's point: FC holds most parameters, the convolutions do most of the arithmetic
    assert split["fc"]["params_pct"] > 89 and split["conv"]["macs_pct"] > 99


def test_zfnet_parameter_counts_match_facts_arithmetic() -> None:
    assert round(analyze(get_spec("zfnet")).params / 1e5) / 10 == fact("zfnet_params_millions")
    assert round(analyze(get_spec("zfnet-b")).params / 1e5) / 10 == fact("zfnet_b_params_millions")


def test_layers_counted_the_lectures_way() -> None:
    counts = {name: analyze(get_spec(name)).weight_layers for name in list_models()}
    assert counts["alexnet"] == counts["alexnet-lecture"] == counts["zfnet"] == 8
    assert counts["vgg11"] == counts["vgg11-bn"] == 11
    assert counts["vgg13"] == 13 and counts["vgg16"] == counts["vgg16-c"] == 16
    assert counts["vgg19"] == counts["vgg19-bn"] == 19


def test_torchinfo_multiply_adds_are_ours_plus_bias_adds() -> None:
    # torchinfo counts bias additions into its mult-adds (facts.md)
    for name, torchinfo_count in (
        ("alexnet-torchvision", fact("alexnet_torchvision_torchinfo_macs")),
        ("vgg16", fact("vgg16_torchinfo_macs")),
    ):
        report = analyze(get_spec(name))
        assert report.macs + report.bias_adds == torchinfo_count


def test_alexnet_volumes_and_two_gpu_split() -> None:
    report = analyze(get_spec("alexnet"))
    out = {r.name: r.output for r in report.rows}
    assert out["conv1"] == Volume(96, 55, 55)
    assert out["pool1"] == Volume(96, 27, 27)
    assert out["conv2"] == Volume(256, 27, 27)
    assert out["pool5"] == Volume(256, 6, 6)
    assert out["flatten"] == Volume(9216, 1, 1, flat=True)
    conv2 = next(r for r in report.rows if r.name == "conv2")
    assert conv2.weights == 5 * 5 * 48 * 256  # each filter sees the 48 channels on its GPU
    assert "groups=2" in conv2.formulas[2]


def test_alexnet_lecture_conv1_formulas() -> None:
    conv1 = analyze(get_spec("alexnet-lecture")).rows[0]
    assert conv1.formulas[0] == "W2 = H2 = (227 - 11 + 2*0)/4 + 1 = 55"
    assert conv1.formulas[2] == "params = 11*11*3*96 + 96 = 34,944"
    assert (conv1.weights, conv1.biases) == (11 * 11 * 3 * 96, 96)
    assert conv1.macs == 55 * 55 * 96 * 11 * 11 * 3


def test_zfnet_reproduces_the_papers_figure_volumes() -> None:
    report = analyze(get_spec("zfnet"))
    sides = [r.output.width for r in report.rows if r.kind in ("conv", "maxpool")]
    assert sides == [110, 55, 26, 13, 13, 13, 13, 6]
    severities = {(f.layer, f.severity) for f in report.findings}
    assert ("conv1", "warning") in severities  # 110.5 floored: stated, not hidden
    assert ("pool1", "note") in severities  # ceil_mode rounding, Caffe's convention


def test_receptive_fields() -> None:
    rf = {r.name: r.receptive_field for r in analyze(get_spec("alexnet-lecture")).rows}
    assert rf["conv1"].size == (11, 11) and rf["conv1"].jump == (4, 4)
    assert rf["pool1"].size == (19, 19) and rf["pool1"].jump == (8, 8)
    assert rf["conv2"].size == (51, 51)
    assert rf["pool5"].size == (195, 195) and rf["pool5"].jump == (32, 32)
    vgg = {r.name: r.receptive_field for r in analyze(get_spec("vgg16")).rows}
    assert vgg["conv5_3"].size == (196, 196)
    assert vgg["pool5"].size == (212, 212) and vgg["pool5"].jump == (32, 32)
    # torchvision's alexnet pads conv1 by 2: its first unit is centred in the padding
    tv = {r.name: r.receptive_field for r in analyze(get_spec("alexnet-torchvision")).rows}
    assert tv["conv1"].start == (3.0, 3.0)


def test_non_integer_size_is_reported_with_formula_floor_and_fix() -> None:
    report = analyze(get_spec("alexnet-lecture"), (3, 224, 224))
    first = report.findings[0]
    assert first.severity == "warning" and first.layer == "conv1"
    assert "(224 - 11 + 2*0)/4 + 1 = 54.25" in first.message
    assert "floors it to 54" in first.message and "last 1 input column and row" in first.message
    fix = next(f for f in report.findings if f.message.startswith("To make it exact"))
    assert "227x227" in fix.message
    with pytest.raises(StrictModeError, match="54.25"):
        check_strict(report)
    check_strict(analyze(get_spec("alexnet-lecture")))  # exact at 227: no error


def test_nearest_exact_sizes_are_exact() -> None:
    net = get_spec("alexnet-lecture")
    sizes = nearest_exact_sizes(net, (3, 224, 224))
    assert 227 in sizes
    for s in sizes:
        assert not [f for f in analyze(net, (3, s, s)).findings if f.severity == "warning"]


def test_first_linear_follows_the_input_unless_adaptive_pooling() -> None:
    small = analyze(get_spec("alexnet"), (3, 131, 131))
    fc6 = small.first_linear()
    side = small.rows[[r.name for r in small.rows].index("pool5")].output.width
    assert fc6.input.channels == 256 * side * side != 9216
    note = next(f.message for f in small.findings if f.layer == "fc6")
    assert "9,216 at the default 227x227" in note
    tv = analyze(get_spec("alexnet-torchvision"), (3, 128, 128))
    assert tv.first_linear().input.channels == 9216
    assert "adaptive pooling avgpool" in next(f.message for f in tv.findings if f.layer == "fc6")


def test_window_larger_than_input_is_an_error_naming_layer_and_formula() -> None:
    with pytest.raises(ShapeError, match=r"pool5 .*\(1 - 2 \+ 2\*0\)/2 \+ 1"):
        analyze(get_spec("vgg16"), (3, 16, 16))
    assert smallest_input(get_spec("vgg16"), 3) == 32
    # backwards from pool5 needing 3: conv5 5, conv4 7, conv3 9, pool2 19, conv2 23, pool1 47,
    # conv1 (47 - 1)*4 + 11 = 195
    assert smallest_input(get_spec("alexnet-lecture"), 3) == 195


def test_groups_must_divide_channels() -> None:
    net = Network("g", (3, 32, 32), (Conv("conv1", 4, 3, groups=2),))
    with pytest.raises(ShapeError, match="3 input channels cannot be split into 2 groups"):
        analyze(net)
    with pytest.raises(SpecError, match="cannot be split"):
        Conv("conv1", 5, 3, groups=2)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: Conv("c", 0, 3), "out_channels must be a positive whole number"),
        (lambda: Conv("c", 8, 0), "kernel must be a positive whole number"),
        (lambda: Conv("c", 8, 3, padding=-1), "padding must be a whole number, zero or more"),
        (lambda: Conv("1c", 8, 3), "not usable"),
        (lambda: MaxPool("p", 2, padding=2), "more than half the kernel"),
        (lambda: Network("n", (3, 0, 32), (ReLU("r"),)), "three positive whole numbers"),
        (lambda: Network("n", (3, 8, 8), (ReLU("r"), ReLU("r"))), "appear more than once"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(build, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        build()


def test_linear_needs_a_flat_input() -> None:
    net = Network("n", (3, 8, 8), (Conv("c", 4, 3), Linear("fc", 10)))
    with pytest.raises(ShapeError, match="Put a flatten layer before it"):
        analyze(net)


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError, match="Did you mean 'vgg16'"):
        get_spec("vgg-16")


def test_list_models_wildcards() -> None:
    assert list_models("vgg*-bn") == ["vgg11-bn", "vgg13-bn", "vgg16-bn", "vgg19-bn"]
    assert list_models("alexnet*")[0] == "alexnet"
    assert list_models("resnet*-v1") == ["resnet50-v1", "resnet101-v1", "resnet152-v1"]
    # families in the order of the challenge's history (the lecture's): 2012, 2013, 2014 (VGG, then
    # GoogLeNet), 2015; each family's networks together
    names = list_models()
    firsts = [names.index(n) for n in ("alexnet", "zfnet", "vgg11", "googlenet", "resnet18")]
    assert firsts == sorted(firsts)
    family = [n.split("-")[0].rstrip("0123456789") for n in names]
    assert all(family.index(f) == i or family[i - 1] == f for i, f in enumerate(family))


def test_one_network_loads_its_family_and_the_order_stays() -> None:
    """get_spec imports the family a name is named after first (resnet152: resnet.py), all of them
    when that does not register it (plain18 is in resnet.py, vgg16-bn in vgg.py); the zoo's order
    does not depend on which came first. In a fresh process, where nothing is loaded yet."""
    code = (
        "import sys; from ilsvrc import get_spec, list_models; get_spec('resnet152'); "
        "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('ilsvrc.networks.zoo.'))); "
        "get_spec('plain18'); get_spec('vgg16-bn'); print(list_models())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded, names = out.splitlines()
    assert loaded == "['registry', 'resnet']"
    assert names == str(list_models())


def _inception_and_residual() -> Network:
    def conv(name: str, c: int, k: int, **kw) -> Conv:
        return Conv(name, c, k, padding=k // 2, **kw)

    inception = Concat(
        "inc",
        (
            Block("b1", (conv("conv", 8, 1), ReLU("relu"))),
            Block("b2", (conv("reduce", 4, 1), ReLU("relu"), conv("conv", 12, 3))),
            Block("b3", (MaxPool("pool", 3, 1, padding=1), conv("proj", 4, 1))),
        ),
    )
    residual = Residual(
        "res",
        Block("body", (conv("conv1", 32, 3, stride=2), ReLU("relu"), conv("conv2", 32, 3))),
        Block("shortcut", (Conv("proj", 32, 1, stride=2),)),
    )
    return Network(
        "branched", (3, 32, 32), (conv("stem", 16, 3), inception, residual, Flatten("flat"), Linear("fc", 10))
    )


def test_branched_network_concat_and_residual() -> None:
    report = analyze(_inception_and_residual())
    rows = {r.name: r for r in report.rows}
    assert rows["inc"].output == Volume(8 + 12 + 4, 32, 32)
    assert rows["inc.b2.conv"].input == Volume(4, 32, 32)
    assert rows["res"].output == Volume(32, 16, 16)
    assert rows["res.shortcut.proj"].params == 24 * 32 + 32
    assert rows["inc"].params == sum(rows[f"inc.{n}"].params for n in ("b1", "b2", "b3"))
    leaves = report.leaves
    assert report.params == sum(r.params for r in leaves)
    assert not any(r.container for r in leaves)
    # receptive field of the join covers the widest branch
    assert rows["inc"].receptive_field.size == (5, 5)
    assert rows["fc"].input.channels == 32 * 16 * 16


def test_concat_branches_must_agree_on_size() -> None:
    bad = Concat("inc", (Block("a", (Conv("c", 4, 1),)), Block("b", (Conv("c", 4, 3),))))
    with pytest.raises(ShapeError, match="same width and height"):
        analyze(Network("n", (3, 8, 8), (bad,)))


def test_residual_needs_matching_volumes() -> None:
    bad = Residual("res", Block("body", (Conv("c", 8, 3, padding=1),)))
    with pytest.raises(ShapeError, match="projection"):
        analyze(Network("n", (3, 8, 8), (bad,)))


def test_window_out_follows_pytorch_ceil_mode_rule() -> None:
    assert window_out(110, 3, 2, 0) == (54, 107, 1)
    assert window_out(110, 3, 2, 0, ceil_mode=True)[0] == 55
    # the last window must start inside the input (or the left padding): 5 -> 3 with k=2, s=2, p=1
    assert window_out(5, 2, 2, 1, ceil_mode=True)[0] == 3
    with pytest.raises(ValueError):
        window_out(2, 3, 1, 0)


def test_memory_scales_with_batch_and_dtype() -> None:
    net = get_spec("vgg16")
    m1 = analyze(net).memory()
    m8 = analyze(net, batch=8).memory()
    half = analyze(net, batch=8, dtype="float16").memory()
    assert m1["weights"] == 138_357_544 * 4
    assert m8["training_activations"] > 7 * m1["training_activations"]
    # at float16 every figure halves except max pooling's int64 indices: 8 bytes each whatever the dtype
    indices = sum(8 * r.output.elements * 8 for r in analyze(net).leaves if r.kind == "maxpool")
    assert half["training_total"] == m8["training_total"] / 2 + indices / 2
    assert m8["training_total"] > m8["inference_peak"] > m8["weights"]


def test_bad_batch_and_dtype() -> None:
    with pytest.raises(SpecError, match="Batch size"):
        analyze(get_spec("alexnet"), batch=0)
    with pytest.raises(SpecError, match="Unknown dtype"):
        analyze(get_spec("alexnet"), dtype="int3")


def test_residual_parts_need_two_names() -> None:
    with pytest.raises(SpecError, match="both named 'body'"):
        Residual("res", Block("body", (ReLU("r"),)), Block("body", (ReLU("r"),)))


def test_lrn_after_flatten_is_refused() -> None:
    net = Network("n", (8, 4, 4), (Flatten("flat"), LRN("norm")))
    with pytest.raises(ShapeError, match="flat vector of 128 values"):
        analyze(net)


# ---------------------------------------------------------------------------------------------------
# A window's last position: what PyTorch gives, and what it never sees


def test_ceil_mode_exercise_five_by_five() -> None:
    """Exercise: a 5x5 input, 2x2 max pooling with stride 2, padding 1 and ceil_mode. (5 - 2 + 2)/2 + 1
    = 3.5; Caffe would round it up to 4, but PyTorch's 4th window would start at padded column 6, in
    the right padding, so PyTorch drops it: 3x3, the floor, and no input column is lost."""
    import torch

    net = Network("n", (1, 5, 5), (MaxPool("pool", 2, 2, padding=1, ceil_mode=True),))
    assert torch.nn.MaxPool2d(2, 2, 1, ceil_mode=True)(torch.zeros(1, 1, 5, 5)).shape == (1, 1, 3, 3)
    report = analyze(net)
    assert report.rows[0].output == Volume(1, 3, 3)
    (note,) = report.findings
    assert note.severity == "note"
    assert "rounded up to 3" not in note.message and "rounds it up" not in note.message
    assert "would round it up to 4" in note.message and "PyTorch drops it and gives 3" in note.message
    assert "every input column and row is still seen" in note.message


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int, int, int, bool, type]:
    k = draw(st.integers(1, 5))
    return (draw(st.integers(1, 24)), k, draw(st.integers(1, 4)), draw(st.integers(0, k // 2)),
            draw(st.booleans()), draw(st.sampled_from([MaxPool, AvgPool, Conv])))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(windows())
def test_findings_state_the_size_pytorch_gives_and_the_input_it_never_sees(case: tuple) -> None:
    """For any window, the output volume is torch's, a finding names torch's size, and it says which
    input columns no window sees (found here by listing the windows), and a fix it suggests works."""
    import torch
    from torch import nn

    n, k, s, p, ceil, cls = case
    layer: Layer = Conv("layer", 1, k, s, p) if cls is Conv else cls("layer", k, s, p, ceil_mode=ceil)
    ceil = ceil and cls is not Conv
    torch_layer = (nn.Conv2d(1, 1, k, s, p) if cls is Conv else
                   (nn.MaxPool2d if cls is MaxPool else nn.AvgPool2d)(k, s, p, ceil_mode=ceil))  # fmt: skip
    try:
        out = torch_layer(torch.zeros(1, 1, n, n)).shape[-1]
    except RuntimeError:
        with pytest.raises(ShapeError):
            analyze(Network("n", (1, n, n), (layer,)))
        return
    report = analyze(Network("n", (1, n, n), (layer,)))
    assert report.rows[0].output == Volume(1, out, out)
    findings = [f for f in report.findings if f.layer == "layer" and "To make it exact" not in f.message]
    if (n + 2 * p - k) % s == 0:
        assert not findings
        return
    (finding,) = findings
    stated = re.search(r"PyTorch (?:floors it to|rounds it up to|drops it and gives) (\d+)", finding.message)
    assert stated and int(stated.group(1)) == out, finding.message
    seen = {x for i in range(out) for x in range(i * s - p, i * s - p + k) if 0 <= x < n}
    lost = n - 1 - max(seen)  # input columns after the last window
    if lost:
        assert f"the last {lost} input column" in finding.message
        assert finding.severity == "warning"
    else:
        assert "every input column and row is still seen" in finding.message
        assert finding.severity == ("note" if ceil else "warning")
    fix = next((f.message for f in report.findings if "To make it exact" in f.message), "")
    for padding in re.findall(r"padding (\d+) in layer", fix):  # a padding PyTorch accepts, and exact
        fixed = dataclasses.replace(layer, padding=int(padding))
        assert is_exact(Network("n", (1, n, n), (fixed,)), (1, n, n))


# ---------------------------------------------------------------------------------------------------
# Which input sizes a network takes


def even_sizes_only() -> Network:
    """A 2x2/2 max pooling beside a 1x1/2 convolution: (n - 2)/2 + 1 and (n - 1)/2 + 1 floor to the
    same size only when n is even."""
    inc = Concat("inc", (Block("a", (MaxPool("pool", 2, 2),)), Block("b", (Conv("conv", 4, 1, stride=2),))))
    return Network("even", (3, 8, 8), (inc, Flatten("flatten"), Linear("fc", 2)))


def test_branches_that_agree_at_some_sizes_only() -> None:
    net = even_sizes_only()
    taken = [n for n in range(1, 13) if is_exact(net, (3, n, n)) is not None]
    assert taken == [2, 4, 6, 8, 10, 12]
    sizes = input_sizes(net, 3)
    assert sizes.smallest == 2 and not sizes.every_size_up
    assert sizes.first == (2, 4, 6, 8) and sizes.count == 2048
    assert "takes only some square inputs (2x2, 4x4, 6x6, 8x8, ...;" in str(sizes)
    assert smallest_input(net, 3) is None  # "takes inputs from N up" would be false for every N
    assert str(input_sizes(get_spec("vgg16"), 3)) == "takes inputs from 32x32 up"


@st.composite
def joins(draw: st.DrawFn) -> Network:
    """Two or three branches with their own windows, maybe then a residual block with a strided body."""

    def window(name: str) -> Layer:
        k = draw(st.integers(1, 4))
        kw = {"padding": draw(st.integers(0, k // 2)), "stride": draw(st.integers(1, 3))}
        return Conv(name, 2, k, **kw) if draw(st.booleans()) else MaxPool(name, k, **kw)

    branches = tuple(Block(f"b{i}", (window("w"),)) for i in range(draw(st.integers(2, 3))))
    layers: list[Layer] = [Concat("inc", branches)]
    if draw(st.booleans()):
        body = Block("body", (window("w1"), Conv("w2", 3, 1)))
        layers.append(
            Residual("res", body, Block("shortcut", (Conv("proj", 3, 1, draw(st.integers(1, 3))),)))
        )
    return Network("joins", (1, 16, 16), (*layers, Flatten("flatten"), Linear("fc", 2)))


@settings(max_examples=60, deadline=None)
@given(joins())
def test_input_sizes_are_the_sizes_the_analyzer_takes(net: Network) -> None:
    limit = 48
    taken = [n for n in range(1, limit + 1) if is_exact(net, (1, n, n)) is not None]
    sizes = input_sizes(net, 1, limit)
    assert sizes.smallest == (taken[0] if taken else None)
    assert sizes.first == tuple(taken[:4]) and sizes.count == len(taken)
    assert sizes.every_size_up == bool(taken and taken == list(range(taken[0], limit + 1)))
    assert smallest_input(net, 1, limit) == (taken[0] if sizes.every_size_up else None)


def test_a_size_independent_error_means_no_size() -> None:
    bad = Network("bad", (3, 8, 8), (Residual("res", Block("body", (Conv("c", 5, 3, padding=1),))),))
    assert input_sizes(bad, 3, limit=64).smallest is None
    assert smallest_input(bad, 3, limit=64) is None
