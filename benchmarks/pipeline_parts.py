"""The data pipeline's parts, each beside what it replaced, on one thread (per image, microseconds):

- the random crop-and-resize of a 224 px uint8 image to 128 px, planar (3 x H x W memory, what the
  decoder gives) against channels-last (H x W x 3 memory, what the decoded cache hands out);
- uint8 to normalised float: torchvision's ToDtype + Normalize against ilsvrc's `NormalisedFloat`.

    python benchmarks/pipeline_parts.py [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import interleaved, machine, median, utc_stamp  # noqa: E402

from ilsvrc.training.transforms import NormalisedFloat  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
N = 200  # calls per timing


def per_call(fn) -> callable:
    def run() -> None:
        for _ in range(N):
            fn()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    hwc = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8)
    channels_last, planar = hwc.permute(2, 0, 1), hwc.permute(2, 0, 1).contiguous()
    crop = v2.RandomResizedCrop(128, scale=(0.08, 1.0), antialias=True)
    small = crop(channels_last)
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(MEAN), list(STD))])
    ours = NormalisedFloat(MEAN, STD)
    torch.testing.assert_close(ours(small), reference(small))
    pairs = {
        "random crop and resize, 224 -> 128 px, uint8": (lambda: crop(planar), lambda: crop(channels_last),
                                                        "planar", "channels-last"),
        "uint8 -> normalised float, 3 x 128 x 128": (lambda: reference(small), lambda: ours(small),
                                                     "ToDtype + Normalize", "NormalisedFloat"),
    }  # fmt: skip
    rows = []
    for what, (before, after, name_before, name_after) in pairs.items():
        t = interleaved({name_before: per_call(before), name_after: per_call(after)}, 7, label=what)
        b, a = median(t[name_before]) / N * 1e6, median(t[name_after]) / N * 1e6
        rows.append(f"| {what} | {name_before}: {b:.0f} us | {name_after}: {a:.0f} us | {b / a:.2f}x |")
    lines = [
        "## The data pipeline's parts, each beside what it replaced",
        "",
        f"Command: `python benchmarks/pipeline_parts.py`; {utc_stamp()}, one thread. "
        f"Machine: {machine()}. Median of 7 interleaved rounds of {N} calls; the values are equal.",
        "",
        "| step | before | ilsvrc | speed-up |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
