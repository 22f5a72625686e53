"""Cost growth: time and peak memory of a training step against batch size and input size, for the zoo
networks, beside the analyzer's predicted training memory.

Each point runs in a fresh process (`python benchmarks/costs.py NAME BATCH SIZE`), so that one
network's memory does not stay in the next one's figure. The process builds the model and its SGD
optimizer, takes one warm-up step (gradients and momentum buffers now exist), resets the kernel's
record of its peak resident memory (`/proc/self/clear_refs`, 5), takes two timed steps and reads the
new peak (VmHWM). Measured training memory = that peak minus the resident memory before the model was
built; predicted = `analyze(...).memory()["training_total"]` (weights, gradients and momentum, the
input batch, every activation kept for the backward pass, and the matrix products' workspace;
docs/conventions.md).

The processes run with glibc's mmap threshold fixed at 128 KiB (`MALLOC_MMAP_THRESHOLD_`, and
ILSVRC_MALLOC=default so that building the model leaves it there): by default glibc raises it as a
program frees large blocks, up to 32 MiB, and then keeps freed blocks below it resident, so the peak
would depend on the order of allocations, not on what the program holds. Each network's largest
batch is also measured with the allocator as `ilsvrc` sets it (`keep_freed_memory`: every freed block
kept for reuse), to show that slack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {"alexnet": ([1, 8], [163]), "vgg11": ([1, 2], [112])}
FULL_BATCHES = {"alexnet": [1, 8, 32], "zfnet": [1, 8, 32], "vgg": [1, 4, 8]}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(name: str, batch: int, size: int) -> dict:
    """One point, in this process: seconds per training step, measured and predicted bytes."""
    import torch
    from torch.nn import functional as F

    import ilsvrc

    torch.manual_seed(0)
    before = _rss()
    spec = ilsvrc.get_spec(name).with_num_classes(1000)
    model = ilsvrc.create_model(spec, input_size=size).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size to the current one
    times = []
    for _ in range(2):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    predicted = ilsvrc.analyze(spec, (3, size, size), batch=batch).memory()["training_total"]
    return {"network": name, "batch": batch, "size": size, "seconds": min(times),
            "measured_bytes": _peak() - before, "predicted_bytes": predicted}  # fmt: skip


def grid(quick: bool) -> list[tuple[str, int, int]]:
    """(network, batch, input size) points: batch sizes at the network's own input, then input sizes."""
    import ilsvrc

    if quick:
        names = list(QUICK)
    else:
        names = [n for n in ilsvrc.list_models() if not n.endswith("-lecture")]
    points = []
    for name in names:
        default = ilsvrc.get_spec(name).input_shape[1]
        family = "alexnet" if name.startswith("alexnet") else "zfnet" if name.startswith("zfnet") else "vgg"
        batches, sizes = (
            QUICK[name] if quick else (FULL_BATCHES[family], [default * 5 // 8, default * 3 // 4])
        )
        points += [(name, b, default) for b in batches]
        points += [(name, batches[1], s) for s in sizes if s != default]
    return points


def run(quick: bool) -> list[dict]:
    from harness import log

    points = grid(quick)
    largest: dict[str, int] = {}
    for name, batch, _ in points:
        largest[name] = max(largest.get(name, 0), batch)
    results = []
    for i, (name, batch, size) in enumerate(points):
        r = _child(name, batch, size, {"MALLOC_MMAP_THRESHOLD_": "131072", "ILSVRC_MALLOC": "default"})
        if r is None:
            log(f"  cost growth {i + 1}/{len(points)}: {name} b{batch} {size}px failed")
            continue
        if not quick and batch == largest[name] and size == _default_size(name):
            default = _child(name, batch, size, {})
            r["measured_default_malloc_bytes"] = default["measured_bytes"] if default else None
        results.append(r)
        log(f"  cost growth {i + 1}/{len(points)}: {name} batch {batch} at {size} px: "
            f"{r['seconds']:.2f} s, {r['measured_bytes'] / 2**20:.0f} MiB measured, "
            f"{r['predicted_bytes'] / 2**20:.0f} MiB predicted")  # fmt: skip
    return results


def _default_size(name: str) -> int:
    import ilsvrc

    return ilsvrc.get_spec(name).input_shape[1]


def _child(name: str, batch: int, size: int, env: dict[str, str]) -> dict | None:
    cmd = [sys.executable, str(Path(__file__)), name, str(batch), str(size)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(results: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    names = sorted({r["network"] for r in results}, key=lambda n: [x["network"] for x in results].index(n))
    cmap = plt.get_cmap("tab20")
    for k, name in enumerate(names):
        own = [r for r in results if r["network"] == name]
        default = max(r["size"] for r in own)
        by_batch = sorted((r for r in own if r["size"] == default), key=lambda r: r["batch"])
        colour = cmap(k % 20)
        axes[0].plot([r["batch"] for r in by_batch], [r["seconds"] for r in by_batch], "o-", color=colour,
                     label=name, ms=4)  # fmt: skip
        axes[1].plot([r["batch"] for r in by_batch], [r["measured_bytes"] / 2**30 for r in by_batch], "o-",
                     color=colour, ms=4)  # fmt: skip
        axes[1].plot([r["batch"] for r in by_batch], [r["predicted_bytes"] / 2**30 for r in by_batch], ":",
                     color=colour)  # fmt: skip
    for ax, title, unit in (
        (axes[0], "Training step time at each network's input size", "seconds"),
        (axes[1], "Training memory: measured (solid) and predicted (dotted)", "GiB"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("batch size")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7, ncol=2)
    measured = [r["measured_bytes"] / 2**30 for r in results]
    predicted = [r["predicted_bytes"] / 2**30 for r in results]
    ax = axes[2]
    ax.scatter(predicted, measured, s=14, c=[cmap(names.index(r["network"]) % 20) for r in results])
    top = max(measured + predicted) * 1.1
    lo = min(measured + predicted) * 0.8
    ax.plot([lo, top], [lo, top], "k-", lw=0.8, label="measured = predicted")
    ax.fill_between([lo, top], [lo * 0.75, top * 0.75], [lo * 1.25, top * 1.25], color="grey", alpha=0.15,
                    label="within 25%")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("predicted by the analyzer (GiB)")
    ax.set_ylabel("measured peak (GiB)")
    ax.set_title("Every point: predicted against measured training memory", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
