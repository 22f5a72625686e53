"""`ilsvrc summary MODEL` as a whole process against torchinfo's summary of the same torchvision network.

What a user waits for at the prompt: a fresh interpreter, the imports, the analysis of 152 layers
with weights (and the whole tree of 500-odd rows), the printing. Each command runs as the shell would
run it (`ilsvrc` is the console script beside this interpreter), the two taking turns run after run
(ours, theirs, ours, ...) so that both see the same machine load; the median of the runs is reported
with the range, beside the machine's matrix-product rate at the start and at the end. Goals: issue 12,
`ilsvrc summary resnet152` (the zoo's spec) under 0.3 s; issue 13, `ilsvrc summary torchvision:resnet50`
(torchvision's module traced on the meta device) beside torchinfo, which runs the model. If the zoo
goal is missed, `python -X importtime` of one run says where the time goes.

    python benchmarks/summary_speed.py [--model resnet152 | --model torchvision:resnet50] [--runs 9]
                                       [--write benchmarks/RESULTS.md]

torchinfo is in the `bench` extra (`pip install -e .[bench]`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # `harness` as a plain module, as the other benchmarks do

from harness import log, machine, matmul_rate, publish, utc_stamp  # noqa: E402

TARGET_SECONDS = {"resnet152": 0.3}  # issue 12: `ilsvrc summary resnet152` under 0.3 s, whole process
MODEL = "resnet152"  # set by --model: a zoo name, or torchvision:NAME


def ours() -> list[str]:
    """The console script beside this interpreter, as the shell runs it; `python -m ilsvrc` if absent."""
    script = shutil.which("ilsvrc", path=str(Path(sys.executable).parent))
    return [script, "summary", MODEL] if script else [sys.executable, "-m", "ilsvrc", "summary", MODEL]


def network() -> str:
    """torchvision's name of the network: resnet152, or NAME of torchvision:NAME."""
    return MODEL.split(":", 1)[-1]


def theirs() -> list[str]:
    return [
        sys.executable,
        "-c",
        "import torch, torchvision, torchinfo; "
        f"torchinfo.summary(torchvision.models.{network()}(), input_size=(1, 3, 224, 224), device='cpu')",
    ]


BARE = [sys.executable, "-c", "pass"]  # the interpreter's own start, for the breakdown

# A default Python caches compiled modules (.pyc) and so does a user's shell; some environments
# (this project's machines among them) set PYTHONDONTWRITEBYTECODE, which recompiles every module of
# every run. The commands run with it unset, both alike, and the report says which setting was found.
FOUND_NO_BYTECODE = os.environ.get("PYTHONDONTWRITEBYTECODE")
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def in_process(runs: int = 5) -> float:
    """Median seconds of the summary's own work in this process (imports done): analysis and text."""
    from ilsvrc.cli import main as cli

    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli(["summary", MODEL]) == 0
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run warms the zoo's caches


def import_times(cmd: list[str], top: int = 12) -> tuple[list[tuple[str, float]], float]:
    """`python -X importtime` of one run: the `top` modules by cumulative import time (seconds, each
    counted with everything it imports) among those our package or its dependencies import at the
    top level, and the total import time of the run."""
    argv = [sys.executable, "-X", "importtime", "-m", "ilsvrc", *cmd[-2:]]
    err = subprocess.run(argv, check=True, capture_output=True, text=True, env=ENV).stderr
    rows = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((m.group(4).strip(), int(m.group(2)) / 1e6, len(m.group(3))))
    total = sum(cum for _, cum, indent in rows if indent <= 1)
    tops = sorted(((name, cum) for name, cum, indent in rows if indent <= 1), key=lambda r: -r[1])
    return tops[:top], total


def main() -> None:
    global MODEL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL, help="a zoo name or torchvision:NAME (default resnet152)")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    MODEL = args.model
    began = time.time()

    import ilsvrc

    cmd, other = ours(), theirs()
    log(f"ilsvrc from {Path(ilsvrc.__file__).parent}; command: {' '.join(cmd)}")
    rate_start = matmul_rate()
    for c in (cmd, other, BARE):  # warm the file cache
        timed(c)
    mine, them, bare = [], [], []
    for i in range(args.runs):
        mine.append(timed(cmd))
        them.append(timed(other))
        bare.append(timed(BARE))
        log(f"run {i + 1}/{args.runs}: ilsvrc {mine[-1]:.3f} s, torchinfo {them[-1]:.3f} s, "
            f"bare python {bare[-1]:.3f} s")  # fmt: skip
    rate_end = matmul_rate()
    work = in_process()
    mo, mt, mb = (statistics.median(x) for x in (mine, them, bare))
    target = TARGET_SECONDS.get(MODEL)
    met = target is None or mo < target
    issue = "issue 12" if MODEL in TARGET_SECONDS else "issue 13"

    shown = " ".join(["ilsvrc", *cmd[-2:]])
    lines = [
        f"## `{shown}` against torchinfo, whole process ({issue})",
        "",
        f"Command: `python benchmarks/summary_speed.py --model {MODEL} --runs {args.runs}`; "
        f"{utc_stamp(began)}, "
        f"{(time.time() - began) / 60:.1f} minutes. Machine: {machine()}. Matrix-product rate "
        f"(4096^3 float32, best of 5): {rate_start:.0f} GFLOP/s at the start, {rate_end:.0f} at the end.",
        "",
        f"Each a fresh process started as the shell starts it (`{shown}`: the console script; torchinfo: "
        f"`python -c` building torchvision's {network()} and summarising it at 1x3x224x224), the two taking "
        "turns run after run; a bare `python -c pass` beside them is the interpreter's own start. "
        "Compiled-module caching (.pyc) on, as in a default Python"
        + (
            f" (this shell had PYTHONDONTWRITEBYTECODE={FOUND_NO_BYTECODE}; unset for every command)."
            if FOUND_NO_BYTECODE
            else "."
        ),
        "",
        "| command | median | min | max |",
        "|---|---:|---:|---:|",
        f"| `{shown}` | {mo:.3f} s | {min(mine):.3f} s | {max(mine):.3f} s |",
        f"| torchinfo.summary(torchvision {network()}) | {mt:.3f} s | {min(them):.3f} s "
        f"| {max(them):.3f} s |",
        f"| `python -c pass` | {mb:.3f} s | {min(bare):.3f} s | {max(bare):.3f} s |",
        "",
        (
            f"- under {target} s: {'met' if met else '**not met**'} ({mo:.3f} s; "
            if target
            else f"- {mo:.3f} s, "
        )
        + f"{mt / mo:.1f}x faster than torchinfo"
        + (")" if target else ""),
        f"- of which the analysis and the printing, timed inside one process once its imports are done "
        f"(median of 5): {work:.3f} s; the rest is the interpreter's start and the imports",
    ]
    if not met:
        tops, total = import_times(cmd)
        log("profiled with -X importtime")
        lines += [
            "",
            f"Where the time goes (`python -X importtime -m ilsvrc {' '.join(cmd[-2:])}`, one run): "
            f"{total:.3f} s of imports in all, beside {mb:.3f} s of bare interpreter start; the rest of "
            f"the {mo:.3f} s is the analysis and the printing. The largest top-level imports, each with "
            "what it imports:",
            "",
            "| module | cumulative import s |",
            "|---|---:|",
            *[f"| `{name}` | {seconds:.3f} |" for name, seconds in tops],
        ]
    text = "\n".join(lines) + "\n"
    publish(text, args.write)


if __name__ == "__main__":
    main()
