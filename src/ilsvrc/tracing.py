"""A torch module in: `from_module(module, input_shape)` makes a `Network` of it, without real compute.

Three steps, top to bottom:

1. **Trace** with `torch.fx.symbolic_trace`'s tracer: every layer of `torch.nn` (and ilsvrc's own
   `LocalResponseNorm`) is one call in the graph; everything else (torchvision's `BasicConv2d`, a
   user's block) is traced through, so its parts and its `torch.cat`, `+` and `F.relu` calls appear.
   The module is traced in training mode, where GoogLeNet and Inception v3 run their auxiliary
   classifiers (they become `Aux` nodes); the modes are put back afterwards.
2. **Shapes** by running the traced graph once on the *meta* device: a tensor there has a shape and no
   data, so nothing is computed and no activation is stored, whatever the network's size. The
   module's own parameters are not touched: `torch.func.functional_call` swaps in meta copies for the
   run (a module built under `torch.device("meta")` runs as it is).
3. **Map** each call to a spec leaf (`_Mapper`): Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
   LocalResponseNorm, ReLU, Tanh, Sigmoid, BatchNorm2d, Dropout, Flatten (also `torch.flatten`,
   `x.view(N, -1)`), Linear; `torch.cat` along the channels is a concat, the sum of two tensors a
   residual add; what
   changes nothing the analysis sees (`nn.Identity`, `.contiguous()`, a product with a constant) is
   dropped and listed in the network's notes. What does not map becomes an `Opaque` layer, with the
   output volume and parameter count the trace saw and its multiply-adds unknown (the analyzer warns,
   naming it). An operation with several inputs that is neither (an attention's matrix products, a
   squeeze-and-excitation's product) makes the smallest module around it that has one input and one
   output one `Opaque` layer: the summary keeps one row per module. Where no module will do (a ViT's
   tokens), the calls between the nearest points every path passes through become one.

The flat graph becomes the spec's nested tree by `networks.importers.graph.nest`, which the Caffe
importer shares: dotted module paths become blocks (`layer3.4`, `inception3a`), a fork joined by a
concat a `Concat`, an add a `Residual`, and outputs after the first `Aux` heads. Where it cannot hold
the joins (DenseNet's), the module around the node it names becomes an opaque layer, until it can.
Why fx and the meta device rather than torch.export or a forward pass with hooks: docs/from-module.md.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import IlsvrcError, SpecError
from .networks.importers.graph import Node, nest
from .networks.spec import (
    LRN,
    AdaptiveAvgPool,
    AvgPool,
    BatchNorm,
    Conv,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool,
    ModelInfo,
    Network,
    Opaque,
    ReLU,
    Sigmoid,
    Tanh,
)
from .nn import LocalResponseNorm

__all__ = ["TraceError", "from_module", "trace_graph"]


class TraceError(SpecError):
    """A torch module that cannot be traced or turned into a spec (the message says why and what to do)."""


# ---------------------------------------------------------------------------------------------------
# 1. Tracing


class _Tracer(fx.Tracer):
    """fx's tracer, with ilsvrc's LocalResponseNorm (whose forward is an autograd.Function) a leaf too."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, LocalResponseNorm) or super().is_leaf_module(m, module_qualified_name)


def _symbolic_trace(module: nn.Module) -> fx.GraphModule:
    modes = {m: m.training for m in module.modules()}
    module.train()  # auxiliary classifiers run in training mode only
    try:
        graph = _Tracer().trace(module)
    except Exception as exc:  # fx raises TraceError, TypeError, NotImplementedError... by the case
        raise TraceError(
            f"{type(module).__name__} cannot be traced by torch.fx: {type(exc).__name__}: "
            f"{_first_line(exc)}. Control flow that depends on the values of tensors (an `if` on a "
            "tensor, a loop over its value) cannot be traced: give ilsvrc the parts of the network "
            "without it, or a version of forward whose branches depend on settings, not on data."
        ) from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    return fx.GraphModule(module, graph)


def _first_line(exc: BaseException) -> str:
    """An exception's message, its first line without a closing full stop (ours follows it)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else "no message"


class _Recorder(fx.Interpreter):
    """Runs the graph and keeps every node's result (meta tensors: shapes, no data)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.values[n] = result
        return result


class _MetaRun(nn.Module):
    """`gm` run by the recorder, so that functional_call can swap its parameters for meta ones."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__()
        self.gm = gm
        self.recorder = _Recorder(gm)

    def forward(self, x: Tensor) -> Any:
        return self.recorder.run(x)


def _meta_values(gm: fx.GraphModule, module: nn.Module, shape: tuple[int, int, int]) -> dict[fx.Node, Any]:
    """Each node's result on a meta batch of two (batch norm refuses one value per channel in training)."""
    run = _MetaRun(gm)
    tensors = [*gm.named_parameters(), *gm.named_buffers()]  # non-persistent buffers too (index tables)
    state = {f"gm.{k}": torch.empty_like(v, device="meta") for k, v in tensors}
    modes = {m: m.training for m in module.modules()}
    module.train()
    try:
        with torch.no_grad():
            torch.func.functional_call(run, state, (torch.empty(2, *shape, device="meta"),), strict=False)
    except IlsvrcError:
        raise
    except Exception as exc:
        raise TraceError(
            f"{type(module).__name__} does not run on a {shape[0]}x{shape[1]}x{shape[2]} input (on the "
            f"meta device, which computes shapes only): {type(exc).__name__}: "
            f"{_first_line(exc)}. Check the input size "
            "(`input_shape`, or `--input`): the network may need another, e.g. 3x299x299 for Inception v3."
        ) from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    return run.recorder.values


# ---------------------------------------------------------------------------------------------------
# 2. One traced operation


def _count(tensors: Sequence[nn.Parameter]) -> int:
    """Values in `tensors`, each tensor counted once."""
    return sum(p.numel() for p in {id(p): p for p in tensors}.values())


@dataclass
class _Op:
    """A traced call that gives a tensor: its dotted name, its module path (outer to inner), the
    tensor-giving calls it reads, and what it maps to."""

    node: fx.Node
    name: str
    path: tuple[str, ...]
    inputs: list[fx.Node]
    op: str = "layer"  # "input", "layer", "concat", "add", "drop" (passes its input on), "unknown"
    layer: Layer | None = None
    tensors: list[nn.Parameter] = field(default_factory=list)  # the parameters it holds
    what: str = ""
    note: str = ""  # why a dropped call may be dropped, for the network's notes
    first: str = ""  # of an opaque layer made of many calls: the name of the first

    @property
    def params(self) -> int:
        return _count(self.tensors)


def _volume(value: Any) -> tuple[int, ...] | None:
    """(C, H, W) of an N x C x H x W tensor, (F,) of N x F; None for other ranks and non-tensors."""
    if not isinstance(value, Tensor):
        return None
    if value.dim() == 4:
        return tuple(int(v) for v in value.shape[1:])
    if value.dim() == 2:
        return (int(value.shape[1]),)
    return None


def _shape_text(value: Any) -> str:
    if isinstance(value, Tensor):
        return str(tuple(value.shape))
    return f"a {type(value).__name__} of tensors"


def _holds_tensors(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and any(isinstance(v, Tensor) for v in value)


def _qualified(cls: type) -> str:
    module = cls.__module__
    if module.startswith("torch.nn.modules"):
        module = "torch.nn"
    return f"{module}.{cls.__qualname__}"


def _function_name(n: fx.Node) -> str:
    if n.op == "call_method":
        return f"Tensor.{n.target}"
    target = n.target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module.startswith("torch.nn.functional"):
        return f"F.{name}"
    return f"torch.{name}" if module.startswith("torch") or not module else f"{module}.{name}"


def _sanitised(part: str) -> str:
    """A module path component as a spec name (letters, digits, _; or a number)."""
    if part.isdigit():
        return part
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in part) or "_"
    return clean if not clean[0].isdigit() else "_" + clean


_RELU = {F.relu, torch.relu, torch.relu_, F.relu_}
_ADD = {operator.add, operator.iadd, torch.add}
_CAT = {torch.cat, torch.concat}
_FLATTEN_FUNCS = {torch.flatten, torch.reshape}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_PASS_METHODS = {"contiguous", "clone", "detach", "float", "to", "type_as"}
_CONSTANT_OPS = {operator.mul, operator.truediv, operator.sub, operator.add, operator.iadd, torch.mul,
                 torch.add, torch.sub, torch.div, operator.imul}  # fmt: skip
_CONSTANT_METHODS = {"mul", "mul_", "div", "div_", "add", "add_", "sub", "sub_"}


# the functional forms read, with their parameters in order and defaults (some are builtins, whose
# signatures inspect cannot read)
_SIGNATURES: dict[Callable, tuple[tuple[str, Any], ...]] = {
    F.max_pool2d: (("input", None), ("kernel_size", None), ("stride", None), ("padding", 0),
                   ("dilation", 1), ("ceil_mode", False), ("return_indices", False)),
    F.avg_pool2d: (("input", None), ("kernel_size", None), ("stride", None), ("padding", 0),
                   ("ceil_mode", False), ("count_include_pad", True), ("divisor_override", None)),
    F.dropout: (("input", None), ("p", 0.5), ("training", True), ("inplace", False)),
    F.batch_norm: (("input", None), ("running_mean", None), ("running_var", None), ("weight", None),
                   ("bias", None), ("training", False), ("momentum", 0.1), ("eps", 1e-5)),
}  # fmt: skip


def _args(fn: Callable, n: fx.Node) -> dict[str, Any]:
    """A functional call's arguments by name (F.max_pool2d(x, 3, 2) -> kernel_size=3, stride=2)."""
    params = _SIGNATURES[fn]
    values = dict(params)
    values.update(zip((name for name, _ in params), n.args))
    values.update(n.kwargs)
    return values


def _pair_or_int(v: Any) -> int | tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else int(v[0])
    return int(v)


# ---------------------------------------------------------------------------------------------------
# 3. Mapping calls to spec leaves


class _Mapper:
    """Turns the traced graph into `_Op`s: spec leaves, joins, dropped calls and unknown ones."""

    def __init__(self, gm: fx.GraphModule, values: dict[fx.Node, Any], module: nn.Module) -> None:
        self.gm = gm
        self.values = values
        self.modules = {**dict(gm.named_modules()), **dict(module.named_modules())}  # the user's classes
        self.used_names: set[str] = set()

    def is_tensor(self, n: Any) -> bool:
        """Whether `n` is a call whose result the graph follows: a tensor, or the tuple of tensors a
        torch.nn module returns (MultiheadAttention's output and weights: its parameters count)."""
        if not isinstance(n, fx.Node) or n.op == "get_attr":
            return False
        value = self.values.get(n)
        return isinstance(value, Tensor) or (n.op == "call_module" and _holds_tensors(value))

    def tensor_inputs(self, n: fx.Node) -> list[fx.Node]:
        """The tensor-giving calls `n` reads, through calls that give tuples of tensors (`chunk`)."""
        found: list[fx.Node] = []

        def visit(a: fx.Node) -> None:
            if self.is_tensor(a):
                found.append(a)
            elif _holds_tensors(self.values.get(a)) and a.op != "get_attr":
                fx.node.map_arg((a.args, a.kwargs), visit)

        fx.node.map_arg((n.args, n.kwargs), visit)
        return list(dict.fromkeys(found))

    def fetched(self, n: fx.Node) -> list[nn.Parameter]:
        """Parameters a call reads from the module directly (`get_attr`: a class token, a scale, the
        weight of a batch norm written as F.batch_norm)."""
        found: list[fx.Node] = []
        fx.node.map_arg((n.args, n.kwargs), lambda a: found.append(a) if a.op == "get_attr" else None)
        out = []
        for a in dict.fromkeys(found):
            try:
                out.append(self.gm.get_parameter(str(a.target)))
            except AttributeError:  # a buffer (running statistics), not a parameter
                pass
        return out

    def path(self, n: fx.Node) -> tuple[str, ...]:
        stack = n.meta.get("nn_module_stack") or {}
        paths = [v[0] if isinstance(v, tuple) else k for k, v in stack.items()]
        if n.op == "call_module" and (not paths or paths[-1] != n.target):
            paths.append(str(n.target))
        return tuple(p for p in paths if p)

    def unique(self, name: str) -> str:
        """`name` made a valid dotted spec name, with _1, _2 ... for a module called again."""
        name = ".".join(_sanitised(p) for p in name.split("."))
        candidate, i = name, 0
        while candidate in self.used_names:
            i += 1
            candidate = f"{name}_{i}"
        self.used_names.add(candidate)
        return candidate

    def op(self, n: fx.Node) -> _Op:
        path = self.path(n)
        inputs = self.tensor_inputs(n)
        if n.op == "placeholder":
            return _Op(n, "input", (), [], op="input")
        if n.op == "call_module":
            name = self.unique(str(n.target))
            op = _Op(n, name, path, inputs)
            self.module_op(op, self.modules[str(n.target)])
        else:
            op = self.function(n, path, inputs)
        shapes = [self.values[i] for i in inputs] + [self.values[n]]
        if op.op != "drop" and any(_volume(v) is None for v in shapes):
            op.op, op.layer = "unknown", None  # tokens, a sequence...: not a volume the spec follows
        return op

    def function(self, n: fx.Node, path: tuple[str, ...], inputs: list[fx.Node]) -> _Op:
        local = _function_name(n).rpartition(".")[2].strip("_") or "op"
        owner = path[-1] if path else ""
        name = self.unique(f"{owner}.{local}" if owner else local)
        op = _Op(n, name, path, inputs, tensors=self.fetched(n), what=_function_name(n))
        self.function_op(op)
        return op

    # -- modules

    def module_op(self, op: _Op, m: nn.Module) -> None:
        op.tensors = list(m.parameters())
        op.what = _qualified(type(m))
        value = self.values[op.node]
        if not isinstance(value, Tensor):  # a tuple: MultiheadAttention's output and weights
            op.op = "unknown"
            return
        x = self.values[op.inputs[0]] if len(op.inputs) == 1 else None
        x = x if isinstance(x, Tensor) else None
        leaf = op.name.rpartition(".")[2]
        layer: Layer | None = None
        if x is None:
            layer = None
        elif isinstance(m, nn.Conv2d) and x.dim() == 4 and m.padding_mode == "zeros":
            padding = m.padding
            if isinstance(padding, str):  # "valid" or "same": the padding it works out to
                padding = (0, 0) if padding == "valid" else tuple(
                    d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation)
                )  # fmt: skip
            layer = Conv(leaf, m.out_channels, tuple(m.kernel_size), tuple(m.stride), tuple(padding),
                         m.groups, tuple(m.dilation), m.bias is not None)  # fmt: skip
        elif isinstance(m, nn.MaxPool2d) and x.dim() == 4 and m.dilation in (1, (1, 1)) \
                and not m.return_indices:  # fmt: skip
            layer = MaxPool(leaf, _pair_or_int(m.kernel_size), _pair_or_int(m.stride or m.kernel_size),
                            _pair_or_int(m.padding), bool(m.ceil_mode))  # fmt: skip
        elif isinstance(m, nn.AvgPool2d) and x.dim() == 4 and m.divisor_override is None:
            layer = AvgPool(leaf, _pair_or_int(m.kernel_size), _pair_or_int(m.stride or m.kernel_size),
                            _pair_or_int(m.padding), bool(m.ceil_mode))  # fmt: skip
        elif isinstance(m, nn.AdaptiveAvgPool2d) and x.dim() == 4:
            layer = AdaptiveAvgPool(leaf, tuple(int(v) for v in value.shape[2:]))
        elif isinstance(m, LocalResponseNorm) and x.dim() == 4:
            layer = LRN(leaf, m.size, m.alpha, m.beta, m.k)
        elif isinstance(m, nn.LocalResponseNorm) and x.dim() == 4:  # torch divides alpha by size
            layer = LRN(leaf, m.size, m.alpha / m.size, m.beta, m.k)
        elif isinstance(m, nn.ReLU):
            layer = ReLU(leaf)
        elif isinstance(m, nn.Tanh):
            layer = Tanh(leaf)
        elif isinstance(m, nn.Sigmoid):
            layer = Sigmoid(leaf)
        elif isinstance(m, nn.BatchNorm2d) and x.dim() == 4 and m.affine:
            layer = BatchNorm(leaf, m.eps, m.momentum)
        elif type(m) is nn.Dropout and m.p < 1:
            layer = Dropout(leaf, m.p)
        elif isinstance(m, nn.Flatten):
            layer = self.flatten_or_pass(op, x, value)
        elif isinstance(m, nn.Linear) and x.dim() == 2:
            layer = Linear(leaf, m.out_features, m.bias is not None)
        elif isinstance(m, nn.Identity):
            op.op = "drop"
        if layer is not None:
            op.layer = layer
        elif op.op != "drop":
            op.op = "unknown"

    # -- functions and methods

    def function_op(self, op: _Op) -> None:
        n, value = op.node, self.values[op.node]
        leaf = op.name.rpartition(".")[2]
        fn, method = (n.target, None) if n.op == "call_function" else (None, n.target)
        x = self.values[op.inputs[0]] if op.inputs else None
        if not all(isinstance(self.values[i], Tensor) for i in op.inputs):
            op.op = "unknown"  # it reads a tuple (MultiheadAttention's output): part of an opaque layer
        elif fn is F.batch_norm:
            op.layer = self.functional_batch_norm(op, x)
            op.op = "layer" if op.layer is not None else "unknown"
        elif op.params:
            op.op = "unknown"
        elif not op.inputs:
            op.op = "unknown"
        elif fn in _RELU or method in ("relu", "relu_"):
            op.layer = ReLU(leaf)
        elif fn in (torch.tanh, F.tanh) or method == "tanh":
            op.layer = Tanh(leaf)
        elif fn in (torch.sigmoid, F.sigmoid) or method == "sigmoid":
            op.layer = Sigmoid(leaf)
        elif fn in _ADD or method in ("add", "add_"):
            if len(op.inputs) == 2 and self.values[op.inputs[0]].shape == self.values[op.inputs[1]].shape:
                op.op = "add"
            elif len(op.inputs) == 1 and value.shape == x.shape:
                op.op = "drop"
                op.note = f"{op.name} ({op.what} of a constant)"
            else:
                op.op = "unknown"
        elif fn in _CAT:
            dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
            if x.dim() == 4 and dim in (1, -3) and value.dim() == 4:
                op.op = "concat"
            else:
                op.op = "unknown"
        elif fn is F.max_pool2d or fn is F.avg_pool2d:
            op.layer = self.functional_pool(op, fn)
            op.op = "layer" if op.layer is not None else "unknown"
        elif fn is F.adaptive_avg_pool2d and x.dim() == 4:
            op.layer = AdaptiveAvgPool(leaf, tuple(int(v) for v in value.shape[2:]))
        elif fn is F.dropout:
            a = _args(F.dropout, n)
            if a["p"] < 1:
                op.layer = Dropout(leaf, float(a["p"]))
            else:
                op.op = "unknown"
        elif fn in _FLATTEN_FUNCS or method in _FLATTEN_METHODS:
            op.layer = self.flatten_or_pass(op, x, value)
            if op.layer is None and op.op != "drop":
                op.op = "unknown"
        elif method in _PASS_METHODS and len(op.inputs) == 1 and value.shape == x.shape:
            op.op = "drop"
        elif (fn in _CONSTANT_OPS or method in _CONSTANT_METHODS) and len(op.inputs) == 1 \
                and value.shape == x.shape:  # fmt: skip
            op.op = "drop"
            op.note = f"{op.name} ({op.what} with a constant)"
        else:
            op.op = "unknown"

    def functional_batch_norm(self, op: _Op, x: Tensor | None) -> Layer | None:
        """F.batch_norm with a scale and a shift per channel (timm's BatchNormAct2d calls it)."""
        a = _args(F.batch_norm, op.node)
        weight, bias = a["weight"], a["bias"]
        if x is None or x.dim() != 4 or not all(isinstance(t, fx.Node) for t in (weight, bias)):
            return None
        if op.params != 2 * x.shape[1]:
            return None
        momentum = a["momentum"]
        return BatchNorm(op.name.rpartition(".")[2], float(a["eps"]),
                         None if momentum is None else float(momentum))  # fmt: skip

    def functional_pool(self, op: _Op, fn: Callable) -> Layer | None:
        a = _args(fn, op.node)
        if a["kernel_size"] is None:
            return None
        leaf = op.name.rpartition(".")[2]
        kernel = _pair_or_int(a["kernel_size"])
        stride = _pair_or_int(a["stride"]) if a.get("stride") else kernel
        padding, ceil = _pair_or_int(a.get("padding", 0)), bool(a.get("ceil_mode", False))
        if fn is F.max_pool2d:
            if _pair_or_int(a.get("dilation", 1)) not in (1, (1, 1)) or a.get("return_indices"):
                return None
            return MaxPool(leaf, kernel, stride, padding, ceil)
        if a.get("divisor_override") is not None:
            return None
        return AvgPool(leaf, kernel, stride, padding, ceil)

    def flatten_or_pass(self, op: _Op, x: Tensor, value: Tensor) -> Layer | None:
        """A reshape that flattens N x C x H x W to N x CHW is a Flatten; one that keeps the shape is
        dropped; any other is unknown (None)."""
        if x.shape == value.shape:
            op.op = "drop"
            return None
        if x.dim() == 4 and value.dim() == 2 and value.shape[0] == x.shape[0]:
            return Flatten(op.name.rpartition(".")[2])
        return None


# ---------------------------------------------------------------------------------------------------
# 4. The graph: preprocessing of the input, opaque modules, the nodes nest() takes


@dataclass
class TracedGraph:
    """What `trace_graph` gives: the flat graph for `nest`, its outputs (the main one first), the
    tree `nest` made of it, and notes on what was dropped or assumed (the network's `info.notes`)."""

    nodes: list[Node]
    outputs: list[str]
    layers: tuple[Layer, ...]  # the nested tree, as `nest` makes it of `nodes`
    notes: list[str] = field(default_factory=list)


def _output_nodes(value_of: dict[fx.Node, Any], out: fx.Node) -> list[fx.Node]:
    """The tensors a module returns, in order: a tensor, or the tensors inside a tuple, list, dict or
    named tuple (GoogLeNet's outputs in training: logits, aux2, aux1), however it was built."""
    found: list[fx.Node] = []

    def visit(a: fx.Node) -> None:
        value = value_of.get(a)
        if isinstance(value, Tensor):
            found.append(a)
        elif a.op in ("call_function", "call_method"):  # a namedtuple or container built in forward
            fx.node.map_arg((a.args, a.kwargs), visit)

    fx.node.map_arg(out.args, visit)
    return list(dict.fromkeys(found))


class _Graph:
    """The traced calls as `_Op`s in graph order, reworked until the spec can hold them: the input's
    preprocessing read as the input, dead calls pruned, unknown calls made opaque, then nested."""

    def __init__(self, gm: fx.GraphModule, values: dict[fx.Node, Any], module: nn.Module) -> None:
        self.mapper = _Mapper(gm, values, module)
        self.values = values
        self.module = module
        self.ops: dict[fx.Node, _Op] = {}
        self.index = {n: i for i, n in enumerate(gm.graph.nodes)}
        for n in gm.graph.nodes:
            if n.op == "placeholder" or (
                n.op in ("call_module", "call_function", "call_method") and self.mapper.is_tensor(n)
            ):
                self.ops[n] = self.mapper.op(n)
        out = next(n for n in gm.graph.nodes if n.op == "output")
        self.outputs = _output_nodes(values, out)
        if not self.outputs:
            raise TraceError(f"{type(module).__name__} returns no tensor; there is nothing to analyse.")
        self.notes: list[str] = []

    def source(self, n: fx.Node) -> fx.Node:
        """The producer a consumer of `n` reads, once dropped calls are passed over."""
        while n in self.ops and self.ops[n].op == "drop":
            n = self.ops[n].inputs[0]
        return n

    def collapse_preprocessing(self) -> None:
        """Calls without parameters that only rework the input into a volume of the input's own shape
        (torchvision's GoogLeNet `transform_input`: each channel rescaled, then concatenated) are
        dropped, their result read as the input itself."""
        placeholder = next(n for n, op in self.ops.items() if op.op == "input")
        shape = self.values[placeholder].shape
        pre: set[fx.Node] = {placeholder}
        for n, op in self.ops.items():  # topological order
            if n is placeholder or op.node.op == "call_module" or op.params:
                continue
            if op.inputs and all(i in pre for i in op.inputs):
                pre.add(n)
        for n in pre - {placeholder}:
            consumers = [u for u in n.users if u in self.ops and u not in pre]
            if consumers and self.values[n].shape == shape:
                op = self.ops[n]
                op.op, op.inputs, op.layer = "drop", [placeholder], None
                for m in pre:
                    self.ops[m].note = ""  # the note below says it
                self.notes.append(
                    f"The input's preprocessing inside the module ({op.name} and the calls before it, "
                    "no parameters, same volume) is left out: the network is analysed from the volume "
                    "it makes."
                )

    def opaque_modules(self) -> None:
        """Unknown calls with several inputs (or none the trace follows) make the smallest module
        around them that has one input and one output one opaque layer; single-input unknown calls
        become opaque layers of their own."""
        for n in list(self.ops):  # first the modules, which may hold single-input ones
            op = self.ops.get(n)  # None once inside an opaque layer; that layer once made
            if op is None or op.op != "unknown" or self.alone(op):
                continue
            if not any(self.collapse(path) for path in reversed(op.path)) and not self.collapse_span(n):
                shapes = ", ".join(_shape_text(self.values[i]) for i in op.inputs)
                raise TraceError(
                    f"{op.name} ({op.what}) takes {len(op.inputs)} tensor(s) ({shapes}) and gives "
                    f"{_shape_text(self.values[n])}; it is not a concatenation or a sum of volumes, and no "
                    "module around it has one input and one output, so no spec can hold it. Wrap the "
                    "part of the network that holds it in a module of its own (it then becomes one "
                    "opaque layer)."
                )
        for n, op in self.ops.items():
            if op.op == "unknown":
                op.op = "layer"
                op.layer = self.opaque(op.name, op.inputs[0], n, op.params, op.what)

    def alone(self, op: _Op) -> bool:
        """Whether an unknown call can be an opaque layer of its own: one input, volumes in and out."""
        if len(op.inputs) != 1:
            return False
        return _volume(self.values[op.inputs[0]]) is not None and _volume(self.values[op.node]) is not None

    def collapse(self, path: str) -> bool:
        """Make every call inside module `path` one opaque layer, if it has one input and one output."""
        inside = [n for n, op in self.ops.items() if path in op.path]
        m = self.mapper.modules.get(path)
        what = _qualified(type(m)) if m is not None else path
        return self.replace(inside, path, what, "the module is one opaque layer")

    def collapse_span(self, n: fx.Node) -> bool:
        """Make the calls between the nearest points before and after `n` that every path passes
        through (giving volumes or flat vectors) one opaque layer: a ViT's tokens, from the patches
        to the head, when no module around them has one input and one output."""
        order = [m for m, op in self.ops.items() if op.op != "drop"]
        pos = {m: i for i, m in enumerate(order)}
        jumped = [0] * (len(order) + 1)  # edges u -> w jump over the calls between u and w
        for m in order:
            for i in self.ops[m].inputs:
                src = self.source(i)
                if src in pos and pos[src] + 1 < pos[m]:
                    jumped[pos[src] + 1] += 1
                    jumped[pos[m]] -= 1
        cuts, depth = [], 0
        for i, m in enumerate(order):
            depth += jumped[i]
            if depth == 0 and _volume(self.values[m]) is not None:
                cuts.append(i)
        before = [i for i in cuts if i < pos[n]]
        after = [i for i in cuts if i >= pos[n]]
        if not before or not after:
            return False
        first, last = order[before[-1]], order[after[0]]
        inside = [m for m in self.ops if self.index[first] < self.index[m] <= self.index[last]]
        start = self.ops[inside[0]].first or self.ops[inside[0]].name
        tops = list(dict.fromkeys(x.split(".")[0] for x in (start, self.ops[last].name)))
        name = tops[0] if len(tops) == 1 else f"{tops[0]}_to_{tops[-1]}"
        what = f"{type(self.module).__name__} from {start} to {self.ops[last].name}"
        return self.replace(inside, name, what, "they are one opaque layer")

    def replace(self, inside: list[fx.Node], path: str, what: str, how: str) -> bool:
        """Put one opaque layer in place of the calls `inside`, if they read one volume (or flat
        vector) from outside and give one; False (nothing changed) if not."""
        members = set(inside)
        external_in = {self.source(i) for n in inside for i in self.ops[n].inputs} - members
        used_outside = [
            n for n in inside if any(u not in members for u in self.readers(n)) or n in self.outputs
        ]
        if len(external_in) != 1 or len(used_outside) != 1:
            return False
        (source,), last = external_in, used_outside[0]
        if _volume(self.values[source]) is None or _volume(self.values[last]) is None:
            return False
        name = self.mapper.unique(path)
        first = self.ops[inside[0]].first or self.ops[inside[0]].name
        unknown = dict.fromkeys(self.ops[n].what for n in inside if self.ops[n].op == "unknown")
        if unknown:
            self.notes.append(
                f"{name} ({what}) holds operations no spec node holds ({', '.join(list(unknown)[:4])}"
                f"{', ...' if len(unknown) > 4 else ''}): {how}."
            )
        else:
            self.notes.append(
                f"{name} ({what}) joins its layers in a way the spec's tree cannot hold (a branch that "
                f"crosses or leaves and never rejoins, as DenseNet's concatenations): {how}."
            )
        tensors = [p for n in inside for p in self.ops[n].tensors]
        for n in inside:
            del self.ops[n]
        op = _Op(last, name, (), [source], tensors=tensors, what=what, first=first)
        op.layer = self.opaque(name, source, last, op.params, what)
        self.ops[last] = op
        self.ops = dict(sorted(self.ops.items(), key=lambda kv: self.index[kv[0]]))
        return True

    def nest(self) -> tuple[Layer, ...]:
        """The spec's tree of the graph (`networks.importers.graph.nest`). Where the graph is not one
        the spec can hold (DenseNet's every-layer-to-every-layer concatenations), the smallest module
        around the node `nest` names, with one input and one output, becomes one opaque layer, and so
        on until it is."""
        while True:
            outputs = [self.ops[self.source(o)].name for o in self.outputs]
            try:
                return nest(self.nodes(), outputs)
            except SpecError as exc:
                names = {op.name: n for n, op in self.ops.items()}
                named = [names[q] for q in re.findall(r"'([^']+)'", str(exc)) if q in names]
                if not any(self.collapse(p) for n in named for p in reversed(self.ops[n].path)):
                    raise TraceError(
                        f"{type(self.module).__name__} does not fit the spec's tree, and no module around "
                        f"the place has one input and one output to stand for it: {exc}"
                    ) from None

    def readers(self, n: fx.Node) -> list[fx.Node]:
        """The calls that read `n`'s tensor, through tuples of tensors (a `chunk`, a `split`)."""
        out: list[fx.Node] = []
        for u in n.users:
            if u in self.ops:
                out.append(u)
            elif _holds_tensors(self.values.get(u)):
                out.extend(self.readers(u))
        return out

    def opaque(self, name: str, source: fx.Node, out: fx.Node, params: int, what: str) -> Layer:
        vin, vout = _volume(self.values[source]), _volume(self.values[out])
        if vin is None or vout is None:
            raise TraceError(
                f"{name} ({what}) works on {_shape_text(self.values[source])} -> "
                f"{_shape_text(self.values[out])}; ilsvrc follows volumes (N x C x H x W) and flat "
                "vectors (N x F) only. Wrap the part that works on other shapes (e.g. tokens) in one "
                "module, which then becomes one opaque layer."
            )
        return Opaque(name.rpartition(".")[2], vin, vout, params, what)

    def nodes(self) -> list[Node]:
        out: list[Node] = []
        live = self.live()
        for n, op in self.ops.items():
            if op.op == "drop" or n not in live:
                continue
            inputs = tuple(self.ops[self.source(i)].name for i in op.inputs)
            if op.op == "input":
                out.append(Node(op.name, "input", ()))
            elif op.op in ("concat", "add"):
                out.append(Node(op.name, op.op, inputs))
            else:
                out.append(Node(op.name, "layer", inputs, op.layer))
        return out

    def prune(self) -> None:
        """Leave out the calls no output depends on (a size computed and not used, a value never
        returned, the steps of a preprocessing read as the input)."""
        live = self.live()
        placeholder = next(n for n, op in self.ops.items() if op.op == "input")
        self.ops = {n: op for n, op in self.ops.items() if n in live or op.op == "drop" or n is placeholder}

    def live(self) -> set[fx.Node]:
        """The calls the outputs depend on (a size computed and not used, a value never returned: not)."""
        seen: set[fx.Node] = set()
        stack = [self.source(o) for o in self.outputs]
        while stack:
            n = stack.pop()
            if n in seen or n not in self.ops:
                continue
            seen.add(n)
            stack.extend(self.source(i) for i in self.ops[n].inputs)
        return seen


def _check_params(graph: _Graph, module: nn.Module) -> list[str]:
    """Notes on parameters the layers do not account for exactly: one never used, one used twice."""
    used: dict[int, int] = {}
    live = graph.live()
    for n, op in graph.ops.items():
        if op.op != "drop" and n in live:
            for p in {id(p): p for p in op.tensors}.values():
                used[id(p)] = used.get(id(p), 0) + 1
    notes = []
    unused = [name for name, p in module.named_parameters() if id(p) not in used]
    if unused:
        notes.append(
            f"Parameters the traced forward pass does not use are left out: {', '.join(unused[:5])}"
            + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
            + "."
        )
    shared = sum(1 for count in used.values() if count > 1)
    if shared:
        notes.append(
            f"{shared} parameter tensor(s) are used by more than one call (a module called twice, "
            "shared weights); each call is a row, so they are counted once per call."
        )
    return notes


def trace_graph(module: nn.Module, input_shape: Sequence[int] = (3, 224, 224)) -> TracedGraph:
    """The flat graph of `module` (nodes in the contract of `networks.importers.graph`), traced by
    torch.fx and sized on the meta device at `input_shape` (channels, height, width)."""
    if not isinstance(module, nn.Module):
        raise TraceError(f"from_module takes a torch.nn.Module, not {type(module).__name__}.")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise TraceError(f"input_shape must be (channels, height, width), e.g. (3, 224, 224); got {shape}.")
    gm = _symbolic_trace(module)
    values = _meta_values(gm, module, shape)  # type: ignore[arg-type]
    graph = _Graph(gm, values, module)
    graph.collapse_preprocessing()
    graph.prune()
    graph.opaque_modules()
    layers = graph.nest()
    nodes = graph.nodes()
    outputs = [graph.ops[graph.source(o)].name for o in graph.outputs]
    notes = list(dict.fromkeys(graph.notes)) + _check_params(graph, module)
    dropped = [op.note for op in graph.ops.values() if op.op == "drop" and op.note]
    if dropped:
        notes.append(
            "Element-wise operations with a constant (no parameters, no multiply-adds counted) are left "
            f"out: {', '.join(dropped[:6])}"
            + (f" and {len(dropped) - 6} more" if len(dropped) > 6 else "")
            + "."
        )
    return TracedGraph(nodes, outputs, layers, notes)


def from_module(
    module: nn.Module,
    input_shape: Sequence[int] = (3, 224, 224),
    name: str | None = None,
    info: ModelInfo | None = None,
) -> Network:
    """The spec of a torch module, traced with torch.fx and sized on the meta device (no real compute,
    no activation memory; the module's weights are neither read nor changed).

    input_shape: (channels, height, width) the module is traced at; an opaque layer (what does not map
    to a spec node) is known at that size only. name: the network's name (default: the module's class
    name). info: its ModelInfo (default: a title naming the class; notes say what was left out or
    assumed). Outputs after the first (GoogLeNet's auxiliary classifiers in training mode) become
    `Aux` heads with loss weight 0.3. Raises TraceError (a SpecError) when the module cannot be traced
    or its graph cannot be held by a spec, with what to do.
    """
    traced = trace_graph(module, input_shape)
    layers = traced.layers
    title = f"{_qualified(type(module))}, traced"
    base = info or ModelInfo(title=title)
    notes = " ".join(filter(None, [base.notes, *traced.notes]))
    c, h, w = (int(v) for v in input_shape)
    return Network(name or type(module).__name__.lower(), (c, h, w), layers,
                   dataclasses.replace(base, notes=notes))  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Model arguments: torchvision:NAME, timm:NAME, path/to/file.py:FUNCTION


def network_from_source(source: str, input_shape: Sequence[int] | None = None) -> Network:
    """The network of a command line's torch model argument, traced at `input_shape` (default: the
    model's own input size, e.g. 224, 299 for Inception v3, the timm model's `input_size`).

    `torchvision:NAME`: `torchvision.models.get_model(NAME, weights=None)`; `timm:NAME`:
    `timm.create_model(NAME, pretrained=False)` (the optional extra `ilsvrc[timm]`); both are built
    on the meta device (no weights are made or read). `path/to/file.py:FUNCTION`: the file is imported
    by its path and FUNCTION() must return a torch module.
    """
    kind, _, rest = source.partition(":")
    if kind == "torchvision":
        module, shape, title = _torchvision(rest)
    elif kind == "timm":
        module, shape, title = _timm(rest)
    else:
        path, _, function = source.rpartition(":")
        module, shape, title = _from_file(path, function), (3, 224, 224), f"{function}() of {path}"
    if input_shape is not None:
        shape = tuple(int(v) for v in input_shape)
    return from_module(module, shape, name=source, info=ModelInfo(title=f"{title}, traced"))


def _torchvision(name: str) -> tuple[nn.Module, tuple[int, int, int], str]:
    import warnings

    import torchvision

    known = torchvision.models.list_models(torchvision.models)
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TraceError(
            f"torchvision has no classification model {name!r}.{hint} Its models: "
            "`python -c 'import torchvision; print(torchvision.models.list_models(torchvision.models))'`."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet's note on its initialisation, not the user's business
        module = _construct(lambda: torchvision.models.get_model(name, weights=None))
    try:  # the crop its published weights were evaluated at: 224, Inception v3 299 (metadata only)
        size = int(torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size[0])
    except Exception:
        size = 224
    size = int(getattr(module, "image_size", size))  # a ViT built without weights is fixed at its own
    return module, (3, size, size), f"torchvision's {name} (random weights)"


def _construct(make: Callable[[], nn.Module]) -> nn.Module:
    """A model built on the meta device (no weights made: VGG16's 138M parameters cost nothing), or
    on the CPU when its constructor reads a tensor's value (RegNet's widths), which meta cannot give."""
    try:
        with torch.device("meta"):
            return make()
    except NotImplementedError:
        return make()


def _timm(name: str) -> tuple[nn.Module, tuple[int, int, int], str]:
    try:
        import timm
    except ImportError:
        raise TraceError(
            f"timm:{name} needs the timm package, which is not installed: pip install 'ilsvrc[timm]' "
            "(or pip install timm)."
        ) from None
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:3]
        hint = f" Models with {name!r} in their name: {', '.join(close)}." if close else ""
        raise TraceError(f"timm has no model {name!r}.{hint} `timm.list_models('*pattern*')` lists them.")
    module = _construct(lambda: timm.create_model(name, pretrained=False))
    c, h, w = (int(v) for v in module.pretrained_cfg.get("input_size", (3, 224, 224)))
    return module, (c, h, w), f"timm's {name} (random weights)"


def _from_file(path: str, function: str) -> nn.Module:
    import importlib.util
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise TraceError(
            f"{file} {'is a folder' if file.is_dir() else 'does not exist'}; give a Python file and the "
            "function in it that returns a torch module, e.g. models/mine.py:build."
        )
    import sys

    name = file.stem if file.stem.isidentifier() and file.stem not in sys.modules else f"_ilsvrc_{id(file)}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise TraceError(f"{file} cannot be imported as Python; give a .py file.")
    code = importlib.util.module_from_spec(spec)
    sys.modules[name] = code  # as `import` would: dataclasses and pickling look their module up there
    try:
        spec.loader.exec_module(code)
    except Exception as exc:
        raise TraceError(f"Importing {file} failed: {type(exc).__name__}: {exc}.") from None
    build = getattr(code, function, None)
    if not callable(build):
        found = [n for n, v in vars(code).items() if callable(v) and not n.startswith("_")]
        raise TraceError(
            f"{file} has no function {function!r}; it defines {', '.join(found[:8]) or 'no functions'}. "
            f"Give {file}:NAME with NAME a function that returns a torch module."
        )
    try:
        module = build()
    except Exception as exc:
        raise TraceError(f"{file}:{function}() failed: {type(exc).__name__}: {exc}.") from None
    if not isinstance(module, nn.Module):
        raise TraceError(
            f"{file}:{function}() returned {type(module).__name__}, not a torch module (nn.Module)."
        )
    return module
