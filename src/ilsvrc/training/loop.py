"""`ilsvrc train`: the training loop, visible top to bottom.

A run is a directory:

    RUN/config.json       the resolved settings (recipe and overrides), enough to resume or evaluate
    RUN/classes.json      the class list (index, id, name), used by `ilsvrc predict`
    RUN/metrics.jsonl     one line per epoch
    RUN/curves.png        loss and errors against epochs and minutes
    RUN/checkpoints/      the last and the best checkpoint (see ilsvrc.checkpoint)

Exact resumption on the CPU: the order of the samples of epoch e comes from a generator seeded by
(seed, e); each sample's augmentation from (seed, e, index) (`data.Augmented`); dropout and the rest
from torch's global generator, saved in every checkpoint with the optimizer, the schedule and the
running sums of the epoch. So a run stopped after any step and resumed ends with the same weights as
one never stopped. With `--time-limit` the schedule follows the clock, which no rerun repeats.

A resume that gives a run more epochs (or a larger time limit) extends it without restarting its
learning-rate schedule (`LRSchedule.extend`; RUN/config.json records each extension); a resume with
nothing left to do is a `NothingToDo` error naming what to give.

The run (`_train`) reads as its steps: set up (`_set_up`), resume or start, then for each epoch
train its steps (`_train_epoch`, one `_step` per batch), total the sums, evaluate and write the
metrics line (`_end_epoch`), agree whether to go on, checkpoint; then finish. What does not change
during a run is a `Run`; where it is, a `RunState`, both passed explicitly. A step does not wait for
the device: its loss and hits stay there and are read every `SYNC_EVERY` steps, before each
checkpoint and at each epoch's end; a NaN loss is caught within `SYNC_EVERY` steps, and no checkpoint
is written after it (the one on disk is the last good one). Distributed, the ranks agree whether to
stop (a signal, the time limit, --max-steps, a NaN) at those reads only: one small all-reduce.

A network with auxiliary classifiers (GoogLeNet's `Aux` heads) returns their logits in training mode
(`ilsvrc.nn.ModelOutputs`); a step minimises CE(logits) + sum of weight * CE(aux logits), each head's
weight from the spec (`Model.aux_weights`, 0.3 in GoogLeNet), and the metrics' `train_loss` is that
sum, the loss minimised. Top-1 hits count the main logits only; evaluation runs in eval mode, where
the heads are not run. A recipe with `polyak_decay` (GoogLeNet's) keeps an exponential moving average
of the weights (`polyak_average`), updated after every step; the validation error, the plateau rule
and `load_trained` (so `ilsvrc eval`, `predict`, `report --run`) use the averaged weights, and every
checkpoint holds them beside the trained ones, so a resumed run's average is exact too.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..analysis import render
from ..analysis.analyzer import analyze, channels_last_layout
from ..analysis.estimate import TRAIN_FACTOR, RunCost, StepEstimate
from ..errors import IlsvrcError
from ..networks import resolve, specfile
from ..networks.spec import Aux, Network
from ..networks.zoo import get_spec
from ..nn import Model, ModelOutputs, create_model
from . import checkpoint, distributed
from .classical import is_classical_run
from .data import (
    Augmented,
    ClassInfo,
    DataError,
    SkipLog,
    check_splits,
    collate_skipping,
    open_dataset,
    save_classes,
)
from .evaluate import EvalResult, combine_ranks, eval_input_transform, evaluate
from .layout import LayoutChoice, choose_layout
from .metrics import _parse_lines, read_metrics  # noqa: F401 (read_metrics: re-exported)
from .recipes import (
    LRSchedule,
    Recipe,
    check,
    check_network_sizes,
    default_recipe,
    eval_size,
    get_recipe,
    size_at,
    size_schedule,
)
from .stopping import StopRequest
from .transforms import train_transform


class DivergedError(IlsvrcError):
    """The loss became NaN or infinite."""


class NothingToDo(IlsvrcError):
    """A resumed run that has no step left to take (its epochs, time limit or --max-steps used up)."""


class RunInterrupted(IlsvrcError):
    """SIGTERM or SIGINT stopped the run after a clean checkpoint; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


@dataclass
class TrainConfig:
    """Everything a run needs; saved as RUN/config.json."""

    model: str
    recipe: Recipe
    data: str | None = None
    out: str | None = None
    seed: int = 0
    device: str = "cpu"
    amp: str | None = None  # None, "bf16" or "fp16"
    # the memory layout a step trains in: None times a step in each before the run and keeps the faster
    # (ilsvrc.training.layout; the choice is saved in config.json), True channels-last, False torch's default
    channels_last: bool | None = None
    cache: bool = True  # decode a folder's images once into ILSVRC_CACHE_DIR (see ilsvrc.cache)
    compile: bool = False  # torch.compile the training forward (worth it on GPUs; minutes to compile)
    workers: int = 2
    time_limit: float | None = None  # minutes
    checkpoint_every: int | None = None  # steps; besides the checkpoint at the end of every epoch
    synthetic_classes: int = 10
    synthetic_train: int | None = None  # images per split of the built-in data (None: its default)
    synthetic_val: int | None = None
    spec: dict[str, Any] | None = None  # the network itself when it came from a spec file or --set edits
    edits: list[str] = dataclasses.field(default_factory=list)  # --set edits made to `model` (in `spec`)
    # how the learning rate was set when the batch is not the recipe's (see scale_lr), for the log
    lr_rule: str | None = None
    # resumes that gave the run more epochs or time, in order: when, the new and old totals, and how the
    # learning rate went on (see LRSchedule.extend)
    extensions: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def network(self) -> Network:
        if self.spec is not None:
            return specfile.from_dict(self.spec, source=self.model)
        return get_spec(self.model)

    @property
    def image_size(self) -> int:
        """The training size (the last of a size schedule), the size the model is built for."""
        return self.recipe.image_size or self.network().input_shape[1]

    @property
    def eval_size(self) -> int:
        """The size the run is evaluated at ("center"): the image size times the recipe's test_scale."""
        return eval_size(self.recipe, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["recipe"] = dataclasses.asdict(self.recipe)
        data["image_size"] = self.image_size
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data.pop("image_size", None)
        recipe = Recipe(**data.pop("recipe"))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(recipe=recipe, **{k: v for k, v in data.items() if k in names})


def make_config(model: str, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a model name, a recipe name (default: the model's paper recipe) and
    overrides of either config fields (data, out, seed, ...) or recipe fields (lr, epochs, ...)."""
    base = get_recipe(recipe) if recipe else default_recipe(model)
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    changes = {k: v for k, v in overrides.items() if k in recipe_fields and v is not None}
    rest = {k: v for k, v in overrides.items() if k not in recipe_fields and v is not None}
    if specfile.looks_like_file(model) and "spec" not in rest:  # a spec file or prototxt (TRAIN phase)
        rest["spec"] = resolve(model, phase="train").to_dict()
    config = TrainConfig(model=model, recipe=base.replace(**changes), **rest)
    check(config.recipe)
    if "lr" not in changes:
        config.recipe, config.lr_rule = scale_lr(base, config.recipe)
    problems = []
    if not 0 <= config.seed < 2**32:
        problems.append(f"seed must be a whole number from 0 to 2**32 - 1, got {config.seed}")
    if config.workers < 0:
        problems.append(f"workers must be 0 (load in the main process) or more, got {config.workers}")
    if config.time_limit is not None and not (math.isfinite(config.time_limit) and config.time_limit > 0):
        problems.append(f"time_limit must be a positive number of minutes, got {config.time_limit}")
    if problems:
        raise IlsvrcError("Bad training settings: " + "; ".join(problems) + ".")
    return config


def scale_lr(paper: Recipe, recipe: Recipe) -> tuple[Recipe, str | None]:
    """`recipe` with its lr scaled to its batch, and a sentence saying so (None when nothing changed).

    A recipe's lr belongs to its batch (`paper.batch_size`: the ResNet paper's 0.1 to 256 images).
    With another batch the lr follows the linear scaling rule of Goyal et al. (2017), lr = paper.lr *
    batch / paper.batch_size: the same average step per image. Unscaled, ResNet-18's 0.1 at batch 16
    diverges on the built-in data (loss 1.4 to 49 in 13 steps). A larger batch (a larger lr) also gets
    their gradual warm-up from lr/10, 5 epochs as in the paper but at most a tenth of the run, unless
    the recipe or the command line sets one or the schedule already rises (one-cycle). A smaller batch
    lowers the lr: nothing to warm up. An lr given explicitly is used as it is.
    """
    batch = recipe.batch_size
    if batch == paper.batch_size:
        return recipe, None
    lr = paper.lr * batch / paper.batch_size
    changes: dict[str, Any] = {"lr": lr}
    warm = ""
    if batch > paper.batch_size and recipe.warmup_epochs == 0 and recipe.schedule != "onecycle":
        changes["warmup_epochs"] = min(5.0, recipe.epochs / 10)
        warm = f", warmed up from lr/10 over {changes['warmup_epochs']:g} epochs"
    rule = (
        f"lr {lr:.3g} = the {paper.name} recipe's {paper.lr:g} x batch {batch} / {paper.batch_size} "
        f"(the linear scaling rule, Goyal et al. 2017){warm}; --lr sets it as given"
    )
    return recipe.replace(**changes), rule


# ---------------------------------------------------------------------------------------------------
# Model set-up


def _aux_names(model: Model) -> list[str]:
    """The module names of the model's auxiliary classifiers (top-level `Aux` layers of its spec)."""
    spec = getattr(model, "spec", None)
    return [layer.name for layer in spec.layers if isinstance(layer, Aux)] if spec is not None else []


def _classifiers(model: Model) -> set[str]:
    """The module names of the layers that give logits: the last top-level fully connected layer and
    the last fully connected layer of each auxiliary classifier."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    heads = _aux_names(model)
    top = [name for name in linears if not any(name.startswith(h + ".") for h in heads)]
    last = {h: [name for name in linears if name.startswith(h + ".")] for h in heads}
    return {*top[-1:], *(names[-1] for names in last.values() if names)}


def initialise(model: Model, scheme: str) -> None:
    """Initialise the weights by a named scheme (create_model has applied `torchvision` already).

    torchvision: Kaiming normal (fan-out) convolutions, N(0, 0.01) fully connected, biases 0.
    kaiming: the same convolutions, Kaiming normal (fan-in) hidden fully connected layers, N(0, 0.01)
    for the last. alexnet (the paper): weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the
    hidden fully connected layers (it gives their ReLUs positive inputs early on), 0 elsewhere.
    gaussian (ZFNet): weights N(0, 0.01), biases 0. "The last" fully connected layer is every layer
    that gives logits: the network's and each auxiliary classifier's (`_classifiers`).
    """
    if scheme == "torchvision":
        return
    classifiers = _classifiers(model)
    hidden = [
        name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name not in classifiers
    ]
    if scheme == "kaiming":
        for name in hidden:
            nn.init.kaiming_normal_(model.get_submodule(name).weight, nonlinearity="relu")
        return
    ones = {"conv2", "conv4", "conv5", *hidden} if scheme == "alexnet" else set()
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.constant_(m.bias, 1.0 if name in ones else 0.0)


@torch.no_grad()
def renormalise_filters(model: nn.Module, rms_max: float) -> None:
    """ZFNet: scale each convolution filter whose RMS exceeds `rms_max` back to `rms_max`."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            rms = w.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            w.mul_(torch.where(rms > rms_max, rms_max / rms, torch.ones_like(rms)))


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout of the network to `p`, except those of its auxiliary classifiers, which keep
    their own (GoogLeNet's 0.7: a setting of the heads, not of the network's top)."""
    heads = [name + "." for name in _aux_names(model)] if isinstance(model, Model) else []
    for name, m in model.named_modules():
        if isinstance(m, nn.Dropout) and not any(name.startswith(head) for head in heads):
            m.p = p


def build_model(config: TrainConfig, num_classes: int) -> Model:
    """The run's network, initialised as its recipe says (`init`, `zero_init_residual`, `dropout`)."""
    r = config.recipe
    model = create_model(config.network(), num_classes=num_classes, input_size=config.image_size,
                         zero_init_residual=r.zero_init_residual)  # fmt: skip
    initialise(model, r.init)  # convolutions and fully connected layers only: batch norms stay as they are
    if r.dropout is not None:
        set_dropout(model, r.dropout)
    return model


def polyak_average(model: Model, decay: float) -> AveragedModel:
    """The Polyak average of `model`'s weights that GoogLeNet evaluates: torch's `AveragedModel`, as an
    exponential moving average of the parameters and of the batch-norm statistics (`use_buffers`),
    updated with `update_parameters(model)` after every step.

    The first update copies the weights; each later one moves the average towards them by 1 - d, with
    d = min(decay, (1 + n) / (10 + n)) and n the updates averaged so far, as TensorFlow's
    ExponentialMovingAverage does when given the step count (`num_updates`; TensorFlow's Inception
    training averaged with decay 0.9999). So early on the average follows the weights closely (d = 0.18
    at n = 1, 0.9 at n = 80), later it spans about 1 / (1 - decay) steps (10,000 at 0.9999), and a short
    run's average is not stuck near the initial weights. Why an EMA and not the
    plain running mean of Polyak and Juditsky: over a run whose weights travel far (250 epochs, the lr
    still 28% of its start at the end), an equal-weight mean from the first step would keep the poor
    early weights in the evaluated model for the whole run; an EMA forgets them and averages only the
    recent stretch of the trajectory, where averaging removes the noise of SGD. Integer buffers (batch
    norm's `num_batches_tracked`) take the model's current value.
    """

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        if not averaged[0].is_floating_point():
            for a, c in zip(averaged, current):
                a.copy_(c)
            return
        n = int(num_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(averaged, current, num_averaged)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def parameter_groups(
    model: nn.Module, weight_decay: float, wd_norm_bias: bool = True
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: all parameters with `weight_decay`, or, without `wd_norm_bias`,
    the weights of the convolutions and fully connected layers with it and the batch norms' scales and
    shifts and every bias without (weight decay, an L2 pull towards zero, regularises a weight by
    shrinking the function it computes; a batch norm's scale and shift, and a bias, do not add capacity
    that needs it, and decaying the scale of a batch norm that follows a convolution only fights the
    weight decay of that convolution: Goyal et al. 2017, Jia et al. 2018 "no bias decay"). Told apart
    by shape: every weight of a convolution or fully connected layer has 2 or more dimensions, every
    bias and batch-norm parameter one."""
    params = [p for p in model.parameters() if p.requires_grad]
    if wd_norm_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]  # fmt: skip


def objective(
    out: torch.Tensor | ModelOutputs,
    targets: torch.Tensor,
    aux_weights: tuple[float, ...],
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss a step minimises, the main logits) of a forward pass's output `out`.

    `out` is the plain logits (eval mode, or a network without auxiliary classifiers): the loss is
    criterion(logits). In training mode with auxiliary classifiers it is a `ModelOutputs`: the loss is
    then criterion(logits) + sum of w * criterion(aux) over the heads and their weights `aux_weights`
    (`Model.aux_weights`, in spec order), as GoogLeNet trains. An empty batch (a process of a
    distributed run whose share had no readable image) gives a zero loss that still involves every
    output, so that DDP sees a (zero) gradient for every parameter.
    """
    logits, aux = (out.logits, tuple(out.aux)) if isinstance(out, ModelOutputs) else (out, ())
    if aux and len(aux) != len(aux_weights):
        raise IlsvrcError(
            f"The model gave {len(aux)} auxiliary outputs for {len(aux_weights)} auxiliary loss weights; "
            "a model built by ilsvrc.nn gives one per Aux head of its spec, in training mode."
        )
    if not len(targets):
        return sum((head.sum() for head in aux), logits.sum()) * 0.0, logits
    loss = criterion(logits, targets)
    for weight, head in zip(aux_weights, aux):
        loss = loss + weight * criterion(head, targets)
    return loss, logits


# ---------------------------------------------------------------------------------------------------
# Data


def datasets(config: TrainConfig, progress: bool = False) -> tuple[Augmented, Augmented, list[ClassInfo]]:
    spec = config.network()
    size, r = config.image_size, config.recipe
    source = round(size / r.crop_fraction)  # the built-in data is drawn with room to crop
    common = dict(image_size=source, seed=config.seed, num_classes=config.synthetic_classes)
    lengths = (config.synthetic_train, config.synthetic_val) if config.data is None else (None, None)
    train_base = open_dataset(config.data, "train", length=lengths[0], skip_unreadable=True, **common)
    val_base = open_dataset(config.data, "val", length=lengths[1], skip_unreadable=True, **common)
    check_splits(train_base, val_base)
    if config.data is not None and config.cache:
        for base in (train_base, val_base):
            try:
                base.use_cache(progress=progress)  # quietly not, when too large for the room there
            except DataError as error:  # the cache is a speed-up: without it the run goes on
                logging.getLogger("ilsvrc.data").warning("%s Training without it.", error)
    mean, std = spec.info.mean, spec.info.std
    train = Augmented(
        train_base, train_transform(r.augmentation, size, mean, std, r.min_crop_area), seed=config.seed
    )
    val_tf = eval_input_transform("center", config.eval_size, mean, std, r.crop_fraction)
    val = Augmented(val_base, val_tf, seed=config.seed)
    return train, val, list(train_base.classes)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of an epoch: a permutation seeded by (seed, epoch), cut into full batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    b = min(batch_size, n)
    return [order[i : i + b] for i in range(0, n - b + 1, b)]


def loader(dataset, batches: list[list[int]], config: TrainConfig, seed: int) -> torch.utils.data.DataLoader:
    """A DataLoader over given batches; its own generator keeps torch's global one untouched."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=config.workers,
        pin_memory=config.device.startswith("cuda"),  # pinned pages make the copies non-blocking
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        collate_fn=collate_skipping,  # batches are (images, targets, skipped files)
    )


# ---------------------------------------------------------------------------------------------------
# Random states (saved in every checkpoint)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ---------------------------------------------------------------------------------------------------
# Devices and run directories


def _device(config: TrainConfig) -> torch.device:
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise IlsvrcError(
            "--device cuda was asked for, but this machine has no usable GPU; use --device cpu."
        )
    if config.device not in ("cpu",) and not config.device.startswith("cuda"):
        raise IlsvrcError(f"Unknown device {config.device!r}; use cpu or cuda (cuda:N).")
    return torch.device(config.device)


def _autocast(config: TrainConfig, device: torch.device):
    if config.amp is None:
        return torch.autocast(device.type, enabled=False)
    if config.amp not in ("bf16", "fp16"):
        raise IlsvrcError(f"--amp takes bf16 or fp16, not {config.amp!r}.")
    dtype = torch.bfloat16 if config.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def new_run_dir(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(config.out) if config.out else Path("runs") / f"{Path(config.model).stem}-{stamp}"
    if out.exists() and any(out.iterdir()):
        raise IlsvrcError(
            f"Run directory {out} already exists and is not empty; resume it with "
            f"`ilsvrc train --resume {out}` or choose another --out."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IlsvrcError(f"Cannot create run directory {out}: {exc.strerror or exc}.") from None
    return out


# ---------------------------------------------------------------------------------------------------
# train(): the checks before anything is read or written, then the run


def train(
    config: TrainConfig | None = None,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    stop_after_steps: int | None = None,
    progress: bool = True,
    log=print,
    after_epoch: Callable[[Path], None] | None = None,
) -> Path:
    """Train as `config` says, or resume the run directory `resume`; returns the run directory.

    after_epoch: called with the run directory after each epoch's metrics line is written, on the
    process that writes (the command line draws RUN/curves.png with it; the pictures sit above this
    layer, so the loop does not draw).

    overrides (with resume): a new `epochs`, `time_limit`, `workers` or `device`; None values keep
    the run's own. More epochs or time than the run had extend it (`LRSchedule.extend` says how the
    lr goes on); a run with nothing left to do is a NothingToDo error, before anything is read or
    written. stop_after_steps: stop cleanly (checkpoint, evaluation) after that many steps in total,
    as a time limit or an interruption would (tests of exact resumption use it).
    """
    loaded = None
    if resume is not None:
        config = _resumed_config(Path(resume), overrides)
    assert config is not None
    check(config.recipe)
    check_image_size(config)
    _device(config)
    if resume is not None:
        loaded = checkpoint.load(resume)
        _check_work_left(Path(resume), config, loaded[1], stop_after_steps)
    ctx, device = distributed.setup(config.device)
    try:
        return _train(config, resume, loaded, ctx, device, stop_after_steps, progress and ctx.main,
                      log if ctx.main else _silent, after_epoch)  # fmt: skip
    finally:
        distributed.teardown(ctx)


def _resumed_config(run_dir: Path, overrides: dict[str, Any] | None) -> TrainConfig:
    """The config of the run in `run_dir` with the changes a resume may make."""
    try:
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise IlsvrcError(f"{run_dir} is not a run directory with a readable config.json ({exc}).") from None
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "epochs" in changes:
        config.recipe = config.recipe.replace(epochs=changes.pop("epochs"))
    unknown = set(changes) - {"time_limit", "workers", "device", "checkpoint_every"}
    if unknown:
        raise IlsvrcError(f"Only epochs, time limit, workers and device can change on resume, not {unknown}.")
    return dataclasses.replace(config, **changes)


def check_image_size(config: TrainConfig) -> None:
    """Refuse an image size the network cannot take (a ShapeError naming the smallest that works), or
    a size schedule or test size where the network is not the same at every size."""
    check_network_sizes(config.network(), config.recipe)


def _count(n: int, word: str) -> str:
    """'1 step', '2 steps'."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def _check_work_left(run_dir: Path, config: TrainConfig, state: dict[str, Any],
                     stop_after_steps: int | None) -> None:  # fmt: skip
    """Raise NothingToDo, saying what to give, when resuming `state` would not take a single step."""
    command = f"ilsvrc train --resume {run_dir}"
    epoch, offset, step = state["epoch"], state["offset"], state["step"]
    if epoch >= config.recipe.epochs:
        part = " and part of another" if offset else ""
        raise NothingToDo(
            f"Nothing left to do: the run {run_dir} has trained {_count(epoch, 'epoch')}{part}, and it is "
            f"set to {config.recipe.epochs} in all. To train it longer, give the new total number of "
            f"epochs: `{command} --epochs N` with N above {epoch}; the learning rate then goes on from "
            "where the run left it (README, Training: extending a run)."
        )
    timing = state.get("timing", {})
    reserve = timing.get("step_seconds", 0.0) + timing.get("wrap_up_seconds", 0.0)
    same_limit = config.time_limit == state["config"].get("time_limit")
    time_up = state.get("time_up") and same_limit  # the run stopped at this limit
    if config.time_limit and (time_up or state["elapsed"] + reserve >= config.time_limit * 60):
        raise NothingToDo(
            f"Nothing left to do: the run {run_dir} has used {state['elapsed'] / 60:.3g} of its "
            f"{config.time_limit:g} minutes (the limit counts the whole run, evaluations included), which "
            "leaves no room for another step and its evaluation. To train it longer, give a larger total: "
            f"`{command} --time-limit MINUTES`."
        )
    if stop_after_steps is not None and step >= stop_after_steps:
        raise NothingToDo(
            f"Nothing left to do: the run {run_dir} has taken {_count(step, 'step')} and --max-steps "
            f"{stop_after_steps} counts every step of the run; give a larger --max-steps, or leave it out."
        )


def _extend(config: TrainConfig, state: dict[str, Any], schedule: LRSchedule, steps_per_epoch: int,
            last_lr: float) -> str | None:  # fmt: skip
    """When a resume changes the run's epochs or time limit: continue its schedule from where it is
    (LRSchedule.extend), record that in config.extensions, and return a sentence for the log."""
    before = TrainConfig.from_dict(state["config"])
    old, new = (before.recipe.epochs, before.time_limit), (config.recipe.epochs, config.time_limit)
    if old == new:
        return None
    previous = LRSchedule(before.recipe, steps_per_epoch, before.time_limit and before.time_limit * 60)
    previous.load_state_dict(state["schedule"])
    how = schedule.extend(previous, state["step"], state["elapsed"], last_lr)
    changes = [f"from {old[0]} to {new[0]} epochs"] if old[0] != new[0] else []
    if old[1] != new[1]:
        minutes = [f"{m:g} min" if m else "none" for m in (old[1], new[1])]
        changes.append(f"time limit from {minutes[0]} to {minutes[1]}")
    config.extensions = [*before.extensions, {
        "step": state["step"], "epochs": new[0], "time_limit": new[1], "previous_epochs": old[0],
        "previous_time_limit": old[1], "schedule": how,
    }]  # fmt: skip
    return f"Extending the run {' and '.join(changes)} at step {state['step']}: {how}."


def _silent(*args: Any, **kwargs: Any) -> None:
    pass


# ---------------------------------------------------------------------------------------------------
# The run, step by step


# the loop's clock, in seconds (tests of the time limit put a fake clock here)
_now = time.perf_counter

# Steps between reads of the losses and hits from the device (and, distributed, between the ranks'
# agreements to stop). A step never waits for the device: what it computes is read every SYNC_EVERY
# steps, before each checkpoint and at the end of each epoch. A loss that turns NaN or infinite is
# therefore caught within SYNC_EVERY steps, and no checkpoint is ever written after it.
SYNC_EVERY = 10

_STOP_STEPS, _STOP_TIME, _STOP_SIGNAL, _STOP_DIVERGED = 1, 2, 3, 4  # reasons to stop: the strongest wins
_NO_LIMIT = 2**62  # steps the time limit leaves room for, when there is none


@dataclass
class EpochSums:
    """The running sums of an epoch's training steps (a checkpoint's "sums")."""

    loss: float = 0.0  # of each step's mean loss times its number of images
    correct: int = 0  # right top-1 predictions
    images: int = 0
    seconds: float = 0.0  # time spent in training steps (data loading included; no evaluation, checkpoint)
    skipped: int = 0  # unreadable files left out of this epoch's training batches
    data_seconds: float = 0.0  # of `seconds`, the time spent waiting for the data loader's next batch
    steps: int = 0  # training steps taken in this epoch (by this process)


class _Unread:
    """The loss and the hits of the steps not read yet, left on the device so that no step waits for it.

    `read` fetches them in one transfer and adds them to an EpochSums in step order, with the same
    arithmetic as reading after every step (so the sums, and a resumed run's, are the same to the bit);
    it keeps the first step whose loss was not finite (`diverged`: step, loss, lr).
    """

    def __init__(self) -> None:
        self.steps: list[tuple[int, float, int]] = []  # (step, lr, images) of each unread step
        self.losses: list[torch.Tensor] = []  # each step's mean loss (0-d, on the device)
        self.hits: list[torch.Tensor] = []  # each step's right top-1 predictions (0-d, on the device)
        self.diverged: tuple[int, float, float] | None = None

    def add(
        self, step: int, lr: float, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
    ) -> None:
        self.steps.append((step, lr, len(targets)))
        self.losses.append(loss.detach())
        self.hits.append((logits.detach().argmax(1) == targets).sum())

    def read(self, sums: EpochSums) -> tuple[float, int]:
        """Add the unread steps to `sums`; returns their summed loss and their images (for the display)."""
        if not self.steps:
            return 0.0, 0
        n = len(self.steps)
        values = torch.cat([torch.stack(self.losses).double(), torch.stack(self.hits).double()]).tolist()
        loss_sum, images = 0.0, 0
        for (step, lr, count), loss, hits in zip(self.steps, values[:n], values[n:]):
            if not math.isfinite(loss) and self.diverged is None:
                self.diverged = (step, loss, lr)
            sums.loss += loss * count
            sums.correct += int(hits)
            loss_sum, images = loss_sum + loss * count, images + count
        self.steps, self.losses, self.hits = [], [], []
        return loss_sum, images


# The estimate of a run's time (`_estimate`): this process's first ESTIMATE_WARMUP steps are not timed (the
# first allocates the buffers and sets up the kernels, and waits for the loader's workers to start); the
# next are, and the estimate is made after ESTIMATE_AFTER steps in all, a sync point (SYNC_EVERY), so that
# a GPU's queued work is inside the timed span. An epoch with fewer steps gives the estimate at its end.
ESTIMATE_WARMUP = 2
ESTIMATE_AFTER = SYNC_EVERY


@dataclass
class _Timing:
    """The steps this process has taken since it started (or resumed) the run, and those timed for the
    estimate (steps, images, seconds: data waits included)."""

    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    timed: list = dataclasses.field(default_factory=lambda: [0, 0, 0.0])
    estimate: StepEstimate | None = None
    made_after: int = 0  # the steps taken when the estimate was made
    written: bool = False  # the estimate is in a metrics line

    def add(self, images: int, seconds: float) -> None:
        self.steps, self.images, self.seconds = self.steps + 1, self.images + images, self.seconds + seconds
        if self.steps > ESTIMATE_WARMUP:
            self.timed = [self.timed[0] + 1, self.timed[1] + images, self.timed[2] + seconds]


@dataclass
class Run:
    """What a run is made of, set up once: its settings, data, model and optimizer, process group,
    directory and outlets (log, progress bar, after_epoch)."""

    config: TrainConfig
    ctx: distributed.Context
    device: torch.device
    train_set: Augmented
    val_set: Augmented
    classes: list[ClassInfo]
    model: Model  # what checkpoints hold
    averaged: AveragedModel | None  # the Polyak average of `model` (recipe polyak_decay), evaluated
    net: nn.Module  # what the steps call: `model`, wrapped by DDP and torch.compile when asked
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    sizes: list[tuple[float, int]]  # the training size from each fraction of the run on (size_schedule)
    steps_per_epoch: int
    limit: float | None  # the time limit, in seconds
    stop_after_steps: int | None
    run_dir: Path
    log: Callable[..., None]
    progress: bool
    after_epoch: Callable[[Path], None] | None
    cost: RunCost  # the analyzer's FLOPs of an image, an epoch and the run (the estimate's arithmetic)
    train_macs_at: dict[int, int]  # a training image's forward MACs at each size of the size schedule
    layout: LayoutChoice | None = None  # how a new run chose its memory layout (None: resumed)

    @property
    def time_up(self) -> str:
        """The reason a run stopped by its time limit gives."""
        return f"the time limit of {self.config.time_limit:g} min"


@dataclass
class RunState:
    """Where a run is. The first part goes into every checkpoint (with the weights, the optimizer's,
    schedule's, scaler's and random states); the rest belongs to this process only."""

    epoch: int = 0  # epochs completed
    offset: int = 0  # batches of the current epoch used up (each a step, or skipped: no readable image)
    step: int = 0  # steps taken by the run
    best: float = math.inf  # the lowest validation top-1 error so far
    image_size: int = 0  # the current epoch's training size (size_schedule; 0: not chosen yet)
    sums: EpochSums = dataclasses.field(default_factory=EpochSums)  # this epoch's, on this process
    clock_start: float = 0.0  # the `_now()` at which the run's clock read 0 (resumed parts counted)
    # the time limit keeps room for one more step and an end of epoch (evaluation, checkpoint)
    step_seconds: float = 0.0  # the mean step
    wrap_up_seconds: float = 0.0  # the last end of epoch, its checkpoint included
    save_seconds: float = 0.0  # the last checkpoint's writing
    stopped: str | None = None  # why the run stops before its end (every rank agrees)
    signum: int | None = None  # the signal that stops it, if one does
    # this process's only
    unread: _Unread = dataclasses.field(default_factory=_Unread)
    time_allows: int = 0  # with a time limit, the last step it leaves room for, as the ranks last agreed
    epoch_skipped: list = dataclasses.field(default_factory=list)  # this epoch's unreadable files
    skip_log: SkipLog = dataclasses.field(default_factory=SkipLog)  # each unreadable file logged once
    timing: _Timing = dataclasses.field(default_factory=lambda: _Timing())  # the steps the estimate times

    def seconds(self) -> float:
        """Wall-clock seconds of the run so far (evaluations and checkpoints included)."""
        return _now() - self.clock_start


def _train(config: TrainConfig, resume: str | Path | None, loaded: tuple | None, ctx: distributed.Context,
           device: torch.device, stop_after_steps: int | None, progress: bool, log,
           after_epoch: Callable[[Path], None] | None = None) -> Path:  # fmt: skip
    """The run, on every rank when distributed (only rank 0 writes and prints). The run's clock (the
    time limit, the metrics' seconds) starts before its data is opened: building the decoded-image
    cache is part of the time a run takes."""
    began = _now()
    run = _set_up(config, resume, ctx, device, stop_after_steps, progress, log, after_epoch)
    state = _resume(run, loaded, began) if loaded is not None else _start(run, began)
    _announce(run)
    with StopRequest() as signals:
        while state.epoch < config.recipe.epochs and state.stopped is None:
            _train_epoch(run, state, signals)  # until the epoch ends or the ranks agree to stop
            totals = _totals(run, state)  # the epoch's sums over the ranks; a diverged run ends here
            if state.signum is not None:  # a signal: checkpoint now, no evaluation, and exit
                _save(run, state, totals)
                raise _interrupted(run, state)
            totals, improved = _end_epoch(run, state, totals)  # evaluate, write the metrics line
            if state.stopped is None and state.epoch < config.recipe.epochs:
                _agree_to_stop(run, state, signals)  # is there room for the next epoch?
            _save(run, state, totals, best=improved)
            if state.signum is not None:  # a signal during this end of epoch: its state is checkpointed
                raise _interrupted(run, state)
    _finish(run, state)
    return run.run_dir


def _set_up(config: TrainConfig, resume: str | Path | None, ctx: distributed.Context, device: torch.device,
            stop_after_steps: int | None, progress: bool, log,
            after_epoch: Callable[[Path], None] | None) -> Run:  # fmt: skip
    """Seed the generators, open the data, build the model and its optimizer, schedule and loss; a new
    run also gets its directory (config, classes and an empty metrics file, made by rank 0)."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    train_set, val_set, classes = datasets(config, progress=progress)
    model = build_model(config, len(classes)).to(device)
    choice = _layout(config, model, ctx) if resume is None or config.channels_last is None else None
    if choice is not None:
        config = dataclasses.replace(config, channels_last=choice.channels_last)
    model.set_channels_last(bool(config.channels_last))
    r = config.recipe
    optimizer = torch.optim.SGD(
        parameter_groups(model, r.weight_decay, r.wd_norm_bias), lr=r.lr, momentum=r.momentum,
        nesterov=r.nesterov and r.momentum > 0, weight_decay=r.weight_decay,
    )  # fmt: skip
    steps_per_epoch = len(epoch_batches(len(train_set), r.batch_size, config.seed, 0))
    limit = config.time_limit * 60 if config.time_limit else None
    averaged = polyak_average(model, r.polyak_decay) if r.polyak_decay else None  # 0 or None: off
    sizes = size_schedule(r, config.image_size)
    net = torch.nn.parallel.DistributedDataParallel(model) if ctx.enabled else model
    if config.compile:
        net = torch.compile(net)  # the same parameters; checkpoints hold `model`'s plain state dict
    run_dir = Path(resume) if resume is not None else _new_run(config, classes, ctx)
    val_share = len(range(ctx.rank, len(val_set), ctx.world)) if ctx.enabled else len(val_set)
    cost, train_macs_at = _run_cost(config, len(classes), sizes, len(train_set), val_share, steps_per_epoch)
    return Run(
        config=config, ctx=ctx, device=device, train_set=train_set, val_set=val_set, classes=classes,
        model=model, averaged=averaged, net=net, optimizer=optimizer,
        schedule=LRSchedule(r, steps_per_epoch, limit), sizes=sizes,
        scaler=torch.amp.GradScaler(device.type, enabled=config.amp == "fp16"),
        criterion=nn.CrossEntropyLoss(label_smoothing=r.label_smoothing), steps_per_epoch=steps_per_epoch,
        limit=limit, stop_after_steps=stop_after_steps, run_dir=run_dir, log=log, progress=progress,
        after_epoch=after_epoch, cost=cost, train_macs_at=train_macs_at, layout=choice,
    )  # fmt: skip


def _layout(config: TrainConfig, model: Model, ctx: distributed.Context) -> LayoutChoice:
    """The layout a new run trains in: as asked, or (channels_last None) the faster of the two for a step
    at the run's image size, timed by rank 0 (every rank of a DDP run must lay its gradients out alike)."""
    if config.channels_last is not None:
        on = config.channels_last and channels_last_layout(model.spec)
        return LayoutChoice(on, "asked" if on == config.channels_last else "unsupported")
    choice = choose_layout(model, config.image_size, config.recipe.batch_size) if ctx.main else None
    return distributed.broadcast_object(choice, ctx)


def _epoch_sizes(sizes: list[tuple[float, int]], epochs: int, steps_per_epoch: int) -> list[int]:
    """The size of each epoch of a run that follows its planned steps (`_choose_size`: the schedule's
    size half way through the epoch)."""
    total = epochs * steps_per_epoch
    return [size_at(sizes, (i * steps_per_epoch + steps_per_epoch // 2) / total) for i in range(epochs)]


def _run_cost(config: TrainConfig, num_classes: int, sizes: list[tuple[float, int]], train_images: int,
              val_images: int, steps_per_epoch: int) -> tuple[RunCost, dict[int, int]]:  # fmt: skip
    """The run's FLOPs as planned (`RunCost`), and a training image's forward MACs at each size of the
    size schedule. Each epoch trains at the schedule's size half way through it (`_epoch_sizes`; a time
    limit can move it further on), and is evaluated unless it ends before the recipe's eval_from (the
    last always is); evaluation is at the eval size, the last on each image and its mirror with
    tta_flip."""
    r = config.recipe
    network = config.network().with_num_classes(num_classes)
    channels = network.input_shape[0]
    at = {s: analyze(network, (channels, s, s), suggest=False) for s in sorted({s for _, s in sizes})}
    epoch_sizes = _epoch_sizes(sizes, r.epochs, steps_per_epoch)
    evaluated = [not r.eval_from or (i + 1) / r.epochs >= r.eval_from or i + 1 == r.epochs
                 for i in range(r.epochs)]  # fmt: skip
    final = at.get(config.image_size) or analyze(network, (channels, config.image_size, config.image_size),
                                                 suggest=False)  # fmt: skip
    test = final if config.eval_size == config.image_size else analyze(
        network, (channels, config.eval_size, config.eval_size), suggest=False)  # fmt: skip
    cost = RunCost(
        train_macs=final.macs_with_aux, eval_macs=test.macs, train_images=train_images, val_images=val_images,
        epochs=r.epochs, last_extra_views=1.0 if r.tta_flip else 0.0,
        epoch_train_macs=tuple(at[s].macs_with_aux for s in epoch_sizes) if len(at) > 1 else (),
        evaluated=tuple(evaluated) if not all(evaluated) else (),
    )  # fmt: skip
    return cost, {s: report.macs_with_aux for s, report in at.items()}


def _new_run(config: TrainConfig, classes: list[ClassInfo], ctx: distributed.Context) -> Path:
    """A new run directory, made and filled by rank 0, named on every rank."""
    run_dir = None
    if ctx.main:
        run_dir = new_run_dir(config)
        checkpoint.write_json_atomic(run_dir / "config.json", config.to_dict())
        save_classes(run_dir / "classes.json", classes)
        (run_dir / "metrics.jsonl").write_text("")
    return Path(distributed.broadcast_object(str(run_dir), ctx))


def _start(run: Run, began: float) -> RunState:
    """A new run's state: step 0, its clock started at `began` (before the data was opened)."""
    return RunState(clock_start=began)


def _resume(run: Run, loaded: tuple, began: float) -> RunState:
    """Put a checkpoint's weights, optimizer, schedule, scaler and random states back; extend the run
    if it was given more epochs or time; drop the metrics lines of states the checkpoint does not hold."""
    weights, saved, where = loaded
    run.model.load_state_dict(weights)
    if run.averaged is not None:
        averaged = checkpoint.load_averaged(where)
        if averaged is None:
            raise checkpoint.CheckpointError(
                f"{where} holds no averaged weights, but the run's recipe averages them (polyak_decay "
                f"{run.config.recipe.polyak_decay}); it was not written by this run. Resume the run's own "
                "checkpoint, or start a new run."
            )
        run.averaged.load_state_dict(averaged)
    run.optimizer.load_state_dict(saved["optimizer"])
    run.schedule.load_state_dict(saved["schedule"])
    run.scaler.load_state_dict(saved["scaler"])
    set_rng_state(saved["rng"])
    timing = saved.get("timing", {})
    state = RunState(
        epoch=saved["epoch"], offset=saved["offset"], step=saved["step"], best=saved["best"],
        image_size=int(saved.get("image_size", 0)),  # a partial epoch goes on at its own size
        sums=EpochSums(**saved["sums"]) if run.ctx.main else EpochSums(),  # the saved sums are global
        clock_start=began - saved["elapsed"],  # the run's clock counts every resumed part of it
        step_seconds=timing.get("step_seconds", 0.0), wrap_up_seconds=timing.get("wrap_up_seconds", 0.0),
    )  # fmt: skip
    extended = _extend(
        run.config, saved, run.schedule, run.steps_per_epoch, run.optimizer.param_groups[0]["lr"]
    )
    if run.ctx.main:
        _check_writable(run.run_dir)
        _truncate_metrics(run.run_dir / "metrics.jsonl", state.step)
        if extended:
            _write_config(run.run_dir, run.config)
    run.log(f"Resuming {run.run_dir} from {where.name}: epoch {state.epoch + 1}, step {state.step}.")
    if extended:
        run.log(extended)
    return state


def _announce(run: Run) -> None:
    config, r = run.config, run.config.recipe
    run.log(
        f"Training {config.model} ({sum(p.numel() for p in run.model.parameters()):,} parameters, "
        f"{len(run.classes)} classes) on {config.data or 'the built-in shapes data'}: {len(run.train_set)} "
        f"train / {len(run.val_set)} val images at {config.image_size} px, recipe {r.name}, batch "
        f"{r.batch_size}, {_count(r.epochs, 'epoch')} of {_count(run.steps_per_epoch, 'step')}"
        + (f", time limit {config.time_limit:g} min" if run.limit else "")
        + (f"; {config.lr_rule}" if config.lr_rule else "")
        + "".join(
            f"; {name} adds {w:g} of its loss"
            for name, w in zip(_aux_names(run.model), run.model.aux_weights)
        )
        + (
            f"; evaluating the Polyak-averaged weights (EMA, decay {r.polyak_decay:g})"
            if run.averaged
            else ""
        )
        + "".join(f"; {trick}" for trick in _tricks(run))
        + "."
    )
    if run.layout is not None and run.layout.reason == "timed":
        line = run.layout.describe()
        run.log(line[0].upper() + line[1:] + ".")
    c = run.cost
    run.log(
        f"Cost: {render.flops(c.train_flops)} a training image"
        + (f" at {run.config.image_size} px" if c.scheduled and len(run.sizes) > 1 else "")
        + f" (3 x 2 x {render.short(c.train_macs, 4)} "
        f"MACs: forward, input and weight gradients), {render.flops(c.eval_flops)} a validation image; an "
        f"epoch {render.flops(c.epoch_flops)}, the run {render.flops(c.run_flops)}"
        + (f" (this process's share, of {run.ctx.world})" if run.ctx.enabled else "")
        + f". Its time is estimated after the first {ESTIMATE_AFTER} steps, timed on this machine."
    )


def _tricks(run: Run) -> list[str]:
    """The `fast` recipe's tricks this run uses, each as a phrase for the first log line."""
    config, r = run.config, run.config.recipe
    tricks = []
    if len(run.sizes) > 1:
        spans = [f"{size} px from {start:.0%}" for start, size in run.sizes]
        tricks.append(f"progressive resizing: {', '.join(spans)} of the run")
    if config.eval_size != config.image_size:
        tricks.append(f"evaluated at {config.eval_size} px (test_scale {r.test_scale:g})")
    if r.tta_flip:
        tricks.append("evaluated on each image and its mirror (logits averaged)")
    if not r.wd_norm_bias:
        tricks.append("no weight decay on batch norms and biases")
    if r.label_smoothing:
        tricks.append(f"label smoothing {r.label_smoothing:g}")
    return tricks


def _train_epoch(run: Run, state: RunState, signals: StopRequest) -> None:
    """Steps on the epoch's batches from `state.offset` on, until they end or the ranks agree to stop
    (`state.stopped`). The losses are read from the device at the steps `_sync_point` names; alone, the
    checks of signals and of the time limit, which need no device, follow every step; distributed, the
    ranks agree at those sync points only."""
    config, ctx = run.config, run.ctx
    batches = epoch_batches(len(run.train_set), config.recipe.batch_size, config.seed, state.epoch)
    batches = distributed.per_rank_batches(batches[state.offset :], ctx)
    _choose_size(run, state)
    run.train_set.set_epoch(state.epoch)
    run.model.train()
    bar = _Bar(len(batches), f"epoch {state.epoch + 1}/{config.recipe.epochs}", run.progress)
    start = _now()
    for images, targets, skipped in loader(run.train_set, batches, config, seed=config.seed + state.epoch):
        state.sums.data_seconds += _now() - start  # since the last step ended
        _note_skipped(run, state, skipped)
        if images is None and not ctx.enabled:  # no readable image in the batch: used up without a step
            state.offset += 1
            now = _now()
            state.sums.seconds += now - start  # all of it waiting for the loader
            start = now
            continue
        _step(run, state, images, targets)
        synced = _sync_point(run, state)
        if synced:
            _read_losses(run, state, bar)  # waits for the device: part of the steps' time
        bar.advance()
        now = _now()
        state.sums.seconds += now - start
        state.timing.add(0 if targets is None else len(targets), now - start)
        start = now
        state.step_seconds = state.sums.seconds / state.sums.steps
        if state.timing.estimate is None and state.timing.steps >= ESTIMATE_AFTER:
            _estimate(run, state)
        if synced or not ctx.enabled:  # alone, the check waits for no one: after every step
            _agree_to_stop(run, state, signals)
            if state.stopped is not None:
                break
        every = config.checkpoint_every
        if every and state.step % every == 0 and state.offset < run.steps_per_epoch:
            _save(run, state, _totals(run, state))
            start = _now()  # writing a checkpoint is not training time
    bar.close()
    if state.timing.estimate is None and state.timing.steps:
        _estimate(run, state)  # an epoch shorter than ESTIMATE_AFTER steps (or a run stopped early)


def _estimate(run: Run, state: RunState) -> None:
    """The run's time, from this process's steps timed so far (`_Timing`) and the analyzer's FLOPs
    (`StepEstimate`): logged once, and written into the next metrics line (`estimate`)."""
    t = state.timing
    steps, images, seconds = t.timed if t.timed[0] else (t.steps, t.images, t.seconds)
    which = (f"steps {ESTIMATE_WARMUP + 1}-{t.steps} timed" if t.timed[0] else
             f"all {t.steps} timed, the first {ESTIMATE_WARMUP} included: too few to leave out")  # fmt: skip
    if seconds <= 0 or images <= 0:  # nothing timed yet (a process whose shares were all unreadable)
        return
    c = run.cost
    timed_flops = TRAIN_FACTOR * 2 * run.train_macs_at.get(state.image_size, c.train_macs)
    epoch_flops = tuple(TRAIN_FACTOR * 2 * m for m in c.epoch_train_macs)
    flips = 2 * c.eval_macs * c.last_extra_views  # the last evaluation's mirrors
    e = StepEstimate(steps, images, seconds, run.steps_per_epoch, c.val_images, run.config.recipe.epochs,
                     timed_flops, c.eval_flops, epoch_flops, c.evaluated, flips)  # fmt: skip
    t.estimate, t.made_after = e, t.steps
    left = e.remaining_seconds(state.epoch, state.offset)
    at = f" at {state.image_size} px" if c.scheduled and state.image_size else ""
    text = (
        f"Estimate after {_count(t.steps, 'step')} ({which}: {_count(steps, 'step')}, {images:,} images in "
        f"{seconds:.3g} s, data waits included): {e.step_seconds:.3g} s a step; measured "
        f"{render.rate(e.rate)} = {images:,} x {render.flops(e.train_flops)}{at} / {seconds:.3g} s; an "
        f"epoch{at} = {run.steps_per_epoch} steps x {e.step_seconds:.3g} s + {c.val_images:,} validation "
        f"images x {render.flops(c.eval_flops)} at that rate = {render.duration(e.train_seconds)} + "
        f"{render.duration(e.eval_seconds)} = {render.duration(e.epoch_seconds)}; the run, "
        f"{_count(e.epochs, 'epoch')}{_schedule_phrase(run)}: {render.duration(e.run_seconds)}"
    )
    if state.epoch or state.offset > t.steps:  # resumed: what is left
        text += f" ({render.duration(left)} left from epoch {state.epoch + 1}, step {state.step})"
    if run.limit:
        room = max(run.limit - state.seconds(), 0.0)
        text += f"; the time limit of {run.config.time_limit:g} min ({render.duration(room)} left) " + (
            f"has room for the whole run ({_count(e.epochs, 'epoch')})" if left <= room else
            f"has room for about {_epochs_in_limit(run, state, e, room):.1f} of the {e.epochs} epochs"
        )  # fmt: skip
    if run.ctx.enabled:
        text += f" (this process's steps; {run.ctx.world} processes share each batch)"
    run.log(text + ".")


def _epochs_in_limit(run: Run, state: RunState, e: StepEstimate, room: float) -> float:
    """Where a run whose time limit binds gets to (epochs from its start): from here on its progress is
    the fraction of the time used, so its sizes and its evaluations (eval_from) follow the clock."""
    r = run.config.recipe
    now = run.schedule.progress(state.step, state.seconds())
    here = state.epoch + state.offset / run.steps_per_epoch
    if now >= 1:  # the plan is used up: the limit stops the run where it is
        return here
    marks = sorted({now, 1.0, *(start for start, _ in run.sizes if start > now),
                    *([r.eval_from] if now < r.eval_from < 1 else [])})  # fmt: skip
    spans = []
    for a, b in zip(marks, marks[1:]):
        macs = run.train_macs_at.get(size_at(run.sizes, a), run.cost.train_macs)
        spans.append(((b - a) / (1 - now), TRAIN_FACTOR * 2 * macs, not r.eval_from or a >= r.eval_from))
    return here + e.epochs_by_time(room, spans)


def _schedule_phrase(run: Run) -> str:
    """How the run's epochs differ in cost, for the estimate: their sizes (each epoch's steps scaled by
    its FLOPs per image) and the epochs that end without evaluation."""
    c, r = run.cost, run.config.recipe
    parts = []
    if len(set(c.epoch_train_macs)) > 1:
        sizes = _epoch_sizes(run.sizes, r.epochs, run.steps_per_epoch)
        runs = [(size, len(list(group))) for size, group in itertools.groupby(sizes)]
        said = ", ".join(f"{n} at {size} px" for size, n in runs)
        parts.append(f"{said}, each epoch's steps scaled by its FLOPs an image")
    if c.evaluated and not all(c.evaluated):
        parts.append(f"{_count(c.evaluated.count(False), 'epoch')} without evaluation (eval_from)")
    if c.last_extra_views:
        parts.append("the last evaluation on each image and its mirror")
    return f" ({'; '.join(parts)})" if parts else ""


def _choose_size(run: Run, state: RunState) -> None:
    """Set the training size of the epoch about to run. At its start: the size schedule's at the
    progress the run will have reached half way through the epoch (`LRSchedule.progress` after half
    its steps and, with a time limit, half its expected time: its steps at the mean step time scaled
    by the size's FLOPs, and an end of epoch), so that a size begins at the epoch boundary nearest to
    its FROM rather than the first one past it, and each size keeps its share of the run on average
    however few the epochs (with a time limit the clocks of the ranks differ a little, so distributed,
    rank 0's choice holds for all). Inside an epoch (a run resumed there): the size the epoch began
    with, from the checkpoint, so a resumed run trains as one never stopped. The loader's workers
    start anew each epoch and take the new transform with them."""
    if state.offset == 0 or not state.image_size:
        progress = run.schedule.progress(state.step, state.seconds())
        size = size_at(run.sizes, _half_way(run, state, size_at(run.sizes, progress)))
        if run.ctx.enabled:  # the clocks of the ranks differ a little: rank 0's size for all
            size = int(distributed.broadcast_object(size, run.ctx))
        if state.image_size and size != state.image_size:
            run.log(f"epoch {state.epoch + 1}: training at {size} px from here ({progress:.0%} of the run "
                    "at its start)")  # fmt: skip
        state.image_size = size
    set_train_size(run.train_set, run.config, state.image_size)


def _half_way(run: Run, state: RunState, size: int) -> float:
    """The run's progress half way through the epoch about to start at `size` px."""
    half = run.steps_per_epoch // 2
    seconds = 0.0
    if run.limit and state.step_seconds > 0:  # the time a step will take at `size`, from the last epoch's
        before = run.train_macs_at.get(state.image_size or size, 1)
        seconds = half * state.step_seconds * run.train_macs_at.get(size, before) / before
        seconds += state.wrap_up_seconds / 2
    return run.schedule.progress(state.step + half, state.seconds() + seconds)


def set_train_size(train_set: Augmented, config: TrainConfig, size: int) -> None:
    """Make `train_set` give the recipe's augmentation at `size` px (the same crops' randomness): through
    `Augmented.set_image_size` (cheap, loader workers included) when its transform can change size,
    else a new transform."""
    if callable(getattr(train_set.transform, "at_size", None)):
        train_set.set_image_size(size)
        return
    spec = config.network()
    r = config.recipe
    train_set.transform = train_transform(
        r.augmentation, size, spec.info.mean, spec.info.std, r.min_crop_area
    )


def _step(run: Run, state: RunState, images: torch.Tensor | None, targets: torch.Tensor | None) -> None:
    """One step of SGD on a batch (this rank's share of it), which does not wait for the device: its loss
    and hits are left there (`state.unread`).

    Distributed, a rank whose share has no readable image still takes part, with an empty batch and a
    zero loss (so a zero gradient): DDP's gradient all-reduce needs every rank, and knowing whether the
    other shares were readable would take an agreement at every step. Every rank then steps on the
    other ranks' gradients (averaged over all ranks, this one's zero included); when no share of the
    batch was readable, the step has a zero gradient (momentum and weight decay still move the
    weights). One process skips a batch with no readable image instead (`_train_epoch`).
    """
    if images is None:
        size = state.image_size or run.config.image_size
        images = torch.zeros(0, run.config.network().input_shape[0], size, size)
        targets = torch.zeros(0, dtype=torch.long)
    assert targets is not None
    images = images.to(run.device, non_blocking=True)
    targets = targets.to(run.device, non_blocking=True)
    lr = run.schedule.lr(state.step, run.schedule.progress(state.step, state.seconds()))
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with _autocast(run.config, run.device):
        loss, logits = objective(run.net(images), targets, run.model.aux_weights, run.criterion)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.averaged is not None:
        run.averaged.update_parameters(run.model)
    if run.config.recipe.filter_rms_max:
        renormalise_filters(run.model, run.config.recipe.filter_rms_max)
    state.unread.add(state.step, lr, loss, logits, targets)
    state.step += 1
    state.offset += 1
    state.sums.images += len(targets)
    state.sums.steps += 1


def _sync_point(run: Run, state: RunState) -> bool:
    """Whether the losses are read now (and, distributed, the ranks agree whether to stop): every
    SYNC_EVERY steps, and at a step where a limit stops the run (--max-steps, or the time limit as
    last agreed). The same steps on every rank."""
    most = run.stop_after_steps
    return (
        state.step % SYNC_EVERY == 0
        or (run.limit is not None and state.step >= state.time_allows)
        or (most is not None and state.step >= most)
    )


def _read_losses(run: Run, state: RunState, bar: _Bar | None = None) -> None:
    """Read the unread steps' losses and hits into the epoch's sums (waiting for the device), and show
    their mean loss and the speed on the progress bar."""
    loss, images = state.unread.read(state.sums)
    if bar is not None and images:
        ips = state.sums.images * run.ctx.world / max(state.sums.seconds, 1e-9)
        bar.show(loss=loss / images, ips=ips)


def _agree_to_stop(run: Run, state: RunState, signals: StopRequest) -> None:
    """Whether the run stops before its next step, decided by every rank together (one all-reduce of
    two numbers when distributed): sets `state.stopped` and `state.signum` if it must, and raises
    DivergedError if a loss read on any rank was not finite.

    The ranks also agree on the last step the time limit leaves room for (`state.time_allows`, the
    least over their clocks), so that, checking only at sync points, they still stop together.
    """
    fit = _steps_that_fit(run, state)
    want = 0
    if state.unread.diverged is not None:
        want = _STOP_DIVERGED
    elif signals.requested:
        want = _STOP_SIGNAL
    elif fit == 0:
        want = _STOP_TIME  # no room for another step and the final evaluation
    elif run.stop_after_steps is not None and state.step >= run.stop_after_steps:
        want = _STOP_STEPS
    agreed, least_fit = distributed.max_over_ranks([want, -fit], run.ctx, run.device)
    state.time_allows = state.step - least_fit
    if agreed == _STOP_DIVERGED:
        raise DivergedError(_diverged(run, state))
    if agreed == _STOP_SIGNAL:
        if signals.requested:
            state.stopped, state.signum = f"{signals.name} received", signals.signum
        else:
            state.stopped, state.signum = "another process received a signal", signal.SIGTERM
    elif agreed == _STOP_TIME:
        state.stopped = run.time_up
    elif agreed == _STOP_STEPS:
        state.stopped = f"stop after {_count(run.stop_after_steps or 0, 'step')}"


def _steps_that_fit(run: Run, state: RunState, ahead: float = 0.0) -> int:
    """How many more steps this process's clock says the time limit leaves room for, keeping room for
    one more step and an end of epoch after them: 0 when the run must stop now. `ahead`: as if that
    many seconds had passed (an evaluation about to run)."""
    if not run.limit:
        return _NO_LIMIT
    now = state.seconds() + ahead
    if now + state.step_seconds + state.wrap_up_seconds >= run.limit:
        return 0
    if state.step_seconds <= 0:
        return 1  # no step timed yet: look again after the next one
    return max(1, math.ceil((run.limit - now - state.wrap_up_seconds) / state.step_seconds) - 1)


def _totals(run: Run, state: RunState) -> EpochSums:
    """The epoch's sums so far over all ranks (time and steps: this rank's), the unread steps read first.

    A loss that was not finite stops the run here, on every rank (the summed loss is not finite
    either), before anything is evaluated or saved: every checkpoint comes from a state whose
    losses were all finite.
    """
    _read_losses(run, state)
    s = state.sums
    loss, correct, images, skipped = distributed.sum_floats([s.loss, s.correct, s.images, s.skipped],
                                                            run.ctx, run.device)  # fmt: skip
    if state.unread.diverged is not None or not math.isfinite(loss):
        raise DivergedError(_diverged(run, state))
    return EpochSums(loss=loss, correct=int(round(correct)), images=int(round(images)), seconds=s.seconds,
                     skipped=int(round(skipped)), data_seconds=s.data_seconds, steps=s.steps)  # fmt: skip


def _end_epoch(run: Run, state: RunState, totals: EpochSums) -> tuple[EpochSums, bool]:
    """Evaluate the state reached (the end of an epoch, or where the run stops inside one), write and
    log its metrics line, call after_epoch, and move on to the next epoch if this one is complete.
    Returns the sums the checkpoint keeps (none once the epoch is complete) and whether the validation
    error is the best so far."""
    finished = state.offset >= run.steps_per_epoch
    began = _now()
    evaluated = not _skips_evaluation(run, state, finished)
    # test-time flips: on the evaluation the run ends with (those on the way, for the curve, without)
    flips = run.config.recipe.tta_flip and _last_evaluation(run, state, finished)
    result, val_skipped = _validate(run, flips) if evaluated else (None, [])
    eval_seconds = _now() - began
    measured = result is not None and result.images > 0  # not when every validation image was unreadable
    _report_skipped(run, state, _all_ranks(state.epoch_skipped, run.ctx) + val_skipped)  # rank 0: all ranks'
    state.epoch_skipped = []
    line = {
        "epoch": state.epoch + 1 if finished else round(state.epoch + state.offset / run.steps_per_epoch, 4),
        "step": state.step,
        "train_loss": totals.loss / max(totals.images, 1),
        "train_top1_error": 1 - totals.correct / max(totals.images, 1),
        "val_top1_error": result.top1_error if measured else None,
        "val_top5_error": result.top5_error if measured else None,
        "evaluated": evaluated,  # false before the recipe's eval_from
        "flips": evaluated and flips,  # evaluated on each image and its mirror too (tta_flip, the last)
        "lr": run.optimizer.param_groups[0]["lr"],
        "image_size": state.image_size,  # the training size of these steps (size_schedule)
        "images_per_s": totals.images / max(totals.seconds, 1e-9),  # over the training steps only
        "data_wait_fraction": round(totals.data_seconds / max(totals.seconds, 1e-9), 4),
        "seconds": round(state.seconds(), 3),  # wall time of the run so far, evaluations included
        "eval_seconds": round(eval_seconds, 3),
        "train_seconds": round(totals.seconds, 6),  # this epoch's steps (this process's), data waits in
        "complete": finished,
        "skipped_images": totals.skipped + len(val_skipped),  # unreadable files, train + val
        "skipped_train": totals.skipped,  # left out of this epoch's training batches so far
        "skipped_val": len(val_skipped),  # left out of this evaluation
    }
    if state.timing.estimate is not None and not state.timing.written:  # made during this epoch
        line["estimate"] = {"after_steps": state.timing.made_after, **state.timing.estimate.to_dict()}
        state.timing.written = True
    improved = measured and result.top1_error < state.best
    if measured:
        state.best = min(state.best, result.top1_error)
    if finished:
        if measured:
            run.schedule.end_epoch(result.top1_error)
        state.epoch, state.offset, state.sums, totals = state.epoch + 1, 0, EpochSums(), EpochSums()
    if run.ctx.main:
        _append_metrics(run.run_dir, line)
    run.log(_epoch_summary(line, len(val_skipped), run.config.recipe.eval_from))
    if run.ctx.main and run.after_epoch is not None:
        run.after_epoch(run.run_dir)
    state.wrap_up_seconds = _now() - began + state.save_seconds  # its checkpoint: as long as the last
    return totals, improved


def _skips_evaluation(run: Run, state: RunState, finished: bool) -> bool:
    """Whether this end of epoch goes without validation: the recipe's `eval_from` is not reached yet
    (the run's progress, as the lr schedule reads it), the epoch is complete, and the run goes on (not
    its last epoch, no stop asked, room for more steps in the time limit): the state the run ends with
    is always evaluated. Distributed, rank 0 decides for all (the clocks differ a little)."""
    r = run.config.recipe
    if not r.eval_from or not _may_go_on(run, state, finished):
        return False
    skip = (
        run.schedule.progress(state.step, state.seconds()) < r.eval_from and _steps_that_fit(run, state) > 1
    )
    return bool(distributed.broadcast_object(skip, run.ctx))


def _may_go_on(run: Run, state: RunState, finished: bool) -> bool:
    """Whether the run may train on after this end of epoch, as every rank sees it alike: the epoch is
    complete, it is not the last, and no stop is asked (the time limit is the clocks' to say)."""
    if not finished or state.stopped is not None or state.epoch + 1 >= run.config.recipe.epochs:
        return False
    return run.stop_after_steps is None or state.step < run.stop_after_steps


def _last_evaluation(run: Run, state: RunState, finished: bool) -> bool:
    """Whether this end of epoch's evaluation is the one the run ends with (rank 0 decides for all):
    judged after it, as it will take about as long as the last end of epoch did (a run that finds its
    time used up only once this evaluation is done would otherwise end on one without flips)."""
    if not _may_go_on(run, state, finished):
        return True
    room = _steps_that_fit(run, state, ahead=state.wrap_up_seconds)
    return bool(distributed.broadcast_object(room <= 1, run.ctx))


def _save(run: Run, state: RunState, totals: EpochSums, best: bool = False) -> None:
    """A checkpoint of `state` with `totals` as the epoch's sums (written by rank 0). Weights that are no
    longer finite (a step can overflow them with a finite loss) stop the run instead, on every rank (DDP
    keeps the ranks' weights equal)."""
    if not bool(torch.stack([p.isfinite().all() for p in run.model.parameters()]).all()):
        raise DivergedError(_diverged(run, state, weights=True))
    began = _now()
    if run.ctx.main:
        saved = {
            "epoch": state.epoch, "offset": state.offset, "step": state.step, "elapsed": state.seconds(),
            "best": state.best, "image_size": state.image_size, "sums": dataclasses.asdict(totals),
            "optimizer": run.optimizer.state_dict(),
            "schedule": run.schedule.state_dict(), "scaler": run.scaler.state_dict(), "rng": rng_state(),
            "config": run.config.to_dict(), "classes": [dataclasses.asdict(c) for c in run.classes],
            "timing": {"step_seconds": state.step_seconds, "wrap_up_seconds": state.wrap_up_seconds},
            "time_up": bool(run.limit) and state.stopped == run.time_up,  # nothing left to do at this limit
        }  # fmt: skip
        averaged = run.averaged.state_dict() if run.averaged is not None else None
        checkpoint.save(run.run_dir, state.step, run.model.state_dict(), saved, best=best, averaged=averaged)
    state.save_seconds = _now() - began


def _finish(run: Run, state: RunState) -> None:
    if state.stopped:
        run.log(f"Stopped at step {state.step} ({state.stopped}); continue with "
                f"`ilsvrc train --resume {run.run_dir}`.")  # fmt: skip
    if math.isinf(state.best):
        run.log("No validation error was measured (no validation image could be read). Run directory: "
                f"{run.run_dir}")  # fmt: skip
    else:
        run.log(f"Best val top-1 error {state.best:.3f}. Run directory: {run.run_dir}")


def _interrupted(run: Run, state: RunState) -> RunInterrupted:
    assert state.stopped is not None and state.signum is not None
    command = f"ilsvrc train --resume {run.run_dir}"
    message = (f"{state.stopped} at step {state.step}: checkpoint written in {run.run_dir / 'checkpoints'}; "
               f"continue with `{command}`.")  # fmt: skip
    run.log(message)
    return RunInterrupted(message, state.signum)


def _validate(run: Run, flips: bool = False) -> tuple[EvalResult, list]:
    """The model on the validation set (every rank's share; with `flips`, each image and its mirror)
    and the unreadable files left out."""
    skipped: list = []
    batches = _readable(_eval_loader(run.val_set, run.config, run.ctx), skipped)
    model = run.averaged.module if run.averaged is not None else run.model  # GoogLeNet: the average
    result = evaluate(model, batches, "center", crop=run.config.eval_size, device=run.device.type,
                      channels_last=run.config.channels_last, amp=run.config.amp,
                      num_classes=len(run.classes), flips=flips,
                      allow_empty=True)  # fmt: skip
    return combine_ranks(result, run.ctx, run.device), _all_ranks(skipped, run.ctx)


def _note_skipped(run: Run, state: RunState, skipped: list) -> None:
    """Count a training batch's unreadable files and log those not seen before."""
    state.sums.skipped += len(skipped)
    state.epoch_skipped.extend(skipped)
    _report_skipped(run, state, skipped)


def _report_skipped(run: Run, state: RunState, skipped: list) -> None:
    for item in state.skip_log.add(skipped):
        run.log(f"Skipped unreadable image {item.path}: {item.reason}")


def _epoch_summary(line: dict[str, Any], val_skipped: int, eval_from: float = 0.0) -> str:
    """The log line of one metrics line."""
    if not line.get("evaluated", True):
        val, top5 = f"val not evaluated (from {eval_from:.0%} of the run on)", ""
    elif line["val_top1_error"] is None:
        val = f"val not measured ({_count(val_skipped, 'unreadable image')}, none readable)"
        top5 = ""
    else:
        val, top5 = f"val {line['val_top1_error']:.3f}", f", top-5 val {line['val_top5_error']:.3f}"
    return (
        f"epoch {line['epoch']}: train loss {line['train_loss']:.3f}, top-1 error train "
        f"{line['train_top1_error']:.3f} {val}{top5}, {line['images_per_s']:.0f} images/s, "
        f"lr {line['lr']:.3g}"
    )


def _diverged(run: Run, state: RunState, weights: bool = False) -> str:
    """A DivergedError's message: where the loss (or the weights) stopped being finite; what to do."""
    try:
        where = f"The last good checkpoint, {checkpoint.resolve(run.run_dir).name}, is intact; resume it"
    except checkpoint.CheckpointError:
        where = "No checkpoint was written yet; start again"
    if weights:
        what = f"The weights became NaN or infinite by step {state.step} (epoch {state.epoch + 1})"
    elif state.unread.diverged is not None:
        step, loss, lr = state.unread.diverged
        what = f"The loss became {loss} at step {step} (epoch {state.epoch + 1}, lr {lr:.3g})"
    else:  # seen by another rank
        what = f"The loss became NaN or infinite in another process, by step {state.step}"
    return f"{what}. {where} with a lower --lr (or some --warmup-epochs)."


def _eval_loader(
    val_set: Augmented, config: TrainConfig, ctx: distributed.Context
) -> torch.utils.data.DataLoader:
    """This rank's share of the validation set (every world-th image), in order."""
    part = (
        torch.utils.data.Subset(val_set, range(ctx.rank, len(val_set), ctx.world)) if ctx.enabled else val_set
    )
    return torch.utils.data.DataLoader(
        part,
        batch_size=max(config.recipe.batch_size, 64),
        num_workers=config.workers,
        generator=torch.Generator().manual_seed(0),
        pin_memory=config.device.startswith("cuda"),
        collate_fn=collate_skipping,
    )


def _readable(batches, skipped: list):
    """(images, targets) of each batch of a `collate_skipping` loader; its skipped files go to `skipped`."""
    for images, targets, missing in batches:
        skipped.extend(missing)
        if images is not None:
            yield images, targets


def _all_ranks(items: list, ctx: distributed.Context) -> list:
    """The lists `items` of every rank, joined (this rank's own when not distributed)."""
    if not ctx.enabled:
        return items
    parts: list = [None] * ctx.world
    torch.distributed.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def _append_metrics(run_dir: Path, line: dict[str, Any]) -> None:
    try:
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")  # one write: a crash leaves at most a partial last line
    except OSError as exc:
        raise IlsvrcError(
            f"Cannot write to {run_dir / 'metrics.jsonl'}: {exc.strerror or exc}. The last checkpoint is "
            "intact; free some space (or make the run directory writable) and resume."
        ) from None


def _check_writable(run_dir: Path) -> None:
    """Refuse to resume into a run directory that cannot take a checkpoint, before any training."""
    probe = run_dir / "checkpoints" / f".probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise IlsvrcError(
            f"The run directory {run_dir} cannot be written: {exc.strerror or exc}. Nothing was changed; "
            "make it writable, or copy it to a writable place and resume that copy."
        ) from None


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of the states the checkpoint at `step` includes, its own line too if it has one
    (a partial epoch's); a crash between a line and its checkpoint may have left a later one."""
    if not path.exists():
        return
    lines = _parse_lines(path.read_text())
    kept = [x for x in lines if x.get("step", 0) <= step]
    checkpoint_text = "".join(json.dumps(x) + "\n" for x in kept)
    path.write_text(checkpoint_text)


def _write_config(run_dir: Path, config: TrainConfig) -> None:
    """Replace RUN/config.json (an extended run's new epochs or time limit, and how the lr goes on)."""
    try:
        checkpoint.write_json_atomic(run_dir / "config.json", config.to_dict())
    except OSError as exc:
        raise IlsvrcError(
            f"Cannot write {run_dir / 'config.json'}: {exc.strerror or exc}. Nothing was changed; free some "
            "space (or make the run directory writable) and resume again."
        ) from None


class _Bar:
    """An epoch's progress bar (tqdm, on stderr): a step per `advance`; the loss and the speed shown are
    those of the steps last read from the device."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", leave=False, file=sys.stderr, disable=None)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def show(self, loss: float, ips: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{ips:.0f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


WEIGHTS = ("averaged", "trained")


def load_trained(
    path: str | Path, which: str = "last", weights: str | None = None
) -> tuple[Model, TrainConfig, list[ClassInfo], Path]:
    """A trained model from a run directory or checkpoint: (model in eval mode, config, classes, dir).

    A run that averaged its weights (recipe `polyak_decay`, GoogLeNet's) is evaluated with the average,
    as the paper's final model was: the model carries the averaged weights (and batch-norm statistics).
    `weights` chooses: "averaged" (the average; an error for a run that kept none), "trained" (the
    optimizer's own weights, to measure what the average bought), None (the average if there is one).
    """
    if weights is not None and weights not in WEIGHTS:
        raise IlsvrcError(f"weights {weights!r} is not one of {', '.join(WEIGHTS)}.")
    if is_classical_run(path):
        raise IlsvrcError(
            f"{path} is a run of a classical pipeline (features and linear SVMs): it has no network to "
            f"load. `ilsvrc eval {path}`, `ilsvrc predict {path} IMAGE` and `ilsvrc plot {path}` work on it."
        )
    loaded, state, where = checkpoint.load(path, which)
    averaged = checkpoint.load_averaged(where) if weights != "trained" else None
    if averaged is None and weights == "averaged":
        raise IlsvrcError(
            f"{where} holds no averaged weights (its recipe's polyak_decay was off); evaluate its trained "
            "weights (leave out --weights, or --weights trained)."
        )
    if averaged is not None:
        prefix = "module."
        loaded = {k[len(prefix) :]: v for k, v in averaged.items() if k.startswith(prefix)}
    try:
        config = TrainConfig.from_dict(state["config"])
        classes = [ClassInfo(**c) for c in state["classes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise checkpoint.CheckpointError(f"{where} does not hold a training state ({exc}).") from None
    model = build_model(config, len(classes))
    try:
        model.load_state_dict(loaded)
    except RuntimeError as exc:
        raise checkpoint.CheckpointError(
            f"The weights in {where} do not fit {config.model}: {str(exc).splitlines()[0]}"
        ) from None
    return model.eval(), config, classes, where
