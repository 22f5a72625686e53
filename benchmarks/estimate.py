"""What a run will cost (issue 16, item 4): the estimate `ilsvrc train` prints after its first steps
against the time the run then took, and `ilsvrc estimate` for the papers' full ImageNet runs.

1. `ilsvrc train alexnet|resnet18 --recipe cpu --image-size 128` on Imagenette: the estimate it prints
   after 10 steps (2 of them warm-up, not timed) against what followed. The full run trains one epoch
   and compares the estimated epoch (training steps + evaluation) with the measured one; `--quick`
   stops after a few steps (`--max-steps`) on a subset of the folder (symbolic links, no cache) and
   compares the steps' estimated and measured time, and the evaluation's.
2. `ilsvrc estimate` for AlexNet, VGG-16, GoogLeNet and ResNet-50 with each recipe's epochs on
   ImageNet, on 8 of today's GPUs and on the papers' own hardware beside the time the papers report.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from harness import Section, log

NETWORKS = ("alexnet", "resnet18")
PAPERS = ("alexnet", "vgg16", "googlenet", "resnet50")
TODAY = ("v100", "a100", "h100")
QUICK_STEPS = 12  # the estimate after 10, then 2 more
QUICK_IMAGES = (64, 10)  # a class's training and validation images in --quick's subset


def _subset(data: Path, root: Path) -> Path:
    """A folder of links to the first images of each class of `data` (QUICK_IMAGES per split)."""
    for split, count in zip(("train", "val"), QUICK_IMAGES):
        for folder in sorted(p for p in (data / split).iterdir() if p.is_dir()):
            target = root / split / folder.name
            target.mkdir(parents=True)
            for image in sorted(folder.iterdir())[:count]:
                (target / image.name).symlink_to(image.resolve())
    return root


def _train(model: str, data: Path, out: Path, quick: bool) -> tuple[dict, list[dict], str]:
    from ilsvrc.cli import main as cli

    args = ["train", model, "--recipe", "cpu", "--image-size", "128", "--epochs", "1", "--data", str(data),
            "--out", str(out)]  # fmt: skip
    if quick:
        args += ["--max-steps", str(QUICK_STEPS), "--no-cache"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli(args)
    if code != 0:
        raise RuntimeError(f"ilsvrc {' '.join(args)} failed with exit code {code}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    said = next(x for x in printed.getvalue().splitlines() if x.startswith("Estimate after"))
    return lines[0]["estimate"], lines, said


def estimate_against_measured(data: Path, rate: float, quick: bool) -> Section:
    s = Section(
        "What a run will cost: the estimate `ilsvrc train` prints, against the time that followed",
        ["network", "steps", "timed", "estimated train s", "measured train s", "ratio", "estimated eval s",
         "measured eval s", "ratio", "measured rate / matmul rate"],
    )  # fmt: skip
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = _subset(data, Path(tmp) / "subset") if quick else data
        for model in NETWORKS:
            log(f"  {model}: training{' ' + str(QUICK_STEPS) + ' steps' if quick else ' one epoch'}...")
            e, lines, said = _train(model, folder, Path(tmp) / model, quick)
            line = lines[-1]
            steps = line["step"]
            est_train = steps * e["step_seconds"]  # the whole epoch's when it completed
            train_ratio = est_train / line["train_seconds"]
            eval_ratio = e["eval_seconds"] / line["eval_seconds"]
            ratios.append((model, train_ratio, eval_ratio))
            timed = f"{e['timed_steps']} after {e['after_steps']}"
            s.rows.append([model, str(steps), timed, f"{est_train:.1f}", f"{line['train_seconds']:.1f}",
                           f"{train_ratio:.2f}", f"{e['eval_seconds']:.1f}", f"{line['eval_seconds']:.1f}",
                           f"{eval_ratio:.2f}", f"{e['flops_per_s'] / 1e9 / rate:.0%}"])  # fmt: skip
            s.notes.append(f"- {model}: `{said}`")
    what = "the steps run" if quick else "the epoch"
    s.target(f"the estimated training time of {what} within 25% of the measured",
             all(0.75 <= t <= 1.25 for _, t, _ in ratios),
             ", ".join(f"{m} {t:.2f}" for m, t, _ in ratios))  # fmt: skip
    s.target("the evaluation's estimate (its FLOPs at the training steps' measured rate)", None,
             ", ".join(f"{m} {v:.2f}" for m, _, v in ratios))  # fmt: skip
    s.notes.insert(0, (
        "Imagenette at 128 px, recipe cpu (batch 32); "
        + (f"--quick: {QUICK_STEPS} steps on {QUICK_IMAGES[0]} training and {QUICK_IMAGES[1]} validation "
           "images a class, decoded each step (no cache). " if quick else "one epoch. ")
        + "Estimated train s = steps x the timed steps' mean (steps 3-10; the 2 warm-up steps are in the "
        "measured time, not in the mean); measured = the metrics line's `train_seconds` (every step, data "
        "waits included). Eval: the validation images' FLOPs at the training rate, against `eval_seconds`. "
        "The last column: the training rate the estimate measured (3 x 2 x MACs an image) over the fp32 "
        "matrix-product rate."
    ))  # fmt: skip
    return s


def papers_on_today() -> Section:
    from ilsvrc.analysis import estimate, render
    from ilsvrc.analysis.analyzer import analyze
    from ilsvrc.networks import get_spec
    from ilsvrc.training.recipes import default_recipe

    s = Section(
        "The papers' ImageNet runs on today's GPUs (`ilsvrc estimate MODEL --gpus 8`)",
        ["network", "epochs", "FLOPs", *(f"8 x {estimate.ACCELERATORS[k].name}" for k in TODAY),
         "the paper's GPUs: estimate", "the paper's GPUs: reported"],
    )  # fmt: skip
    imagenet = estimate.DATASETS["imagenet"]
    for model in PAPERS:
        epochs = default_recipe(model).epochs
        cost = estimate.RunCost.of(analyze(get_spec(model)), imagenet.train, imagenet.val, epochs)
        today = [render.duration(estimate.time_on(cost, estimate.hardware(k, 8)).run_seconds) for k in TODAY]
        paper = estimate.paper_run(model)
        theirs, reported = "-", "-"
        if paper is not None:
            compared = estimate.compare_paper(paper, cost)
            lo, hi = compared.implied_utilisation
            theirs = f"{compared.hardware.label}: {render.duration(compared.estimate.run_seconds)}"
            reported = f"{paper.days[0]:g}-{paper.days[1]:g} days ({lo:.0%}-{hi:.0%} of peak)"
        s.rows.append([model, str(epochs), render.flops(cost.run_flops), *today, theirs, reported])
    s.notes.append(
        "FLOPs = epochs x (1,281,167 x 3 x 2 x MACs + 50,000 x 2 x MACs) at 224 px (227 for AlexNet); bf16 "
        "(V100: fp16) at 25% of the dense peak, the papers' GPUs in fp32 at 50%, 8 GPUs scaling linearly: "
        "assumptions, stated in docs/estimate.md. Arithmetic only: nothing here is measured, so it is the "
        "same on any machine. GoogLeNet's 250 epochs are BVLC's Caffe solver's; the ResNet paper gives no "
        "training time."
    )
    return s


def run(data: Path, rate: float, quick: bool) -> list[Section]:
    return [estimate_against_measured(data, rate, quick), papers_on_today()]
