"""Every performance case of issue 5, each beside its reference in the same run.

    python -m benchmarks            # the full run (its time: the "Command" line of RESULTS.md's run)
    python -m benchmarks --quick    # every case, fewer repeats and points, a few minutes
    python -m benchmarks --only models,data --no-write

It prints each case as it finishes and writes it into benchmarks/RESULTS.md between the markers
`<!-- bench:start -->` and `<!-- bench:end -->` (the rest of that file is left as it is), each case in a
block of its own (`<!-- case:NAME -->` to `<!-- /case:NAME -->`) that begins with the command, the
time, the machine and the matrix-product rate of the run that measured it: `--only` replaces the
blocks of the cases it runs and keeps the others. The cost-growth plot goes to
benchmarks/cost_growth.png. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the cases import `harness` as a plain module

import cases  # noqa: E402
import costs  # noqa: E402
import estimate as estimate_case  # noqa: E402
import fast  # noqa: E402
import zoo_rates  # noqa: E402
from harness import Section, log, machine, matmul_rate, utc_stamp  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "imagenette"
CASES = ("models", "alexnet", "zoo", "data", "e2e", "analyzer", "costs", "estimate", "fast")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
GPU_NOTE = """### What a GPU run would change

Nothing here ran on a GPU (this project is lent none); the GPU path is the same code and runs on the
CPU in the tests. On a GPU: `--device cuda` moves model and batches, with pinned loader memory and
non-blocking copies, so the next batch crosses while the current one computes; channels-last (the
default) is the layout tensor cores work in, and `--amp bf16|fp16` (autocast, with a gradient scaler
for fp16) runs the convolutions and matrix products in half precision on them; `--compile`
(torch.compile) fuses ReLU, LRN and the normalisation into the kernels around them, which on this
CPU costs more time to compile (about half a minute for a small network) than a short run saves.
None of these GPU effects is measured here. The data side would then decide the speed: the decoded
cache removes JPEG decoding from every epoch, and more `--workers` would be needed to feed
thousands of images a second.
The matrix-product rate, the fractions and the ratios above are CPU figures and do not carry over.
"""


def cost_section(results: list[dict], plot: Path | None) -> Section:
    s = Section("Cost growth: a training step's time and memory against batch and input size",
                ["network", "batch", "input", "seconds per step", "measured MiB", "predicted MiB",
                 "predicted / measured"])  # fmt: skip
    within = []
    for r in results:
        ratio = r["predicted_bytes"] / r["measured_bytes"]
        within.append(0.75 <= ratio <= 1.25)
        s.rows.append([r["network"], str(r["batch"]), f"{r['size']} px", f"{r['seconds']:.3f}",
                       f"{r['measured_bytes'] / 2**20:,.0f}", f"{r['predicted_bytes'] / 2**20:,.0f}",
                       f"{ratio:.2f}"])  # fmt: skip
    s.target("the analyzer's predicted training memory within 25% of the measured peak, at every point",
             all(within), f"{sum(within)} of {len(within)} points within 25%")  # fmt: skip
    slack = [r for r in results if r.get("measured_default_malloc_bytes")]
    if slack:
        parts = []
        for r in slack:
            value = r["measured_default_malloc_bytes"]
            parts.append(f"{r['network']} batch {r['batch']}: {value / 2**20:,.0f} MiB "
                         f"({value / r['measured_bytes']:.2f}x)")  # fmt: skip
        s.notes.append("With the allocator as ilsvrc sets it (`keep_freed_memory`) the same steps peak "
                       "higher (freed blocks kept resident): " + "; ".join(parts) + ".")  # fmt: skip
    if plot is not None:
        s.notes.append(f"\n![cost growth]({plot.name})")
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and points (a few minutes)")
    parser.add_argument("--only", help=f"comma-separated cases among {', '.join(CASES)}")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the Imagenette folder")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(CASES)
    unknown = set(chosen) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; choose among {', '.join(CASES)}")
    if {"data", "e2e", "estimate", "fast"} & set(chosen) and not (args.data / "train").is_dir():
        parser.error(
            f"{args.data} holds no train/ folder; give --data IMAGENETTE or leave out data,e2e,estimate,fast"
        )
    started = time.time()
    log("matrix-product rate (4096^3 float32)...")
    rate = matmul_rate()
    log(f"  {rate:.0f} GFLOP/s")
    sections: dict[str, list[Section]] = {}  # case -> its sections

    def done(name: str, new: Section | list[Section]) -> None:
        for section in new if isinstance(new, list) else [new]:
            sections.setdefault(name, []).append(section)
            print(section.markdown(), flush=True)

    if "models" in chosen:
        log("inference and training steps: ilsvrc against torchvision...")
        done("models", cases.model_speed(rate, args.quick))
    if "alexnet" in chosen:
        log("the published AlexNet and its LRN...")
        done("alexnet", cases.published_alexnet(rate, args.quick))
    if "zoo" in chosen:
        log("every zoo network: fraction of the matrix-product rate, beside torchvision...")
        done("zoo", zoo_rates.zoo_rates(rate, args.quick))
    if "data" in chosen:
        log("data pipeline alone...")
        done("data", cases.data_pipeline(args.data, args.quick))
    if "e2e" in chosen:
        log("end-to-end training on Imagenette...")
        done("e2e", cases.end_to_end(args.data, args.quick))
    if "analyzer" in chosen:
        log("ilsvrc summary against torchinfo...")
        done("analyzer", cases.analyzer(args.quick))
    if "costs" in chosen:
        log("cost growth (one process per point)...")
        results = costs.run(args.quick)
        plot = None
        if not args.no_write:  # the raw points too, to redraw the plot without measuring again
            (HERE / "cost_growth.json").write_text(json.dumps(results, indent=1) + "\n")
            plot = costs.plot(results, HERE / "cost_growth.png")
        done("costs", cost_section(results, plot))
    if "estimate" in chosen:
        log("what a run will cost: ilsvrc train's estimate against the epoch that followed...")
        done("estimate", estimate_case.run(args.data, rate, args.quick))
    if "fast" in chosen:
        log("--recipe fast on Imagenette, beside its references, and its tricks taken out (hours)...")
        done("fast", fast.case(args.data, args.quick, rate))
    rate_after = matmul_rate()
    minutes = (time.time() - started) / 60
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    command += f" --only {args.only}" if args.only else ""
    said = (
        f"Measured by `{command}` ({minutes:.1f} minutes in all), {utc_stamp()}, on {machine()}; "
        f"matrix-product rate (4096^3 float32, best of 5) {rate:.0f} GFLOP/s at the start of that run and "
        f'{rate_after:.0f} at its end: the "fraction of matmul rate" columns divide by the first.'
    )
    blocks = {
        name: said + "\n\n" + "\n".join(s.markdown() for s in found) for name, found in sections.items()
    }
    if not args.no_write:
        write_results(HERE / "RESULTS.md", blocks)
        log(f"written to {HERE / 'RESULTS.md'}")
    return 0


HEADER = """## Performance: every case beside its reference

`python -m benchmarks` runs every case below; `--only CASE,...` runs some and replaces only their
blocks, so each case names the run that measured it."""


def case_blocks(text: str) -> dict[str, str]:
    """The case blocks of a RESULTS.md (name -> its text, markers left out)."""
    found = re.finditer(r"<!-- case:([\w-]+) -->\n(.*?)\n<!-- /case:\1 -->", text, flags=re.S)
    return {m.group(1): m.group(2) for m in found}


def write_results(path: Path, blocks: dict[str, str]) -> None:
    """Put the case `blocks` (name -> Markdown) between the markers of `path`, keeping the blocks of
    the cases not run this time; the cases in CASES order, then the GPU note."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    inside = old[old.index(START) : old.index(END)] if START in old and END in old else ""
    merged = case_blocks(inside) | blocks
    parts = [HEADER] + [f"<!-- case:{n} -->\n{merged[n]}\n<!-- /case:{n} -->" for n in CASES if n in merged]
    block = f"{START}\n" + "\n\n".join(parts) + "\n\n" + GPU_NOTE + f"{END}"
    if START in old and END in old:
        new = old[: old.index(START)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
