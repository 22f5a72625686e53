"""The data pipeline's parts, each beside what it replaced, on one thread (per image, microseconds):

- the random crop-and-resize of a 224 px uint8 image to 128 px, planar (3 x H x W memory, what the
  decoder gives) against channels-last (H x W x 3 memory, what the decoded cache hands out);
- torchvision.transforms.v2's RandomResizedCrop and RandomHorizontalFlip against ilsvrc's
  `RandomResizedCropFlip` (one call, its random numbers drawn at once), and its two halves: drawing
  the crop (torchvision's `get_params` against `RandomResizedCropFlip.params`) and enlarging a crop
  (torch's antialiased bilinear resize against OpenCV's INTER_LINEAR, what it uses there);
- uint8 to normalised float: torchvision's ToDtype + Normalize against ilsvrc's `NormalisedFloat`, and
  a batch of 32: each image normalised alone then stacked (as `default_collate` stacks) against
  `NormalisedFloat.batch` (one flat pass per image, straight into the batch);
- reading an image from the decoded cache: slicing the np.memmap against slicing a plain view of it.

    python benchmarks/pipeline_parts.py [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F
from torchvision import transforms as T
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import interleaved, machine, median, publish, scratch, utc_stamp  # noqa: E402

from ilsvrc.training.transforms import NormalisedFloat, RandomResizedCropFlip, resize_uint8  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
N = 200  # calls per timing
BATCH = 32


def per_call(fn, calls: int = N) -> callable:
    def run() -> None:
        for _ in range(calls):
            fn()

    return run


def parts(rounds: int = 7) -> list[str]:
    """The table's rows, each pair timed interleaved over `rounds` rounds, after checking its values."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    hwc = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8)
    channels_last, planar = hwc.permute(2, 0, 1), hwc.permute(2, 0, 1).contiguous()
    crop = v2.RandomResizedCrop(128, scale=(0.08, 1.0), antialias=True)
    v2_crop_flip = v2.Compose([crop, v2.RandomHorizontalFlip()])
    ours_crop_flip = RandomResizedCropFlip(128, (0.08, 1.0))
    small = crop(channels_last)
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(MEAN), list(STD))])
    ours = NormalisedFloat(MEAN, STD)
    torch.testing.assert_close(ours(small), reference(small))
    # enlarging: a 96 x 96 crop to 128 x 128, where OpenCV's bilinear and torch's agree to 1 level
    grow = channels_last[:, 40:136, 60:156]
    grow_batch = grow.permute(1, 2, 0)[None].permute(0, 3, 1, 2)  # channels-last, batch of one

    def torch_grow() -> torch.Tensor:
        return F.interpolate(grow_batch, size=(128, 128), mode="bilinear", antialias=True)[0]

    assert (resize_uint8(grow, 128, 128).int() - torch_grow().int()).abs().max() <= 1
    # a batch: each image alone then stacked, against the batch at once
    images = [torch.randint(0, 256, (128, 128, 3), dtype=torch.uint8) for _ in range(BATCH)]
    shifts = torch.stack([ours.image_shift() for _ in images])
    alone = lambda: torch.stack([ours(x.permute(2, 0, 1)) for x in images])  # noqa: E731
    together = lambda: ours.batch(images, shifts)  # noqa: E731
    assert torch.equal(alone(), together())
    # the cache's read: an np.memmap slice (np.array copies it) against a plain view's slice
    folder = scratch("ilsvrc-parts-")
    hwc.numpy().tofile(folder / "pixels.u8")
    mapped = np.memmap(folder / "pixels.u8", np.uint8, mode="r")
    plain = mapped.view(np.ndarray)
    index = np.array([[0, 224, 224]], dtype=np.int64)
    rows = index.tolist()

    def memmap_read() -> torch.Tensor:
        offset, h, w = (int(v) for v in index[0])
        return torch.from_numpy(np.array(mapped[offset : offset + 3 * h * w]).reshape(h, w, 3))

    def plain_read() -> torch.Tensor:
        offset, h, w = rows[0]
        return torch.from_numpy(plain[offset : offset + 3 * h * w].reshape(h, w, 3).copy())

    assert torch.equal(memmap_read(), plain_read())
    pairs = {
        "random crop and resize, 224 -> 128 px, uint8": (lambda: crop(planar), lambda: crop(channels_last),
                                                        "planar", "channels-last"),
        "random crop, resize and flip, 224 -> 128 px, channels-last": (
            lambda: v2_crop_flip(channels_last), lambda: ours_crop_flip(channels_last),
            "v2 RandomResizedCrop + RandomHorizontalFlip", "RandomResizedCropFlip"),
        "drawing the crop (position, size, aspect ratio)": (
            lambda: T.RandomResizedCrop.get_params(channels_last, [0.08, 1.0], [3 / 4, 4 / 3]),
            lambda: ours_crop_flip.params(224, 224), "torchvision get_params",
            "RandomResizedCropFlip.params"),
        "enlarging a crop, 96 -> 128 px, uint8": (torch_grow, lambda: resize_uint8(grow, 128, 128),
                                                  "torch antialiased bilinear", "OpenCV INTER_LINEAR"),
        "uint8 -> normalised float, 3 x 128 x 128": (lambda: reference(small), lambda: ours(small),
                                                     "ToDtype + Normalize", "NormalisedFloat"),
        f"uint8 -> normalised float batch, {BATCH} x 3 x 128 x 128, per image": (
            alone, together, "NormalisedFloat each, stacked", "NormalisedFloat.batch"),
        "reading a 224 px image from the decoded cache": (memmap_read, plain_read, "np.memmap slice",
                                                          "plain view slice"),
    }  # fmt: skip
    out = []
    for what, (before, after, name_before, name_after) in pairs.items():
        calls = N // BATCH if "batch" in what else N
        per = calls * (BATCH if "batch" in what else 1)  # images per timing
        t = interleaved({name_before: per_call(before, calls), name_after: per_call(after, calls)}, rounds,
                        label=what)  # fmt: skip
        b, a = median(t[name_before]) / per * 1e6, median(t[name_after]) / per * 1e6
        out.append(f"| {what} | {name_before}: {b:.0f} us | {name_after}: {a:.0f} us | {b / a:.2f}x |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    args = parser.parse_args()
    rows = parts(args.rounds)
    lines = [
        "## The data pipeline's parts, each beside what it replaced",
        "",
        f"Command: `python benchmarks/pipeline_parts.py`; {utc_stamp()}, one thread. "
        f"Machine: {machine()}. Median of {args.rounds} interleaved rounds of {N} calls (the batch row: "
        f"{N // BATCH} batches of {BATCH}), per image; the values are equal (enlarging: to 1 level of 255).",
        "",
        "| step | before | ilsvrc | speed-up |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    publish(text, args.write)


if __name__ == "__main__":
    main()
