"""The papers' ablations on Imagenette, and an ensemble against its members (issue 15).

Runs `ilsvrc ablation NAME --data DATA --image-size 128 --epochs E -o OUT/NAME` for each ablation
asked (by default ReLU against tanh, LRN on and off, overlapping against plain pooling), then trains
`--members` AlexNets that differ by their seed and evaluates them alone and as an ensemble (`ilsvrc
eval RUN1 RUN2 RUN3`). The machine's matrix-product rate is measured before and after; the tables go
to RESULTS.md (with `--write`), the curves to docs/ablation-NAME.png. A killed benchmark resumes: run
the same command again (each ablation in OUT goes on where it stopped; finished members are kept).

    python benchmarks/ablations.py [--data ../shared/data/imagenette] [--epochs 5]
                                   [--ablations relu-vs-tanh,lrn,overlapping-pooling] [--members 3]
                                   [--target-error PERCENT]
                                   [--out runs/bench-ablations] [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import log, machine, matmul_rate, publish, utc_stamp  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "imagenette"


def cli(argv: list[str]) -> str:
    """`ilsvrc ARGV` in this process; its standard output; exits on failure."""
    from ilsvrc.cli import main as ilsvrc

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ilsvrc(argv)
    if code != 0:
        sys.exit(code)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=5, help="each variant's epochs")
    parser.add_argument("--ablations", default="relu-vs-tanh,lrn,overlapping-pooling")
    parser.add_argument("--target-error", type=float, metavar="PERCENT",
                        help="the training error to count epochs to (default: the paper's 25%%, which a "
                        "few epochs at 128 px may not reach)")  # fmt: skip
    parser.add_argument("--members", type=int, default=3, help="AlexNets of the ensemble (0: none)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench-ablations")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    began = time.time()
    rate_start = matmul_rate()
    log(f"matrix product: {rate_start:.0f} GFLOP/s")
    sections = []
    for name in [a.strip() for a in args.ablations.split(",") if a.strip()]:
        out = args.out / name
        if (out / "ablation.json").exists():
            argv = ["ablation", "--resume", str(out)]
        else:
            argv = ["ablation", name, "--data", str(args.data), "--epochs", str(args.epochs), "--image-size",
                    str(args.image_size), "-o", str(out)]  # fmt: skip
        if args.target_error is not None:
            argv += ["--target-error", f"{args.target_error:g}"]
        log(" ".join(["ilsvrc", *argv]))
        cli(argv)
        png = HERE.parent / "docs" / f"ablation-{name}.png"
        shutil.copyfile(out / "ablation.png", png)
        sections.append((out / "ablation.md").read_text().strip() + f"\n\nCurves: docs/{png.name}.")
    if args.members:
        runs = []
        for seed in range(args.members):
            run = args.out / f"member-{seed}"
            done = run / "metrics.jsonl"
            if not (run / "config.json").exists():
                cli(["train", "alexnet", "--recipe", "cpu", "--data", str(args.data), "--image-size",
                     str(args.image_size), "--epochs", str(args.epochs), "--seed", str(seed),
                     "--out", str(run)])  # fmt: skip
            elif not done.exists() or f'"epoch": {args.epochs},' not in done.read_text():
                cli(["train", "--resume", str(run)])  # a member stopped part of the way
            runs.append(str(run))
        result = json.loads(cli(["eval", *runs, "--data", str(args.data), "--format", "json"]))
        lines = ["| | top-1 % | top-5 % |", "|---|---:|---:|"]
        for seed, m in enumerate(result["members"]):
            lines.append(
                f"| alexnet, seed {seed} | {100 * m['top1_error']:.1f} | {100 * m['top5_error']:.1f} |"
            )
        e = result["ensemble"]
        lines.append(f"| ensemble of {len(runs)} (mean softmax) | {100 * e['top1_error']:.1f} | "
                     f"{100 * e['top5_error']:.1f} |")  # fmt: skip
        sections.append(f"**Ensemble** ({args.epochs} epochs each, recipe cpu, {args.image_size} px, centre "
                        f"view):\n\n" + "\n".join(lines))  # fmt: skip
    rate_end = matmul_rate()
    text = "\n".join([
        "## The papers' ablations and an ensemble on Imagenette (issue 15)",
        "",
        f"Command: `python benchmarks/ablations.py --epochs {args.epochs} --ablations {args.ablations} "
        f"--members {args.members}"
        + (f" --target-error {args.target_error:g}" if args.target_error is not None else "")
        + f"`; {utc_stamp(began)}, {(time.time() - began) / 60:.1f} minutes in all. "
        f"Machine: {machine()}. Matrix-product rate (4096^3 float32, best of 5): {rate_start:.0f} GFLOP/s "
        f"at the start, {rate_end:.0f} at the end.",
        "",
        "\n\n".join(sections),
        "",
    ])  # fmt: skip
    publish(text, args.write)


if __name__ == "__main__":
    main()
