"""Analysis of a network spec without running it: pure Python arithmetic, no torch.

For every layer: the volume it receives and gives (W2 = (W1 - F + 2P)/S + 1 on each axis, D2 = filters),
its parameters (weights and biases apart), multiply-adds, activation memory and receptive field, with
the formula behind each number. Suspicious layers (an output size that is not a whole number) become
`Finding`s; impossible ones raise `ShapeError` naming the layer, the formula and a fix.

Conventions, stated once and printed beside every table:
- A multiply-add (MAC) is one multiplication and one addition. FLOPs = 2 x MACs.
- `macs` counts the weights of convolutions and fully connected layers only; bias additions are
  counted apart (`bias_adds`: torchinfo adds them in, fvcore leaves them out). Pooling, ReLU, LRN,
  batch norm and residual additions are not multiply-adds and are not counted.
- Parameters include biases (`weights + biases`); the lecture's view is `weights`.
- "Layers" are counted as the lecture and the papers count them: layers with weights, that is
  convolutions and fully connected layers (batch norm's scale and shift are not counted as layers).
- Volumes print as W x H x D, the lecture's order; JSON names the axes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from ..errors import ShapeError, SpecError, shown
from ..networks.spec import (
    LRN,
    MAX_SIZE,
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
    Opaque,
    Pool,
    ReLU,
    Residual,
    Sigmoid,
    Tanh,
    is_whole,
    walk,
)

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}

CONVENTIONS = (
    "MACs: one multiply-add = 1 (FLOPs = 2 x MACs), conv and FC weights only, bias adds apart; "
    "params include biases (weights-only = the lecture's view); layers = conv + FC (with weights); "
    "volumes W x H x D."
)


@dataclass(frozen=True)
class Volume:
    """A C x H x W volume, or a flat vector of `channels` values (`flat`)."""

    channels: int
    height: int
    width: int
    flat: bool = False

    @property
    def elements(self) -> int:
        return self.channels * self.height * self.width

    def __str__(self) -> str:
        if self.flat:
            return f"{self.channels}"
        return f"{self.width}x{self.height}x{self.channels}"

    def to_dict(self) -> dict:
        return {"channels": self.channels, "height": self.height, "width": self.width,
                "flat": self.flat}  # fmt: skip


# One family of intervals along an axis: unit i of a layer reaches input pixels lo + i*jump .. hi + i*jump.
_Part = tuple[float, float, float]  # (lo, hi, jump)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of the units of one layer, per axis (height, width), in input pixels.

    size: the largest number of input pixels (first to last) that reaches one unit; jump: the distance
    in input pixels between the fields of neighbouring units; start: the centre of the first unit's
    field (pixel index; negative means it is centred in the padding).

    Where branches with different strides meet (a concatenation or a residual sum whose parts give the
    same size by other routes), the fields of neighbouring units are not shifted copies of one
    another: `parts` then keeps, per axis, one family of intervals per stride, `span` gives each
    unit's exact field, size is the largest over the units and jump the largest of the strides. In a
    chain, and wherever the branches' strides agree (GoogLeNet, ResNet), there is one family and
    unit i's field is start + i*jump +- (size - 1)/2.
    """

    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]
    parts: tuple[tuple[_Part, ...], tuple[_Part, ...]] | None = None

    def families(self, axis: int) -> tuple[_Part, ...]:
        """The interval families along `axis`: one (lo, hi, jump) unless strides differ (see above)."""
        if self.parts is not None:
            return self.parts[axis]
        half = (self.size[axis] - 1) / 2
        return ((self.start[axis] - half, self.start[axis] + half, self.jump[axis]),)

    def span(self, axis: int, unit: int) -> tuple[float, float]:
        """First and last input pixel (0: height, 1: width) that reach unit `unit` along `axis`,
        unclipped (a field may reach into the padding)."""
        fams = self.families(axis)
        return min(lo + unit * j for lo, _, j in fams), max(hi + unit * j for _, hi, j in fams)

    @staticmethod
    def of(parts: tuple[tuple[_Part, ...], tuple[_Part, ...]], units: tuple[int, int]) -> ReceptiveField:
        """The field of a layer with `units` (height, width) positions from its interval families."""
        merged: list[tuple[_Part, ...]] = []
        size, jump, start = [], [], []
        for axis, fams in enumerate(parts):
            last = max(units[axis], 1) - 1
            if len(fams) == 1:  # a chain, or joined branches whose fields were merged: one family
                lo0, hi0, j = fams[0]
                lo1, hi1 = lo0 + last * j, hi0 + last * j
            else:
                by_jump: dict[float, tuple[float, float]] = {}
                for lo, hi, j in fams:
                    a, b = by_jump.get(j, (lo, hi))
                    by_jump[j] = (min(a, lo), max(b, hi))
                fams = tuple((lo, hi, j) for j, (lo, hi) in sorted(by_jump.items()))
                lo0, hi0 = min(f[0] for f in fams), max(f[1] for f in fams)
                lo1 = min(lo + last * j for lo, _, j in fams)
                hi1 = max(hi + last * j for _, hi, j in fams)
                j = max(f[2] for f in fams)
            merged.append(fams)
            size.append(max(hi0 - lo0, hi1 - lo1) + 1)  # the extent is convex in the unit: ends
            start.append((lo0 + hi0) / 2)
            jump.append(j)
        single = all(len(f) == 1 for f in merged)
        return ReceptiveField(tuple(size), tuple(jump), tuple(start), None if single else tuple(merged))

    def __str__(self) -> str:
        return _hw(self.size)


@dataclass(frozen=True)
class Finding:
    """Something suspicious but computable (severity 'warning') or worth knowing ('note')."""

    severity: str
    layer: str
    message: str


@dataclass
class LayerStats:
    """Everything the analyzer knows about one layer (containers carry their children's sums)."""

    name: str
    kind: str
    depth: int
    layer: Layer
    input: Volume
    output: Volume
    weights: int = 0
    biases: int = 0
    macs: int = 0
    bias_adds: int = 0
    # What autograd keeps for the backward pass and this layer made (each tensor counted once, by its
    # maker; see `_Autograd`): values in the activation dtype per image, bytes per image whatever the
    # dtype (max pooling's int64 indices), and values per batch (batch norm's mean and inverse std).
    saved_values: int = 0
    saved_fixed_bytes: int = 0
    saved_batch_values: int = 0
    receptive_field: ReceptiveField | None = None
    # A ReLU that works in place: the tensor it receives is fresh, held by nothing else (not the
    # network's input, not a join's shared input, not another ReLU's saved output). `ilsvrc.nn.build`
    # builds its ReLUs by this, so the memory model and the module agree by construction.
    in_place: bool = False
    formulas: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    container: bool = False
    aux: bool = False  # inside an auxiliary classifier: run in training only, counted apart
    # False for a layer whose multiply-adds are unknown (an `Opaque` one, or a container holding one):
    # `macs` then counts only what is known, a lower bound
    macs_known: bool = True

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def hyper(self) -> str:
        return describe(self.layer)

    def saved_bytes(self, dtype: str = "float32", batch: int = 1) -> int:
        """Bytes autograd keeps for the backward pass that this layer made, at `dtype` and `batch`."""
        item = DTYPE_BYTES[dtype]
        return batch * (self.saved_values * item + self.saved_fixed_bytes) + self.saved_batch_values * item


@dataclass
class Report:
    """The analysis of one network at one input size, batch and dtype."""

    network: Network
    input: Volume
    batch: int
    dtype: str
    rows: list[LayerStats]
    findings: list[Finding]
    channels_last: bool = True  # the module's layout (`channels_last_layout`)
    input_saved: bool = False  # autograd keeps the input batch itself (a first conv, fc or batch norm)

    # `rows` is complete when the report is made (`analyze`), so the leaves are listed once: the totals
    # below each go through them (a summary of ResNet-152 asks for them about 30 times)

    @cached_property
    def leaves(self) -> list[LayerStats]:
        """The layers of the network as it runs at test time (auxiliary classifiers left out)."""
        return [r for r in self.rows if not r.container and not r.aux]

    @cached_property
    def aux_leaves(self) -> list[LayerStats]:
        """The layers of the auxiliary classifiers (GoogLeNet's), run in training only."""
        return [r for r in self.rows if not r.container and r.aux]

    @cached_property
    def unknown_macs(self) -> list[LayerStats]:
        """The layers (auxiliary classifiers' too) whose multiply-adds are unknown (`Opaque`): while
        there are any, every MAC total is a lower bound."""
        return [r for r in self.rows if not r.container and not r.macs_known]

    @property
    def macs_exact(self) -> bool:
        """Whether the MAC totals are exact (no layer with unknown multiply-adds)."""
        return not self.unknown_macs

    @property
    def aux_params(self) -> int:
        return sum(r.params for r in self.aux_leaves)

    @property
    def aux_macs(self) -> int:
        return sum(r.macs for r in self.aux_leaves)

    @property
    def params_with_aux(self) -> int:
        """Parameters with the auxiliary classifiers: what training holds (GoogLeNet 13,378,280)."""
        return self.params + self.aux_params

    @property
    def macs_with_aux(self) -> int:
        """Multiply-adds per image of a training forward pass, auxiliary classifiers included."""
        return self.macs + self.aux_macs

    @property
    def depth(self) -> int:
        """Depth as the lecture counts it: layers with weights (conv and FC) along the longest path
        from input to output (GoogLeNet 22, ResNet-152 152); auxiliary classifiers left out.
        `weight_layers` counts every such layer, on any path."""
        return longest_path(self.network.layers)

    def modules(self) -> list[tuple[LayerStats, bool]]:
        """The rows of the summary's collapsed view, each with whether it stands for what is inside it.

        Layers at the top level are shown as they are. A module (an Inception concat, a residual, an
        auxiliary classifier, or a block holding at most one of these: ResNet's `layer3.4`) is one row
        with its totals. A block of modules (ResNet's stage `layer3`) is a row with its totals and then
        its modules. `--expand` shows every row instead.
        """
        out: list[tuple[LayerStats, bool]] = []
        skip_below: str | None = None
        for row in self.rows:
            if skip_below is not None and row.name.startswith(skip_below):
                continue
            skip_below = None
            if row.container and is_module(row.layer):
                out.append((row, True))
                skip_below = row.name + "."
            else:
                out.append((row, False))
        return out

    def groups(self) -> list[LayerStats]:
        """The network's top level as the charts group it: the top-level rows that hold layers with
        weights (conv, FC). A layer stands for itself; a module (`inception3a`) or a stage (`layer3`)
        comes with its totals, its batch norm included; an auxiliary classifier (`row.aux`, run in
        training only) too, in its place. Rows without weights (pooling, a top-level batch norm) are
        left out.
        """
        tops = {
            r.name.split(".", 1)[0]
            for r in self.rows
            if not r.container and isinstance(r.layer, (Conv, Linear))
        }
        return [r for r in self.rows if r.depth == 0 and r.name in tops]

    def _sum(self, attr: str, kinds: Iterable[type] | None = None) -> int:
        kinds = tuple(kinds) if kinds else None
        return sum(getattr(r, attr) for r in self.leaves if kinds is None or isinstance(r.layer, kinds))

    @property
    def params(self) -> int:
        return self._sum("weights") + self._sum("biases")

    @property
    def weights(self) -> int:
        return self._sum("weights")

    @property
    def biases(self) -> int:
        return self._sum("biases")

    @property
    def macs(self) -> int:
        return self._sum("macs")

    @property
    def bias_adds(self) -> int:
        return self._sum("bias_adds")

    @property
    def macs_with_bias_adds(self) -> int:
        """Multiply-adds with the bias additions counted in (torchinfo's count)."""
        return self.macs + self.bias_adds

    @property
    def flops(self) -> int:
        """Floating-point operations per image: 2 x MACs (bias additions not counted)."""
        return 2 * self.macs

    def with_weights(self) -> list[LayerStats]:
        """The layers the lecture counts, in order: convolutions and fully connected layers."""
        return [r for r in self.leaves if isinstance(r.layer, (Conv, Linear))]

    @property
    def conv_layers(self) -> int:
        return sum(1 for r in self.leaves if isinstance(r.layer, Conv))

    @property
    def fc_layers(self) -> int:
        return sum(1 for r in self.leaves if isinstance(r.layer, Linear))

    @property
    def weight_layers(self) -> int:
        """Layers counted the lecture's way: convolutions and fully connected layers."""
        return len(self.with_weights())

    @property
    def output(self) -> Volume:
        """What the network gives: the output of its last top-level layer (a flat vector of classes)."""
        return next(r.output for r in reversed(self.rows) if r.depth == 0)

    def output_bytes(self, row: LayerStats) -> int:
        """Bytes of `row`'s output for this batch and dtype."""
        return row.output.elements * self.batch * DTYPE_BYTES[self.dtype]

    def split(self) -> dict[str, dict[str, float]]:
        """Parameters and MACs of convolutions, fully connected layers and the rest (batch norm)."""
        groups = {"conv": (Conv,), "fc": (Linear,), "other": (BatchNorm,)}
        total_p, total_m = self.params or 1, self.macs or 1
        out: dict[str, dict[str, float]] = {}
        for key, kinds in groups.items():
            p = self._sum("weights", kinds) + self._sum("biases", kinds)
            m = self._sum("macs", kinds)
            out[key] = {"params": p, "params_pct": 100.0 * p / total_p,
                        "macs": m, "macs_pct": 100.0 * m / total_m}  # fmt: skip
        return out

    def memory(self) -> dict[str, int]:
        """Bytes for this batch and dtype; the model behind the numbers is in docs/conventions.md.

        saved_for_backward: every tensor autograd keeps for the backward pass of a training step of
        `ilsvrc.nn.build`'s module (model.to(dtype), training mode, CPU), each storage once, parameters
        and batch-norm buffers left out: what `torch.autograd.graph.saved_tensors_hooks` sees.
        inference: weights + the largest (input + output) pair of consecutive activations (without the
        auxiliary classifiers, which run in training only).
        training: weights (auxiliary classifiers included), gradients and one optimizer buffer (SGD
        momentum), the input batch (once,
        whether autograd keeps it or not) with everything saved for backward, and the matrix-product
        workspace: about one copy of the largest layer's weights, which PyTorch's CPU matrix products
        keep as a packing buffer (measured: benchmarks/RESULTS.md, "Cost growth").
        """
        item = DTYPE_BYTES[self.dtype]
        weights = self.params * item
        trained = self.params_with_aux * item  # training holds the auxiliary classifiers too
        input_bytes = self.input.elements * self.batch * item
        peak = max((r.input.elements + r.output.elements) * self.batch * item for r in self.leaves)
        saved = sum(r.saved_bytes(self.dtype, self.batch) for r in self.rows)
        saved += input_bytes if self.input_saved else 0
        activations = saved + (0 if self.input_saved else input_bytes)
        forward = sum(self.output_bytes(r) for r in self.leaves)
        workspace = max((r.weights for r in self.leaves + self.aux_leaves), default=0) * item
        return {
            "weights": weights,
            "activations_forward": forward,
            "inference_peak": weights + peak,
            "saved_for_backward": saved,
            "training_activations": activations,
            "training_workspace": workspace,
            "training_total": 3 * trained + activations + workspace,
        }

    def first_linear(self) -> LayerStats | None:
        return next((r for r in self.leaves if isinstance(r.layer, Linear)), None)


# ---------------------------------------------------------------------------------------------------
# Geometry of one axis


def window_out(n: int, kernel: int, stride: int, padding: int, dilation: int = 1,
               ceil_mode: bool = False) -> tuple[int, int, int]:  # fmt: skip
    """Output length of a sliding window along one axis, as PyTorch computes it.

    Returns (out, span, remainder): span = n + 2P - (dilation*(F-1) + 1) is what the window can move
    over, remainder = span % stride is what is left at the end when the division is not exact.
    Raises ValueError when no window fits (out < 1). With ceil_mode, as in PyTorch, a window larger
    than the padded input by less than the stride still gives one output.
    """
    eff = dilation * (kernel - 1) + 1
    span = n + 2 * padding - eff
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= n + padding:  # PyTorch: the last window must start inside
            out -= 1
    else:
        out = span // stride + 1
    if out < 1:
        raise ValueError
    rem = span % stride
    return out, span, rem


def _adaptive_bins(n: int, out: int) -> int:
    """Largest bin of adaptive pooling from n to out (PyTorch: floor(i*n/out) .. ceil((i+1)*n/out)).

    Bin i spans ceil((r + n) / out) positions, r = i*n mod out; r runs over the multiples of
    g = gcd(n, out) below out, so the largest bin is ceil((out - g + n) / out).
    """
    return -(-(out - math.gcd(n, out) + n) // out)


# ---------------------------------------------------------------------------------------------------
# The analyzer


def window(layer: Conv | Pool) -> str:
    """A sliding window's settings: kernel/stride, then p = padding, g = groups, d = dilation and ceil
    (ceil_mode) where they are not the default: '11x11/4 p2 g2', '3x3/2 ceil'."""
    s = f"{_hw(layer.kernel)}/{_one(layer.stride)}"
    if any(layer.padding):
        s += f" p{_one(layer.padding)}"
    if isinstance(layer, Conv):
        if layer.groups > 1:
            s += f" g{layer.groups}"
        if layer.dilation != (1, 1):
            s += f" d{_one(layer.dilation)}"
        return s
    return s + (" ceil" if layer.ceil_mode else "")


def describe(layer: Layer) -> str:
    """A short label of a layer's hyper-parameters: '96 11x11/4 p2 g2'."""
    if isinstance(layer, Conv):
        return f"{layer.out_channels} {window(layer)}"
    if isinstance(layer, Pool):
        return window(layer)
    if isinstance(layer, AdaptiveAvgPool):
        return f"to {_hw(layer.output_size)}"
    if isinstance(layer, LRN):
        return f"n={layer.size} a={layer.alpha:g} b={layer.beta:g} k={layer.k:g}"
    if isinstance(layer, Linear):
        return f"{layer.out_features}"
    if isinstance(layer, Dropout):
        return f"p={layer.p:g}"
    if isinstance(layer, Opaque):
        return layer.what or "?"
    if isinstance(layer, Concat):
        return f"{len(layer.branches)} branches"
    if isinstance(layer, Residual):
        return "body + " + ("projection" if layer.shortcut else "identity")
    return ""


def _hw(v: tuple) -> str:
    a, b = (_num(x) for x in v)
    return f"{a}x{b}"


def _one(v: tuple) -> str:
    return _num(v[0]) if v[0] == v[1] else f"{_num(v[0])},{_num(v[1])}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}".rstrip("0")


def _c(n: int) -> str:
    return f"{n:,}"


def longest_path(layers: tuple[Layer, ...]) -> int:
    """Layers with weights (conv, FC) along the longest path through `layers`: a chain adds up, the
    branches of a concat and the two sides of a residual give their longest; auxiliary classifiers
    are side branches that end the path, so they count nothing."""
    total = 0
    for layer in layers:
        if isinstance(layer, (Conv, Linear)):
            total += 1
        elif isinstance(layer, Block):
            total += longest_path(layer.layers)
        elif isinstance(layer, Concat):
            total += max(longest_path(b.layers) for b in layer.branches)
        elif isinstance(layer, Residual):
            shortcut = longest_path(layer.shortcut.layers) if layer.shortcut else 0
            total += max(longest_path(layer.body.layers), shortcut)
    return total


def is_module(layer: Layer) -> bool:
    """Whether the summary's collapsed view shows `layer` as one row: a concat, a residual, an
    auxiliary classifier, or a block holding at most one container (ResNet's `layer3.4`: its residual
    and the ReLU after it). A block of several containers is a stage and is opened."""
    if isinstance(layer, (Concat, Residual, Aux)):
        return True
    if isinstance(layer, Block):
        return sum(isinstance(x, (Block, Concat, Residual, Aux)) for x in layer.layers) <= 1
    return False


def analyze(
    network: Network,
    input_shape: tuple[int, int, int] | None = None,
    batch: int = 1,
    dtype: str = "float32",
    suggest: bool = True,
    channels_last: bool = True,
) -> Report:
    """Analyse `network` at `input_shape` (default: the network's own) for a batch and dtype.

    channels_last: the memory layout of the module the memory figures describe, as
    `ilsvrc.nn.build(network, channels_last=...)` makes it (it matters for what flatten copies).
    Raises ShapeError for an impossible configuration; non-integer output sizes become findings.
    """
    if dtype not in DTYPE_BYTES:
        raise SpecError(f"Unknown dtype {shown(dtype)}; use one of {', '.join(DTYPE_BYTES)}.")
    if not is_whole(batch) or not 0 < batch <= MAX_SIZE:
        raise SpecError(f"Batch size must be a positive whole number, got {shown(batch)}.")
    shape = tuple(input_shape) if input_shape is not None else network.input_shape
    if len(shape) != 3 or any(not is_whole(v) or not 0 < v <= MAX_SIZE for v in shape):
        raise SpecError(
            f"Input must be channels x height x width, three positive numbers, e.g. 3x224x224; "
            f"got {shown(shape)}."
        )
    c, h, w = shape
    vol = Volume(c, h, w)
    rf = ReceptiveField((1.0, 1.0), (1.0, 1.0), (0.0, 0.0))
    rows: list[LayerStats] = []
    layout = channels_last and channels_last_layout(network)
    autograd = _Autograd(vol, layout)
    _Walker(rows, autograd).run(network.layers, vol, rf, "", 0, _Flow(autograd.input, owned=False))
    findings = [f for r in rows for f in r.findings]
    report = Report(network, vol, batch, dtype, rows, findings, layout, autograd.settle())
    if suggest:
        _add_fixes(report)
        _note_first_linear(report)
    return report


# ---------------------------------------------------------------------------------------------------
# What autograd keeps for the backward pass


@dataclass(eq=False)
class _Storage:
    """The memory of one activation tensor (views share it), and the row that made it (None: the
    network's input). `elements` per image, in the activation dtype."""

    maker: LayerStats | None
    elements: int
    saved: bool = False


@dataclass(frozen=True, eq=False)
class _Tensor:
    """An activation as the module of `ilsvrc.nn.build` computes it in training mode.

    grad: autograd tracks it (it depends on a parameter; the network's input does not).
    channels_last: its strides are torch.channels_last's (N x H x W x C in memory), else contiguous.
    """

    storage: _Storage
    volume: Volume
    grad: bool
    channels_last: bool

    @property
    def _ambiguous(self) -> bool:  # one channel, or a 1x1 map: both layouts have the same strides
        v = self.volume
        return v.channels == 1 or v.height * v.width == 1

    @property
    def contiguous(self) -> bool:
        """torch's is_contiguous(): a view, not a copy, flattens it."""
        return self.volume.flat or not self.channels_last or self._ambiguous

    @property
    def channels_last_contiguous(self) -> bool:
        return not self.volume.flat and (self.channels_last or self._ambiguous)

    @property
    def suggests_channels_last(self) -> bool:
        """torch's suggest_memory_format(): an N x 1 x 1 x 1 tensor counts as contiguous."""
        return not self.volume.flat and self.channels_last and self.volume.elements > 1


@dataclass(frozen=True)
class _Flow:
    """The tensor reaching a layer, and whether it is fresh (nothing else holds it: a ReLU may then
    work in place, and `ilsvrc.nn.build` makes it so)."""

    tensor: _Tensor
    owned: bool


def _elementwise_layout(inputs: list[_Tensor]) -> bool:
    """Whether an element-wise result (torch's TensorIterator) is channels-last: contiguous when every
    input is (one channel and 1x1 maps count as both layouts), channels-last when every input is,
    else the layout of the first input."""
    if all(t.contiguous for t in inputs):
        return False
    if all(t.channels_last_contiguous for t in inputs):
        return True
    return inputs[0].channels_last


def channels_last_layout(network: Network) -> bool:
    """Whether a module of `network` may be laid out channels-last, as `ilsvrc.nn.build` does by
    default: yes, unless a 1x1 convolution has unequal strides along the two axes. oneDNN (torch 2.14)
    cannot train that channels-last: it corrupts the heap in the backward pass (found by the random
    networks of tests/test_nn.py; minimal case: Conv2d(3, 4, 1, stride=(2, 1)), N x 3 x 32 x 38).
    `ilsvrc.nn.Model.set_channels_last` keeps such a network in torch's default layout."""
    return not any(
        isinstance(layer, Conv) and layer.kernel == (1, 1) and layer.stride[0] != layer.stride[1]
        for _, layer in walk(network.layers)
    )


class _Autograd:
    """Follows the tensors of one training-mode forward pass on the CPU and marks those autograd keeps.

    What each layer keeps (PyTorch 2.x, `ilsvrc.nn.build`'s modules; docs/conventions.md):
    convolution and fully connected: their input; batch norm: its input, and a mean and an inverse
    standard deviation per channel; max pooling: its input and an int64 index per output value;
    average pooling: its input (adaptive pooling to 1x1 is a mean: nothing); our LRN: its input and
    its denominator; ReLU: its output (in place: the storage it received); dropout (p > 0): a noise
    tensor of its input's size in the activation dtype. Layers whose input autograd does not track
    (before the first layer with parameters) keep nothing, except those with parameters. Flatten of a
    channels-last map copies it (a new tensor); concatenation and the residual sum keep nothing but
    make new tensors. A storage kept by several layers counts once, for the layer that made it.
    """

    def __init__(self, volume: Volume, channels_last: bool) -> None:
        self.channels_last = channels_last
        self.storages: list[_Storage] = []
        # Model.forward lays an N x C x H x W batch out channels-last (a copy unless ambiguous)
        cl = channels_last and volume.channels > 1 and volume.height * volume.width > 1
        self.input = self.new(None, volume, grad=False, channels_last=cl)

    def new(self, maker: LayerStats | None, volume: Volume, grad: bool, channels_last: bool) -> _Tensor:
        storage = _Storage(maker, volume.elements)
        self.storages.append(storage)
        return _Tensor(storage, volume, grad, channels_last and not volume.flat)

    @staticmethod
    def keep(t: _Tensor) -> None:
        t.storage.saved = True

    def leaf(self, stats: LayerStats, layer: Layer, flow: _Flow) -> _Flow:
        t, out, grad = flow.tensor, stats.output, flow.tensor.grad
        if isinstance(layer, Opaque):  # unknown: assumed to keep its input, as most layers do
            if grad or layer.params:
                self.keep(t)
            return _Flow(self.new(stats, out, grad or layer.params > 0, False), owned=True)
        if isinstance(layer, (Conv, Linear, BatchNorm)):  # the weights' gradients need the input
            self.keep(t)
            if isinstance(layer, Conv):
                per_group = t.volume.channels // layer.groups
                weight_cl = self.channels_last and not (per_group == 1 and layer.kernel == (1, 1))
                cl = t.suggests_channels_last or weight_cl
            else:
                cl = t.suggests_channels_last
                if isinstance(layer, BatchNorm):
                    stats.saved_batch_values += 2 * t.volume.channels  # save_mean, save_invstd
            return _Flow(self.new(stats, out, True, cl), owned=True)
        if isinstance(layer, (Pool, AdaptiveAvgPool)):
            if grad:
                one = isinstance(layer, AdaptiveAvgPool) and layer.output_size == (1, 1)
                if not one:  # a mean over the map keeps only sizes
                    self.keep(t)
                if isinstance(layer, MaxPool):
                    stats.saved_fixed_bytes += 8 * out.elements  # int64 indices of the maxima
            return _Flow(self.new(stats, out, grad, t.suggests_channels_last), owned=True)
        if isinstance(layer, LRN):
            if grad:
                self.keep(t)
                stats.saved_values += t.volume.elements  # the denominator
            return _Flow(self.new(stats, out, grad, _elementwise_layout([t])), owned=True)
        if isinstance(layer, ReLU):  # in place on a fresh tensor (nn.build reads `in_place`)
            stats.in_place = flow.owned
            if flow.owned:
                result = t
            else:
                result = self.new(stats, out, grad, _elementwise_layout([t]))
            if grad:
                self.keep(result)
            return _Flow(result, owned=False)  # its output is kept: no second ReLU in place
        if isinstance(layer, (Tanh, Sigmoid)):  # a new tensor, kept: their gradients are read off it
            result = self.new(stats, out, grad, _elementwise_layout([t]))
            if grad:
                self.keep(result)
            return _Flow(result, owned=False)  # kept, so a ReLU after it may not work in place
        if isinstance(layer, Dropout):
            if layer.p == 0:  # torch returns the input itself
                return flow
            if grad:
                stats.saved_values += t.volume.elements  # the scaled 0/1 noise it multiplies by
            return _Flow(self.new(stats, out, grad, _elementwise_layout([t])), owned=flow.owned)
        if isinstance(layer, Flatten):
            if t.contiguous:  # a view
                return _Flow(_Tensor(t.storage, out, grad, False), owned=flow.owned)
            return _Flow(self.new(stats, out, grad, False), owned=flow.owned)
        raise SpecError(f"Layer {stats.name}: the analyzer does not know layer type {layer.kind!r}.")

    def join(self, head: LayerStats, layer: Layer, out: Volume, parts: list[_Tensor]) -> _Tensor:
        """The output of a concatenation (channels-last if every part suggests it) or a residual sum
        (element-wise); neither keeps anything."""
        grad = any(t.grad for t in parts)
        if isinstance(layer, Concat):
            return self.new(head, out, grad, all(t.suggests_channels_last for t in parts))
        return self.new(head, out, grad, _elementwise_layout(parts))

    def settle(self) -> bool:
        """Credit each kept storage to the row that made it; True if the network's input is kept."""
        for storage in self.storages:
            if storage.saved and storage.maker is not None:
                storage.maker.saved_values += storage.elements
        return self.input.storage.saved


class _Walker:
    """Walks a layer tree, appending one LayerStats per node to `rows`; `autograd` follows the tensors.

    Each step carries a `_Flow`: the tensor that reaches the layer, and whether it is "owned" (a fresh
    tensor nothing else holds, so that a ReLU may work on it in place: the rule `ilsvrc.nn.build`
    follows through `LayerStats.in_place`).
    """

    def __init__(self, rows: list[LayerStats], autograd: _Autograd) -> None:
        self.rows = rows
        self.autograd = autograd

    def run(
        self, layers: tuple[Layer, ...], vol: Volume, rf: ReceptiveField, prefix: str, depth: int,
        flow: _Flow,
    ) -> tuple[Volume, ReceptiveField, _Flow]:  # fmt: skip
        for layer in layers:
            vol, rf, flow = self.one(layer, vol, rf, prefix, depth, flow)
        return vol, rf, flow

    def one(
        self, layer: Layer, vol: Volume, rf: ReceptiveField, prefix: str, depth: int, flow: _Flow
    ) -> tuple[Volume, ReceptiveField, _Flow]:
        name = prefix + layer.name
        if isinstance(layer, Aux):
            return self.aux(layer, name, vol, rf, depth, flow)
        if isinstance(layer, (Block, Concat, Residual)):
            return self.container(layer, name, vol, rf, depth, flow)
        handler = _HANDLERS.get(type(layer))
        if handler is None:
            raise SpecError(f"Layer {name}: the analyzer does not know layer type {layer.kind!r}.")
        stats = LayerStats(name, layer.kind, depth, layer, vol, vol)
        handler(stats, layer, vol)
        stats.receptive_field = _receptive_field(layer, vol, stats.output, rf)
        self.rows.append(stats)
        return stats.output, stats.receptive_field, self.autograd.leaf(stats, layer, flow)

    def container(
        self, layer: Layer, name: str, vol: Volume, rf: ReceptiveField, depth: int, flow: _Flow
    ) -> tuple[Volume, ReceptiveField, _Flow]:
        head = LayerStats(name, layer.kind, depth, layer, vol, vol, container=True)
        self.rows.append(head)
        start = len(self.rows)
        if isinstance(layer, Block):
            out, out_rf, flow = self.run(layer.layers, vol, rf, name + ".", depth + 1, flow)
        else:
            parts = layer.branches if isinstance(layer, Concat) else (layer.body, layer.shortcut)
            results, tensors = [], []
            for part in parts:
                if part is None:  # identity shortcut
                    results.append(("identity", vol, rf))
                    tensors.append(flow.tensor)
                    continue
                self.rows.append(
                    LayerStats(
                        f"{name}.{part.name}", part.kind, depth + 1, part, vol, vol, container=True
                    )  # fmt: skip
                )
                first = len(self.rows)
                # a branch's input is shared with the other branches: never changed in place
                o, r, f = self.run(part.layers, vol, rf, f"{name}.{part.name}.", depth + 2,
                                   _Flow(flow.tensor, owned=False))  # fmt: skip
                _sum_children(self.rows[first - 1], self.rows[first:], o, r)
                results.append((part.name, o, r))
                tensors.append(f.tensor)
            out, out_rf = _join(layer, name, vol, results, head)
            flow = _Flow(self.autograd.join(head, layer, out, tensors), owned=True)
        _sum_children(head, self.rows[start:], out, out_rf)
        return out, out_rf, flow

    def aux(
        self, layer: Aux, name: str, vol: Volume, rf: ReceptiveField, depth: int, flow: _Flow
    ) -> tuple[Volume, ReceptiveField, _Flow]:
        """An auxiliary classifier: its rows (marked `aux`) end in its logits; the chain goes on with
        the volume it read, which it shares (so the next layer may not change it in place)."""
        head = LayerStats(name, layer.kind, depth, layer, vol, vol, container=True, aux=True)
        self.rows.append(head)
        start = len(self.rows)
        out, out_rf, _ = self.run(
            layer.layers, vol, rf, name + ".", depth + 1, _Flow(flow.tensor, owned=False)
        )
        if not out.flat:
            raise ShapeError(
                f"Layer {name} (aux): an auxiliary classifier ends in logits, a flat vector, but its "
                f"layers give a {out} volume. End it with flatten and linear layers."
            )
        for row in self.rows[start:]:
            row.aux = True
        _sum_children(head, self.rows[start:], out, out_rf)
        head.formulas.append(
            f"side branch to {out.channels} logits, in training only (loss weight {layer.weight:g}); "
            f"the next layer receives the {vol} volume it read"
        )
        return vol, rf, _Flow(flow.tensor, owned=False)


def _sum_children(head: LayerStats, children: list[LayerStats], out: Volume,
                  rf: ReceptiveField) -> None:  # fmt: skip
    leaves = [r for r in children if not r.container]
    head.macs_known = all(r.macs_known for r in leaves)
    head.weights = sum(r.weights for r in leaves)
    head.biases = sum(r.biases for r in leaves)
    head.macs = sum(r.macs for r in leaves)
    head.bias_adds = sum(r.bias_adds for r in leaves)
    head.output = out
    head.receptive_field = rf


def _join(layer: Layer, name: str, vol: Volume, results: list, head: LayerStats
          ) -> tuple[Volume, ReceptiveField]:  # fmt: skip
    shapes = ", ".join(f"{n} gives {o}" for n, o, _ in results)
    if isinstance(layer, Concat):
        if any(o.flat for _, o, _ in results) or len({(o.height, o.width) for _, o, _ in results}) > 1:
            raise ShapeError(
                f"Layer {name} (concat): its branches must give the same width and height to be "
                f"joined along the channels, but {shapes}. Change the branches' padding or stride "
                "so that they agree."
            )
        first = results[0][1]
        out = Volume(sum(o.channels for _, o, _ in results), first.height, first.width)
        head.formulas.append(
            f"D2 = {' + '.join(str(o.channels) for _, o, _ in results)} = {out.channels} "
            "(channels of the branches, concatenated)"
        )
    else:
        if len({o for _, o, _ in results}) > 1:
            raise ShapeError(
                f"Layer {name} (residual): body and shortcut must give the same volume to be added, "
                f"but {shapes}. Give the shortcut a 1x1 convolution with the body's stride and "
                "filters (ResNet's projection)."
            )
        out = results[0][1]
        head.formulas.append(f"out = body(x) + shortcut(x): {out} (element by element)")
    return out, _union([r for _, _, r in results], out)


def _union(fields: list[ReceptiveField], out: Volume) -> ReceptiveField:
    """The field of a join: every branch reads the same input, so a unit is reached by the pixels
    that reach the same unit of any branch (per stride, the widest interval)."""
    parts = tuple(tuple(p for f in fields for p in f.families(axis)) for axis in (0, 1))
    return ReceptiveField.of(parts, (out.height, out.width))


def _receptive_field(layer: Layer, vin: Volume, vout: Volume, rf: ReceptiveField) -> ReceptiveField:
    if isinstance(layer, (Conv, Pool)):
        # unit u reads the previous units u*s - p + d*t, t = 0 .. k-1: each family's first interval
        # moves by -p units and its last by (eff - 1 - p), and its units step s times further
        dil = layer.dilation if isinstance(layer, Conv) else (1, 1)
        geometry = zip(layer.kernel, layer.stride, layer.padding, dil)
        parts = []
        for axis, (k, s, p, d) in enumerate(geometry):
            eff = d * (k - 1) + 1
            parts.append(
                tuple((lo - p * j, hi + (eff - 1 - p) * j, j * s) for lo, hi, j in rf.families(axis))
            )
        return ReceptiveField.of((parts[0], parts[1]), (vout.height, vout.width))
    if isinstance(layer, AdaptiveAvgPool):
        size, jump, start = [], [], []
        for axis, (n, o) in enumerate(zip((vin.height, vin.width), layer.output_size)):
            k = _adaptive_bins(n, o)
            first = -(-n // o)  # the first bin's size
            size.append(rf.size[axis] + (k - 1) * rf.jump[axis])
            start.append(rf.start[axis] + (first - 1) / 2 * rf.jump[axis])
            jump.append(rf.jump[axis] * n / o)
        return ReceptiveField(tuple(size), tuple(jump), tuple(start))
    if isinstance(layer, Opaque) and _same_grid(vin, vout):
        return rf  # assumed: it works on each position alone (the analyzer's warning says so)
    if isinstance(layer, (Flatten, Linear, Opaque)) and not vin.flat:
        # every output value sees every position of the input volume
        size, start = [], []
        for axis, n in enumerate((vin.height, vin.width)):
            lo, _ = rf.span(axis, 0)
            _, hi = rf.span(axis, n - 1)
            size.append(hi - lo + 1)
            start.append((lo + hi) / 2)
        return ReceptiveField(tuple(size), tuple(size), tuple(start))
    return rf


# ---------------------------------------------------------------------------------------------------
# One handler per leaf type: fills output, counts and formulas of `stats`


def _spatial(stats: LayerStats, layer: Conv | Pool, vin: Volume) -> tuple[int, int]:
    if vin.flat:
        raise ShapeError(
            f"Layer {stats.name} ({layer.kind}) receives a flat vector of {vin.channels} values, "
            "but it slides a window over a W x H x D volume. Move it before the flatten layer."
        )
    dil = layer.dilation if isinstance(layer, Conv) else (1, 1)
    ceil = isinstance(layer, Pool) and layer.ceil_mode
    outs, texts, found = [], [], []
    for axis, n in ((1, vin.width), (0, vin.height)):
        k, s, p, d = layer.kernel[axis], layer.stride[axis], layer.padding[axis], dil[axis]
        label = "W" if axis == 1 else "H"
        f_text = f"{k}" if d == 1 else f"({d}*({k} - 1) + 1)"
        expr = f"({n} - {f_text} + 2*{p})/{s} + 1"
        eff = d * (k - 1) + 1
        exact = (n + 2 * p - eff) / s + 1
        try:
            out, span, rem = window_out(n, k, s, p, d, ceil)
        except ValueError:
            raise ShapeError(
                f"Layer {stats.name} ({layer.kind} {describe(layer)}): the {eff}-wide window does not "
                f"fit in the {n + 2 * p}-wide padded input ({vin} arrives): {label}2 = {expr} = "
                f"{exact:g}, less than 1. Use a larger input, more padding, or a smaller kernel."
            ) from None
        if rem == 0:
            texts.append(f"{expr} = {out}")
        else:
            how = "floor" if not ceil else "ceil_mode" if out > span // s + 1 else "ceil_mode drops it"
            texts.append(f"{expr} = {exact:g} -> {out} ({how})")
            found.append(_Rounding(label + "2", n, expr, exact, out, rem, eff, s, p, ceil))
        outs.append(out)
    if texts[0] == texts[1]:
        stats.formulas.append(f"W2 = H2 = {texts[0]}")
        found = [dataclasses.replace(found[0], label="W2 = H2")] if found else []
    else:
        stats.formulas += [f"W2 = {texts[0]}", f"H2 = {texts[1]}"]
    for rounding in found:
        stats.findings.append(_non_integer(stats, rounding))
    return outs[1], outs[0]


@dataclass(frozen=True)
class _Rounding:
    """A window's output size along one axis that is not a whole number, and what PyTorch makes of it."""

    label: str  # "W2", "H2" or "W2 = H2"
    n: int  # input size
    expr: str  # the formula with its numbers
    exact: float  # its value
    out: int  # PyTorch's output size
    rem: int  # (n + 2P - F_eff) mod S: padded positions after the floor's last window
    eff: int  # effective kernel d(F - 1) + 1
    stride: int
    padding: int
    ceil: bool


def _rounding_warns(out: int, span: int, rem: int, stride: int, padding: int, ceil: bool) -> bool:
    """Whether an output size that is not a whole number (rem > 0) is a warning rather than a note:
    always without ceil_mode (PyTorch floors it); with ceil_mode only when PyTorch drops the extra
    window (the floor) and input, not padding, is left unseen."""
    return not ceil or (out == span // stride + 1 and rem > padding)


def _non_integer(stats: LayerStats, r: _Rounding) -> Finding:
    """A warning when input is never seen (or, without ceil_mode, whenever the division is not exact);
    a note when ceil_mode's extra window covers the rest. States the size PyTorch gives."""
    axis = {"W2": "column", "H2": "row"}.get(r.label, "column and row")

    def many(count: int) -> str:
        return axis.replace("column", "columns").replace("row", "rows") if count > 1 else axis

    head = f"{stats.name}: {r.label} = {r.expr} = {r.exact:g} is not a whole number"
    floor = (r.n + 2 * r.padding - r.eff) // r.stride + 1
    lost = max(0, r.rem - r.padding)  # input (not padding) positions after the floor's last window
    if lost:
        unseen = f"the last {lost} input {many(lost)} (of {r.n}) are never seen by any window"
    else:
        verb = "is" if r.rem == 1 and " and " not in axis else "are"
        unseen = (
            f"the {r.rem} {many(r.rem)} left over after the last window {verb} padding, so every "
            f"input {axis} is still seen"
        )
    if r.ceil and r.out > floor:
        over = r.stride - r.rem
        return Finding(
            "note",
            stats.name,
            f"{head}; with ceil_mode PyTorch rounds it up to {r.out} (Caffe's convention): the last "
            f"window hangs {over} {many(over)} over the edge of the padded input, so every input {axis} "
            "is still seen.",
        )
    if r.ceil:
        start = floor * r.stride
        return Finding(
            "warning" if lost else "note",
            stats.name,
            f"{head}; ceil_mode would round it up to {floor + 1}, but that last window would start at "
            f"padded {axis} {start}, past the input and its left padding ({r.n} + {r.padding}), so "
            f"PyTorch drops it and gives {r.out}, the floor: {unseen}.",
        )
    return Finding(
        "warning",
        stats.name,
        f"{stats.name} ({stats.kind} {describe(stats.layer)}): {r.label} = {r.expr} = {r.exact:g} is "
        f"not a whole number. PyTorch floors it to {r.out}: {unseen}.",
    )


def _conv(stats: LayerStats, layer: Conv, vin: Volume) -> None:
    h, w = _spatial(stats, layer, vin)
    g, cin = layer.groups, vin.channels
    if cin % g:
        raise ShapeError(
            f"Layer {stats.name} (conv {describe(layer)}): its {cin} input channels cannot be split "
            f"into {g} groups. Make the previous layer's channels a multiple of {g}, or change groups."
        )
    out = Volume(layer.out_channels, h, w)
    kh, kw = layer.kernel
    per_filter = kh * kw * (cin // g)
    stats.output = out
    stats.weights = per_filter * layer.out_channels
    stats.biases = layer.out_channels if layer.bias else 0
    stats.macs = out.elements * per_filter
    stats.bias_adds = out.elements if layer.bias else 0
    depth_in = f"{cin}" if g == 1 else f"({cin}/{g})"
    stats.formulas.append(f"D2 = {layer.out_channels} (the number of filters)")
    bias = f" + {layer.out_channels}" if layer.bias else ""
    stats.formulas.append(
        f"params = {kh}*{kw}*{depth_in}*{layer.out_channels}{bias} = {_c(stats.params)}"
        + (f"  (groups={g}: each filter sees {cin // g} of {cin} channels)" if g > 1 else "")
    )
    stats.formulas.append(
        f"MACs = {w}*{h}*{layer.out_channels} outputs * {kh}*{kw}*{cin // g} = {_c(stats.macs)}"
    )


def _pool(stats: LayerStats, layer: Pool, vin: Volume) -> None:
    h, w = _spatial(stats, layer, vin)
    stats.output = Volume(vin.channels, h, w)
    stats.formulas.append(f"D2 = D1 = {vin.channels} (pooling works on each channel alone)")
    stats.formulas.append("params = 0")


def _adaptive(stats: LayerStats, layer: AdaptiveAvgPool, vin: Volume) -> None:
    if vin.flat:
        raise ShapeError(
            f"Layer {stats.name} (adaptiveavgpool) receives a flat vector; move it before flatten."
        )
    oh, ow = layer.output_size
    stats.output = Volume(vin.channels, oh, ow)
    same = (vin.height, vin.width) == (oh, ow)
    stats.formulas.append(
        f"{vin.width}x{vin.height} -> {ow}x{oh} whatever the input"
        + (" (here it changes nothing)" if same else "")
    )
    stats.formulas.append("params = 0")


def _same(stats: LayerStats, layer: Layer, vin: Volume) -> None:
    stats.output = vin
    if vin.flat and isinstance(layer, (LRN, BatchNorm)):
        raise ShapeError(
            f"Layer {stats.name} ({layer.kind}) normalises across the channels of a volume, but "
            f"receives a flat vector of {vin.channels} values. Move it before the flatten layer."
        )
    if isinstance(layer, LRN):
        stats.formulas.append(f"same volume; b = a / ({layer.k:g} + {layer.alpha:g} * sum over "
                              f"{layer.size} channels of a^2)^{layer.beta:g}; params = 0")  # fmt: skip
    elif isinstance(layer, BatchNorm):
        stats.weights, stats.biases = vin.channels, vin.channels
        stats.formulas.append(
            f"params = 2*{vin.channels} = {_c(2 * vin.channels)} (a scale and a shift per channel; "
            "running mean and variance are buffers, not parameters)"
        )
    elif isinstance(layer, Dropout):
        stats.formulas.append(f"same volume; params = 0; drops each value with p = {layer.p:g}")
    elif isinstance(layer, Tanh):
        stats.formulas.append("same volume, tanh(x); params = 0")
    elif isinstance(layer, Sigmoid):
        stats.formulas.append("same volume, 1 / (1 + exp(-x)); params = 0")
    else:  # ReLU, in place: its output is its input's storage
        stats.formulas.append("same volume, max(0, x); params = 0")


def _flatten(stats: LayerStats, layer: Flatten, vin: Volume) -> None:
    stats.output = Volume(vin.elements, 1, 1, flat=True)
    if not vin.flat:
        stats.formulas.append(f"{vin.channels}*{vin.height}*{vin.width} = {_c(vin.elements)} values")


def _linear(stats: LayerStats, layer: Linear, vin: Volume) -> None:
    if not vin.flat:
        raise ShapeError(
            f"Layer {stats.name} (linear) receives a {vin} volume; a fully connected layer takes a "
            "flat vector. Put a flatten layer before it."
        )
    n_in, n_out = vin.channels, layer.out_features
    stats.output = Volume(n_out, 1, 1, flat=True)
    stats.weights = n_in * n_out
    stats.biases = n_out if layer.bias else 0
    stats.macs = n_in * n_out
    stats.bias_adds = stats.biases
    bias = f" + {n_out}" if layer.bias else ""
    stats.formulas.append(f"params = {n_in}*{n_out}{bias} = {_c(stats.params)}")
    stats.formulas.append(f"MACs = {n_in}*{n_out} = {_c(stats.macs)}")


def _opaque(stats: LayerStats, layer: Opaque, vin: Volume) -> None:
    traced = _volume(layer.input)
    if vin != traced:
        raise ShapeError(
            f"Layer {stats.name} (opaque: {layer.what or 'a layer ilsvrc does not know'}) was traced "
            f"receiving {traced}, but here it receives {vin}: what it gives at another size is unknown. "
            "Analyse the network at the input it was traced with, or trace it again at this input "
            "(`ilsvrc.from_module(module, input_shape)`, or `--input` with a torch model)."
        )
    stats.output = _volume(layer.output)
    stats.weights = layer.params  # weights and biases not told apart
    stats.macs_known = False
    what = layer.what or "a layer ilsvrc does not know"
    field = "unchanged" if _same_grid(vin, stats.output) else "the whole input"
    stats.formulas.append(
        f"{what}: output {stats.output} and {_c(layer.params)} parameters as traced; multiply-adds unknown"
    )
    stats.findings.append(Finding(
        "warning", stats.name,
        f"{stats.name} ({what}) is not a layer ilsvrc knows: its output {stats.output} and its "
        f"{_c(layer.params)} parameters are taken from the trace, its multiply-adds are unknown (left "
        f"out of the totals, which are therefore lower bounds), and its receptive field is assumed "
        f"{field}{' (as if it worked on each position alone)' if field == 'unchanged' else ''}.",
    ))  # fmt: skip


def _volume(shape: tuple[int, ...]) -> Volume:
    """An `Opaque` layer's [channels, height, width] or [length] as a Volume."""
    return Volume(shape[0], 1, 1, flat=True) if len(shape) == 1 else Volume(*shape)


def _same_grid(vin: Volume, vout: Volume) -> bool:
    return not vin.flat and not vout.flat and (vin.height, vin.width) == (vout.height, vout.width)


_HANDLERS = {
    Conv: _conv,
    MaxPool: _pool,
    AvgPool: _pool,
    AdaptiveAvgPool: _adaptive,
    LRN: _same,
    ReLU: _same,
    Tanh: _same,
    Sigmoid: _same,
    BatchNorm: _same,
    Dropout: _same,
    Flatten: _flatten,
    Linear: _linear,
    Opaque: _opaque,
}


# ---------------------------------------------------------------------------------------------------
# Suggestions: exact input sizes, and what the first fully connected layer takes


def is_exact(network: Network, shape: tuple[int, int, int]) -> bool | None:
    """True if every layer's output size is a whole number at `shape`; None if impossible there."""
    try:
        report = analyze(network, shape, suggest=False)
    except ShapeError:
        return None
    return not any(f.severity == "warning" for f in report.findings)


def nearest_exact_sizes(network: Network, shape: tuple[int, int, int], reach: int = 64
                        ) -> list[int]:  # fmt: skip
    """Square input sizes near shape's height at which no output size is floored: the two sizes s
    other than the height, within `reach` of it, closest first (the larger first at equal distance),
    for which `is_exact(network, (channels, s, s))` holds.

    Found for every candidate size at once by the analyzer's own geometry (`_sizes_along`), not by
    analysing the network at each size; one full analysis settles what does not depend on the size.
    """
    return _nearest_exact(network, shape, reach, analysed=False)


def _nearest_exact(network: Network, shape: tuple[int, int, int], reach: int, analysed: bool) -> list[int]:
    """`nearest_exact_sizes`; `analysed`: the network has been analysed at `shape` without error, so
    no size-independent error (channels, groups, flat vectors) can fail the candidates."""
    c, h, _ = shape
    top = min(h + reach, MAX_SIZE)
    sizes = sorted(range(max(1, h - reach), top + 1), key=lambda s: (abs(s - h), -s))
    flags = {"flat_join": False}
    alive = [s for s in sizes if s != h]
    for axis in (0, 1):  # the sizes at which every window fits, joins agree and nothing is floored
        alive = list(_sizes_along(network.layers, dict(zip(alive, alive)), axis, flags, exact=True))
    exact = set(alive)
    found: list[int] = []
    for s in sizes:
        if s not in exact:
            continue
        if flags["flat_join"] or not (analysed or found):  # lengths of flat vectors need the analysis
            verdict = is_exact(network, (c, s, s))
            if verdict is None and not flags["flat_join"]:  # a size-independent error: no size will do
                return []
            if not verdict:
                continue
        found.append(s)
        if len(found) == 2:
            break
    return found


@dataclass(frozen=True)
class InputSizes:
    """The square input sizes, from 1 to `limit`, that a network takes.

    smallest: the smallest (None: none up to `limit`); every_size_up: it takes every size from
    `smallest` to `limit` (always so for a chain of layers; branches joined by a concatenation or a
    residual sum may agree only at some sizes); first: the first few sizes it takes; count: how many
    it takes up to `limit`.
    """

    smallest: int | None
    every_size_up: bool
    first: tuple[int, ...]
    count: int
    limit: int

    def __str__(self) -> str:
        """What follows the network's name in a sentence: 'takes inputs from 32x32 up'."""
        if self.smallest is None:
            return f"takes no square input up to {self.limit}x{self.limit}"
        if self.every_size_up:
            return f"takes inputs from {self.smallest}x{self.smallest} up"
        sizes = ", ".join(f"{n}x{n}" for n in self.first)
        more = ", ..." if self.count > len(self.first) else ""
        return (
            f"takes only some square inputs ({sizes}{more}; not every size between them): the "
            "branches of its joins agree only at some sizes"
        )


_FLAT = -1  # the "size" of a flat vector: flatten ends the spatial axes


def _sizes_along(layers: tuple[Layer, ...], sizes: dict[int, int], axis: int, flags: dict,
                 exact: bool = False) -> dict[int, int]:  # fmt: skip
    """The output size along `axis` (0: height, 1: width) for many input sizes at once, by the
    analyzer's own geometry (`window_out`): `sizes` maps each input size to the size that reaches
    `layers`; the result keeps the input sizes at which every window fits and the branches of each
    join (and each auxiliary classifier) take what they receive, `_FLAT` after a flatten or fully
    connected layer. With `exact`, also drops the sizes at which some window's output size is not a
    whole number in a way the analyzer warns of (`_non_integer`).
    `flags['flat_join']` is set when a residual sum joins flat vectors, whose lengths (which depend
    on the input size) this does not follow."""
    for layer in layers:
        if isinstance(layer, Block):
            sizes = _sizes_along(layer.layers, sizes, axis, flags, exact)
        elif isinstance(layer, Aux):  # a side branch: the chain goes on with the volume it read
            ends = _sizes_along(layer.layers, sizes, axis, flags, exact)
            sizes = {key: n for key, n in sizes.items() if key in ends}
        elif isinstance(layer, (Concat, Residual)):
            if isinstance(layer, Concat):
                parts = [_sizes_along(b.layers, sizes, axis, flags, exact) for b in layer.branches]
            else:
                short = layer.shortcut.layers if layer.shortcut else ()
                parts = [_sizes_along(part, sizes, axis, flags, exact) for part in (layer.body.layers, short)]
                flags["flat_join"] |= any(n == _FLAT for part in parts for n in part.values())
            first, rest = parts[0], parts[1:]
            sizes = {key: n for key, n in first.items() if all(part.get(key) == n for part in rest)}
        elif isinstance(layer, (Conv, Pool)):
            d = layer.dilation[axis] if isinstance(layer, Conv) else 1
            ceil = isinstance(layer, Pool) and layer.ceil_mode
            k, st, p = layer.kernel[axis], layer.stride[axis], layer.padding[axis]
            out = {}
            for key, n in sizes.items():
                o = _window_or_none(n, k, st, p, d, ceil, exact)
                if o is not None:
                    out[key] = o
            sizes = out
        elif isinstance(layer, AdaptiveAvgPool):
            sizes = {key: n if n == _FLAT else layer.output_size[axis] for key, n in sizes.items()}
        elif isinstance(layer, (Flatten, Linear)):
            sizes = dict.fromkeys(sizes, _FLAT)
        elif isinstance(layer, Opaque):  # known at its traced input only
            n_in = _FLAT if len(layer.input) == 1 else layer.input[1 + axis]
            n_out = _FLAT if len(layer.output) == 1 else layer.output[1 + axis]
            sizes = {key: n_out for key, n in sizes.items() if n == n_in}
    return sizes


def _window_or_none(n: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool,
                    exact: bool = False) -> int | None:  # fmt: skip
    """A window's output size (`window_out`); None if no window fits or, with `exact`, if the size is
    not a whole number and the analyzer warns of it (`_rounding_warns`)."""
    if n == _FLAT:  # a window over a flat vector is refused whatever the size
        return n
    try:
        out, span, rem = window_out(n, kernel, stride, padding, dilation, ceil)
    except ValueError:
        return None
    if exact and rem and _rounding_warns(out, span, rem, stride, padding, ceil):
        return None
    return out


def input_sizes(network: Network, channels: int, limit: int = 4096) -> InputSizes:
    """Which square input sizes from 1 to `limit` the network takes, found exactly.

    Every size is checked: each layer's windows must fit and the branches of each join agree, computed
    for all sizes at once; the smallest such size is then analysed in full, which settles the checks
    that do not depend on the size (channels, groups, flat vectors). Chains take every size from the
    smallest up; branches whose strides or paddings differ may agree only at some sizes.
    """
    flags = {"flat_join": False}
    ok = set(range(1, limit + 1))
    for axis in (0, 1):
        ok &= _sizes_along(network.layers, {n: n for n in range(1, limit + 1)}, axis, flags).keys()
    candidates = sorted(ok)

    def takes(n: int) -> bool:
        return is_exact(network, (channels, n, n)) is not None

    if flags["flat_join"]:  # a residual sum of flat vectors: their lengths need the full analysis
        candidates = [n for n in candidates if takes(n)]
    elif candidates and not takes(candidates[0]):  # a size-independent error: no size will do
        candidates = []
    if not candidates:
        return InputSizes(None, False, (), 0, limit)
    smallest = candidates[0]
    every = len(candidates) == limit - smallest + 1
    return InputSizes(smallest, every, tuple(candidates[:4]), len(candidates), limit)


def smallest_input(network: Network, channels: int, limit: int = 4096) -> int | None:
    """The smallest square input size N such that the network takes every size from N up to `limit`
    (what "takes inputs from N up" claims); None if there is none. For a chain of layers that is the
    smallest size it takes; when branches agree only at some sizes there is none, and
    `input_sizes` says which sizes it takes."""
    sizes = input_sizes(network, channels, limit)
    return sizes.smallest if sizes.every_size_up else None


def _add_fixes(report: Report) -> None:
    warnings = [f for f in report.findings if f.severity == "warning"]
    if not warnings or report.input.height != report.input.width:
        return
    shape = (report.input.channels, report.input.height, report.input.width)
    sizes = _nearest_exact(report.network, shape, 64, analysed=True)
    first = warnings[0]
    layer = next(r for r in report.rows if r.name == first.layer).layer
    fix = []
    if sizes:
        fix.append(f"an input of {' or '.join(f'{s}x{s}' for s in sizes)} makes every layer exact")
    if isinstance(layer, (Conv, Pool)):
        pad = _exact_padding(report, first.layer, layer)
        fix.append(pad)
    if fix:
        report.findings.append(Finding("note", first.layer, "To make it exact: " + "; ".join(fix)
                                       + "."))  # fmt: skip


def _exact_padding(report: Report, name: str, layer: Conv | Pool) -> str:
    row = next(r for r in report.rows if r.name == name)
    n = row.input.width
    k, s, p = layer.kernel[1], layer.stride[1], layer.padding[1]
    d = layer.dilation[1] if isinstance(layer, Conv) else 1
    eff = d * (k - 1) + 1
    # the smallest extra >= 1 with 2 * extra = -(n + 2p - eff) (mod s), solved rather than searched
    rem = (n + 2 * p - eff) % s
    period = s if s % 2 else s // 2  # 2 * extra runs over every residue (s odd) or the even ones
    if s % 2 or rem % 2 == 0:
        extra = (-rem * pow(2, -1, s)) % s if s % 2 else (-(rem // 2)) % period
        extra = extra or period
        if isinstance(layer, Pool) and 2 * (p + extra) > k:  # PyTorch refuses it
            return (f"no padding of {name} that PyTorch allows (at most half the kernel, {k // 2}) "
                    "makes it exact")  # fmt: skip
        return f"or padding {p + extra} in {name} ((W1 - F + 2P) divisible by {s})"
    return f"no symmetric padding of {name} makes it exact ({n} - {eff} + 2P is never a multiple of {s})"


def _note_first_linear(report: Report) -> None:
    fc = report.first_linear()
    if fc is None:
        return
    leaves = report.leaves
    at = next(i for i, r in enumerate(leaves) if r is fc)  # by identity: == would compare every field
    before = leaves[:at]
    adaptive = next((r for r in before if isinstance(r.layer, AdaptiveAvgPool)), None)
    spatial = [r for r in before if not r.output.flat]
    source = spatial[-1].output if spatial else report.input
    # what gives the values the fully connected layer reads (past dropout and ReLU)
    last = next((r for r in reversed(before) if not isinstance(r.layer, (Dropout, ReLU))), None)
    if last is not None and isinstance(last.layer, Opaque):
        text = (
            f"{fc.name} takes the {fc.input.channels:,} values the opaque layer {last.name} gives, as traced."
        )
    elif adaptive is not None:
        text = (
            f"{fc.name} takes {fc.input.channels:,} values ({source}), fixed by the adaptive "
            f"pooling {adaptive.name} whatever the input size."
        )
    else:
        text = f"{fc.name} takes the flattened {source} = {fc.input.channels:,} values this input gives"
        default = report.network.input_shape
        here = (report.input.channels, report.input.height, report.input.width)
        if here != default:
            try:
                base = analyze(report.network, default, suggest=False).first_linear()
            except ShapeError:
                base = None
            if base is not None and base.input.channels != fc.input.channels:
                text += (
                    f" ({base.input.channels:,} at the default "
                    f"{default[1]}x{default[2]}: weights trained there do not fit)"
                )
            elif base is not None:
                text += f" (the same as at the default {default[1]}x{default[2]})"
        text += "."
    report.findings.append(Finding("note", fc.name, text))


def check_strict(report: Report) -> None:
    """Raise StrictModeError if the report has warnings (the --strict mode)."""
    from ..errors import StrictModeError

    warnings = [f.message for f in report.findings if f.severity == "warning"]
    if warnings:
        notes = [f.message for f in report.findings if f.message.startswith("To make it exact")]
        raise StrictModeError(" ".join(warnings + notes) + " (--strict treats this as an error.)")
