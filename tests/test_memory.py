"""The analyzer's training memory against what autograd really keeps for the backward pass.

The truth: run the module `ilsvrc.nn.build` makes (channels-last by default, training mode, on the CPU,
`model.to(dtype)`) under `torch.autograd.graph.saved_tensors_hooks`, record the storage of every tensor
packed for the backward pass, count each storage once (views of one storage are one tensor) and leave
out the parameters and buffers (counted as weights). The analyzer must give exactly that many bytes.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from ilsvrc import ShapeError, analyze, get_spec, list_models
from ilsvrc.analysis.analyzer import Report, channels_last_layout, smallest_input
from ilsvrc.networks.spec import (
    LRN,
    AdaptiveAvgPool,
    AvgPool,
    BatchNorm,
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
    Sigmoid,
    Tanh,
)
from ilsvrc.nn import build

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}  # fmt: skip


def autograd_saved_bytes(
    network: Network, shape: tuple[int, int, int] | None = None, batch: int = 2,
    dtype: str = "float32", channels_last: bool = True,
) -> int:  # fmt: skip
    """Bytes of every storage autograd keeps during one training-mode forward pass, each once,
    parameters and buffers (batch norm's running statistics) left out."""
    torch.manual_seed(0)
    model = build(network, shape, channels_last=channels_last).to(DTYPES[dtype]).train()
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(batch, *(shape or network.input_shape), dtype=DTYPES[dtype])
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)  # noqa: F841 (keeps the graph, and so every saved tensor, alive)
    state = {t.untyped_storage().data_ptr() for t in itertools.chain(model.parameters(), model.buffers())}
    return sum(nbytes for ptr, nbytes in storages.items() if ptr not in state)


def predicted(report: Report) -> int:
    return report.memory()["saved_for_backward"]


def check(network: Network, dtype: str, shape: tuple[int, int, int] | None = None,
          channels_last: bool = True) -> None:  # fmt: skip
    report = analyze(network, shape, batch=2, dtype=dtype, channels_last=channels_last)
    truth = autograd_saved_bytes(network, shape, 2, dtype, channels_last)
    assert predicted(report) == truth, (predicted(report), truth)


# ---------------------------------------------------------------------------------------------------
# The zoo


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,size", [("alexnet", 227), ("alexnet-torchvision", 224), ("vgg11-bn", 32)])
def test_zoo_saved_bytes_are_what_autograd_saves(name: str, size: int, dtype: str) -> None:
    """AlexNet (LRN, max pooling's int64 indices, dropout's noise, the copy flatten makes of a
    channels-last map), torchvision's AlexNet (adaptive pooling) and VGG11-BN (batch norm)."""
    check(get_spec(name).with_num_classes(10), dtype, (3, size, size))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list_models())
def test_every_zoo_network_at_its_smallest_input(name: str, dtype: str) -> None:
    net = get_spec(name).with_num_classes(10)
    size = smallest_input(net, 3)
    check(net, dtype, (3, size, size))


def test_alexnet_exercise_what_training_keeps_layer_by_layer() -> None:
    """AlexNet at 227, one image, float32 unless said: each kept tensor counts once, for the layer that
    made it. conv1's 55x55x96 output is kept once (its in-place ReLU and norm1 read the same storage);
    norm1 adds its denominator and its output (pool1's input); pool1 its output (conv2's input) and an
    int64 index per output value, 8 bytes whatever the dtype; pool5 only its indices, since flatten
    copies its channels-last output and fc6 keeps the copy; dropout keeps noise in the activation
    dtype, and its output (fc7's input)."""
    report = analyze(get_spec("alexnet"), batch=1)
    rows = {r.name: r for r in report.rows}
    assert report.input_saved  # conv1 keeps the image for its weights' gradient
    assert rows["conv1"].saved_bytes() == 55 * 55 * 96 * 4
    assert rows["relu1"].saved_bytes() == 0
    assert rows["norm1"].saved_bytes() == 2 * 55 * 55 * 96 * 4
    assert rows["pool1"].saved_bytes() == 27 * 27 * 96 * 4 + 27 * 27 * 96 * 8
    assert rows["pool1"].saved_bytes("bfloat16") == 27 * 27 * 96 * (2 + 8)
    assert rows["pool5"].saved_bytes("float64") == 6 * 6 * 256 * 8
    assert rows["flatten"].saved_bytes() == 9216 * 4
    assert rows["drop6"].saved_bytes("bfloat16", batch=8) == 8 * 2 * 4096 * 2
    assert rows["fc8"].saved_bytes() == 0  # nobody keeps the logits


def test_flatten_of_a_channels_last_map_is_a_second_copy() -> None:
    """conv -> ReLU -> flatten -> fc: the ReLU keeps the 4x4x8 map; in the channels-last layout flatten
    copies it to N x C*H*W order and fc keeps the copy too. In torch's default layout it is a view."""
    net = Network("n", (3, 6, 6), (Conv("conv", 8, 3), ReLU("relu"), Flatten("flatten"), Linear("fc", 2)))
    cl, plain = analyze(net, channels_last=True), analyze(net, channels_last=False)
    assert {r.name: r for r in plain.rows}["flatten"].saved_bytes() == 0
    assert predicted(cl) - predicted(plain) == 4 * 4 * 8 * 4
    for layout in (True, False):
        check(net, "float32", channels_last=layout)


def test_memory_counts_what_concatenation_and_residual_sums_keep() -> None:
    """A ReLU after a concatenation or a residual sum works in place on the join's output: it is kept,
    and it is the join's (GoogLeNet and ResNet depend on it)."""
    net = Network("joins", (3, 8, 8), (
        Conv("stem", 4, 3, padding=1),
        Concat("inc", (Block("a", (Conv("conv", 2, 1),)), Block("b", (MaxPool("pool", 3, 1, 1),)))),
        ReLU("relu1"),
        Residual("res", Block("body", (Conv("conv", 6, 3, padding=1),))),
        ReLU("relu2"), Flatten("flatten"), Linear("fc", 3),
    ))  # fmt: skip
    report = analyze(net)
    rows = {r.name: r for r in report.rows}
    assert rows["inc"].saved_bytes() == 6 * 8 * 8 * 4
    assert rows["res"].saved_bytes() == 6 * 8 * 8 * 4
    check(net, "float32")


# ---------------------------------------------------------------------------------------------------
# Random chains and branched networks, at every dtype


def pair_or_int(lo: int, hi: int) -> st.SearchStrategy:
    return st.integers(lo, hi) | st.tuples(st.integers(lo, hi), st.integers(lo, hi))


@st.composite
def spatial(draw: st.DrawFn, name: str, channels: int) -> Layer:
    kind = draw(st.sampled_from(["conv", "conv", "pool", "adaptive", "lrn", "relu", "relu", "bn", "drop",
                                 "tanh", "sigmoid"]))  # fmt: skip
    if kind == "conv":
        groups = draw(st.sampled_from(sorted({1, channels})))
        return Conv(name, groups * draw(st.integers(1, 3)), draw(pair_or_int(1, 3)),
                    stride=draw(pair_or_int(1, 2)), padding=draw(pair_or_int(0, 1)), groups=groups,
                    dilation=draw(st.sampled_from([1, 2])), bias=draw(st.booleans()))  # fmt: skip
    if kind == "pool":
        k = draw(st.integers(1, 3))
        cls = draw(st.sampled_from([MaxPool, AvgPool]))
        return cls(name, k, draw(st.integers(1, 2)), draw(st.integers(0, k // 2)),
                   ceil_mode=draw(st.booleans()))  # fmt: skip
    if kind == "adaptive":
        return AdaptiveAvgPool(name, draw(st.sampled_from([1, 1, 2, 3, (1, 2)])))
    if kind == "lrn":
        return LRN(name, size=draw(st.integers(1, 3)), alpha=1e-3, beta=0.75, k=1.0)
    if kind == "bn":
        return BatchNorm(name)
    if kind == "drop":
        return Dropout(name, draw(st.sampled_from([0.0, 0.5])))
    if kind == "tanh":
        return Tanh(name)
    if kind == "sigmoid":
        return Sigmoid(name)
    return ReLU(name)


@st.composite
def flat_tail(draw: st.DrawFn) -> list[Layer]:
    """Flatten, then what a classifier has: fully connected, ReLU, dropout (and flatten again)."""
    layers: list[Layer] = [Flatten("flatten")]
    for i in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["fc", "relu", "drop", "flatten"]))
        if kind == "fc":
            layers.append(Linear(f"fc{i}", draw(st.integers(1, 6))))
        elif kind == "relu":
            layers.append(ReLU(f"relu{i}"))
        elif kind == "drop":
            layers.append(Dropout(f"drop{i}", draw(st.sampled_from([0.0, 0.5]))))
        else:
            layers.append(Flatten(f"flat{i}"))
    return layers


@st.composite
def chains(draw: st.DrawFn) -> Network:
    """One input channel and 1x1 maps included: there the two memory layouts coincide."""
    channels = draw(st.integers(1, 3))
    shape = (channels, draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    layers: list[Layer] = []
    for i in range(draw(st.integers(0, 6))):
        layer = draw(spatial(f"l{i}", channels))
        channels = layer.out_channels if isinstance(layer, Conv) else channels
        layers.append(layer)
    if draw(st.booleans()):
        layers += draw(flat_tail())
    assume(layers)
    return Network("chain", shape, tuple(layers))


@st.composite
def opener(draw: st.DrawFn, name: str) -> list[Layer]:
    """What a branch may start with on the input it shares: ReLU (never in place there), dropout,
    batch norm, LRN, or nothing."""
    kind = draw(st.sampled_from(["none", "none", "relu", "drop", "bn", "lrn"]))
    return {"none": [], "relu": [ReLU(name)], "drop": [Dropout(name, draw(st.sampled_from([0.0, 0.5])))],
            "bn": [BatchNorm(name)], "lrn": [LRN(name, 3)]}[kind]  # fmt: skip


@st.composite
def concat(draw: st.DrawFn, name: str, channels: int) -> tuple[Layer, int]:
    stride = draw(st.integers(1, 2))
    branches, out = [], 0
    for b in range(draw(st.integers(1, 3))):
        k = draw(st.sampled_from([1, 3]))
        if draw(st.booleans()):
            main: Layer = Conv("conv", draw(st.integers(1, 4)), k, stride=stride, padding=k // 2)
            out += main.out_channels
        else:
            main = draw(st.sampled_from([MaxPool, AvgPool]))("pool", k, stride, padding=k // 2)
            out += channels
        tail = [ReLU("relu")] if draw(st.booleans()) else []
        branches.append(Block(f"b{b}", (*draw(opener("first")), main, *tail)))
    if stride == 1 and draw(st.booleans()):  # a branch that passes its input on untouched
        branches.append(Block("same", ()))
        out += channels
    return Concat(name, tuple(branches)), out


@st.composite
def residual(draw: st.DrawFn, name: str, channels: int) -> tuple[Layer, int]:
    filters = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 2))
    body = [*draw(opener("first")), Conv("conv1", filters, 3, stride=stride, padding=1)]
    if draw(st.booleans()):
        body += [BatchNorm("bn1"), ReLU("relu"), Conv("conv2", filters, 3, padding=1)]
    if draw(st.booleans()):
        body.append(Dropout("drop", 0.5))
    identity = stride == 1 and filters == channels and draw(st.booleans())
    short = None if identity else Block("shortcut", (Conv("conv", filters, 1, stride=stride),))
    return Residual(name, Block("body", tuple(body)), short), filters


@st.composite
def branched(draw: st.DrawFn) -> Network:
    first = channels = draw(st.integers(1, 3))
    size = draw(st.integers(1, 8))
    layers: list[Layer] = []
    if draw(st.booleans()):
        layers.append(Conv("stem", draw(st.integers(1, 4)), 3, padding=1))
        channels = layers[-1].out_channels
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["concat", "residual", "relu", "drop", "pool"]))
        if kind == "concat":
            layer, channels = draw(concat(f"inc{i}", channels))
        elif kind == "residual":
            layer, channels = draw(residual(f"res{i}", channels))
        elif kind == "relu":
            layer = ReLU(f"relu{i}")
        elif kind == "drop":
            layer = Dropout(f"drop{i}", 0.5)
        else:
            layer = MaxPool(f"pool{i}", 3, 1, padding=1)
        layers.append(layer)
    if draw(st.booleans()):
        layers.append(AdaptiveAvgPool("avgpool", 1))
    layers += [Flatten("flatten"), Linear("fc", 3)]
    return Network("branched", (first, size, size), tuple(layers))


def measure(network: Network, dtype: str, channels_last: bool) -> None:
    try:
        report = analyze(network, batch=2, dtype=dtype, channels_last=channels_last)
    except ShapeError:
        event("refused")
        assume(False)
    event(f"layout {'channels-last' if report.channels_last else 'contiguous'}")
    truth = autograd_saved_bytes(network, None, 2, dtype, channels_last)
    assert predicted(report) == truth, (predicted(report), truth)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(chains(), st.sampled_from(list(DTYPES)), st.booleans())
def test_random_chains_keep_what_the_analyzer_says(network: Network, dtype: str, cl: bool) -> None:
    measure(network, dtype, cl)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(branched(), st.sampled_from(list(DTYPES)), st.booleans())
def test_random_branched_networks_keep_what_the_analyzer_says(network: Network, dtype: str,
                                                               cl: bool) -> None:  # fmt: skip
    measure(network, dtype, cl)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.one_of(chains(), branched()), st.sampled_from(list(DTYPES)), st.booleans())
def test_many_random_networks_keep_what_the_analyzer_says(network: Network, dtype: str, cl: bool) -> None:
    measure(network, dtype, cl)


def test_layout_is_the_builders() -> None:
    odd = Network("n", (3, 8, 8), (Conv("c", 4, 1, stride=(2, 1)), Flatten("f"), Linear("fc", 2)))
    for net in (odd, get_spec("alexnet")):
        assert channels_last_layout(net) == build(net).channels_last
