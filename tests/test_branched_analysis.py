"""The analyzer on branched networks, against what the built module does: the receptive field through
concatenations and residual sums, and what training keeps for the backward pass.

Receptive field. The truth is the set of input pixels on which a unit's value depends: the non-zero
entries of its gradient with respect to the input. To read it exactly, the network is first made
"positive" without changing its geometry: every convolution keeps its kernel, stride, padding and
dilation but has one filter and weights 1/fan-in (no bias); max pooling becomes average pooling over
the same windows (a maximum's gradient reaches one pixel of its window, an average's every pixel);
LRN, which mixes channels but not positions, becomes a ReLU; fully connected layers get one output.
On an all-ones input every activation is then positive, every ReLU passes its gradient, nothing can
cancel, and the gradient of a unit is non-zero exactly on the pixels that reach it. The analyzer's
field of a row, `start + i * jump` +- `(size - 1) / 2` clipped to the image, must be the span of that
set, for the first, a middle and the last unit of every row. For a concatenation the units at one
position in all channels are taken together (each branch gives some channels): the largest field
that reaches the position. float64 keeps the products of 1/fan-in of sixty layers far from zero.

Memory: tests/test_memory.py's comparison with `saved_tensors_hooks` (every tensor autograd keeps, each
storage once), for networks built from the zoo's own Inception modules and residual blocks.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ilsvrc import analyze, get_spec
from ilsvrc.analysis.analyzer import ReceptiveField, Report
from ilsvrc.networks.spec import (
    LRN,
    AdaptiveAvgPool,
    Aux,
    AvgPool,
    Block,
    Concat,
    Conv,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool,
    Network,
    ReLU,
    Residual,
)
from ilsvrc.networks.zoo.googlenet import inception
from ilsvrc.networks.zoo.resnet import block
from ilsvrc.nn import build
from test_memory import check

# --------------------------------------------------------------------------------------------------
# Receptive fields


def positive(layer: Layer) -> Layer:
    """`layer` with the same geometry, made positive (see the module's docstring)."""
    if isinstance(layer, Conv):
        return dataclasses.replace(layer, out_channels=1, groups=1, bias=False)
    if isinstance(layer, MaxPool):
        return AvgPool(layer.name, layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
    if isinstance(layer, LRN):
        return ReLU(layer.name)
    if isinstance(layer, Linear):
        return dataclasses.replace(layer, out_features=1, bias=False)
    if isinstance(layer, Block):
        return dataclasses.replace(layer, layers=tuple(positive(x) for x in layer.layers))
    if isinstance(layer, Concat):
        return dataclasses.replace(layer, branches=tuple(positive(b) for b in layer.branches))
    if isinstance(layer, Residual):
        short = positive(layer.shortcut) if layer.shortcut else None
        return dataclasses.replace(layer, body=positive(layer.body), shortcut=short)
    return layer


def heads(network: Network) -> list[tuple[str, Network, set[str] | None]]:
    """The network without its auxiliary classifiers (the torch builder of this branch does not build
    them), and each auxiliary classifier as the head of the layers before it: (the prefix its rows
    carry in the whole network, the network to build, the top-level names to check there (None: all))."""
    main = tuple(x for x in network.layers if not isinstance(x, Aux))
    out: list[tuple[str, Network, set[str] | None]] = [("", dataclasses.replace(network, layers=main), None)]
    for i, layer in enumerate(network.layers):
        if isinstance(layer, Aux):
            before = tuple(x for x in network.layers[:i] if not isinstance(x, Aux))
            net = dataclasses.replace(network, layers=before + layer.layers)
            out.append((layer.name + ".", net, {x.name for x in layer.layers}))
    return out


def make_positive(network: Network, size: int) -> torch.nn.Module:
    net = dataclasses.replace(network, layers=tuple(positive(x) for x in network.layers))
    model = build(net, (network.input_shape[0], size, size), channels_last=False).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.fill_(1.0 / m.weight[0].numel())
    return model


def span(rf: ReceptiveField, axis: int, unit: int, n: int) -> tuple[float, float]:
    """First and last input pixel of unit `unit`'s field along `axis`, clipped to 0 .. n - 1. Where the
    field is one family (every zoo network), it is also start + unit*jump +- (size - 1)/2."""
    lo, hi = rf.span(axis, unit)
    if rf.parts is None:
        centre = rf.start[axis] + unit * rf.jump[axis]
        assert (lo, hi) == (centre - (rf.size[axis] - 1) / 2, centre + (rf.size[axis] - 1) / 2)
    return max(0.0, lo), min(n - 1.0, hi)


def units(n: int) -> list[int]:
    return [0, n // 2, n - 1]


def keep(outputs: dict[str, torch.Tensor], name: str):
    """A forward hook that keeps a module's output under `name`."""
    return lambda module, args, out: outputs.update({name: out})


def check_fields(network: Network, size: int) -> int:
    """Compare every row's receptive field with the gradient's support; returns how many units."""
    whole = {r.name: r for r in analyze(network, (network.input_shape[0], size, size)).rows}
    checked = 0
    for prefix, net, names in heads(network):
        model = make_positive(net, size)
        outputs: dict[str, torch.Tensor] = {}
        rows = [r for r in analyze(net, (net.input_shape[0], size, size)).rows
                if names is None or r.name.split(".")[0] in names]  # fmt: skip
        hooks = [
            model.get_submodule(r.name).register_forward_hook(keep(outputs, r.name))
            for r in rows
            if not (isinstance(r.layer, AdaptiveAvgPool) and r.output.height * r.output.width > 1)
        ]
        x = torch.ones(1, net.input_shape[0], size, size, dtype=torch.float64, requires_grad=True)
        model(x)
        for h in hooks:
            h.remove()
        for name, out in outputs.items():
            rf = whole[prefix + name].receptive_field
            if out.dim() == 2:  # a flat vector: all its values together
                positions: list[tuple[int | None, int | None]] = [(None, None)]
            else:  # the first, a middle and the last unit
                positions = list(zip(units(out.shape[2]), units(out.shape[3])))
            for i, j in positions:
                unit = out[0].sum() if i is None else out[0, :, i, j].sum()
                (grad,) = torch.autograd.grad(unit, x, retain_graph=True)
                reached = grad[0].abs().sum(0) > 0
                rows_hit = reached.any(1).nonzero().flatten()
                cols_hit = reached.any(0).nonzero().flatten()
                found = ((rows_hit.min().item(), rows_hit.max().item()),
                         (cols_hit.min().item(), cols_hit.max().item()))  # fmt: skip
                ui, uj = (0, 0) if i is None else (i, j)
                expected = (span(rf, 0, ui, size), span(rf, 1, uj, size))
                assert found == expected, (prefix + name, (i, j), found, expected)
                checked += 1
    return checked


@pytest.mark.slow  # minutes: hundreds of backward passes at 800 px
def test_googlenets_fields_reach_the_pixels_the_analyzer_says() -> None:
    """GoogLeNet as published at 800 px, where the middle unit of inception5b (a field of 715 pixels)
    lies wholly inside the image: every row, its branches, and the two auxiliary classifiers."""
    assert check_fields(get_spec("googlenet"), 800) > 400


@pytest.mark.slow  # about 100 s each on a loaded 2-core machine
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet50-v1"])
def test_resnets_fields_reach_the_pixels_the_analyzer_says(name: str) -> None:
    """ResNet-18 (basic blocks), ResNet-50 (v1.5: stride in the 3x3) and its v1 (stride in the first
    1x1) at 480 px, where the middle unit of layer4 (a field of up to 483 pixels) lies almost wholly
    inside: every row, the blocks' bodies and projection shortcuts."""
    assert check_fields(get_spec(name), 480) > 250


def test_branches_of_different_strides_give_each_unit_its_own_field() -> None:
    """Two branches that give the same size by different routes, a 3x3/2 convolution (padding 1) and a
    5x5/1 one (no padding), on 8 pixels: unit 0 is reached by pixels -1..4 (the first: -1..1, the
    second: 0..4), unit 2 by 2..6 (3..5 and 2..6), unit 3 by 3..7 (5..7 and 3..7). The fields of
    neighbouring units are not shifted copies: the analyzer keeps one family per stride and reports
    the largest (6 pixels, unit 0 with its padding). Failed before: it shifted unit 0's union by the
    larger stride (unit 2: 3..8)."""
    branches = (Block("a", (Conv("c", 1, 3, stride=2, padding=1),)), Block("b", (Conv("c", 1, 5),)))
    net = Network("strides", (1, 8, 8), (Concat("inc", branches), Conv("after", 1, 3, padding=1)))
    rf = next(r for r in analyze(net).rows if r.name == "inc").receptive_field
    assert [rf.span(0, u) for u in range(4)] == [(-1, 4), (1, 5), (2, 6), (3, 7)]
    assert rf.size == (6, 6) and rf.parts is not None
    assert check_fields(net, 8) == 6 * 3  # six rows (the join, its branches, "after"), 3 units each


def test_a_concat_reports_the_widest_branch_and_a_residual_the_wider_side() -> None:
    """inception3a: 1x1 (27), 3x3 (43), 5x5 (59) and pool + 1x1 (43): the module's field is the 5x5
    branch's; a ResNet block's sum: the body's (two 3x3: +2 x 2 jumps) against the shortcut's."""
    rows = {r.name: r for r in analyze(get_spec("googlenet")).rows}
    sizes = [rows[f"inception3a.b{i}"].receptive_field.size[0] for i in (1, 2, 3, 4)]
    assert sizes == [27, 43, 59, 43] and rows["inception3a"].receptive_field.size[0] == 59
    res = {r.name: r for r in analyze(get_spec("resnet18")).rows}
    assert res["layer2.0.add.downsample"].receptive_field.size[0] == res["layer1"].receptive_field.size[0]
    assert (
        res["layer2.0.add"].receptive_field.size[0] == res["layer1"].receptive_field.size[0] + 2 * 4 + 2 * 8
    )


# --------------------------------------------------------------------------------------------------
# What concatenations and residual sums keep for the backward pass


def mini_inception(bn: bool) -> Network:
    """A stem and three Inception modules made by the zoo's own `inception` (as published, or
    torchvision's with batch norm), with GoogLeNet's round-up pooling between them."""
    stem: list[Layer] = [Conv("conv1", 8, 7, stride=2, padding=3), ReLU("relu1"),
                         MaxPool("pool1", 3, 2, ceil_mode=True)]  # fmt: skip
    if not bn:
        stem.append(LRN("norm1", 5, alpha=1e-4 / 5, beta=0.75, k=1.0))
    return Network(
        "mini-inception-bn" if bn else "mini-inception",
        (3, 32, 32),
        (
            *stem,
            inception("inc3a", (4, 4, 8, 2, 4, 4), bn),
            inception("inc3b", (8, 4, 8, 2, 4, 4), bn),
            MaxPool("pool3", 3, 2, ceil_mode=True),
            inception("inc4a", (8, 4, 8, 2, 4, 4), bn),
            AvgPool("avgpool", 4, 1),
            Dropout("drop", 0.4),
            Flatten("flatten"),
            Linear("fc", 10),
        ),
    )


def mini_resnet(kind: str, stride_first: bool) -> Network:
    """A stem and three stages of the zoo's own residual blocks: identity shortcuts, and projections
    where a stage halves the size and widens (the bottleneck's first block projects too)."""
    layers: list[Layer] = [Conv("conv1", 8, 3, padding=1, bias=False), ReLU("relu")]
    channels = 8
    for stage, width in enumerate((4, 8, 16), start=1):
        blocks = []
        for i in range(2):
            b, channels = block(str(i), kind, width, 2 if i == 0 and stage > 1 else 1, channels, stride_first)
            blocks.append(b)
        layers.append(Block(f"layer{stage}", tuple(blocks)))
    name = f"mini-{kind}" + ("-v1" if stride_first else "")
    head = (AdaptiveAvgPool("avgpool", 1), Flatten("flatten"), Linear("fc", 10))
    return Network(name, (3, 16, 16), (*layers, *head))


def without_aux(name: str) -> Network:
    net = get_spec(name).with_num_classes(10)
    return dataclasses.replace(net, layers=tuple(x for x in net.layers if not isinstance(x, Aux)))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("bn", [False, True])
def test_a_small_inception_network_keeps_what_the_analyzer_says(bn: bool, dtype: str) -> None:
    check(mini_inception(bn), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("kind,stride_first", [("basic", False), ("bottleneck", False), ("bottleneck", True)])
def test_a_small_residual_network_keeps_what_the_analyzer_says(kind: str, stride_first: bool,
                                                              dtype: str) -> None:  # fmt: skip
    check(mini_resnet(kind, stride_first), dtype)


@pytest.mark.parametrize("name,size", [("resnet18", 64), ("resnet50-v1", 64), ("googlenet", 224),
                                       ("googlenet-torchvision", 64)])  # fmt: skip
def test_zoo_branched_networks_keep_what_the_analyzer_says(name: str, size: int) -> None:
    """The zoo's own networks at a small input (GoogLeNet as published takes only 224: its 7x7 average
    pooling), in both layouts; the auxiliary classifiers left out (this branch builds none)."""
    for layout in (True, False):
        check(without_aux(name), "float32", (3, size, size), channels_last=layout)


def test_what_a_join_keeps_is_its_output_once_whoever_reads_it() -> None:
    """A concatenation and a residual sum keep nothing themselves (their backward only splits or
    copies the gradient). Their output is kept by what reads it: the next module's convolutions and
    pooling (four branches, one storage, counted once), or the ReLU that works in place on a sum."""
    report: Report = analyze(mini_inception(bn=False), batch=1)
    rows = {r.name: r for r in report.rows}
    for name in ("inc3a", "inc3b"):
        kept = rows[name].saved_values
        assert kept == rows[name].output.elements  # the join's output, kept once
    res = {r.name: r for r in analyze(mini_resnet("basic", False), batch=1).rows}
    assert res["layer1.0.add"].saved_values == res["layer1.0.add"].output.elements
    assert res["layer1.0.relu"].saved_values == 0  # in place: the sum's storage, credited to the sum
    assert isinstance(res["layer1.0.add"].layer, Residual) and res["layer1.0.relu"].in_place
