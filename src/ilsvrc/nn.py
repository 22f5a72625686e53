"""Spec -> torch module, and torchvision's weights in and out.

`build(network)` turns a `Network` into a torch module whose submodules carry the spec's names, so the
state-dict keys are the names the tables print: `conv1.weight`, `fc8.bias`, `inc3a.b1.conv.weight`.
A chain of layers (the network itself, a `Block`) is an `nn.Sequential`; a `Concat` runs its branches
on the same input and joins them along the channels; a `Residual` adds its body to its shortcut.

The builder does no shape arithmetic of its own: every layer's input channels, and the input size of
every fully connected layer, come from `analyze(network, input_shape)`. So the first FC layer takes
whatever flattened size that input gives (AlexNet: 9,216 at 227, 4,096 at 163), exactly as the
analyzer says; a size the analyzer refuses raises its `ShapeError` before any tensor is made.

An `Aux` (GoogLeNet's auxiliary classifier) is an `AuxHead`: in training mode the module runs it on
the volume at its place and `forward` returns `ModelOutputs(logits, aux)`, the heads' logits in spec
order beside the main ones; in eval mode the heads are not run and `forward` returns the logits alone
(as torchvision's GoogLeNet does). `Model.aux_weights` holds the heads' loss weights. The training
loss is `CE(logits, y) + sum(w * CE(a, y) for w, a in zip(model.aux_weights, out.aux))`.

`create_model(name)` is `build` plus the initialisation torchvision uses for VGG and ResNet (see
`init_weights`; `zero_init_residual` as torchvision's ResNet). `from_torchvision` / `to_torchvision`
map state dicts between torchvision's AlexNet, VGG, GoogLeNet and ResNet models and ours, tensor by
tensor: in module registration order, except the auxiliary heads, paired by name (torchvision
registers GoogLeNet's aux1 and aux2 after inception5b; our spec has them where they read).
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import os
import sys
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights

from .analysis.analyzer import LayerStats, analyze, channels_last_layout
from .errors import SpecError
from .networks.spec import (
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
    Opaque,
    ReLU,
    Residual,
    Sigmoid,
    Tanh,
)
from .networks.zoo import get_spec

__all__ = [
    "AuxHead",
    "Model",
    "ModelOutputs",
    "TORCHVISION_NAMES",
    "WeightMappingError",
    "build",
    "create_model",
    "fold_batchnorm",
    "from_torchvision",
    "init_weights",
    "LocalResponseNorm",
    "leaf_module",
    "to_torchvision",
]

# our zoo name -> torchvision's constructor name, for the networks whose tensors line up one to one
TORCHVISION_NAMES: dict[str, str] = {
    "alexnet-torchvision": "alexnet",
    "vgg11": "vgg11",
    "vgg13": "vgg13",
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "vgg11-bn": "vgg11_bn",
    "vgg13-bn": "vgg13_bn",
    "vgg16-bn": "vgg16_bn",
    "vgg19-bn": "vgg19_bn",
    "googlenet-torchvision": "googlenet",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
}
# keywords torchvision's constructor gets besides num_classes: GoogLeNet without its input transform
# (ours takes the usual normalised input) and without its initialisation (the weights are replaced)
_TORCHVISION_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"transform_input": False, "init_weights": False},
}
# names that have no torchvision mapping, and the one they may mean
_NEAR_MISSES: dict[str, str] = {
    "alexnet": "torchvision's AlexNet is 'alexnet-torchvision'",
    "googlenet": "torchvision's GoogLeNet is 'googlenet-torchvision' (batch norm, no LRN)",
    "resnet50-v1": "torchvision's ResNets are v1.5 (stride on the 3x3): 'resnet50'",
    "resnet101-v1": "torchvision's ResNets are v1.5 (stride on the 3x3): 'resnet101'",
    "resnet152-v1": "torchvision's ResNets are v1.5 (stride on the 3x3): 'resnet152'",
}


class WeightMappingError(SpecError):
    """A state dict does not fit the network it is loaded into (names both keys and shapes)."""


# ---------------------------------------------------------------------------------------------------
# The three containers


class Chain(nn.Sequential):
    """Layers applied one after another; children named as the spec names them.

    At inference (eval mode with autograd off: `torch.no_grad()` or `torch.inference_mode()`) the
    chain runs `_infer`: each batch norm folded into the convolution before it, and a ReLU after
    a convolution computed by the same oneDNN call. Otherwise, every layer as it is.
    """

    def forward(self, x: Tensor) -> Tensor:
        if _inferring(self):
            return _infer(list(self._modules.values()), x)
        return super().forward(x)


class Branches(nn.Module):
    """A `Concat`: every branch runs on the same input; outputs joined along the channels (dim 1)."""

    def __init__(self, branches: Mapping[str, nn.Module]) -> None:
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self._modules.values()], dim=1)


class ResidualAdd(nn.Module):
    """A `Residual`: body(x) + shortcut(x), or body(x) + x when there is no shortcut."""

    def __init__(self, body: tuple[str, nn.Module], shortcut: tuple[str, nn.Module] | None) -> None:
        super().__init__()
        self.add_module(*body)
        if shortcut is not None:
            self.add_module(*shortcut)

    def forward(self, x: Tensor) -> Tensor:
        body, *shortcut = self._modules.values()
        return body(x) + (shortcut[0](x) if shortcut else x)

    def infer(self, x: Tensor, relu: bool) -> Tensor:
        """At inference: body(x) + shortcut(x), then a ReLU if `relu`; when the body ends in a
        convolution (and its batch norm), the sum and the ReLU are computed by its oneDNN call."""
        body, *shortcut = self._modules.values()
        layers = list(body._modules.values()) if isinstance(body, nn.Sequential) else []
        tail = 2 if len(layers) >= 2 and _folds(layers[-2], layers[-1]) else 1
        conv = layers[-tail] if layers else None
        if not (_fusable_conv(conv) and _fusable_input(x)) or _hooked(body) or _hooked(conv):
            y = body(x) + (shortcut[0](x) if shortcut else x)
            return y.relu_() if relu else y
        h = _infer(layers[:-tail], x)
        other = shortcut[0](x) if shortcut else x
        weight, bias = _conv_weights(conv, layers[-1] if tail == 2 else None)
        if other.shape != _conv_output_shape(conv, h) or other.dtype != h.dtype:
            y = conv._conv_forward(h, weight, bias) + other  # broadcasting: leave it to torch
            return y.relu_() if relu else y
        return torch.ops.mkldnn._convolution_pointwise.binary(
            h, other, weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation),
            conv.groups, "add", None, "relu" if relu else None, [], None,
        )  # fmt: skip


class AuxHead(Chain):
    """An `Aux`: an auxiliary classifier's layers, run in training mode only on the volume at its place
    (which the main chain then receives unchanged). `loss_weight` is the spec's `Aux.weight`."""

    def __init__(self, layers: Mapping[str, nn.Module], loss_weight: float) -> None:
        super().__init__(layers)
        self.loss_weight = float(loss_weight)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight:g}"


class ModelOutputs(NamedTuple):
    """What a `Model` with auxiliary heads returns in training mode: the main `logits` (N x classes)
    and `aux`, the logits of each auxiliary head in spec order (GoogLeNet: aux1, then aux2)."""

    logits: Tensor
    aux: tuple[Tensor, ...]


class Model(Chain):
    """A whole network: a `Chain` that also knows its `spec` and the `input_shape` it was built for.

    `analyze(model.spec, model.input_shape)` describes the module exactly.

    Outputs: the logits (N x classes), except in training mode when the spec has auxiliary heads
    (`Aux`): then `ModelOutputs(logits, aux)`, the heads' logits in spec order. In eval mode the heads
    are not run at all. `aux_weights` gives each head's loss weight, in the same order.

    Memory layout: with `channels_last` (the default of `build`), the convolution weights are stored
    channels-last (N x H x W x C in memory) and `forward` lays an ordinary N x C x H x W input out the
    same way before the first layer. oneDNN then runs every convolution, pooling and ReLU without
    converting layouts around each one, faster than torchvision's same network in its default layout
    at inference and in a training step (by how much: benchmarks/RESULTS.md, "Performance", the
    inference and training-step tables). Results are the same up to float rounding; state-dict keys
    and shapes do not change. `set_channels_last(False)` goes back.

    At inference (eval mode under `torch.no_grad()` or `torch.inference_mode()`) every batch norm that
    follows a convolution is folded into it, and a ReLU or a residual sum after a convolution is
    applied by the convolution's own oneDNN call (see "Inference" below): the same results up to
    float rounding, with up to three passes over each activation saved. Nothing about the module
    changes; with autograd on, under a tracer, or past a forward hook, every layer runs as it is.
    """

    def __init__(self, layers: Mapping[str, nn.Module], spec: Network,
                 input_shape: tuple[int, int, int]) -> None:  # fmt: skip
        super().__init__(layers)
        self.spec = spec
        self.input_shape = input_shape
        self.channels_last = False

    def set_channels_last(self, on: bool = True) -> Model:
        """Store weights channels-last (or contiguous) and lay inputs out to match; returns self.

        A network that oneDNN cannot train channels-last (a 1x1 convolution with unequal strides:
        `analysis.analyzer.channels_last_layout`) stays in torch's default layout whatever `on` says;
        `self.channels_last` tells which layout the module has.
        """
        self.channels_last = bool(on) and channels_last_layout(self.spec)
        return self.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    @property
    def aux_weights(self) -> tuple[float, ...]:
        """The loss weight of each auxiliary head (spec `Aux.weight`), in spec order; () without."""
        return tuple(m.loss_weight for m in self._modules.values() if isinstance(m, AuxHead))

    def forward(self, x: Tensor) -> Tensor | ModelOutputs:
        if self.channels_last:
            x = _channels_last_input(x)
        if _inferring(self):  # the heads are not run at test time
            return _infer([m for m in self._modules.values() if not isinstance(m, AuxHead)], x)
        aux: list[Tensor] = []
        for module in self._modules.values():
            if isinstance(module, AuxHead):
                if self.training:  # at test time the heads are not run
                    aux.append(module(x))
                continue
            x = module(x)
        return ModelOutputs(x, tuple(aux)) if aux else x

    def extra_repr(self) -> str:
        c, h, w = self.input_shape
        layout = ", channels_last" if self.channels_last else ""
        return f"spec={self.spec.name!r}, input={c}x{h}x{w}{layout}"


def _channels_last_input(x: Tensor) -> Tensor:
    """An N x C x H x W batch laid out channels-last (a no-op when it already is; other ranks pass).

    A function of its own, wrapped for torch.fx (below), so that `ilsvrc.from_module` traces a built
    model: the rank test cannot run on fx's symbolic values, and the trace records one call instead."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


torch.fx.wrap("_channels_last_input")


# ---------------------------------------------------------------------------------------------------
# Inference: batch norm folded into the convolution before it, ReLU and residual sums fused into it
#
# In eval mode a batch norm is an affine map per channel, which the convolution before it can apply
# by scaling its filters and shifting its bias (`torch.nn.utils.fusion.fuse_conv_bn_weights`): one
# pass over the activation saved. oneDNN can also apply a ReLU, or add another tensor and then apply
# a ReLU, as it writes a convolution's output (`torch.ops.mkldnn._convolution_pointwise`, the call
# torch.compile's CPU backend makes): one or two more passes saved. This path runs only in eval mode
# with autograd off, never while torch.jit, torch.fx, torch.compile or the ONNX exporter traces, and
# the module itself is never changed: its state dict, its training, and gradients in eval mode are
# those of the plain layers. The folded filters are cached on the batch norm and recomputed when any
# tensor they come from has changed (`Tensor._version` counts in-place changes; a replaced tensor
# has another identity): an optimizer step, `load_state_dict`, `.to()` all refold.


def _tracing() -> bool:
    """Whether torch.jit, torch.fx, torch.compile / torch.export or the ONNX exporter is tracing."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.fx._symbolic_trace.is_fx_symbolic_tracing()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def _inferring(module: nn.Module) -> bool:
    """Eval mode, autograd off, and nobody tracing: the folded and fused path may run."""
    return not module.training and not torch.is_grad_enabled() and not _tracing()


def _hooked(module: nn.Module) -> bool:
    """Whether a forward hook (the module's own or a global one) wants to see `module` run."""
    from torch.nn.modules import module as base

    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or base._global_forward_hooks
        or base._global_forward_pre_hooks
    )


def _folds(conv: nn.Module, norm: nn.Module) -> bool:
    """Whether `norm` is a batch norm in eval mode, with running statistics, right after a Conv2d,
    and neither has a forward hook (a hook sees each layer run as it is)."""
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(norm, nn.BatchNorm2d)
        and not _hooked(conv)
        and not _hooked(norm)
        and not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
    )


def _fusable_conv(conv: nn.Module | None) -> bool:
    """A plain 2-D convolution (zero padding given as numbers) that oneDNN's fused call can run."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.weight.dtype == torch.float32
        and conv.weight.device.type == "cpu"
    )


def _fusable_input(x: Tensor) -> bool:
    """A float32 CPU batch, with oneDNN there and enabled."""
    return (
        x.dim() == 4
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def _conv_output_shape(conv: nn.Conv2d, x: Tensor) -> torch.Size:
    sizes = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, p, d, k, s in zip(x.shape[2:], conv.padding, conv.dilation, conv.kernel_size, conv.stride)
    ]
    return torch.Size([x.shape[0], conv.out_channels, *sizes])


def _conv_weights(conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[Tensor, Tensor | None]:
    """The convolution's weight and bias, with `norm` folded in (cached on `norm`, see above)."""
    if norm is None:
        return conv.weight, conv.bias
    sources = (conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    key = (
        norm.eps,
        *((id(t), t.data_ptr(), t._version, t.dtype, t.device) for t in sources if t is not None),
    )
    cached = norm.__dict__.get("_folded")
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, usable outside too
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                            norm.eps, norm.weight, norm.bias)  # fmt: skip
        layout = torch.channels_last if _is_channels_last(conv.weight) else torch.contiguous_format
        weight = weight.detach().contiguous(memory_format=layout)
        bias = bias.detach()
    norm.__dict__["_folded"] = (key, weight, bias)
    return weight, bias


def _is_channels_last(t: Tensor) -> bool:
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _infer(layers: list[nn.Module], x: Tensor) -> Tensor:
    """`layers` applied in order to `x`, at inference: a convolution takes in the batch norm after it
    and the ReLU after that (or right after it); a residual sum the ReLU after it."""
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv2d) and not _hooked(layer):
            norm = layers[i + 1] if i + 1 < len(layers) and _folds(layer, layers[i + 1]) else None
            i += 2 if norm is not None else 1
            relu = i < len(layers) and isinstance(layers[i], nn.ReLU) and not _hooked(layers[i])
            i += relu
            weight, bias = _conv_weights(layer, norm)
            if relu and _fusable_conv(layer) and _fusable_input(x):
                x = torch.ops.mkldnn._convolution_pointwise(
                    x, weight, bias, list(layer.padding), list(layer.stride), list(layer.dilation),
                    layer.groups, "relu", [], "",
                )  # fmt: skip
            else:
                x = layer._conv_forward(x, weight, bias)
                x = x.relu_() if relu else x
        elif isinstance(layer, ResidualAdd) and not _hooked(layer):
            relu = i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU) and not _hooked(layers[i + 1])
            x = layer.infer(x, relu)
            i += 1 + relu
        else:
            x = layer(x)
            i += 1
    return x


# ---------------------------------------------------------------------------------------------------
# Local response normalisation: the channel window as a matrix product, the backward pass written out


def _window_sum(t: Tensor, front: int, back: int) -> Tensor:
    """out[:, c] = sum of t[:, c - front .. c + back] (zeros beyond the ends), along the channels, by
    shifted adds: the form traced into TorchScript and ONNX files."""
    channels = t.shape[1]
    padded = nn.functional.pad(t, (0, 0, 0, 0, front, back))
    out = padded[:, 0:channels].clone()
    for offset in range(1, front + back + 1):
        out += padded[:, offset : offset + channels]
    return out


def _lrn_denominator(x: Tensor, size: int, alpha: float, k: float) -> Tensor:
    """k + alpha * (sum of x^2 over the `size` channels around each channel), by shifted adds."""
    return _window_sum(x * x, size // 2, (size - 1) // 2).mul_(alpha).add_(k)


def _band(channels: int, front: int, back: int, scale: float, like: Tensor) -> Tensor:
    """The C x C matrix B with B[j, c] = scale where c - front <= j <= c + back, else 0: a row of
    channel values times B sums each channel's window (times `scale`); times B^T, the transposed
    window's."""
    index = torch.arange(channels, device=like.device)
    offset = index[:, None] - index[None, :]  # j - c
    return ((offset >= -front) & (offset <= back)).to(like.dtype).mul_(scale)


# Channels-last, a band over this many channels or more is multiplied in blocks of BAND_BLOCK output
# channels, each from only the input channels its windows reach: conv2's 256 channels then do about a
# quarter of the full product's multiply-adds (twice as fast here); at 96 channels the full product is
# already as fast (it is bound by reading and writing the activation).
BAND_BLOCK, BLOCKED_FROM = 32, 128


def _banded(t: Tensor, band: Tensor, add: float = 0.0, reach: tuple[int, int] | None = None) -> Tensor:
    """add + (t's channels times `band`) at every position of an N x C x H x W tensor: one matrix
    product, (N*H*W) x C by C x C when `t` is channels-last (the result is too), else C x C by each
    image's C x (H*W). `reach` = (front, back): band[j, c] is 0 unless c - front <= j <= c + back,
    which lets a channels-last product of many channels go block by block (`BAND_BLOCK`)."""
    n, c, h, w = t.shape
    if _is_channels_last(t):
        rows = t.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view: the memory is already rows
        if reach is None or c < BLOCKED_FROM:
            out = torch.addmm(t.new_full((), add), rows, band) if add else rows @ band
        else:
            out = rows.new_empty(n * h * w, c)
            front, back = reach
            for c0 in range(0, c, BAND_BLOCK):
                c1 = min(c, c0 + BAND_BLOCK)
                lo, hi = max(0, c0 - front), min(c, c1 + back)
                torch.addmm(t.new_full((), add), rows[:, lo:hi], band[lo:hi, c0:c1], beta=1 if add else 0,
                            out=out[:, c0:c1])  # fmt: skip
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    out = torch.matmul(band.t(), t.contiguous().view(n, c, h * w))
    return (out.add_(add) if add else out).view(n, c, h, w)


def _lrn_denominator_mm(x: Tensor, size: int, alpha: float, k: float) -> Tensor:
    """k + alpha * (sum of x^2 over the `size` channels around each channel), as a matrix product."""
    front, back = size // 2, (size - 1) // 2
    return _banded(x * x, _band(x.shape[1], front, back, alpha, x), k, (front, back))


def _neg_power(d: Tensor, beta: float, inplace: bool = False) -> Tensor:
    """d^-beta (d > 0), in place on `d` if asked. The papers' beta of 0.75 as d^-1/2 x (d^-1/2)^1/2: a
    square root and a reciprocal square root are single vector instructions, where a general power
    takes an exponential and a logarithm per value (three times as long here; the same values to a
    few units in the last place)."""
    if beta == 0.75:
        r = d.rsqrt_() if inplace else d.rsqrt()
        return r.mul_(r.sqrt())
    return d.pow_(-beta) if inplace else d.pow(-beta)


class _LRNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, size: int, alpha: float, beta: float, k: float) -> Tensor:  # type: ignore[override]
        d = _lrn_denominator_mm(x, size, alpha, k)
        y = _neg_power(d, beta).mul_(x)
        ctx.save_for_backward(x, d)  # not y: an in-place ReLU may follow
        ctx.settings = (size, alpha, beta)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, d = ctx.saved_tensors
        size, alpha, beta = ctx.settings
        # dy_c/dx_j = d_c^-beta [c = j] - 2 alpha beta x_j x_c d_c^(-beta-1) [j in window(c)]
        direct = _neg_power(d, beta).mul_(grad)  # grad_c d_c^-beta, the first term
        front, back = size // 2, (size - 1) // 2
        band = _band(x.shape[1], front, back, -2 * alpha * beta, x)
        spread = _banded((direct * x).div_(d), band.t(), reach=(back, front))  # the window's transpose
        return spread.mul_(x).add_(direct), None, None, None, None


class LocalResponseNorm(nn.Module):
    """b_c = a_c / (k + alpha * sum of a^2 over `size` neighbouring channels)^beta: the AlexNet paper's
    formula, with the paper's alpha (torch.nn.LocalResponseNorm divides its alpha by size).

    Same results as torch.nn.LocalResponseNorm(size, alpha * size, beta, k), faster on the CPU at
    inference and in a training step (by how much: benchmarks/RESULTS.md, "LRN alone", "The published
    AlexNet" and "Every network of the zoo"): the sum over the channel window is one matrix product
    with a banded C x C matrix (channels-last, the activation's memory is already an (N*H*W) x C
    matrix; many channels go in blocks, `BAND_BLOCK`), which adds k and scales by alpha as it writes;
    the power of 0.75 is taken by square roots (`_neg_power`), and at inference it and the product
    with the input work in place on that result. The backward pass is written out the same way
    (it keeps only x and the denominator). Traced into TorchScript or ONNX, the window is summed by
    shifted adds.
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"LocalResponseNorm expects N x C x H x W, got {tuple(x.shape)}")
        if _tracing():  # a TorchScript file cannot hold a Python autograd.Function
            return x * _lrn_denominator(x, self.size, self.alpha, self.k).pow(-self.beta)
        if not torch.is_grad_enabled() or not x.requires_grad:
            # nothing to keep for a backward pass: power and product in place on the denominator
            return _neg_power(_lrn_denominator_mm(x, self.size, self.alpha, self.k), self.beta, True).mul_(x)
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha:g} (paper's), beta={self.beta:g}, k={self.k:g}"


# ---------------------------------------------------------------------------------------------------
# Building


def leaf_module(layer: Layer, channels: int, inplace: bool = True) -> nn.Module:
    """The torch module of one leaf layer.

    `channels` is what reaches the layer: the input channels of a volume, or the length of a flat
    vector (a fully connected layer's `in_features`). `inplace` applies to ReLU only.
    """
    if isinstance(layer, Conv):
        # Dilation means nothing along an axis where the kernel is 1 wide; it is dropped there (the
        # same convolution). oneDNN 3.x in torch 2.14 crashes (segmentation fault) on a channels-last
        # 1x1 input through a 1-wide kernel dilated, strided and padded along one axis.
        dilation = tuple(1 if k == 1 else d for k, d in zip(layer.kernel, layer.dilation))
        return nn.Conv2d(
            channels,
            layer.out_channels,
            layer.kernel,
            stride=layer.stride,
            padding=layer.padding,
            dilation=dilation,
            groups=layer.groups,
            bias=layer.bias,
        )
    if isinstance(layer, MaxPool):
        return nn.MaxPool2d(layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
    if isinstance(layer, AvgPool):
        return nn.AvgPool2d(layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
    if isinstance(layer, AdaptiveAvgPool):
        return nn.AdaptiveAvgPool2d(layer.output_size)
    if isinstance(layer, LRN):
        return LocalResponseNorm(layer.size, alpha=layer.alpha, beta=layer.beta, k=layer.k)
    if isinstance(layer, ReLU):
        return nn.ReLU(inplace=inplace)
    if isinstance(layer, Tanh):
        return nn.Tanh()
    if isinstance(layer, Sigmoid):
        return nn.Sigmoid()
    if isinstance(layer, BatchNorm):
        return nn.BatchNorm2d(channels, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, Flatten):
        return nn.Flatten(1)
    if isinstance(layer, Linear):
        return nn.Linear(channels, layer.out_features, bias=layer.bias)
    if isinstance(layer, Opaque):
        raise SpecError(
            f"Layer {layer.name} is opaque ({layer.what or 'a layer ilsvrc does not know'}): a trace saw "
            "its output and parameter count, not what it computes, so no torch module can be built for "
            "it. Analyse, draw and compare the network as it is; to build it, replace the layer in the "
            "spec by known layers (`ilsvrc spec MODEL -o net.yaml`, then edit)."
        )
    raise SpecError(f"Layer {layer.name}: the torch builder does not know layer type {layer.kind!r}.")


class _Builder:
    """Builds the module tree of a network from the analyzer's view of it (`stats` by dotted name).

    Whether a ReLU works in place is the analyzer's `LayerStats.in_place` (only on a fresh tensor,
    never on the network's input, an input shared with another branch or another ReLU's output), the
    same rule its memory model follows.
    """

    def __init__(self, stats: dict[str, LayerStats]) -> None:
        self.stats = stats

    def chain(self, layers: tuple[Layer, ...], prefix: str,
              cls: type[nn.Module] = Chain) -> OrderedDict[str, nn.Module]:  # fmt: skip
        """Modules of `layers` in order, named as the spec names them."""
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        for layer in layers:
            _check_name(cls, layer, prefix)
            modules[layer.name] = self.node(layer, prefix + layer.name)
        return modules

    def node(self, layer: Layer, name: str) -> nn.Module:
        if isinstance(layer, Block):
            return Chain(self.chain(layer.layers, name + "."))
        if isinstance(layer, Concat):
            return Branches({b.name: self.block(b, f"{name}.{b.name}", Branches) for b in layer.branches})
        if isinstance(layer, Residual):
            return self.residual(layer, name)
        if isinstance(layer, Aux):
            return AuxHead(self.chain(layer.layers, name + ".", AuxHead), layer.weight)
        stats = self.stats[name]
        return leaf_module(layer, stats.input.channels, inplace=stats.in_place)

    def block(self, block: Block, name: str, owner: type[nn.Module]) -> nn.Module:
        """A branch or a residual part, checked against the attributes of the container it goes in."""
        _check_name(owner, block, name.rpartition(".")[0] + ".")
        return Chain(self.chain(block.layers, name + "."))

    def residual(self, layer: Residual, name: str) -> ResidualAdd:
        body = (layer.body.name, self.block(layer.body, f"{name}.{layer.body.name}", ResidualAdd))
        if layer.shortcut is None:
            return ResidualAdd(body, None)
        short = self.block(layer.shortcut, f"{name}.{layer.shortcut.name}", ResidualAdd)
        return ResidualAdd(body, (layer.shortcut.name, short))


# attributes set on instances, which `hasattr(cls, name)` does not see
_RESERVED: dict[type[nn.Module], set[str]] = {
    Model: {"spec", "input_shape", "channels_last"},
    AuxHead: {"loss_weight"},
}


def _check_name(cls: type[nn.Module], layer: Layer, prefix: str) -> None:
    """Refuse a layer name that is already an attribute of the torch container (`train`, `to`...)."""
    if hasattr(cls, layer.name) or layer.name in _RESERVED.get(cls, ()):
        raise SpecError(
            f"Layer {prefix}{layer.name}: {layer.name!r} cannot name a torch submodule, because "
            f"torch's {cls.__name__} already has an attribute of that name. Rename the layer "
            f"(e.g. '{layer.name}1')."
        )


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_ENV = "ILSVRC_MALLOC"
_allocator_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep the memory torch frees for the next allocation, as the first module built does.

    By default glibc maps every block above its mmap threshold (128 KiB, raised as large blocks are
    freed, to at most 32 MiB) straight from the kernel and returns it on free, so every activation
    larger than that (AlexNet's first: 74 MB at batch 64) is mapped anew at each forward pass, and
    its first write faults in every one of its pages: on the 2-core machines of benchmarks/RESULTS.md
    that first touch took four times the arithmetic of a ReLU or an LRN pass. With the threshold at
    1 GiB and trimming off, freed blocks stay in the heap and are reused, as torch's own caching
    allocator does on a GPU; the process's memory then stays at its peak instead of shrinking after
    it. Set once per process, glibc on Linux only (elsewhere nothing is done); ILSVRC_MALLOC=default in
    the environment leaves glibc as it is. Returns whether the setting is in force.
    """
    global _allocator_kept
    if _allocator_kept is None:
        _allocator_kept = False
        if os.environ.get(_MALLOC_ENV, "") != "default" and sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) or libc.mallopt(
                    _M_MMAP_THRESHOLD, 32 << 20
                )
                _allocator_kept = bool(mmap_ok) and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
            except (OSError, AttributeError):  # not glibc (musl, a static build): leave it
                _allocator_kept = False
    return _allocator_kept


def build(
    network: Network, input_shape: tuple[int, int, int] | None = None, channels_last: bool = True
) -> Model:
    """The torch module of `network`, sized for `input_shape` (channels, height, width).

    Submodules are named as the spec names its layers. Input channels and the input size of every
    fully connected layer come from `analyze(network, input_shape)` (default: the network's own
    input), so a `ShapeError` is raised here for an input the network cannot take. Weights keep
    torch's default initialisation; `create_model` applies ours.

    ReLUs work in place (as torchvision's do) except where the tensor they receive is shared: the
    network's input, the input of a Concat branch or of a Residual body or shortcut, the volume an
    auxiliary head reads (its own first layers and the layer after it: the head's backward pass
    needs that volume as it was), the output of another ReLU, or any of these passed on by a dropout
    or flatten layer. The analyzer decides (`LayerStats.in_place`), so its memory model describes
    this module.

    channels_last: store and run the convolutions channels-last (see `Model`); False keeps torch's
    default layout, as does a network oneDNN cannot train channels-last (`Model.set_channels_last`).
    The first module built sets the process's allocator to keep freed memory (`keep_freed_memory`).
    """
    shape = tuple(input_shape) if input_shape is not None else network.input_shape
    report = analyze(network, shape, suggest=False)
    keep_freed_memory()
    stats = {row.name: row for row in report.rows}
    modules = _Builder(stats).chain(network.layers, "", cls=Model)
    c, h, w = shape
    return Model(modules, network, (c, h, w)).set_channels_last(channels_last)


def init_weights(module: nn.Module, zero_init_residual: bool = False) -> nn.Module:
    """Initialise `module` in place as torchvision initialises VGG, and return it.

    Convolutions: Kaiming normal, fan_out mode, ReLU gain (std = sqrt(2 / (out_channels * kh * kw)));
    fully connected layers: normal with mean 0 and std 0.01; every bias 0; batch norm scale 1 and
    shift 0. (The papers' own schemes, e.g. AlexNet's N(0, 0.01) with biases of 1, belong to the
    training recipes.)

    zero_init_residual: as torchvision's ResNet option (Goyal et al., 2017): the scale of the last
    batch norm in the body of every residual block (ResNet's bn2 or bn3) starts at 0, so that each
    block starts as its shortcut. Blocks whose body has no batch norm, and networks without residual
    blocks (plain18), are left as they are.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in module.modules():
            if isinstance(m, ResidualAdd):
                body = next(iter(m.children()))
                norms = [n for n in body.modules() if isinstance(n, nn.BatchNorm2d)]
                if norms and norms[-1].weight is not None:
                    nn.init.zeros_(norms[-1].weight)
    return module


def _input_shape(network: Network, input_size: int | tuple[int, ...] | None) -> tuple[int, int, int]:
    """(C, H, W) from None (the spec's), an int (square, the spec's channels), (H, W) or (C, H, W)."""
    if input_size is None:
        return network.input_shape
    channels = network.input_shape[0]
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        return (channels, input_size, input_size)
    if isinstance(input_size, (tuple, list)) and len(input_size) in (2, 3):
        size = tuple(input_size)
        return (channels, *size) if len(size) == 2 else size  # type: ignore[return-value]
    raise SpecError(
        f"input_size must be a whole number (a square image), (height, width) or (channels, height, "
        f"width), e.g. 224 or (3, 224, 224); got {input_size!r}."
    )


def create_model(
    name_or_network: str | Network,
    num_classes: int = 1000,
    input_size: int | tuple[int, ...] | None = None,
    zero_init_residual: bool = False,
    **kwargs: Any,
) -> Model:
    """A freshly initialised torch module for a zoo name (`'vgg16'`) or a `Network`.

    num_classes: outputs of the last fully connected layer (`Network.with_num_classes`).
    input_size: the input the module is sized for (it fixes the first FC layer's input): an int for
    a square image with the spec's channels, (H, W), or (C, H, W); default the spec's input.
    Weights follow `init_weights`; `zero_init_residual` starts the last batch norm of every residual
    block at 0 (torchvision's ResNet option, see `init_weights`). The module's `spec` and
    `input_shape` attributes say what it is.

    kwargs: timm-style call sites may pass `pretrained=False`; nothing is ever downloaded, so
    `pretrained=True` (and any other keyword) raises SpecError. Load torchvision's weights with
    `from_torchvision(name, state_dict)`.
    """
    if kwargs.pop("pretrained", False):
        raise SpecError(
            "create_model never downloads weights. Load a torchvision state dict you have with "
            "ilsvrc.from_torchvision(name, state_dict)."
        )
    if kwargs:
        raise SpecError(f"create_model got unknown keyword(s): {', '.join(sorted(kwargs))}.")
    network = get_spec(name_or_network) if isinstance(name_or_network, str) else name_or_network
    network = network.with_num_classes(num_classes)
    model = build(network, _input_shape(network, input_size))
    return init_weights(model, zero_init_residual=zero_init_residual)  # type: ignore[return-value]


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of `module`, in eval mode, with every batch norm folded into the convolution before it.

    A `BatchNorm2d` that directly follows a `Conv2d` in a chain (an `nn.Sequential`: a `Model`, a
    block, a branch, a residual body or shortcut) computes, in eval mode, an affine map per channel:
    y = gamma * (x - mean) / sqrt(var + eps) + beta. Folded, the convolution's filters of channel c are
    scaled by s_c = gamma_c / sqrt(var_c + eps) and its bias becomes s_c * (b_c - mean_c) + beta_c (a
    convolution without bias gets one), and the batch norm becomes an `nn.Identity`, so the submodule
    names stay. torch's `fuse_conv_bn_eval` does the arithmetic. The result computes what `module`
    computes in eval mode (the running statistics, not a batch's), up to float rounding; it is meant
    for inference and export, not for training on. A batch norm after anything else (a fully
    connected layer, a ReLU, a concatenation), or one without running statistics, stays. `module` is
    not changed; count `nn.BatchNorm2d` modules before and after to see how many were folded.
    """
    folded = copy.deepcopy(module).eval()
    for chain in folded.modules():
        if not isinstance(chain, nn.Sequential):
            continue
        names = list(chain._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = chain._modules[first], chain._modules[second]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(norm, nn.BatchNorm2d)
                and norm.running_mean is not None
                and norm.running_var is not None
            ):
                chain._modules[first] = fuse_conv_bn_eval(conv, norm)
                chain._modules[second] = nn.Identity()
    return folded


# ---------------------------------------------------------------------------------------------------
# torchvision's state dicts


def _torchvision_name(name: str) -> str:
    key = name.replace("_", "-")
    if key not in TORCHVISION_NAMES:
        hint = f" ({_NEAR_MISSES[key]})" if key in _NEAR_MISSES else ""
        raise WeightMappingError(
            f"No torchvision mapping for {name!r}{hint}. Networks whose weights map one to one: "
            f"{', '.join(TORCHVISION_NAMES)}."
        )
    return TORCHVISION_NAMES[key]


_Group = tuple[str, dict[str, str]]


def _groups(state: Mapping[str, Tensor]) -> list[_Group]:
    """Keys grouped by module, in order: [(module prefix, {tensor name: full key})]."""
    groups: dict[str, dict[str, str]] = {}
    for key in state:
        prefix, _, tensor = str(key).rpartition(".")
        groups.setdefault(prefix, {})[tensor] = key
    return list(groups.items())


def _segments(groups: list[_Group], by_name: tuple[str, ...]) -> list[tuple[str, list[_Group]]]:
    """The module groups split into those paired in order (segment '') and, for each top-level name
    in `by_name`, those under that name (paired with the other side's of the same name)."""
    segments: dict[str, list[_Group]] = {"": [], **{n: [] for n in by_name}}
    for prefix, keys in groups:
        top = prefix.partition(".")[0]
        segments[top if top in by_name else ""].append((prefix, keys))
    return list(segments.items())


def _shape(t: Any) -> tuple[int, ...] | str:
    return tuple(t.shape) if isinstance(t, Tensor) else f"a {type(t).__name__}, not a tensor"


def _listed(keys: list[str], most: int = 8) -> str:
    """`keys` joined, the first `most` of them when there are more."""
    if len(keys) <= most:
        return ", ".join(keys)
    return f"{', '.join(keys[:most])} (and {len(keys) - most} more)"


def _map_keys(source: Mapping[str, Tensor], target: Mapping[str, Tensor], src_label: str,
              dst_label: str, what: str, by_name: tuple[str, ...] = ()) -> dict[str, str]:  # fmt: skip
    """target key -> source key, pairing the modules of both in order and checking every shape.

    The modules under a top-level name in `by_name` (GoogLeNet's auxiliary heads, which torchvision
    registers after inception5b) are paired with the other side's modules under the same name, the
    rest in order. Raises WeightMappingError naming both keys and shapes at the first tensor that
    does not fit; `what` ends the message (which state dict was expected).
    """
    mapping: dict[str, str] = {}
    src_segments = _segments(_groups(source), by_name)
    dst_segments = _segments(_groups(target), by_name)
    for (segment, src), (_, dst) in zip(src_segments, dst_segments):
        for (s_mod, s_keys), (d_mod, d_keys) in zip(src, dst):
            if set(s_keys) != set(d_keys):
                raise WeightMappingError(
                    f"{src_label} module {s_mod!r} holds {', '.join(s_keys)}, but the matching "
                    f"{dst_label} module {d_mod!r} holds {', '.join(d_keys)}: {what}"
                )
            for tensor, d_key in d_keys.items():
                s_key = s_keys[tensor]
                s_shape, d_shape = _shape(source[s_key]), _shape(target[d_key])
                if s_shape != d_shape:
                    raise WeightMappingError(
                        f"{src_label} {s_key} has shape {s_shape}, but {dst_label} {d_key} needs "
                        f"{d_shape}: {what}"
                    )
                mapping[d_key] = s_key
        if len(src) != len(dst):
            n = min(len(src), len(dst))
            longer, label = (src, src_label) if len(src) > n else (dst, dst_label)
            extra = _listed([key for _, keys in longer[n:] for key in keys.values()])
            where = f" under {segment!r}" if segment else ""
            owner = label if label.endswith("'s") else f"{label}'s"
            raise WeightMappingError(
                f"{src_label} has {len(src)} modules with tensors{where} and {dst_label} has "
                f"{len(dst)}: {owner} {extra} have no counterpart: {what}"
            )
    return mapping


def _num_classes(state: Mapping[str, Tensor], label: str) -> int:
    """Outputs of the last fully connected layer: the first axis of the last 2-D weight (torchvision's
    GoogLeNet registers its auxiliary heads before fc, and our specs have them before it too)."""
    for key in reversed(list(state)):
        value = state[key]
        if str(key).endswith("weight") and isinstance(value, Tensor) and value.dim() == 2:
            return int(value.shape[0])
    raise WeightMappingError(f"{label} has no fully connected weight (a 2-D '...weight' tensor).")


def _without_aux(network: Network) -> Network:
    """The same network without its auxiliary classifiers (torchvision's `aux_logits=False`)."""
    return dataclasses.replace(network, layers=tuple(x for x in network.layers if not isinstance(x, Aux)))


def _has_module(state: Mapping[str, Any], name: str) -> bool:
    """Whether a state dict holds tensors of the top-level module `name`."""
    return any(str(key).startswith(name + ".") for key in state)


def from_torchvision(name: str, state_dict: Mapping[str, Tensor]) -> Model:
    """Our module for `name` (e.g. 'vgg16-bn', 'resnet50') carrying the weights of torchvision's model.

    `state_dict` is torchvision's (`torchvision.models.vgg16_bn().state_dict()` or a saved file);
    tensors are paired module by module, batch norm buffers included, and every shape is checked: in
    order, except GoogLeNet's auxiliary heads, paired by name. num_classes comes from the last fully
    connected weight. For 'googlenet-torchvision' the module has auxiliary heads when the state dict
    has `aux1.*` / `aux2.*` tensors (torchvision's `googlenet(aux_logits=True)`) and none when it has
    none (`aux_logits=False`, as its published weights load by default); torchvision's
    `transform_input` is not part of the weights: give the module normalised input (`spec.info`'s
    mean and std), as `transform_input=False` does. The module is built at the spec's input (224):
    there VGG's missing AdaptiveAvgPool2d(7) would be the identity, so both models give the same
    outputs. Returned in training mode, on the state dict's device and with the dtype of its first
    floating tensor (like `load_state_dict`, the tensors are copied).
    """
    tv_name = _torchvision_name(name)
    label = "the given state dict"
    what = f"it is not a state dict of torchvision's {tv_name}."
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise WeightMappingError(f"Expected a non-empty state dict (a mapping of tensors): {what}")
    network = get_spec(name.replace("_", "-")).with_num_classes(_num_classes(state_dict, label))
    if not any(_has_module(state_dict, head.name) for head in network.aux_heads):
        network = _without_aux(network)
    heads = tuple(head.name for head in network.aux_heads)
    with torch.device("meta"):
        skeleton = build(network)
    mapping = _map_keys(state_dict, skeleton.state_dict(), label, f"{network.name}'s", what, heads)
    floats = (t for t in state_dict.values() if isinstance(t, Tensor) and t.is_floating_point())
    first = next(floats, torch.empty(0))
    model = skeleton.to_empty(device=first.device).to(first.dtype)
    model.load_state_dict({ours: state_dict[theirs] for ours, theirs in mapping.items()})
    return model


def to_torchvision(name: str, module: nn.Module) -> dict[str, Tensor]:
    """A state dict that torchvision's constructor for `name` loads strictly (the inverse of
    `from_torchvision`): torchvision's keys in its order, our module's tensors (not copies).

    `torchvision.models.get_model('vgg16', num_classes=n).load_state_dict(to_torchvision('vgg16', m))`.
    For 'googlenet-torchvision': a module with auxiliary heads gives the state dict of
    `googlenet(aux_logits=True)`, one without them that of `googlenet(aux_logits=False)`.
    """
    import torchvision

    tv_name = _torchvision_name(name)
    ours = module.state_dict()
    label = f"{name}'s module"
    heads = tuple(head.name for head in get_spec(name.replace("_", "-")).aux_heads)
    kwargs = dict(_TORCHVISION_KWARGS.get(tv_name, {}))
    if heads:
        kwargs["aux_logits"] = any(_has_module(ours, head) for head in heads)
    with torch.device("meta"):
        reference = torchvision.models.get_model(tv_name, weights=None,
                                                 num_classes=_num_classes(ours, label), **kwargs)  # fmt: skip
    theirs = reference.state_dict()
    what = f"the module is not a {name} (build it with create_model or from_torchvision)."
    mapping = _map_keys(ours, theirs, label, f"torchvision's {tv_name}", what, heads)
    return {key: ours[mapping[key]] for key in theirs}
