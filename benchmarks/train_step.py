"""The training loop's step before and after its restructuring (issue 11), interleaved in one run.

BEFORE is the loop of commit 3ea4bea (a step read its loss and hits from the device, checked the loss
and, distributed, agreed with the other ranks, at every step); AFTER is this tree's (a step leaves
them on the device, read every `SYNC_EVERY` steps). Each measurement is a fresh process that runs
`ilsvrc.training.loop.train` with `stop_after_steps`, on the built-in data, with the loop's `loader`
replaced by one that hands out a batch made beforehand, so that data loading takes no time and only
the loop itself is timed: the time between two successive batches handed out is one iteration of the
loop (the step, its bookkeeping, reads and checks). Start-up, the first `WARMUP` steps and the final
evaluation are left out; the mean of the rest is the step time. The two trees take turns, several
rounds; the medians are reported, with the matrix-product rate measured in the same run.

    python benchmarks/train_step.py [--rounds 5] [--threads 1] [--before 3ea4bea] [--write FILE]

One torch thread by default: on a machine shared with other work, a second thread that the system
preempts makes every operation wait for it, which swamps what is measured here.

BEFORE's source is taken with `git archive` from the repository holding this file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WARMUP = 5  # steps left out at the start (allocations, kernels chosen on first use)

# (label, model or spec text, image size, batch, steps): AlexNet as the README trains it, and a small
# network whose step is short enough for the loop's own costs to show
TINY = """name: small
input: [3, 32, 32]
layers:
  - {type: conv, name: conv1, out_channels: 8, kernel: 3, padding: 1}
  - {type: relu, name: relu1}
  - {type: maxpool, name: pool1, kernel: 2}
  - {type: conv, name: conv2, out_channels: 16, kernel: 3, padding: 1}
  - {type: relu, name: relu2}
  - {type: maxpool, name: pool2, kernel: 2}
  - {type: flatten, name: flatten}
  - {type: linear, name: fc6, out_features: 32}
  - {type: relu, name: relu6}
  - {type: linear, name: fc8, out_features: 10}
"""
CASES = [
    ("alexnet, --recipe cpu, 128 px, batch 32, 25 steps", "alexnet", 128, 32, 25),
    ("small (2 conv + 2 fc), --recipe cpu, 32 px, batch 32, 400 steps", "TINY", 32, 32, 400),
]


def worker(model: str, size: int, batch: int, steps: int, threads: int) -> dict:
    """In the process of one tree: train `steps` steps and time the loop's iterations."""
    import torch

    import ilsvrc.training.loop as loop

    torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory() as tmp:
        if model == "TINY":
            model = str(Path(tmp) / "small.yaml")
            Path(model).write_text(TINY)
        config = loop.make_config(model, "cpu", out=str(Path(tmp) / "run"), image_size=size, batch_size=batch,
                                  workers=0, epochs=1, synthetic_classes=10, synthetic_train=steps * batch,
                                  synthetic_val=batch)  # fmt: skip
        train_set, _, _ = loop.datasets(config)
        images = torch.stack([train_set[i][0] for i in range(batch)])
        targets = torch.tensor([train_set[i][1] for i in range(batch)])
        handed: list[float] = []

        def loader(dataset, batches, config, seed):  # the loop's loader, without the loading
            for _ in batches:
                handed.append(time.perf_counter())
                yield images, targets, []

        loop.loader = loader
        loop.train(config, stop_after_steps=steps, progress=False, log=lambda *a, **k: None)
    gaps = [b - a for a, b in zip(handed, handed[1:])][WARMUP:]
    return {"seconds_per_step": sum(gaps) / len(gaps), "steps": len(gaps), "loop": loop.__file__}


def run_tree(src: Path, case: tuple, threads: int) -> dict:
    _, model, size, batch, steps = case
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = ["--worker", model, str(size), str(batch), str(steps), str(threads)]
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env,
                          check=False)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"the worker failed ({src}):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["loop"]).is_relative_to(src), (result["loop"], src)  # the tree asked for
    return result


def training_flops(case: tuple) -> float:
    """FLOPs of a training step: 3 x the forward pass's (forward, input and weight gradients)."""
    import ilsvrc

    _, model, size, batch, _ = case
    if model == "TINY":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "small.yaml"
            path.write_text(TINY)
            spec = ilsvrc.load_spec(str(path))
    else:
        spec = ilsvrc.get_spec(model).with_num_classes(10)
    return 3 * 2 * ilsvrc.analyze(spec, (3, size, size)).macs * batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5, help="turns of each tree (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--before", default="3ea4bea", help="the commit to compare with (default 3ea4bea)")
    parser.add_argument("--write", type=Path, help="append the section to this Markdown file")
    args = parser.parse_args()
    if args.worker:
        model, size, batch, steps, threads = args.worker
        print(json.dumps(worker(model, int(size), int(batch), int(steps), int(threads))))
        return
    sys.path.insert(0, str(HERE))
    import torch
    from harness import log, machine, matmul_rate, median, publish

    torch.set_num_threads(args.threads)
    started = time.time()
    rate = matmul_rate()
    log(f"matrix-product rate: {rate:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "src"], capture_output=True,
                                 check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {"before": Path(tmp) / "src", "after": ROOT / "src"}
        results: dict[str, dict[str, list[float]]] = {}
        for case in CASES:
            times: dict[str, list[float]] = {"before": [], "after": []}
            for r in range(args.rounds):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")  # alternate who goes first
                for name in order:
                    times[name].append(run_tree(trees[name], case, args.threads)["seconds_per_step"])
                log(f"  {case[0]} round {r + 1}/{args.rounds}: before {times['before'][-1] * 1e3:.2f} ms, "
                    f"after {times['after'][-1] * 1e3:.2f} ms")  # fmt: skip
            results[case[0]] = times
    rate_after = matmul_rate()
    minutes = (time.time() - started) / 60
    rows = []
    for case in CASES:
        label, batch = case[0], case[3]
        t = results[label]
        b, a = median(t["before"]), median(t["after"])
        gflops = training_flops(case) / a / 1e9
        ratios = [x / y for x, y in zip(t["before"], t["after"])]  # the two turns of each round
        paired = f"{median(ratios):.3f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        fraction = f"{gflops:,.1f} ({100 * gflops / rate:.1f}%)"
        rows.append(f"| {label} | {b * 1e3:.2f} | {a * 1e3:.2f} | {batch / b:,.0f} | {batch / a:,.0f} | "
                    f"{paired} | {fraction} |")  # fmt: skip
    command = f"python benchmarks/train_step.py --rounds {args.rounds} --threads {args.threads}"
    if args.before != "3ea4bea":
        command += f" --before {args.before}"
    lines = [
        "## Training step before and after the loop's restructuring (issue 11)",
        "",
        f"Command: `{command}`; {time.strftime('%Y-%m-%d %H:%M')} UTC, {minutes:.1f} minutes. Machine: "
        f"{machine()} (the processes measured too). Matrix-product rate (4096^3 float32, best of 5, on as "
        f"many threads): {rate:.0f} GFLOP/s at the start, "
        f"{rate_after:.0f} at the end.",
        "",
        f"Before: commit {args.before}; after: this tree. Each value is a fresh process running "
        f"`ilsvrc.training.loop.train` for the steps shown (`--max-steps`) on the built-in data, with "
        "the loop's loader replaced by one handing out a batch made beforehand (no loading): the mean "
        f"time between two batches handed out, after {WARMUP} warm-up steps, is the loop's step "
        "(forward, backward, SGD and the loop's own bookkeeping). Median of "
        f"{args.rounds} rounds, the two trees taking turns (alternating which goes first). The speed-up "
        "is before / after within each round (the two turns of a round see much the same machine): "
        "their median and range. Absolute figures move from run to run with whatever else the machine "
        "does; the turns are what makes the ratio fair.",
        "",
        "| network, recipe, input, batch, steps | before ms/step | after ms/step | before img/s "
        "| after img/s | speed-up, per round: median (range) | after GFLOP/s (fraction of matmul rate) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    publish(text, args.write)


if __name__ == "__main__":
    main()
