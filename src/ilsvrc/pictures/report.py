"""The report page: one self-contained HTML file about a network and, optionally, a training run.

`ilsvrc report MODEL -o report.html` or `ilsvrc report [MODEL] --run RUN_DIR [--image IMAGE]` writes a
page with the network's facts (spec.ModelInfo), its architecture diagram (`draw`), the layer table
(`render.summary_table`), the parameter and multiply-add charts (`charts`) and, with a run, its curves
(`plots`), its last metrics and what the trained network learned (`viz`: first-layer filters and, with
an image, feature maps, occlusion and deconvnet projections). With a run, the analysis must be of the
network the run trained, at its input size and classes (`metrics.run_network`; `check_run_report`).

Self-contained: every picture is a PNG inside the page as a base64 data URI, the style sheet is inline,
fonts are the reader's own (system-ui); nothing is fetched, and the page has no script. The layout is
one column at most 70em wide; tables scroll sideways on a narrow screen, pictures shrink to the
screen's width (the diagram can be scrolled at a readable size on a phone).

Without --run nothing here imports torch; the run's pictures of what the network learned need it and
are drawn only if `ilsvrc.pictures.viz` can be imported; any of them that fails is left out with a note.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis import render
from ..analysis.analyzer import Report, analyze
from ..errors import IlsvrcError
from ..networks.spec import Linear, Network
from ..training.metrics import load_run, run_network
from . import charts, draw, figures, plots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_DPI = 144  # pictures in the page: sharp on high-density screens, shown at most 100% wide


class ReportError(IlsvrcError):
    """The report cannot be made or written."""


@dataclass
class Picture:
    """A picture for the page: PNG bytes, a caption and alternative text."""

    png: bytes
    caption: str
    alt: str
    wide: bool = False  # scrolls sideways on a phone instead of shrinking below reading size

    def html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        cls = ' class="wide"' if self.wide else ""
        return (
            f'<figure{cls}><div class="scroll"><img src="data:image/png;base64,{data}" '
            f'alt="{escape(self.alt)}"></div><figcaption>{escape(self.caption)}</figcaption></figure>\n'
        )


def picture(fig: Figure, caption: str, alt: str, wide: bool = False, palette: bool = True) -> Picture:
    """`fig` drawn as a PNG at REPORT_DPI; `palette`: 256 colours (diagrams, charts), not for photographs."""
    import io

    if palette:
        return Picture(figures.to_bytes(fig, "png", dpi=REPORT_DPI), caption, alt, wide)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=REPORT_DPI, facecolor="white")
    return Picture(buf.getvalue(), caption, alt, wide)


# ---------------------------------------------------------------------------------------------------
# Sections


def _facts_html(facts: list[tuple[str, str]]) -> str:
    items = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts if v)
    return f'<dl class="facts">{items}</dl>\n'


def _header(report: Report, run: Path | None = None) -> str:
    def short(value: float) -> str:
        return render.short(value, render.TABLE_DIGITS)

    net, info, i = report.network, report.network.info, report.input
    split = report.split()
    mem = report.memory()
    fc, conv = split["fc"], split["conv"]
    unknown = report.unknown_macs
    facts = [
        ("year", str(info.year) if info.year else ""),
        ("paper", info.paper),
        ("result", info.result),
        ("notes", info.notes),
        ("as trained", f"by the run {run.name}: its input size and classes" if run is not None else ""),
        ("input", f"{i.width}x{i.height}x{i.channels} (W x H x D)"),
        ("outputs (classes)", f"{report.output.elements:,}"),
        ("parameters", f"{report.params:,} ({short(report.params)}), weights {report.weights:,}"),
        (
            "multiply-adds per image",  # a lower bound while some layer's are unknown
            f"{'' if report.macs_exact else 'at least '}{report.macs:,} ({short(report.macs)}; FLOPs = 2 x "
            "MACs)" + ("" if report.macs_exact else "; unknown for " + ", ".join(r.name for r in unknown)),
        ),
        ("layers with weights", f"{report.weight_layers}" if report.depth == report.weight_layers else ""),
        (
            "depth (the lecture's count)",
            f"{report.depth} layers with weights on the longest path ({report.weight_layers} in all)"
            if report.depth != report.weight_layers
            else "",
        ),
        (
            "auxiliary classifiers (training only)",
            f"{len(net.aux_heads)}: +{report.aux_params:,} parameters ({report.params_with_aux:,} in "
            f"training), +{short(report.aux_macs)} multiply-adds per image"
            if net.aux_heads
            else "",
        ),
        ("where the parameters are", f"FC {fc['params_pct']:.1f}%, conv {conv['params_pct']:.1f}%"),
        ("where the arithmetic is", f"conv {conv['macs_pct']:.1f}%, FC {fc['macs_pct']:.1f}%"),
        (
            f"memory, batch {report.batch}, {report.dtype}",
            f"weights {render.human_bytes(mem['weights'])}, "
            f"inference peak ~{render.human_bytes(mem['inference_peak'])}",
        ),
    ]
    title = f"{net.name}: {info.title}" if info.title else net.name
    return (
        f'<header>\n<p class="kicker">ilsvrc report</p>\n<h1>{escape(title)}</h1>\n'
        + _facts_html(facts)
        + "</header>\n"
    )


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}">\n<h2>{escape(title)}</h2>\n{body}</section>\n'


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) else "-"


def _number(row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) else None


def _run_summary(run: Path, rows: list[dict[str, Any]]) -> str:
    """The run's settings (config.json, if readable) and its last and best metrics."""
    last = rows[-1]
    best = min(rows, key=lambda r: _number(r, "val_top1_error") or 1.0)
    config: dict[str, Any] = {}
    try:
        loaded = json.loads((run / "config.json").read_text())
        config = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    settings = ", ".join(
        f"{k} {recipe[k]}" for k in ("epochs", "batch_size", "lr", "schedule") if k in recipe
    )
    seconds, speed = _number(last, "seconds"), _number(last, "images_per_s")
    stopped = "" if last.get("complete", True) else " (stopped mid-epoch)"
    facts = [
        ("run directory", str(run)),
        ("model", str(config.get("model", ""))),
        ("data", (str(config.get("data") or "built-in shapes")) if config else ""),
        ("image size", str(config.get("image_size", ""))),
        ("recipe", settings),
        ("epochs run", f"{last.get('epoch')}{stopped}"),
        (
            "last val top-1 / top-5 error",
            f"{_pct(last.get('val_top1_error'))} / {_pct(last.get('val_top5_error'))}",
        ),
        ("best val top-1 error", f"{_pct(best.get('val_top1_error'))} (epoch {best.get('epoch')})"),
        (
            "wall-clock time",
            "" if seconds is None else f"{seconds / 60:.1f} minutes" if seconds >= 60 else f"{seconds:.3g} s",
        ),
        ("training speed", f"{speed:.0f} images/s" if speed is not None else ""),
    ]
    return _facts_html(facts)


def learned_pictures(run: Path, image: Path | None) -> tuple[list[Picture], list[str]]:
    """What the trained network learned, from `ilsvrc.pictures.viz`: (pictures, notes on what was left out).

    Each picture is made apart: one that cannot be made (no viz module, a layer it does not handle, an
    unreadable image) is replaced by a note, and the page is still written.
    """
    notes: list[str] = []
    try:
        from ..training.loop import load_trained
        from . import viz
    except ImportError as exc:
        return [], [f"Pictures of what the network learned are not available here ({exc})."]
    try:
        model, config, classes, _ = load_trained(run)
    except IlsvrcError as exc:
        return [], [f"The trained model could not be loaded, so no pictures of what it learned: {exc}"]
    filters = "The first convolution's filters as an image grid (in groups, as the next layer reads them)"
    jobs: list[tuple[str, str, Callable[[], Figure]]] = [
        ("First-layer filters", filters, lambda: viz.filters_figure(model)),
    ]
    if image is not None:
        state: dict[str, Any] = {}

        def x() -> Any:
            if "x" not in state:
                state["x"] = viz.eval_image(image, config)
            return state["x"]

        def first_conv() -> str:
            return viz.layer_names(model, spatial=True)[0]

        def last_spatial() -> str:
            return viz.layer_names(model, spatial=True)[-1]

        names = [c.name for c in classes]
        shown = image.name
        occlusion = (
            f"Probability of the predicted class as a grey square slides over {shown} (Zeiler & Fergus)"
        )
        deconv = (
            "The strongest activations of the last spatial layer projected back to pixels through the "
            f"max-pooling switches, for {shown} (Zeiler & Fergus)"
        )
        jobs += [
            ("Feature maps", f"The most active channels of the first layer for {shown}",
             lambda: viz.feature_maps_figure(model, x(), first_conv())),
            ("Occlusion", occlusion, lambda: viz.occlusion_figure(model, x(), class_names=names)),
            ("Deconvnet projections", deconv, lambda: viz.deconv_figure(model, x(), last_spatial())),
        ]  # fmt: skip
    else:
        notes.append(
            "Give --image IMAGE to add feature maps, occlusion and deconvnet projections for that image."
        )
    pictures = []
    for title, caption, make in jobs:
        try:
            wide = title != "First-layer filters"  # the others are rows of panels: scroll them on a phone
            pictures.append(picture(make(), f"{title}. {caption}.", title, wide=wide, palette=False))
        except Exception as exc:  # noqa: BLE001 (a picture is not worth losing the page for)
            notes.append(f"{title}: not drawn ({type(exc).__name__}: {exc}).")
            print(f"ilsvrc: warning: report: {title} not drawn: {exc}", file=sys.stderr)
    return pictures, notes


# ---------------------------------------------------------------------------------------------------
# The page

STYLE = """
:root { color-scheme: light; --ink: #263238; --muted: #607d8b; --line: #dfe6ea; --soft: #f5f8fa; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 76em; margin: 0 auto; padding: 1.25rem 1rem 3rem; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: .2rem 0 1rem; }
h2 {
  font-size: 1.3rem;
  margin: 2.2rem 0 .8rem;
  padding-bottom: .3rem;
  border-bottom: 1px solid var(--line);
}
.kicker {
  margin: 0;
  color: var(--muted);
  font-size: .85rem;
  letter-spacing: .05em;
  text-transform: uppercase;
}
nav { margin-top: 1rem; font-size: .95rem; }
nav a { margin-right: 1em; white-space: nowrap; }
a { color: #1565c0; }
.facts {
  display: grid;
  grid-template-columns: repeat(auto-fill, minmax(15em, 1fr));
  gap: .5rem 1.25rem;
  margin: 0;
}
.facts div { border-left: 3px solid var(--line); padding-left: .6rem; min-width: 0; }
.facts dt { color: var(--muted); font-size: .8rem; }
.facts dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 1rem 0; }
figure .scroll { overflow-x: auto; }
img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: .4rem; }
.table-wrap {
  overflow-x: auto;
  -webkit-overflow-scrolling: touch;
  border: 1px solid var(--line);
  border-radius: 4px;
}
table { border-collapse: collapse; font-size: .85rem; white-space: nowrap; width: 100%; }
caption { text-align: left; padding: .5rem .6rem; color: var(--muted); font-size: .85rem; }
th, td {
  padding: .3rem .6rem;
  border-top: 1px solid var(--line);
  text-align: left;
  vertical-align: top;
}
thead th { background: var(--soft); position: sticky; top: 0; }
tbody th { font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.formula {
  font: .75rem/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  color: var(--muted);
  font-weight: 400;
}
ul.notes {
  color: var(--muted);
  font-size: .85rem;
  white-space: normal;
  padding: .5rem 1rem .5rem 2rem;
  margin: 0;
}
.note { color: var(--muted); font-size: .9rem; }
footer {
  margin-top: 3rem;
  color: var(--muted);
  font-size: .85rem;
  border-top: 1px solid var(--line);
  padding-top: .8rem;
}
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .9em; }
@media (max-width: 40em) {
  body { font-size: 15px; }
  main { padding: .8rem .7rem 2rem; }
  h1 { font-size: 1.4rem; }
  figure.wide img { max-width: none; width: 56em; }
}
"""


def _described(net: Network, shape: tuple[int, ...]) -> str:
    c, h, w = shape
    return f"{net.name} at {w}x{h}x{c} with {_classes(net):,} classes"


def _classes(net: Network) -> int:
    """The outputs of the last fully connected layer at the top level (what `with_num_classes` sets)."""
    return next((x.out_features for x in reversed(net.layers) if isinstance(x, Linear)), 0)


def run_report(run: str | Path, network: Network | None = None, label: str | None = None) -> Report:
    """The analysis of the network `run` trained, at its input size and with its classes.

    `network` (named `label` in messages), if given, must have the run's layers (a spec file copied from
    the zoo network the run trained, say): its info, such as its title, is then used; ReportError if its
    layers differ, since the page would set one network's facts beside another's run.
    """
    trained = run_network(run)
    net = trained.network
    if network is not None:
        mine = network.with_num_classes(trained.num_classes)
        if mine.layers != net.layers:
            label = label or network.name
            raise ReportError(
                f"The run {run} trained {trained.model}, not {label} (their layers differ). Leave out "
                f"MODEL (`ilsvrc report --run {run}`) to report on the run's network, or leave out --run "
                f"to report on {label}."
            )
        net = mine.with_input(net.input_shape)
    return analyze(net)


def check_run_report(report: Report, run: str | Path) -> None:
    """ReportError unless `report` analyses the network `run` trained, at its input and classes (the
    page would otherwise state the facts of another network beside the run's curves)."""
    trained = run_network(run).network
    i = report.input
    shape = (i.channels, i.height, i.width)
    if report.network.layers != trained.layers or shape != trained.input_shape:
        raise ReportError(
            f"The analysis given ({_described(report.network, shape)}) is not of the network the run "
            f"{run} trained ({_described(trained, trained.input_shape)}); analyse "
            "`ilsvrc.metrics.run_network(run).network` instead (`ilsvrc report --run RUN` does)."
        )


def build_page(report: Report, run: str | Path | None = None, image: str | Path | None = None,
               command: str = "") -> str:  # fmt: skip
    """The whole page as HTML text, for `report` (an analysis) and optionally a run directory and image.

    Raises RunError when `run` is not a run directory with metrics, ReportError for a missing image.
    """
    net = report.network
    rows = load_run(run) if run is not None else None
    if run is not None:
        check_run_report(report, run)
    if image is not None and not Path(image).is_file():
        raise ReportError(
            f"The image {image} does not exist; give an image file for --image, e.g. photo.jpg."
        )
    sections = []
    diagram = picture(draw.diagram_figure(report), f"The volumes of {net.name}, layer by layer.",
                      f"Architecture diagram of {net.name}", wide=True)  # fmt: skip
    sections.append(_section("diagram", "Architecture", diagram.html()))
    table = render.to_html(render.summary_table(report))
    sections.append(_section("layers", "Layers", f'<div class="table-wrap">\n{table}</div>\n'))
    per = "per module or stage" if charts.is_grouped(report) else "per layer"
    alt = f"Bar charts of parameters and multiply-adds {per} of {net.name}"
    caption = (
        "Parameters and multiply-adds per top-level layer with weights, module or stage (its totals)."
        if charts.is_grouped(report)
        else "Parameters and multiply-adds per layer with weights."
    )
    chart = picture(charts.chart_figure([report]), caption, alt, wide=True)
    sections.append(_section("charts", "Parameters and arithmetic", chart.html()))
    nav = [("diagram", "Architecture"), ("layers", "Layers"), ("charts", "Charts")]
    if run is not None and rows is not None:
        run = Path(run)
        caption = "Training loss and top-1/top-5 error against epochs and wall-clock minutes."
        curves = picture(
            plots.curves_figure(plots.load_runs([run])), caption, f"Training curves of {run.name}", wide=True
        )
        learned, notes = learned_pictures(run, Path(image) if image is not None else None)
        body = _run_summary(run, rows) + curves.html()
        if learned or notes:
            body += "<h3>What the network learned</h3>\n" + "".join(p.html() for p in learned)
            body += "".join(f'<p class="note">{escape(n)}</p>\n' for n in notes)
        sections.append(_section("run", "Training run", body))
        nav.append(("run", "Training run"))
    links = "".join(f'<a href="#{k}">{escape(v)}</a>' for k, v in nav)
    made = f"Made by <code>{escape(command)}</code> with ilsvrc {escape(_version())}." if command else ""
    footer = (
        f"<footer>{made} Conventions: {escape(render.CONVENTIONS)} The page is self-contained: its pictures "
        "are embedded and it loads nothing.</footer>\n"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(net.name)}: ilsvrc report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        + _header(report, Path(run) if run is not None else None)
        + f"<nav>{links}</nav>\n"
        + "".join(sections)
        + footer
        + "</main>\n</body>\n</html>\n"
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ilsvrc")
    except PackageNotFoundError:
        return "(not installed)"


def check_report_name(out: str | Path) -> Path:
    """`out` as a Path; ReportError unless it ends in .html or .htm."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ReportError(
            f"The report is an HTML page: name it with .html (e.g. -o {out.stem or 'report'}.html)."
        )
    return out


def write_report(report: Report, out: str | Path, run: str | Path | None = None,
                 image: str | Path | None = None, command: str = "") -> Path:  # fmt: skip
    """Write the page (see `build_page`) to `out`; returns the path. ReportError if it cannot be written."""
    out = check_report_name(out)
    figures.check_folder(out)  # before the page is made
    page = build_page(report, run, image, command)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ReportError(
            f"Cannot write {out}: {exc.strerror or exc}. Check that its folder exists and is writable."
        ) from None
    return out
