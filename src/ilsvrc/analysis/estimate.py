"""What a training run costs, from the analyzer's multiply-adds: FLOPs per image, per epoch and for the
whole run, and the time they take at a rate (an accelerator's peak times a utilisation, or a rate
measured on this machine by `ilsvrc train`). Pure arithmetic: no torch, nothing printed.

What is counted (one image; MACs as `analyze` counts them: convolution and fully connected weights,
FLOPs = 2 x MACs):

- training: 3 x 2 x the forward pass's MACs (auxiliary classifiers included, they run in training).
  Why 3: the forward pass is one matrix product per layer; the backward pass is two more of the same
  size, one for the gradient with respect to the layer's input (passed down) and one for the gradient
  with respect to its weights. The first layer needs no input gradient, so 3x slightly overcounts it.
- evaluation: 2 x the forward MACs (at test, without auxiliary classifiers), times the protocol's
  views: 1 for a centre crop, 10 for AlexNet's 10 crops, and for VGG's dense test the sum over its
  scales Q of (Q / crop)^2, times 2 for the flips (the convolutions grow with the image's area; the
  fully connected layers, slid as convolutions, are counted the same way, an approximation).
- an epoch: every training image once, then the validation images once (as `ilsvrc train` evaluates
  after each epoch); the run: epochs x an epoch.

Not counted: pooling, ReLU, LRN, batch norm, the loss and the optimizer's update (a few operations per
weight, against thousands per weight in the products), nor the data pipeline. The time is FLOPs / rate:
a peak rate is the accelerator's, dense, at the precision asked, times a utilisation (the fraction of
peak a convnet's training really reaches, `DEFAULT_UTILISATION`); several accelerators divide the time
by their number, which assumes perfect (linear) scaling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import IlsvrcError
from .analyzer import Report

TRAIN_FACTOR = 3  # forward + input gradients + weight gradients, each one product of the forward's size
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
# a precision an accelerator lacks falls back to the next it has (V100: bf16 -> fp16; GTX 580: fp32)
FALLBACK = {"bf16": ("bf16", "fp16", "fp32"), "fp16": ("fp16", "fp32"), "tf32": ("tf32", "fp32"),
            "fp32": ("fp32",)}  # fmt: skip

# The fraction of the dense peak that a convnet's training reaches, by precision. Measured for
# torchvision's ResNet-50 on a V100 (SXM2), batch 128, by github.com/sandeepkumar-skb/pytorch_experiments
# (torchvision_exp/README.md): 342 ms a step in fp32 and 111 ms with AMP (channels-last). With 3 x 2 x
# 4.089 GMACs = 24.5 GFLOP an image that is 9.2 TFLOP/s, 58% of the fp32 peak of 15.7, and 28 TFLOP/s,
# 23% of the 125 of the tensor cores: the tensor cores are so fast that the layers they do not run
# (batch norm, ReLU, pooling, memory traffic) take most of the step. Rounded down to 0.5 and 0.25;
# `ilsvrc estimate --utilisation U` sets another. The papers' own runs reached about a third of their
# GPUs' fp32 peak (`PAPER_RUNS`: the implied utilisation `ilsvrc estimate` prints beside them).
DEFAULT_UTILISATION = {"fp32": 0.5, "tf32": 0.25, "bf16": 0.25, "fp16": 0.25}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Accelerator:
    """A GPU and its dense peak rates (TFLOP/s) per precision, with where they come from."""

    key: str
    name: str
    year: int
    peaks: dict[str, float]
    source: str

    def precision(self, wanted: str) -> str:
        """The precision used for `wanted`: it, or the next of FALLBACK this accelerator has."""
        return next(p for p in FALLBACK[wanted] if p in self.peaks)


ACCELERATORS: dict[str, Accelerator] = {
    a.key: a
    for a in (
        Accelerator(
            "gtx580",
            "GeForce GTX 580",
            2010,
            {"fp32": 1.581},
            "NVIDIA's GTX 580 specifications: 512 CUDA cores at a 1,544 MHz processor clock, 2 FLOPs "
            "(one fused multiply-add) per core and cycle: 512 x 1.544 GHz x 2 = 1.581 TFLOP/s; "
            "AlexNet's and ZFNet's GPU",
        ),  # fmt: skip
        Accelerator(
            "titan-black",
            "GeForce GTX Titan Black",
            2014,
            {"fp32": 5.121},
            "NVIDIA's GTX Titan Black specifications: 2,880 CUDA cores at an 889 MHz base clock: "
            "2,880 x 0.889 GHz x 2 = 5.121 TFLOP/s (5.6 at the 980 MHz boost clock); "
            "VGG's GPU",
        ),  # fmt: skip
        Accelerator(
            "v100",
            "Tesla V100 SXM2",
            2017,
            {"fp32": 15.7, "fp16": 125.0},
            "NVIDIA V100 datasheet (SXM2): 15.7 TFLOP/s single precision, 125 with the tensor "
            "cores (fp16 inputs); no tf32 or bf16",
        ),  # fmt: skip
        Accelerator(
            "a100",
            "A100 SXM",
            2020,
            {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
            "NVIDIA A100 datasheet: FP32 19.5, TF32 tensor core 156, BF16 and FP16 tensor core 312 "
            "TFLOP/s, dense (the datasheet's doubled figures are with 2:4 sparsity)",
        ),  # fmt: skip
        Accelerator(
            "h100",
            "H100 SXM",
            2022,
            {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
            "NVIDIA H100 datasheet (SXM): FP32 67 TFLOP/s; its TF32 989, BF16 and FP16 1,979 are "
            "'with sparsity', dense is half: 494.5 and 989.5",
        ),  # fmt: skip
    )
}


@dataclass(frozen=True)
class PaperRun:
    """A paper's own training time, for its network: on `count` x `accelerator`, `epochs` epochs."""

    paper: str
    models: tuple[str, ...]  # zoo names of the networks it trained
    accelerator: str
    count: int
    epochs: int
    days: tuple[float, float]  # the range the paper gives
    said: str  # the paper's words, in short
    where: str  # the section


PAPER_RUNS = (
    PaperRun(
        "AlexNet (Krizhevsky et al. 2012)",
        ("alexnet", "alexnet-lecture"),
        "gtx580",
        2,
        90,
        (5, 6),
        "roughly 90 cycles through the 1.2 million training images took five to six days on two "
        "GTX 580 3GB GPUs",
        "section 5",
    ),  # fmt: skip
    PaperRun(
        "ZFNet (Zeiler & Fergus 2013)",
        ("zfnet", "zfnet-lecture"),
        "gtx580",
        1,
        70,
        (12, 12),
        "70 epochs took around 12 days on a single GTX 580",
        "section 3",
    ),  # fmt: skip
    PaperRun(
        "VGG (Simonyan & Zisserman 2014)",
        ("vgg11", "vgg11-lrn", "vgg13", "vgg16-c", "vgg16", "vgg19"),
        "titan-black",
        4,
        74,
        (14, 21),
        "on four Titan Black GPUs, training a single net took 2-3 weeks depending on the architecture",
        "section 3.3",
    ),  # fmt: skip
)


def paper_run(model: str) -> PaperRun | None:
    """The paper's training time for a zoo name, if its paper gives one (AlexNet, ZFNet, VGG)."""
    return next((p for p in PAPER_RUNS if model in p.models), None)


@dataclass(frozen=True)
class DataSize:
    """The images of a data set's training and validation splits."""

    name: str
    train: int
    val: int
    classes: int | None = None  # None: the network's own


DATASETS = {
    "imagenet": DataSize("ImageNet (ILSVRC-2012)", 1_281_167, 50_000, 1000),
    "imagenette": DataSize("Imagenette (this project's copy: 224 px, 2019 split)", 9_469, 2_925, 10),
}


def count_images(folder: str | Path) -> DataSize:
    """The image files under FOLDER/train and FOLDER/val (by extension, any case), and the classes (the
    folders of train/), counted without opening an image; IlsvrcError if the splits are not there."""
    root = Path(folder)
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        raise IlsvrcError(
            f"--data {root} {what}; give a data set's name ({', '.join(DATASETS)}), a folder holding "
            "train/<class>/ and val/<class>/, or --images N for any other."
        )
    counts = []
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise IlsvrcError(
                f"--data {root} has no {split}/ folder; give a folder holding train/<class>/ and "
                "val/<class>/ (as `ilsvrc train --data` reads), or --images N."
            )
        counts.append(sum(
            1 for _, _, files in os.walk(root / split) for f in files
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        ))  # fmt: skip
    classes = sum(1 for p in (root / "train").iterdir() if p.is_dir())
    if not counts[0]:
        raise IlsvrcError(f"--data {root}: train/ holds no image files; give a folder with images in it.")
    return DataSize(str(root), counts[0], counts[1], classes or None)


def data_size(data: str | None = None, images: int | None = None, val_images: int | None = None) -> DataSize:
    """A data set by name (DATASETS), a folder (counted), or `images` training images (and `val_images`,
    default none); IlsvrcError naming what would do for anything else."""
    if images is not None:
        if images <= 0 or (val_images is not None and val_images < 0):
            raise IlsvrcError(
                f"--images must be positive and --val-images 0 or more, got {images}, {val_images}."
            )
        return DataSize(f"{images:,} images", images, val_images or 0)
    name = (data or "imagenet").lower()
    if name in DATASETS:
        size = DATASETS[name]
        return size if val_images is None else DataSize(size.name, size.train, val_images, size.classes)
    if data is not None and (os.sep in data or Path(data).exists()):
        return count_images(data)
    raise IlsvrcError(
        f"Unknown data set {data!r}: give one of {', '.join(DATASETS)}, a folder holding train/<class>/ and "
        "val/<class>/ (its images are counted), or --images N (and --val-images N) for any other."
    )


def protocol_views(protocol: str, crop: int, scales: tuple[int, ...] = (256, 384, 512)) -> float:
    """Forward passes of the crop's size that one test image costs: center 1, 10crop 10, dense (VGG's
    test at shorter sides `scales`, with flips) 2 x sum (Q / crop)^2, the convolutions' growth with area."""
    if protocol == "center":
        return 1.0
    if protocol == "10crop":
        return 10.0
    if protocol == "dense":
        return 2.0 * sum((q / crop) ** 2 for q in scales)
    raise IlsvrcError(f"Unknown protocol {protocol!r}; use center, 10crop or dense.")


@dataclass(frozen=True)
class RunCost:
    """The FLOPs of a run: per image, per epoch, in all (see the module's docstring for what counts).

    A run that changes its training size (progressive resizing) gives each epoch's forward MACs of a
    training image in `epoch_train_macs`; a run that evaluates only some epochs (the fast recipe's
    `eval_from`) says which in `evaluated`. Without them every epoch costs `train_macs` and is evaluated.
    """

    train_macs: int  # forward MACs of one training image (auxiliary classifiers included)
    eval_macs: int  # forward MACs of one test image at the crop size
    train_images: int
    val_images: int
    epochs: float
    views: float = 1.0  # forward passes per test image (`protocol_views`)
    epoch_train_macs: tuple[int, ...] = ()  # each epoch's train_macs (a size schedule); () = train_macs
    evaluated: tuple[bool, ...] = ()  # whether each epoch ends with an evaluation; () = every one
    last_extra_views: float = 0.0  # more passes per test image in the run's last evaluation (flips: 1)

    @classmethod
    def of(cls, report: Report, train_images: int, val_images: int, epochs: float,
           views: float = 1.0) -> RunCost:  # fmt: skip
        """The cost of training the network `report` analyses (at the run's input size)."""
        return cls(report.macs_with_aux, report.macs, train_images, val_images, epochs, views)

    @property
    def train_flops(self) -> float:
        """FLOPs of one training image: 3 x 2 x forward MACs."""
        return TRAIN_FACTOR * 2 * self.train_macs

    @property
    def eval_flops(self) -> float:
        """FLOPs of one test image: 2 x forward MACs x views."""
        return 2 * self.eval_macs * self.views

    @property
    def epoch_train_flops(self) -> float:
        return self.train_images * self.train_flops

    @property
    def epoch_eval_flops(self) -> float:
        return self.val_images * self.eval_flops

    @property
    def epoch_flops(self) -> float:
        return self.epoch_train_flops + self.epoch_eval_flops

    @property
    def scheduled(self) -> bool:
        """Whether epochs differ in cost (a size schedule, or epochs without evaluation)."""
        return len(set(self.epoch_train_macs)) > 1 or not all(self.evaluated)

    @property
    def last_extra_flops(self) -> float:
        """FLOPs of the last evaluation's extra passes (test-time flips), all its images."""
        return self.val_images * 2 * self.eval_macs * self.last_extra_views

    @property
    def run_flops(self) -> float:
        if not self.epoch_train_macs and not self.evaluated:
            return self.epochs * self.epoch_flops + self.last_extra_flops
        macs = self.epoch_train_macs or (self.train_macs,) * round(self.epochs)
        evaluations = sum(self.evaluated) if self.evaluated else len(macs)
        train = self.train_images * TRAIN_FACTOR * 2 * sum(macs)
        return train + evaluations * self.epoch_eval_flops + self.last_extra_flops


@dataclass(frozen=True)
class Hardware:
    """Where a run is timed: `count` accelerators at `peak` TFLOP/s each, of which `utilisation` is
    reached; or a rate given as it is (`accelerator` None: --rate, utilisation 1)."""

    label: str
    precision: str | None
    peak: float  # TFLOP/s, one accelerator
    utilisation: float
    count: int = 1
    accelerator: Accelerator | None = None

    @property
    def rate(self) -> float:
        """FLOP/s of all of them together (linear scaling assumed)."""
        return self.peak * 1e12 * self.utilisation * self.count


def hardware(key: str, count: int = 1, precision: str = "bf16", utilisation: float | None = None) -> Hardware:
    """An accelerator of ACCELERATORS by key, at `precision` (or the next it has, FALLBACK), reaching
    `utilisation` of its peak (default DEFAULT_UTILISATION of the precision used)."""
    if key not in ACCELERATORS:
        raise IlsvrcError(
            f"Unknown GPU {key!r}; the table holds {', '.join(ACCELERATORS)} (or give --rate TFLOPS)."
        )
    if precision not in PRECISIONS:
        raise IlsvrcError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    check_count(count)
    acc = ACCELERATORS[key]
    used = acc.precision(precision)
    u = DEFAULT_UTILISATION[used] if utilisation is None else check_utilisation(utilisation)
    label = f"{count} x {acc.name}" if count > 1 else acc.name
    return Hardware(label, used, acc.peaks[used], u, count, acc)


def given_rate(tflops: float, count: int = 1) -> Hardware:
    """A rate given in TFLOP/s (what is reached, not a peak: utilisation 1), times `count`."""
    if not (isinstance(tflops, (int, float)) and tflops > 0 and tflops < float("inf")):
        raise IlsvrcError(f"--rate must be a positive number of TFLOP/s (what is reached), got {tflops}.")
    check_count(count)
    label = f"{count} x {tflops:g} TFLOP/s" if count > 1 else f"{tflops:g} TFLOP/s"
    return Hardware(label, None, float(tflops), 1.0, count)


def check_count(count: int) -> int:
    if not isinstance(count, int) or count < 1:
        raise IlsvrcError(f"--gpus must be a whole number of 1 or more, got {count}.")
    return count


def check_utilisation(u: float) -> float:
    if not (isinstance(u, (int, float)) and 0 < u <= 1):
        raise IlsvrcError(f"--utilisation is a fraction of the peak rate in (0, 1] (e.g. 0.4), got {u}.")
    return float(u)


@dataclass(frozen=True)
class Timed:
    """A run's cost on some hardware: seconds per epoch and in all."""

    hardware: Hardware
    epoch_seconds: float
    run_seconds: float


def time_on(cost: RunCost, hw: Hardware) -> Timed:
    """Seconds = FLOPs / the hardware's rate."""
    return Timed(hw, cost.epoch_flops / hw.rate, cost.run_flops / hw.rate)


@dataclass(frozen=True)
class PaperComparison:
    """A paper's reported time beside the estimate for its hardware, and the utilisation it implies."""

    run: PaperRun
    hardware: Hardware  # the paper's GPUs at full peak (utilisation 1)
    peak_seconds: float  # the paper's run at 100% of those GPUs' peak
    estimate: Timed  # at the default utilisation

    @property
    def implied_utilisation(self) -> tuple[float, float]:
        """The fraction of peak the paper's code reached: seconds at peak / the paper's seconds."""
        lo, hi = self.run.days
        return self.peak_seconds / (hi * 86400), self.peak_seconds / (lo * 86400)


def compare_paper(run: PaperRun, cost: RunCost) -> PaperComparison:
    """`cost` (made with the paper's epochs) on the paper's GPUs, at peak and at the default utilisation."""
    peak = hardware(run.accelerator, run.count, "fp32", utilisation=1.0)
    usual = hardware(run.accelerator, run.count, "fp32")
    return PaperComparison(run, peak, cost.run_flops / peak.rate, time_on(cost, usual))


@dataclass(frozen=True)
class StepEstimate:
    """`ilsvrc train`'s estimate from steps timed on this machine (one process's view).

    step_seconds = timed seconds / timed steps (data waits included); the measured rate = training FLOPs
    of the timed images (at the size they were trained at) / their seconds; an epoch = its steps x
    step_seconds x its images' FLOPs over the timed ones' (a size schedule: an epoch at twice the pixels
    takes about twice as long) + its validation images x their FLOPs / the measured rate, if it ends with
    an evaluation (evaluation timed at the training rate: an assumption, forward passes alone usually
    run a little faster per FLOP; and small images run at a lower rate than large ones, which makes the
    later epochs of a size schedule a little shorter than estimated from its first).
    """

    timed_steps: int
    timed_images: int
    timed_seconds: float
    steps_per_epoch: int
    val_images: int
    epochs: int
    train_flops: float  # per image, at the size of the timed steps
    eval_flops: float  # per image
    epoch_flops: tuple[float, ...] = ()  # each epoch's training FLOPs per image (a size schedule)
    evaluated: tuple[bool, ...] = ()  # whether each epoch ends with an evaluation; () = every one
    last_extra_flops: float = 0.0  # the last evaluation's extra FLOPs per image (test-time flips)

    @property
    def step_seconds(self) -> float:
        return self.timed_seconds / self.timed_steps

    @property
    def rate(self) -> float:
        """Measured FLOP/s: the timed images' training FLOPs over their seconds."""
        return self.timed_images * self.train_flops / self.timed_seconds

    @property
    def train_seconds(self) -> float:
        """An epoch's training steps at the timed size."""
        return self.steps_per_epoch * self.step_seconds

    @property
    def eval_seconds(self) -> float:
        return self.val_images * self.eval_flops / self.rate

    @property
    def epoch_seconds(self) -> float:
        """An epoch at the timed size, with its evaluation."""
        return self.train_seconds + self.eval_seconds

    def _scale(self, epoch: int) -> float:
        """Epoch `epoch`'s (0-based) training FLOPs per image over the timed steps'."""
        flops = self.epoch_flops[min(epoch, len(self.epoch_flops) - 1)] if self.epoch_flops else None
        return 1.0 if flops is None else flops / self.train_flops

    def epoch_train_seconds(self, epoch: int) -> float:
        """Epoch `epoch`'s (0-based) training steps, at its own size."""
        return self.train_seconds * self._scale(epoch)

    def seconds_of_epoch(self, epoch: int) -> float:
        """Epoch `epoch` (0-based): its steps at its own size, and its evaluation if it has one."""
        evaluated = self.evaluated[epoch] if epoch < len(self.evaluated) else True
        last = self.val_images * self.last_extra_flops / self.rate if epoch == self.epochs - 1 else 0.0
        return self.epoch_train_seconds(epoch) + (self.eval_seconds if evaluated else 0.0) + last

    @property
    def run_seconds(self) -> float:
        return sum(self.seconds_of_epoch(i) for i in range(self.epochs))

    def remaining_seconds(self, epoch: int, offset: int) -> float:
        """From `offset` steps into epoch `epoch` (0-based) to the end of the run."""
        done = offset * self.step_seconds * self._scale(epoch)
        return sum(self.seconds_of_epoch(i) for i in range(epoch, self.epochs)) - done

    def epochs_by_time(self, seconds: float, spans: list[tuple[float, float, bool]]) -> float:
        """The epochs `seconds` of training hold when the run's sizes follow the fraction of its time (a
        time limit that binds): `spans` are (share of the seconds, training FLOPs an image, evaluated)."""
        epochs = 0.0
        for share, flops, evaluated in spans:
            epoch = self.train_seconds * flops / self.train_flops + (self.eval_seconds if evaluated else 0.0)
            epochs += seconds * share / epoch
        return epochs

    def to_dict(self) -> dict[str, float | int]:
        """The figures, unrounded (a metrics line's `estimate`)."""
        return {
            "timed_steps": self.timed_steps, "timed_images": self.timed_images,
            "timed_seconds": self.timed_seconds, "step_seconds": self.step_seconds,
            "train_flops_per_image": self.train_flops, "eval_flops_per_image": self.eval_flops,
            "flops_per_s": self.rate, "steps_per_epoch": self.steps_per_epoch, "val_images": self.val_images,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
            "epoch_seconds": self.epoch_seconds, "epochs": self.epochs, "run_seconds": self.run_seconds,
        } | ({"epoch_train_flops_per_image": list(self.epoch_flops)} if self.epoch_flops else {}) | (
            {"evaluated": list(self.evaluated)} if self.evaluated else {}
        )  # fmt: skip
