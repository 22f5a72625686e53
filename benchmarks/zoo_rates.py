"""Every network of the zoo at inference and in a training step, as a fraction of the matrix-product
rate, beside torchvision's same network where torchvision has it (issue 16, item 2).

What is measured is what a user gets by default: the module `ilsvrc.create_model` builds (for the
networks torchvision has, `ilsvrc.from_torchvision` of the torchvision model's own freshly initialised
weights, so both compute the same function), called with an ordinary N x C x H x W float32 tensor;
torchvision's model called the same way. Inference: eval mode under `torch.inference_mode()`.
Training step: zero the gradients, forward, cross-entropy (plus 0.3 x each auxiliary head's, for
GoogLeNet in both), backward, SGD with momentum; ilsvrc's module in the memory layout `ilsvrc train`
would train it in (`ilsvrc.training.layout.choose_layout`: a step timed in each layout, on a copy).
The two take turns (`harness.interleaved`).

Fraction of the rate = the analyzer's multiply-adds x 2 (x 3 for a training step: forward, input
gradients, weight gradients; auxiliary heads included in training, left out at inference, where
they are not run) x images per second / the matrix-product rate measured first in the same run.

    python -m benchmarks --only zoo [--quick] [--no-write]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from harness import Section, interleaved, log, matmul_rate, median
from torch.nn import functional as F

import ilsvrc
from ilsvrc.errors import ShapeError
from ilsvrc.nn import TORCHVISION_NAMES, ModelOutputs
from ilsvrc.training.layout import choose_layout

# networks measured at their own input (the classics: fully connected layers sized for it; and any
# network that cannot take 128 px); the rest (global pooling before the classifier) at the 128 px
CLASSIC_PREFIXES = ("alexnet", "zfnet", "vgg")
SMALL_SIZE = 128
# a batch of at most 64, halved until one inference is at most this many GFLOP (under 1.5 s at 190
# GFLOP/s; a training step three times that); --quick: an eighth
BATCH_GFLOP, QUICK_BATCH_GFLOP = 256.0, 32.0
TORCHVISION_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"transform_input": False, "init_weights": False},
}
# --quick: one network or two of each family (the full run measures all 28)
QUICK_NAMES = ("alexnet", "alexnet-torchvision", "zfnet", "vgg11-bn", "googlenet", "googlenet-torchvision",
               "resnet18", "resnet50")  # fmt: skip
AUX_WEIGHT = 0.3  # GoogLeNet's auxiliary losses, in both models
INFERENCE_TARGET, TRAINING_TARGET, ALEXNET_TARGET = 0.9, 0.8, 0.8


def setting(name: str, quick: bool) -> tuple[int, int]:
    """(input size, batch) at which `name` is measured."""
    spec = ilsvrc.get_spec(name)
    size = spec.input_shape[1] if name.startswith(CLASSIC_PREFIXES) else SMALL_SIZE
    try:
        gflop = 2 * ilsvrc.analyze(spec, (3, size, size)).macs / 1e9
    except ShapeError:  # the published GoogLeNet: a fixed 7x7 average pooling before its classifier
        size = spec.input_shape[1]
        gflop = 2 * ilsvrc.analyze(spec, (3, size, size)).macs / 1e9
    budget = QUICK_BATCH_GFLOP if quick else BATCH_GFLOP
    batch = 64
    while batch > 1 and batch * gflop > budget:
        batch //= 2
    return size, batch


def _loss(out: Any, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits, plus AUX_WEIGHT x each auxiliary head's (ours or torchvision's)."""
    if isinstance(out, ModelOutputs):
        logits, aux = out.logits, list(out.aux)
    elif hasattr(out, "aux_logits1"):  # torchvision's GoogLeNetOutputs
        logits, aux = out.logits, [out.aux_logits1, out.aux_logits2]
    else:
        logits, aux = out, []
    return F.cross_entropy(logits, y) + sum(AUX_WEIGHT * F.cross_entropy(a, y) for a in aux)


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        _loss(model(x), y).backward()
        opt.step()

    return step


def inference(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def _models(name: str, size: int) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(ilsvrc's module, torchvision's or None), with the same weights when torchvision has one."""
    torch.manual_seed(0)
    if name not in TORCHVISION_NAMES:
        return ilsvrc.create_model(name, input_size=size), None
    tv_name = TORCHVISION_NAMES[name]
    reference = torchvision.models.get_model(tv_name, weights=None, **TORCHVISION_KWARGS.get(tv_name, {}))
    return ilsvrc.from_torchvision(name, reference.state_dict()), reference


def _fraction(batch: int, seconds: list[float], flops: float, rate: float) -> float:
    return batch / median(seconds) * flops / 1e9 / rate


def _layout(choice: Any) -> str:
    """The training layout `ilsvrc train` picks, and how much slower the other was (when timed)."""
    name = "channels-last" if choice.channels_last else "contiguous"
    if choice.reason != "timed":
        return f"{name} (not timed)" if choice.reason == "small" else name
    cl, plain = choice.seconds["channels-last"], choice.seconds["contiguous"]
    return f"{name} (other {max(cl, plain) / min(cl, plain):.2f}x)"


def _pct(value: float | None) -> str:
    return "no torchvision model" if value is None else f"{100 * value:.0f}%"


def measure(name: str, rate: float, quick: bool) -> dict[str, Any]:
    """One network: its setting and the fractions of the rate, ours and torchvision's."""
    size, batch = setting(name, quick)
    report = ilsvrc.analyze(ilsvrc.get_spec(name), (3, size, size))
    ours, reference = _models(name, size)
    torch.manual_seed(1)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))
    rounds = 1 if quick else 3
    ours.eval()
    contenders = {"ilsvrc": inference(ours, x)}
    if reference is not None:
        reference.eval()
        with torch.inference_mode():  # the same function: the folded path agrees with torchvision
            expected = reference(x[:2])  # (untrained deep ResNets give logits in the tens of thousands)
            scale = float(expected.abs().max())
            torch.testing.assert_close(ours(x[:2]), expected, rtol=1e-3, atol=1e-3 * max(1.0, scale))
        contenders["torchvision"] = inference(reference, x)
    t_inf = interleaved(contenders, rounds, label=f"{name} inference {size} px b{batch}")
    choice = choose_layout(ours, size, batch)  # what `ilsvrc train` would train it in
    ours.set_channels_last(choice.channels_last)
    steps = {"ilsvrc": train_step(ours, x, y)}
    if reference is not None:
        steps["torchvision"] = train_step(reference, x, y)
    t_train = interleaved(steps, rounds, label=f"{name} training {size} px b{batch}")
    flops, train_flops = 2 * report.macs, 3 * 2 * report.macs_with_aux
    result: dict[str, Any] = {"name": name, "size": size, "batch": batch, "layout": choice}
    for who in ("ilsvrc", "torchvision"):
        known = who in t_inf
        result[f"{who}_inference"] = _fraction(batch, t_inf[who], flops, rate) if known else None
        result[f"{who}_training"] = _fraction(batch, t_train[who], train_flops, rate) if known else None
    return result


def _profile_shares(name: str, quick: bool) -> dict[str, float]:
    """Shares of one training step's self CPU time by kind of operator (torch.profiler), ilsvrc's."""
    size, batch = setting(name, quick)
    model, _ = _models(name, size)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))
    step = train_step(model, x, y)
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    kinds = {
        "convolution and matrix products": ("conv", "addmm", "mm", "matmul", "linear"),
        "batch norm": ("batch_norm",),
        "ReLU, residual add, concatenation, pooling": ("relu", "threshold", "add", "cat", "pool", "max_pool"),
        "optimizer and the rest": (),
    }
    shares = dict.fromkeys(kinds, 0.0)
    for event in prof.key_averages():
        key = event.key.lower()
        matching = (k for k, words in kinds.items() if any(w in key for w in words))
        kind = next(matching, "optimizer and the rest")
        shares[kind] += event.self_cpu_time_total
    total = sum(shares.values()) or 1.0
    return {k: v / total for k, v in shares.items()}


def zoo_rates(rate: float, quick: bool, names: list[str] | None = None) -> list[Section]:
    """The fraction-of-rate table for every zoo network, and where a training step's time goes."""
    names = names or (list(QUICK_NAMES) if quick else ilsvrc.list_models())
    s = Section(
        "Every network of the zoo: fraction of the matrix-product rate, ilsvrc beside torchvision, fp32",
        ["network", "input, batch", "inference: ilsvrc", "inference: torchvision", "training step: ilsvrc",
         "training step: torchvision", "ilsvrc's training layout"],
    )  # fmt: skip
    results = []
    for name in names:
        log(f"  {name}...")
        r = measure(name, rate, quick)
        results.append(r)
        s.rows.append([name, f"{r['size']} px, {r['batch']}", _pct(r["ilsvrc_inference"]),
                       _pct(r["torchvision_inference"]), _pct(r["ilsvrc_training"]),
                       _pct(r["torchvision_training"]), _layout(r["layout"])])  # fmt: skip
    rate_after = matmul_rate()

    def verdict(what: str, key: str, target: float, among: list[dict]) -> None:
        below = [r for r in among if r[key] < target]
        listed = ", ".join(f"{r['name']} {100 * r[key]:.0f}%" for r in below)
        lowest = min(among, key=lambda r: r[key])
        measured = f"{len(among) - len(below)} of {len(among)} networks"
        measured += f"; below: {listed}" if below else ""
        s.target(what, not below, measured + f"; lowest {lowest['name']} {100 * lowest[key]:.0f}%")

    verdict(f"every network at inference at least {INFERENCE_TARGET:.0%} of the rate", "ilsvrc_inference",
            INFERENCE_TARGET, results)  # fmt: skip
    verdict(f"every network in a training step at least {TRAINING_TARGET:.0%} of the rate", "ilsvrc_training",
            TRAINING_TARGET, results)  # fmt: skip
    published = [r for r in results if r["name"] == "alexnet"]
    if published:
        frac = published[0]["ilsvrc_inference"]
        s.target(f"the published AlexNet (LRN) at inference at least {ALEXNET_TARGET:.0%} of the rate",
                 frac >= ALEXNET_TARGET, f"{100 * frac:.0f}%")  # fmt: skip
    pairs = [r for r in results if r["torchvision_inference"] is not None]
    if pairs:
        geo = {}
        for k in ("inference", "training"):
            logs = [math.log(r[f"ilsvrc_{k}"] / r[f"torchvision_{k}"]) for r in pairs]
            geo[k] = math.exp(sum(logs) / len(logs))
        s.notes.append(f"Over the {len(pairs)} networks torchvision has, ilsvrc's module against "
                       f"torchvision's (geometric mean of the ratios): inference {geo['inference']:.2f}x, "
                       f"training step {geo['training']:.2f}x.")  # fmt: skip
    s.notes.append(
        f"Input: the classics (AlexNet, ZFNet, VGG: fully connected layers sized for their input; the "
        f"published GoogLeNet: a fixed 7x7 average pooling) at their own input, the others at {SMALL_SIZE} "
        f"px; batch 64, halved until one inference is at most "
        f"{QUICK_BATCH_GFLOP if quick else BATCH_GFLOP:.0f} GFLOP. Matrix-product rate: {rate:.0f} GFLOP/s "
        f"at the start of the run, {rate_after:.0f} after this table; fractions divide by the first. "
        "Inference: eval mode, inference_mode; ilsvrc's module folds each batch norm into the convolution "
        "before it and lets oneDNN apply the ReLU (and a residual sum) as it writes the convolution's "
        "output. Training step: ilsvrc's module in the layout `ilsvrc train` picks for it by timing a "
        "step in each (ilsvrc.training.layout, on a copy, batch at most 32; the last column: the layout "
        "and how much slower the other step was), torchvision's in torch's default layout. "
        "Training FLOPs: 3 x the forward pass's (auxiliary heads included)."
        + (f" --quick: only {', '.join(QUICK_NAMES)}." if quick else "")
    )
    return [s, training_shares(quick)]


def training_shares(quick: bool) -> Section:
    """Where a training step's time goes, for the batch-normalised networks that stay below 80%."""
    names = ["resnet18", "resnet50", "googlenet-torchvision", "vgg16-bn"]
    kinds: list[str] = []
    rows = []
    for name in names:
        log(f"  profiling a training step of {name}...")
        shares = _profile_shares(name, quick)
        kinds = list(shares)
        rows.append([name] + [f"{100 * v:.0f}%" for v in shares.values()])
    title = "Where a training step's time goes (torch.profiler, self CPU time by operator, ilsvrc's module)"
    s = Section(title, ["network"] + kinds, rows)
    s.notes.append(
        "Batch norm in training mode, ReLU, the residual sums and concatenations are passes over whole "
        "activations, bound by memory bandwidth, forward and backward; no eager kernel fuses them with "
        "the convolutions in a training step (oneDNN's fused calls have no backward pass in torch). "
        "Their share is the distance to the matrix-product rate that eager PyTorch leaves."
    )
    return s
