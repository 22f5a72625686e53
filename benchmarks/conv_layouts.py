"""One convolution's three passes in each memory layout: why `ilsvrc train` times its layout.

A training step runs every convolution three times: the forward pass, the gradient of its input (the
data gradient, passed down) and the gradient of its weights. oneDNN, behind eager PyTorch on the CPU,
has kernels for each pass in torch's default (contiguous, NCHW) layout and in channels-last (NHWC),
and which one is faster depends on the pass and the shape. This case times the three passes of
typical convolutions of the zoo in both layouts, side by side in the same run, as fractions of the
machine's fp32 matrix-product rate (measured before and after), so the whole-network differences of
the zoo table ("Every network of the zoo", its last column: the layout `ilsvrc train` chose) can be
traced to the passes that cause them.

    python benchmarks/conv_layouts.py [--batch 8] [--rounds 5] [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.harness import Section, interleaved, log, machine, matmul_rate, median, publish, utc_stamp  # noqa: E402


@dataclass(frozen=True)
class Conv:
    """A convolution of the zoo: where it is, its channels, kernel, stride, padding and input size."""

    where: str
    cin: int
    cout: int
    k: int
    stride: int
    pad: int
    size: int

    def out_size(self) -> int:
        return (self.size - self.k + 2 * self.pad) // self.stride + 1

    def macs(self, batch: int) -> int:
        """Multiply-adds of one pass (the forward; each gradient pass has as many)."""
        return batch * self.cout * self.out_size() ** 2 * self.cin * self.k * self.k


CONVS = (
    Conv("VGG-16 conv1_2", 64, 64, 3, 1, 1, 224),
    Conv("VGG-16 conv2_2", 128, 128, 3, 1, 1, 112),
    Conv("VGG-16 conv3_3", 256, 256, 3, 1, 1, 56),
    Conv("VGG-16 conv4_3", 512, 512, 3, 1, 1, 28),
    Conv("ResNet stem, 7x7/2", 3, 64, 7, 2, 3, 224),
    Conv("ResNet-18 layer1 3x3", 64, 64, 3, 1, 1, 56),
    Conv("ResNet-18 layer3 3x3", 256, 256, 3, 1, 1, 14),
    Conv("ResNet-50 layer1 1x1", 256, 64, 1, 1, 0, 56),
)
PASSES = ("forward", "input gradient", "weight gradient")
LAYOUTS = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}


def passes(conv: Conv, batch: int, layout: torch.memory_format) -> dict[str, Callable[[], object]]:
    """The three passes of `conv` on random tensors in `layout`, each a call of oneDNN's kernel as
    autograd makes it (`aten.convolution` and `aten.convolution_backward` with one output asked)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, conv.cin, conv.size, conv.size, generator=g).to(memory_format=layout)
    w = torch.randn(conv.cout, conv.cin, conv.k, conv.k, generator=g).to(memory_format=layout)
    o = conv.out_size()
    dy = torch.randn(batch, conv.cout, o, o, generator=g).to(memory_format=layout)
    s, p = [conv.stride] * 2, [conv.pad] * 2
    aten = torch.ops.aten

    def backward(mask: list[bool]) -> Callable[[], object]:
        return lambda: aten.convolution_backward(dy, x, w, [conv.cout], s, p, [1, 1], False, [0, 0], 1, mask)

    return {
        "forward": lambda: aten.convolution(x, w, None, s, p, [1, 1], False, [0, 0], 1),
        "input gradient": backward([True, False, False]),
        "weight gradient": backward([False, True, False]),
    }


def wanted(conv: Conv) -> tuple[str, ...]:
    """The passes a training step runs: the first layer's input (the image) needs no gradient."""
    return tuple(p for p in PASSES if not (p == "input gradient" and conv.cin == 3))


def measure(batch: int, rounds: int) -> list[dict]:
    """GFLOP/s of each pass of each convolution in each layout, the layouts interleaved round by round."""
    found = []
    for conv in CONVS:
        contenders = {}
        for layout_name, layout in LAYOUTS.items():
            for name, fn in passes(conv, batch, layout).items():
                if name in wanted(conv):
                    contenders[f"{name}, {layout_name}"] = fn
        with torch.no_grad():
            times = interleaved(contenders, rounds, warmup=1, label=conv.where)
        flops = 2 * conv.macs(batch)
        for name in wanted(conv):
            rates = {lay: flops / median(times[f"{name}, {lay}"]) / 1e9 for lay in LAYOUTS}
            found.append({"conv": conv, "pass": name, **rates})
    return found


def section(found: list[dict], batch: int, rates: tuple[float, float]) -> Section:
    rate = max(rates)
    s = Section(
        f"One convolution's passes in each memory layout, batch {batch}, fp32",
        ["convolution", "input", "pass", "contiguous", "channels-last", "channels-last / contiguous"],
    )
    for r in found:
        c = r["conv"]
        shape = f"{c.cin}->{c.cout}, {c.k}x{c.k}/{c.stride}"
        cells = [f"{r[lay]:.0f} GFLOP/s ({r[lay] / rate:.0%})" for lay in LAYOUTS]
        s.rows.append([f"{c.where} ({shape})", f"{c.size} px", r["pass"], *cells,
                       f"{r['channels-last'] / r['contiguous']:.2f}"])  # fmt: skip
    slower = [r for r in found if r["channels-last"] < 0.9 * r["contiguous"]]
    named = "; ".join(f"{r['conv'].where} {r['pass']} ({r['channels-last'] / r['contiguous']:.2f})"
                      for r in slower)  # fmt: skip
    s.target("passes at least 10% slower channels-last than contiguous", None,
             f"{len(slower)} of {len(found)}" + (f": {named}" if slower else ""))  # fmt: skip
    s.notes.append(
        "Each pass is the median of the rounds, the six (three passes, two layouts) of a convolution "
        "taking turns in each round (the stem's input gradient is left out: a step never computes it); "
        "FLOPs are twice the multiply-adds, the same for the three passes. "
        f"Percentages are of the fp32 4096^3 matrix product's rate, {rates[0]:.0f} GFLOP/s before the "
        f"case and {rates[1]:.0f} after (the higher is used)."
    )
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path, help="append the table to this file (benchmarks/RESULTS.md)")
    args = parser.parse_args()
    began = time.time()
    before = matmul_rate()
    log(f"matrix product {before:.0f} GFLOP/s")
    found = measure(args.batch, args.rounds)
    after = matmul_rate()
    minutes = (time.time() - began) / 60
    command = f"python benchmarks/conv_layouts.py --batch {args.batch} --rounds {args.rounds}"
    text = (f"## One convolution's passes in each memory layout (issue 16, item 2)\n\nCommand: `{command}`; "
            f"{utc_stamp(began)}, {minutes:.1f} minutes. Machine: {machine()}.\n\n")  # fmt: skip
    text += section(found, args.batch, (before, after)).markdown()
    publish(text, args.write)


if __name__ == "__main__":
    main()
