"""Max and average pooling: two node types that share their geometry (`Pool`), neither a kind of the
other, each treated as itself by the analyzer, the torch builder, the diagram and spec files."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ilsvrc import analyze
from ilsvrc.errors import SpecError
from ilsvrc.networks.spec import (
    NODE_TYPES,
    AvgPool,
    Conv,
    Flatten,
    Linear,
    MaxPool,
    Network,
    Pool,
    ReLU,
)
from ilsvrc.networks.specfile import dumps, loads
from ilsvrc.nn import build
from ilsvrc.pictures.draw import Box, build_nodes, op_label


def pooled(cls: type[Pool], **geometry) -> Network:
    """conv (2 groups) -> pool -> ReLU -> conv (2 groups) -> fc: the pool between two grouped convs."""
    pool = cls("pool", **{"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, **geometry})
    return Network(
        "n",
        (3, 20, 17),
        (Conv("conv1", 8, 3, groups=1), Conv("conv2", 8, 3, groups=2), pool, ReLU("relu"),
         Conv("conv3", 4, 1, groups=2), Flatten("flatten"), Linear("fc", 5)),
    )  # fmt: skip


def test_average_pooling_is_not_a_kind_of_max_pooling() -> None:
    avg, mx = AvgPool("a", 3, 2), MaxPool("m", 3, 2)
    assert not isinstance(avg, MaxPool) and not isinstance(mx, AvgPool)
    assert isinstance(avg, Pool) and isinstance(mx, Pool)
    assert (avg.op, mx.op) == ("avg", "max")
    # the shared geometry and its checks hold for both
    assert avg.kernel == mx.kernel == (3, 3) and avg.stride == mx.stride == (2, 2)
    with pytest.raises(SpecError, match="more than half the kernel"):
        AvgPool("a", 2, padding=2)
    with pytest.raises(TypeError, match="make one of those"):
        Pool("p", 2)
    assert "pool" not in NODE_TYPES and NODE_TYPES["avgpool"] is AvgPool


def test_the_analyzer_gives_both_poolings_the_same_geometry_and_each_its_own_memory() -> None:
    rows = {cls: {r.name: r for r in analyze(pooled(cls)).rows} for cls in (MaxPool, AvgPool)}
    mx, avg = rows[MaxPool]["pool"], rows[AvgPool]["pool"]
    assert (avg.input, avg.output) == (mx.input, mx.output)
    assert avg.receptive_field == mx.receptive_field
    assert avg.formulas == mx.formulas and avg.hyper == mx.hyper == "3x3/2 p1 ceil"
    # ceil_mode rounds up for both, as torch does
    x = torch.zeros(1, avg.input.channels, avg.input.height, avg.input.width)
    torch_out = torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True)(x).shape[2:]
    assert (avg.output.height, avg.output.width) == tuple(torch_out)
    # both keep their input for backward; only max pooling keeps int64 indices of its maxima
    assert mx.saved_fixed_bytes == 8 * mx.output.elements
    assert avg.saved_fixed_bytes == 0
    # a ReLU after either pooling works in place on the fresh tensor it gives
    assert rows[MaxPool]["relu"].in_place and rows[AvgPool]["relu"].in_place


def test_a_non_integer_average_pooling_gets_the_same_fix_as_max_pooling() -> None:
    """The padding the analyzer proposes stays within what PyTorch allows (half the kernel)."""
    for cls in (MaxPool, AvgPool):
        net = Network("n", (1, 9, 9), (cls("pool", 1, 3),))  # (9 - 1)/3 + 1 = 3.67
        notes = [f.message for f in analyze(net).findings if f.message.startswith("To make it exact")]
        assert notes and "no padding of pool that PyTorch allows" in notes[0], (cls, notes)


def test_the_builder_makes_each_pooling_its_own_module() -> None:
    for cls, module in ((MaxPool, torch.nn.MaxPool2d), (AvgPool, torch.nn.AvgPool2d)):
        model = build(pooled(cls))
        assert type(model.pool) is module
        assert (model.pool.kernel_size, model.pool.stride, model.pool.padding) == ((3, 3), (2, 2), (1, 1))
        assert model.pool.ceil_mode and model.relu.inplace
    # an average is an average: a constant map pools to the same constant, padding counted as zeros
    model = build(pooled(AvgPool))
    x = torch.ones(1, 8, 4, 4)
    assert torch.allclose(model.pool(x)[0, 0, 1, 1], torch.tensor(1.0))
    assert torch.allclose(model.pool(x)[0, 0, 0, 0], torch.tensor(4 / 9))


def test_the_diagram_draws_average_pooling_as_pooling() -> None:
    assert op_label(AvgPool("a", 3, 2, padding=1)) == "avg 3x3/2 p1"
    assert op_label(MaxPool("m", 3, 2, ceil_mode=True)) == "max 3x3/2 ceil"
    for cls in (MaxPool, AvgPool):
        nodes = build_nodes(analyze(pooled(cls)))
        pool = next(n for n in nodes if n.layer is not None and n.layer.name == "pool")
        assert isinstance(pool, Box) and pool.arrow.startswith(cls.op)
        assert pool.parts == 2  # pooling keeps the two groups of conv2 apart, for conv3


def test_spec_files_keep_average_pooling() -> None:
    net = pooled(AvgPool, padding=0, ceil_mode=False)
    for fmt in ("yaml", "json"):
        back = loads(dumps(net, fmt))
        pool = next(layer for layer in back.layers if layer.name == "pool")
        assert type(pool) is AvgPool
        assert dataclasses.asdict(pool) == dataclasses.asdict(net.layers[2])
    text = "name: n\ninput: [1, 8, 8]\nlayers:\n  - {type: avgpool, kernel: 2, ceil_mode: true}\n"
    assert type(loads(text).layers[0]) is AvgPool
    with pytest.raises(SpecError, match="unknown layer type 'pool'"):
        loads(text.replace("avgpool", "pool"))
