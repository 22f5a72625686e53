"""The ILSVRC history replayed: each era's entry trained on the same data with the same budget.

A replay is a plan (`ReplayPlan`: the entries in the order of their years, minutes each, the data, the
image size, the seed, the recipe of the CNNs) and a directory that holds it:

    OUT/replay.json          the plan and, after each entry, its result (written atomically)
    OUT/01-sift-bow/ ...     one ordinary run directory per entry (`ilsvrc eval`, `predict`, `plot` work)

Every entry gets the same wall-clock budget (the run's time limit, which counts its evaluations too)
and is measured by one protocol: its run's final validation, a single centre view of each image of
the val split (a CNN's centre crop; the classical pipelines see the whole resized image, having no
crops). The CNNs train with one recipe (by default `cpu`: one-cycle over the time budget), so that the
networks differ and the training does not.

Run it again with the same directory and it resumes: finished entries are kept, an entry that was
stopped goes on from its last checkpoint with the rest of its budget, and one stopped before its first
checkpoint starts again (nothing was saved to lose).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..networks import get_spec, list_models
from ..networks.history import ENTRIES, Entry
from .recipes import check_network_size
from .study import StudyError, Variant, read_study, run_study, settings_from

REPLAY_SCHEMA = "ilsvrc.replay/1"
REPLAY_FILE = "replay.json"
# one entry per era, cheapest of its family where the family has several: the classical baseline,
# then 2012 to 2015 (googlenet-torchvision: batch norm, and adaptive pooling for small images)
DEFAULT_ENTRIES = ("sift-bow", "alexnet", "zfnet", "vgg11", "googlenet-torchvision", "resnet18")
CLASSICAL = {"sift-bow": "NEC-UIUC", "hog-svm": "NEC-UIUC"}  # the pipelines of training/classical.py
FAMILIES = {"alexnet": "SuperVision", "zfnet": "Clarifai", "vgg": "VGG", "googlenet": "GoogLeNet",
            "resnet": "MSRA"}  # fmt: skip
ReplayError = StudyError  # a replay that cannot be planned or resumed as asked


def stands_for(name: str) -> Entry:
    """The history entry a replay entry stands for: sift-bow for 2010's NEC-UIUC, alexnet for 2012's
    SuperVision, any vgg* for VGG, resnet* for MSRA's ResNet..."""
    entry = CLASSICAL.get(name) or next((e for f, e in FAMILIES.items() if name.startswith(f)), None)
    if entry is None or (name not in CLASSICAL and name not in list_models()):
        known = ", ".join([*CLASSICAL, "alexnet", "zfnet", "vgg11 ... vgg19-bn", "googlenet(-torchvision)",
                           "resnet18 ... resnet152"])  # fmt: skip
        raise ReplayError(
            f"{name!r} does not stand for an entry of the ILSVRC history; a replay takes a classical "
            f"pipeline or a zoo network of one of the winning families: {known}."
        )
    return next(e for e in ENTRIES if e.entry == entry)


@dataclass
class ReplayPlan:
    entries: list[str] = field(default_factory=lambda: list(DEFAULT_ENTRIES))
    minutes: float = 10.0  # each entry's budget
    data: str | None = None  # None: the built-in data
    image_size: int = 128
    seed: int = 0
    recipe: str = "cpu"  # the CNNs' recipe
    synthetic_classes: int = 10
    synthetic_train: int | None = None
    synthetic_val: int | None = None

    def __post_init__(self) -> None:
        if not self.entries:
            raise ReplayError("A replay needs at least one entry, e.g. --entries sift-bow,alexnet.")
        if len(set(self.entries)) != len(self.entries):
            raise ReplayError(f"An entry is named twice in {', '.join(self.entries)}; name each once.")
        if not self.minutes > 0:
            raise ReplayError(
                f"Each entry's budget must be a positive number of minutes, got {self.minutes}."
            )
        for name in self.entries:
            stands_for(name)
            if name not in CLASSICAL:  # every network takes the image size, before anything trains
                check_network_size(get_spec(name), self.image_size)
        # in the order of the years they stand for (stable: the order given within a year)
        self.entries = sorted(self.entries, key=lambda n: stands_for(n).year)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_dir(self, out: Path, name: str) -> Path:
        return out / Variant(name, name).folder(self.entries.index(name))


@dataclass
class EntryResult:
    name: str
    stands_for: str  # the history entry
    year: int
    published_top5: float  # percent, ILSVRC test set
    top1_error: float  # fractions, on the replay's val split
    top5_error: float
    minutes: float  # wall time of the run, evaluations included
    run: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _entry_result(r: dict[str, Any]) -> EntryResult:
    entry = stands_for(r["label"])
    errors = (r["top1_error"], r["top5_error"])
    return EntryResult(r["label"], entry.entry, entry.year, entry.top5_error, *errors, r["minutes"], r["run"])


def read_replay(out: Path) -> tuple[ReplayPlan, list[EntryResult]]:
    plan, results = read_study(out, "replay")
    return ReplayPlan(**plan), [_entry_result(r) for r in results]


def replay(
    out: str | Path,
    plan: ReplayPlan | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    after_entry: Callable[[Path, ReplayPlan, list[EntryResult]], None] | None = None,
) -> tuple[ReplayPlan, list[EntryResult]]:
    """Run the replay `plan` in `out`, or resume the one `out` holds; returns the plan and the results.

    after_entry: called with `out`, the plan and the results so far after each entry (the command line
    redraws the table and chart with it)."""

    def each(out: Path, held: dict[str, Any], results: list[dict[str, Any]]) -> None:
        if after_entry is not None:
            after_entry(out, ReplayPlan(**held), [_entry_result(r) for r in results])

    held, results = run_study(
        Path(out), "replay", None if plan is None else plan.to_dict(),
        variants_of=lambda p: [Variant(n, n) for n in p["entries"]], settings_of=settings_from,
        progress=progress, log=log, after_each=each,
    )  # fmt: skip
    return ReplayPlan(**held), [_entry_result(r) for r in results]
