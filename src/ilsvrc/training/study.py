"""Several training runs under one plan in one directory, resumable: what the history replay, a sweep
and an ablation share.

A study trains a list of variants (a network, a classical pipeline, or a network with `--set` edits)
with the same settings (data, image size, seed, the CNNs' recipe, and a budget of minutes or epochs)
and measures each the same way: its run's final validation, one centre view per image. Its directory
holds the record and one ordinary run directory per variant:

    OUT/KIND.json        the plan and, after each variant, its outcome (written atomically)
    OUT/01-LABEL/ ...    a run directory (`ilsvrc eval`, `predict`, `plot` work on it)

Run again on the same directory, it resumes: finished variants are kept, a variant that was stopped
goes on from its last checkpoint with the rest of its budget, one stopped before its first checkpoint
starts again (it had saved nothing). Asking for other settings in a directory that holds a study is
refused, naming what differs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IlsvrcError
from .checkpoint import write_json_atomic
from .metrics import METRICS_FILE, read_metrics

EPOCHS = 10_000  # with a time budget, the time ends every run long before this
CLASSICAL = ("sift-bow", "hog-svm")  # pipelines of ilsvrc.training.classical


class StudyError(IlsvrcError):
    """A study that cannot be planned or resumed as asked."""


@dataclass
class Settings:
    """What every variant of a study shares."""

    minutes: float | None = 10.0  # each variant's budget of wall-clock minutes (evaluations included)
    epochs: int | None = None  # or of epochs (the recipe's schedule planned over them)
    data: str | None = None  # None: the built-in data
    image_size: int = 128
    seed: int = 0
    recipe: str = "cpu"  # the CNNs' recipe, the same for all
    synthetic_classes: int = 10
    synthetic_train: int | None = None
    synthetic_val: int | None = None

    def __post_init__(self) -> None:
        if self.minutes is None and self.epochs is None:
            raise StudyError("A study needs a budget: --minutes M or --epochs N for each variant.")
        if self.minutes is not None and not self.minutes > 0:
            raise StudyError(
                f"Each variant's budget must be a positive number of minutes, not {self.minutes}."
            )
        if self.epochs is not None and not (isinstance(self.epochs, int) and self.epochs > 0):
            raise StudyError(f"Each variant's budget must be a positive number of epochs, not {self.epochs}.")

    def budget(self) -> str:
        return " and ".join(
            ([f"{self.minutes:g} min"] if self.minutes else [])
            + ([f"{self.epochs} epochs"] if self.epochs else [])
        )


@dataclass
class Variant:
    label: str  # unique in the study: its row in the tables, its run directory's name
    model: str  # a zoo name, spec file or classical pipeline
    edits: list[str] = field(default_factory=list)  # --set edits of `model`

    @property
    def classical(self) -> bool:
        return self.model in CLASSICAL

    def folder(self, index: int) -> str:
        return (
            f"{index + 1:02d}-" + (re.sub(r"[^A-Za-z0-9_.+-]+", "_", self.label).strip("_") or "variant")[:60]
        )


def record(out: Path, kind: str) -> Path:
    return out / f"{kind}.json"


def read_study(out: Path, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The plan and the outcomes so far of the study of `kind` in `out`."""
    path = record(out, kind)
    try:
        data = json.loads(path.read_text())
        return data["plan"], list(data["results"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudyError(
            f"{path} is not a {kind}'s record ({exc}); give a directory a {kind} wrote."
        ) from None


def write_study(out: Path, kind: str, plan: dict[str, Any], results: list[dict[str, Any]]) -> None:
    write_json_atomic(record(out, kind), {"schema": f"ilsvrc.{kind}/1", "plan": plan, "results": results})


def start_or_resume(out: Path, kind: str, plan: dict[str, Any] | None) -> tuple[dict[str, Any], list[dict]]:
    """The plan and finished outcomes of the study in `out`: a new one (`plan` given, `out` empty or
    absent) or the one `out` holds (`plan` None, or equal to it)."""
    if record(out, kind).exists():
        held, results = read_study(out, kind)
        if plan is not None and plan != held:
            diff = [f"{k} {held.get(k)!r} (asked {plan.get(k)!r})" for k in sorted(set(held) | set(plan))
                    if held.get(k) != plan.get(k)]  # fmt: skip
            raise StudyError(
                f"{out} holds a {kind} with other settings: {'; '.join(diff)}. Resume it as it was "
                f"(`--resume {out}`), or give another -o."
            )
        return held, results
    if plan is None:
        raise StudyError(
            f"{out} holds no {kind} (no {record(out, kind).name}); start one instead of resuming."
        )
    if out.exists() and any(out.iterdir()):
        raise StudyError(f"{out} exists and is not empty; give a new directory for the {kind} with -o.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"Cannot create the {kind} directory {out}: {exc.strerror or exc}.") from None
    write_study(out, kind, plan, [])
    return plan, []


def _has_checkpoint(run: Path) -> bool:
    return (run / "checkpoints" / "last").exists() or any((run / "checkpoints").glob("*/model.safetensors"))


def train_variant(
    variant: Variant,
    settings: Settings,
    run: Path,
    progress: bool = False,
    log: Callable[[str], None] = print,
    after_epoch: Callable[[Path], None] | None = None,
) -> None:
    """Train `variant` into `run` under `settings`, or go on with the run that is there."""
    if variant.classical:
        try:
            from .classical import resume_classical, train_classical
        except ImportError:
            raise StudyError(
                f"The classical pipeline {variant.model!r} is not part of this installation; leave it out, "
                "or install the classical extras (pip install -e '.[classic]')."
            ) from None
        if (run / "model.npz").exists():
            return  # finished: its model and its validation are written
        if (run / "config.json").exists():
            resume_classical(run, progress, log)  # stopped part of the way: its cached features are kept
            return
        if run.exists():
            shutil.rmtree(run)  # stopped before it wrote its config: nothing to keep
        train_classical(
            variant.model, run, data=settings.data, image_size=settings.image_size, seed=settings.seed,
            time_limit=settings.minutes, synthetic_train=settings.synthetic_train,
            synthetic_val=settings.synthetic_val, synthetic_classes=settings.synthetic_classes,
            progress=progress, log=log,
        )  # fmt: skip
        return
    from .loop import NothingToDo, make_config, train

    if run.exists() and _has_checkpoint(run):
        try:
            train(resume=run, progress=progress, log=log, after_epoch=after_epoch)
        except NothingToDo:
            pass  # its budget was used up: the last checkpoint and its evaluation stand
        return
    if run.exists():
        shutil.rmtree(run)  # stopped before its first checkpoint: nothing to keep
    overrides: dict[str, Any] = {}
    if variant.edits:
        from ..networks import resolve
        from ..networks.edit import apply_edits
        from ..networks.specfile import dumps

        overrides["spec"] = json.loads(dumps(apply_edits(resolve(variant.model), variant.edits), "json"))
        overrides["edits"] = list(variant.edits)
    config = make_config(
        variant.model, settings.recipe, data=settings.data, out=str(run), seed=settings.seed,
        time_limit=settings.minutes, epochs=settings.epochs or EPOCHS, image_size=settings.image_size,
        synthetic_classes=settings.synthetic_classes, synthetic_train=settings.synthetic_train,
        synthetic_val=settings.synthetic_val, **overrides,
    )  # fmt: skip
    train(config, progress=progress, log=log, after_epoch=after_epoch)


def outcome(variant: Variant, run: Path) -> dict[str, Any]:
    """What a finished variant's run measured: its final validation, time, epochs and curve."""
    rows = read_metrics(run)
    measured = [r for r in rows if r.get("val_top1_error") is not None]
    if not measured:
        raise StudyError(f"{variant.label} ended without a validation ({run / METRICS_FILE}).")
    last = measured[-1]
    return {
        "label": variant.label,
        "model": variant.model,
        "edits": list(variant.edits),
        "top1_error": last["val_top1_error"],
        "top5_error": last["val_top5_error"],
        "minutes": round(float(last.get("seconds", 0)) / 60, 3),
        "epochs": last.get("epoch"),
        "steps": last.get("step"),
        # the curve: (epoch, training top-1 error, validation top-1 error) of every metrics line
        "curve": [[r.get("epoch"), r.get("train_top1_error"), r.get("val_top1_error")] for r in rows],
        "run": str(run),
    }


def run_study(
    out: Path,
    kind: str,
    plan: dict[str, Any] | None,
    variants_of: Callable[[dict[str, Any]], list[Variant]],
    settings_of: Callable[[dict[str, Any]], Settings],
    progress: bool = True,
    log: Callable[[str], None] = print,
    after_each: Callable[[Path, dict[str, Any], list[dict[str, Any]]], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start the study `plan` in `out`, or resume the one there; train each variant not yet done and
    record its outcome. `variants_of` and `settings_of` read a plan (as stored); `after_each` is called
    with `out`, the plan and the outcomes so far after each variant."""
    plan, results = start_or_resume(out, kind, plan)
    variants, settings = variants_of(plan), settings_of(plan)
    done = {r["label"] for r in results}
    for i, variant in enumerate(variants):
        if variant.label in done:
            continue
        left = len(variants) - len(done)
        budget = settings.budget()
        total = f"; about {left * settings.minutes:g} min left in all" if settings.minutes else ""
        log(f"{kind} {i + 1}/{len(variants)}: {variant.label} ({budget}){total}")
        began = time.perf_counter()

        def after_epoch(run_dir: Path, variant: Variant = variant, left: int = left) -> None:
            rows = read_metrics(run_dir)
            used = rows[-1].get("seconds", 0) / 60 if rows else 0
            rest = (
                f"; the {kind} has about {max(0.0, left * settings.minutes - used):.1f} min left"
                if settings.minutes
                else ""
            )
            of = f" of {settings.minutes:g}" if settings.minutes else ""
            log(f"{kind}: {variant.label} {used:.1f}{of} min{rest}")

        train_variant(variant, settings, out / variant.folder(i), progress, log, after_epoch)
        results.append(outcome(variant, out / variant.folder(i)))
        done.add(variant.label)
        write_study(out, kind, plan, results)
        r = results[-1]
        log(f"{kind}: {variant.label} done in {(time.perf_counter() - began) / 60:.1f} min: "
            f"{r['top1_error']:.1%} top-1, {r['top5_error']:.1%} top-5 error")  # fmt: skip
        if after_each is not None:
            after_each(out, plan, results)
    order = [v.label for v in variants]
    results.sort(key=lambda r: order.index(r["label"]))
    return plan, results


def settings_from(plan: dict[str, Any]) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    return Settings(**{k: v for k, v in plan.items() if k in names})
