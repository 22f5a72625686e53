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
from .estimate import DEFAULT_UTILISATION, DataSize, PaperComparison, RunCost, Timed
from .history import HistoryRow, largest_drop

FORMATS = ("text", "markdown", "csv", "json", "latex")
FORMAT_ALIASES = {"md": "markdown"}  # other names a user may type for a format
SUMMARY_SCHEMA = "ilsvrc.summary/1"
COMPARE_SCHEMA = "ilsvrc.compare/1"
HISTORY_SCHEMA = "ilsvrc.history/1"


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
# Cost of a run (`ilsvrc estimate`, `ilsvrc train`'s estimate)

ESTIMATE_SCHEMA = "ilsvrc.estimate/1"


def flops(value: float) -> str:
    """FLOPs with a decimal prefix, 4 significant digits: 4.347e9 -> '4.347 GFLOP', 5.07e17 -> '507 PFLOP'."""
    for unit, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(value) >= size:
            return f"{value / size:.4g} {unit}FLOP"
    return f"{value:.4g} FLOP"


def rate(flops_per_s: float) -> str:
    """FLOP/s with a decimal prefix: 9.2e12 -> '9.2 TFLOP/s'."""
    return flops(flops_per_s) + "/s"


def duration(seconds: float) -> str:
    """A time the way one says it, 3 significant digits: '45.2 s', '12.5 min', '3.21 h', '5.63 days'."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size * (1.5 if unit == "days" else 1):
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def cost_lines(cost: RunCost, protocol: str = "center") -> list[str]:
    """The formulas behind a run's FLOPs, one line each (per image, per epoch, the run)."""
    views = f"{cost.views:.4g} view{'s' if cost.views != 1 else ''} ({protocol})"
    return [
        f"training image: 3 x 2 x {short(cost.train_macs, TABLE_DIGITS)} MACs = {flops(cost.train_flops)} "
        "(3: the forward pass, the gradients for the layers' inputs, the gradients for their weights)",
        f"test image: 2 x {short(cost.eval_macs, TABLE_DIGITS)} MACs x {views} = {flops(cost.eval_flops)}",
        f"epoch: {cost.train_images:,} x {flops(cost.train_flops)} + {cost.val_images:,} x "
        f"{flops(cost.eval_flops)} = {flops(cost.epoch_flops)}",
        f"run: {cost.epochs:g} epochs x {flops(cost.epoch_flops)} = {flops(cost.run_flops)}",
    ]


def _days(lo: float, hi: float) -> str:
    return f"{lo:g} days" if lo == hi else f"{lo:g}-{hi:g} days"


def estimate_table(model: str, data: DataSize, size: int, cost: RunCost, lines: list[Timed],
                   papers: list[PaperComparison], protocol: str = "center",
                   recipe: str = "") -> Table:  # fmt: skip
    """`ilsvrc estimate`: a row per hardware line (time per epoch and for the run), the papers' own
    hardware with their reported time last; the formulas and the sources below."""
    table = Table(
        f"{model}: {cost.epochs:g} epochs{f' ({recipe})' if recipe else ''} of {data.name} ({data.train:,} "
        f"train + {data.val:,} val images) at {size} px",
        ["hardware", "precision", "peak TFLOP/s", "utilisation", "reached", "epoch", "run", "paper"],
        [],
        numeric={2, 3, 4, 5, 6},
    )
    sources: dict[str, int] = {}

    def row(t: Timed, paper: str = "") -> list[str]:
        hw = t.hardware
        mark = ""
        if hw.accelerator is not None:
            mark = f" [{sources.setdefault(hw.accelerator.source, len(sources) + 1)}]"
        peak = f"{hw.peak:g}" if hw.accelerator is not None else "-"
        util = f"{hw.utilisation:.0%}" if hw.accelerator is not None else "-"
        return [hw.label + mark, hw.precision or "-", peak, util, rate(hw.rate), duration(t.epoch_seconds),
                duration(t.run_seconds), paper]  # fmt: skip

    def key(t: Timed) -> tuple:
        return t.hardware.label, t.hardware.precision, t.hardware.rate

    shown_with_paper = {key(p.estimate) for p in papers}  # asked for the paper's own GPUs: one row, not two
    for t in lines:
        if key(t) not in shown_with_paper:
            table.rows.append(row(t))
    for p in papers:
        lo, hi = p.implied_utilisation
        share = f"{lo:.0%}-{hi:.0%}" if lo != hi else f"{lo:.0%}"
        said = f"{_days(*p.run.days)} (so {share} of peak)"
        table.rows.append(row(p.estimate, said))
        table.details[len(table.rows) - 1] = [
            f"{p.run.paper}, {p.run.where}: {p.run.said}; at 100% of peak: {duration(p.peak_seconds)}"
        ]
    defaults = ", ".join(f"{k} {v:.0%}" for k, v in DEFAULT_UTILISATION.items())
    table.footer = [
        *cost_lines(cost, protocol),
        "time = FLOPs / (peak x utilisation x GPUs); several GPUs are assumed to scale linearly. Peaks are "
        f"dense (no sparsity); a precision a GPU lacks falls back (bf16 -> fp16 -> fp32). Utilisation "
        f"by default: {defaults}, measured for ResNet-50 training on a V100 (docs/estimate.md); "
        "--utilisation sets it.",
        "Not counted: batch norm, ReLU, pooling, LRN, the loss, the optimizer's update, the data pipeline.",
        *(f"[{i}] {source}" for source, i in sources.items()),
    ]
    return table


def estimate_json(model: str, data: DataSize, size: int, cost: RunCost, lines: list[Timed],
                  papers: list[PaperComparison], protocol: str = "center",
                  recipe: str = "") -> dict:  # fmt: skip
    def hw(t: Timed) -> dict:
        h = t.hardware
        return {"hardware": h.label, "accelerator": h.accelerator.key if h.accelerator else None,
                "count": h.count, "precision": h.precision, "peak_tflops": h.peak if h.accelerator else None,
                "utilisation": h.utilisation, "flops_per_s": h.rate, "epoch_seconds": t.epoch_seconds,
                "run_seconds": t.run_seconds}  # fmt: skip

    return {
        "schema": ESTIMATE_SCHEMA, "model": model, "data": data.name, "train_images": data.train,
        "val_images": data.val, "image_size": size, "epochs": cost.epochs, "epochs_from": recipe,
        "protocol": protocol,
        "views": cost.views, "train_macs": cost.train_macs, "eval_macs": cost.eval_macs,
        "train_flops_per_image": cost.train_flops, "eval_flops_per_image": cost.eval_flops,
        "epoch_flops": cost.epoch_flops, "run_flops": cost.run_flops, "hardware": [hw(t) for t in lines],
        "papers": [{**hw(p.estimate), "paper": p.run.paper, "paper_days": list(p.run.days),
                    "peak_seconds": p.peak_seconds, "implied_utilisation": list(p.implied_utilisation)}
                   for p in papers],
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# History


def history_table(rows: list[HistoryRow], wide: bool = False) -> Table:
    """The challenge's history: one row per entry, the zoo network's analysis beside it, sources below.

    What each entry was (and a note) is a line under its row, or with `wide` (files: Markdown, CSV,
    LaTeX) two columns of their own."""
    from ..networks.history import HUMAN

    table = Table(
        "ILSVRC classification: the winners' top-5 error on the test set, and the networks behind them",
        ["year", "entry", "team", "top-5 %", "network", "layers", "params", "MACs"]
        + (["what it was", "note"] if wide else []),
        [],
        numeric={3, 5, 6, 7},
    )
    sources: dict[str, int] = {}
    for row in rows:
        e = row.entry
        marks = []
        for source in e.source.split("; "):
            marks.append(str(sources.setdefault(source, len(sources) + 1)))
        table.rows.append([
            str(e.year), f"{e.entry} [{','.join(marks)}]", e.team, f"{e.top5_error:g}", e.model or "-",
            "-" if row.depth is None else str(row.depth), "-" if row.params is None else n(row.params),
            "-" if row.macs is None else n(row.macs) if wide else short(row.macs, TABLE_DIGITS),
        ] + ([e.method, e.note] if wide else []))  # fmt: skip
        if not wide:
            table.details[len(table.rows) - 1] = [e.method] + ([f"note: {e.note}"] if e.note else [])
    drop = largest_drop([r.entry for r in rows]) if len(rows) > 1 else None
    table.footer = [
        "layers = layers with weights along the longest path, the lecture's count; params and MACs "
        "(multiply-adds per image, FLOPs = 2 x MACs) of the zoo network at its default input, as `ilsvrc "
        "summary NAME` gives them. Entries before 2012 used hand-made features: no network.",
        *(
            f"{h.label}: {h.top5_error:g}% top-5 [{sources.setdefault(h.source, len(sources) + 1)}]"
            for h in HUMAN
        ),
    ]
    if drop is not None:
        table.footer.append(
            f"largest fall: {drop.year}, {drop.before:g}% -> {drop.after:g}% ({drop.points:g} points)"
        )
    table.footer += [f"[{i}] {source}" for source, i in sources.items()]
    return table


def history_json(rows: list[HistoryRow]) -> dict:
    from ..networks.history import HUMAN

    drop = largest_drop([r.entry for r in rows]) if len(rows) > 1 else None
    return {
        "schema": HISTORY_SCHEMA,
        "conventions": {
            "top5_error": "percent, ILSVRC classification test set, as published",
            "depth_lecture": "layers with weights along the longest path (the lecture's count)",
            "macs": "multiply-adds per image at the network's default input; FLOPs = 2 x MACs",
        },
        "entries": [
            {
                "year": r.entry.year,
                "entry": r.entry.entry,
                "team": r.entry.team,
                "top5_error": r.entry.top5_error,
                "method": r.entry.method,
                "network": r.entry.model,
                "depth_lecture": r.depth,
                "params": r.params,
                "macs": r.macs,
                "source": r.entry.source,
                "note": r.entry.note or None,
            }  # fmt: skip
            for r in rows
        ],
        "human": [{"label": h.label, "top5_error": h.top5_error, "source": h.source} for h in HUMAN],
        "largest_drop": None
        if drop is None
        else {"year": drop.year, "from": drop.before, "to": drop.after, "points": drop.points},
    }


def replay_table(plan: dict, results: list[dict]) -> Table:
    """A replay's results (the plain dicts of replay.json) beside the published errors of the entries
    they stand for."""
    data = plan["data"] or f"the built-in shapes data ({plan['synthetic_classes']} classes)"
    table = Table(
        f"The ILSVRC history replayed on {data} at {plan['image_size']} px, {plan['minutes']:g} min each",
        ["year", "stands for", "replayed by", "published top-5 %", "top-1 %", "top-5 %", "minutes"],
        [],
        numeric={3, 4, 5, 6},
    )
    for r in results:
        table.rows.append([
            str(r["year"]), r["stands_for"], r["name"], f"{r['published_top5']:g}",
            f"{100 * r['top1_error']:.1f}", f"{100 * r['top5_error']:.1f}", f"{r['minutes']:.1f}",
        ])  # fmt: skip
    waiting = [name for name in plan["entries"] if name not in {r["name"] for r in results}]
    table.footer = [
        "published: top-5 error on ILSVRC's test set (1000 classes, 224 px, weeks of GPU training, "
        "ensembles); replayed: one model each on this data's val split, one centre view per image, "
        f"the same {plan['minutes']:g} minutes of training each (CNNs: recipe {plan['recipe']}; seed "
        f"{plan['seed']}).",
    ]
    if waiting:
        table.footer.append(f"not yet run: {', '.join(waiting)}")
    return table


def sweep_costs_table(plan: dict, costs: list[dict]) -> Table:
    """Every variant of a sweep with its cost before training (or why it cannot be built)."""
    table = Table(
        f"{len(costs)} variants of {plan['model']} at {plan['image_size']} px: the cost of each, before "
        "any trains",
        ["variant", "params", "MACs", "training memory"],
        [],
        numeric={1, 2, 3},
    )
    for c in costs:
        if c.get("error"):
            table.rows.append([c["label"], "-", "-", "cannot be built"])
            table.details[len(table.rows) - 1] = [c["error"]]
        else:
            table.rows.append([c["label"], n(c["params"]), short(c["macs"], TABLE_DIGITS),
                               human_bytes(c["train_memory"])])  # fmt: skip
    table.footer = [
        "MACs: multiply-adds per image at the training size; training memory: weights, gradients and "
        "momentum plus one step's activations at the recipe's batch (the analyzer's model)."
    ]
    return table


def sweep_table(plan: dict, results: list[dict]) -> Table:
    """A sweep's finished variants ranked by validation top-1 error, with their cost."""
    budget = " and ".join(
        ([f"{plan['minutes']:g} min"] if plan.get("minutes") else [])
        + ([f"{plan['epochs']} epochs"] if plan.get("epochs") else [])
    )
    data = plan.get("data") or "the built-in data"
    table = Table(
        f"Sweep of {plan['model']} on {data} at {plan['image_size']} px, {budget} each: ranked by "
        "validation error",
        ["rank", "variant", "params", "MACs", "top-1 %", "top-5 %", "minutes"],
        [],
        numeric={0, 2, 3, 4, 5, 6},
    )
    costs = {c["label"]: c for c in plan.get("costs", [])}
    for i, r in enumerate(sorted(results, key=lambda r: (r["top1_error"], r["top5_error"], r["minutes"]))):
        c = costs.get(r["label"], {})
        table.rows.append([
            str(i + 1), r["label"], n(c["params"]) if c.get("params") else "",
            short(c["macs"], TABLE_DIGITS) if c.get("macs") else "",
            f"{100 * r['top1_error']:.1f}", f"{100 * r['top5_error']:.1f}", f"{r['minutes']:.1f}",
        ])  # fmt: skip
    waiting = [" ".join(v) for v in plan["variants"] if " ".join(v) not in {r["label"] for r in results}]
    table.footer = [f"recipe {plan['recipe']}, seed {plan['seed']}; one centre view per val image"]
    if waiting:
        table.footer.append(f"not yet trained: {'; '.join(waiting)}")
    if plan.get("skipped"):
        table.footer.append(f"cannot be built (left out): {'; '.join(c['label'] for c in plan['skipped'])}")
    return table


def ablation_table(ablation: dict, plan: dict, results: list[dict]) -> Table:
    """An ablation's variants, measured, beside the paper's claim (plain dicts: ablation.json's)."""
    budget = " and ".join(([f"{plan['minutes']:g} min"] if plan.get("minutes") else [])
                          + ([f"{plan['epochs']} epochs"] if plan.get("epochs") else []))  # fmt: skip
    data = plan.get("data") or "the built-in data"
    target = ablation.get("target")
    columns = ["variant", "top-1 %", "top-5 %", "epochs", "minutes"]
    if target is not None:
        columns.insert(3, f"epochs to {100 * target:g}% train error")
    title = f"{ablation['name']}: {ablation['question']} ({data}, {plan['image_size']} px, {budget} each)"
    table = Table(title, columns, [], numeric=set(range(1, len(columns))))
    for r in results:
        row = [r["label"], f"{100 * r['top1_error']:.1f}", f"{100 * r['top5_error']:.1f}", f"{r['epochs']:g}",
               f"{r['minutes']:.1f}"]  # fmt: skip
        if target is not None:
            reached = r.get("epochs_to_target")
            row.insert(3, "not reached" if reached is None else f"{reached:.1f}")
        table.rows.append(row)
    table.footer = [f"the paper: {ablation['claim']} ({ablation['source']})"]
    if target is not None:
        table.footer.append("epochs to the target: read from the per-epoch training errors, linearly "
                            "between two epoch ends")  # fmt: skip
    if len(results) > 1:
        first = results[0]
        diffs = [f"{r['label']} {100 * (r['top1_error'] - first['top1_error']):+.1f}" for r in results[1:]]
        table.footer.append(f"here, points of top-1 error against {first['label']}: {'; '.join(diffs)}")
    table.footer.append(f"recipe {plan['recipe']}, seed {plan['seed']}; one centre view per val image")
    return table


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
