"""The papers' ablations as named experiments: `ilsvrc ablation NAME`, each beside the paper's claim.

Each ablation is a handful of variants (zoo networks, or one network with `--set` edits) trained as a
study (`ilsvrc.training.study`: the same data, budget and recipe, one run directory each, resumable)
and measured the same way; the table sets the measured errors beside what the paper reported, and
the chart draws each variant's training curve. For ReLU against tanh the measure is the paper's own:
the epochs each needs to reach a training error (25% in AlexNet's Figure 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import IlsvrcError
from .study import Variant

KIND = "ablation"


@dataclass(frozen=True)
class Ablation:
    name: str
    question: str  # what it asks, in the lecture's words where it has them
    claim: str  # what the paper reports
    source: str
    variants: tuple[Variant, ...]
    target: float | None = None  # a training top-1 error to reach: the epochs each variant needs

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "question": self.question, "claim": self.claim, "source": self.source,
                "target": self.target}  # fmt: skip


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in (
        Ablation(
            "relu-vs-tanh",
            "Why ReLU and not tanh?",
            "A four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster than the "
            "same network with tanh units.",
            "Krizhevsky et al. 2012, Figure 1",
            (Variant("ReLU", "alexnet"), Variant("tanh", "alexnet", ["relu*.type=tanh"])),
            target=0.25,
        ),
        Ablation(
            "lrn",
            "Does local response normalisation help?",
            "Response normalisation reduces top-1 and top-5 error by 1.4 and 1.2 points.",
            "Krizhevsky et al. 2012, section 3.3",
            (Variant("with LRN", "alexnet"), Variant("without LRN", "alexnet", ["norm*.type=none"])),
        ),
        Ablation(
            "overlapping-pooling",
            "Why 3x3 pooling windows that overlap (stride 2)?",
            "Overlapping 3x3/2 pooling reduces top-1 and top-5 error by 0.4 and 0.3 points against 2x2/2, "
            "and overfits slightly less.",
            "Krizhevsky et al. 2012, section 3.4",
            (Variant("3x3/2 (overlapping)", "alexnet"), Variant("2x2/2", "alexnet", ["pool*.kernel=2"])),
        ),
        Ablation(
            "dropout",
            "What does dropout buy?",
            "Without dropout the network overfits substantially; dropout roughly doubles the iterations "
            "needed to converge.",
            "Krizhevsky et al. 2012, section 4.2",
            (Variant("dropout 0.5", "alexnet"), Variant("no dropout", "alexnet", ["drop*.p=0"])),
        ),
        Ablation(
            "zfnet-conv1",
            "Why did ZFNet shrink AlexNet's first layer (11x11/4 to 7x7/2)?",
            "ZFNet's net (7x7/2 conv1, stride-2 conv2, dense conv3-5): 38.4 / 16.5 top-1 / top-5 val error "
            "against AlexNet's 40.7 / 18.2, one net each.",
            "Zeiler and Fergus 2014, Table 2",
            (Variant("AlexNet 11x11/4", "alexnet"), Variant("ZFNet 7x7/2", "zfnet")),
        ),
        Ablation(
            "vgg-depth",
            "Does depth help (VGG's configurations A and D)?",
            "Single-scale test at 256: A (11 layers) 29.6 / 10.4, D (16 layers) 27.0 / 8.8 top-1 / top-5.",
            "Simonyan and Zisserman 2015, Table 3",
            (Variant("A: vgg11", "vgg11"), Variant("D: vgg16", "vgg16")),
        ),
        Ablation(
            "vgg-1x1",
            "1x1 or 3x3 convolutions in the deep blocks (VGG's C against D)?",
            "Single-scale test at 256: C (1x1 convolutions) 28.1 / 9.4, D (3x3) 27.0 / 8.8 top-1 / top-5: "
            "spatial context matters, not only the extra non-linearity.",
            "Simonyan and Zisserman 2015, Table 3",
            (Variant("C: 1x1", "vgg16-c"), Variant("D: 3x3", "vgg16")),
        ),
        Ablation(
            "degradation",
            "Why residual connections (ResNet's degradation experiment)?",
            "Top-1 val error (10-crop): plain-18 27.94, plain-34 28.54 (deeper is worse), ResNet-18 27.88, "
            "ResNet-34 25.03 (deeper is better).",
            "He et al. 2016, Table 2",
            (
                Variant("plain-18", "plain18"),
                Variant("plain-34", "plain34"),
                Variant("ResNet-18", "resnet18"),
                Variant("ResNet-34", "resnet34"),
            ),  # fmt: skip
        ),
    )
}


def get_ablation(name: str) -> Ablation:
    if name not in ABLATIONS:
        raise IlsvrcError(f"There is no ablation called {name!r}; the ablations are {', '.join(ABLATIONS)}.")
    return ABLATIONS[name]


def ablation_variants(plan: dict[str, Any]) -> list[Variant]:
    return list(get_ablation(plan["ablation"]).variants)


def epochs_to(outcome: dict[str, Any], target: float) -> float | None:
    """The epochs of training at which the training top-1 error reached `target`, read from the curve of
    per-epoch training errors: between two epoch ends the error is taken to fall linearly, so a run whose
    error went from 0.40 to 0.20 during its 3rd epoch reached 0.25 at 2.75 epochs. A run already at the
    target after its first epoch gives 1 (the curve says nothing finer); None: never reached."""
    before: tuple[float, float] | None = None
    for epoch, train, _ in outcome["curve"]:
        if train is None:
            continue
        if train <= target:
            if before is None or before[1] <= train:
                return float(epoch)
            e0, t0 = before
            return e0 + (epoch - e0) * (t0 - target) / (t0 - train)
        before = (epoch, train)
    return None


def target_of(plan: dict[str, Any]) -> float | None:
    """The training error an ablation measures the epochs to: the plan's (`--target-error`), else the
    paper's (25% for ReLU against tanh)."""
    return plan.get("target") if plan.get("target") is not None else get_ablation(plan["ablation"]).target


def check_plan(plan: dict[str, Any]) -> None:
    """Every variant of the plan's ablation built at its image size, before anything trains."""
    from ..networks import resolve
    from ..networks.edit import apply_edits
    from .recipes import check_network_size

    for v in ablation_variants(plan):
        check_network_size(apply_edits(resolve(v.model), v.edits), plan["image_size"])


def with_measures(plan: dict[str, Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcomes with what the ablation measures besides the errors (epochs to its target)."""
    target = target_of(plan)
    return [{**r, "epochs_to_target": None if target is None else epochs_to(r, target)} for r in results]
