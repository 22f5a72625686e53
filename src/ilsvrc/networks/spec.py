"""Networks as data: small frozen trees of layers, with no torch in sight.

A `Network` is a name, an input volume (channels, height, width), a tuple of layers and metadata. A layer
is one of the node types below; two of them hold other layers: `Concat` (parallel branches joined along
the channels, as in GoogLeNet's Inception module) and `Residual` (a body added to a shortcut, as in
ResNet). `Block` groups layers under one name. Every node has a name that is stable: it is what the
tables print and what the torch module calls the submodule (so it is the state-dict key).

Sizes are given as an int or a (height, width) pair; the analyzer works on each axis separately.
Fully connected layers do not state their input size: it is whatever the previous layer gives, so the
same spec can be analysed or built at any input size.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import SpecError, shown

Size = int | tuple[int, int]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")  # or a number, as torch numbers a Sequential
MAX_SIZE = 2**63 - 1  # torch's sizes are int64; larger ones are certainly mistakes (and overflow floats)


def is_whole(v: Any) -> bool:
    """An int that is not a bool (YAML's true is not a size)."""
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def pair(value: Size, what: str = "size") -> tuple[int, int]:
    """Return `value` as a (height, width) pair, checking it is made of whole numbers."""
    if is_whole(value):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_whole(v) for v in value):
        return (int(value[0]), int(value[1]))
    raise SpecError(f"{what} must be a whole number or a pair [height, width], not {shown(value)}.")


@dataclass(frozen=True)
class Layer:
    """Base of every node. `kind` is the name used in spec files and tables."""

    name: str
    kind: ClassVar[str] = "layer"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SpecError(
                f"Layer name {shown(self.name)} is not usable: names are letters, digits and underscores "
                "not starting with a digit, or a number such as '4' (ResNet's layer3.4) given as text; "
                "they become torch submodule names, e.g. 'conv1'."
            )

    @property
    def has_parameters(self) -> bool:
        return False

    def fields(self) -> dict[str, Any]:
        """The node's fields as plain values (for spec files and JSON)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Layer):
                value = value.to_dict()
            elif isinstance(value, tuple) and value and isinstance(value[0], Layer):
                value = [v.to_dict() for v in value]
            elif isinstance(value, tuple):
                value = list(value) if value[0] != value[-1] or len(value) != 2 else value[0]
            out[f.name] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **self.fields()}


def _check_whole(layer: Layer, minimum: int, pairs: bool = False, **values: Any) -> None:
    """Each value (a number, or with `pairs` a (height, width) pair) is whole, `minimum` to MAX_SIZE."""
    for what, value in values.items():
        for v in value if pairs and isinstance(value, tuple) else (value,):
            if not is_whole(v) or not minimum <= v <= MAX_SIZE:
                need = "a positive whole number" if minimum == 1 else "a whole number, zero or more"
                raise SpecError(
                    f"Layer {layer.name} ({layer.kind}): {what} must be {need} "
                    f"(at most 2**63 - 1), got {shown(value)}."
                )


def _check_real(layer: Layer, what: str, value: Any, ok: Any, requirement: str) -> None:
    """`value` is a finite number for which `ok(value)` holds; `requirement` says so in words."""
    if not _is_real(value) or not ok(value):
        raise SpecError(
            f"Layer {layer.name} ({layer.kind}): {what} must be {requirement}, got {shown(value)}."
        )


def _check_flags(layer: Layer, **values: Any) -> None:
    for what, value in values.items():
        if not isinstance(value, bool):
            raise SpecError(
                f"Layer {layer.name} ({layer.kind}): {what} must be true or false, got {shown(value)}."
            )


@dataclass(frozen=True)
class Conv(Layer):
    """2-D convolution: `out_channels` filters of `kernel`, moved by `stride`, input padded by `padding`.

    `groups` splits input and output channels into independent groups (AlexNet's two GPUs: groups=2).
    """

    out_channels: int = 1
    kernel: Size = 3
    stride: Size = 1
    padding: Size = 0
    groups: int = 1
    dilation: Size = 1
    bias: bool = True
    kind: ClassVar[str] = "conv"

    def __post_init__(self) -> None:
        super().__post_init__()
        for f in ("kernel", "stride", "padding", "dilation"):
            object.__setattr__(self, f, pair(getattr(self, f), f"{self.name}: {f}"))
        _check_whole(self, 1, out_channels=self.out_channels, groups=self.groups)
        _check_whole(self, 1, pairs=True, kernel=self.kernel, stride=self.stride, dilation=self.dilation)
        _check_whole(self, 0, pairs=True, padding=self.padding)
        _check_flags(self, bias=self.bias)
        if self.out_channels % self.groups:
            raise SpecError(
                f"Layer {self.name} (conv): {self.out_channels} filters cannot be split into "
                f"{self.groups} groups; make out_channels a multiple of groups."
            )

    @property
    def has_parameters(self) -> bool:
        return True


@dataclass(frozen=True)
class Pool(Layer):
    """The geometry that max and average pooling share: `kernel` windows moved by `stride` (default:
    the kernel), the input padded by `padding`. No parameters. Not a node type of its own: a network
    holds a `MaxPool` or an `AvgPool`, and code that means either tests `isinstance(layer, Pool)`.

    `ceil_mode` rounds a non-integer output size up (Caffe's convention) instead of down (PyTorch's).
    """

    kernel: Size = 2
    stride: Size | None = None
    padding: Size = 0
    ceil_mode: bool = False
    kind: ClassVar[str] = "pool"
    op: ClassVar[str] = ""  # what the window computes: "max" or "avg"

    def __post_init__(self) -> None:
        if type(self) is Pool:
            raise TypeError("Pool is the shared geometry of MaxPool and AvgPool; make one of those.")
        super().__post_init__()
        object.__setattr__(self, "kernel", pair(self.kernel, f"{self.name}: kernel"))
        stride = self.kernel if self.stride is None else self.stride
        object.__setattr__(self, "stride", pair(stride, f"{self.name}: stride"))
        object.__setattr__(self, "padding", pair(self.padding, f"{self.name}: padding"))
        _check_whole(self, 1, pairs=True, kernel=self.kernel, stride=self.stride)
        _check_whole(self, 0, pairs=True, padding=self.padding)
        _check_flags(self, ceil_mode=self.ceil_mode)
        for p, k in zip(self.padding, self.kernel):
            if 2 * p > k:
                raise SpecError(
                    f"Layer {self.name} ({self.kind}): padding {p} is more than half the kernel {k}; "
                    "PyTorch refuses this. Use padding <= kernel // 2."
                )


@dataclass(frozen=True)
class MaxPool(Pool):
    """Max pooling: the largest value of each window (`Pool` gives the geometry)."""

    kind: ClassVar[str] = "maxpool"
    op: ClassVar[str] = "max"


@dataclass(frozen=True)
class AvgPool(Pool):
    """Average pooling: the mean of each window, padding counted as zeros (`Pool` gives the geometry)."""

    kind: ClassVar[str] = "avgpool"
    op: ClassVar[str] = "avg"


@dataclass(frozen=True)
class AdaptiveAvgPool(Layer):
    """Average pooling to a fixed output size whatever the input (torchvision's AlexNet and VGG)."""

    output_size: Size = 1
    kind: ClassVar[str] = "adaptiveavgpool"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "output_size", pair(self.output_size, f"{self.name}: output_size"))
        _check_whole(self, 1, pairs=True, output_size=self.output_size)


@dataclass(frozen=True)
class LRN(Layer):
    """Local response normalisation across `size` adjacent channels, as the AlexNet paper writes it:

    b = a / (k + alpha * sum(a^2)) ** beta. Note: torch.nn.LocalResponseNorm divides alpha by `size`;
    the builder passes alpha * size so that the module computes the paper's formula.
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0
    kind: ClassVar[str] = "lrn"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_whole(self, 1, size=self.size)
        _check_real(self, "alpha", self.alpha, lambda v: v >= 0, "a number, zero or more")
        _check_real(self, "beta", self.beta, lambda v: v >= 0, "a number, zero or more")
        _check_real(self, "k", self.k, lambda v: v > 0, "a positive number (it keeps the division defined)")


@dataclass(frozen=True)
class ReLU(Layer):
    """max(0, x), element by element. No parameters."""

    kind: ClassVar[str] = "relu"


@dataclass(frozen=True)
class Tanh(Layer):
    """tanh(x), element by element: the saturating non-linearity AlexNet replaced with ReLU (its Figure
    1: six times fewer epochs to 25% training error with ReLU). No parameters."""

    kind: ClassVar[str] = "tanh"


@dataclass(frozen=True)
class Sigmoid(Layer):
    """1 / (1 + exp(-x)), element by element: the lecture's other "sigmoid or tanh". No parameters."""

    kind: ClassVar[str] = "sigmoid"


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation over channels: a scale and a shift per channel (2C parameters)."""

    eps: float = 1e-5
    momentum: float | None = 0.1
    kind: ClassVar[str] = "batchnorm"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_real(self, "eps", self.eps, lambda v: v > 0, "a small positive number, e.g. 1e-5")
        if self.momentum is not None:
            _check_real(self, "momentum", self.momentum, lambda v: 0 <= v <= 1,
                        "a number from 0 to 1 (or null: a cumulative average)")  # fmt: skip

    @property
    def has_parameters(self) -> bool:
        return True


@dataclass(frozen=True)
class Dropout(Layer):
    """Zeroes each activation with probability `p` while training. No parameters."""

    p: float = 0.5
    kind: ClassVar[str] = "dropout"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_real(self, "p", self.p, lambda v: 0 <= v < 1, "a probability in [0, 1)")


@dataclass(frozen=True)
class Flatten(Layer):
    """Turns a C x H x W volume into a vector of C*H*W values (channel-major, as torch.flatten)."""

    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True)
class Linear(Layer):
    """Fully connected layer to `out_features` values; its input size is whatever reaches it."""

    out_features: int = 1
    bias: bool = True
    kind: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_whole(self, 1, out_features=self.out_features)
        _check_flags(self, bias=self.bias)

    @property
    def has_parameters(self) -> bool:
        return True


@dataclass(frozen=True)
class Opaque(Layer):
    """A layer whose arithmetic ilsvrc does not know: an attention block, a custom op, a torch module
    with no spec node (what `ilsvrc.from_module` makes of them).

    It holds what a trace saw: the volume it received (`input`) and gave (`output`), each as
    [channels, height, width] or [length] for a flat vector, and its parameter count (`params`);
    `what` says what it is (e.g. 'torch.nn.GELU'). Its multiply-adds are unknown, not zero: the
    analyzer shows them as unknown, marks every total that includes them as a lower bound, and warns
    naming the layer. It is only known at the input it was traced with, and it cannot be built into a
    torch module (`ilsvrc.nn.build` refuses it).
    """

    input: tuple[int, ...] = (1,)
    output: tuple[int, ...] = (1,)
    params: int = 0
    what: str = ""
    kind: ClassVar[str] = "opaque"

    def __post_init__(self) -> None:
        super().__post_init__()
        for what in ("input", "output"):
            shape = getattr(self, what)
            if not isinstance(shape, tuple) or len(shape) not in (1, 3):
                raise SpecError(
                    f"Layer {self.name} (opaque): {what} must be [channels, height, width] or [length] "
                    f"(a flat vector), got {shown(shape)}."
                )
            _check_whole(self, 1, pairs=True, **{what: shape})
        _check_whole(self, 0, params=self.params)
        if not isinstance(self.what, str) or not self.what.isprintable():
            raise SpecError(
                f"Layer {self.name} (opaque): what must be printable text, got {shown(self.what)}."
            )

    @property
    def has_parameters(self) -> bool:
        return self.params > 0


def _check_children(owner: Layer, layers: tuple[Layer, ...], what: str) -> None:
    if not isinstance(layers, tuple) or not all(isinstance(x, Layer) for x in layers):
        raise SpecError(f"Layer {owner.name} ({owner.kind}): {what} must be a tuple of layers.")
    dupes = sorted(n for n, count in Counter(x.name for x in layers).items() if count > 1)
    if dupes:
        raise SpecError(
            f"Layer {owner.name} ({owner.kind}): the name(s) {', '.join(dupes)} appear more than once "
            f"in its {what}; every layer at one level needs its own name."
        )


@dataclass(frozen=True)
class Block(Layer):
    """Layers applied one after another, under one name (a VGG stage, a ResNet block's body)."""

    layers: tuple[Layer, ...] = ()
    kind: ClassVar[str] = "block"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_children(self, self.layers, "layers")


@dataclass(frozen=True)
class Concat(Layer):
    """Parallel branches, each a `Block`, applied to the same input; outputs joined along channels.

    All branches must give the same height and width (GoogLeNet's Inception module).
    """

    branches: tuple[Block, ...] = ()
    kind: ClassVar[str] = "concat"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_children(self, self.branches, "branches")
        if not self.branches or not all(isinstance(b, Block) for b in self.branches):
            raise SpecError(
                f"Layer {self.name} (concat): branches must be one or more blocks, "
                "each a named list of layers."
            )


@dataclass(frozen=True)
class Residual(Layer):
    """out = body(x) + shortcut(x); an empty shortcut is the identity (ResNet's basic block).

    Body and shortcut must give the same volume.
    """

    body: Block = field(default_factory=lambda: Block("body"))
    shortcut: Block | None = None
    kind: ClassVar[str] = "residual"

    def __post_init__(self) -> None:
        super().__post_init__()
        for what, part in (("body", self.body), ("shortcut", self.shortcut)):
            if part is not None and not isinstance(part, Block):
                raise SpecError(f"Layer {self.name} (residual): {what} must be a block of layers.")
        if self.shortcut is not None and self.shortcut.name == self.body.name:
            raise SpecError(
                f"Layer {self.name} (residual): body and shortcut are both named {self.body.name!r}; "
                "give them different names (they become submodule names)."
            )


@dataclass(frozen=True)
class Aux(Layer):
    """An auxiliary classifier (GoogLeNet's): a side branch that ends in its own logits.

    It reads the volume at its place in the network, runs `layers` (which end in a fully connected
    layer) and passes the volume it read on, unchanged, to the next layer. It exists for training:
    its cross-entropy loss, times `weight` (GoogLeNet: 0.3), is added to the main loss; at test time
    it is not run. The analyzer counts it apart (parameters and multiply-adds with and without the
    auxiliary heads); the torch module returns its logits in training mode only. An Aux sits at the
    top level of a network, not inside a block, branch or residual.
    """

    layers: tuple[Layer, ...] = ()
    weight: float = 0.3
    kind: ClassVar[str] = "aux"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_children(self, self.layers, "layers")
        if not self.layers or not isinstance(self.layers[-1], Linear):
            raise SpecError(
                f"Layer {self.name} (aux): an auxiliary classifier ends in its own logits, so its last "
                "layer must be a linear layer (e.g. {type: linear, out_features: 1000})."
            )
        share = "a number, zero or more (the share of its loss in the total, 0.3 in GoogLeNet)"
        _check_real(self, "weight", self.weight, lambda v: v >= 0, share)


NODE_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (
        Conv,
        MaxPool,
        AvgPool,
        AdaptiveAvgPool,
        LRN,
        ReLU,
        Tanh,
        Sigmoid,
        BatchNorm,
        Dropout,
        Flatten,
        Linear,
        Opaque,
        Block,
        Concat,
        Residual,
        Aux,
    )
}


@dataclass(frozen=True)
class ModelInfo:
    """What a network is: where it comes from and the defaults every tool reads instead of guessing."""

    title: str = ""
    year: int | None = None
    paper: str = ""
    result: str = ""
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    notes: str = ""

    def __post_init__(self) -> None:
        for what in ("title", "paper", "result", "notes"):
            text = getattr(self, what)
            if not isinstance(text, str):
                raise SpecError(f"info: {what} must be text, got {shown(text)}.")
            if not text.replace("\n", " ").isprintable():
                raise SpecError(
                    f"info: {what} {shown(text)} holds a character that cannot be printed (a control "
                    "character or a lone surrogate such as \\ud800); write plain text."
                )
        if self.year is not None and not is_whole(self.year):
            raise SpecError(f"info: year must be a whole number such as 2012, got {shown(self.year)}.")
        for what, positive in (("mean", False), ("std", True)):
            value = getattr(self, what)
            if (
                not isinstance(value, (tuple, list))
                or len(value) != 3
                or not all(_is_real(v) and (v > 0 or not positive) for v in value)
            ):
                need = "three positive numbers" if positive else "three numbers"
                raise SpecError(
                    f"info: {what} must be {need}, one per RGB channel (pixel values in [0, 1]), "
                    f"got {shown(value)}."
                )
            object.__setattr__(self, what, tuple(float(v) for v in value))


@dataclass(frozen=True)
class Network:
    """A whole network: name, default input volume (channels, height, width), layers, metadata."""

    name: str
    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]
    info: ModelInfo = field(default_factory=ModelInfo)

    def __post_init__(self) -> None:
        shape = self.input_shape
        if (
            not isinstance(shape, tuple)
            or len(shape) != 3
            or not all(is_whole(v) and 0 < v <= MAX_SIZE for v in shape)
        ):
            raise SpecError(
                f"Network {shown(self.name)}: input must be three positive whole numbers "
                f"(channels, height, width), e.g. [3, 224, 224]; got {shown(shape)}."
            )
        if not isinstance(self.name, str) or not self.name or not self.name.isprintable():
            raise SpecError(
                f"Network name {shown(self.name)} is not usable: a network's name is printable text "
                "(letters, digits, punctuation, spaces; no control characters or lone surrogates such as "
                "\\ud800), e.g. 'my-alexnet'."
            )
        if not isinstance(self.info, ModelInfo):
            raise SpecError(f"Network {self.name}: info must be a ModelInfo, got {shown(self.info)}.")
        if not self.layers:
            raise SpecError(f"Network {self.name} has no layers.")
        holder = Block("network", tuple(self.layers))  # reuses the duplicate-name check
        del holder
        for name, layer in walk(self.layers):
            if isinstance(layer, Aux) and "." in name:
                raise SpecError(
                    f"Layer {name} (aux): an auxiliary classifier sits at the top level of the network "
                    "(it branches off the main chain, as GoogLeNet's do after inception4a and 4d), "
                    "not inside a block, branch or residual."
                )

    @property
    def aux_heads(self) -> tuple[Aux, ...]:
        """The auxiliary classifiers, in order (GoogLeNet: aux1 after inception4a, aux2 after 4d)."""
        return tuple(layer for layer in self.layers if isinstance(layer, Aux))

    def with_input(self, shape: tuple[int, int, int]) -> Network:
        return dataclasses.replace(self, input_shape=tuple(shape))

    def with_num_classes(self, num_classes: int) -> Network:
        """The same network with its last fully connected layer giving `num_classes` outputs (and the
        last one of each auxiliary classifier too)."""
        if not is_whole(num_classes) or not 0 < num_classes <= MAX_SIZE:
            raise SpecError(f"num_classes must be a positive whole number, got {shown(num_classes)}.")

        def last_to(layer: Linear) -> Linear:
            return dataclasses.replace(layer, out_features=num_classes)

        layers = [
            dataclasses.replace(x, layers=(*x.layers[:-1], last_to(x.layers[-1])))
            if isinstance(x, Aux)
            else x
            for x in self.layers
        ]
        for i in range(len(layers) - 1, -1, -1):
            if isinstance(layers[i], Linear):
                layers[i] = last_to(layers[i])
                return dataclasses.replace(self, layers=tuple(layers))
        raise SpecError(
            f"Network {self.name} has no fully connected layer at its top level, so num_classes "
            "cannot be set; end the network with a linear layer."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input": list(self.input_shape),
            "layers": [layer.to_dict() for layer in self.layers],
        }


def walk(layers: tuple[Layer, ...], prefix: str = "") -> list[tuple[str, Layer]]:
    """Every node below `layers`, depth first, with its dotted name (the torch module path)."""
    out: list[tuple[str, Layer]] = []
    for layer in layers:
        qualified = f"{prefix}{layer.name}"
        out.append((qualified, layer))
        if isinstance(layer, (Block, Aux)):
            out.extend(walk(layer.layers, qualified + "."))
        elif isinstance(layer, Concat):
            out.extend(walk(layer.branches, qualified + "."))
        elif isinstance(layer, Residual):
            parts = (layer.body,) + ((layer.shortcut,) if layer.shortcut else ())
            out.extend(walk(parts, qualified + "."))
    return out
