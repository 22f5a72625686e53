"""Which memory layout trains a network faster here: channels-last or torch's default, timed.

`ilsvrc.nn.build` lays a network out channels-last, the faster layout for inference on every zoo
network. In a training step it is not always: oneDNN's channels-last weight gradient of a 3x3
convolution is slow on large maps, so the VGGs at 224 px train faster in torch's default layout while
the ResNets, GoogLeNet and AlexNet train faster channels-last (benchmarks/RESULTS.md, the zoo case's
last column). No rule read off the spec told the cases apart
(VGG-16 at 64 px trains faster channels-last, at 128 px slower), so `ilsvrc train` does what
cudnn.benchmark does for convolution algorithms: before the run it times a training step in each
layout on a copy of the model and keeps the faster (`choose_layout`). A step too small for the layout to
matter (`PROBE_FLOPS`) is not timed and keeps channels-last, so small runs stay reproducible to the
bit. The choice is written into the run's config.json and a resumed run keeps it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from ..analysis.analyzer import analyze, channels_last_layout
from ..analysis.estimate import TRAIN_FACTOR
from ..nn import Model, ModelOutputs

PROBE_BATCH = 32  # images per timed step at most (the advantage can change with the batch)
PROBE_FLOPS = 20e9  # a probe step below this many FLOPs is not timed: channels-last is kept
ROUNDS = 1  # timed steps per layout, after one untimed (oneDNN builds its kernels then)
MARGIN = 0.05  # torch's default layout must be this much faster to replace channels-last


@dataclass(frozen=True)
class LayoutChoice:
    """The layout a run trains in, and why."""

    channels_last: bool
    reason: str  # "timed", "small" (a step too small to time), "unsupported" (oneDNN cannot), "asked"
    seconds: dict[str, float] | None = None  # "channels-last" and "contiguous": the best timed step
    batch: int = 0
    size: int = 0

    def describe(self) -> str:
        """One line for the run's log."""
        name = "channels-last" if self.channels_last else "torch's default (contiguous)"
        if self.reason == "timed" and self.seconds:
            cl, plain = self.seconds["channels-last"], self.seconds["contiguous"]
            return (f"memory layout {name}: a training step of {self.batch} images at {self.size} px took "
                    f"{cl:.3f} s channels-last and {plain:.3f} s contiguous here")  # fmt: skip
        why = {"small": "a step too small for the layout to matter (not timed)",
               "unsupported": "oneDNN cannot train this network channels-last",
               "asked": "as asked"}[self.reason]  # fmt: skip
        return f"memory layout {name}: {why}"


def probe_flops(model: Model, size: int, batch: int) -> float:
    """The FLOPs of one probe step: `batch` images at `size` px, forward and both gradients."""
    report = analyze(model.spec, (model.input_shape[0], size, size), suggest=False)
    return TRAIN_FACTOR * 2 * report.macs_with_aux * batch


def choose_layout(model: Model, size: int, batch: int) -> LayoutChoice:
    """Time a training step of `model` (a copy: the model, its generators and its batch norms' statistics
    are left as they were) in each layout on random `min(batch, PROBE_BATCH)` images at `size` px, and
    return the faster layout (channels-last unless the default layout is MARGIN faster)."""
    batch = min(batch, PROBE_BATCH)
    if not channels_last_layout(model.spec):
        return LayoutChoice(False, "unsupported", batch=batch, size=size)
    if probe_flops(model, size, batch) < PROBE_FLOPS:
        return LayoutChoice(True, "small", batch=batch, size=size)
    seconds = _time_layouts(model, size, batch)
    faster_plain = seconds["contiguous"] < (1 - MARGIN) * seconds["channels-last"]
    return LayoutChoice(not faster_plain, "timed", seconds, batch, size)


def _time_layouts(model: Model, size: int, batch: int) -> dict[str, float]:
    device = next(model.parameters()).device
    probe = copy.deepcopy(model).train()
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, model.input_shape[0], size, size, generator=generator).to(device)
    optimizer = torch.optim.SGD(probe.parameters(), lr=0.0, momentum=0.9)  # a step's work, no change
    layouts = {"channels-last": True, "contiguous": False}
    best = dict.fromkeys(layouts, float("inf"))
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator
        for round_ in range(ROUNDS + 1):
            for name, layout in layouts.items():
                probe.set_channels_last(layout)
                start = time.perf_counter()
                _step(probe, optimizer, x)
                if round_:  # the first is a warm-up (oneDNN builds its kernels)
                    best[name] = min(best[name], time.perf_counter() - start)
    return best


def _step(model: Model, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    out = model(x)
    outputs = [out.logits, *out.aux] if isinstance(out, ModelOutputs) else [out]
    sum(o.float().square().mean() for o in outputs).backward()
    optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
