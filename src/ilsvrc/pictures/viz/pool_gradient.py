"""Where max pooling sends its gradient: torch autograd on one small input, as numbers, Markdown
tables (docs/maxpool-gradient.md) and a picture. Needs no network and no run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from .common import VisualizationError

__all__ = [
    "EXAMPLE_2X2",
    "EXAMPLE_3X3",
    "UPSTREAM_2X2",
    "UPSTREAM_3X3",
    "maxpool_gradient_example",
    "maxpool_gradient_figure",
    "maxpool_gradient_markdown",
]


# A 4x4 input with one clear maximum in each 2x2 window, and a 5x5 input for AlexNet's overlapping
# 3x3/2 pooling where x[1, 2] = 9 is the maximum of two windows (top-left and top-right).
EXAMPLE_2X2 = [[1.0, 6.0, 2.0, 4.0], [5.0, 3.0, 8.0, 7.0], [0.0, 2.0, 3.0, 1.0], [4.0, 9.0, 6.0, 5.0]]
UPSTREAM_2X2 = [[0.5, -1.0], [2.0, 0.25]]
EXAMPLE_3X3 = [
    [1.0, 2.0, 0.0, 3.0, 1.0],
    [4.0, 0.0, 9.0, 2.0, 5.0],
    [2.0, 1.0, 3.0, 0.0, 1.0],
    [8.0, 2.0, 1.0, 4.0, 0.0],
    [1.0, 3.0, 0.0, 2.0, 7.0],
]
UPSTREAM_3X3 = [[0.5, 1.0], [-2.0, 0.25]]


def maxpool_gradient_example(
    x: Sequence[Sequence[float]] | Tensor | None = None,
    kernel: int = 2,
    stride: int | None = None,
    upstream: Sequence[Sequence[float]] | Tensor | None = None,
) -> dict[str, Tensor]:
    """Max pooling forward and backward with torch autograd on one small 2-D input.

    Defaults: a 4x4 input with 2x2 windows at stride 2 (or, with kernel 3, a 5x5 input with AlexNet's
    3x3 windows at stride 2) and a fixed upstream gradient dL/dy. Returns tensors, all 2-D:
    "input" x, "output" y = max_pool2d(x), "upstream" dL/dy, "grad" dL/dx (from `backward`), "argmax"
    (each window's max as a flat index into x, from `return_indices=True`), and "windows" (how many
    windows have each input position as their max), "kernel" and "stride" (0-d). dL/dx is dL/dy
    added up over the windows whose max a position is, and zero everywhere else.
    """
    stride = kernel if stride is None else stride
    if x is None:
        x = EXAMPLE_3X3 if kernel == 3 else EXAMPLE_2X2
    if upstream is None and kernel in (2, 3) and stride == 2:
        upstream = UPSTREAM_3X3 if kernel == 3 else UPSTREAM_2X2
    xt = torch.as_tensor(x, dtype=torch.float64).clone().requires_grad_(True)
    y, argmax = F.max_pool2d(xt[None, None], kernel, stride, return_indices=True)
    g = torch.ones_like(y) if upstream is None else torch.as_tensor(upstream, dtype=torch.float64)
    if tuple(g.shape[-2:]) != tuple(y.shape[-2:]):
        raise VisualizationError(f"The upstream gradient must match the pooled output {tuple(y.shape[-2:])}.")
    y.backward(g.view_as(y))
    windows = torch.zeros(xt.numel(), dtype=torch.int64).scatter_add_(
        0, argmax.flatten(), torch.ones(argmax.numel(), dtype=torch.int64)
    )
    return {
        "input": xt.detach(),
        "output": y.detach()[0, 0],
        "upstream": g.view(y.shape[-2:]),
        "grad": xt.grad.detach(),
        "argmax": argmax[0, 0],
        "windows": windows.view_as(xt),
        "kernel": torch.tensor(kernel),
        "stride": torch.tensor(stride),
    }


def _number(v: float) -> str:
    """A grid value as written in a cell: shortest form (`1.5`, `-2`, `0.25`)."""
    return f"{v:g}"


def maxpool_gradient_markdown(example: dict[str, Tensor]) -> str:
    """The four grids of `maxpool_gradient_example` as Markdown tables (input, output, upstream, input
    gradient), with the maxima in bold in the input: what docs/maxpool-gradient.md shows."""

    def table(t: Tensor, bold: Tensor | None = None) -> str:
        cols = t.shape[1]
        lines = ["| | " + " | ".join(f"col {j}" for j in range(cols)) + " |", "|---" * (cols + 1) + "|"]
        for i in range(t.shape[0]):
            cells = [
                f"**{_number(v)}**" if bold is not None and bold[i, j] else _number(v)
                for j, v in enumerate(t[i].tolist())
            ]
            lines.append(f"| row {i} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    maxima = example["windows"] > 0
    parts = [
        ("input x (the maxima in bold)", table(example["input"], maxima)),
        ("output y = maxpool(x)", table(example["output"])),
        ("upstream gradient dL/dy", table(example["upstream"])),
        ("input gradient dL/dx (torch autograd)", table(example["grad"])),
    ]
    return "\n\n".join(f"{title}:\n\n{body}" for title, body in parts) + "\n"


_WINDOW_COLOURS = ("C0", "C1", "C2", "C4", "C5", "C6", "C8", "C9", "C7")


def _grid_panel(
    ax: Any,
    t: Tensor,
    title: str,
    maxima: Tensor | None = None,
    signed: bool = False,
    frames: Sequence[tuple[int, int, int, int, str]] = (),
    notes: dict[tuple[int, int], str] | None = None,
    stagger: bool = False,
) -> None:
    """Draw a small matrix with its values written in its cells.

    maxima: cells shown bold on a yellow ground; signed: colour by sign (red +, blue -, white 0);
    frames: (top, left, height, width, colour) rectangles in cell units, e.g. pooling windows;
    notes: small text under a cell's value; stagger: inset each frame differently (overlapping ones).
    """
    values = t.numpy().astype(float)
    rows, cols = values.shape
    if signed:
        limit = max(float(np.abs(values).max()), 1e-9)
        ax.imshow(values, cmap="RdBu_r", vmin=-limit * 1.7, vmax=limit * 1.7)
    else:
        ax.imshow(np.zeros_like(values), cmap="Greys", vmin=0, vmax=1)
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            strong = maxima is not None and bool(maxima[i, j])
            if strong and not signed:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="#ffe27a", zorder=1))
            colour = "0.65" if signed and v == 0 else "black"
            weight = "bold" if strong else "normal"
            ax.text(j, i, _number(float(v)), ha="center", va="center", fontsize=11, fontweight=weight,
                    color=colour, zorder=3)  # fmt: skip
            if notes and (i, j) in notes:
                ax.text(j, i + 0.32, notes[(i, j)], ha="center", va="center", fontsize=7, zorder=3)
    for k, (top, left, height, width, colour) in enumerate(frames):
        inset = 0.05 + 0.07 * (k % 4) if stagger else 0.07
        ax.add_patch(Rectangle((left - 0.5 + inset, top - 0.5 + inset), width - 2 * inset, height - 2 * inset,
                               fill=False, lw=2, color=colour, zorder=4))  # fmt: skip
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xticks(np.arange(-0.5, cols), minor=True)
    ax.set_yticks(np.arange(-0.5, rows), minor=True)
    ax.grid(which="minor", color="0.7", lw=0.8)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_title(title, fontsize=9)


def maxpool_gradient_figure(examples: Sequence[dict[str, Tensor]] | None = None) -> Figure:
    """One row per example (`maxpool_gradient_example`; default: the 2x2/2 case and AlexNet's
    overlapping 3x3/2 case): the input with each pooling window framed in its own colour and each
    window's max on yellow, the pooled output and the upstream gradient (cells framed in their window's
    colour), and the input gradient from autograd, non-zero only at the maxima (a max shared by two
    windows receives the sum of their gradients, written under it)."""
    if examples is None:
        examples = [
            maxpool_gradient_example(kernel=2, stride=2),
            maxpool_gradient_example(kernel=3, stride=2),
        ]
    fig = Figure(figsize=(11.0, 3.3 * len(examples) + 0.2), constrained_layout=True)
    subs = np.atleast_1d(fig.subfigures(len(examples), 1))
    for sub, ex in zip(subs, examples):
        x, y, up = ex["input"], ex["output"], ex["upstream"]
        k, s = int(ex["kernel"]), int(ex["stride"])
        rows, cols = y.shape
        colours = {(i, j): _WINDOW_COLOURS[(i * cols + j) % len(_WINDOW_COLOURS)] for i in range(rows)
                   for j in range(cols)}  # fmt: skip
        windows = [(i * s, j * s, k, k, colours[i, j]) for i in range(rows) for j in range(cols)]
        cells = [(i, j, 1, 1, colours[i, j]) for i in range(rows) for j in range(cols)]
        shared = {}
        for flat in sorted(set(ex["argmax"].flatten().tolist())):
            sources = [(i, j) for i in range(rows) for j in range(cols) if int(ex["argmax"][i, j]) == flat]
            if len(sources) > 1:
                shared[divmod(flat, x.shape[1])] = "= " + " + ".join(
                    _number(float(up[i, j])) for i, j in sources
                )
        ratios = (x.shape[1], cols + 0.8, cols + 0.8, x.shape[1])
        axes = sub.subplots(1, 4, width_ratios=ratios)
        maxima = ex["windows"] > 0
        _grid_panel(
            axes[0],
            x,
            "input x: windows framed, maxima on yellow",
            maxima=maxima,
            frames=windows,
            stagger=k > s,
        )
        _grid_panel(axes[1], y, "output y = max of each window", frames=cells)
        _grid_panel(axes[2], up, "upstream gradient dL/dy", signed=True, frames=cells)
        _grid_panel(
            axes[3], ex["grad"], "dL/dx from torch autograd", maxima=maxima, signed=True, notes=shared
        )
        overlap = ": windows overlap, a max shared by two windows gets both gradients" if k > s else ""
        sub.suptitle(f"max pooling {k}x{k}, stride {s}, on a {x.shape[0]}x{x.shape[1]} input{overlap}",
                     fontsize=10)  # fmt: skip
    return fig
