"""What every picture shares: an off-screen matplotlib figure, the palette, and saving as PNG or SVG.

Figures are made with `matplotlib.figure.Figure` directly, never through pyplot: no global state, no
window, no backend to choose (the Agg renderer draws PNGs, the SVG one writes vectors). matplotlib is
imported only here and only when a picture is made, so `import ilsvrc` stays light.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import IlsvrcError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = ("png", "svg")
DPI = 110  # PNG pixels per inch: a 12-inch-wide figure is 1320 pixels

# One colour per kind of layer, the same in the diagram and the charts
COLOURS = {
    "input": "#d9d9d9",
    "conv": "#7fb3d5",
    "pool": "#f5cba7",
    "norm": "#d2b4de",
    "linear": "#82c99a",
    "other": "#e5e8e8",
}
INK = "#263238"
MUTED = "#607d8b"
RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


class FigureError(IlsvrcError):
    """A picture cannot be written: unknown file type, or the file cannot be created."""


def new_figure(width: float, height: float) -> Figure:
    """An empty off-screen figure, `width` x `height` inches, white background."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), facecolor="white")


def image_format(out: str | Path) -> str:
    """'png' or 'svg' from the file name's suffix; FigureError for anything else."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise FigureError(
            f"Cannot tell what picture to write from the name {str(out)!r}: end it in .png or .svg "
            "(e.g. -o alexnet.svg)."
        )
    return suffix


def check_folder(out: str | Path) -> None:
    """FigureError unless the folder `out` goes into exists and can be written to: checked before a
    picture is drawn, so a wrong -o fails at once (`save` still reports a failure to write)."""
    folder = Path(out).parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FigureError(
            f"Cannot write {out}: the folder {folder} {what}. Create it first, or choose another file name."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FigureError(f"Cannot write {out}: the folder {folder} is not writable; choose another folder.")


def check_output(out: str | Path) -> str:
    """'png' or 'svg' from `out`'s suffix, once its folder is known to be writable (see `check_folder`)."""
    fmt = image_format(out)
    check_folder(out)
    return fmt


def save(fig: Figure, out: str | Path) -> Path:
    """Write `fig` to `out` as PNG (at DPI, 256 colours) or SVG, by the suffix; returns the path written.

    Raises FigureError for an unknown suffix or a file that cannot be written (missing folder, no
    permission, full disk), naming the path and what to do.
    """
    out = Path(out)
    data = to_bytes(fig, image_format(out))
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise FigureError(
            f"Cannot write {out}: {exc.strerror or exc}. Check that its folder exists and is writable."
        ) from None
    return out


def to_bytes(fig: Figure, fmt: str = "png", dpi: float = DPI) -> bytes:
    """`fig` as the bytes of a PNG or an SVG file. SVG text stays text (searchable, smaller).

    PNGs are reduced to a palette of 256 colours, without dithering: diagrams and charts are flat
    colours and thin lines, so nothing visible changes and the file is about 3x smaller (photographs
    would band: draw those with matplotlib's own savefig).
    """
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ilsvrc"}):
        fig.savefig(buf, format=fmt, dpi=dpi, facecolor="white")
    if fmt != "png":
        return buf.getvalue()
    from PIL import Image

    buf.seek(0)
    with Image.open(buf) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True, dpi=(dpi, dpi))
    return out.getvalue()
