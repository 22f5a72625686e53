"""Presenting analyses: terminal table, Markdown, CSV, JSON and LaTeX. Nothing here computes.

A renderer takes a `Report` or a `Comparison` and returns text. Tables are built once as a `Table`
(column titles, rows of strings, lines below) and written in any of the formats; JSON has its own
stable, documented shape (docs/json.md: `ilsvrc.summary/1` and `ilsvrc.compare/1`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from .analyzer import CONVENTIONS, LayerStats, Report
from .compare import Comparison

FORMATS = ("text", "markdown", "csv", "json", "latex")
FORMAT_ALIASES = {"md": "markdown"}  # other names a user may type for a format
SUMMARY_SCHEMA = "ilsvrc.summary/1"
COMPARE_SCHEMA = "ilsvrc.compare/1"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)  # right-aligned columns
    details: dict[int, list[str]] = field(default_factory=dict)  # lines under row i (formulas)
    footer: list[str] = field(default_factory=list)


def n(value: float) -> str:
    return f"{value:,}"


def human_bytes(value: float) -> str:
    """Bytes in binary units: 512 -> '512 B', 1536 -> '1.5 KiB', up to TiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


PICTURE_DIGITS = 3  # significant digits of `short` in pictures (diagram labels, chart bars and axes)
TABLE_DIGITS = 4  # in tables and pages, where there is room (the exact figure often stands beside)


def short(value: float, digits: int = PICTURE_DIGITS) -> str:
    """`value` to `digits` significant digits with a decimal K/M/G/T suffix, trailing zeros dropped.

    34944 -> '34.9K', 37752832 -> '37.8M', 138357544 -> '138M' (3 digits); 61100840 -> '61.1M',
    724406816 -> '724.4M' (4 digits). Rounding comes first, so 999,999 is '1M', not '1000K'. Below
    1000 there is no suffix: 96 -> '96', 0.5 -> '0.5'.
    """
    if digits < 1:
        raise ValueError(f"digits must be 1 or more, got {digits}")
    value = float(f"{value:.{digits}g}")
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            scaled = value / size
            return (f"{scaled:.{digits}g}" if abs(scaled) < 10**digits else f"{scaled:.0f}") + unit
    return f"{value:.{digits}g}"


# ---------------------------------------------------------------------------------------------------
# Summary


def summary_table(report: Report, derive: bool = False, expand: bool = False) -> Table:
    """The layer table. By default a module (an Inception module, a residual block, an auxiliary
    classifier) is one row with its totals, marked with a trailing '/'; `expand` shows every layer."""
    cols = ["layer", "type", "config", "input", "output", "weights", "biases", "params", "MACs",
            "out memory", "RF"]  # fmt: skip
    table = Table(_summary_title(report), cols, [], numeric={5, 6, 7, 8, 9})
    shown = [(row, False) for row in report.rows] if expand else report.modules()
    for row, collapsed in shown:
        indent = "  " * row.depth + ("(aux) " if row.aux and row.depth == 0 else "")
        rf = row.receptive_field
        table.rows.append([
            indent + row.name + ("/" if collapsed else ""), row.kind, row.hyper, str(row.input),
            str(row.output),
            n(row.weights) if row.weights else "", n(row.biases) if row.biases else "",
            n(row.params) if row.params else "-", macs_cell(row),
            human_bytes(report.output_bytes(row)), str(rf) if rf else "",
        ])  # fmt: skip
        if derive and row.formulas:
            table.details[len(table.rows) - 1] = row.formulas
    table.footer = summary_footer(report)
    if not expand and len(shown) < len(report.rows):
        table.footer.insert(
            0,
            f"name/ = a module shown as one row with its totals ({len(report.rows)} rows in all: "
            "--expand shows every layer).",
        )
    return table


def macs_cell(row: LayerStats) -> str:
    """A row's multiply-adds: the number, '-' for none, '?' when unknown (an opaque layer), '>= N' for
    a module holding one (what is known of it)."""
    if row.macs_known:
        return n(row.macs) if row.macs else "-"
    return f">= {n(row.macs)}" if row.macs else "?"


def _at_least(report: Report) -> str:
    """'at least ' before a MAC total that leaves out unknown multiply-adds, else ''."""
    return "" if report.macs_exact else "at least "


def _summary_title(report: Report) -> str:
    net = report.network
    i = report.input
    title = f"{net.name}: {net.info.title}" if net.info.title else net.name
    title += f" | input {i.channels}x{i.height}x{i.width}, batch {report.batch}, {report.dtype}"
    for label, text in (("paper", net.info.paper), ("result", net.info.result),
                        ("note", net.info.notes)):  # fmt: skip
        if text:
            title += f"\n  {label}: {text}"
    return title


def summary_footer(report: Report) -> list[str]:
    split = report.split()
    mem = report.memory()
    lines = [
        f"Total parameters: {n(report.params)} ({short(report.params, TABLE_DIGITS)}) = weights "
        f"{n(report.weights)} + biases {n(report.biases)}; weights only (the lecture's view): "
        f"{n(report.weights)}",
        f"Layers with weights (the lecture's count): {report.depth}"
        + (
            f" along the longest path; {report.weight_layers} in all"
            if report.weight_layers != report.depth
            else ""
        )
        + f" = {report.conv_layers} conv + {report.fc_layers} fully connected",
        f"Parameters: conv {n(split['conv']['params'])} ({split['conv']['params_pct']:.1f}%), "
        f"fully connected {n(split['fc']['params'])} ({split['fc']['params_pct']:.1f}%)"
        + (
            f", batch norm {n(split['other']['params'])} ({split['other']['params_pct']:.1f}%)"
            if split["other"]["params"]
            else ""
        ),
        f"Multiply-adds per image: {_at_least(report)}{n(report.macs)} MACs "
        f"({short(report.macs, TABLE_DIGITS)}; "
        f"FLOPs = 2 x MACs = {short(report.flops, TABLE_DIGITS)}): conv "
        f"{split['conv']['macs_pct']:.1f}%, fully connected {split['fc']['macs_pct']:.1f}%; bias adds "
        f"{n(report.bias_adds)} not included (with them: {n(report.macs_with_bias_adds)}, torchinfo's count)",
        f"Memory, batch {report.batch}, {report.dtype}: weights {human_bytes(mem['weights'])}; "
        f"inference peak ~{human_bytes(mem['inference_peak'])}; training ~"
        f"{human_bytes(mem['training_total'])} (weights + gradients + SGD momentum + "
        f"{human_bytes(mem['training_activations'])} of activations kept for backward + "
        f"{human_bytes(mem['training_workspace'])} of matrix-product workspace)",
        "Conventions: " + CONVENTIONS + " RF = receptive field of one output unit, in input pixels.",
    ]
    if report.aux_leaves:
        heads = [r for r in report.rows if r.aux and r.depth == 0]
        lines.insert(
            1,
            f"Auxiliary classifiers ({', '.join(h.name for h in heads)}; training only): "
            f"{n(report.aux_params)} parameters, {short(report.aux_macs, TABLE_DIGITS)} MACs; with them "
            f"{n(report.params_with_aux)} parameters and {n(report.macs_with_aux)} MACs per image. The "
            "totals above and below leave them out (the network as it is tested).",
        )
    if not report.macs_exact:
        names = ", ".join(r.name for r in report.unknown_macs)
        lines.insert(
            len(lines) - 1,
            f"Multiply-adds unknown (shown ?) for {len(report.unknown_macs)} layer(s) ilsvrc does not "
            f"know: {names}. Every MAC total above is a lower bound (their multiply-adds left out).",
        )
    for f in report.findings:
        lines.append(f"{f.severity.capitalize()}: {f.message}")
    return lines


def summary_json(report: Report) -> dict:
    layers = []
    for row in report.rows:
        rf = row.receptive_field
        layers.append({
            "name": row.name, "type": row.kind, "depth": row.depth, "container": row.container,
            "aux": row.aux,
            "config": row.hyper, "input": row.input.to_dict(), "output": row.output.to_dict(),
            "weights": row.weights, "biases": row.biases, "params": row.params,
            "macs": row.macs if row.macs_known else None, "macs_known": row.macs_known,
            "bias_adds": row.bias_adds,
            "output_bytes": report.output_bytes(row),
            "receptive_field": None if rf is None else
            {"size": list(rf.size), "jump": list(rf.jump), "start": list(rf.start)},
            "formulas": list(row.formulas),
        })  # fmt: skip
    split = report.split()
    net = report.network
    return {
        "schema": SUMMARY_SCHEMA,
        "network": net.name,
        "info": {
            "title": net.info.title,
            "year": net.info.year,
            "paper": net.info.paper,
            "default_input": list(net.input_shape),
            "mean": list(net.info.mean),
            "std": list(net.info.std),
            "result": net.info.result,
        },  # fmt: skip
        "input": report.input.to_dict(),
        "batch": report.batch,
        "dtype": report.dtype,
        "conventions": {
            "macs": "one multiply-add = 1; conv and fully connected weights only; FLOPs = 2 x MACs",
            "bias_adds": "counted apart, not in macs",
            "params": "weights + biases",
            "weight_layers": "convolutions and fully connected layers",
            "depth_lecture": "layers with weights along the longest path (the lecture's count)",
            "aux": "auxiliary classifiers (training only) are left out of the totals; *_with_aux has them",
            "macs_known": "false for a layer ilsvrc does not know (opaque) and a module holding one: "
            "their macs are null, and every MAC total counts the known ones only, a lower bound "
            "(totals.macs_lower_bound)",
            "volume_order": "W x H x D in text; named axes here",
        },
        "layers": layers,
        "totals": {
            "params": report.params,
            "weights": report.weights,
            "biases": report.biases,
            "macs": report.macs,
            "bias_adds": report.bias_adds,
            "flops": report.flops,
            "weight_layers": report.weight_layers,
            "depth_lecture": report.depth,
            "params_with_aux": report.params_with_aux,
            "macs_with_aux": report.macs_with_aux,
            "aux_params": report.aux_params,
            "aux_macs": report.aux_macs,
            "macs_lower_bound": not report.macs_exact,
            "layers_with_unknown_macs": [r.name for r in report.unknown_macs],
            "split": split,
            "memory_bytes": report.memory(),
        },  # fmt: skip
        "findings": [
            {"severity": f.severity, "layer": f.layer, "message": f.message} for f in report.findings
        ],  # fmt: skip
    }


# ---------------------------------------------------------------------------------------------------
# Compare


def compare_table(cmp: Comparison) -> Table:
    a, b = cmp.a.network.name, cmp.b.network.name
    cols = ["", "layer", f"{a}", "output", f"{b}", "output", f"params {a}", f"params {b}",
            "params A-B", "MACs A-B"]  # fmt: skip
    table = Table(f"{a} (A) against {b} (B)", cols, [], numeric={6, 7, 8, 9})
    for p in cmp.pairs:
        mark = "*" if p.differs else ""
        table.rows.append([
            mark, p.name,
            (p.a.hyper or p.a.kind) if p.a else "(none)", str(p.a.output) if p.a else "",
            (p.b.hyper or p.b.kind) if p.b else "(none)", str(p.b.output) if p.b else "",
            n(p.a.params) if p.a else "", n(p.b.params) if p.b else "",
            _signed(p.difference("params")),
            _signed(p.difference("macs")) if all(s is None or s.macs_known for s in (p.a, p.b)) else "?",
        ])  # fmt: skip
    t = cmp.totals()
    d = t["params"]["difference"]
    more = "more" if d >= 0 else "fewer"
    table.footer = [
        f"Parameters: A {n(t['params']['a'])}, B {n(t['params']['b'])}; A has {n(abs(d))} "
        f"({short(abs(d), TABLE_DIGITS)}) {more} (weights only: {_signed(t['weights']['difference'])})",
        f"MACs per image: A {_at_least(cmp.a)}{n(t['macs']['a'])}, B {_at_least(cmp.b)}"
        f"{n(t['macs']['b'])}; A - B = {_signed(t['macs']['difference'])}"
        + ("" if cmp.a.macs_exact and cmp.b.macs_exact else " (of the known multiply-adds; ? = unknown)"),
        f"Layers with weights: A {t['weight_layers']['a']}, B {t['weight_layers']['b']}",
        "* marks rows that differ in configuration, volume, parameters or MACs. " + CONVENTIONS,
    ]
    return table


def _signed(v: int) -> str:
    return "0" if v == 0 else f"{v:+,}"


def compare_json(cmp: Comparison) -> dict:
    def side(s):
        if s is None:
            return None
        return {"name": s.name, "type": s.kind, "config": s.hyper, "input": s.input.to_dict(),
                "output": s.output.to_dict(), "params": s.params, "macs": s.macs}  # fmt: skip

    return {
        "schema": COMPARE_SCHEMA,
        "a": {"network": cmp.a.network.name, "input": cmp.a.input.to_dict()},
        "b": {"network": cmp.b.network.name, "input": cmp.b.input.to_dict()},
        "rows": [{"a": side(p.a), "b": side(p.b), "differs": p.differs} for p in cmp.pairs],
        "totals": cmp.totals(),
    }


# ---------------------------------------------------------------------------------------------------
# Writers


def render(table: Table, fmt: str) -> str:
    """`table` as text in `fmt`: one of FORMATS (JSON has its own shapes) or an alias such as "md"."""
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt == "text":
        return to_text(table)
    if fmt == "markdown":
        return to_markdown(table)
    if fmt == "csv":
        return to_csv(table)
    if fmt == "latex":
        return to_latex(table)
    raise ValueError(f"unknown format {fmt!r}")


def to_text(t: Table) -> str:
    widths = [max(len(c), *(len(r[i]) for r in t.rows)) if t.rows else len(c)
              for i, c in enumerate(t.columns)]  # fmt: skip

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) if i in t.numeric else c.ljust(w)
               for i, (c, w) in enumerate(zip(cells, widths))]  # fmt: skip
        return "  ".join(out).rstrip()

    rule = "-" * len(line(["x" * w for w in widths]))
    lines = [t.title, rule, line(t.columns), rule]
    for i, row in enumerate(t.rows):
        lines.append(line(row))
        for formula in t.details.get(i, []):
            lines.append(" " * 6 + formula)
    lines += [rule, *t.footer]
    return "\n".join(lines) + "\n"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("*", "\\*")


def to_markdown(t: Table) -> str:
    lines = [f"**{_md_escape(t.title.splitlines()[0])}**", ""]
    lines += [f"{_md_escape(x.strip())}  " for x in t.title.splitlines()[1:]]
    lines += [""] if "\n" in t.title else []
    lines.append("| " + " | ".join(_md_escape(c) or " " for c in t.columns) + " |")
    lines.append("|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.columns)))
                 + "|")  # fmt: skip
    for i, row in enumerate(t.rows):
        cells = [_md_escape(c.strip()) for c in row]
        if i in t.details:
            cells[0] += "<br>" + "<br>".join(f"`{f}`" for f in t.details[i])
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {_md_escape(f)}" for f in t.footer]
    return "\n".join(lines) + "\n"


def to_csv(t: Table) -> str:
    import csv  # here: a summary in text does not load it

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["" if not c else c for c in t.columns])
    for row in t.rows:
        writer.writerow([c.strip().replace(",", "") if i in t.numeric else c.strip()
                         for i, c in enumerate(row)])  # fmt: skip
    return buf.getvalue()


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}  # fmt: skip


def latex_escape(s: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in s)


def to_latex(t: Table) -> str:
    spec = "".join("r" if i in t.numeric else "l" for i in range(len(t.columns)))
    lines = [
        *("% " + latex_escape(x) for x in t.title.splitlines()),
        "% (needs \\usepackage{booktabs})",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(c) for c in t.columns) + r" \\",
        "\\midrule",
    ]
    for row in t.rows:
        cells = [latex_escape(c.strip()) for c in row]
        cells[0] = "\\quad " * ((len(row[0]) - len(row[0].lstrip())) // 2) + cells[0]
        lines.append(" & ".join(cells) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += ["% " + latex_escape(f) for f in t.footer]
    return "\n".join(lines) + "\n"


def dump_json(data: dict) -> str:
    import json  # here: a summary in text does not load it

    return json.dumps(data, indent=2) + "\n"


def to_html(t: Table) -> str:
    """The table as an HTML <table> (escaped text; numeric columns carry class "num", formulas of
    --derive a <div class="formula"> under the layer name, the footer a <ul class="notes"> after it).

    The title's first line is the caption; its further lines (paper, result) are left to the page.
    """
    from html import escape

    head = "".join(f'<th{" class=num" if i in t.numeric else ""} scope="col">{escape(c)}</th>'
                   for i, c in enumerate(t.columns))  # fmt: skip
    body = []
    for i, row in enumerate(t.rows):
        cells = []
        for j, cell in enumerate(row):
            text = escape(cell.strip())
            if j == 0:
                depth = (len(cell) - len(cell.lstrip(" "))) // 2
                style = f' style="padding-left:{0.6 + 1.2 * depth:.1f}em"' if depth else ""
                formulas = "".join(f'<div class="formula">{escape(f)}</div>' for f in t.details.get(i, []))
                cells.append(f'<th scope="row"{style}>{text}{formulas}</th>')
            else:
                cells.append(f"<td{' class=num' if j in t.numeric else ''}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = escape(t.title.splitlines()[0]) if t.title else ""
    notes = "".join(f"<li>{escape(f)}</li>" for f in t.footer)
    return (
        f"<table>\n<caption>{caption}</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>\n"
        + (f'<ul class="notes">{notes}</ul>\n' if notes else "")
    )
