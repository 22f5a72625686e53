"""The published AlexNet on Imagenette in 20 minutes of CPU time: `ilsvrc train` against a plain
torchvision-style loop given the same time, on the same machine, one after the other.

ilsvrc: `ilsvrc train alexnet --recipe cpu --data DATA --time-limit MINUTES` (the paper's network
with LRN and the two-GPU groups, a 10-class head, 128 px). Reference: torchvision's alexnet with a
10-class head, `ImageFolder` with PIL transforms (RandomResizedCrop(128), flips; Resize(146) and
CenterCrop(128) for validation), SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 32, 2 loader
workers, evaluated after every epoch, stopped when the next evaluation would pass the time limit.
Both curves (validation top-1 accuracy against wall-clock minutes, evaluations included) go to
RESULTS.md and a PNG.

    python benchmarks/imagenette_alexnet.py [--data ../shared/data/imagenette] [--minutes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "imagenette"


def run_ilsvrc(data: Path, minutes: float, out: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "ilsvrc", "train", "alexnet", "--recipe", "cpu", "--data", str(data),
           "--time-limit", str(minutes), "--epochs", "12", "--out", str(out)]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [{"minutes": r["seconds"] / 60, "top1": 1 - r["val_top1_error"], "epoch": r["epoch"],
             "images_per_s": r["images_per_s"]} for r in rows]  # fmt: skip


def run_torchvision(data: Path, minutes: float, seed: int = 0) -> list[dict]:
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
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    limit, start, last_eval, rows, epoch, done = minutes * 60, time.perf_counter(), 0.0, [], 0, False
    print(
        f"torchvision-style loop: {len(train_set)} train / {len(val_set)} val images, {minutes} min",
        flush=True,
    )
    while not done:
        model.train()
        seen, t0 = 0, time.perf_counter()
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            if time.perf_counter() - start + last_eval >= limit:
                done = True
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
                     "epoch": epoch, "images_per_s": ips})  # fmt: skip
        print(f"  epoch {epoch}: val top-1 {correct / total:.3f}, {ips:.0f} images/s, "
              f"{rows[-1]['minutes']:.1f} min", flush=True)  # fmt: skip
    return rows


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for label, rows in curves.items():
        ax.plot([r["minutes"] for r in rows], [100 * r["top1"] for r in rows], "-o", ms=4, label=label)
    ax.axhline(70, color="grey", ls=":", label="target 70%")
    ax.set(xlabel="wall-clock minutes (evaluations included)", ylabel="val top-1 accuracy (%)",
           title="AlexNet on Imagenette, 128 px, 2 CPU cores", ylim=(0, 100))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench-imagenette")
    parser.add_argument("--write", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        sys.exit(f"no Imagenette at {args.data}: pass --data")
    ours_dir = args.out / f"ilsvrc-{time.strftime('%Y%m%d-%H%M%S')}"
    curves = {
        "ilsvrc train alexnet --recipe cpu": run_ilsvrc(args.data, args.minutes, ours_dir),
        "torchvision-style loop (alexnet)": run_torchvision(args.data, args.minutes),
    }
    png = HERE / "imagenette_alexnet.png"
    plot(curves, png)
    best = {k: max(r["top1"] for r in v) for k, v in curves.items()}
    lines = [
        f"## AlexNet on Imagenette in {args.minutes:g} minutes (issue 3)",
        "",
        f"Command: `python benchmarks/imagenette_alexnet.py --minutes {args.minutes:g}`; "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {__import__('torch').__version__}. Curves: "
        f"[{png.name}]({png.name}).",
        "",
    ]
    for label, rows in curves.items():
        lines += [f"**{label}**: best val top-1 {100 * best[label]:.1f}%", "",
                  "| epoch | minutes | val top-1 | train images/s |", "|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {r['epoch']} | {r['minutes']:.1f} | {100 * r['top1']:.1f}% | {r['images_per_s']:.0f} |"
                  for r in rows]  # fmt: skip
        lines.append("")
    target = best["ilsvrc train alexnet --recipe cpu"] >= 0.70
    lines += [f"Target (ilsvrc at least 70% top-1 within {args.minutes:g} minutes): "
              f"{'met' if target else 'NOT met'}.", ""]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    with args.write.open("a") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
