"""The torch builder agrees with the analyzer, layer by layer, and with torchvision, tensor by tensor.

No downloads: torchvision models are built with `weights=None` (random weights, fixed seed).
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import torchvision
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import nn

import ilsvrc
from ilsvrc import ShapeError, SpecError, analyze, get_spec, list_models
from ilsvrc.analysis.analyzer import Report, Volume
from ilsvrc.networks.spec import (
    LRN,
    AdaptiveAvgPool,
    Aux,
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
)
from ilsvrc.nn import (
    TORCHVISION_NAMES,
    ModelOutputs,
    WeightMappingError,
    build,
    create_model,
    from_torchvision,
    leaf_module,
    to_torchvision,
)
from work import HANG_GUARD  # child-process timeouts: a hang guard only, never a time budget

# ---------------------------------------------------------------------------------------------------
# Helpers: run a module with forward hooks on its leaves


def shape_of(volume: Volume, batch: int) -> tuple[int, ...]:
    """The tensor shape torch gives for an analyzer volume."""
    if volume.flat:
        return (batch, volume.channels)
    return (batch, volume.channels, volume.height, volume.width)


def leaf_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if not list(m.children())}


def run_with_hooks(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict, int]:
    """(output, {leaf name: output shape}, MACs per image counted independently of the analyzer).

    MACs: a Conv2d does out_elements * in_channels/groups * kh*kw, a Linear in * out (no biases).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    macs = [0]
    batch = x.shape[0]

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            shapes[name] = tuple(output.shape)
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                per_out = module.in_channels // module.groups * kh * kw
                macs[0] += output.numel() // batch * per_out
            elif isinstance(module, nn.Linear):
                macs[0] += module.in_features * module.out_features

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in leaf_modules(model).items()]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, shapes, macs[0]


def check_against_report(model: nn.Module, report: Report, batch: int = 1) -> torch.Tensor:
    """Parameters, every leaf's output shape and the MACs of `model` (in eval mode: auxiliary heads
    held but not run) are the analyzer's."""
    assert sum(p.numel() for p in model.parameters()) == report.params_with_aux
    leaves = {row.name: row for row in report.leaves}
    aux_leaves = {row.name for row in report.aux_leaves}
    assert set(leaf_modules(model)) == set(leaves) | aux_leaves
    model.eval()
    inp = report.input
    x = torch.randn(batch, inp.channels, inp.height, inp.width)
    out, shapes, macs = run_with_hooks(model, x)
    assert not aux_leaves & set(shapes)  # at test time the auxiliary heads are not run
    for name, row in leaves.items():
        assert shapes[name] == shape_of(row.output, batch), (name, shapes[name], str(row.output))
    assert tuple(out.shape) == shape_of(report.rows[-1].output, batch)
    assert macs == report.macs
    return out


# ---------------------------------------------------------------------------------------------------
# Every network of the zoo


@pytest.mark.parametrize("name", list_models())
def test_create_model_agrees_with_analyzer(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    report = analyze(get_spec(name))
    check_against_report(model, report)
    # state-dict keys are the spec's names: one module prefix per layer with parameters
    prefixes = {key.rpartition(".")[0] for key in model.state_dict()}
    assert prefixes == {row.name for row in report.leaves + report.aux_leaves if row.params}
    assert model.spec.name == name and model.input_shape == get_spec(name).input_shape


def test_state_dict_keys_are_layer_names() -> None:
    with torch.device("meta"):
        alexnet, vgg16, vgg16_bn = (create_model(n) for n in ("alexnet", "vgg16", "vgg16-bn"))
    assert list(alexnet.state_dict())[:2] == ["conv1.weight", "conv1.bias"]
    assert list(alexnet.state_dict())[-1] == "fc8.bias"
    assert {"conv3_2.weight", "conv5_3.bias", "fc6.weight"} <= set(vgg16.state_dict())
    assert {"bn3_2.running_mean", "bn3_2.num_batches_tracked"} <= set(vgg16_bn.state_dict())


def test_alexnet_conv1_as_the_lecture_says() -> None:
    """AlexNet conv1 on 227x227x3 gives 55x55x96 and 34,944 parameters (two GPUs: groups on conv2)."""
    model = create_model("alexnet")
    assert sum(p.numel() for p in model.conv1.parameters()) == 34_944
    assert model.conv2.groups == 2 and model.conv2.weight.shape == (256, 48, 5, 5)
    with torch.no_grad():
        assert model.conv1(torch.zeros(1, 3, 227, 227)).shape == (1, 96, 55, 55)
    # LRN holds the paper's alpha; it computes what torch's module does with alpha * size
    assert model.norm1.alpha == pytest.approx(1e-4) and model.norm1.size == 5
    x = torch.randn(2, 96, 13, 13) * 30
    reference = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    torch.testing.assert_close(model.norm1(x), reference(x))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7])
def test_our_lrn_matches_torch_forward_and_backward(size: int) -> None:
    from ilsvrc.nn import LocalResponseNorm

    torch.manual_seed(size)
    x = (torch.randn(3, 9, 5, 6) * 4).requires_grad_()
    ours, theirs = (
        LocalResponseNorm(size, 1e-2, 0.75, 2.0),
        nn.LocalResponseNorm(size, 1e-2 * size, 0.75, 2.0),
    )
    grad = torch.randn(3, 9, 5, 6)
    y1, y2 = ours(x), theirs(x)
    torch.testing.assert_close(y1, y2)
    (g1,) = torch.autograd.grad(y1, x, grad)
    (g2,) = torch.autograd.grad(y2, x, grad)
    torch.testing.assert_close(g1, g2)
    xd = (torch.randn(2, 6, 3, 3, dtype=torch.float64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: LocalResponseNorm(size, 0.1, 0.75, 1.0)(t), (xd,))


@pytest.mark.parametrize(("size", "beta"), [(5, 0.75), (4, 0.6)])
def test_our_lrn_on_many_channels_last_matches_torch_block_by_block(size: int, beta: float) -> None:
    """150 channels, channels-last: the window's product goes in blocks of 32 output channels (the
    last one short), forward, backward and at inference, and a beta other than 0.75 takes the power."""
    from ilsvrc.nn import BLOCKED_FROM, LocalResponseNorm

    assert 150 >= BLOCKED_FROM
    torch.manual_seed(size)
    x = (torch.randn(2, 150, 4, 5) * 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    ours = LocalResponseNorm(size, 1e-2, beta, 2.0)
    theirs = nn.LocalResponseNorm(size, 1e-2 * size, beta, 2.0)
    grad = torch.randn(2, 150, 4, 5)
    y1, y2 = ours(x), theirs(x)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(torch.autograd.grad(y1, x, grad)[0], torch.autograd.grad(y2, x, grad)[0])
    with torch.inference_mode():
        torch.testing.assert_close(ours(x.detach()), y2.detach())


def test_initialisation() -> None:
    torch.manual_seed(0)
    model = create_model("vgg11-bn", num_classes=10)
    w = model.conv1_1.weight
    assert w.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)  # Kaiming, fan_out
    assert model.fc6.weight.std().item() == pytest.approx(0.01, rel=0.01)
    assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, nn.Linear))
    assert bool((model.bn1_1.weight == 1).all()) and bool((model.bn1_1.bias == 0).all())


# ---------------------------------------------------------------------------------------------------
# Other input sizes, classes and arguments


@pytest.mark.parametrize(
    ("name", "fc6_inputs"),
    [("alexnet", 256 * 2 * 2), ("vgg16", 512 * 4 * 4), ("alexnet-torchvision", 9216)],
)
def test_first_fc_follows_the_input_size(name: str, fc6_inputs: int) -> None:
    spec = get_spec(name)
    report = analyze(spec, (3, 128, 128))
    assert report.first_linear().input.channels == fc6_inputs
    model = create_model(name, input_size=128)
    assert model.fc6.in_features == fc6_inputs
    assert model.input_shape == (3, 128, 128)
    check_against_report(model, report, batch=2)


def test_input_size_forms_and_num_classes() -> None:
    with torch.device("meta"):
        a = create_model("alexnet-lecture", num_classes=10, input_size=(3, 259, 259))
        b = create_model(get_spec("alexnet-lecture"), num_classes=10, input_size=(259, 259))
        c = create_model("alexnet-lecture", num_classes=10, input_size=259)
    assert a.input_shape == b.input_shape == c.input_shape == (3, 259, 259)
    assert a.fc8.out_features == 10
    assert a.fc6.in_features == analyze(get_spec("alexnet-lecture"), (3, 259, 259)).first_linear(
    ).input.channels  # fmt: skip


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ShapeError, match="conv"):
        create_model("alexnet", input_size=8)
    with pytest.raises(SpecError, match="never downloads"):
        create_model("alexnet", pretrained=True)
    with pytest.raises(SpecError, match="unknown keyword"):
        create_model("alexnet", drop_rate=0.2)
    with pytest.raises(SpecError, match="input_size"):
        create_model("alexnet", input_size="big")
    with pytest.raises(SpecError, match="already has an attribute"):
        build(Network("n", (1, 8, 8), (Conv("train", 2, 3), Flatten("f"), Linear("fc", 2))))


def test_package_exposes_the_builder() -> None:
    assert ilsvrc.create_model is create_model
    assert ilsvrc.from_torchvision is from_torchvision and ilsvrc.build is build


# ---------------------------------------------------------------------------------------------------
# torchvision, both ways

TV_CASES = ["alexnet-torchvision", "vgg11", "vgg11-bn", "vgg16-bn"]


def randomise_batch_norm(model: nn.Module) -> None:
    """Give every batch norm non-trivial statistics so that loading them is actually tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.num_batches_tracked.fill_(7)


@pytest.mark.parametrize("name", TV_CASES)
def test_from_torchvision_gives_torchvision_outputs(name: str) -> None:
    torch.manual_seed(0)
    tv_name = TORCHVISION_NAMES[name]
    reference = torchvision.models.get_model(tv_name, weights=None).eval()
    randomise_batch_norm(reference)
    ours = from_torchvision(name, reference.state_dict()).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected)
    # and back: torchvision's constructor loads our state dict strictly
    with torch.device("meta"):
        again = torchvision.models.get_model(tv_name, weights=None)
    again.load_state_dict(to_torchvision(name, ours), strict=True, assign=True)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), expected)


def test_round_trip_from_our_model_with_ten_classes() -> None:
    torch.manual_seed(0)
    ours = create_model("alexnet-torchvision", num_classes=10).eval()
    reference = torchvision.models.alexnet(weights=None, num_classes=10)
    reference.load_state_dict(to_torchvision("alexnet-torchvision", ours), strict=True)
    back = from_torchvision("alexnet_torchvision", reference.state_dict()).eval()
    assert back.fc8.out_features == 10
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(reference.eval()(x), ours(x))
        torch.testing.assert_close(back(x), ours(x))


def meta_state_dict(tv_name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return torchvision.models.get_model(tv_name, weights=None).state_dict()


def test_wrong_state_dict_names_both_keys_and_shapes() -> None:
    with pytest.raises(WeightMappingError) as info:
        from_torchvision("vgg11", meta_state_dict("vgg13"))
    message = str(info.value)
    assert "features.2.weight" in message and "(64, 64, 3, 3)" in message
    assert "conv2_1.weight" in message and "(128, 64, 3, 3)" in message
    assert isinstance(info.value, SpecError)
    with pytest.raises(WeightMappingError, match="running_mean"):
        from_torchvision("vgg11-bn", meta_state_dict("vgg11"))


def test_truncated_or_foreign_state_dicts_raise_clear_errors() -> None:
    state = meta_state_dict("alexnet")
    del state["classifier.6.weight"], state["classifier.6.bias"]
    with pytest.raises(WeightMappingError, match="fc8.weight, fc8.bias have no counterpart"):
        from_torchvision("alexnet-torchvision", state)
    with pytest.raises(WeightMappingError, match="No torchvision mapping"):
        from_torchvision("alexnet", meta_state_dict("alexnet"))
    with pytest.raises(WeightMappingError, match="non-empty"):
        from_torchvision("vgg11", {})
    with torch.device("meta"):
        vgg11 = create_model("vgg11")
    with pytest.raises(WeightMappingError, match="not a vgg13"):
        to_torchvision("vgg13", vgg11)


# ---------------------------------------------------------------------------------------------------
# Multiply-adds, as other tools count them


def test_torchinfo_counts_bias_adds_on_top_of_our_macs() -> None:
    torchinfo = pytest.importorskip("torchinfo")
    report = analyze(get_spec("alexnet-torchvision"))
    tv = torchinfo.summary(torchvision.models.alexnet(), (1, 3, 224, 224), verbose=0)
    assert tv.total_mult_adds == 714_682_664 == report.macs + report.bias_adds
    ours = torchinfo.summary(create_model("alexnet-torchvision"), (1, 3, 224, 224), verbose=0)
    assert ours.total_mult_adds == tv.total_mult_adds and ours.total_params == report.params


# ---------------------------------------------------------------------------------------------------
# In-place ReLUs never change a shared input


def tiny_inception_resnet() -> Network:
    """A tiny Inception-like block followed by two ResNet basic blocks (identity, then projection)."""

    def basic(name: str, filters: int, stride: int, shortcut: Block | None) -> Residual:
        body = Block("body", (
            Conv("conv1", filters, 3, stride=stride, padding=1, bias=False), BatchNorm("bn1"),
            ReLU("relu"),
            Conv("conv2", filters, 3, padding=1, bias=False), BatchNorm("bn2"),
        ))  # fmt: skip
        return Residual(name, body, shortcut)

    projection = Block("shortcut", (Conv("conv", 32, 1, stride=2, bias=False), BatchNorm("bn")))
    return Network("tiny", (3, 32, 32), (
        Conv("stem", 16, 3, padding=1), ReLU("relu"),
        Concat("inc", (
            Block("b1", (Conv("conv", 8, 1), ReLU("relu"))),
            Block("b2", (Conv("reduce", 4, 1), ReLU("relu1"), Conv("conv", 8, 3, padding=1),
                         ReLU("relu2"))),
            Block("b3", (MaxPool("pool", 3, 1, padding=1), Conv("proj", 8, 1), ReLU("relu"))),
        )),
        basic("res1", 24, 1, None), ReLU("relu1"),
        basic("res2", 32, 2, projection), ReLU("relu2"),
        AdaptiveAvgPool("avgpool", 1), Flatten("flatten"), Linear("fc", 10),
    ))  # fmt: skip


def test_branched_network_builds_with_spec_names() -> None:
    torch.manual_seed(0)
    net = tiny_inception_resnet()
    model = create_model(net, num_classes=10)
    state = model.state_dict()
    assert state["inc.b1.conv.weight"].shape == (8, 16, 1, 1)
    assert state["inc.b2.conv.weight"].shape == (8, 4, 3, 3)
    assert state["inc.b3.proj.weight"].shape == (8, 16, 1, 1)
    assert state["res1.body.conv1.weight"].shape == (24, 24, 3, 3)
    assert state["res2.body.conv1.weight"].shape == (32, 24, 3, 3)
    assert state["res2.shortcut.conv.weight"].shape == (32, 24, 1, 1)
    assert state["res2.shortcut.bn.running_var"].shape == (32,)
    assert state["fc.weight"].shape == (10, 32)
    report = analyze(net)
    check_against_report(model, report, batch=2)
    assert next(r for r in report.rows if r.name == "res2").output == Volume(32, 16, 16)


def no_inplace(model: nn.Module) -> nn.Module:
    reference = copy.deepcopy(model)
    for m in reference.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return reference


def test_relu_first_in_a_branch_or_body_leaves_the_shared_input_alone() -> None:
    torch.manual_seed(0)
    net = Network("shared", (4, 6, 6), (
        Dropout("drop0"), ReLU("relu0"),
        Concat("cat", (Block("a", (ReLU("relu"), Conv("conv", 2, 1))), Block("b", (Dropout("d"),)))),
        Residual("res", Block("body", (ReLU("relu"), Dropout("drop"), ReLU("relu2")))),
        Flatten("flatten"), ReLU("relu"), Linear("fc", 3),
    ))  # fmt: skip
    model = build(net).eval()
    assert not model.relu0.inplace  # it would change the caller's tensor
    assert not model.cat.a.relu.inplace and not model.res.body.relu.inplace
    assert not model.res.body.relu2.inplace  # the first ReLU's output is saved for backward
    assert model.relu.inplace  # the residual sum is a new tensor
    x = torch.randn(2, 4, 6, 6)
    before = x.clone()
    with torch.no_grad():
        torch.testing.assert_close(model(x), no_inplace(model)(before.clone()))
    torch.testing.assert_close(x, before)


def test_relus_after_computing_layers_stay_in_place() -> None:
    model = build(get_spec("vgg16-bn"), (3, 32, 32))
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(m.inplace for m in relus)


# ---------------------------------------------------------------------------------------------------
# Property-based: random chains and branched nets, analyzer against torch


def run_dynamically(network: Network, batch: int = 2) -> list[tuple[Layer, tuple[int, ...]]]:
    """Apply the network's leaves to a tensor, sizing each from the tensor it gets (no analyzer).

    Returns every leaf with the input shape it received; raises whatever torch raises.
    """
    x = torch.randn(batch, *network.input_shape)
    seen = []
    for layer in network.layers:
        seen.append((layer, tuple(x.shape)))
        with torch.no_grad():
            x = leaf_module(layer, x.shape[1], inplace=False).eval()(x)
    return seen


def sizes(lo: int, hi: int) -> st.SearchStrategy:
    return st.integers(lo, hi) | st.tuples(st.integers(lo, hi), st.integers(lo, hi))


@st.composite
def pools(draw: st.DrawFn, name: str) -> Layer:
    kernel = draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    stride = draw(st.none() | sizes(1, 3))
    cls = draw(st.sampled_from([MaxPool, AvgPool]))
    return cls(name, kernel, stride, padding, ceil_mode=draw(st.booleans()))


@st.composite
def spatial_layer(draw: st.DrawFn, name: str, channels: int) -> Layer:
    kinds = ["conv", "conv", "pool", "lrn", "relu", "batchnorm", "dropout", "adaptive"]
    kind = draw(st.sampled_from(kinds))
    if kind == "conv":
        groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if channels % g == 0]))
        return Conv(
            name,
            groups * draw(st.integers(1, 16 // groups)),
            kernel=draw(sizes(1, 5)),
            stride=draw(sizes(1, 3)),
            padding=draw(sizes(0, 2)),
            groups=groups,
            dilation=draw(sizes(1, 2)),
            bias=draw(st.booleans()),
        )
    if kind == "pool":
        return draw(pools(name))
    if kind == "lrn":
        return LRN(name, size=draw(st.integers(1, 5)), alpha=1e-3, beta=0.75, k=1.0)
    if kind == "adaptive":  # may also enlarge its input (torch repeats values)
        return AdaptiveAvgPool(name, draw(sizes(1, 6)))
    if kind == "batchnorm":
        return BatchNorm(name)
    return ReLU(name) if kind == "relu" else Dropout(name, 0.3)


@st.composite
def chains(draw: st.DrawFn) -> Network:
    channels = draw(st.integers(1, 4))
    shape = (channels, draw(st.integers(8, 48)), draw(st.integers(8, 48)))
    layers: list[Layer] = []
    for i in range(draw(st.integers(0, 8))):
        layer = draw(spatial_layer(f"l{i}", channels))
        channels = layer.out_channels if isinstance(layer, Conv) else channels
        layers.append(layer)
    layers += [Flatten("flatten"), Linear("fc1", draw(st.integers(1, 16)))]
    if draw(st.booleans()):
        layers += [draw(st.sampled_from([ReLU("relu"), Dropout("drop")])), Linear("fc2", 5)]
    return Network("random", shape, tuple(layers))


@settings(max_examples=400, deadline=None)
@given(chains())
def test_random_chains_agree_with_torch(network: Network) -> None:
    try:
        report = analyze(network)
    except ShapeError as error:
        try:
            seen = run_dynamically(network)
        except (RuntimeError, ValueError):
            event("refused by both")
            return
        raise AssertionError(f"the analyzer refused ({error}) but torch ran: {seen}") from None
    event("built and run")
    model = build(network)
    check_against_report(model, report, batch=2)
    with torch.no_grad():
        x = torch.randn(2, *network.input_shape)
        torch.testing.assert_close(model(x.clone()), no_inplace(model)(x))
    model.train()
    model(torch.randn(2, *network.input_shape)).sum().backward()  # in-place ReLUs keep autograd happy


@st.composite
def branched(draw: st.DrawFn) -> Network:
    """A Concat of 2-3 branches of equal spatial size, then a residual block, then a classifier."""
    channels = draw(st.integers(1, 6))
    size = draw(st.integers(6, 24))
    stride = draw(st.integers(1, 2))
    branches = []
    for b in range(draw(st.integers(2, 3))):
        first: list[Layer] = [ReLU("relu0")] if draw(st.booleans()) else []
        k = draw(st.sampled_from([1, 3, 5]))
        if draw(st.booleans()):
            main: Layer = Conv("conv", draw(st.integers(1, 8)), k, stride=stride, padding=k // 2)
        else:
            main = MaxPool("pool", k, stride, padding=k // 2)
        branches.append(Block(f"b{b}", (*first, main, ReLU("relu"))))
    layers: list[Layer] = [Concat("inc", tuple(branches))]
    filters = draw(st.integers(1, 8))
    res_stride = draw(st.integers(1, 2))
    body = Block("body", (
        *([ReLU("pre")] if draw(st.booleans()) else []),
        Conv("conv1", filters, 3, stride=res_stride, padding=1), BatchNorm("bn1"), ReLU("relu"),
        Conv("conv2", filters, 3, padding=1),
    ))  # fmt: skip
    shortcut = Block("shortcut", (Conv("conv", filters, 1, stride=res_stride),))
    identity = res_stride == 1 and draw(st.booleans())
    if identity:  # the identity needs the body's channels: a 1x1 convolution brings them
        layers.append(Conv("match", filters, 1))
    layers.append(Residual("res", body, None if identity else shortcut))
    layers += [ReLU("relu"), Flatten("flatten"), Linear("fc", 4)]
    return Network("branched", (channels, size, size), tuple(layers))


@settings(max_examples=150, deadline=None)
@given(branched())
def test_random_branched_nets_agree_with_torch(network: Network) -> None:
    report = analyze(network)
    model = build(network)
    check_against_report(model, report, batch=2)
    x = torch.randn(2, *network.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(model(x.clone()), no_inplace(model)(x))
    model.train()
    model(x).sum().backward()


# ---------------------------------------------------------------------------------------------------
# Edge cases where the analyzer once disagreed with torch


def test_ceil_mode_pool_larger_than_its_input() -> None:
    net = Network("n", (1, 2, 2), (MaxPool("pool", 3, 2, ceil_mode=True), Flatten("f"),
                                   Linear("fc", 2)))  # fmt: skip
    assert nn.MaxPool2d(3, 2, ceil_mode=True)(torch.zeros(1, 1, 2, 2)).shape == (1, 1, 1, 1)
    report = analyze(net)
    assert report.rows[0].output == Volume(1, 1, 1)


def test_lrn_after_flatten_is_refused() -> None:
    net = Network("n", (2, 4, 4), (Flatten("f"), LRN("norm"), Linear("fc", 2)))
    with pytest.raises(ValueError):
        nn.LocalResponseNorm(5)(torch.zeros(1, 32))
    with pytest.raises(ShapeError):
        analyze(net)


def test_models_run_channels_last_by_default_with_the_same_results() -> None:
    """The default layout (channels-last weights, inputs laid out to match) changes speed, not results."""
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=10, input_size=99).eval()
    assert model.channels_last
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 99, 99)  # an ordinary NCHW tensor
    with torch.no_grad():
        fast = model(x)
        model.set_channels_last(False)
        assert model.conv1.weight.is_contiguous()
        plain = model(x)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    keys = set(create_model("alexnet", num_classes=10, input_size=99).state_dict())
    assert keys == set(model.state_dict())


ONEDNN_CASES = {
    # a 1-wide kernel dilated, strided and padded, on a 1x1 channels-last input: segmentation fault
    "dilated-1x1": "Conv('c', 8, 1, stride=(1, 2), padding=1, dilation=(1, 2))",
    # a 1x1 convolution with unequal strides: heap corruption in its channels-last backward pass
    "strided-1x1": "Conv('c', 4, 1, stride=(2, 1))",
}


@pytest.mark.parametrize("case", sorted(ONEDNN_CASES))
def test_layers_that_crash_onednn_channels_last_are_built_around_it(case: str) -> None:
    """Two oneDNN crashes the random networks found (torch 2.14, channels-last): each network trains
    and runs, in a child process so that a crash fails this test instead of killing the run."""
    shape = "(8, 1, 1)" if case == "dilated-1x1" else "(3, 32, 38)"
    code = f"""
import torch
from ilsvrc.nn import build
from ilsvrc.networks.spec import Conv, Flatten, Linear, Network
net = Network('n', {shape}, ({ONEDNN_CASES[case]}, Flatten('flatten'), Linear('fc', 3)))
for _ in range(50):
    model = build(net)
    x = torch.randn(2, *net.input_shape, requires_grad=True)
    model(x).sum().backward()
print(model.channels_last)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "False"  # both have a 1x1 kernel with unequal strides: kept NCHW


def test_set_channels_last_keeps_a_network_onednn_cannot_train_in_the_default_layout() -> None:
    """Every caller is safe, not only `build`: the training loop's `model.set_channels_last(True)` and
    `evaluate(..., channels_last=True)` leave a 1x1 convolution with unequal strides NCHW."""
    from ilsvrc.training.evaluate import evaluate

    def net(first: Conv) -> Network:  # conv2's 3x3 weights show the layout (a 1x1 kernel's fit both)
        return Network("n", (3, 12, 12), (first, Conv("c2", 4, 3), Flatten("flatten"), Linear("fc", 3)))

    def channels_last(model: nn.Module) -> bool:
        return model.c2.weight.is_contiguous(memory_format=torch.channels_last)

    model = build(net(Conv("c", 4, 1, stride=(2, 1))), channels_last=False)
    assert model.set_channels_last(True) is model
    assert not model.channels_last and not channels_last(model) and model.c2.weight.is_contiguous()
    batches = [(torch.randn(2, 3, 12, 12), torch.tensor([0, 2]))]
    evaluate(model, batches, channels_last=True)
    assert not model.channels_last and not channels_last(model)
    # a safe network does go channels-last, through either door
    model = build(net(Conv("c", 4, 1, stride=2)), channels_last=False)
    evaluate(model, batches, channels_last=True)
    assert model.channels_last and channels_last(model)
    assert build(net(Conv("c", 4, 1, stride=2)), channels_last=False).set_channels_last(True).channels_last


def test_relus_work_in_place_where_the_analyzer_says() -> None:
    """One rule: the module's ReLUs are in place exactly where the analysis's rows say, and that is
    where it is safe (not the network's input, not a branch's shared input, not after another ReLU)."""
    net = Network(
        "n",
        (3, 8, 8),
        (ReLU("r0"), Conv("c1", 4, 3, padding=1), ReLU("r1"), ReLU("r2"), AvgPool("p", 2), ReLU("r3"),
         Concat("inc", (Block("a", (ReLU("r"), Conv("c", 2, 1))), Block("b", (Conv("c", 2, 1), ReLU("r"))))),
         Dropout("d"), ReLU("r4"), Flatten("f"), ReLU("r5"), Linear("fc", 2)),
    )  # fmt: skip
    rows = {r.name: r for r in analyze(net).rows if isinstance(r.layer, ReLU)}
    expected = {"r0": False, "r1": True, "r2": False, "r3": True, "inc.a.r": False, "inc.b.r": True,
                "r4": True, "r5": False}  # fmt: skip
    assert {name: row.in_place for name, row in rows.items()} == expected
    model = build(net)
    assert {name: model.get_submodule(name).inplace for name in rows} == expected
    x = torch.randn(2, 3, 8, 8)
    before = x.clone()
    model.train()(x).sum().backward()  # autograd would refuse a ReLU in place on a saved tensor
    assert torch.equal(x, before)  # the network's input is never changed


# ---------------------------------------------------------------------------------------------------
# Auxiliary heads: logits in training mode only, the volume they read left as it was


def with_aux_heads() -> Network:
    """aux1 reads conv1's output through a convolution (which keeps it for the backward pass), and a
    ReLU comes right after it; aux2 reads a ReLU's output and pools it."""
    return Network("aux", (3, 12, 12), (
        Conv("conv1", 6, 3, padding=1),
        Aux("aux1", (Conv("conv", 4, 1), ReLU("relu"), Flatten("flatten"), Linear("fc", 5)), weight=0.3),
        ReLU("relu1"),
        Conv("conv2", 8, 3, stride=2, padding=1), BatchNorm("bn2"), ReLU("relu2"),
        Aux("aux2", (ReLU("relu"), AdaptiveAvgPool("pool", 2), Flatten("flatten"), Linear("fc", 5)),
            weight=0.5),
        MaxPool("pool", 2), Flatten("flatten"), Linear("fc", 5),
    ))  # fmt: skip


def contract_loss(model: nn.Module, out: ModelOutputs, y: torch.Tensor) -> torch.Tensor:
    """The training loss of the aux contract: main CE plus each head's CE times its weight."""
    ce = nn.functional.cross_entropy
    return ce(out.logits, y) + sum(w * ce(a, y) for w, a in zip(model.aux_weights, out.aux))


def test_aux_heads_give_logits_in_training_mode_only() -> None:
    torch.manual_seed(0)
    model = create_model(with_aux_heads(), num_classes=7)
    assert model.aux_weights == (0.3, 0.5)
    assert model.aux1.fc.out_features == model.aux2.fc.out_features == model.fc.out_features == 7
    calls = []
    for head in (model.aux1, model.aux2):
        head.register_forward_pre_hook(lambda m, args: calls.append(m))
    x = torch.randn(3, 3, 12, 12)
    out = model.train()(x)
    assert isinstance(out, ModelOutputs) and out.logits.shape == (3, 7)
    assert [a.shape for a in out.aux] == [(3, 7), (3, 7)]
    assert calls == [model.aux1, model.aux2]  # in spec order
    with torch.no_grad():
        test_time = model.eval()(x)
    assert isinstance(test_time, torch.Tensor) and test_time.shape == (3, 7)
    assert len(calls) == 2  # at test time the heads are not run
    # the heads' parameters are the module's too, counted apart by the analyzer
    report = analyze(model.spec)
    assert sum(p.numel() for p in model.aux1.parameters()) + sum(
        p.numel() for p in model.aux2.parameters()
    ) == report.aux_params  # fmt: skip


def test_without_aux_heads_the_model_returns_plain_logits_in_training_too() -> None:
    model = create_model("alexnet-torchvision", num_classes=4, input_size=96)
    assert model.aux_weights == ()
    out = model.train()(torch.randn(2, 3, 96, 96))
    assert type(out) is torch.Tensor and out.shape == (2, 4)


def test_the_volume_an_aux_head_reads_is_not_changed_in_place() -> None:
    """The ReLU after aux1 would change conv1's output, which aux1's convolution keeps for its
    backward pass: it works out of place, and the gradients are those of an all-out-of-place build."""
    torch.manual_seed(0)
    model = create_model(with_aux_heads(), num_classes=5)
    assert not model.relu1.inplace and not model.aux2.relu.inplace  # both read a shared volume
    assert model.aux1.relu.inplace  # its convolution's output is fresh
    reference = no_inplace(model)
    x, y = torch.randn(4, 3, 12, 12), torch.tensor([0, 1, 2, 4])
    for m in (model, reference):
        contract_loss(m, m.train()(x), y).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    # the rule matters: in place there, autograd refuses the aux head's backward pass
    broken = copy.deepcopy(model)
    broken.relu1.inplace = True
    with pytest.raises(RuntimeError, match="inplace"):
        contract_loss(broken, broken.train()(x), y).backward()


def test_googlenet_gradients_equal_an_out_of_place_build() -> None:
    torch.manual_seed(0)
    model = create_model("googlenet-torchvision", num_classes=10, input_size=64)
    reference = no_inplace(model)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([3, 7])
    for m in (model, reference):
        torch.manual_seed(1)  # the same dropout masks
        contract_loss(m, m.train()(x), y).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_an_aux_head_layer_cannot_take_the_name_of_its_loss_weight() -> None:
    net = Network("n", (1, 8, 8), (
        Conv("c", 2, 3), Aux("aux", (Flatten("f"), Linear("loss_weight", 2))), Flatten("f"), Linear("fc", 2),
    ))  # fmt: skip
    with pytest.raises(SpecError, match="aux.loss_weight"):
        build(net)
    net = Network("n", (1, 8, 8), (Conv("aux_weights", 2, 3), Flatten("f"), Linear("fc", 2)))
    with pytest.raises(SpecError, match="already has an attribute"):
        build(net)


# ---------------------------------------------------------------------------------------------------
# zero_init_residual: every residual block starts as its shortcut


def test_zero_init_residual_zeroes_the_last_batch_norm_of_each_block() -> None:
    torch.manual_seed(0)
    model = create_model("resnet50", input_size=64, zero_init_residual=True)
    zeroed = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not m.weight.any()}
    blocks = [f"layer{s}.{i}" for s, count in enumerate((3, 4, 6, 3), start=1) for i in range(count)]
    assert zeroed == {f"{b}.add.body.bn3" for b in blocks}
    # so a block with an identity shortcut passes a non-negative input through unchanged
    block = model.layer1.get_submodule("1").eval()
    x = torch.rand(2, 256, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)
    # by default, and in a network without shortcuts, no batch norm starts at zero
    for m in (create_model("resnet50", input_size=64), create_model("plain18", input_size=64,
                                                                     zero_init_residual=True)):  # fmt: skip
        assert all(n.weight.all() for n in m.modules() if isinstance(n, nn.BatchNorm2d))
