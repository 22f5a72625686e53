"""Caffe's prototxt files (deploy.prototxt, train_val.prototxt) as spec networks, without Caffe.

`from_prototxt(path_or_text, phase="test")` reads the file with `textformat`, keeps the layers of the
chosen phase (Caffe's `include`/`exclude { phase: ... }` rules), follows the blobs from layer to layer
(a ReLU whose top is its bottom works in place), and gives the graph to `graph.nest`, which finds the
concatenations (Inception modules), the sums (ResNet's Eltwise) and the side classifiers (GoogLeNet's
loss1/ and loss2/ heads, whose loss_weight becomes the Aux weight). docs/caffe.md has the mapping
table; in short:

    Convolution -> conv      Pooling -> maxpool/avgpool (ceil_mode: Caffe rounds sizes up)
    InnerProduct -> linear (a flatten before it when its input is a volume)
    LRN -> lrn (alpha / local_size: Caffe divides alpha by the size, the spec does not)
    ReLU, Dropout -> relu, dropout     BatchNorm + Scale -> one batchnorm
    Concat -> concat         Eltwise SUM -> residual          Split -> nothing (the blob is shared)
    Softmax, *Loss, Accuracy, Silence -> left out (a loss marks its input as an output)
    Input / input_dim / input_shape / Data, ImageData, MemoryData, DummyData -> the input volume
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import SpecError, SpecFileError, shown
from ..spec import (
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
    ReLU,
)
from .graph import Node, nest
from .textformat import Ident, Message, parse

PHASES = ("test", "train")

# the old `layers { type: CONVOLUTION }` form's enum -> today's type name
V1_TYPES = {
    "CONVOLUTION": "Convolution",
    "POOLING": "Pooling",
    "LRN": "LRN",
    "RELU": "ReLU",
    "INNER_PRODUCT": "InnerProduct",
    "CONCAT": "Concat",
    "ELTWISE": "Eltwise",
    "DROPOUT": "Dropout",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "ACCURACY": "Accuracy",
    "DATA": "Data",
    "IMAGE_DATA": "ImageData",
    "MEMORY_DATA": "MemoryData",
    "DUMMY_DATA": "DummyData",
    "FLATTEN": "Flatten",
    "SPLIT": "Split",
    "SILENCE": "Silence",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "HINGE_LOSS": "HingeLoss",
    "INFOGAIN_LOSS": "InfogainLoss",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
}
DATA = ("Input", "Data", "ImageData", "MemoryData", "DummyData")
LAYERS = (
    "Convolution",
    "Pooling",
    "LRN",
    "ReLU",
    "InnerProduct",
    "Dropout",
    "BatchNorm",
    "Scale",
    "Flatten",
    "Concat",
    "Eltwise",
    "Split",
)
IGNORED = ("Softmax", "Accuracy", "Silence")  # and every type ending in "Loss"
SUPPORTED = (*DATA, *LAYERS, *IGNORED, "...Loss")


def from_prototxt(source: str | Path, *, phase: str = "test") -> Network:
    """The network a Caffe prototxt describes, for the phase `phase` ("test", the default, or "train").

    `source` is a path (a Path, or a string naming a file) or the prototxt text itself. Errors are
    SpecFileError (or SpecError for a graph the spec cannot hold), one paragraph naming the line.
    """
    if phase not in PHASES:
        raise SpecFileError(f"phase must be 'test' or 'train' (Caffe's TEST and TRAIN), not {shown(phase)}.")
    text, where, stem = _read(source)
    return _Importer(parse(text, where), where, phase).network(stem)


def _read(source: str | Path) -> tuple[str, str, str]:
    """(text, how errors name it, a default network name)."""
    text = not isinstance(source, Path) and ("\n" in source or "{" in source)
    if not text and not Path(source).is_file() and not str(source).lower().endswith(".prototxt"):
        text = ":" in str(source)  # one line of prototxt (input: "data" ...) rather than a path
    if not text:
        path = Path(source)
        if not path.is_file():
            raise SpecFileError(
                f"{path} is not a file; give the path of a Caffe .prototxt file (deploy.prototxt, "
                "train_val.prototxt)."
            )
        try:
            return path.read_text(encoding="utf-8"), str(path), path.stem
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecFileError(
                f"{path} cannot be read as text: {exc}. A prototxt is a UTF-8 text file."
            ) from None
    return source, "<prototxt>", "prototxt"


@dataclass
class _Layer:
    """One Caffe layer of the chosen phase, in either form."""

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    msg: Message

    def param(self, name: str) -> Message:
        value = self.msg.get(name)
        return value if isinstance(value, Message) else Message(self.msg.line, self.msg.column)


@dataclass
class _State:
    nodes: list[Node] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    blob: dict[str, str] = field(default_factory=dict)  # blob -> the node that last wrote it
    flat: set[str] = field(default_factory=set)  # nodes whose output is a vector
    kinds: dict[str, str] = field(default_factory=dict)  # node -> Caffe type
    losses: dict[str, float] = field(default_factory=dict)  # node -> loss weight of the loss it feeds
    shape: tuple[int, int, int] | None = None


class _Importer:
    def __init__(self, root: Message, where: str, phase: str) -> None:
        self.root = root
        self.where = where
        self.phase = phase

    def fail(self, layer: _Layer | None, line: int, what: str) -> SpecFileError:
        at = f"{self.where}:{line}: " + (f"layer {layer.name!r} ({layer.type}): " if layer else "")
        return SpecFileError(at + what)

    # -- reading -------------------------------------------------------------------------------------

    def layers(self) -> list[_Layer]:
        new, old = self.root.all("layer"), self.root.all("layers")
        if new and old:
            line = self.root.where("layers")[0]
            raise self.fail(
                None,
                line,
                "the file mixes `layer { ... }` and the old `layers { ... }` "
                "form; Caffe reads one or the other. Upgrade the old ones (Caffe's "
                "upgrade_net_proto_text does) or write all in one form.",
            )
        out = []
        for msg in new or old:
            if not isinstance(msg, Message):
                raise self.fail(
                    None,
                    self.root.where("layer" if new else "layers")[0],
                    "a layer is a message: layer { name: ... type: ... }.",
                )
            kind = msg.get("type")
            name = msg.get("name", f"layer{len(out) + 1}")
            if not isinstance(kind, str):
                raise self.fail(
                    None, msg.line, f'layer {name!r} has no type; give it one, e.g. type: "Convolution".'
                )
            if isinstance(kind, Ident) or old:
                kind = V1_TYPES.get(kind.upper(), kind)
            layer = _Layer(
                str(name), kind, [str(b) for b in msg.all("bottom")], [str(t) for t in msg.all("top")], msg
            )
            if self.in_phase(layer):
                out.append(layer)
        unknown = [x for x in out if x.type not in SUPPORTED and not x.type.endswith("Loss")]
        if unknown:
            listed = "; ".join(f"{x.type} ({x.name!r}, line {x.msg.line})" for x in unknown[:8])
            more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
            raise SpecFileError(
                f"{self.where}: layer types the spec has no node for: {listed}{more}. Supported: "
                f"{', '.join(SUPPORTED)}. Replace each with supported layers, or remove it if the "
                "analysis can do without it."
            )
        return out

    def in_phase(self, layer: _Layer) -> bool:
        """Caffe's rule: with `include` rules, one must match; no `exclude` rule may match. A rule
        matches when its phase (if it has one) is ours; levels and stages are not considered."""
        ours = self.phase.upper()

        def matches(rule: Any) -> bool:
            if not isinstance(rule, Message):
                raise self.fail(layer, layer.msg.line, "include and exclude are rules: { phase: TEST }.")
            phase = str(rule.get("phase", ours)).upper()
            return {"0": "TRAIN", "1": "TEST"}.get(phase, phase) == ours  # the enum's numbers

        includes, excludes = layer.msg.all("include"), layer.msg.all("exclude")
        if includes and not any(matches(r) for r in includes):
            return False
        return not any(matches(r) for r in excludes)

    # -- building ------------------------------------------------------------------------------------

    def network(self, stem: str) -> Network:
        state = _State()
        self.top_level_input(state)
        for layer in self.layers():
            self.add(layer, state)
        if state.shape is None:
            raise self.no_input()
        outputs, weights = self.outputs(state)
        layers = nest(state.nodes, outputs, aux_weights=weights, where=self.where)
        name = self.root.get("name")
        name = name if isinstance(name, str) and name.strip() and name.isprintable() else stem
        return Network(
            name,
            state.shape,
            layers,
            ModelInfo(
                title=f"read from the Caffe prototxt {self.where} ({self.phase.upper()} phase)",
                notes="Imported from Caffe: pooling rounds sizes up (ceil_mode), LRN's alpha divided by "
                "local_size into the paper's form, BatchNorm + Scale as one batch norm.",
            ),
        )

    def no_input(self) -> SpecFileError:
        return SpecFileError(
            f'{self.where}: the input size is not given. Caffe files give it as `input: "data"` '
            "with four `input_dim` (N, C, H, W), as `input_shape { dim: ... }`, as an Input layer, "
            "or by a Data layer's transform_param { crop_size: ... }; add one of these."
        )

    def top_level_input(self, state: _State) -> None:
        blobs = self.root.all("input")
        if not blobs:
            return
        if len(blobs) > 1:
            raise self.fail(
                None,
                self.root.where("input")[0],
                f"{len(blobs)} inputs ({', '.join(map(str, blobs))}); the spec takes one input image.",
            )
        dims = self.root.all("input_dim")
        shapes = self.root.all("input_shape")
        if shapes and isinstance(shapes[0], Message):
            dims = shapes[0].all("dim")
        line = self.root.where("input_dim" if not shapes else "input_shape")[0]
        self.set_input(state, str(blobs[0]), self.shape(dims, None, line), None)

    def shape(self, dims: list[Any], layer: _Layer | None, line: int) -> tuple[int, int, int]:
        if len(dims) != 4 or not all(_whole(d) and d > 0 for d in dims):
            raise self.fail(
                layer,
                line,
                f"the input shape must be four positive whole numbers (N, C, "
                f"H, W: dim: 10 dim: 3 dim: 227 dim: 227), got {shown(dims)}.",
            )
        return (dims[1], dims[2], dims[3])

    def set_input(self, state: _State, blob: str, shape: tuple[int, int, int], layer: _Layer | None) -> None:
        if state.shape is not None:
            line = layer.msg.line if layer else 1
            raise self.fail(
                layer,
                line,
                "a second input; the spec takes one input image (a prototxt "
                "gives its input once: input_dim, input_shape, an Input or a Data layer).",
            )
        state.shape = shape
        node = f"<input {blob}>"  # not a spec name, so no layer can take it
        state.nodes.append(Node(node, "input", ()))
        state.blob[blob] = node

    def add(self, layer: _Layer, state: _State) -> None:
        kind = layer.type
        if kind in DATA:
            if not layer.tops:
                raise self.fail(layer, layer.msg.line, "a data layer needs a top (the image blob).")
            self.set_input(state, layer.tops[0], self.data_shape(layer), layer)
            return
        missing = [b for b in layer.bottoms if b not in state.blob]
        if missing and state.shape is None:
            raise self.no_input()
        if missing and not (kind in IGNORED or kind.endswith("Loss")):
            raise self.fail(
                layer,
                layer.msg.line,
                f"bottom {', '.join(map(repr, missing))} is not the "
                "top of any layer before it (nor the input); check the name, and that the "
                "layer giving it is in this phase.",
            )
        if kind in IGNORED or kind.endswith("Loss"):
            if kind.endswith("Loss") and layer.bottoms and layer.bottoms[0] in state.blob:
                weight = _Getter(self, layer).real(layer.msg, "loss_weight", 1.0)
                node = state.blob[layer.bottoms[0]]
                state.losses[node] = max(state.losses.get(node, 0.0), weight)
            return
        if not layer.bottoms:
            raise self.fail(layer, layer.msg.line, "no bottom: say which blob it reads (bottom: ...).")
        inputs = [state.blob[b] for b in layer.bottoms]
        tops = layer.tops or [layer.name]
        if kind == "Split":
            for top in tops:
                state.blob[top] = inputs[0]
            return
        if kind in ("Concat", "Eltwise"):
            op = self.join(layer)
            node = self.node(state, layer.name, op, tuple(inputs), None, kind)
        elif kind == "Scale":
            node = self.scale(layer, state, inputs)
        elif len(inputs) != 1:
            raise self.fail(layer, layer.msg.line, f"{len(inputs)} bottoms; a {kind} layer reads one.")
        else:
            try:
                spec = self.convert(layer)
            except SpecError as exc:  # what the spec refuses (a pooling pad over half its kernel...)
                raise self.fail(layer, layer.msg.line, str(exc)) from None
            source = inputs[0]
            if kind == "Flatten" and source in state.flat:
                node = source
            else:
                if isinstance(spec, Linear) and source not in state.flat:
                    flat = self.node(
                        state,
                        _flatten_name(layer.name, source),
                        "layer",
                        (source,),
                        Flatten("flatten"),
                        "Flatten",
                    )
                    source = flat
                    state.flat.add(flat)
                node = self.node(state, layer.name, "layer", (source,), spec, kind)
                if isinstance(spec, (Linear, Flatten)) or (source in state.flat and kind != "Pooling"):
                    state.flat.add(node)
        for top in tops:
            state.blob[top] = node

    def node(
        self, state: _State, caffe_name: str, op: str, inputs: tuple[str, ...], spec: Layer | None, kind: str
    ) -> str:
        name = base = _spec_name(caffe_name)
        k = 1
        while name in state.names:
            k += 1
            name = f"{base}_{k}"
        state.names.add(name)
        state.nodes.append(Node(name, op, inputs, spec))
        state.kinds[name] = kind
        return name

    def outputs(self, state: _State) -> tuple[list[str], list[float]]:
        """The main output (the blob with the heaviest loss, or the last end) and the side ones."""
        read = {p for n in state.nodes for p in n.inputs}
        ends = [n.name for n in state.nodes if n.op != "input" and n.name not in read]
        if not ends:
            raise SpecFileError(
                f"{self.where}: no layer computes anything from the input; a network "
                "needs at least one layer between its input and its output."
            )
        weighted = [e for e in ends if e in state.losses]
        main = max(reversed(weighted), key=lambda e: state.losses[e]) if weighted else ends[-1]
        sides = [e for e in ends if e != main]
        return [main, *sides], [state.losses.get(e, 0.3) for e in sides]

    # -- one layer -----------------------------------------------------------------------------------

    def data_shape(self, layer: _Layer) -> tuple[int, int, int]:
        if layer.type == "Input":
            shapes = layer.param("input_param").all("shape")
            dims = shapes[0].all("dim") if shapes and isinstance(shapes[0], Message) else []
            return self.shape(dims, layer, layer.msg.line)
        if layer.type == "DummyData":
            shapes = layer.param("dummy_data_param").all("shape")
            dims = shapes[0].all("dim") if shapes and isinstance(shapes[0], Message) else []
            return self.shape(dims, layer, layer.msg.line)
        if layer.type == "MemoryData":
            p = layer.param("memory_data_param")
            dims = [p.get("batch_size", 1), p.get("channels"), p.get("height"), p.get("width")]
            return self.shape(dims, layer, layer.msg.line)
        crop = layer.param("transform_param").get("crop_size")
        for older in ("data_param", "image_data_param"):  # where crop_size lived before transform_param
            crop = crop if crop is not None else layer.param(older).get("crop_size")
        if crop is not None:
            return self.shape([1, 3, crop, crop], layer, layer.msg.line)
        p = layer.param("image_data_param")
        if p.get("new_height") and p.get("new_width"):
            return self.shape([1, 3, p.get("new_height"), p.get("new_width")], layer, layer.msg.line)
        raise self.fail(
            layer,
            layer.msg.line,
            "its images' size is not in the file: give it "
            "transform_param { crop_size: 227 } (the size the network sees), or use an "
            "Input layer with input_param { shape { dim: 1 dim: 3 dim: 227 dim: 227 } }.",
        )

    def convert(self, layer: _Layer) -> Layer:
        kind, name = layer.type, _spec_name(layer.name).rsplit(".", 1)[-1]
        get = _Getter(self, layer)
        if kind == "Convolution":
            p = get.of("convolution_param")
            return Conv(
                name,
                out_channels=get.whole(p, "num_output", None, 1),
                kernel=get.hw(p, "kernel_size", "kernel_h", "kernel_w", None, 1),
                stride=get.hw(p, "stride", "stride_h", "stride_w", 1, 1),
                padding=get.hw(p, "pad", "pad_h", "pad_w", 0, 0),
                dilation=get.hw(p, "dilation", None, None, 1, 1),
                groups=get.whole(p, "group", 1, 1),
                bias=get.flag(p, "bias_term", True),
            )
        if kind == "Pooling":
            p = get.of("pooling_param")
            pool = str(p.get("pool", "MAX")).upper()
            if pool not in ("MAX", "AVE"):
                raise self.fail(
                    layer,
                    p.where("pool")[0],
                    f"pool: {pool} is not supported; the spec has max (MAX) and average (AVE) pooling.",
                )
            if get.flag(p, "global_pooling", False):
                if pool == "MAX":
                    raise self.fail(
                        layer,
                        p.where("global_pooling")[0],
                        "global MAX pooling is not in "
                        "the spec (it has adaptive average pooling only); give kernel_size "
                        "equal to the input's size instead.",
                    )
                return AdaptiveAvgPool(name, 1)
            ceil = str(p.get("round_mode", "CEIL")).upper() != "FLOOR"
            cls = MaxPool if pool == "MAX" else AvgPool
            return cls(
                name,
                kernel=get.hw(p, "kernel_size", "kernel_h", "kernel_w", None, 1),
                stride=get.hw(p, "stride", "stride_h", "stride_w", 1, 1),
                padding=get.hw(p, "pad", "pad_h", "pad_w", 0, 0),
                ceil_mode=ceil,
            )
        if kind == "LRN":
            p = get.of("lrn_param")
            region = str(p.get("norm_region", "ACROSS_CHANNELS")).upper()
            if region != "ACROSS_CHANNELS":
                raise self.fail(
                    layer,
                    p.where("norm_region")[0],
                    f"norm_region: {region} is not "
                    "supported; the spec's LRN normalises across channels (ACROSS_CHANNELS).",
                )
            size = get.whole(p, "local_size", 5, 1)
            alpha = get.real(p, "alpha", 1.0)
            # Caffe: a / (k + alpha/n * sum a^2)^beta; the spec (the AlexNet paper's form) has no /n
            return LRN(
                name, size=size, alpha=alpha / size, beta=get.real(p, "beta", 0.75), k=get.real(p, "k", 1.0)
            )
        if kind == "ReLU":
            p = get.of("relu_param")
            if get.real(p, "negative_slope", 0.0) != 0:
                raise self.fail(
                    layer,
                    p.where("negative_slope")[0],
                    "a leaky ReLU (negative_slope not 0) is not in the spec; only max(0, x).",
                )
            return ReLU(name)
        if kind == "InnerProduct":
            p = get.of("inner_product_param")
            if get.whole(p, "axis", 1, -1) != 1:
                raise self.fail(
                    layer,
                    p.where("axis")[0],
                    "axis other than 1 is not supported; the "
                    "spec's fully connected layer reads the whole C x H x W volume.",
                )
            return Linear(name, get.whole(p, "num_output", None, 1), bias=get.flag(p, "bias_term", True))
        if kind == "Dropout":
            p = get.of("dropout_param")
            return Dropout(
                name, get.real(p, "dropout_ratio", 0.5, lambda v: 0 <= v < 1, "a probability in [0, 1)")
            )
        if kind == "BatchNorm":
            p = get.of("batch_norm_param")
            fraction = get.real(p, "moving_average_fraction", 0.999, lambda v: 0 <= v <= 1, "from 0 to 1")
            return BatchNorm(
                name, eps=get.real(p, "eps", 1e-5, lambda v: v > 0, "positive"), momentum=1 - fraction
            )
        if kind == "Flatten":
            p = get.of("flatten_param")
            if get.whole(p, "axis", 1, -9) != 1 or get.whole(p, "end_axis", -1, -9) != -1:
                raise self.fail(
                    layer,
                    layer.msg.line,
                    "only a flatten of everything after the batch axis (axis 1 to -1) is supported.",
                )
            return Flatten(name)
        raise AssertionError(kind)

    def join(self, layer: _Layer) -> str:
        get = _Getter(self, layer)
        if layer.type == "Concat":
            p = get.of("concat_param")
            axis = get.whole(p, "axis", get.whole(p, "concat_dim", 1, 0), -4)
            if axis not in (1, -3):
                raise self.fail(
                    layer,
                    p.where("axis")[0],
                    f"concatenation along axis {axis}; the spec concatenates along the channels (axis 1).",
                )
            return "concat"
        p = get.of("eltwise_param")
        op = str(p.get("operation", "SUM")).upper()
        if op != "SUM":
            raise self.fail(
                layer,
                p.where("operation")[0],
                f"operation: {op} is not supported; an "
                "Eltwise SUM becomes a residual connection, PROD and MAX have no spec node.",
            )
        coeffs = p.all("coeff")
        if any(c != 1 for c in coeffs):
            raise self.fail(
                layer,
                p.where("coeff")[0],
                f"coeff {shown(coeffs)}: only a plain sum (every coefficient 1) is a residual connection.",
            )
        if len(layer.bottoms) != 2:
            raise self.fail(
                layer,
                layer.msg.line,
                f"{len(layer.bottoms)} bottoms; a sum becomes a residual of two (a body and a shortcut).",
            )
        return "add"

    def scale(self, layer: _Layer, state: _State, inputs: list[str]) -> str:
        """A Scale right after a BatchNorm is the batch norm's scale and shift: the two are one node."""
        source = inputs[0]
        if len(inputs) != 1 or state.kinds.get(source) != "BatchNorm":
            raise self.fail(
                layer,
                layer.msg.line,
                "a Scale layer is read only right after a BatchNorm "
                "(Caffe's BatchNorm has no scale and shift of its own; the two together are "
                "one batch norm). A Scale elsewhere has no spec node.",
            )
        state.kinds[source] = "BatchNorm+Scale"
        return source


class _Getter:
    """Typed reads of one layer's parameters, each error naming the layer, field and line."""

    def __init__(self, importer: _Importer, layer: _Layer) -> None:
        self.imp, self.layer = importer, layer

    def of(self, name: str) -> Message:
        return self.layer.param(name)

    def bad(self, p: Message, what: str, value: Any, need: str) -> SpecFileError:
        return self.imp.fail(self.layer, p.where(what)[0], f"{what} must be {need}, got {shown(value)}.")

    def whole(self, p: Message, what: str, default: int | None, minimum: int) -> int:
        value = p.get(what, default)
        if value is None:
            raise self.imp.fail(self.layer, p.line, f"{what} is missing; a {self.layer.type} layer needs it.")
        if not _whole(value) or value < minimum:
            need = (
                "a positive whole number"
                if minimum == 1
                else "a whole number" + (", zero or more" if minimum == 0 else "")
            )
            raise self.bad(p, what, value, need)
        return value

    def hw(
        self, p: Message, what: str, h: str | None, w: str | None, default: int | None, minimum: int
    ) -> int | tuple[int, int]:
        if h and (p.has(h) or p.has(w)):
            if p.has(what):
                raise self.imp.fail(
                    self.layer,
                    p.where(h)[0],
                    f"both {what} and {h}/{w} are given; Caffe takes one or the other.",
                )
            return (self.whole(p, h, None, minimum), self.whole(p, w, None, minimum))
        values = p.all(what)
        if not values:
            if default is None:
                raise self.imp.fail(
                    self.layer,
                    p.line,
                    f"{what} (or {h} and {w}) is missing; a {self.layer.type} layer needs it.",
                )
            return default
        if len(values) > 2:
            raise self.imp.fail(
                self.layer,
                p.where(what)[0],
                f"{len(values)} values of {what}: "
                "only 2-D layers (one value, or height and width) are supported.",
            )
        for v in values:
            if not _whole(v) or v < minimum:
                raise self.bad(
                    p, what, v, "a positive whole number" if minimum else "a whole number, zero or more"
                )
        return values[0] if len(values) == 1 else (values[0], values[1])

    def flag(self, p: Message, what: str, default: bool) -> bool:
        value = p.get(what)
        if value is None:
            return default
        if isinstance(value, Ident) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if value in (0, 1) and _whole(value):
            return bool(value)
        raise self.bad(p, what, value, "true or false")

    def real(
        self, p: Message, what: str, default: float, ok=lambda v: v >= 0, need: str = "a number, zero or more"
    ) -> float:
        value = p.get(what, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not ok(value)
        ):
            raise self.bad(p, what, value, need)
        return float(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _spec_name(caffe_name: str) -> str:
    """A Caffe layer name as a dotted spec name: `/` separates levels (inception_3a/1x1 ->
    inception_3a._1x1), other characters than letters, digits and `_` become `_`, and a part that
    starts with a digit (but is not all digits) gets a leading `_`."""
    parts = []
    for part in caffe_name.split("/"):
        part = re.sub(r"[^A-Za-z0-9_]", "_", part) or "_"
        if part[0].isdigit() and not part.isdigit():
            part = "_" + part
        parts.append(part)
    return ".".join(parts)


def _flatten_name(caffe_name: str, source: str) -> str:
    """The flatten put before an InnerProduct: beside it when the layer it reads is at the same level
    too (loss1/relu_conv -> loss1/flatten -> loss1/fc, inside the side classifier loss1), else at the
    top (pool5/drop_7x7_s1 -> flatten -> loss3/classifier)."""
    level = caffe_name.rsplit("/", 1)[0] if "/" in caffe_name else ""
    same = level and source.rsplit(".", 1)[0] == _spec_name(level)
    return f"{level}/flatten" if same else "flatten"
