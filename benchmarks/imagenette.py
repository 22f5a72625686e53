"""Time to accuracy on Imagenette: `ilsvrc train` against a plain torchvision-style loop, given the same
budget on the same machine, one after the other.

Machines differ, so the budget follows the machine: the fp32 4096^3 matrix product is timed first, and
`--minutes` (at `--at-rate` GFLOP/s, by default 20 minutes at 192 GFLOP/s, the machine the project's first
figures came from) becomes minutes x at_rate / measured rate of wall-clock time for every entry. The
decoded-image cache of `ilsvrc train` is built inside its budget (a cleared cache at the start).

Entries (`--entries`, comma-separated; each `NAME` or `NAME:SEED`):
- `cpu`: `ilsvrc train alexnet --recipe cpu` (the paper's AlexNet with LRN and the two-GPU groups,
  10 classes, 128 px, one-cycle SGD over the time budget);
- `fast`: `ilsvrc train MODEL --recipe fast` (`--fast-model`, default resnet18), when that recipe exists;
- `tv-onecycle`: torchvision's alexnet, ImageFolder with PIL transforms (RandomResizedCrop(128), flips;
  Resize(146) + CenterCrop(128) for validation), SGD with Nesterov momentum 0.9 and weight decay 5e-4,
  batch 32, 2 loader workers, and the same one-cycle learning rate as `--recipe cpu` (peak 0.02, planned
  over the time budget);
- `tv-constant`: the same loop at a constant learning rate of 0.01, without Nesterov (the loop of the
  first comparison).
The torchvision-style loops evaluate after every epoch and stop when the next step and evaluation would
pass the budget. Every curve (validation top-1 against wall-clock minutes, evaluations included) goes to
a PNG, and a table to RESULTS.md with the command, the machine and its matrix-product rate.

    python benchmarks/imagenette.py [--data ../shared/data/imagenette] [--entries cpu,tv-onecycle,tv-constant]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "imagenette"

from benchmarks.harness import machine, matmul_rate  # noqa: E402


def run_ilsvrc(data: Path, minutes: float, out: Path, recipe: str, model: str, seed: int) -> list[dict]:
    cache = Path(tempfile.mkdtemp(prefix="ilsvrc-cache-"))  # a cold cache: its build counts in the budget
    cmd = [sys.executable, "-m", "ilsvrc", "train", model, "--recipe", recipe, "--data", str(data),
           "--time-limit", f"{minutes:.3f}", "--epochs", "100", "--seed", str(seed),
           "--out", str(out)]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    try:
        subprocess.run(cmd, check=True, env={**os.environ, "ILSVRC_CACHE_DIR": str(cache)})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    wall = (time.perf_counter() - start) / 60
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [
        {"minutes": r["seconds"] / 60, "top1": 1 - r["val_top1_error"], "epoch": r["epoch"],
         "images_per_s": r["images_per_s"], "wall": wall}
        for r in rows
    ]  # fmt: skip


def onecycle(progress: float, peak: float) -> float:
    """`--recipe cpu`'s schedule: linear from peak/25 to peak over the first 25%, cosine to peak/1e4."""
    p = min(max(progress, 0.0), 1.0)
    if p < 0.25:
        return peak * (1 / 25 + (1 - 1 / 25) * p / 0.25)
    q = (p - 0.25) / 0.75
    return peak * (1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * q)))


def run_torchvision(data: Path, minutes: float, schedule: str, seed: int) -> list[dict]:
    import torch
    import torchvision
    from torchvision import transforms as T

    torch.manual_seed(seed)
    norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    train_tf = T.Compose([T.RandomResizedCrop(128), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val_tf = T.Compose([T.Resize(146), T.CenterCrop(128), T.ToTensor(), norm])
    train_set = torchvision.datasets.ImageFolder(str(data / "train"), train_tf)
    val_set = torchvision.datasets.ImageFolder(str(data / "val"), val_tf)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, num_workers=2,
                                               drop_last=True)  # fmt: skip
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=64, num_workers=2)
    model = torchvision.models.alexnet(num_classes=10)
    nesterov = schedule == "onecycle"
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    loss_fn = torch.nn.CrossEntropyLoss()
    limit, start, last_eval, rows, epoch, done = minutes * 60, time.perf_counter(), 0.0, [], 0, False
    steps_per_epoch = len(train_loader)
    print(f"torchvision-style loop ({schedule}): {len(train_set)} train / {len(val_set)} val images, "
          f"{minutes:.1f} min", flush=True)  # fmt: skip
    step, step_seconds = 0, 0.0
    while not done:
        model.train()
        seen, t0 = 0, time.perf_counter()
        for x, y in train_loader:
            if time.perf_counter() - start + step_seconds + last_eval >= limit:  # no room for a step
                done = True  # and the evaluation after it
                break
            if schedule == "onecycle":  # planned over the time budget, as `ilsvrc train --time-limit`
                used = (time.perf_counter() - start) / limit
                for group in opt.param_groups:
                    group["lr"] = onecycle(max(used, step / (100 * steps_per_epoch)), 0.02)
            t_step = time.perf_counter()
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step_seconds = time.perf_counter() - t_step
            seen += len(y)
            step += 1
        if seen == 0:  # the budget ended at an epoch's end: that state is evaluated already
            break
        ips = seen / (time.perf_counter() - t0)
        t1 = time.perf_counter()
        model.eval()
        correct = total = 0
        with torch.inference_mode():
            for x, y in val_loader:
                correct += int((model(x).argmax(1) == y).sum())
                total += len(y)
        last_eval = time.perf_counter() - t1
        epoch += 1
        rows.append({"minutes": (time.perf_counter() - start) / 60, "top1": correct / total,
                     "epoch": round(epoch - 1 + seen / (32 * steps_per_epoch), 3),  # epochs of steps
                     "images_per_s": ips})  # fmt: skip
        print(f"  epoch {rows[-1]['epoch']}: val top-1 {correct / total:.3f}, {ips:.0f} images/s, "
              f"{rows[-1]['minutes']:.1f} min", flush=True)  # fmt: skip
    return rows


LABELS = {
    "cpu": "ilsvrc train alexnet --recipe cpu",
    "fast": "ilsvrc train {model} --recipe fast",
    "tv-onecycle": "torchvision-style loop, alexnet, one-cycle (as --recipe cpu)",
    "tv-constant": "torchvision-style loop, alexnet, constant lr 0.01",
}


def plot(curves: dict[str, list[dict]], path: Path, minutes: float, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4), constrained_layout=True)
    for label, rows in curves.items():
        ax.plot([r["minutes"] for r in rows], [100 * r["top1"] for r in rows], "-o", ms=3, label=label)
    ax.axvline(minutes, color="grey", ls=":", lw=1)
    ax.set(xlabel="wall-clock minutes (cache build and evaluations included)",
           ylabel="val top-1 accuracy (%)",
           title=f"Imagenette, 128 px, 2 CPU cores (fp32 matrix product {rate:.0f} GFLOP/s)",
           ylim=(0, 100))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=20.0, help="budget at --at-rate (default 20)")
    parser.add_argument("--at-rate", type=float, default=192.0, help="GFLOP/s the --minutes are for")
    parser.add_argument("--entries", default="cpu,tv-onecycle,tv-constant")
    parser.add_argument("--fast-model", default="resnet18")
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench-imagenette")
    parser.add_argument("--png", type=Path, default=HERE / "imagenette.png")
    parser.add_argument("--write", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--title", default="Time to accuracy on Imagenette")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        sys.exit(f"no Imagenette at {args.data}: pass --data")
    rate = matmul_rate()
    minutes = args.minutes * args.at_rate / rate
    print(f"matrix product: {rate:.0f} GFLOP/s; budget {args.minutes:g} min at {args.at_rate:g} GFLOP/s "
          f"= {minutes:.1f} min here", flush=True)  # fmt: skip
    curves: dict[str, list[dict]] = {}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for entry in args.entries.split(","):
        name, _, seed_text = entry.partition(":")
        seed = int(seed_text or 0)
        label = LABELS[name].format(model=args.fast_model) + (f", seed {seed}" if seed_text else "")
        if name in ("cpu", "fast"):
            model = "alexnet" if name == "cpu" else args.fast_model
            out = args.out / f"{name}-{model}-s{seed}-{stamp}"
            curves[label] = run_ilsvrc(args.data, minutes, out, name, model, seed)
        else:
            curves[label] = run_torchvision(args.data, minutes, name.split("-")[1], seed)
    plot(curves, args.png, minutes, rate)
    lines = [
        f"## {args.title}",
        "",
        f"Command: `python benchmarks/imagenette.py --entries {args.entries}"
        + (f" --fast-model {args.fast_model}" if "fast" in args.entries else "")
        + f" --minutes {args.minutes:g}`; {time.strftime('%Y-%m-%d')}; {machine()}.",
        "",
        f"fp32 4096^3 matrix product: **{rate:.0f} GFLOP/s**. Budget: {args.minutes:g} minutes at "
        f"{args.at_rate:g} GFLOP/s, so **{minutes:.1f} minutes** of wall-clock time here for each entry "
        "(`ilsvrc train` builds its decoded-image cache inside it). "
        f"Curves: [{args.png.name}]({args.png.name}).",
        "",
        "| entry | best val top-1 | last val top-1 | epochs | train images/s (median) | minutes used * |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, rows in curves.items():
        ips = sorted(r["images_per_s"] for r in rows)[len(rows) // 2]
        lines.append(
            f"| {label} | {100 * max(r['top1'] for r in rows):.1f}% | {100 * rows[-1]['top1']:.1f}% | "
            f"{rows[-1]['epoch']:g} | {ips:.0f} | {rows[-1].get('wall', rows[-1]['minutes']):.1f} |"
        )
    note = "\\* for `ilsvrc train`, the whole process: start-up, cache build, training, evaluations."
    lines += ["", note, ""]
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"curves-{stamp}.json").write_text(json.dumps(curves, indent=1))
    with args.write.open("a") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
