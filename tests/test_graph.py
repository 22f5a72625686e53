"""A flat graph of layers nested back into the spec's tree: chains, concats, residuals, blocks from
dotted names, side classifiers; graphs the spec cannot hold refused with the node named."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ilsvrc import analyze, get_spec, list_models
from ilsvrc.errors import SpecError
from ilsvrc.networks.importers.graph import Node, nest
from ilsvrc.networks.spec import (
    Aux,
    BatchNorm,
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


def flatten(layers: tuple[Layer, ...]) -> tuple[list[Node], list[str], list[float]]:
    """The graph a tracer would see of a spec: dotted names, a node per leaf, a join per Concat and
    Residual, each Aux a side output. Returns nodes, outputs (main first) and the aux weights."""
    nodes = [Node("x", "input", ())]
    sides: list[str] = []
    weights: list[float] = []

    def chain(items: tuple[Layer, ...], prefix: str, at: str) -> str:
        for layer in items:
            name = prefix + layer.name
            if isinstance(layer, Block):
                at = chain(layer.layers, name + ".", at)
            elif isinstance(layer, Aux):
                sides.append(chain(layer.layers, name + ".", at))
                weights.append(layer.weight)
            elif isinstance(layer, Concat):
                ends = [chain(b.layers, f"{name}.{b.name}.", at) for b in layer.branches]
                nodes.append(Node(name, "concat", tuple(ends)))
                at = name
            elif isinstance(layer, Residual):
                body = chain(layer.body.layers, f"{name}.{layer.body.name}.", at)
                short = layer.shortcut
                skip = chain(short.layers, f"{name}.{short.name}.", at) if short else at
                nodes.append(Node(name, "add", (body, skip)))
                at = name
            else:
                nodes.append(Node(name, "layer", (at,), layer))
                at = name
        return at

    main = chain(layers, "", "x")
    return nodes, [main, *sides], weights


def shuffled(nodes: list[Node], seed: int) -> list[Node]:
    """Another topological order of the same graph (nest takes any)."""
    rng = random.Random(seed)
    done: set[str] = set()
    left = list(nodes)
    out = []
    while left:
        ready = [n for n in left if all(p in done for p in n.inputs)]
        pick = rng.choice(ready)
        out.append(pick)
        done.add(pick.name)
        left.remove(pick)
    return out


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_network_comes_back_from_its_flat_graph(name: str) -> None:
    net = get_spec(name)
    nodes, outputs, weights = flatten(net.layers)
    assert nest(shuffled(nodes, seed=len(name)), outputs, aux_weights=weights) == net.layers


def test_a_chain_in_any_order_is_the_chain() -> None:
    layers = (Conv("conv1", 8, 3, padding=1), ReLU("relu1"), MaxPool("pool1", 2), Flatten("flat"),
              Linear("fc", 10))  # fmt: skip
    nodes, outputs, _ = flatten(layers)
    for seed in range(3):
        assert nest(shuffled(nodes, seed), outputs) == layers


def test_concat_branches_keep_their_order_and_an_empty_branch_is_allowed() -> None:
    nodes = [
        Node("x", "input", ()),
        Node("c1", "layer", ("x",), Conv("c", 4, 1)),
        Node("c3", "layer", ("x",), Conv("c", 6, 3, padding=1)),
        Node("cat", "concat", ("c3", "x", "c1")),
    ]
    (cat,) = nest(nodes, ["cat"])
    assert isinstance(cat, Concat)
    assert [[x.name for x in b.layers] for b in cat.branches] == [["c3"], [], ["c1"]]
    report = analyze(Network("n", (3, 8, 8), (cat,)))
    assert {r.name: r for r in report.rows}["cat"].output.channels == 6 + 3 + 4


def test_residual_with_identity_and_with_projection() -> None:
    body = [
        Node("b.conv1", "layer", ("x",), Conv("c", 8, 3, padding=1, bias=False)),
        Node("b.bn1", "layer", ("b.conv1",), BatchNorm("bn")),
    ]
    identity = [Node("x", "input", ()), *body, Node("sum", "add", ("x", "b.bn1"))]
    (res,) = nest(identity, ["sum"])
    assert isinstance(res, Residual) and res.shortcut is None
    assert res.body.name == "b" and [x.name for x in res.body.layers] == ["conv1", "bn1"]
    project = [
        *identity[:-1],
        Node("proj.conv", "layer", ("x",), Conv("c", 8, 1, bias=False)),
        Node("sum", "add", ("proj.conv", "b.bn1")),
    ]
    (res,) = nest(project, ["sum"])
    assert res.body.name == "b" and [x.kind for x in res.body.layers] == ["conv", "batchnorm"]
    assert res.shortcut.name == "proj" and [x.kind for x in res.shortcut.layers] == ["conv"]
    net = Network("n", (3, 8, 8), (res,))
    assert analyze(net).params == 3 * 3 * 3 * 8 + 2 * 8 + 3 * 8


def test_dotted_names_become_nested_blocks() -> None:
    names = ["stage1.0.conv", "stage1.0.relu", "stage1.1.conv", "stage1.1.relu", "head.fc"]
    layers = [Conv("c", 4, 3, padding=1), ReLU("r"), Conv("c", 4, 3, padding=1), ReLU("r")]
    nodes, prev = [Node("x", "input", ())], "x"
    for name, layer in zip(names, [*layers, Linear("l", 2)]):
        nodes.append(Node(name, "layer", (prev,), layer))
        prev = name
    stage, fc = nest(nodes, [prev])
    assert stage.name == "stage1" and [b.name for b in stage.layers] == ["0", "1"]
    assert [x.name for x in stage.layers[1].layers] == ["conv", "relu"]
    assert fc.name == "head_fc" and isinstance(fc, Linear)  # a prefix of one node is not a block
    flat = nest(nodes, [prev], group=False)
    assert [x.name for x in flat] == [n.replace(".", "_") for n in names]


def test_a_side_output_becomes_an_aux_after_the_node_it_leaves_from() -> None:
    nodes = [
        Node("x", "input", ()),
        Node("conv1", "layer", ("x",), Conv("c", 8, 3)),
        Node("conv2", "layer", ("conv1",), Conv("c", 8, 3)),
        Node("flat", "layer", ("conv2",), Flatten("f")),
        Node("fc", "layer", ("flat",), Linear("l", 10)),
        Node("side.flat", "layer", ("conv1",), Flatten("f")),
        Node("side.fc", "layer", ("side.flat",), Linear("l", 10)),
    ]
    layers = nest(nodes, ["fc", "side.fc"], aux_weights=[0.25])
    assert [x.name for x in layers] == ["conv1", "side", "conv2", "flat", "fc"]
    aux = layers[1]
    assert isinstance(aux, Aux) and aux.weight == 0.25 and [x.name for x in aux.layers] == ["flat", "fc"]
    report = analyze(Network("n", (3, 8, 8), layers))
    assert report.aux_params == 8 * 6 * 6 * 10 + 10


def test_side_outputs_in_any_order_are_named_by_their_modules() -> None:
    """torchvision's GoogLeNet returns (logits, aux2, aux1), and its aux heads call functions (no
    module prefix) beside modules (aux1.fc)."""
    nodes = [Node("x", "input", ()), Node("a", "layer", ("x",), Conv("c", 4, 3)),
             Node("b", "layer", ("a",), Conv("c", 4, 3)), Node("flat", "layer", ("b",), Flatten("f")),
             Node("fc", "layer", ("flat",), Linear("l", 10))]  # fmt: skip
    for attach, aux in (("a", "aux1"), ("b", "aux2")):
        nodes += [Node(f"flatten_{aux}", "layer", (attach,), Flatten("f")),
                  Node(f"{aux}.fc", "layer", (f"flatten_{aux}",), Linear("l", 10))]  # fmt: skip
    layers = nest(nodes, ["fc", "aux2.fc", "aux1.fc"])
    assert [x.name for x in layers] == ["a", "aux1", "b", "aux2", "flat", "fc"]
    assert [x.name for x in layers[1].layers] == ["flatten_aux1", "fc"]


def test_a_branch_that_never_rejoins_is_refused_by_name() -> None:
    nodes = [
        Node("x", "input", ()),
        Node("a", "layer", ("x",), ReLU("r")),
        Node("lost", "layer", ("x",), ReLU("r")),
    ]
    with pytest.raises(SpecError, match="'lost'.*never rejoins"):
        nest(nodes, ["a"])


def test_crossing_branches_are_not_series_parallel() -> None:
    nodes = [
        Node("x", "input", ()),
        Node("a", "layer", ("x",), ReLU("r")),
        Node("b", "layer", ("x",), ReLU("r")),
        Node("c", "add", ("a", "b")),
        Node("d", "add", ("b", "c")),
    ]
    with pytest.raises(SpecError, match="'d'.*'b'") as err:
        nest(nodes, ["d"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "nodes, outputs, message",
    [
        ([Node("x", "input", ()), Node("a", "layer", ("y",), ReLU("r"))], ["a"], "'y'"),
        (
            [
                Node("x", "input", ()),
                Node("a", "layer", ("x",), ReLU("r")),
                Node("a", "layer", ("x",), ReLU("r")),
            ],
            ["a"],
            "unique",
        ),  # fmt: skip
        ([Node("a", "layer", ("b",), ReLU("r")), Node("b", "layer", ("a",), ReLU("r"))], ["a"], "cycle"),
        ([Node("x", "input", ()), Node("s", "add", ("x",))], ["s"], "two inputs"),
        ([Node("x", "input", ()), Node("a", "layer", ("x",), ReLU("r"))], ["nope"], "'nope'"),
        ([Node("x", "input", ()), Node("y", "input", ()), Node("s", "concat", ("x", "y"))], ["s"], "input"),
    ],
)
def test_malformed_graphs_are_named(nodes: list[Node], outputs: list[str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        nest(nodes, outputs)


@st.composite
def trees(draw, depth: int = 0) -> tuple[Layer, ...]:
    """Random chains of convolutions, ReLUs, concats and residuals (distinct names at each level)."""
    n = draw(st.integers(1, 3))
    out: list[Layer] = []
    for i in range(n):
        kind = draw(st.sampled_from(["conv", "relu", "concat", "residual"] if depth < 2 else ["conv"]))
        if kind == "conv":
            out.append(Conv(f"conv{i}", draw(st.integers(1, 4)), 1))
        elif kind == "relu":
            out.append(ReLU(f"relu{i}"))
        elif kind == "concat":
            k = draw(st.integers(2, 3))
            out.append(Concat(f"cat{i}", tuple(Block(f"b{j + 1}", draw(trees(depth + 1))) for j in range(k))))
        else:
            body = Block("body", draw(trees(depth + 1)))
            short = draw(st.sampled_from([None, Block("shortcut", (Conv("conv", 1, 1),))]))
            if short is not None and len(short.layers) > len(body.layers):
                continue
            out.append(Residual(f"res{i}", body, short))
    return tuple(out) or (Conv("conv", 1, 1),)


@settings(max_examples=60, deadline=None)
@given(trees(), st.integers(0, 10**6))
def test_random_branched_trees_come_back(layers: tuple[Layer, ...], seed: int) -> None:
    nodes, outputs, _ = flatten(layers)
    assert nest(shuffled(nodes, seed), outputs) == layers
