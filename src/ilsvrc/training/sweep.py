"""`ilsvrc sweep`: the lecture's "they tried many and kept the best on a validation set", run.

A sweep is a network and, for some of its fields, the values to try (`--set conv1.kernel=7,9,11 --set
fc6.out_features=2048,4096`): every combination (the grid), or `random` of them drawn with the seed.
Before anything trains, each variant is analysed at the training size: its parameters, multiply-adds
and the memory a training step needs; a variant that cannot be built (a volume that no longer fits) is
reported with the reason and left out. The rest are trained as a study (`ilsvrc.training.study`: the
same data, budget and recipe, one run directory each, resumable) and ranked by validation error.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.analyzer import analyze
from ..errors import IlsvrcError, ShapeError, SpecError
from ..networks import resolve
from ..networks.edit import apply_edits, parse_edit
from .recipes import default_recipe, get_recipe
from .study import StudyError, Variant, settings_from

KIND = "sweep"


def parse_choices(text: str) -> tuple[str, list[str]]:
    """'conv1.kernel=7,9,11' -> ('conv1.kernel', ['7', '9', '11']); commas inside [ ] stay ('[7, 5]')."""
    target, eq, raw = str(text).partition("=")
    values, depth, current = [], 0, ""
    for ch in raw:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += ch
    values.append(current.strip())
    if not eq or not target.strip() or any(not v for v in values):
        raise SpecError(
            f"The sweep setting {text!r} is not LAYER.FIELD=V1,V2,...; write e.g. --set conv1.kernel=7,9,11."
        )
    for v in values:
        parse_edit(f"{target.strip()}={v}")  # each value readable, before anything else
    return target.strip(), values


def variants(
    choices: list[tuple[str, list[str]]], draws: int | None = None, seed: int = 0
) -> list[list[str]]:
    """The edits of each variant: every combination, or `draws` of them drawn without repeats."""
    grid = [[f"{t}={v}" for t, v in zip([t for t, _ in choices], combo)]
            for combo in itertools.product(*[vals for _, vals in choices])]  # fmt: skip
    if draws is not None and draws < len(grid):
        grid = random.Random(seed).sample(grid, draws)
    return grid


@dataclass
class Cost:
    """A variant's cost before it trains, or why it cannot be built."""

    label: str
    edits: list[str]
    params: int | None = None
    macs: int | None = None  # per image, at the training size
    train_memory: int | None = None  # bytes of a training step at the recipe's batch
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def costs(model: str, edit_lists: list[list[str]], image_size: int, batch: int, classes: int) -> list[Cost]:
    """Each variant analysed at `image_size` with `classes` outputs and a batch of `batch`."""
    base = resolve(model)
    out = []
    for edits in edit_lists:
        label = " ".join(edits)
        try:
            net = apply_edits(base, edits).with_num_classes(classes)
            report = analyze(net, (net.input_shape[0], image_size, image_size), batch=batch, suggest=False)
            out.append(Cost(label, edits, report.params, report.macs, report.memory()["training_total"]))
        except (ShapeError, SpecError) as exc:
            out.append(Cost(label, edits, error=str(exc)))
    return out


def plan_sweep(
    model: str, sets: list[str], draws: int | None, settings: dict[str, Any]
) -> tuple[dict, list[Cost]]:
    """The stored plan of a sweep and the cost of every variant (those that cannot be built included)."""
    if not sets:
        raise IlsvrcError("A sweep needs at least one --set LAYER.FIELD=V1,V2,... to vary.")
    if draws is not None and draws < 1:
        raise IlsvrcError(f"--random takes a positive number of variants to draw, not {draws}.")
    choices = [parse_choices(s) for s in sets]
    edit_lists = variants(choices, draws, settings.get("seed", 0))
    recipe = get_recipe(settings["recipe"]) if settings.get("recipe") else default_recipe(model)
    data = settings.get("data")
    classes = len([d for d in (Path(data) / "train").iterdir() if d.is_dir()]) if data else None
    found = costs(model, edit_lists, settings["image_size"], recipe.batch_size,
                  classes or settings["synthetic_classes"])  # fmt: skip
    buildable = [c for c in found if c.error is None]
    if not buildable:
        raise IlsvrcError(
            f"No variant of the sweep can be built at {settings['image_size']} px: {found[0].error}"
        )
    plan = {"model": model, "sets": list(sets), "random": draws,
            "variants": [c.edits for c in buildable], "costs": [c.to_dict() for c in buildable],
            "skipped": [c.to_dict() for c in found if c.error],
            **settings}  # fmt: skip
    settings_from(plan)  # the budget checked now
    return plan, found


def sweep_variants(plan: dict[str, Any]) -> list[Variant]:
    return [Variant(" ".join(edits), plan["model"], list(edits)) for edits in plan["variants"]]


def ranked(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outcomes from the lowest validation top-1 error (ties: top-5, then fewer minutes)."""
    return sorted(results, key=lambda r: (r["top1_error"], r["top5_error"], r["minutes"]))


def best_spec(plan: dict[str, Any], results: list[dict[str, Any]], out: Path) -> Path:
    """The best variant's network saved as YAML (OUT/best.yaml), its edits in its title."""
    from ..networks.specfile import dumps
    from .checkpoint import write_text_atomic

    if not results:
        raise StudyError("The sweep has no finished variant yet.")
    best = ranked(results)[0]
    path = out / "best.yaml"
    write_text_atomic(path, dumps(apply_edits(resolve(plan["model"]), best["edits"]), "yaml"))
    return path
