"""Training recipes: each paper's optimizer, schedule, initialisation and augmentation, as plain values.

A `Recipe` is a frozen set of defaults; `ilsvrc train` starts from the model's paper recipe (or the one
named by `--recipe`) and overrides any field from the command line. A recipe's lr is for its batch: with
another `--batch-size` and no `--lr`, `ilsvrc.training.loop.scale_lr` scales it linearly (Goyal et al.
2017). Figures from the papers
(../shared/docs/facts.md):

- AlexNet: SGD, batch 128, momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 when the validation
  error stops improving, about 90 epochs; weights N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6
  and fc7 and 0 elsewhere; 256x256 images, random 224 crops, flips and PCA lighting.
- ZFNet: the same optimizer, 70 epochs, weights N(0, 0.01) and biases 0; after each step, filters of
  a convolution whose RMS exceeds 0.1 are scaled back to 0.1.
- VGG: SGD, batch 256, momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 on plateau, about 74
  epochs; scale jittering (shorter side in [256, 512]), 224 crops, flips. The paper initialised the
  deeper nets from the trained config A; without that, Kaiming initialisation (torchvision's choice)
  stands in for it, and we say so.
- GoogLeNet [GN, section 6]: SGD with momentum 0.9, the lr cut by 4% every 8 epochs, Polyak averaging
  of the weights for evaluation, Andrew Howard's photometric distortions, crops of 8% to 100% of the
  image with aspect ratios in [3/4, 4/3]; the auxiliary classifiers add 0.3 of their loss (the spec's
  `Aux.weight`). The paper gives no learning rate, batch, weight decay or length: BVLC's Caffe replica
  (models/bvlc_googlenet/solver.prototxt) fills them in: lr 0.01, batch 32, weight decay 2e-4, the 4%
  cut every 320,000 steps of 32 images (8 epochs of ImageNet's 1.28M), 10M steps (250 epochs).
  Polyak averaging is an exponential moving average of the weights (`polyak_decay`; see
  `ilsvrc.training.loop.polyak_average` for why an EMA and not the plain running mean).
- ResNet [RN, section 3.4]: SGD, batch 256, momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 when
  the validation error plateaus (the AlexNet recipe's rule), up to 600,000 steps (120 epochs); shorter
  side random in [256, 480], random 224 crops, flips and AlexNet's colour augmentation; no dropout;
  He (Kaiming) initialisation. `zero_init_residual` (off, as in the paper) starts the last batch norm
  of every residual block at zero (Goyal et al. 2017; torchvision's `zero_init_residual`), so that
  each block begins as the identity. The plain networks train with the same recipe, as in the paper.
- `cpu`: a fast recipe for small data on a 2-core CPU: batch 32 (more steps from few images), SGD
  with Nesterov momentum, one-cycle schedule peaking at 0.02, dropout 0.2 (the paper's 0.5 slows a
  run of a few epochs: measured on the built-in data, 41% against 25% error after 3 epochs), light
  random-resized crops, 128 px,
  Kaiming initialisation of every layer (with the papers' N(0, 0.01), AlexNet without batch norm
  barely moves in the few hundred steps a CPU affords).
- `fast`: the best time to accuracy found on a 2-core CPU (issue 16), for a network that takes any
  input size (ResNet-18 by default in benchmarks/fast.py): one-cycle SGD with Nesterov momentum,
  planned over the time limit, peaking at 0.1 for batch 64, and the tricks of the fast-training
  literature, each a field of its own that the paper recipes leave off and one command-line switch
  takes out again: progressive resizing (`size_schedule`: small images early, when the network learns
  coarse features and a step at half the size costs a quarter; Howard's fast.ai DAWNBench ImageNet
  runs, Touvron et al.'s FixRes for the test size), test-time flips (`tta_flip`, on the evaluation
  the run ends with; those on the way, which draw its curve, go without), the timed memory layout (a
  run setting) and the decoded-image cache; and it validates only from half of the run on
  (`eval_from`: an evaluation of Imagenette's 2,925 val images at 128 px with flips took about half as
  long as a training epoch at 64 px). What each bought is measured by taking it out under the same
  budget (benchmarks/fast.py, RESULTS.md). Label smoothing 0.1 (Szegedy et al. 2016), zero-initialised
  residual branches (Goyal et al.), an EMA of the weights (0.995) and no weight decay on batch norms
  and biases (`wd_norm_bias` off; Goyal et al. 2017, Jia et al. 2018) were in it until those
  measurements: in ten epochs the network underfits, and each cost accuracy (the zero-initialised
  branches most; without them the training error was lower from the first epoch on; the EMA, on the
  same weights, 0.6 points; the weight-decay exemption 0.6 points with each of two seeds); the peak lr
  was 0.05 until twice that did better (0.1 at batch 64 is four times the ResNet paper's lr per image,
  0.1 at batch 256; 0.2 showed no gain in one run).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from ..analysis.analyzer import analyze, smallest_input
from ..errors import IlsvrcError, ShapeError
from ..networks.spec import Network

# the augmentations of ilsvrc.training.transforms that crop a random share of the image's area, and the
# smallest share each takes unless `min_crop_area` says otherwise (here, not there: checked without torch)
RESIZED_CROP_AREA: dict[str, float] = {"googlenet": 0.08, "rrc": 0.08, "light": 0.35}
SCHEDULES = ("plateau", "step", "cosine", "onecycle", "constant")
INITS = ("alexnet", "gaussian", "torchvision", "kaiming")


@dataclass(frozen=True)
class Recipe:
    """How to train: every value can be overridden from the command line."""

    name: str
    description: str = ""
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 90
    schedule: str = "plateau"  # see SCHEDULES
    plateau_patience: int = 1  # epochs without improvement before dividing the lr by 10
    step_epochs: int = 30  # "step": multiply the lr by step_factor every step_epochs
    step_factor: float = 0.1  # "step": 0.1 divides by 10; GoogLeNet's 0.96 cuts 4%
    warmup_epochs: float = 0.0  # linear warm-up from lr/10 (fractions of an epoch allowed)
    label_smoothing: float = 0.0
    augmentation: str = "alexnet"  # see ilsvrc.transforms.TRAIN_AUGMENTATIONS
    min_crop_area: float | None = None  # random resized crops' smallest share of the area (None: the kind's)
    image_size: int | None = None  # None: the model's default input
    crop_fraction: float = 0.875  # evaluation: centre crop of image_size from image_size/crop_fraction
    init: str = "torchvision"  # see INITS
    filter_rms_max: float | None = None  # ZFNet's renormalisation of convolution filters
    dropout: float | None = None  # None: the spec's (auxiliary classifiers always keep their own)
    zero_init_residual: bool = False  # the last batch norm of each residual block starts at zero
    polyak_decay: float | None = None  # evaluate an EMA of the weights, this decay per step (None, 0: off)
    # the tricks of `fast` (off in the paper recipes), each taken out by one command-line switch
    size_schedule: str = ""  # progressive resizing "SCALE@FROM,..." (see size_schedule); "": one size
    test_scale: float = 1.0  # evaluate at round(image_size * test_scale) (FixRes: a little above 1)
    wd_norm_bias: bool = True  # weight decay on batch norms and biases too (False: on weights only)
    tta_flip: bool = False  # the run's last evaluation on the image and its mirror, logits averaged
    eval_from: float = 0.0  # validate only the epochs that end past this fraction of the run (and the end)

    def replace(self, **changes: Any) -> Recipe:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise IlsvrcError(f"Unknown recipe setting(s): {', '.join(sorted(unknown))}.")
        return dataclasses.replace(self, **changes)


RECIPES: dict[str, Recipe] = {
    "alexnet": Recipe(
        "alexnet",
        "AlexNet paper: SGD 0.01 /10 on plateau, batch 128, wd 5e-4, 90 epochs, N(0, 0.01) init with "
        "biases 1, 256-px resize + random crops + flips + PCA lighting",
        init="alexnet",
    ),
    "zfnet": Recipe(
        "zfnet",
        "ZFNet paper: SGD 0.01 /10 on plateau, batch 128, 70 epochs, N(0, 0.01) init, filter RMS "
        "renormalised to 0.1",
        epochs=70,
        init="gaussian",
        filter_rms_max=0.1,
    ),
    "vgg": Recipe(
        "vgg",
        "VGG paper: SGD 0.01 /10 on plateau, batch 256, wd 5e-4, 74 epochs, scale jittering "
        "[256, 512]; Kaiming init stands in for the paper's initialisation from config A",
        batch_size=256,
        epochs=74,
        augmentation="vgg",
    ),
    "googlenet": Recipe(
        "googlenet",
        "GoogLeNet paper: SGD momentum 0.9, lr 0.01 cut 4% every 8 epochs, batch 32, wd 2e-4, 250 epochs "
        "(BVLC's solver), Polyak-averaged weights (EMA 0.9999) for evaluation, crops of 8-100% of the "
        "area, Howard's photometric distortions; the aux heads add 0.3 of their loss",
        lr=0.01,
        weight_decay=2e-4,
        batch_size=32,
        epochs=250,
        schedule="step",
        step_epochs=8,
        step_factor=0.96,
        augmentation="googlenet",
        polyak_decay=0.9999,
    ),
    "resnet": Recipe(
        "resnet",
        "ResNet paper: SGD 0.1 /10 on plateau, batch 256, momentum 0.9, wd 1e-4, 120 epochs, shorter "
        "side in [256, 480] + random crops + flips + PCA lighting, no dropout, Kaiming init "
        "(--zero-init-residual: each block's last batch norm starts at zero)",
        lr=0.1,
        weight_decay=1e-4,
        batch_size=256,
        epochs=120,
        augmentation="resnet",
        dropout=0.0,
    ),
    "cpu": Recipe(
        "cpu",
        "Fast recipe for small data on a CPU: 128 px, batch 32, SGD Nesterov, one-cycle lr 0.02, "
        "dropout 0.2, light random-resized crops, Kaiming init (fan-in for the FC layers)",
        lr=0.02,
        dropout=0.2,
        nesterov=True,
        batch_size=32,
        init="kaiming",
        epochs=10,
        schedule="onecycle",
        augmentation="light",
        image_size=128,
    ),
    "fast": Recipe(
        "fast",
        "Fastest to accuracy on a CPU, for networks that take any input size (ResNet-18): one-cycle SGD "
        "Nesterov to 0.1 at batch 64 over the time limit, progressive resizing 64 -> 96 -> 128 px, "
        "test-time flips, light random-resized crops, validation from half of the run on; no label "
        "smoothing, no zero-initialised residual branches, no EMA of the weights and weight decay on "
        "batch norms and biases too (the other way round, each cost accuracy in a 20-minute run: "
        "benchmarks/fast.py)",
        lr=0.1,
        nesterov=True,
        weight_decay=5e-4,
        batch_size=64,
        epochs=16,
        schedule="onecycle",
        augmentation="light",
        image_size=128,
        eval_from=0.5,
        size_schedule="0.5@0,0.75@0.4,1@0.75",
        tta_flip=True,
    ),
}

# the paper recipe of each zoo family
DEFAULT_RECIPE = {"alexnet*": "alexnet", "zfnet*": "zfnet", "vgg*": "vgg", "googlenet*": "googlenet",
                  "resnet*": "resnet", "plain*": "resnet"}  # fmt: skip


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise IlsvrcError(f"There is no recipe called {name!r}; the recipes are {', '.join(RECIPES)}.")
    return RECIPES[name]


def default_recipe(model: str) -> Recipe:
    """The paper recipe for a zoo name, or a torchvision model's ("torchvision:resnet50": the ResNet
    paper's); the `cpu` recipe's neighbour `alexnet` for other networks."""
    name = model.removeprefix("torchvision:")
    for pattern, recipe in DEFAULT_RECIPE.items():
        if fnmatch.fnmatchcase(name, pattern):
            return RECIPES[recipe]
    return RECIPES["alexnet"]


def check(recipe: Recipe) -> None:
    """Refuse settings that cannot work, naming the setting and what would."""
    problems = []
    if recipe.schedule not in SCHEDULES:
        problems.append(f"schedule {recipe.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if recipe.init not in INITS:
        problems.append(f"init {recipe.init!r} is not one of {', '.join(INITS)}")

    def number(name: str, ok: Any, rule: str, optional: bool = False) -> None:
        value = getattr(recipe, name)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{name} must be a number, got {value!r}")
        elif not ok(value):
            problems.append(f"{name} must be {rule}, got {value}")

    for name in ("lr", "batch_size", "epochs", "plateau_patience", "step_epochs"):
        number(name, lambda v: v > 0, "positive")
    for name in ("batch_size", "epochs", "plateau_patience", "step_epochs"):
        if not isinstance(getattr(recipe, name), int):
            problems.append(f"{name} must be a whole number, got {getattr(recipe, name)!r}")
    for name in ("weight_decay", "warmup_epochs"):
        number(name, lambda v: v >= 0, "zero or more")
    number("momentum", lambda v: 0 <= v < 1, "in [0, 1) (0.9 in the papers)")
    number("label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)")
    number("crop_fraction", lambda v: 0 < v <= 1, "in (0, 1]")
    number("dropout", lambda v: 0 <= v < 1, "a probability in [0, 1)", optional=True)
    number("filter_rms_max", lambda v: v > 0, "positive", optional=True)
    number("step_factor", lambda v: 0 < v <= 1, "in (0, 1] (0.1 divides the lr by 10, 0.96 cuts 4%)")
    number("polyak_decay", lambda v: 0 <= v < 1, "in [0, 1) (e.g. 0.9999), or 0 or None for no averaging",
           optional=True)  # fmt: skip
    number("test_scale", lambda v: 0.5 <= v <= 2, "in [0.5, 2] (1: evaluate at the training size)")
    number("eval_from", lambda v: 0 <= v < 1, "in [0, 1) (0: validate after every epoch)")
    number("min_crop_area", lambda v: 0 < v <= 1, "a share of the image's area in (0, 1]", optional=True)
    if recipe.min_crop_area is not None and recipe.augmentation not in RESIZED_CROP_AREA:
        kinds = ", ".join(RESIZED_CROP_AREA)
        problems.append(f"min_crop_area is a setting of the random resized crops of {kinds}, not of the "
                        f"{recipe.augmentation!r} augmentation (leave --min-crop-area out, or choose one "
                        f"of those)")  # fmt: skip
    for name in ("zero_init_residual", "wd_norm_bias", "tta_flip"):
        if not isinstance(getattr(recipe, name), bool):
            problems.append(f"{name} must be true or false, got {getattr(recipe, name)!r}")
    if not isinstance(recipe.size_schedule, str):
        problems.append(f"size_schedule must be a text like '0.5@0,1@0.75', got {recipe.size_schedule!r}")
    else:
        try:
            _parse_size_schedule(recipe.size_schedule)
        except IlsvrcError as exc:
            problems.append(str(exc).rstrip("."))
    if recipe.image_size is not None and recipe.image_size < 16:
        problems.append(f"image_size must be at least 16, got {recipe.image_size}")
    if problems:
        raise IlsvrcError("Bad training settings: " + "; ".join(problems) + ".")


def _parse_size_schedule(text: str) -> list[tuple[float, float]]:
    """(from, scale) pairs of a `size_schedule` text, "SCALE@FROM,..." (empty: none), checked."""
    if not text.strip() or text.strip().lower() in ("none", "off"):
        return []
    example = (
        "e.g. '0.5@0,0.75@0.4,1@0.75': half the image size from the start, 3/4 of it from 40% of "
        "the run, all of it from 75%"
    )
    pairs = []
    for part in text.split(","):
        scale, at, start = part.strip().partition("@")
        try:
            pair = (float(start), float(scale))
        except ValueError:
            pair = None
        if not at or pair is None or not all(map(math.isfinite, pair)):
            raise IlsvrcError(f"size_schedule {text!r}: {part.strip()!r} is not SCALE@FROM ({example}).")
        pairs.append(pair)
    starts = [start for start, _ in pairs]
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= 1:
        raise IlsvrcError(
            f"size_schedule {text!r}: the fractions of the run must start at 0 and rise, each below 1 "
            f"({example})."
        )
    if any(not 0 < scale <= 4 for _, scale in pairs):
        raise IlsvrcError(f"size_schedule {text!r}: each scale must be in (0, 4] (of the image size).")
    return pairs


def size_schedule(recipe: Recipe, image_size: int) -> list[tuple[float, int]]:
    """Progressive resizing: the training sizes of a run as (from, pixels) pairs, from progress 0 on.

    `recipe.size_schedule` lists SCALE@FROM pairs: "0.5@0,0.75@0.4,1@0.75" with an image size of 128
    trains at 64 px from the start, at 96 px from 40% of the run and at 128 px from 75%. FROM is the
    run's progress, the same fraction the learning-rate schedule follows (`LRSchedule.progress`: of the
    planned steps, or of the time limit if further along), read for each epoch at its start: an epoch
    is trained at one size, the one the schedule gives half way through it (`loop._choose_size`), so
    the sizes change at the epoch boundary nearest each FROM. The scales are of the image size
    (`--image-size` moves the whole schedule) and the sizes are rounded to whole pixels; evaluation is
    at the image size (times `test_scale`), whatever the epoch's size. Without a schedule, one pair:
    the image size from 0.
    """
    pairs = _parse_size_schedule(recipe.size_schedule)
    return [(start, max(1, round(image_size * scale))) for start, scale in pairs] or [(0.0, image_size)]


def size_at(schedule: list[tuple[float, int]], progress: float) -> int:
    """The training size a `size_schedule` gives at `progress` (the last pair started by then)."""
    return [size for start, size in schedule if start <= progress][-1]


def eval_size(recipe: Recipe, image_size: int) -> int:
    """The size a run is evaluated at: round(image_size * test_scale) (FixRes: a network trained on
    random-resized crops sees objects larger than a centre crop of the same size shows them, so a test
    size a little above the training size can match them better; Touvron et al. 2019)."""
    return round(image_size * recipe.test_scale)


class LRSchedule:
    """The learning rate as a function of training progress, with a state that resumes exactly.

    progress p in [0, 1] is the fraction of the run done (`progress`): steps done over planned steps,
    or, with a time limit, the larger of that and the fraction of the time used (so cosine and
    one-cycle plan over the time budget). plateau: the lr is divided by 10 each time the validation
    error has not improved for `plateau_patience` epochs. step: multiplied by `step_factor` every
    `step_epochs` epochs (0.1: divided by 10; GoogLeNet's 0.96: cut by 4%). cosine:
    lr * (1 + cos(pi p)) / 2. onecycle: linear rise from lr/25 to lr over the first 25%, then cosine
    annealing to lr/1e4. A linear warm-up from lr/10 over `warmup_epochs` multiplies the others.

    A run given more epochs or time when resumed (`extend`) never restarts its schedule: the rest of an
    unfinished cosine or one-cycle plan is spread over the new total, and a finished one keeps the lr it
    ended with (`tail_lr`, a constant fine-tuning tail); plateau, step and constant schedules go on as
    they were.
    """

    def __init__(self, recipe: Recipe, steps_per_epoch: int, time_limit: float | None = None) -> None:
        """time_limit: the run's limit in seconds (None: the epochs alone plan the run)."""
        self.recipe = recipe
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.time_limit = time_limit
        self.plateau_scale = 1.0
        self.best: float = math.inf
        self.bad_epochs = 0
        self.start = (0.0, 0.0)  # (progress, planned fraction) where the current plan began; see extend
        self.tail_lr: float | None = None

    def _planned(self, step: int, seconds: float) -> float:
        """The fraction of the planned steps (or of the time limit, if larger) done; may exceed 1."""
        done = step / (self.recipe.epochs * self.steps_per_epoch)
        if self.time_limit:
            done = max(done, seconds / self.time_limit)
        return done

    def progress(self, step: int, seconds: float = 0.0) -> float:
        """p in [0, 1] after `step` steps and `seconds` of run time (evaluations included)."""
        p0, f0 = self.start
        done = self._planned(step, seconds)
        if f0 >= 1:
            return 1.0
        return min(1.0, p0 + (1 - p0) * max(0.0, done - f0) / (1 - f0))

    def extend(self, before: LRSchedule, step: int, seconds: float, last_lr: float) -> str:
        """Take over from `before`, the same run's schedule with its old number of epochs or time
        limit, at `step` and `seconds` of run time; `last_lr` is the lr of the last step taken.

        The plan's progress continues from where it was (no jump back to an early, high lr): cosine and
        one-cycle spread the rest of their plan over the new total, or, if it was finished, stay at
        `last_lr`. Returns a sentence saying how the lr goes on, for the log and the run's config.
        """
        self.load_state_dict(before.state_dict())
        r = self.recipe
        p0 = before.progress(step, seconds)
        self.start = (p0, self._planned(step, seconds))
        name = {"onecycle": "one-cycle", "cosine": "cosine"}.get(r.schedule)
        if name is None:
            return f"the {r.schedule} schedule goes on as it was (lr {last_lr:.3g})"
        if self.tail_lr is not None:
            return f"the lr stays at {self.tail_lr:.3g}, the fine-tuning tail of an earlier extension"
        if p0 >= 1:
            self.tail_lr = last_lr
            return (
                f"its {name} schedule had finished, so the lr stays at {last_lr:.3g}, where the run ended "
                "(a fine-tuning tail); for a whole schedule over more epochs, start a new run"
            )
        return (
            f"the rest of its {name} schedule ({1 - p0:.0%} of it) is spread over the new total, "
            f"continuing from lr {self.lr(step, self.progress(step, seconds)):.3g}"
        )

    def lr(self, step: int, progress: float) -> float:
        r = self.recipe
        if self.tail_lr is not None:
            return self.tail_lr
        p = min(max(progress, 0.0), 1.0)
        if r.schedule == "plateau":
            factor = self.plateau_scale
        elif r.schedule == "step":
            factor = r.step_factor ** (step // (r.step_epochs * self.steps_per_epoch))
        elif r.schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * p))
        elif r.schedule == "onecycle":
            rise = 0.25
            if p < rise:
                factor = 1 / 25 + (1 - 1 / 25) * p / rise
            else:
                q = (p - rise) / (1 - rise)
                factor = 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * q))
        else:
            factor = 1.0
        warm = r.warmup_epochs * self.steps_per_epoch
        if warm > 0 and step < warm:
            factor *= 0.1 + 0.9 * step / warm
        return r.lr * factor

    def end_epoch(self, val_error: float) -> bool:
        """Record an epoch's validation error; True if the plateau rule just lowered the lr."""
        if val_error < self.best - 1e-9:
            self.best, self.bad_epochs = val_error, 0
            return False
        self.bad_epochs += 1
        if self.recipe.schedule == "plateau" and self.bad_epochs >= self.recipe.plateau_patience:
            self.plateau_scale *= 0.1
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad_epochs": self.bad_epochs,
                "start": list(self.start), "tail_lr": self.tail_lr}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_scale = float(state["plateau_scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        start = state.get("start", (0.0, 0.0))  # checkpoints from before extensions existed lack these
        self.start = (float(start[0]), float(start[1]))
        tail = state.get("tail_lr")
        self.tail_lr = None if tail is None else float(tail)


def check_network_sizes(network: Network, recipe: Recipe) -> None:
    """Refuse a recipe whose sizes `network` cannot take: the image size, each size of its
    `size_schedule` and its evaluation size must be large enough, and, when there is more than one,
    the network must be the same at all of them (its parameters not depending on the input size, as
    they do where a fully connected layer reads a feature map whose size follows the input: AlexNet's
    fc6; a network ending in adaptive or global pooling, the ResNets and GoogLeNet, takes any size).
    Pure analysis (no torch)."""
    size = recipe.image_size or network.input_shape[1]
    check_network_size(network, size)
    others = sorted({eval_size(recipe, size), *(s for _, s in size_schedule(recipe, size))} - {size})
    if not others:
        return
    channels = network.input_shape[0]
    params, too_small = {size: analyze(network, (channels, size, size), suggest=False).params}, {}
    for s in others:
        try:
            params[s] = analyze(network, (channels, s, s), suggest=False).params
        except ShapeError as exc:
            too_small[s] = exc
    sizes = ", ".join(map(str, sorted({size, *others})))
    if len(set(params.values())) > 1:
        counts = ", ".join(f"{p:,} at {s} px" for s, p in sorted(params.items()))
        raise ShapeError(
            f"{network.name} cannot train or be evaluated at several sizes ({sizes} px: the size schedule "
            f"and the test size of --image-size {size}): its parameters depend on the input size ({counts}), "
            "a fully connected layer reading a feature map that grows with the image. Train it at one "
            "size (--size-schedule none --test-scale 1), or use a network that ends in a global pooling "
            "(resnet18, googlenet-torchvision, alexnet-torchvision)."
        )
    if too_small:
        s, exc = min(too_small.items())
        smallest = smallest_input(network, channels)
        raise ShapeError(
            f"{s} px, a size of the size schedule or the test size of --image-size {size} ({sizes} px), is "
            f"too small for {network.name}: {exc} {network.name} takes inputs from {smallest}x{smallest} up; "
            "give larger scales (--size-schedule), a larger --image-size, or --size-schedule none."
        )


def check_network_size(network: Network, size: int) -> None:
    """Refuse a square training size `network` cannot take: a ShapeError naming the smallest that works.

    Pure analysis (no torch), so the command line checks it before anything is loaded.
    """
    channels = network.input_shape[0]
    try:
        analyze(network, (channels, size, size), suggest=False)
    except ShapeError as exc:
        smallest = smallest_input(network, channels)
        if smallest is None or size >= smallest:
            raise
        raise ShapeError(
            f"--image-size {size} is too small for {network.name}: {exc} {network.name} takes inputs from "
            f"{smallest}x{smallest} up; use --image-size {smallest} or more."
        ) from None
