"""`--recipe fast` on Imagenette (issue 16): time to accuracy over three seeds beside the cpu recipe and
the torchvision-style loop, and what each trick bought, measured by taking it out under the same budget.

The budget follows the machine as in benchmarks/imagenette.py: the fp32 4096^3 matrix product is timed
first and `--minutes` at `--at-rate` GFLOP/s (20 minutes at 192) becomes minutes x at_rate / rate of
wall-clock time for every entry, each `ilsvrc train` with a cold decoded-image cache built inside it.

Entries (`--entries`, comma-separated; default all):
- `fast:SEED`: `ilsvrc train MODEL --recipe fast` (`--model`, default resnet18), seeds 0, 1 and 2;
- `cpu`: `ilsvrc train alexnet --recipe cpu`, the issue's starting point;
- `tv-onecycle`: the torchvision-style loop (torchvision's alexnet, ImageFolder with PIL transforms) on
  the cpu recipe's one-cycle schedule (benchmarks/imagenette.py's `run_torchvision`);
- `without-TRICK`: the fast recipe, seed 0, with one trick taken out (`TRICKS`), and `with-VARIANT`
  with a setting added that the recipe does not use (`VARIANTS`: a test size above the last training
  size, label smoothing, zero-initialised residual branches, an EMA of the weights, no weight decay on
  batch norms and biases, other peak lrs, batches and crops); `without-TRICK:SEED` (`with-...:SEED`)
  the same with another seed, compared with `fast:SEED` (the table gives the mean of the differences).

After its budget, each `fast:SEED` run's last checkpoint is evaluated with and without flips (`paired`;
and its EMA too when the run kept one, as the recipe did before), so what those evaluation-side tricks
bought is measured on the same weights, without the spread between runs.

A full run is hours (3 seeds, 2 references and 15 ablations of 20 scaled minutes each), so each entry
is a folder in `--out` and a finished entry (its `rows.json`) is read back, not run again; run the same
command again after an interruption. The budget is fixed the first time (`--out`/plan.json): a later
`--minutes` or `--at-rate` that differs is refused rather than mixed in.

    python benchmarks/fast.py [--data ../shared/data/imagenette] [--entries fast:0,fast:1,fast:2,cpu]
                              [--minutes 20] [--out runs/bench-fast] [--png docs/fast-imagenette.png]
                              [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "imagenette"

from benchmarks.harness import Section, log, machine, matmul_rate, publish, utc_stamp  # noqa: E402

SEEDS = (0, 1, 2)
# trick -> (what it is, the `ilsvrc train` options that take it out of the fast recipe)
TRICKS: dict[str, tuple[str, list[str]]] = {
    "resize": ("progressive resizing 64 -> 96 -> 128 px", ["--size-schedule", "none"]),
    "onecycle": ("one-cycle lr over the time budget (without: constant lr 0.01)",
                 ["--schedule", "constant", "--lr", "0.01"]),
    "flip": ("test-time flips", ["--no-tta-flip"]),
    "channels-last": ("channels-last memory layout", ["--no-channels-last"]),
    "cache": ("decoded-image cache (without: a JPEG decode per image per epoch)", ["--no-cache"]),
    "workers": ("2 loader processes beside the compute (without: loading in the training process)",
                ["--workers", "0"]),
    "eval-from": ("validation only from half of the run on (without: after every epoch)",
                  ["--eval-from", "0"]),
}  # fmt: skip
# settings the recipe does not use, measured by adding them (label smoothing, zero-init, the EMA and no weight
# decay on batch norms and biases were in it until their ablations showed that each cost accuracy at this
# budget), other peak lrs, batches and crops
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "fixres": ("evaluation at 1.125 x the last training size (144 px; FixRes)", ["--test-scale", "1.125"]),
    "no-bn-bias-wd": ("no weight decay on batch norms and biases", ["--no-wd-norm-bias"]),
    "crop0.6": ("milder crops: 60-100% of the image's area instead of 35-100%", ["--min-crop-area", "0.6"]),
    "crop0.2": ("harder crops: 20-100% of the image's area instead of 35-100%", ["--min-crop-area", "0.2"]),
    "smoothing": ("label smoothing 0.1", ["--label-smoothing", "0.1"]),
    "zero-init": ("zero-initialised residual branches", ["--zero-init-residual"]),
    "ema": ("an EMA of the weights (decay 0.995), evaluated", ["--polyak-decay", "0.995"]),
    "lr0.05": ("peak lr 0.05 (half the recipe's)", ["--lr", "0.05"]),
    "lr0.2": ("peak lr 0.2 (twice the recipe's)", ["--lr", "0.2"]),
    "batch32": ("batch 32 at peak lr 0.05 (the same lr per image, twice the steps)",
                ["--batch-size", "32", "--lr", "0.05"]),
    "wd1e-4": ("weight decay 1e-4 instead of 5e-4", ["--weight-decay", "1e-4"]),
    "late-resize": ("the size steps later: 64 px to 50%, 96 px to 85% of the run, then 128 px",
                    ["--size-schedule", "0.5@0,0.75@0.5,1@0.85"]),
    "eval-end": ("validation only at the end (without mid-run points on the curve)", ["--eval-from", "0.99"]),
}  # fmt: skip
ALL = [f"fast:{s}" for s in SEEDS] + ["cpu", "tv-onecycle"]
ALL += [f"without-{t}" for t in TRICKS] + [f"with-{v}" for v in VARIANTS]


def ablation(entry: str) -> tuple[str, str, int] | None:
    """("without" or "with", the trick or variant, the seed) of an ablation entry, else None:
    `without-TRICK` and `with-VARIANT` are seed 0, `without-TRICK:SEED` another seed (compared with
    `fast:SEED`)."""
    kind, _, rest = entry.partition("-")
    name, _, seed = rest.partition(":")
    table = {"without": TRICKS, "with": VARIANTS}.get(kind)
    if table is None or name not in table or not (seed == "" or seed.isdigit()):
        return None
    return kind, name, int(seed or 0)


def known(entry: str) -> bool:
    return entry in ALL or entry.startswith("fast:") or ablation(entry) is not None


def entry_args(entry: str, model: str) -> tuple[str, str, int, list[str]]:
    """(network, recipe, seed, extra options) of an `ilsvrc train` entry."""
    if entry == "cpu":
        return "alexnet", "cpu", 0, []
    if entry.startswith("fast:"):
        return model, "fast", int(entry.split(":")[1]), []
    found = ablation(entry)
    assert found is not None, entry
    kind, name, seed = found
    return model, "fast", seed, (TRICKS if kind == "without" else VARIANTS)[name][1]


def run_ilsvrc(data: Path, minutes: float, out: Path, model: str, recipe: str, seed: int,
               extra: list[str]) -> list[dict]:  # fmt: skip
    """`ilsvrc train` in a fresh process with a cold cache; its metrics lines as curve rows."""
    cache = Path(tempfile.mkdtemp(prefix="ilsvrc-cache-"))  # its build counts in the budget
    cmd = [sys.executable, "-m", "ilsvrc", "train", model, "--recipe", recipe, "--data", str(data),
           "--time-limit", f"{minutes:.3f}", "--epochs", "100", "--seed", str(seed), "--out", str(out),
           *extra]  # fmt: skip
    log("$ " + " ".join(cmd))
    start = time.perf_counter()
    try:
        # its log to stderr: stdout is for the results
        subprocess.run(cmd, check=True, env={**os.environ, "ILSVRC_CACHE_DIR": str(cache)}, stdout=sys.stderr)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    wall = (time.perf_counter() - start) / 60
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [
        {
            "minutes": m["seconds"] / 60,
            "top1": 1 - m["val_top1_error"],
            "epoch": m["epoch"],
            "images_per_s": m["images_per_s"],
            "image_size": m.get("image_size"),
            "wall": wall,
        }
        for m in lines
        if m["val_top1_error"] is not None
    ]  # a line before the recipe's eval_from has no validation error


def run_entry(entry: str, data: Path, minutes: float, out: Path, model: str) -> list[dict]:
    """The curve of one entry: read back from out/ENTRY/rows.json if it finished before, else run."""
    folder = out / entry.replace(":", "-s")
    done = folder / "rows.json"
    if done.exists():
        log(f"{entry}: finished before, read from {done}")
        return json.loads(done.read_text())
    if folder.exists():  # an interrupted entry starts again: its clock cannot be resumed fairly
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if entry == "tv-onecycle":
        from benchmarks.imagenette import run_torchvision

        rows = run_torchvision(data, minutes, "onecycle", 0)
    else:
        network, recipe, seed, extra = entry_args(entry, model)
        rows = run_ilsvrc(data, minutes, folder / "run", network, recipe, seed, extra)
    done.write_text(json.dumps(rows, indent=1))
    return rows


# the ways `paired` evaluates a seed's last checkpoint: (name, --weights, flips); the last two only for a
# run that kept an EMA of its weights. The first that applies is what the recipe's run ends with.
VIEWS = (("EMA of the weights, with flips", "averaged", True),
         ("EMA of the weights, without flips", "averaged", False),
         ("the optimizer's own weights, with flips", "trained", True),
         ("the optimizer's own weights, without flips", "trained", False))  # fmt: skip


def averages(run: Path) -> bool:
    """Whether the run in `run` kept an EMA of its weights (its recipe's polyak_decay, as saved)."""
    return bool(json.loads((run / "config.json").read_text())["recipe"].get("polyak_decay"))


def paired(entry: str, data: Path, out: Path) -> dict[str, float]:
    """The last checkpoint of a `fast:SEED` run evaluated each way of `VIEWS` that applies, after its
    budget: what the flips (and the EMA, when the run kept one) bought on the very same weights, free of
    the seed-to-seed spread that one-run ablations carry. Read back from out/ENTRY/paired.json once done."""
    folder = out / entry.replace(":", "-s")
    done = folder / "paired.json"
    if done.exists():  # (runs before the recipe dropped its EMA named the first view "... (the recipe)")
        return {k.removesuffix(" (the recipe)"): v for k, v in json.loads(done.read_text()).items()}
    found = {}
    ema = averages(folder / "run")
    for name, weights, flips in VIEWS:
        if weights == "averaged" and not ema:
            continue
        flip = "--tta-flip" if flips else "--no-tta-flip"
        cmd = [sys.executable, "-m", "ilsvrc", "eval", str(folder / "run"), "--data", str(data),
               "--weights", weights, flip, "--format", "json"]  # fmt: skip
        log("$ " + " ".join(cmd))
        result = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        found[name] = 1 - json.loads(result.stdout)["top1_error"]
    done.write_text(json.dumps(found, indent=1))
    return found


def plan(out: Path, minutes: float | None, at_rate: float | None, rate: float | None = None,
         fixed: float | None = None) -> dict:  # fmt: skip
    """The budget of the benchmark in `out`: measured (or `rate`, measured already) and fixed the first
    time, read back after. `fixed`: that many minutes whatever the rate (the quick case)."""
    path = out / "plan.json"
    if path.exists():
        saved = json.loads(path.read_text())
        for name, given in (("minutes", minutes), ("at_rate", at_rate)):
            if given is not None and given != saved[name]:
                sys.exit(f"{out} was planned with --{name.replace('_', '-')} {saved[name]:g}; give that or "
                         "another --out")  # fmt: skip
        log(f"budget from {path}: {saved['budget']:.1f} min (rate {saved['rate']:.0f} GFLOP/s then)")
        return saved
    rate = rate or matmul_rate()
    minutes, at_rate = minutes or 20.0, at_rate or 192.0
    if fixed is not None:  # so many minutes here: as if asked at this machine's own rate
        minutes, at_rate = fixed, rate
    saved = {"minutes": minutes, "at_rate": at_rate, "rate": rate, "budget": minutes * at_rate / rate,
             "when": utc_stamp(), "machine": machine()}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1))
    log(
        f"matrix product {rate:.0f} GFLOP/s: {minutes:g} min at {at_rate:.0f} GFLOP/s, so "
        f"{saved['budget']:.1f} min here"
    )
    return saved


def _pct(values: list[float]) -> str:
    """'86.1%' for one value; 'mean 86.1% (sd 0.4, 85.7-86.5)' for several."""
    if len(values) == 1:
        return f"{100 * values[0]:.1f}%"
    mean, sd, lo, hi = (100 * f(values) for f in (statistics.mean, statistics.stdev, min, max))
    return f"{mean:.1f}% (sd {sd:.1f}, {lo:.1f}-{hi:.1f})"


def label(entry: str, model: str) -> str:
    if entry.startswith("fast:"):
        return f"ilsvrc train {model} --recipe fast, seed {entry.split(':')[1]}"
    if entry == "cpu":
        return "ilsvrc train alexnet --recipe cpu"
    if entry == "tv-onecycle":
        return "torchvision-style loop, alexnet, one-cycle (as --recipe cpu)"
    return f"fast, {entry}"


def sections(curves: dict[str, list[dict]], budget: dict, model: str, png: Path | None,
             pairs: dict[str, dict[str, float]] | None = None) -> list[Section]:  # fmt: skip
    """The time-to-accuracy table (the seeds together), the ablation table, and the seeds' last weights
    evaluated four ways (`pairs`, from `paired`)."""
    columns = ["entry", "runs", "best val top-1", "last val top-1", "epochs", "minutes used"]
    main = Section(f"`--recipe fast` on Imagenette: {budget['budget']:.1f} minutes (issue 16)", columns)
    seeds = [e for e in curves if e.startswith("fast:")]
    groups = ([(f"ilsvrc train {model} --recipe fast", seeds)] if seeds else []) + [
        (label(e, model), [e]) for e in ("cpu", "tv-onecycle") if e in curves]  # fmt: skip
    for name, entries in groups:
        rows = [curves[e] for e in entries]
        main.rows.append([name, str(len(rows)), _pct([max(r["top1"] for r in c) for c in rows]),
                          _pct([c[-1]["top1"] for c in rows]),
                          ", ".join(f"{c[-1]['epoch']:g}" for c in rows),
                          ", ".join(f"{c[-1].get('wall', c[-1]['minutes']):.1f}" for c in rows)])  # fmt: skip
    if len(seeds) >= 3:  # the target is over three seeds
        last = [curves[e][-1]["top1"] for e in seeds]  # what the run ends with, not its best epoch
        what = f"`--recipe fast` at least 85% val top-1 at the end of the budget, {len(last)} seeds (mean)"
        measured = f"mean {100 * statistics.mean(last):.1f}%, lowest {100 * min(last):.1f}%"
        main.target(what, statistics.mean(last) >= 0.85, measured)
    main.notes.append(
        f"Budget: {budget['minutes']:g} minutes at {budget['at_rate']:.0f} GFLOP/s; this machine's fp32 "
        f"4096^3 matrix product ran at {budget['rate']:.0f} GFLOP/s ({budget['when']}; {budget['machine']}), "
        "so "
        f"{budget['budget']:.1f} minutes of wall-clock time for each entry, the decoded-image cache built "
        'inside it. Several runs: mean (standard deviation, lowest-highest). "Minutes used": the whole '
        "process for `ilsvrc train` (start-up, cache build, training, evaluations)."
        + (f" Curves: [{png.name}]({os.path.relpath(png, HERE)})." if png is not None else "")
    )
    tricks = Section("What each trick of `--recipe fast` bought: the recipe with it taken out, same budget",
                     ["trick", "seeds", "val top-1 with it", "without it", "what it bought",
                      "epochs with it, without"])  # fmt: skip
    compared: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (kind, name) -> (with, without)
    epochs: dict[tuple[str, str], list[str]] = {}  # (kind, name) -> "with, without" of each seed
    for entry in curves:
        found = ablation(entry)
        if found is None or f"fast:{found[2]}" not in curves:
            continue
        kind, name, seed = found
        other, recipe = curves[entry][-1]["top1"], curves[f"fast:{seed}"][-1]["top1"]
        pair = (recipe, other) if kind == "without" else (other, recipe)
        compared.setdefault((kind, name), []).append(pair)
        fitted = [curves[e][-1]["epoch"] for e in (entry, f"fast:{seed}")]
        fitted = fitted[::-1] if kind == "without" else fitted
        epochs.setdefault((kind, name), []).append(", ".join(f"{x:.1f}" for x in fitted))
    for (kind, name), seen in compared.items():
        what = (TRICKS if kind == "without" else VARIANTS)[name][0]
        flag = "" if kind == "without" else " (not in the recipe: added)"
        on, off = [p[0] for p in seen], [p[1] for p in seen]
        tricks.rows.append([what + flag, str(len(seen)), _pct(on), _pct(off),
                            _points([a - b for a, b in seen]), "; ".join(epochs[kind, name])])  # fmt: skip
    kinds = {kind for kind, _ in compared}
    if kinds == {"with"}:
        tricks.title = "Variants of `--recipe fast`, added to it: same budget"
    elif kinds == {"with", "without"}:
        tricks.title = (
            "What each trick of `--recipe fast` bought, taken out of it or added to it: same budget"
        )
    tricks.notes.append(
        'Last val top-1 of each run; "with it" is `fast:SEED`, the recipe\'s run of the same seed, for the '
        "tricks the recipe has, and what it bought is the mean of each seed's own difference. One seed: a "
        "difference smaller than the seeds' spread in the table above is not a measured effect. The epochs "
        "each run fitted in the budget (with it, without it) show a second confound: the same recipe's speed "
        "varies from one run to the next on one machine, so a run that met a slower machine trained fewer "
        "epochs for a reason that is not its setting. A batch-size schedule is not in the recipe (not "
        "implemented: nothing measured)."
    )
    same = paired_section(curves, pairs or {})
    return [main] + ([tricks] if tricks.rows else []) + ([same] if same is not None else [])


def paired_section(curves: dict[str, list[dict]], pairs: dict[str, dict[str, float]]) -> Section | None:
    """The seeds' last checkpoints evaluated each way all of them were (`paired`): each view's mean over
    the seeds, and the paired differences that say what the flips, and the EMA when the runs kept one,
    bought. The recipe's view is the first of `VIEWS` they all have."""
    if not pairs:
        return None
    seeds = sorted(pairs)
    names = [v[0] for v in VIEWS if all(v[0] in pairs[e] for e in seeds)]
    ema = names[0] == VIEWS[0][0]
    title = "What the EMA and the test-time flips bought" if ema else "What the test-time flips bought"
    same = Section(f"{title}, on the same weights", ["evaluated", "val top-1", "against the recipe's"])
    recipe = [pairs[e][names[0]] for e in seeds]
    for name in names:
        values = [pairs[e][name] for e in seeds]
        gap = [v - r for v, r in zip(values, recipe)]
        first = name == names[0]
        shown = name + (" (the recipe)" if first else "")
        same.rows.append([shown, _pct(values), "" if first else _points(gap)])
    flips = [pairs[e][names[0]] - pairs[e][names[1]] for e in seeds]
    bought = f"the flips bought {_points(flips)}"
    if ema:
        bought += f" and the EMA {_points([pairs[e][names[0]] - pairs[e][names[2]] for e in seeds])}"
    own = [curves[e][-1]["top1"] - pairs[e][names[0]] for e in seeds if e in curves]
    weights = "--weights averaged|trained " if ema else ""
    same.notes.append(
        f"The last checkpoint of each of the {len(seeds)} `--recipe fast` runs above ({', '.join(seeds)}), "
        f"evaluated after its budget by `ilsvrc eval RUN {weights}--tta-flip|--no-tta-flip`. "
        f"On the same weights, {bought} "
        "(paired differences: mean, and sd and range over the seeds when more than one), free of the spread "
        "between runs that the one-seed ablations above carry. A check: the recipe's view as `ilsvrc eval` "
        f"measures it (from the JPEG files) against the run's own last evaluation (from the decoded-image "
        f"cache, the same pixels): {_points(own)}."
    )
    return same


def _points(values: list[float]) -> str:
    """'+0.4 points' for one difference; '+0.4 points (sd 0.2, +0.1 to +0.6)' for several. A difference
    that rounds to zero reads +0.0, whichever its sign."""
    mean = _tenths(statistics.mean(values))
    if len(values) == 1:
        return f"{mean:+.1f} points"
    sd, lo, hi = (_tenths(f(values)) for f in (statistics.stdev, min, max))
    return f"{mean:+.1f} points (sd {sd:.1f}, {lo:+.1f} to {hi:+.1f})"


def _tenths(fraction: float) -> float:
    """A fraction in percentage points to one decimal, -0.0 made +0.0."""
    return round(100 * fraction, 1) + 0.0


def plot(curves: dict[str, list[dict]], path: Path, budget: dict, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4), constrained_layout=True)
    colours = {"cpu": "tab:orange", "tv-onecycle": "tab:grey"}
    for entry, rows in curves.items():
        if ablation(entry) is not None:
            continue
        seed = entry.startswith("fast:")
        first = entry == min((e for e in curves if e.startswith("fast:")), default="")
        name = f"ilsvrc train {model} --recipe fast (each seed)" if seed else label(entry, model)
        ax.plot([r["minutes"] for r in rows], [100 * r["top1"] for r in rows], "-o", ms=3,
                color=colours.get(entry, "tab:blue"), label=name if first or not seed else None)  # fmt: skip
    ax.axvline(budget["budget"], color="grey", ls=":", lw=1, label=f"budget, {budget['budget']:.1f} min")
    ax.axhline(85, color="tab:green", ls="--", lw=0.8, label="target, 85%")
    ax.set(xlabel="wall-clock minutes (cache build and evaluations included)", ylabel="val top-1 (%)",
           title=f"Imagenette, 2 CPU cores (fp32 matrix product {budget['rate']:.0f} GFLOP/s)",
           ylim=(0, 100), xlim=(0, None))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(data: Path, entries: list[str], out: Path, model: str, minutes: float | None = None,
        at_rate: float | None = None, png: Path | None = None, rate: float | None = None,
        fixed: float | None = None) -> list[Section]:  # fmt: skip
    """Every entry (finished ones read back), the curves PNG, and the two tables."""
    unknown = [e for e in entries if not known(e)]
    if unknown:
        sys.exit(f"unknown entries {', '.join(unknown)}; choose among {', '.join(ALL)}")
    budget = plan(out, minutes, at_rate, rate, fixed)
    curves = {e: run_entry(e, data, budget["budget"], out, model) for e in entries}
    pairs = {e: paired(e, data, out) for e in entries if e.startswith("fast:")}  # outside the budgets
    if png is not None:
        plot(curves, png, budget, model)
    return sections(curves, budget, model, png, pairs)


def case(data: Path, quick: bool, rate: float) -> list[Section]:
    """`python -m benchmarks --only fast`: every entry in runs/bench-fast (hours; resumable: finished
    entries are read back), the curves in docs/fast-imagenette.png. With --quick, `quick_case`."""
    if quick:
        return quick_case(data, rate)
    png = HERE.parent / "docs" / "fast-imagenette.png"
    return run(data, ALL, Path("runs") / "bench-fast", "resnet18", png=png, rate=rate)


def quick_case(data: Path, rate: float | None = None) -> list[Section]:
    """The fast recipe and one ablation, 45 seconds each (with the processes' start-up, under 3 minutes
    in all on a quiet machine), on 40 training and 10 validation images of each class (linked, not
    copied), in a temporary folder: the code runs, not the target."""
    root = Path(tempfile.mkdtemp(prefix="ilsvrc-fast-quick-"))
    try:
        subset = root / "data"
        for split, n in (("train", 40), ("val", 10)):
            for folder in sorted((data / split).iterdir()):
                (subset / split / folder.name).mkdir(parents=True)
                for image in sorted(folder.iterdir())[:n]:
                    (subset / split / folder.name / image.name).symlink_to(image.resolve())
        found = run(subset, ["fast:0", "without-flip"], root / "runs", "resnet18", rate=rate, fixed=0.75)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for s in found:
        s.title += " (quick: 400 training images, 45 s each: the code runs, not the target)"
    return found


def curves_png(given: Path | None, entries: list[str]) -> Path | None:
    """Where the curves go: `given`, else the project's picture only for a run of all three seeds."""
    if given is not None:
        return given
    seeds = all(f"fast:{s}" in entries for s in SEEDS)
    return HERE.parent / "docs" / "fast-imagenette.png" if seeds else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--entries", default=",".join(ALL), help=f"comma-separated, among {', '.join(ALL)}")
    parser.add_argument("--minutes", type=float, help="budget at --at-rate (default 20)")
    parser.add_argument("--at-rate", type=float, help="GFLOP/s the --minutes are for (default 192)")
    parser.add_argument("--model", default="resnet18", help="the fast recipe's network (default resnet18)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench-fast")
    parser.add_argument(
        "--png",
        type=Path,
        help="the curves (default: docs/fast-imagenette.png when the "
        "entries hold the recipe's three seeds; none otherwise, so a few extra entries leave "
        "the project's picture alone)",
    )
    parser.add_argument("--write", type=Path, help="append the tables to this file (benchmarks/RESULTS.md)")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        sys.exit(f"no Imagenette at {args.data}: pass --data")
    entries = [e.strip() for e in args.entries.split(",") if e.strip()]
    found = run(
        args.data, entries, args.out, args.model, args.minutes, args.at_rate, curves_png(args.png, entries)
    )
    command = "python benchmarks/fast.py" + ("" if entries == ALL else f" --entries {','.join(entries)}")
    text = f"## Fastest to accuracy on a CPU (issue 16)\n\nCommand: `{command}`; {utc_stamp()}.\n\n"
    text += "\n".join(s.markdown() for s in found)
    publish(text, args.write)


if __name__ == "__main__":
    main()
