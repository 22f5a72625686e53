"""The test view of `--recipe fast`: its seeds' last weights evaluated at other sizes and crops (issue 16).

The recipe ends on a centre crop of 128 px from the image resized to 146 px (crop fraction 0.875), with
its mirror. A different view of the same weights costs no training: this script evaluates each finished
`fast:SEED` run of a `benchmarks/fast.py` folder (`--out`) in every view of `--views` (SIZE@FRACTION: a
centre crop of SIZE px from the image resized to SIZE / FRACTION), with flips, on the val split, as
`ilsvrc eval RUN --image-size SIZE --crop-fraction FRACTION` does, and tables each view's accuracy
beside the recipe's view on the same weights (paired differences, free of the seeds' spread). A larger
crop fraction shows more of the image (the objects smaller); a larger size, more pixels of the same crop
(FixRes, Touvron et al. 2019: a test size above the training size makes up for random-resized crops
showing objects larger than a centre crop does).

    python benchmarks/fast_views.py --out runs/bench-fast-v3 --views 128@1,128@0.8,112@0.875,144@0.875
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "imagenette"

from benchmarks.fast import _pct, _points  # noqa: E402
from benchmarks.harness import Section, log, publish, utc_stamp  # noqa: E402


def recipe_view() -> tuple[int, float]:
    """(size, crop fraction) the fast recipe's runs end their evaluation on: its image size and crop."""
    from ilsvrc.training.recipes import get_recipe

    recipe = get_recipe("fast")
    assert recipe.image_size is not None and recipe.test_scale == 1, "the fast recipe names its test view"
    return recipe.image_size, recipe.crop_fraction


RECIPE_VIEW = recipe_view()


def parse_views(text: str) -> list[tuple[int, float]]:
    """`128@0.875,144@1` -> [(128, 0.875), (144, 1.0)]; the recipe's view first, added when missing.
    A malformed view is a ValueError naming it."""
    views = []
    for part in text.split(","):
        size, _, fraction = part.strip().partition("@")
        try:
            view = (int(size), float(fraction or 0.875))
        except ValueError:
            raise ValueError(f"a view is SIZE@FRACTION, e.g. 144@0.875; got {part!r}") from None
        if not (view[0] > 0 and 0 < view[1] <= 1):
            raise ValueError(f"a view needs a positive size and a crop fraction in (0, 1]; got {part!r}")
        views.append(view)
    return [RECIPE_VIEW] + [v for v in views if v != RECIPE_VIEW]


def evaluate_views(run: Path, data: Path, views: list[tuple[int, float]]) -> dict[tuple[int, float], float]:
    """Top-1 accuracy of the run's last weights in each view, with flips, on the val split: what
    `ilsvrc eval RUN --image-size SIZE --crop-fraction FRACTION` gives."""
    from ilsvrc.training.inference import evaluate_run

    found = {}
    for size, fraction in views:
        done = evaluate_run(run, data=str(data), image_size=size, crop_fraction=fraction, flips=True)
        assert done.view is not None
        if (size, fraction) == RECIPE_VIEW and not done.view.own:  # first: before any other view
            sys.exit(f"{run} was not evaluated at {size} px @ {fraction:g} in training, the fast recipe's "
                     "view as it is now: run it again with the recipe, or compare by hand")  # fmt: skip
        found[size, fraction] = 1 - done.result.top1_error
        log(f"{run}: {size} px @ {fraction:g}: {100 * found[size, fraction]:.2f}%")
    return found


def section(found: dict[str, dict[tuple[int, float], float]]) -> Section:
    """Each view's mean accuracy over the seeds and its paired difference with the recipe's view."""
    seeds = sorted(found)
    table = Section("The test view of `--recipe fast`: the same weights at other sizes and crops",
                    ["view (with flips)", "val top-1", "against the recipe's view"])  # fmt: skip
    for view in found[seeds[0]]:
        values = [found[s][view] for s in seeds]
        gaps = [found[s][view] - found[s][RECIPE_VIEW] for s in seeds]
        name = f"{view[0]} px from {round(view[0] / view[1])} px (crop fraction {view[1]:g})"
        recipe = view == RECIPE_VIEW
        table.rows.append(
            [name + (" (the recipe)" if recipe else ""), _pct(values), "" if recipe else _points(gaps)]
        )
    table.notes.append(
        f"The last weights of {', '.join(seeds)}, each evaluated in every view with flips on Imagenette's "
        "val split (`ilsvrc eval RUN --image-size SIZE --crop-fraction FRACTION`); the differences are "
        "paired (each seed against its own recipe's view): mean, sd and range over the seeds."
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench-fast")
    parser.add_argument("--views", default="128@1,128@0.8,128@0.75,112@0.875,144@0.875")
    parser.add_argument("--write", type=Path, help="append the table to this file (benchmarks/RESULTS.md)")
    args = parser.parse_args()
    try:
        views = parse_views(args.views)
    except ValueError as error:
        parser.error(f"--views: {error}")  # exit code 2
    runs = sorted(p for p in args.out.glob("fast-s*") if (p / "rows.json").exists())
    if not runs:
        parser.error(
            f"no finished `fast:SEED` runs in {args.out}: run benchmarks/fast.py --out {args.out} first"
        )
    found = {p.name.replace("-s", ":"): evaluate_views(p / "run", args.data, views) for p in runs}
    command = f"python benchmarks/fast_views.py --out {args.out} --views {args.views}"
    text = f"Command: `{command}`; {utc_stamp()}.\n\n" + section(found).markdown()
    publish(text, args.write)


if __name__ == "__main__":
    main()
