"""Timing helpers shared by the benchmark cases: interleaved runs, the machine's matrix-product rate,
and results as Markdown.

Every comparison runs its contenders in turn, ours then the reference then ours again, so that both
see the same machine: this machine is shared, and a load that comes and goes hits both alike. The
median of the repeats is reported, with the spread.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch


def log(message: str) -> None:
    """Progress on stderr (stdout stays for the results)."""
    print(message, file=sys.stderr, flush=True)


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                label: str = "") -> dict[str, list[float]]:  # fmt: skip
    """Seconds per call of each contender, `repeats` rounds, the contenders taking turns each round."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        summary = ", ".join(f"{n} {t[-1] * 1e3:.0f} ms" for n, t in times.items())
        log(f"  {label} round {r + 1}/{repeats}: {summary}")
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def matmul_rate(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of an n x n x n float32 matrix product, the best of `repeats` (after one warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def scratch(prefix: str) -> Path:
    """A new temporary folder, removed when the process exits (decoded caches are gigabytes)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def utc_stamp(seconds: float | None = None) -> str:
    """The time `seconds` (default: now) as '2026-11-25 07:11 UTC', in UTC whatever the machine's zone."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def machine() -> str:
    import torchvision

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = open("/proc/cpuinfo").read()
        cpu += ", AVX-512" if "avx512f" in flags else ", AVX2" if "avx2" in flags else ""
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, no GPU; "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}"
    )


@dataclass
class Section:
    """One case's results: a Markdown table and what it means."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdicts: list[tuple[str, bool | None, str]] = field(default_factory=list)  # (target, met, measured)

    def target(self, what: str, met: bool | None, measured: str) -> None:
        self.verdicts.append((what, met, measured))

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.verdicts:
            lines.append("")
            for what, met, measured in self.verdicts:
                mark = {True: "met", False: "**not met**", None: "reported"}[met]
                lines.append(f"- {what}: {mark} ({measured})")
        if self.notes:
            lines.append("")
            lines += self.notes
        return "\n".join(lines) + "\n"


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def publish(text: str, write: Path | None) -> None:
    """Print a benchmark's Markdown and, with `--write FILE`, append it to FILE (RESULTS.md)."""
    print(text)
    if write:
        with write.open("a") as f:
            f.write("\n" + text)
