"""Evaluation: the papers' test protocols, top-1 and top-5 error, per-class accuracy, a confusion picture.

Protocols (`PROTOCOLS`), each turning a batch of images into class probabilities (`predict_probs`):

- "center": one centre crop at the training size, as torchvision's weight tables are measured; with
  `flips` (test-time flips, the `fast` recipe's `tta_flip`), the crop and its mirror image, their
  logits averaged before the softmax.
- "10crop": AlexNet's test [AK]: the four corner crops and the centre crop of the (256 x 256) image,
  and their horizontal flips; the softmax of each of the ten is averaged.
- "dense": VGG's test [VGG]: the fully connected layers become convolutions (`fully_convolutional`:
  fc6 a convolution whose kernel is the volume fc6 received, 7x7 for VGG at 224; fc7 and fc8 1x1),
  run over the whole image rescaled so its shorter side is Q. That gives a class-score map; the
  softmax at each position is averaged over the map, over the scales Q and over horizontal flips.
  Networks that end in a global average pooling (ResNet, torchvision's GoogLeNet) slide that pooling
  as a window of the extent it averaged at the training size (7x7 at 224), and GoogLeNet as published
  slides its own 7x7/1 average pooling: each score is the network on one training-size window, as
  with VGG. ResNet's "fully-convolutional form" [RN] is this test.

Every protocol averages probabilities (softmax outputs) over its views, except "center" with flips,
which averages the two views' logits (as test-time flipping does in the fast-training literature,
airbench for one; for two views of one image the two means differ little). All return the same:
`predict_probs` gives N x classes probabilities whose rows sum to one. `Meter` turns
scores and targets into top-1 / top-5 error (fractions in [0, 1]), per-class accuracy and the
confusion matrix; `evaluate` runs a whole DataLoader; `plot_confusion` draws the matrix.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..analysis.analyzer import analyze
from ..errors import IlsvrcError, ShapeError
from ..networks.spec import (
    AdaptiveAvgPool,
    Aux,
    Dropout,
    Flatten,
    Linear,
    Network,
    Pool,
    ReLU,
    Sigmoid,
    Tanh,
    walk,
)
from ..nn import Model
from . import distributed
from .transforms import NormalisedFloat, Pipeline

__all__ = [
    "PROTOCOLS",
    "EvalResult",
    "EvaluationError",
    "FullyConvolutional",
    "Meter",
    "dense_logits",
    "eval_input_transform",
    "evaluate",
    "flipped_logits",
    "fully_convolutional",
    "plot_confusion",
    "predict_probs",
    "ten_crop_logits",
]

PROTOCOLS = ("center", "10crop", "dense")

_AMP_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class EvaluationError(IlsvrcError):
    """An evaluation that cannot run as asked: unknown protocol, a network with no FC head to slide..."""


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise EvaluationError(
            f"Unknown evaluation protocol {protocol!r}; use one of {', '.join(PROTOCOLS)} "
            "(centre crop, AlexNet's ten crops, VGG's dense evaluation)."
        )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode inside the block; every submodule's own mode restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


# ---------------------------------------------------------------------------------------------------
# Ten crops


def _ten_crops(images: Tensor, crop: int) -> Tensor:
    """(10N) x C x crop x crop: for image n, rows 10n..10n+9 are its top-left, top-right, bottom-left,
    bottom-right and centre crops, then the horizontal flips of those five, in that order.

    The centre crop starts at round((H - crop) / 2), round((W - crop) / 2), as torchvision's
    `center_crop` does. The output keeps the input's memory format (channels-last in, channels-last out).
    """
    n, c, h, w = images.shape
    if crop > h or crop > w:
        raise ShapeError(
            f"Ten crops of {crop}x{crop} need images at least that large; got {h}x{w}. Resize the shorter "
            f"side to at least {crop} first (eval_input_transform('10crop', {crop}, ...) does)."
        )
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    corners = ((0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), (top, left))
    channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((n * 10, c, crop, crop), dtype=images.dtype, device=images.device, memory_format=fmt)
    for i, (y, x) in enumerate(corners):
        out[i::10] = images[:, :, y : y + crop, x : x + crop]
        out[i + 5 :: 10] = out[i::10].flip(-1)
    return out


def ten_crop_logits(model: Callable[[Tensor], Tensor], images: Tensor, crop: int) -> Tensor:
    """N x 10 x classes: the model's logits on the ten crops of each image of an N x 3 x H x W batch.

    `images` are normalised floats whose shorter side is already the evaluation size (AlexNet: 256 x 256
    for 224 crops). Crop k of image n is, for k = 0..4, the top-left, top-right, bottom-left,
    bottom-right and centre `crop` x `crop` window, and for k = 5..9 the horizontal flip of crop k - 5.
    All 10N crops go through the model in one forward pass. The model runs as it is: call this under
    `torch.inference_mode()` with the model in eval mode (`predict_probs` does both).
    """
    n = images.shape[0]
    return model(_ten_crops(images, crop)).reshape(n, 10, -1)


# ---------------------------------------------------------------------------------------------------
# Fully connected layers as convolutions


class FullyConvolutional(nn.Sequential):
    """A network whose fully connected layers are convolutions (VGG's dense evaluation).

    Children are named as in the source model; the convolutional part is the source's own modules
    (shared, not copied) and each fully connected layer is an `nn.Conv2d` whose weight is a view of the
    Linear's weight (same storage). A global average pooling (an AdaptiveAvgPool to 1x1) is replaced by
    an `nn.AvgPool2d` of the extent it averaged at the training size, stride 1. `kernel` is the first FC
    convolution's kernel (height, width) and `stride` the distance in input pixels between neighbouring
    positions of the score map: position (i, j) sees the window whose top-left corner is
    (i * stride[0], j * stride[1]) of the training size `input_shape` (exactly so where the
    convolutional part has no padding). `windows` names the layers that need a volume at least as large
    as at the training size, with what they are and that extent (height, width).
    """

    def __init__(self, modules: OrderedDict[str, nn.Module], spec: Network, input_shape: tuple[int, int, int],
                 first_fc: str, kernel: tuple[int, int], stride: tuple[float, ...],
                 windows: dict[str, tuple[str, tuple[int, int]]] | None = None) -> None:  # fmt: skip
        super().__init__(modules)
        self.spec = spec
        self.input_shape = input_shape
        self.first_fc = first_fc
        self.kernel = kernel
        self.stride = stride
        self.windows = {first_fc: ("convolution", kernel), **(windows or {})}

    def forward(self, x: Tensor) -> Tensor:
        """N x classes x h x w class scores (logits) for an N x C x H x W batch of any size >= training."""
        for name, module in self._modules.items():
            what, (kh, kw) = self.windows.get(name, ("", (0, 0)))
            if x.shape[-2] < kh or x.shape[-1] < kw:
                c, h, w = self.input_shape
                raise ShapeError(
                    f"{self.spec.name} as a fully convolutional net: layer {name} is a {kw}x{kh} {what} "
                    f"but receives a {x.shape[-1]}x{x.shape[-2]} volume. The image is smaller than the "
                    f"{w}x{h} the network was built for; use a scale of at least {min(h, w)}."
                )
            x = module(x)
        return x

    def extra_repr(self) -> str:
        c, h, w = self.input_shape
        return f"spec={self.spec.name!r}, trained at {c}x{h}x{w}, score-map stride={self.stride}"


def _linear_as_conv(linear: nn.Linear, in_channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    """A Conv2d computing `linear` at each position; its tensors are views of the Linear's (no copy)."""
    out = linear.out_features
    conv = nn.Conv2d(in_channels, out, kernel, bias=linear.bias is not None, device="meta")
    # torch.flatten is channel-major (c, then y, then x), so this reshape is exact
    conv.weight = nn.Parameter(linear.weight.detach().view(out, in_channels, *kernel), requires_grad=False)
    if linear.bias is not None:
        conv.bias = nn.Parameter(linear.bias.detach(), requires_grad=False)
    return conv


def fully_convolutional(model: Model) -> FullyConvolutional:
    """The network of `model` with its fully connected layers turned into convolutions.

    The convolutional part (every layer before the top-level flatten) is applied unchanged: the same
    module objects and weights. The first Linear after the flatten becomes a Conv2d whose kernel is
    the spatial size of the volume the flatten received at `model.input_shape` (AlexNet 6x6, VGG 7x7
    at 224), its weight viewed from (out, C*H*W) to (out, C, H, W); later Linears become 1x1
    convolutions. ReLU and dropout stay; the flatten goes. An AdaptiveAvgPool just before the flatten
    (dropout and ReLU aside) is dropped where it changes nothing at the training size (torchvision's
    AlexNet): over a larger image the FC convolution slides instead of seeing a pooled summary. A global
    one (to 1x1: ResNet, torchvision's GoogLeNet) becomes an average pooling of the extent it received
    at the training size, stride 1, so each score is the network on one training-size window; a fixed
    pooling there (GoogLeNet's 7x7/1 average) slides as it is. Auxiliary classifiers are left out (they
    are not run at test time).

    On an image of exactly the training size the output is N x classes x 1 x 1 and equals the model's
    logits; on a larger one it is a class-score map N x classes x h x w. The weights are shared views:
    move the model to its device and dtype before calling this (a later `.to()` copies them apart).
    For evaluation only (the FC convolutions do not require gradients).

    Raises EvaluationError if the model has no spec, no top-level flatten followed by linear layers,
    a head with anything but linear/ReLU/dropout layers (branches, blocks), or an adaptive pooling
    that is neither the identity nor a global pooling at the training size.
    """
    spec, input_shape = getattr(model, "spec", None), getattr(model, "input_shape", None)
    if not isinstance(spec, Network) or input_shape is None:
        raise EvaluationError(
            "fully_convolutional needs a module built by ilsvrc (ilsvrc.build or create_model), which "
            f"knows its spec and input size; got a {type(model).__name__}."
        )
    layers = spec.layers
    at = next((i for i, layer in enumerate(layers) if isinstance(layer, Flatten)), None)
    if at is None:
        nested = [name for name, layer in walk(layers) if isinstance(layer, Flatten)]
        where = f" (its flatten, {nested[0]}, is inside a block or branch)" if nested else ""
        raise EvaluationError(
            f"{spec.name} has no top-level flatten followed by fully connected layers{where}, so there "
            "is no classifier head to turn into convolutions. Dense evaluation needs "
            "conv part -> flatten -> linear (ReLU, dropout) layers; use 'center' or '10crop'."
        )
    # the auxiliary classifiers pass their input on unchanged and are not run at test time
    body = tuple(layer for layer in layers[:at] if not isinstance(layer, Aux))
    flatten, head = layers[at], layers[at + 1 :]
    odd = [layer for layer in head if not isinstance(layer, (Linear, ReLU, Tanh, Sigmoid, Dropout))]
    if odd:
        raise EvaluationError(
            f"{spec.name}: layer {odd[0].name} ({odd[0].kind}) comes after {flatten.name}; only a plain "
            "chain of linear, ReLU and dropout layers can become convolutions (no branched or nested "
            "heads). Use 'center' or '10crop' for this network."
        )
    if not any(isinstance(layer, Linear) for layer in head):
        raise EvaluationError(
            f"{spec.name} has no fully connected layer after {flatten.name}; dense evaluation turns "
            "fully connected layers into convolutions. Use 'center' or '10crop'."
        )
    stats = {row.name: row for row in analyze(spec, input_shape, suggest=False).rows}
    received = stats[flatten.name].input
    kernel = (received.height, received.width)
    modules: OrderedDict[str, nn.Module] = OrderedDict(
        (layer.name, model.get_submodule(layer.name)) for layer in body
    )
    # the last layer with an extent before the flatten: a pooling there is the window that slides
    spatial = [i for i, layer in enumerate(body) if not isinstance(layer, (Dropout, ReLU, Tanh, Sigmoid))]
    pool = body[spatial[-1]] if spatial else None
    jump_of = body[-1].name if body else None
    windows: dict[str, tuple[str, tuple[int, int]]] = {}
    if isinstance(pool, AdaptiveAvgPool):
        row = stats[pool.name]
        extent = (row.input.height, row.input.width)
        jump_of = body[spatial[-1] - 1].name if spatial[-1] > 0 else None  # the pool slides at stride 1
        if extent == (row.output.height, row.output.width):
            del modules[pool.name]
        elif (row.output.height, row.output.width) == (1, 1):
            modules[pool.name] = nn.AvgPool2d(extent, stride=1)
            windows[pool.name] = ("average pooling (the global pooling, sliding)", extent)
        else:
            c, h, w = input_shape
            raise EvaluationError(
                f"{spec.name} at {w}x{h}: {row.name} pools a {row.input} volume to {row.output}, so "
                f"{flatten.name} sees a pooled summary that a sliding convolution cannot reproduce. "
                f"Dense evaluation needs the model built at a size where {row.name} changes nothing "
                f"(its input already {row.output.width}x{row.output.height}, e.g. 224 for "
                "alexnet-torchvision), or a global pooling (to 1x1); or use 'center' or '10crop'."
            )
    elif isinstance(pool, Pool):  # GoogLeNet's 7x7/1 average pooling: a window that slides as it is
        extent = tuple(k - 2 * p for k, p in zip(pool.kernel, pool.padding))
        windows[pool.name] = ({"max": "max pooling", "avg": "average pooling"}[pool.op], extent)
    last = stats[jump_of].receptive_field if jump_of is not None else None
    jump = last.jump if last is not None else (1, 1)
    stride = tuple(int(j) if float(j).is_integer() else float(j) for j in jump)
    channels, first_fc = received.channels, ""
    for layer in head:
        module = model.get_submodule(layer.name)
        if isinstance(layer, Linear):
            size = kernel if not first_fc else (1, 1)
            if module.in_features != channels * size[0] * size[1]:
                raise EvaluationError(
                    f"{spec.name}: {layer.name} takes {module.in_features} values, but at "
                    f"{'x'.join(map(str, input_shape))} it should take {channels}*{size[0]}*{size[1]}; "
                    "the module was not built for its own input_shape."
                )
            module = _linear_as_conv(module, channels, size)
            first_fc, channels = first_fc or layer.name, layer.out_features
        modules[layer.name] = module
    return FullyConvolutional(modules, spec, tuple(input_shape), first_fc, kernel, stride, windows)


def dense_logits(model: Model | FullyConvolutional, images: Tensor) -> Tensor:
    """N x classes: log of the class posteriors averaged over the score map of the whole image.

    The fully convolutional net (`fully_convolutional`, built here unless `model` already is one) gives
    an N x classes x h x w score map; the softmax over classes at each position is averaged over the
    h x w positions (VGG averages the class score map, i.e. the posteriors), and the log of that mean
    is returned, so `softmax(dense_logits(...))` (or `.exp()`) is the averaged posterior. Computed as
    logsumexp(log_softmax) - log(h*w), in float32 at least. No resizing, no flips: see `predict_probs`.
    """
    net = model if isinstance(model, FullyConvolutional) else fully_convolutional(model)
    scores = _wide(net(images)).flatten(2)  # N x classes x (h*w)
    return torch.logsumexp(torch.log_softmax(scores, dim=1), dim=2) - math.log(scores.shape[2])


# ---------------------------------------------------------------------------------------------------
# Probabilities, protocol by protocol


def _wide(scores: Tensor) -> Tensor:
    """Scores in at least float32 (a bfloat16 forward under autocast; float64 stays float64)."""
    return scores.to(torch.promote_types(scores.dtype, torch.float32))


def _resize_shorter(images: Tensor, size: int) -> Tensor:
    """The batch resized (bilinear, antialiased) so its shorter side is `size`; as is if it already is."""
    if min(images.shape[-2:]) == size:
        return images
    return TF.resize(images, [size], antialias=True)


def flipped_logits(net: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
    """Test-time flips: the mean of the logits of each image and of its horizontal mirror, (net(x) +
    net(flip(x))) / 2, both views in one batch (one pass over the weights instead of two)."""
    n = len(images)
    both = net(torch.cat([images, images.flip(-1)]))
    return (_wide(both[:n]) + _wide(both[n:])) / 2


def _probs(net: Callable[[Tensor], Tensor], images: Tensor, protocol: str, crop: int | None,
           scales: Sequence[int], flips: bool | None) -> Tensor:  # fmt: skip
    """N x classes probabilities; `net` is the model, or its FullyConvolutional form for "dense".
    flips: None is the protocol's default (with them for "dense", without for "center")."""
    if protocol == "center":
        if crop is not None and tuple(images.shape[-2:]) != (crop, crop):
            h, w = images.shape[-2:]
            raise ShapeError(
                f"'center' evaluates images already centre-cropped to {crop}x{crop}; got {w}x{h}. "
                f"Use eval_input_transform('center', {crop}, ...)."
            )
        logits = flipped_logits(net, images) if flips else _wide(net(images))
        return torch.softmax(logits, dim=1)
    if protocol == "10crop":
        if crop is None:
            raise EvaluationError("'10crop' needs the crop size (the size the network was trained at).")
        return torch.softmax(_wide(ten_crop_logits(net, images, crop)), dim=2).mean(dim=1)
    total: Tensor | None = None
    views = 0
    for q in tuple(scales) or (crop,):
        if q is None:
            raise EvaluationError("'dense' needs scales, or the crop size to use as the one scale.")
        scaled = _resize_shorter(images, int(q))
        for view in (scaled, scaled.flip(-1)) if flips is None or flips else (scaled,):
            p = dense_logits(net, view).exp_()
            total = p if total is None else total.add_(p)
            views += 1
    assert total is not None
    return total.div_(views)


def predict_probs(model: nn.Module, images: Tensor, protocol: str, crop: int, scales: Sequence[int] = (),
                  flips: bool | None = None) -> Tensor:  # fmt: skip
    """N x classes class probabilities for a batch of normalised float images, by `protocol`.

    - "center": softmax(model(images)); images already centre-cropped to `crop` x `crop`. With
      `flips`: softmax((model(images) + model(mirrored images)) / 2) (`flipped_logits`).
    - "10crop": the softmax of each of the ten crops (`ten_crop_logits`) averaged; images are resized
      so their shorter side is the evaluation size (e.g. 256 x 256 for `crop` 224).
    - "dense": for each Q in `scales` (default `(crop,)`: the training size), the batch is resized so
      its shorter side is Q; the fully convolutional net's posteriors are averaged spatially
      (`dense_logits`), and those averages are averaged with equal weight over scales and, when
      `flips`, over the image and its horizontal flip. The normalised float tensor is resized
      (bilinear, antialiased): each output pixel is a weighted mean with weights summing to one, so
      this equals resizing before normalising, up to the rounding a uint8 resize would do. `model` must
      be an ilsvrc `Model` (or its `FullyConvolutional` form).

    `flips` (None: the protocol's default, with them for "dense", without for "center") does not apply
    to "10crop", whose ten views include their mirrors.

    Runs under torch.inference_mode with the model in eval mode; every submodule's mode is restored.
    """
    _check_protocol(protocol)
    net = model
    if protocol == "dense" and not isinstance(model, FullyConvolutional):
        net = fully_convolutional(model)  # built outside inference mode: its weights are plain views
    with eval_mode(model), torch.inference_mode():
        return _probs(net, images, protocol, crop, scales, flips)


# ---------------------------------------------------------------------------------------------------
# Metrics


@dataclass
class EvalResult:
    """What an evaluation measured.

    top1_error, top5_error: fractions in [0, 1] (top-5 means top-k with k = min(5, classes)).
    per_class_accuracy[c]: the fraction of class c's images whose top-1 guess is c (NaN for a class
    with no images). confusion[t][p]: images of true class t predicted (top-1) as p.
    """

    top1_error: float
    top5_error: float
    images: int
    per_class_accuracy: list[float]
    confusion: list[list[int]]
    protocol: str

    @property
    def num_classes(self) -> int:
        return len(self.confusion)

    @property
    def k(self) -> int:
        """The k of 'top-5': min(5, classes)."""
        return min(5, self.num_classes)

    def to_dict(self, digits: int = 6) -> dict[str, Any]:
        """Plain values for JSON: errors and accuracies rounded to `digits` decimals (0.408, not
        0.40800000000000003), and NaN (a class with no images, an evaluation of none) as None."""

        def plain(x: float) -> float | None:
            return None if math.isnan(x) else round(x, digits)

        out = asdict(self)
        out["top1_error"], out["top5_error"] = plain(self.top1_error), plain(self.top5_error)
        out["per_class_accuracy"] = [plain(a) for a in self.per_class_accuracy]
        return out


class Meter:
    """Top-1 / top-k hits and the confusion matrix, accumulated batch by batch.

    `update(scores, targets)` takes N x classes scores (probabilities or logits: only their order
    matters) and N class indices. Counts are kept as tensors on the scores' device and read once, by
    `result`. `num_classes` defaults to the width of the first scores.
    """

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.images = 0
        self._hits: Tensor | None = None  # [top-1 hits, top-k hits]
        self._confusion: Tensor | None = None

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Add one batch: `scores` N x classes, `targets` N integer class indices."""
        scores, targets = scores.detach(), targets.detach().reshape(-1).long()
        if scores.dim() != 2 or scores.shape[0] != targets.shape[0]:
            raise EvaluationError(
                f"Meter.update takes N x classes scores and N targets; got scores of shape "
                f"{tuple(scores.shape)} and {targets.shape[0]} targets."
            )
        if self.num_classes is None:
            self.num_classes = scores.shape[1]
        classes = self.num_classes
        if scores.shape[1] != classes:
            raise EvaluationError(f"Scores have {scores.shape[1]} classes; this meter counts {classes}.")
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= classes):
            raise EvaluationError(
                f"Targets must be class indices in [0, {classes}); got values from {int(targets.min())} "
                f"to {int(targets.max())}."
            )
        if self._confusion is None:
            self._confusion = torch.zeros(classes, classes, dtype=torch.long, device=scores.device)
            self._hits = torch.zeros(2, dtype=torch.long, device=scores.device)
        targets = targets.to(scores.device)
        top = scores.topk(min(5, classes), dim=1).indices  # N x k, best first
        hit = top == targets[:, None]
        self._hits += torch.stack((hit[:, 0].sum(), hit.any(dim=1).sum()))
        ones = torch.ones_like(targets)
        self._confusion.index_put_((targets, top[:, 0]), ones, accumulate=True)
        self.images += targets.shape[0]

    def result(self, protocol: str = "", allow_empty: bool = False) -> EvalResult:
        """The errors, per-class accuracy and confusion matrix of everything seen so far.

        With no images seen: an EvaluationError, or, with `allow_empty` and a known `num_classes`, a
        result of 0 images, NaN errors and a zero confusion matrix (one process's empty share of a
        validation set, or a set whose every file was unreadable and skipped).
        """
        if self.images == 0 and allow_empty and self.num_classes is not None:
            n = self.num_classes
            return EvalResult(math.nan, math.nan, 0, [math.nan] * n, [[0] * n for _ in range(n)], protocol)
        if self.images == 0 or self._confusion is None or self._hits is None:
            raise EvaluationError("No images were evaluated (the loader was empty?).")
        confusion = self._confusion.cpu()
        top1, topk = (int(v) for v in self._hits.cpu())
        per_class = confusion.diagonal().double() / confusion.sum(dim=1).double()  # 0/0 = NaN
        return EvalResult(
            top1_error=1.0 - top1 / self.images,
            top5_error=1.0 - topk / self.images,
            images=self.images,
            per_class_accuracy=per_class.tolist(),
            confusion=confusion.tolist(),
            protocol=protocol,
        )


# ---------------------------------------------------------------------------------------------------
# A whole loader


def _autocast(device: torch.device, amp: str | None) -> Callable[[], contextlib.AbstractContextManager]:
    if amp is None or amp in ("", "none", "float32", "fp32"):
        return contextlib.nullcontext
    if amp not in _AMP_DTYPES:
        raise EvaluationError(f"Unknown amp dtype {amp!r}; use bfloat16, float16 or None.")
    dtype = _AMP_DTYPES[amp]
    return lambda: torch.autocast(device.type, dtype=dtype)


def _default_crop(model: nn.Module, protocol: str, crop: int | None) -> int | None:
    if crop is not None:
        return int(crop)
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        if shape[1] != shape[2]:
            raise EvaluationError(
                f"The model was built for a {shape[2]}x{shape[1]} input, not a square: give `crop`."
            )
        return int(shape[1])
    if protocol != "center":
        raise EvaluationError(f"'{protocol}' needs `crop` (the training size) for a plain torch module.")
    return None


def collect_probs(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], protocol: str = "center",
                  crop: int | None = None, scales: Sequence[int] = (),
                  flips: bool | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Every image's class probabilities (N x classes, on the CPU) and its target, in the loader's
    order, by `protocol` as `evaluate` computes them: what an ensemble averages."""
    _check_protocol(protocol)
    crop = _default_crop(model, protocol, crop)
    net = (
        fully_convolutional(model)
        if protocol == "dense" and not isinstance(model, FullyConvolutional)
        else model
    )
    probs, targets = [], []
    with eval_mode(model), torch.inference_mode():
        for images, target in loader:
            probs.append(_probs(net, images, protocol, crop, scales, flips).float().cpu())
            targets.append(target.reshape(-1).long().cpu())
    if not probs:
        raise EvaluationError("No images were evaluated (the loader was empty?).")
    return torch.cat(probs), torch.cat(targets)


def result_of(probs: Tensor, targets: Tensor, protocol: str = "") -> EvalResult:
    """The errors, per-class accuracy and confusion matrix of given probabilities (N x classes)."""
    meter = Meter(probs.shape[1])
    meter.update(probs, targets)
    return meter.result(protocol)


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    protocol: str = "center",
    crop: int | None = None,
    scales: Sequence[int] = (),
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    amp: str | None = None,
    num_classes: int | None = None,
    flips: bool | None = None,
    allow_empty: bool = False,
) -> EvalResult:
    """Top-1 / top-5 error, per-class accuracy and confusion of `model` over `loader`, by `protocol`.

    `loader` yields (images, targets): normalised float N x 3 x H x W batches already transformed for
    the protocol (`eval_input_transform`): centre-cropped for "center"; shorter side resized but not
    cropped for "10crop"; any size for "dense" (resized here to each of `scales`). `crop` defaults to
    the model's `input_shape` (its training size); `scales` to `(crop,)`; `flips` as `predict_probs`.
    The model is moved to `device` (and to channels-last memory when asked and, for a `Model`, when
    `Model.set_channels_last` allows it) in place, as Module.to does, and runs in eval mode under
    torch.inference_mode (modes restored afterwards); `amp` ('bfloat16' or 'float16') runs the forward
    passes under torch.autocast. Probabilities are averaged as `predict_probs` says; `num_classes`
    defaults to the width of the model's output. An empty loader is an EvaluationError, or with
    `allow_empty` (and `num_classes`) a result of 0 images and NaN errors (`Meter.result`).
    """
    _check_protocol(protocol)
    device = torch.device(device)
    crop = _default_crop(model, protocol, crop)
    autocast = _autocast(device, amp)
    model.to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last and isinstance(model, Model):
        model.set_channels_last(True)  # a network oneDNN cannot train channels-last keeps its layout
    elif channels_last:
        model.to(memory_format=torch.channels_last)
    net = model
    if protocol == "dense" and not isinstance(model, FullyConvolutional):
        net = fully_convolutional(model)  # after .to(): its FC weights are views, not copies
    meter = Meter(num_classes)
    with eval_mode(model), torch.inference_mode():
        for images, targets in loader:
            images = images.to(device, non_blocking=True, memory_format=fmt)
            with autocast():
                probs = _probs(net, images, protocol, crop, scales, flips)
            meter.update(probs, targets.to(device, non_blocking=True))
    return meter.result(protocol, allow_empty=allow_empty)


def eval_input_transform(protocol: str, image_size: int, mean: Sequence[float], std: Sequence[float],
                         crop_fraction: float = 0.875) -> v2.Compose:  # fmt: skip
    """The per-image transform a protocol expects: uint8 C x H x W tensor in, normalised float out.

    - "center": shorter side resized to round(image_size / crop_fraction) (256 for 224), then the
      centre image_size x image_size crop.
    - "10crop": shorter side resized to round(image_size / crop_fraction), then the centre square of
      that size (256 x 256), so a batch stacks; `ten_crop_logits` cuts the 224 crops from it.
    - "dense": shorter side resized to image_size (give the largest scale Q), then the centre square.
      A simplification of VGG, which runs the uncropped image: cropping to a square lets a batch
      stack, at the cost of the ends of the longer side.

    Resizing is bilinear with antialiasing, on uint8; then one fused pass to float32,
    (x / 255 - mean) / std (`transforms.NormalisedFloat`, the training transforms' last step), with mean
    and std per channel, for pixels in [0, 1]. A `transforms.Pipeline`: a loader normalises each batch
    at once (`data.Augmented`), and `at_size(n)` gives the same protocol at another size.
    """
    _check_protocol(protocol)
    if not 0.0 < crop_fraction <= 1.0:
        raise EvaluationError(f"crop_fraction must be in (0, 1], got {crop_fraction}.")
    resized = round(image_size / crop_fraction)
    if protocol == "center":
        geometry = [v2.Resize(resized, antialias=True), v2.CenterCrop(image_size)]
    elif protocol == "10crop":
        geometry = [v2.Resize(resized, antialias=True), v2.CenterCrop(resized)]
    else:
        geometry = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    factory = functools.partial(eval_input_transform, protocol, mean=tuple(mean), std=tuple(std),
                                crop_fraction=crop_fraction)  # fmt: skip
    return Pipeline([*geometry, NormalisedFloat(mean, std)], factory, image_size)


# ---------------------------------------------------------------------------------------------------
# The picture


def plot_confusion(result: EvalResult, class_names: Sequence[str] | None, path: str | Path) -> Path:
    """Draw `result`'s confusion matrix as a PNG at `path` (parents created) and return the path.

    Rows are true classes, columns predicted ones; colours are row-normalised (the fraction of each
    true class predicted as each class, so a perfect classifier is a dark diagonal), with the counts
    written in the cells when there are at most 20 classes. Class names label the axes up to 50
    classes (None: the class indices). The title gives the protocol, the image count and the
    top-1 / top-k errors.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(result.confusion, dtype=np.int64)
    n = counts.shape[0]
    names = [str(i) for i in range(n)] if class_names is None else [str(c) for c in class_names]
    if len(names) != n:
        raise EvaluationError(f"{len(names)} class names for a confusion matrix of {n} classes.")
    names = [c if len(c) <= 18 else c[:17] + "…" for c in names]
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)

    side = max(5.0, 2.5 + 0.45 * n) if n <= 20 else 10.0  # room for the counts, else a fixed size
    fig = Figure(figsize=(side + 1.5, side), dpi=100 if n <= 50 else 150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    smooth = "antialiased" if n > 200 else "nearest"  # more classes than pixels: average, do not alias
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation=smooth)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("fraction of the true class")
    if n <= 50:
        ax.set_xticks(range(n), names, rotation=45 if n > 5 else 0, ha="right" if n > 5 else "center")
        ax.set_yticks(range(n), names)
        ax.tick_params(labelsize=10 if n <= 20 else 7)
    if n <= 20:
        for t in range(n):
            for p in range(n):
                if counts[t, p]:
                    colour = "white" if share[t, p] > 0.5 else "black"
                    ax.text(p, t, f"{counts[t, p]:,}", ha="center", va="center", color=colour, fontsize=9)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        f"Confusion matrix, {result.protocol or 'evaluation'} ({result.images:,} images)\n"
        f"top-1 error {result.top1_error:.1%}, top-{result.k} error {result.top5_error:.1%}"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def combine_ranks(result: EvalResult, ctx: distributed.Context, device: torch.device) -> EvalResult:
    """One EvalResult from every rank's share of the validation set (counts summed).

    A rank whose share is empty (or all unreadable) adds zeros; if every share is, the errors are NaN
    and `images` is 0.
    """
    if not ctx.enabled:
        return result
    confusion = torch.tensor(result.confusion, dtype=torch.float64, device=device)
    hits = (1 - result.top5_error) * result.images if result.images else 0.0  # an empty share adds nothing
    top_k_hits = torch.tensor([hits], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(confusion)
    torch.distributed.all_reduce(top_k_hits)
    confusion = confusion.round().long().cpu()
    images = int(confusion.sum())  # 0 when no rank could read a validation image
    per_class = confusion.diag().double() / confusion.sum(1).double()
    return EvalResult(
        top1_error=1 - float(confusion.diag().sum()) / images if images else math.nan,
        top5_error=1 - round(float(top_k_hits)) / images if images else math.nan,
        images=images,
        per_class_accuracy=per_class.tolist(),
        confusion=confusion.tolist(),
        protocol=result.protocol,
    )
