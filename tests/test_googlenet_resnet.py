"""GoogLeNet (2014) and ResNet (2015) as data: the papers' and torchvision's figures from the analyzer
(issue 12). The builder's side (the module agrees with the analysis) is in test_nn.py."""

from __future__ import annotations

import json

import pytest

import ilsvrc
from ilsvrc.analysis.analyzer import longest_path
from ilsvrc.cli import main
from ilsvrc.errors import ShapeError, SpecError
from ilsvrc.networks import specfile
from ilsvrc.networks.spec import Aux, Block, Concat, Conv, Flatten, Linear, Network, ReLU, Residual

# facts.md: exact parameters (torchvision's counts; GoogLeNet as published: the count of BVLC's
# train_val.prototxt with its auxiliary heads) and torchvision's multiply-adds in G
PARAMS = {
    "googlenet": (6_998_552, 13_378_280),
    "googlenet-torchvision": (6_624_904, 13_004_888),
    "resnet18": (11_689_512, None),
    "resnet34": (21_797_672, None),
    "resnet50": (25_557_032, None),
    "resnet101": (44_549_160, None),
    "resnet152": (60_192_808, None),
}
TORCHVISION_GMACS = {
    "googlenet-torchvision": 1.498,
    "resnet18": 1.814,
    "resnet34": 3.664,
    "resnet50": 4.089,
    "resnet101": 7.801,
    "resnet152": 11.514,
}
PAPER_V1_GMACS = {"resnet50-v1": 3.86, "resnet101-v1": 7.57, "resnet152-v1": 11.28}  # Table 1: 3.8/7.6/11.3


def report(name: str) -> ilsvrc.analysis.Report:
    return ilsvrc.analyze(ilsvrc.get_spec(name))


@pytest.mark.parametrize("name", PARAMS)
def test_exact_parameters_with_and_without_the_auxiliary_heads(name: str) -> None:
    without, with_aux = PARAMS[name]
    r = report(name)
    assert r.params == without
    assert r.params_with_aux == (with_aux or without)
    assert r.params_with_aux - r.params == r.aux_params == sum(x.params for x in r.aux_leaves)


@pytest.mark.parametrize("name", TORCHVISION_GMACS)
def test_multiply_adds_are_torchvisions_figures(name: str) -> None:
    assert round(report(name).macs / 1e9, 3) == TORCHVISION_GMACS[name]


@pytest.mark.parametrize("name", PAPER_V1_GMACS)
def test_the_papers_v1_resnets_have_the_same_parameters_and_fewer_multiply_adds(name: str) -> None:
    v1, v15 = report(name), report(name.removesuffix("-v1"))
    assert round(v1.macs / 1e9, 2) == PAPER_V1_GMACS[name]
    assert v1.params == v15.params and v1.macs < v15.macs


@pytest.mark.parametrize(
    "name, depth",
    [
        ("alexnet", 8),
        ("zfnet", 8),
        ("vgg19", 19),
        ("googlenet", 22),
        ("resnet152", 152),
        ("resnet18", 18),
        ("plain34", 34),
        ("googlenet-torchvision", 22),
    ],  # fmt: skip
)
def test_depth_the_lectures_way_is_the_longest_path_of_weight_layers(name: str, depth: int) -> None:
    r = report(name)
    assert r.depth == depth
    # the plain count of weight layers is larger where branches run side by side
    branched = any(isinstance(x, (Concat, Residual)) for _, x in ilsvrc.networks.walk(r.network.layers))
    assert (r.weight_layers > r.depth) == branched


def test_resnet_depth_counts_the_projection_shortcut_once_beside_its_body() -> None:
    r = report("resnet18")
    shortcuts = [x for x in r.leaves if ".downsample." in x.name and x.kind == "conv"]
    assert len(shortcuts) == 3 and r.weight_layers == r.depth + len(shortcuts)


def test_googlenet_volumes_follow_caffes_round_up_pooling() -> None:
    r = report("googlenet")
    sizes = [x.output.height for x in r.rows if x.name in ("conv1", "pool1", "pool2", "pool3", "pool4")]
    assert sizes == [112, 56, 28, 14, 7]
    by_name = {x.name: x for x in r.rows}
    assert by_name["inception3a"].output.channels == 64 + 128 + 32 + 32 == 256
    assert by_name["inception5b"].output.channels == 1024
    assert by_name["aux1"].input.channels == 512 and by_name["aux2"].input.channels == 528
    # the chain goes on with what the auxiliary classifier read
    assert by_name["inception4b"].input == by_name["inception4a"].output


def test_every_pooling_of_googlenet_as_published_rounds_up_as_caffe_does() -> None:
    # at 256 px inception4a's map is 16x16: the aux head's 5x5/3 pooling gives (16 - 5)/3 + 1 = 4.67,
    # which Caffe (BVLC's prototxt) rounds up to 5 and PyTorch's default would floor to 4
    rows = {x.name: x for x in ilsvrc.analyze(ilsvrc.get_spec("googlenet"), (3, 256, 256)).aux_leaves}
    assert rows["aux1.pool"].input.height == 16 and rows["aux1.pool"].output.height == 5
    r = report("googlenet")
    pools = [x for x in (*r.leaves, *r.aux_leaves) if x.layer.kind in ("maxpool", "avgpool")]
    assert len(pools) == 4 + 9 + 2 + 1 and all(x.layer.ceil_mode for x in pools)  # stem, modules, aux, top


def test_torchvisions_5x5_branch_is_a_3x3_convolution() -> None:
    tv = {x.name: x for x in report("googlenet-torchvision").rows}
    paper = {x.name: x for x in report("googlenet").rows}
    assert tv["inception3a.b3.conv"].layer.kernel == (3, 3)
    assert paper["inception3a.b3.conv"].layer.kernel == (5, 5)


def test_the_collapsed_view_shows_modules_as_rows_and_expand_shows_all() -> None:
    r = report("resnet50")
    shown = [(row.name, collapsed) for row, collapsed in r.modules()]
    names = [n for n, _ in shown]
    assert ("layer3.4", True) in shown and ("layer3", False) in shown
    assert not any(n.startswith("layer3.4.") for n in names)
    assert len(shown) < len(r.rows)
    # a collapsed row carries the totals of what it stands for
    inside = [x for x in r.leaves if x.name.startswith("layer3.4.")]
    row = next(x for x in r.rows if x.name == "layer3.4")
    assert row.params == sum(x.params for x in inside) and row.macs == sum(x.macs for x in inside)
    g = report("googlenet")
    assert [n for n, c in ((x.name, c) for x, c in g.modules()) if c][:3] == [
        "inception3a", "inception3b", "inception4a"]  # fmt: skip


def test_summary_text_collapses_and_expands(capsys) -> None:
    assert main(["summary", "resnet152"]) == 0
    short = capsys.readouterr().out
    assert "layer3.35/" in short and "layer3.35.add.body.conv2" not in short
    assert "Layers with weights (the lecture's count): 152 along the longest path; 156 in all" in short
    assert main(["summary", "resnet152", "--expand"]) == 0
    full = capsys.readouterr().out
    assert "layer3.35.add.body.conv2" in full and len(full.splitlines()) > 3 * len(short.splitlines())


def test_summary_json_carries_the_lectures_depth_and_the_totals_with_and_without_aux(capsys) -> None:
    assert main(["summary", "googlenet", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    totals = data["totals"]
    assert totals["depth_lecture"] == 22 and totals["weight_layers"] == 58
    assert totals["params"] == 6_998_552 and totals["params_with_aux"] == 13_378_280
    layers = data["layers"]
    leaves = [x for x in layers if not x["container"]]
    assert sum(x["params"] for x in leaves if not x["aux"]) == totals["params"]
    assert sum(x["params"] for x in leaves) == totals["params_with_aux"]
    assert totals["macs_with_aux"] - totals["macs"] == totals["aux_macs"] > 0


def test_list_shows_the_lectures_depth(capsys) -> None:
    assert main(["list", "--format", "json"]) == 0
    rows = {x["name"]: x for x in json.loads(capsys.readouterr().out)["networks"]}
    assert [rows[n]["depth_lecture"] for n in ("alexnet", "zfnet", "vgg19", "googlenet", "resnet152")] == [
        8, 8, 19, 22, 152]  # fmt: skip


def test_receptive_field_through_branches_is_the_largest_that_reaches_a_unit() -> None:
    r = report("googlenet")
    rows = {x.name: x for x in r.rows}
    module = rows["inception3a"].receptive_field
    branches = [rows[f"inception3a.b{i}"].receptive_field for i in (1, 2, 3, 4)]
    assert module.size == max((b.size for b in branches), key=lambda s: s[0])
    assert rows["inception3a.b3"].receptive_field.size[0] > rows["inception3a.b1"].receptive_field.size[0]
    # a residual block with an identity shortcut: the body's field (the larger)
    res = {x.name: x for x in report("resnet18").rows}
    assert res["layer1.0.add"].receptive_field.size == res["layer1.0.add.body"].receptive_field.size


def tiny_aux() -> Network:
    return Network(
        "tiny-aux",
        (3, 16, 16),
        (
            Conv("conv1", 4, 3, padding=1),
            ReLU("relu1"),
            Aux("aux1", (Flatten("flatten"), Linear("fc", 10)), weight=0.5),
            Conv("conv2", 8, 3, padding=1),
            Flatten("flatten"),
            Linear("fc", 10),
        ),
    )


def test_an_auxiliary_classifier_is_counted_apart_and_passes_its_input_on() -> None:
    r = ilsvrc.analyze(tiny_aux())
    assert r.aux_params == 4 * 16 * 16 * 10 + 10
    assert r.params == (3 * 9 * 4 + 4) + (4 * 9 * 8 + 8) + (8 * 16 * 16 * 10 + 10)
    rows = {x.name: x for x in r.rows}
    assert rows["conv2"].input == rows["relu1"].output and rows["aux1.fc"].aux
    assert longest_path(tiny_aux().layers) == r.depth == 3  # the side branch ends no path


def test_num_classes_reaches_the_auxiliary_heads_too() -> None:
    net = ilsvrc.get_spec("googlenet").with_num_classes(10)
    r = ilsvrc.analyze(net)
    outs = [x.output.channels for x in r.rows if x.name in ("fc", "aux1.fc2", "aux2.fc2")]
    assert outs == [10, 10, 10]


def test_auxiliary_classifiers_round_trip_through_spec_files() -> None:
    for name in ("googlenet", "resnet18"):
        net = ilsvrc.get_spec(name)
        again = specfile.loads(specfile.dumps(net, "yaml"))
        assert again.layers == net.layers
        assert ilsvrc.analyze(again).params_with_aux == ilsvrc.analyze(net).params_with_aux


def test_misplaced_or_headless_auxiliary_classifiers_are_refused() -> None:
    with pytest.raises(SpecError, match="last layer must be a linear layer"):
        Aux("aux1", (Flatten("flatten"),))
    nested = Block("stage", (Aux("aux1", (Flatten("flatten"), Linear("fc", 10))),))
    with pytest.raises(SpecError, match="sits at the top level"):
        Network("n", (3, 8, 8), (Conv("conv1", 4, 3), nested, Flatten("flatten"), Linear("fc", 2)))
    bad = Network("n", (3, 8, 8), (Conv("c", 4, 3), Aux("aux1", (Conv("c", 2, 1), Linear("fc", 2))),
                                   Flatten("flatten"), Linear("fc", 2)))  # fmt: skip
    with pytest.raises(ShapeError, match="flatten"):
        ilsvrc.analyze(bad)


def test_numbers_name_layers_as_torch_numbers_a_sequential() -> None:
    assert Block("4", (ReLU("relu"),)).name == "4"
    with pytest.raises(SpecError, match="not usable"):
        ReLU("4x")
