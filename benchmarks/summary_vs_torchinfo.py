"""`ilsvrc summary vgg16` against torchinfo's summary of torchvision's vgg16, each as a whole process.

What a user waits for at the prompt: interpreter start, imports, analysis, printing. Runs are
interleaved (ours, theirs, ours, ...) so that both see the same machine load; the median is reported.

    python benchmarks/summary_vs_torchinfo.py [--runs 7] [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

OURS = [sys.executable, "-m", "ilsvrc", "summary", "vgg16"]
THEIRS = [
    sys.executable,
    "-c",
    "import torch, torchvision, torchinfo; "
    "torchinfo.summary(torchvision.models.vgg16(), input_size=(1, 3, 224, 224), device='cpu')",
]
TARGET_SECONDS = 0.3  # issue 2: `ilsvrc summary vgg16` under 0.3 s as a whole process


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()

    timed(OURS), timed(THEIRS)  # warm the file cache for both
    ours, theirs = [], []
    for i in range(args.runs):
        ours.append(timed(OURS))
        theirs.append(timed(THEIRS))
        print(f"run {i + 1}/{args.runs}: ilsvrc {ours[-1]:.3f} s, torchinfo {theirs[-1]:.3f} s", flush=True)
    mo, mt = statistics.median(ours), statistics.median(theirs)
    lines = [
        "## `ilsvrc summary vgg16` against torchinfo, whole process",
        "",
        f"Command: `python benchmarks/summary_vs_torchinfo.py --runs {args.runs}`; "
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "| | median | min | max |",
        "|---|---:|---:|---:|",
        f"| `ilsvrc summary vgg16` | {mo:.3f} s | {min(ours):.3f} s | {max(ours):.3f} s |",
        f"| torchinfo.summary(torchvision vgg16) | {mt:.3f} s | {min(theirs):.3f} s | {max(theirs):.3f} s |",
        "",
        f"ilsvrc is {mt / mo:.1f}x faster; target under {TARGET_SECONDS} s: "
        f"{'met' if mo < TARGET_SECONDS else 'NOT met'} ({mo:.3f} s).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
