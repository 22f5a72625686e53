"""The ILSVRC history replayed on Imagenette (issue 14, item 4): does the small-scale history fall the
way the real one did?

Runs `ilsvrc history --data DATA --image-size 128 --minutes M -o OUT` (every era's entry trained for
the same M minutes on the same split, measured the same way), with the machine's matrix-product rate
measured before and after, then appends the table to RESULTS.md (with `--write`) and copies the chart
to docs/history-replay.png. A killed benchmark resumes: run the same command again (the replay in OUT
goes on where it stopped).

    python benchmarks/history_replay.py [--data ../shared/data/imagenette] [--minutes 10 | --quick]
                                        [--entries sift-bow,alexnet,...] [--out runs/bench-history]
                                        [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import log, machine, matmul_rate, publish, utc_stamp  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "imagenette"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=10.0, help="each entry's budget")
    parser.add_argument("--quick", action="store_true", help="2 minutes each")
    parser.add_argument("--entries", help="comma-separated (default: the replay's own)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("runs") / "bench-history")
    parser.add_argument("--png", type=Path, default=HERE.parent / "docs" / "history-replay.png")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    minutes = 2.0 if args.quick else args.minutes

    from ilsvrc.cli import main as cli
    from ilsvrc.training.replay import read_replay

    began = time.time()
    if not (args.out / "replay.json").exists():
        # the decoded-image cache at the CNNs' source size, built before any budget starts, so that the
        # first CNN does not pay for it inside its minutes (the classical pipelines keep their own)
        from ilsvrc.training.data import open_dataset
        from ilsvrc.training.recipes import get_recipe

        source = round(args.image_size / get_recipe("cpu").crop_fraction)
        for split in ("train", "val"):
            open_dataset(str(args.data), split, image_size=source, skip_unreadable=True).use_cache(
                progress=True
            )
        log(f"decoded-image cache ready at {source} px ({(time.time() - began) / 60:.1f} min)")
    rate_start = matmul_rate()
    log(f"matrix product: {rate_start:.0f} GFLOP/s")
    if (args.out / "replay.json").exists():
        argv = ["history", "--resume", str(args.out)]
    else:
        argv = ["history", "--data", str(args.data), "--image-size", str(args.image_size), "--minutes",
                f"{minutes:g}", "-o", str(args.out)]  # fmt: skip
        if args.entries:
            argv += ["--entries", args.entries]
    code = cli(argv)
    if code != 0:
        sys.exit(code)
    rate_end = matmul_rate()
    plan, results = read_replay(args.out)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.out / "history.png", args.png)
    table = (args.out / "history.md").read_text()
    command = f"python benchmarks/history_replay.py --minutes {plan.minutes:g}"
    if args.entries:
        command += f" --entries {args.entries}"
    text = "\n".join([
        "## The ILSVRC history replayed on Imagenette (issue 14)",
        "",
        f"Command: `{command}`; {utc_stamp(began)}, {(time.time() - began) / 60:.1f} minutes in all. "
        f"Machine: {machine()}. Matrix-product rate (4096^3 float32, best of 5): {rate_start:.0f} GFLOP/s "
        f"at the start, {rate_end:.0f} at the end. Chart: docs/{args.png.name}. The decoded-image cache "
        "was built before the first budget started; the classical pipeline's descriptors were extracted "
        "inside its own.",
        "",
        table.strip(),
        "",
    ])  # fmt: skip
    publish(text, args.write)
    log(f"{len(results)} entries; chart copied to {args.png}")


if __name__ == "__main__":
    main()
