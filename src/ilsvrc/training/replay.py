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
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IlsvrcError
from ..networks import get_spec, list_models
from ..networks.history import ENTRIES, Entry
from .checkpoint import write_json_atomic
from .metrics import METRICS_FILE, read_metrics
from .recipes import check_network_size

REPLAY_SCHEMA = "ilsvrc.replay/1"
REPLAY_FILE = "replay.json"
# one entry per era, cheapest of its family where the family has several: the classical baseline,
# then 2012 to 2015 (googlenet-torchvision: batch norm, and adaptive pooling for small images)
DEFAULT_ENTRIES = ("sift-bow", "alexnet", "zfnet", "vgg11", "googlenet-torchvision", "resnet18")
CLASSICAL = {"sift-bow": "NEC-UIUC", "hog-svm": "NEC-UIUC", "sift-fisher": "XRCE"}
FAMILIES = {"alexnet": "SuperVision", "zfnet": "Clarifai", "vgg": "VGG", "googlenet": "GoogLeNet",
            "resnet": "MSRA"}  # fmt: skip
EPOCHS = 10_000  # the time budget ends every CNN run long before this


class ReplayError(IlsvrcError):
    """A replay that cannot be planned or resumed as asked."""


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
        return out / f"{self.entries.index(name) + 1:02d}-{name}"


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


def read_replay(out: Path) -> tuple[ReplayPlan, list[EntryResult]]:
    path = out / REPLAY_FILE
    try:
        data = json.loads(path.read_text())
        plan = ReplayPlan(**data["plan"])
        results = [EntryResult(**r) for r in data["results"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReplayError(
            f"{path} is not a replay's record ({exc}); give the directory a replay wrote."
        ) from None
    return plan, results


def _write(out: Path, plan: ReplayPlan, results: list[EntryResult]) -> None:
    write_json_atomic(out / REPLAY_FILE, {"schema": REPLAY_SCHEMA, "plan": plan.to_dict(),
                                          "results": [r.to_dict() for r in results]})  # fmt: skip


def start_or_resume(out: Path, plan: ReplayPlan | None) -> tuple[ReplayPlan, list[EntryResult]]:
    """The plan and finished results of the replay in `out`: a new one (`plan` given, `out` empty or
    absent) or the one `out` holds (`plan` None, or equal to it)."""
    if (out / REPLAY_FILE).exists():
        held, results = read_replay(out)
        if plan is not None and plan != held:
            diff = [f"{k} {getattr(held, k)!r} (asked {getattr(plan, k)!r})"
                    for k in held.to_dict() if getattr(held, k) != getattr(plan, k)]  # fmt: skip
            raise ReplayError(
                f"{out} holds a replay with other settings: {'; '.join(diff)}. Resume it as it was "
                f"(`ilsvrc history --resume {out}`), or give another -o."
            )
        return held, results
    if plan is None:
        raise ReplayError(
            f"{out} holds no replay ({REPLAY_FILE} is missing); start one with --data and --minutes."
        )
    if out.exists() and any(out.iterdir()):
        raise ReplayError(f"{out} exists and is not empty; give a new directory for the replay with -o.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReplayError(f"Cannot create the replay directory {out}: {exc.strerror or exc}.") from None
    _write(out, plan, [])
    return plan, []


def _has_checkpoint(run: Path) -> bool:
    return (run / "checkpoints" / "last").exists() or any((run / "checkpoints").glob("*/model.safetensors"))


def _train_cnn(plan: ReplayPlan, name: str, run: Path, progress: bool, log: Callable[[str], None],
               after_epoch: Callable[[Path], None]) -> None:  # fmt: skip
    from .loop import NothingToDo, make_config, train

    if run.exists() and _has_checkpoint(run):
        try:
            train(resume=run, progress=progress, log=log, after_epoch=after_epoch)
        except NothingToDo:
            pass  # its budget was used up: the last checkpoint and its evaluation stand
        return
    if run.exists():
        shutil.rmtree(run)  # stopped before its first checkpoint: nothing to keep
    size = plan.image_size
    config = make_config(
        name, plan.recipe, data=plan.data, out=str(run), seed=plan.seed, time_limit=plan.minutes,
        epochs=EPOCHS, image_size=size, synthetic_classes=plan.synthetic_classes,
        synthetic_train=plan.synthetic_train, synthetic_val=plan.synthetic_val,
    )  # fmt: skip
    train(config, progress=progress, log=log, after_epoch=after_epoch)


def _train_classical(
    plan: ReplayPlan, name: str, run: Path, progress: bool, log: Callable[[str], None]
) -> None:
    try:
        from .classical import train_classical
    except ImportError:
        raise ReplayError(
            f"The classical pipeline {name!r} is not part of this installation; leave it out with "
            "--entries, or install the classical extras."
        ) from None
    train_classical(
        name, run, data=plan.data, image_size=plan.image_size, seed=plan.seed, time_limit=plan.minutes,
        synthetic_train=plan.synthetic_train, synthetic_val=plan.synthetic_val,
        synthetic_classes=plan.synthetic_classes, progress=progress, log=log,
    )  # fmt: skip


def _result(plan: ReplayPlan, name: str, run: Path) -> EntryResult:
    rows = [r for r in read_metrics(run) if r.get("val_top1_error") is not None]
    if not rows:
        raise ReplayError(f"The entry {name} ended without a validation ({run / METRICS_FILE}).")
    last, entry = rows[-1], stands_for(name)
    minutes = last.get("seconds", 0) / 60  # the run's wall time so far, evaluations included
    return EntryResult(name, entry.entry, entry.year, entry.top5_error, last["val_top1_error"],
                       last["val_top5_error"], round(float(minutes), 3), str(run))  # fmt: skip


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
    out = Path(out)
    plan, results = start_or_resume(out, plan)
    done = {r.name for r in results}
    for i, name in enumerate(plan.entries):
        if name in done:
            continue
        run = plan.run_dir(out, name)
        entry = stands_for(name)
        left = len(plan.entries) - len(done)
        log(f"replay {i + 1}/{len(plan.entries)}: {name}, for {entry.year}'s {entry.entry} "
            f"({entry.top5_error:g}% top-5 published); {plan.minutes:g} min; the replay has at most "
            f"{left * plan.minutes:g} min left")  # fmt: skip
        began = time.perf_counter()

        def after_epoch(run_dir: Path, name=name, began=began, left=left) -> None:
            rows = read_metrics(run_dir)
            used = rows[-1].get("seconds", 0) / 60 if rows else 0
            log(f"replay: {name} {used:.1f} of {plan.minutes:g} min; the replay has about "
                f"{max(0.0, left * plan.minutes - used):.1f} min left")  # fmt: skip

        if name in CLASSICAL:
            _train_classical(plan, name, run, progress, log)
        else:
            _train_cnn(plan, name, run, progress, log, after_epoch)
        results.append(_result(plan, name, run))
        done.add(name)
        _write(out, plan, results)
        log(f"replay: {name} done in {(time.perf_counter() - began) / 60:.1f} min: "
            f"{results[-1].top1_error:.1%} top-1, {results[-1].top5_error:.1%} top-5 error")  # fmt: skip
        if after_entry is not None:
            after_entry(out, plan, results)
    results.sort(key=lambda r: plan.entries.index(r.name))
    return plan, results
