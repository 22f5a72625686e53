"""A flat graph of layers made into the spec's nested tree (`nest`).

Importers (a Caffe prototxt, a torch.fx trace) see a network as a DAG: each node names the nodes it
reads. The spec holds a tree: a chain of layers, where a fork that rejoins in a concatenation is a
`Concat` and a fork that rejoins in a sum is a `Residual`. `nest` finds that tree, or says which node
keeps the graph from being one.

How: each join's fork point is its immediate dominator (the last node every path from the input to
the join passes through). The nodes between the two are the join's branches; they must not share a
node and must not feed anything outside the join. A branch from the fork straight to the join is
empty: the identity shortcut of a residual. Side outputs (GoogLeNet's auxiliary classifiers) are the
nodes only they need; each becomes an `Aux` placed after the node its branch leaves from.

Names: a node's name may be dotted (`layer3.4.conv1`, `inception_3a.pool_proj`). With `group=True`
consecutive nodes that share a dotted prefix become a `Block` of that name (`layer3` holding `4`
holding `conv1`), so the tables show one row per module. A prefix that only one node has is not made
a block: the node is named by its dotted name with `_` for the dots. A join takes the name of its
prefix when it is the only thing under it (`inception_3a.output` -> the Concat `inception_3a`).
Branches are named by their own shared prefix (`downsample`, `branch2`) if they have one, else `body`
and `shortcut` (residual) or `b1`, `b2`, ... (concat). Names that collide at one level get `_2`, `_3`.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ...errors import SpecError
from ..spec import Aux, Block, Concat, Layer, Residual

OPS = ("input", "layer", "concat", "add")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


@dataclass(frozen=True)
class Node:
    """One node of the flat graph.

    `name` is unique in the graph, dotted where the importer groups (`layer3.4.conv1`); each dotted
    part is a spec name (letters, digits, underscores, not starting with a digit, or all digits).
    `op` is "input", "layer" (one input, `layer` the spec leaf), "concat" (inputs in channel order)
    or "add" (two inputs). `inputs` are the names of the nodes it reads, in order.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    layer: Layer | None = None


# What nest() builds before names are settled: a leaf, a join of branches, a side classifier.
@dataclass
class _Leaf:
    name: str
    layer: Layer


@dataclass
class _Join:
    name: str
    op: str  # "concat" | "add"
    branches: list[list]


@dataclass
class _Side:
    name: str
    items: list
    weight: float


def nest(
    nodes: Sequence[Node],
    outputs: Sequence[str],
    *,
    aux_weights: Sequence[float] = (),
    group: bool = True,
    where: str = "network",
) -> tuple[Layer, ...]:
    """The spec layers of the graph `nodes` whose main output is `outputs[0]`.

    Each further output is a side classifier: the nodes only it needs become an `Aux` (weight
    `aux_weights[i-1]`, default 0.3) placed after the main-chain node its branch leaves from. A fork
    whose branches meet in a "concat" becomes a Concat, one that meets in an "add" a Residual (the
    longer branch is the body; the other the shortcut, None when it is the identity). Nodes may come in
    any topological order. Raises SpecError (naming the node and `where`) when the graph cannot be
    held by the spec: a cycle, a missing input, a branch that leaves and never rejoins, branches that
    cross, a node no output needs.
    """
    graph = _Graph(nodes, where)
    if not outputs:
        raise SpecError(f"{where}: no output was given; name the node that gives the network's result.")
    for out in outputs:
        graph.node(out, "an output")
    main = graph.ancestors(outputs[0])
    sides: list[tuple[str, str, set[str]]] = []  # (output, node it leaves from, its own nodes)
    for out in outputs[1:]:
        own = graph.ancestors(out) - main
        if not own:
            raise SpecError(
                f"{where}: the side output {out!r} is on the main path to {outputs[0]!r}; a side "
                "classifier is a branch of its own that ends in its own output."
            )
        leaves = {p for n in own for p in graph.nodes[n].inputs if p not in own}
        if len(leaves) != 1:
            raise SpecError(
                f"{where}: the side output {out!r} reads the main path at {len(leaves)} places "
                f"({', '.join(sorted(leaves))}); an auxiliary classifier leaves it at one node."
            )
        sides.append((out, leaves.pop(), own))
    used = set(main).union(*(own for _, _, own in sides))
    unused = [n.name for n in graph.order if n.name not in used]
    if unused:
        raise SpecError(
            f"{where}: {_few(unused)} lead(s) to no output: a branch that leaves the network and never "
            "rejoins it. The spec holds a chain whose forks meet again in a concat or a sum; give such a "
            "branch an output of its own (a side classifier) or leave it out."
        )
    inputs = [n for n in main if graph.nodes[n].op == "input"]
    if len(inputs) != 1:
        raise SpecError(
            f"{where}: the main output {outputs[0]!r} depends on {len(inputs)} input nodes "
            f"({', '.join(sorted(inputs)) or 'none'}); the spec takes exactly one input."
        )
    top = graph.chain(inputs[0], outputs[0], main)
    ends = [_last(item) for item in top]
    for i, (out, attach, own) in enumerate(sides):
        side = graph.chain(attach, out, own | {attach})
        weight = aux_weights[i] if i < len(aux_weights) else 0.3
        aux = _Side(_aux_name(side, i + 1), side, weight)
        if attach == inputs[0]:
            at = 0
        elif attach in ends:
            at = ends.index(attach) + 1
        else:
            raise SpecError(
                f"{where}: the side output {out!r} leaves from {attach!r}, which is inside a concat or "
                "a sum; an auxiliary classifier sits on the main chain, between two of its layers "
                "(GoogLeNet's leave from the outputs of inception_4a and 4d)."
            )
        while at < len(top) and isinstance(top[at], _Side):  # after earlier heads at the same place
            at += 1
        top.insert(at, aux)
        ends.insert(at, None)
    return _build(top, "", group)


class _Graph:
    def __init__(self, nodes: Sequence[Node], where: str) -> None:
        self.where = where
        self.nodes: dict[str, Node] = {}
        for n in nodes:
            if not isinstance(n, Node):
                raise SpecError(f"{where}: {n!r} is not a graph Node.")
            if n.name in self.nodes:
                raise SpecError(f"{where}: two nodes are called {n.name!r}; node names must be unique.")
            self.nodes[n.name] = n
        for n in nodes:
            self._check(n)
        self.order = self._sorted()
        self.rank = {n.name: i for i, n in enumerate(self.order)}
        self.consumers: dict[str, list[str]] = {name: [] for name in self.nodes}
        for n in self.order:
            for p in n.inputs:
                self.consumers[p].append(n.name)
        self.idom = self._dominators()

    def _check(self, n: Node) -> None:
        where = f"{self.where}: node {n.name!r}"
        if n.op not in OPS:
            raise SpecError(f"{where} has op {n.op!r}; ops are {', '.join(OPS)}.")
        for p in n.inputs:
            if p not in self.nodes:
                raise SpecError(f"{where} reads {p!r}, which no node gives; check the input's name.")
        need = {"input": (0, 0), "layer": (1, 1), "concat": (1, None), "add": (2, 2)}[n.op]
        count = len(n.inputs)
        if count < need[0] or (need[1] is not None and count > need[1]):
            what = {"input": "no inputs", "layer": "exactly one input", "concat": "one input or more",
                    "add": "two inputs (a body and a shortcut)"}[n.op]  # fmt: skip
            raise SpecError(f"{where} ({n.op}) has {count} input(s); it takes {what}.")
        if (n.op == "layer") != isinstance(n.layer, Layer):
            raise SpecError(f"{where}: a 'layer' node holds a spec layer, and only it does.")

    def node(self, name: str, what: str) -> Node:
        if name not in self.nodes:
            raise SpecError(f"{self.where}: {what} {name!r} is not a node of the graph.")
        return self.nodes[name]

    def _sorted(self) -> list[Node]:
        """Kahn's order, ties kept in the given order; a cycle is an error naming its nodes."""
        waiting = {name: len(set(n.inputs)) for name, n in self.nodes.items()}
        readers: dict[str, list[str]] = {name: [] for name in self.nodes}
        for n in self.nodes.values():
            for p in dict.fromkeys(n.inputs):
                readers[p].append(n.name)
        ready = [name for name, count in waiting.items() if count == 0]
        order: list[Node] = []
        while ready:
            name = ready.pop(0)
            order.append(self.nodes[name])
            for r in readers[name]:
                waiting[r] -= 1
                if waiting[r] == 0:
                    ready.append(r)
        if len(order) < len(self.nodes):
            stuck = [name for name, count in waiting.items() if count > 0]
            raise SpecError(f"{self.where}: the nodes {_few(stuck)} form a cycle; a network is acyclic.")
        return order

    def _dominators(self) -> dict[str, str | None]:
        """Immediate dominators in a DAG (Cooper, Harvey & Kennedy's intersection, topological order)."""
        idom: dict[str, str | None] = {}
        for n in self.order:
            preds = list(dict.fromkeys(n.inputs))
            if not preds:
                idom[n.name] = None
                continue
            d: str | None = preds[0]
            for p in preds[1:]:
                d = self._meet(d, p, idom)
            idom[n.name] = d
        return idom

    def _meet(self, a: str | None, b: str | None, idom: dict[str, str | None]) -> str | None:
        while a != b and a is not None and b is not None:
            if self.rank[a] > self.rank[b]:
                a = idom[a]
            else:
                b = idom[b]
        return a if a == b else None

    def ancestors(self, name: str) -> set[str]:
        seen, todo = {name}, [name]
        while todo:
            for p in self.nodes[todo.pop()].inputs:
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return seen

    def chain(self, src: str, dst: str, scope: set[str]) -> list:
        """The items from `src` (excluded) to `dst` (included), every node within `scope`."""
        items: list = []
        at = dst
        while at != src:
            node = self.nodes[at]
            if node.op == "input":
                raise SpecError(f"{self.where}: node {dst!r} is reached from input {at!r} without passing "
                                f"{src!r}.")  # fmt: skip
            if node.op == "layer":
                items.append(_Leaf(at, node.layer))
                prev = node.inputs[0]
                if prev != src:
                    self._only_reader(prev, at, scope)
                at = prev
                continue
            fork = self.idom[at]
            if fork is None:
                raise SpecError(
                    f"{self.where}: the {node.op} {at!r} joins paths that start at different inputs; "
                    "the spec takes one input."
                )
            items.append(self._join(node, fork, scope))
            at = fork
        items.reverse()
        return items

    def _only_reader(self, prev: str, reader: str, scope: set[str]) -> None:
        others = [c for c in self.consumers[prev] if c != reader and c in scope]
        if others:
            raise SpecError(
                f"{self.where}: node {prev!r} feeds {reader!r} and also {_few(others)}, and these "
                "paths do not meet again in one concat or sum that they alone lead to; the spec holds "
                "forks that rejoin (Concat, Residual), not branches that cross or leave."
            )

    def _join(self, node: Node, fork: str, scope: set[str]) -> _Join:
        """A concat or sum and its branches back to `fork`, checked to be disjoint and closed."""
        branches: list[set[str]] = []
        for p in node.inputs:
            own: set[str] = set()
            todo = [] if p == fork else [p]
            while todo:
                n = todo.pop()
                if n in own:
                    continue
                own.add(n)
                todo.extend(q for q in self.nodes[n].inputs if q != fork)
            branches.append(own)
        for i, a in enumerate(branches):
            for b in branches[i + 1 :]:
                if a & b:
                    raise SpecError(
                        f"{self.where}: the branches of the {node.op} {node.name!r} share "
                        f"{_few(sorted(a & b, key=self.rank.get))}; each branch from the fork "
                        f"{fork!r} to the join must be its own path."
                    )
            for n in a:
                leaks = [c for c in self.consumers[n] if c in scope and c not in a and c != node.name]
                if leaks:
                    raise SpecError(
                        f"{self.where}: node {n!r}, inside a branch of the {node.op} {node.name!r}, "
                        f"also feeds {_few(leaks)} outside it: a branch that leaves and never rejoins "
                        "there. The spec holds forks whose branches meet in one concat or sum."
                    )
        if node.op == "add" and not any(branches):
            raise SpecError(
                f"{self.where}: the sum {node.name!r} adds {fork!r} to itself; a residual adds a body "
                "of layers to a shortcut."
            )
        parts = [self.chain(fork, p, scope) if p != fork else [] for p in node.inputs]
        return _Join(node.name, node.op, parts)


def _last(item) -> str | None:
    return item.name if isinstance(item, (_Leaf, _Join)) else None


def _few(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _valid(name: str) -> str:
    """`name` as a spec name: dots become underscores (one, where the part after the dot begins with
    one already), a leading digit gets an underscore."""
    if _NAME.fullmatch(name):
        return name
    flat = re.sub(r"[^A-Za-z0-9_]", "_", name.replace("._", "_"))  # pool2._3x3 -> pool2_3x3
    return flat if _NAME.fullmatch(flat) else "_" + flat


def _aux_name(items: list, i: int) -> str:
    """A side classifier's name: the prefix most of its nodes share (`loss1`; torchvision's `aux2`,
    whose functional calls have no prefix), else `aux1`, `aux2`, ... in the order of the outputs."""
    heads = Counter(h for h in (_head(item.name) for item in items) if h is not None)
    return heads.most_common(1)[0][0] if heads else f"aux{i}"


def _head(name: str) -> str | None:
    return name.split(".", 1)[0] if "." in name else None


def _rel(name: str, prefix: str) -> str:
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


def _build(items: list, prefix: str, group: bool) -> tuple[Layer, ...]:
    """Layers from items whose names lie under `prefix`; consecutive shared heads become blocks."""
    out: list[Layer] = []
    i = 0
    while i < len(items):
        item = items[i]
        rel = _rel(item.name, prefix)
        head = _head(rel) if group and not isinstance(item, _Side) else None
        j = i + 1
        if head is not None:
            while j < len(items) and not isinstance(items[j], _Side):
                if _head(_rel(items[j].name, prefix)) != head:
                    break
                j += 1
        if head is not None and j - i > 1:
            out.append(Block(_valid(head), _build(items[i:j], f"{prefix}{head}.", group)))
        elif head is not None and isinstance(item, _Join) and "." not in rel[len(head) + 1 :]:
            out.append(_make(item, head, group))  # inception_3a.output alone -> inception_3a
        else:
            out.append(_make(item, rel, group))
        i = j
    return tuple(_unique(out))


def _make(item, rel: str, group: bool) -> Layer:
    name = _valid(rel)
    if isinstance(item, _Leaf):
        return dataclasses.replace(item.layer, name=name)
    if isinstance(item, _Side):
        inner = f"{item.name}."
        return Aux(name, _build(item.items, inner, group), weight=item.weight)
    inner = _inner(item)
    defaults = ["body", "shortcut"] if item.op == "add" else [f"b{k + 1}" for k in range(len(item.branches))]
    blocks = [_branch(part, inner, default, group) for part, default in zip(item.branches, defaults)]
    if item.op == "concat":
        return Concat(name, tuple(_unique(blocks)))
    body, shortcut = blocks
    if len(item.branches[1]) > len(item.branches[0]):  # the longer path is the body
        body, shortcut = shortcut, body
    if not shortcut.layers:
        shortcut = None
    elif shortcut.name == body.name:
        shortcut = dataclasses.replace(shortcut, name="shortcut" if body.name != "shortcut" else "body")
    return Residual(name, body, shortcut)


def _inner(item: _Join) -> str:
    """The prefix a join's branches are named under: its own name when every branch node is under
    it (torch's `inception3a` holds `inception3a.branch1.conv`), else its parent's (Caffe's
    `inception_3a/output` sits beside `inception_3a/1x1`)."""
    own = f"{item.name}."
    if all(leaf.name.startswith(own) for part in item.branches for leaf in part):
        return own
    return item.name.rsplit(".", 1)[0] + "." if "." in item.name else ""


def _branch(part: list, inner: str, default: str, group: bool) -> Block:
    heads = {_head(_rel(item.name, inner)) for item in part}
    if group and len(heads) == 1 and None not in heads and part:
        head = heads.pop()
        return Block(_valid(head), _build(part, f"{inner}{head}.", group))
    return Block(default, _build(part, inner, group))


def _unique(layers: list[Layer]) -> list[Layer]:
    """Names made unique at one level: a second `x` becomes `x_2`."""
    seen: set[str] = set()
    out = []
    for layer in layers:
        name, k = layer.name, 1
        while name in seen:
            k += 1
            name = f"{layer.name}_{k}"
        seen.add(name)
        out.append(layer if name == layer.name else dataclasses.replace(layer, name=name))
    return out
