"""Fuzzing (issue 4): generated spec documents, valid and invalid, through the spec reader, the analyzer,
the renderers and the command line. The contract under test (src/ilsvrc/errors.py): nothing escapes but
an `IlsvrcError`, and nothing hangs.

The default run generates about 700 spec documents (mostly plausible and mostly broken ones through
the analyzer and every renderer, files through `ilsvrc summary` with random flags, `ilsvrc compare`
pairs) and 400 input-size strings through `parse_shape`; the same properties run at length (about
10,400 documents and 2,500 strings) in the slow set (`python -m pytest -m slow tests/test_fuzz.py`).
Each example has a budget of work, not of time (tests/work.py): the lines of ilsvrc it may run, a
bound linear in the size of its document; a generous alarm stays only as a hang guard for C code.
The 15 crashes and hangs this found (non-whole and huge sizes, unchecked constants and metadata, YAML
alias bombs, deep nesting, quadratic and unbounded loops) are fixed; the tests at the end keep one
minimal input of each, with a work bound where the bug was too much work.

Runs are reproducible (`derandomize`); ILSVRC_FUZZ_RANDOM=1 draws new examples on each run.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ilsvrc.analysis import render
from ilsvrc.analysis.analyzer import _adaptive_bins, _exact_padding, analyze
from ilsvrc.cli import main
from ilsvrc.errors import IlsvrcError, SpecError, SpecFileError
from ilsvrc.networks import specfile
from ilsvrc.networks.spec import Conv, Network
from ilsvrc.networks.zoo import list_models
from work import HANG_GUARD, Hang, LineCounter, TooMuchWork, count_lines, hang_guard, work_budget

TABLE_FORMATS = [f for f in render.FORMATS if f != "json"]  # JSON is summary_json, not a table
FUZZ = dict(
    deadline=None,
    derandomize=not os.environ.get("ILSVRC_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
FUZZ_WITH_FIXTURES = {  # capsys is read afresh in each example
    **FUZZ,
    "suppress_health_check": [*FUZZ["suppress_health_check"], HealthCheck.function_scoped_fixture],
}


# ---------------------------------------------------------------------------------------------------
# Budgets of work


def values_in(doc: Any) -> int:
    """The size of a document: its mappings, lists, keys and scalars, each counted once."""
    n, stack = 0, [doc]
    while stack:
        v = stack.pop()
        n += 1
        if isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return n


# The work budget of an example: lines of ilsvrc per value of its document (the most seen in 10,000
# examples: about 3,700, for nested joins), and a floor for the fixed work (imports on first use)
LINES_PER_VALUE = 10_000
LINES_AT_LEAST = 200_000


def lines_for(*docs: Any) -> int:
    """The work budget of an example on `docs`: a bound linear in their size."""
    return LINES_AT_LEAST + LINES_PER_VALUE * sum(values_in(d) for d in docs)


# The command line refuses an input size a network cannot take by naming the sizes it can: every
# square size up to 4,096 is tried, layer by layer (analyzer.input_sizes), some 20 lines each
LINES_PER_VALUE_TRIED = 25 * 4096


def cli_lines_for(*docs: Any) -> int:
    """The work budget of a command on `docs`: `lines_for` and the input sizes it may try."""
    return lines_for(*docs) + LINES_PER_VALUE_TRIED * sum(values_in(d) for d in docs)


TESTS = str(Path(__file__).resolve().parent)
CHILD = f"""
import sys
sys.path.insert(0, {TESTS!r})
from work import TooMuchWork, work_budget
try:
    with work_budget(int(sys.argv[1])):
        exec(sys.argv[2])  # sets `code`
except TooMuchWork as exc:
    print(f"too much work: {{exc}}", file=sys.stderr)
    code = 99
sys.exit(code)
"""
CLI = "from ilsvrc.cli import main; code = main(sys.argv[3:])"
CHILD_LINES = 1_000_000  # lines of ilsvrc a child may run (a refusal takes a few thousand)


def run_isolated(argv: list[str], body: str = CLI, memory: int = 1536 * 2**20) -> tuple[int, str]:
    """Python code `body` (by default `ilsvrc ARGV`) in a child process with a memory ceiling and a
    budget of work: (exit code, stderr); `body` sets `code`, the exit code.

    For the YAML bombs: their aliases expand inside C code (repr of nested lists), where no signal
    gets through and memory grows by gigabytes a second; run in-process, one of these tests was
    OOM-killed at 24 GB. In the child an expansion ends at the memory ceiling (a MemoryError, not a
    clean exit 2) and Python-level work after CHILD_LINES lines of ilsvrc (exit 99). The timeout is a
    hang guard only, far above the second or so a child takes (most of it Python's start-up).
    """

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    command = [sys.executable, "-c", CHILD, str(CHILD_LINES), body, *argv]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD, preexec_fn=limits)
    except subprocess.TimeoutExpired:
        raise Hang(f"{body} {' '.join(argv)}: still running after {HANG_GUARD} s (a hang guard)") from None
    return proc.returncode, proc.stderr


def assert_clean_exit_2(argv: list[str], **limits: Any) -> None:
    code, err = run_isolated(argv, **limits)
    assert code == 2 and err.startswith("ilsvrc: error: ") and "Traceback" not in err, (code, err[-2000:])


def _all_dicts(value: Any) -> Iterator[dict]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            yield v
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


# ---------------------------------------------------------------------------------------------------
# Strategies: spec documents, as a YAML or JSON file holds them. The helpers take `draw` and build no
# strategy of their own per call (that is what makes generation fast enough for 10,000 documents).

HUGE = st.sampled_from([10**6, 10**9, 2**31 - 1, 2**63, 10**400])
WEIRD = st.one_of(
    st.just(0),
    st.integers(-(10**9), -1),
    HUGE,
    st.floats(),  # nan, inf, -0.0, 1e-300 ...
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.lists(st.integers(-2, 9), max_size=4),  # pairs of the wrong length, or of the right one
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
)
PLAIN_NAME = st.sampled_from(["a", "b", "conv1", "relu1", "x_1", "fc", "_", "pool", "Layer_2", "body"])
ODD_NAMES = ["a.b", "a/b", "a\\b", "ä", "名前", "1abc", "", " ", "conv1\n", "x" * 300, "conv-1", "None"]
ODD_NAMES += ["__class__", "a b", "\x00", "ﬁ"]
WEIRD_NAME = st.one_of(st.sampled_from(ODD_NAMES), st.text(max_size=8), WEIRD)
PERCENT = st.integers(0, 99)
COIN = st.booleans()
LEAF_KINDS = st.sampled_from(
    ["conv", "conv", "conv", "maxpool", "avgpool", "adaptiveavgpool", "lrn", "relu", "batchnorm", "dropout"]
)
RANGES = [
    (0, 1),
    (0, 2),
    (0, 3),
    (0, 9),
    (1, 2),
    (1, 3),
    (1, 4),
    (1, 5),
    (1, 7),
    (1, 8),
    (1, 10),
    (1, 16),
    (1, 64),
]
INTS = {(lo, hi): st.integers(lo, hi) for lo, hi in RANGES}
FLOATS = {(lo, hi): st.floats(lo, hi) for lo, hi in [(0, 1), (0, 2), (0, 3), (0, 0.99)]}


def number(draw: st.DrawFn, lo: int, hi: int, noise: int, pair: bool = True) -> Any:
    """Mostly a whole number in [lo, hi]; sometimes a [height, width] pair; `noise`% something odd."""
    r = draw(PERCENT)
    if r < 100 - noise - (5 if pair else 0):
        return draw(INTS[lo, hi])
    if r < 100 - noise:
        return [draw(INTS[lo, hi]), draw(INTS[lo, hi])]
    return draw(WEIRD)


def real(draw: st.DrawFn, lo: float, hi: float, noise: int) -> Any:
    return draw(FLOATS[lo, hi]) if draw(PERCENT) < 100 - noise else draw(WEIRD)


def maybe_name(draw: st.DrawFn, noise: int) -> dict:
    r = draw(PERCENT)
    if r < 75:
        return {}
    return {"name": draw(PLAIN_NAME if r < 100 - noise else WEIRD_NAME)}


def optional(draw: st.DrawFn, d: dict, **fields: Any) -> None:
    """Each field (a function of draw) present or left to its default."""
    for key, make in fields.items():
        if draw(COIN):
            d[key] = make()


def leaf(draw: st.DrawFn, noise: int, channels: list[int]) -> dict:
    """A layer that keeps a volume a volume; `channels` (a one-item list) follows the depth."""
    kind = draw(LEAF_KINDS)
    d: dict[str, Any] = {"type": kind, **maybe_name(draw, noise)}
    num = lambda lo, hi, pair=True: lambda: number(draw, lo, hi, noise, pair)
    flt = lambda lo, hi: lambda: real(draw, lo, hi, noise)
    if kind == "conv":
        d["out_channels"] = out = number(draw, 1, 16, noise, pair=False)
        optional(
            draw,
            d,
            kernel=num(1, 5),
            stride=num(1, 3),
            padding=num(0, 2),
            dilation=num(1, 2),
            groups=num(1, 2, False),
            bias=lambda: draw(COIN),
        )
        if isinstance(out, int) and out > 0:
            channels[0] = out
    elif kind in ("maxpool", "avgpool"):
        d["kernel"] = number(draw, 1, 3, noise)
        optional(draw, d, stride=num(1, 3), padding=num(0, 1), ceil_mode=lambda: draw(COIN))
    elif kind == "adaptiveavgpool":
        optional(draw, d, output_size=num(1, 8))
    elif kind == "lrn":
        optional(draw, d, size=num(1, 7, False), alpha=flt(0, 1), beta=flt(0, 2), k=flt(0, 3))
    elif kind == "batchnorm":
        optional(draw, d, eps=flt(0, 1), momentum=flt(0, 1))
    elif kind == "dropout":
        optional(draw, d, p=flt(0, 0.99))
    return d


def features(draw: st.DrawFn, noise: int, channels: list[int], depth: int, max_size: int) -> list:
    """Spatial layers and joins: block, concat (branches that keep the size), residual."""
    out = []
    for _ in range(draw(INTS[0, 9]) * max_size // 9):
        r = draw(PERCENT)
        if depth >= 2 or r < 82:
            out.append(leaf(draw, noise, channels))
        elif r < 88:
            inner = features(draw, noise, channels, depth + 1, 3) or [{"type": "relu"}]
            out.append({"type": "block", **maybe_name(draw, noise), "layers": inner})
        elif r < 94:
            branches, total = [], 0
            for i in range(draw(INTS[1, 3])):
                p, o = draw(INTS[0, 2]), draw(INTS[1, 8])
                total += o
                layers = [{"type": "conv", "out_channels": o, "kernel": 2 * p + 1, "padding": p}]
                if draw(COIN):
                    layers += features(draw, noise, [o], depth + 1, 2)
                form = draw(INTS[0, 2])  # a bare list, {layers}, {name, layers}
                branches.append(
                    layers
                    if form == 0
                    else {"layers": layers}
                    if form == 1
                    else {"name": f"b{i}", "layers": layers}
                )
            out.append({"type": "concat", **maybe_name(draw, noise), "branches": branches})
            channels[0] = total
        else:
            c = channels[0]
            body = [{"type": "conv", "out_channels": c, "kernel": 3, "padding": 1}, {"type": "batchnorm"}]
            d: dict[str, Any] = {"type": "residual", **maybe_name(draw, noise), "body": {"layers": body}}
            s = draw(INTS[0, 3])
            if s == 1:
                d["shortcut"] = {"layers": [{"type": "conv", "out_channels": c, "kernel": 1}]}
            elif s == 2:  # a shortcut that does not match the body
                d["shortcut"] = {"name": "sc", "layers": [{"type": "maxpool", "kernel": 2}]}
            out.append(d)
    return out


def head(draw: st.DrawFn, noise: int) -> list:
    layers: list[dict] = [{"type": "flatten", **maybe_name(draw, noise)}]
    for _ in range(draw(INTS[0, 2])):
        layers.append(
            {"type": "linear", **maybe_name(draw, noise), "out_features": number(draw, 1, 64, noise)}
        )
        for _ in range(draw(INTS[0, 2])):
            layers.append({"type": "relu" if draw(COIN) else "dropout"})
    last = {"type": "linear", "out_features": number(draw, 1, 10, noise, pair=False)}
    optional(draw, last, bias=lambda: draw(COIN))
    return layers + [last]


ABSURD_INPUTS = [[3, 0, 0], [0, 8, 8], [3, 1, 1], [1, 1, 1], [3, 10**6, 10**6], [3, 10**9, 10**9]]
ABSURD_INPUTS += [[10**6, 1, 1], [3, 2**63, 2**63], [3, 10**400, 10**400], [3, -8, 8], [1, 1], [3, 8, 8, 8]]
ABSURD_INPUTS += [[], "3x8x8", "224", "0", "-1", "abc", "3x8x8x8", "3×16×16", 224, None, {"c": 3}]
ABSURD_INPUTS += [[3.0, 8, 8], [True, 8, 8], [3, "8", 8], [3, None, 8], [3, [8], 8]]
ABSURD_INPUT = st.sampled_from(ABSURD_INPUTS).map(copy.deepcopy)  # later changes must not reach these
TYPOS = ["convolution", "Conv", "maxpol", "", "conv2d", "relu ", "Linear", "fc", "pool", "layer", "network"]
UNKNOWN_TYPES = st.one_of(
    st.sampled_from([*TYPOS, None, 3, True, 1.5]),
    st.text(max_size=8),
    st.lists(st.text(max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
UNKNOWN_FIELDS = st.one_of(
    st.sampled_from(["filters", "kernal", "out_channel", "Stride", "type "]),
    st.text(max_size=5),
    st.integers(),
    st.none(),
)
FIELD_NAMES = "type name out_channels kernel stride padding groups dilation bias ceil_mode output_size"
FIELD_NAMES += " size alpha beta k eps momentum p out_features layers branches body shortcut"
MUTATIONS = "field field field drop unknown_field unknown_type duplicate name name input input drop_top"
MUTATIONS += " top_unknown nest top_type layers_type info join shuffle garbage_layer"
FIELD_NAME, MUTATION = st.sampled_from(FIELD_NAMES.split()), st.sampled_from(MUTATIONS.split())
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
NOT_A_DOCUMENT = st.one_of(st.text(max_size=5), st.integers(), st.none(), JSON_VALUES)
TOP_KEYS = st.sampled_from(["name", "input", "layers", "info"])
NEW_TOP_KEYS = st.one_of(st.sampled_from(["layer", "inputs", "Layers"]), st.integers(), st.none())
BAD_LAYER_LISTS = st.sampled_from(
    [{}, "relu", [], None, [None], [[{"type": "relu"}]], [1], {"type": "relu"}, [{}], [{"name": "x"}]]
).map(copy.deepcopy)
INFO_FIELDS = ("title", "year", "paper", "result", "notes", "mean", "std")
BAD_INFO = st.one_of(
    st.fixed_dictionaries({}, optional={k: WEIRD for k in INFO_FIELDS}),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    WEIRD,
)
BAD_JOIN_KEYS = st.sampled_from(["layers", "branches", "body", "shortcut"])
BAD_JOIN_PARTS = st.sampled_from([
    [], {}, None, [{"layers": []}], [{"name": "a", "layers": [{"type": "relu"}]}] * 2, [{"type": "relu"}],
    {"name": "body", "layers": [{"type": "relu"}]}, {"layers": "relu"}, {"layers": [{"type": "flatten"}]},
    [{"name": "a.b", "layers": [{"type": "relu"}]}], {"name": "x", "layers": [{"type": "relu"}], "extra": 1},
    False, "x",
]).map(copy.deepcopy)  # fmt: skip


def _layer_lists(doc: Any) -> list[list]:
    """Every list of layers in a document (top level, blocks, branches, bodies, shortcuts)."""
    lists = []
    for d in _all_dicts(doc):
        for key in ("layers", "branches"):
            if isinstance(d.get(key), list):
                lists.append(d[key])
                if key == "branches":
                    lists += [b for b in d[key] if isinstance(b, list)]
    return [x for x in lists if x]


def pick(draw: st.DrawFn, items: list) -> Any:
    return items[draw(st.integers(0, len(items) - 1))]


def mutate(draw: st.DrawFn, doc: dict, max_nest: int) -> Any:
    """One change that a person (or a broken tool) could make to a spec file."""
    lists = _layer_lists(doc)
    layers = [x for x in _all_dicts(doc.get("layers")) if "type" in x]
    how = draw(MUTATION)
    if how in ("field", "drop", "unknown_field", "unknown_type", "name", "join") and not layers:
        how = "input"
    if how in ("duplicate", "shuffle", "garbage_layer") and not lists:
        how = "input"
    event(f"mutation: {how}")
    if how == "field":
        pick(draw, layers)[draw(FIELD_NAME)] = draw(WEIRD)
    elif how == "drop":
        layer = pick(draw, layers)
        layer.pop(pick(draw, sorted(layer, key=str)), None)
    elif how == "unknown_field":
        pick(draw, layers)[draw(UNKNOWN_FIELDS)] = draw(INTS[0, 3])
    elif how == "unknown_type":
        pick(draw, layers)["type"] = draw(UNKNOWN_TYPES)
    elif how == "duplicate":  # the same name twice at one level
        target = pick(draw, lists)
        item = pick(draw, target)
        if isinstance(item, dict):
            item.setdefault("name", "twin")
            item = dict(item)
        target.append(item)
    elif how == "name":
        pick(draw, layers)["name"] = draw(WEIRD_NAME)
    elif how == "input":
        doc["input"] = draw(ABSURD_INPUT)
    elif how == "drop_top":
        doc.pop(draw(TOP_KEYS), None)
    elif how == "top_unknown":
        doc[draw(NEW_TOP_KEYS)] = 1
    elif how == "nest":
        for _ in range(max_nest if draw(INTS[0, 9]) == 0 else draw(st.integers(1, max_nest))):
            doc["layers"] = [{"type": "block", "layers": doc.get("layers") or [{"type": "relu"}]}]
    elif how == "top_type":
        return [doc] if draw(COIN) else draw(NOT_A_DOCUMENT)
    elif how == "layers_type":
        doc["layers"] = draw(BAD_LAYER_LISTS)
    elif how == "info":
        doc["info"] = draw(BAD_INFO)
    elif how == "join":
        joins = [x for x in layers if x.get("type") in ("concat", "residual", "block")]
        if joins:
            pick(draw, joins)[draw(BAD_JOIN_KEYS)] = draw(BAD_JOIN_PARTS)
    elif how == "shuffle":
        target = pick(draw, lists)
        target[:] = draw(st.permutations(target))
    elif how == "garbage_layer":
        target = pick(draw, lists)
        target.insert(draw(st.integers(0, len(target))), draw(JSON_VALUES))
    return doc


@st.composite
def documents(draw: st.DrawFn, noise: int = 3, max_mutations: int = 1, max_nest: int = 40) -> Any:
    """A spec document: mostly a plausible network, then up to `max_mutations` changes."""
    channels = [draw(INTS[1, 4])]
    h = draw(INTS[1, 64])
    w = h if draw(INTS[0, 9]) < 7 else draw(INTS[1, 64])
    r = draw(PERCENT)
    if r < 85:
        shape: Any = [channels[0], h, w]
    elif r < 92:
        shape = f"{channels[0]}x{h}x{w}" if draw(COIN) else str(h)
        channels[0] = channels[0] if "x" in shape else 3
    else:
        shape = draw(ABSURD_INPUT)
    layers = features(draw, noise, channels, 0, 6)
    if draw(INTS[0, 9]) < 7:
        layers += head(draw, noise)
    doc: dict[Any, Any] = {"input": shape, "layers": layers or [{"type": "relu"}]}
    if draw(COIN):
        doc["name"] = draw(PLAIN_NAME if draw(PERCENT) < 100 - noise else WEIRD_NAME)
    if draw(INTS[0, 9]) == 0:
        doc["info"] = {"title": "t", "year": 2012, "paper": "p", "mean": [0.5] * 3, "std": [0.2] * 3}
    out: Any = doc
    for _ in range(draw(st.integers(0, max_mutations))):
        if not isinstance(out, dict):
            break
        out = mutate(draw, out, max_nest)
    return out


# ---------------------------------------------------------------------------------------------------
# The property: the analyzer and every renderer either work or raise an IlsvrcError


def analyse_and_render(doc: Any) -> list:
    """from_dict, analyze twice, every table format and the JSON summary; returns the reports."""
    net = specfile.from_dict(doc)
    reports = [analyze(net), analyze(net, batch=3, dtype="float16")]
    for report in reports:
        table = render.summary_table(report, derive=True)
        for fmt in TABLE_FORMATS:
            assert render.render(table, fmt)
        text = json.dumps(render.summary_json(report))
        assert json.dumps(json.loads(text)) == text  # round-trips (NaN-safe: compares the text)
    return reports


def same(a: int, b: int) -> bool:
    """Counts are whole numbers, equal exactly (sizes are checked to be ints: no float sums)."""
    return isinstance(a, int) and isinstance(b, int) and a == b


def check_invariants(reports: list) -> None:
    report = reports[0]
    leaves = report.leaves
    assert same(report.params, sum(r.params for r in leaves)) and report.params == reports[1].params
    assert same(report.macs, sum(r.macs for r in leaves)) and report.macs == reports[1].macs
    for i, row in enumerate(report.rows):
        if row.container:  # a join carries the sums of the leaves below it
            below = [r for r in report.rows[i + 1 :] if r.name.startswith(row.name + ".") and not r.container]
            assert same(row.params, sum(r.params for r in below)), row.name
    for row in leaves:
        out = row.output
        assert out.channels > 0 and out.height > 0 and out.width > 0, (row.name, out)
    data = render.summary_json(report)
    assert data["totals"]["params"] == report.params
    assert len(data["layers"]) == len(report.rows)


def check_document(doc: Any) -> None:
    """Run one document; fail on anything but success or an IlsvrcError (and on too much work)."""
    try:
        with work_budget(lines_for(doc)):
            reports = analyse_and_render(doc)
            check_invariants(reports)
    except IlsvrcError as exc:
        event(f"clean error: {type(exc).__name__}")
        return
    event("analysed")


# Each property runs twice: a few hundred examples in the default suite, and at length (the numbers
# that found the bugs) in the slow set. Both draw their examples from the same strategies.
PLAUSIBLE = documents(noise=3, max_mutations=1)
MUTATED = documents(noise=15, max_mutations=3, max_nest=60) | JSON_VALUES


@settings(max_examples=300, **FUZZ)
@given(PLAUSIBLE)
def test_plausible_specs_analyse_or_fail_cleanly(doc: Any) -> None:
    check_document(doc)


@pytest.mark.slow
@settings(max_examples=5000, **FUZZ)
@given(PLAUSIBLE)
def test_plausible_specs_analyse_or_fail_cleanly_at_length(doc: Any) -> None:
    check_document(doc)


@settings(max_examples=300, **FUZZ)
@given(MUTATED)
def test_mutated_specs_analyse_or_fail_cleanly(doc: Any) -> None:
    check_document(doc)


@pytest.mark.slow
@settings(max_examples=5000, **FUZZ)
@given(MUTATED)
def test_mutated_specs_analyse_or_fail_cleanly_at_length(doc: Any) -> None:
    check_document(doc)


# ---------------------------------------------------------------------------------------------------
# The command line, in-process: exit code 0 or 2, one paragraph on stderr, no traceback

INPUTS = ["224", "3x32x32", "3x8x8", "1x16x16", "0", "-5", "3x1x1", "abc", "1x8", "3x8x8x8", "٣x١٦x١٦"]
INPUTS += ["3,16,16", "3×16×16", "3x1000000x1000000", "3 x 16 x 16", "", "x", "1_6", "3x" + "1" * 11 + "x9"]
INPUT = st.sampled_from(INPUTS) | st.text(max_size=6)


@st.composite
def summary_flags(draw: st.DrawFn) -> list[str]:
    flags = []
    if draw(st.booleans()):
        flags.append(f"--input={draw(INPUT)}")
    if draw(st.booleans()):
        flags.append(f"--batch={draw(st.sampled_from(['1', '3', '64', '1000000', str(2**63)]))}")
    if draw(st.booleans()):
        flags.append(f"--dtype={draw(st.sampled_from(['float32', 'float16', 'bfloat16', 'float64']))}")
    if draw(st.booleans()):
        flags.append(f"--format={draw(st.sampled_from(render.FORMATS))}")
    flags += [f for f in ("--derive", "--strict") if draw(st.booleans())]
    return draw(st.permutations(flags))


def write_doc(folder: Path, doc: Any, fmt: str, n: int) -> Path:
    path = folder / f"spec{n}.{fmt}"
    text = json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc, allow_unicode=fmt == "yaml")
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture, lines: int) -> int:
    """main(argv) within a budget of `lines` lines of ilsvrc; checks the exit code and stderr."""
    capsys.readouterr()
    with work_budget(lines):
        code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.startswith("ilsvrc: error: "), err
        assert "Traceback" not in err
        assert "\n" not in err.rstrip("\n"), f"not one paragraph: {err!r}"
        event("exit 2")
    else:
        assert out and not err, err
        if "--format=json" in argv:
            json.loads(out)
        event("exit 0")
    return code


_counter = iter(range(10**9))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


SUMMARY_CASES = dict(
    doc=documents(noise=8, max_mutations=2, max_nest=20),
    fmt=st.sampled_from(["yaml", "yml", "json"]),
    flags=summary_flags(),
)


def summary_of_a_file(doc: Any, fmt: str, flags: list[str], capsys, folder: Path) -> None:
    path = write_doc(folder, doc, fmt, next(_counter))
    run_cli(["summary", str(path), *flags], capsys, cli_lines_for(doc))


@settings(max_examples=60, **FUZZ_WITH_FIXTURES)
@given(**SUMMARY_CASES)
def test_cli_summary_of_generated_files(doc: Any, fmt: str, flags: list[str], capsys, fuzz_dir) -> None:
    summary_of_a_file(doc, fmt, flags, capsys, fuzz_dir)


@pytest.mark.slow
@settings(max_examples=300, **FUZZ_WITH_FIXTURES)
@given(**SUMMARY_CASES)
def test_cli_summary_of_generated_files_at_length(
    doc: Any, fmt: str, flags: list[str], capsys, fuzz_dir
) -> None:
    summary_of_a_file(doc, fmt, flags, capsys, fuzz_dir)


ZOO = list_models()
BAD_SOURCES = ["alexnet2", "vgg", "VGG16", "", "*", "nope.yaml", "dir/nope.json", "../alexnet"]


ZOO_LINES = 5_000_000  # the work budget of a zoo network in `compare` (VGG19 at most about 2,000,000 lines)


@st.composite
def model_source(draw: st.DrawFn, folder: Path) -> tuple[str, int]:
    """A network to compare, and its share of the work budget."""
    r = draw(st.integers(0, 9))
    if r < 5:
        return draw(st.sampled_from(ZOO)), ZOO_LINES
    if r < 8:
        doc = draw(documents(noise=5, max_mutations=1, max_nest=10))
        fmt = draw(st.sampled_from(["yaml", "json"]))
        return str(write_doc(folder, doc, fmt, next(_counter))), cli_lines_for(doc)
    return draw(st.sampled_from(BAD_SOURCES)), lines_for()  # the fixed work alone


def compare_a_pair(data: st.DataObject, capsys, folder: Path) -> None:
    (a, lines_a), (b, lines_b) = data.draw(model_source(folder), "a"), data.draw(model_source(folder), "b")
    flags = [f for f in data.draw(summary_flags(), "flags") if f not in ("--derive", "--strict")]
    run_cli(["compare", a, b, *flags], capsys, lines_a + lines_b)


@settings(max_examples=40, **FUZZ_WITH_FIXTURES)
@given(data=st.data())
def test_cli_compare_of_random_pairs(data: st.DataObject, capsys, fuzz_dir) -> None:
    compare_a_pair(data, capsys, fuzz_dir)


@pytest.mark.slow
@settings(max_examples=150, **FUZZ_WITH_FIXTURES)
@given(data=st.data())
def test_cli_compare_of_random_pairs_at_length(data: st.DataObject, capsys, fuzz_dir) -> None:
    compare_a_pair(data, capsys, fuzz_dir)


@pytest.mark.parametrize(
    "argv",
    [
        ["summary", "alexnet", "--batch", "0"],
        ["summary", "alexnet", "--batch", "x"],
        ["summary", "alexnet", "--dtype", "int8"],
        ["summary", "alexnet", "--format", "yaml"],
        ["summary"],
        ["compare", "alexnet"],
    ],
)
def test_arguments_argparse_refuses_exit_2(argv: list[str], capsys) -> None:
    """argparse's own refusals exit with code 2 too (by SystemExit), in the same one-paragraph form."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ilsvrc: error: ") and err.count("\n") == 1 and "--help" in err, err


# ---------------------------------------------------------------------------------------------------
# parse_shape


SHAPE_TEXT = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,12}([x×,X]-?[0-9]{1,12}){0,3}\Z"),
    st.text(alphabet="0123456789x×,X -_+.٣e", max_size=12),
    st.text(max_size=10),
)


SHAPE_LINES = 2_000  # lines of ilsvrc to read one input size (about 100 do)


SHAPES = SHAPE_TEXT | st.integers() | st.none() | st.floats()
SEPARATED = (st.lists(st.integers(-3, 10**12), min_size=1, max_size=4), st.sampled_from(["x", "×", ",", "X"]))


def three_positive_numbers_or_a_spec_error(text: Any) -> None:
    try:
        with work_budget(SHAPE_LINES):
            shape = specfile.parse_shape(text)
    except SpecError:
        return
    assert len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape), shape
    assert specfile.parse_shape("x".join(map(str, shape))) == shape


@settings(max_examples=300, **FUZZ)
@given(SHAPES)
def test_parse_shape_gives_three_positive_numbers_or_a_spec_error(text: Any) -> None:
    three_positive_numbers_or_a_spec_error(text)


@pytest.mark.slow
@settings(max_examples=2000, **FUZZ)
@given(SHAPES)
def test_parse_shape_gives_three_positive_numbers_or_a_spec_error_at_length(text: Any) -> None:
    three_positive_numbers_or_a_spec_error(text)


@settings(max_examples=100, **FUZZ)
@given(*SEPARATED)
def test_parse_shape_reads_what_it_is_told(numbers: list[int], sep: str) -> None:
    reads_what_it_is_told(numbers, sep)


@pytest.mark.slow
@settings(max_examples=500, **FUZZ)
@given(*SEPARATED)
def test_parse_shape_reads_what_it_is_told_at_length(numbers: list[int], sep: str) -> None:
    reads_what_it_is_told(numbers, sep)


def reads_what_it_is_told(numbers: list[int], sep: str) -> None:
    text = sep.join(map(str, numbers))
    expected = {1: [3, *numbers * 2], 2: [3, *numbers], 3: numbers}.get(len(numbers))
    if expected is None or any(n <= 0 for n in expected):
        with pytest.raises(SpecError):
            specfile.parse_shape(text)
    else:
        assert specfile.parse_shape(text) == expected


# ---------------------------------------------------------------------------------------------------
# Garbage files


def _laughs(levels: int = 9) -> str:
    """The billion laughs as YAML anchors: `levels` lists of 9 aliases of the one before."""
    inner = '&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
    for i in range(1, levels):
        inner = f"&a{i} [{inner}, " + ", ".join([f"*a{i - 1}"] * 8) + "]"
    return inner


def _block_bomb(levels: int, width: int = 10) -> str:
    """Aliases of blocks of aliases: a file of a few lines holding width**levels layers."""
    lines = ["input: [3, 8, 8]", "layers:", "  - &l0 {type: relu}"]
    for k in range(1, levels + 1):
        lines.append(f"  - &l{k} {{type: block, layers: [" + ", ".join([f"*l{k - 1}"] * width) + "]}")
    return "\n".join(lines) + "\n"


def _deep_blocks(depth: int) -> str:
    return "input: [3, 8, 8]\nlayers: " + "[{type: block, layers: " * depth + "[{type: relu}]" + "}]" * depth


GARBAGE_FILES = {  # file name -> content; every one must give exit code 2 quickly
    "binary.yaml": bytes(range(256)) * 8,
    "latin1.yaml": "name: caf\xe9\ninput: [3, 8, 8]\nlayers: [{type: relu}]\n".encode("latin-1"),
    "nul.yaml": b"name: x\x00\ninput: [3, 8, 8]\n",
    "empty.yaml": b"",
    "empty.json": b"",
    "blank.yaml": b"  \n\n\t\n",
    "null.yaml": b"null\n",
    "list.json": b"[1, 2, 3]",
    "number.yaml": b"42",
    "python-tag.yaml": b"!!python/object/apply:os.system ['echo hi']\n",
    "laughs-top-level.yaml": ("a: " + _laughs() + "\n").encode(),
    "laughs-in-layers.yaml": ("input: [3, 8, 8]\nlayers: " + _laughs() + "\n").encode(),
    "truncated.json": b'{"input": [3, 8, 8], "layers": [{"type": "re',
    "tabs.yaml": b"input: [3, 8, 8]\nlayers:\n\t- {type: relu}\n",
    "duplicate-keys.json": b'{"input": [3, 8, 8], "input": [3, 9, 9], "layers": [], "layers": []}',
}


@pytest.mark.parametrize("name", sorted(GARBAGE_FILES))
def test_garbage_files_are_a_clean_error(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(GARBAGE_FILES[name])
    assert_clean_exit_2(["summary", str(path)])  # in a child: the bombs must not take this process


def test_a_directory_or_a_missing_file_is_a_clean_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "dir.yaml").mkdir()
    for path in (tmp_path / "dir.yaml", tmp_path / "missing.json", tmp_path / "no" / "such.yml"):
        assert main(["summary", str(path)]) == 2
        assert capsys.readouterr().err.startswith("ilsvrc: error: ")


def test_a_valid_spec_file_with_odd_but_fine_content_works(tmp_path: Path, capsys) -> None:
    """Unicode in the network's name, a BOM-free UTF-8 file, a string input, a one-layer network."""
    path = tmp_path / "ünï.yaml"
    path.write_text("name: réseau 名前\ninput: '1x1x1'\nlayers: [{type: flatten}]\n", encoding="utf-8")
    assert main(["summary", str(path), "--format=json"]) == 0
    assert json.loads(capsys.readouterr().out)["network"] == "réseau 名前"


# ---------------------------------------------------------------------------------------------------
# The crashes the fuzzing found, one minimal input each (all fixed; each test keeps its fix)


def assert_clean(doc: Any) -> None:
    """Analyse and render `doc` within its budget of work: success or an IlsvrcError, nothing else."""
    with work_budget(lines_for(doc)):
        try:
            analyse_and_render(doc)
        except IlsvrcError:
            pass


def assert_refused(doc: Any, match: str) -> None:
    """Reading `doc` is refused within its budget of work, with a SpecError whose message matches `match`."""
    with work_budget(lines_for(doc)), pytest.raises(SpecError, match=match):
        specfile.from_dict(doc)


def doc_with(*layers: dict, shape: Any = (3, 8, 8), **top: Any) -> dict:
    return {"input": list(shape), "layers": list(layers), **top}


FC = {"type": "flatten"}


@pytest.mark.parametrize(
    "layer,field",
    [
        ({"type": "linear", "out_features": [1, 1]}, "out_features"),  # was: a tuple of 2 * n_in items
        ({"type": "linear", "out_features": 2.5}, "out_features"),  # was: float parameter counts
        ({"type": "linear", "out_features": float("inf")}, "out_features"),  # was: OverflowError in memory
        ({"type": "linear", "out_features": float("nan")}, "out_features"),
        ({"type": "linear", "out_features": True}, "out_features"),
        ({"type": "conv", "out_channels": 2.0}, "out_channels"),
        ({"type": "conv", "groups": [2]}, "groups"),
        ({"type": "lrn", "size": 5.5}, "size"),
        ({"type": "conv", "kernel": 2**63}, "kernel"),  # was: OverflowError in float arithmetic
        ({"type": "conv", "out_channels": 10**400}, "out_channels"),
        ({"type": "conv", "stride": 10**400, "kernel": 1}, "stride"),
        ({"type": "adaptiveavgpool", "output_size": [1, 2**64]}, "output_size"),
    ],
)
def test_sizes_must_be_whole_numbers_within_int64(layer: dict, field: str) -> None:
    assert_refused(doc_with(FC, layer) if layer["type"] == "linear" else doc_with(layer), field)


@pytest.mark.parametrize(
    "layer,field",
    [
        ({"type": "lrn", "alpha": "x"}, "alpha"),  # was: ValueError formatting the formula with :g
        ({"type": "lrn", "beta": float("nan")}, "beta"),
        ({"type": "lrn", "k": 0}, "k"),
        ({"type": "batchnorm", "eps": None}, "eps"),
        ({"type": "batchnorm", "momentum": 2}, "momentum"),
        ({"type": "dropout", "p": float("nan")}, "p"),
        ({"type": "dropout", "p": "0.5"}, "p"),
        ({"type": "conv", "bias": "no"}, "bias"),
        ({"type": "maxpool", "ceil_mode": 1}, "ceil_mode"),
    ],
)
def test_constants_and_flags_are_checked(layer: dict, field: str) -> None:
    assert_refused(doc_with(layer), field)


def test_batchnorm_momentum_may_be_null() -> None:
    """torch's cumulative average: momentum None is a documented choice, not an error."""
    net = specfile.from_dict(doc_with({"type": "batchnorm", "momentum": None}))
    assert net.layers[0].momentum is None


@pytest.mark.parametrize(
    "info,field",
    [
        ({"mean": None}, "mean"),  # was: TypeError in summary_json
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"std": [0.2, 0.0, 0.2]}, "std"),
        ({"year": "2012"}, "year"),
        ({"notes": ["a"]}, "notes"),
    ],
)
def test_info_values_are_checked(info: dict, field: str) -> None:
    assert_refused(doc_with({"type": "relu"}, info=info), field)


@pytest.mark.parametrize("info", ["{year: 2012-01-01}", "{title: !!binary aGk=}"], ids=["date", "binary"])
def test_info_yaml_dates_are_refused(info: str, tmp_path: Path, capsys) -> None:
    # `2012-01-01` is a datetime.date to yaml.safe_load, `!!binary` bytes: they used to reach json.dumps
    path = tmp_path / "info.yaml"
    path.write_text(f"input: [3, 8, 8]\nlayers: [{{type: relu}}]\ninfo: {info}\n")
    assert main(["summary", str(path), "--format", "json"]) == 2
    assert "info:" in capsys.readouterr().err


def test_billion_laughs_in_info_is_refused(tmp_path: Path) -> None:
    # yaml.safe_load keeps aliases shared (cheap); formatting info.notes with str() used to expand
    # 9**9 strings (57 s, then MemoryError). The document's expanded size is now counted first.
    path = tmp_path / "laughs.yaml"
    path.write_text("input: [3, 8, 8]\nlayers: [{type: relu}]\ninfo:\n  notes: " + _laughs() + "\n")
    assert_clean_exit_2(["summary", str(path)])


LAUGHS_IN = {
    "input": "input: {bomb}\nlayers: [{{type: relu}}]\n",
    "kernel": "input: [3, 8, 8]\nlayers: [{{type: conv, kernel: {bomb}}}]\n",
    "name": "input: [3, 8, 8]\nlayers: [{{type: relu, name: {bomb}}}]\n",
}


@pytest.mark.parametrize("where", sorted(LAUGHS_IN))
def test_billion_laughs_in_a_refused_value_is_a_quick_error(where: str, tmp_path: Path) -> None:
    path = tmp_path / f"laughs-{where}.yaml"
    path.write_text(LAUGHS_IN[where].format(bomb=_laughs()))
    assert_clean_exit_2(["summary", str(path)])


QUOTE_A_BOMB = """
from ilsvrc.errors import SpecError
from ilsvrc.networks.spec import Conv, Network
bomb = ["lol"] * 9
for _ in range(9):
    bomb = [bomb] * 9
try:
    Network("x", (3, 8, 8), (Conv("conv1", kernel=bomb),))
    code = 0
except SpecError as exc:
    print(len(str(exc)), file=sys.stderr)
    code = 2
"""


def test_messages_quote_huge_values_briefly() -> None:
    """Built in Python (no file, no size count), a huge value is still quoted in a few characters.
    In a child under a memory ceiling: quoting all 9**10 items would expand them in C (a MemoryError)."""
    code, err = run_isolated([], body=QUOTE_A_BOMB)
    assert code == 2 and int(err) < 400, (code, err[-2000:])


def test_block_bomb_is_refused(tmp_path: Path) -> None:
    # 8 lines of YAML, 10**8 layers once the aliases are expanded (from_dict used to expand them all)
    path = tmp_path / "bomb.yaml"
    path.write_text(_block_bomb(8))
    assert_clean_exit_2(["summary", str(path)])


def test_a_few_aliases_are_fine(tmp_path: Path, capsys) -> None:
    """Aliases are not refused as such: a stage written once and used three times reads as three."""
    path = tmp_path / "aliases.yaml"
    path.write_text(_block_bomb(2, width=3))
    assert main(["summary", str(path), "--format", "json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert sum(row["type"] == "relu" for row in layers) == 1 + 3 + 9


def test_a_file_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("input: [3, 8, 8]\nlayers: &l [{type: block, layers: *l}]\n")
    assert_clean_exit_2(["summary", str(path)])


class CountedName(str):
    """A layer name that counts how often it is hashed or compared, in C too (list.count, `in`), and
    stops the work (`TooMuchWork`) past `limit` uses."""

    uses = 0
    limit = 0

    def _use(self) -> None:
        CountedName.uses += 1
        if CountedName.uses > CountedName.limit:
            raise TooMuchWork(
                f"the layer names were hashed or compared more than {CountedName.limit:,} times"
            )

    def __hash__(self) -> int:
        self._use()
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        self._use()
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._use()
        return str.__ne__(self, other)


def work_to_read(n: int, lines: int | None = None, uses: int = 10**9) -> tuple[int, int]:
    """(lines of ilsvrc run, uses of the layers' names) to read n named ReLUs at one level;
    `TooMuchWork` past `lines` lines or `uses` uses."""
    layers = [{"type": "relu", "name": CountedName(f"r{i}")} for i in range(n)]
    CountedName.uses, CountedName.limit = 0, uses
    lines_run, net = count_lines(lambda: specfile.from_dict(doc_with(*layers)), limit=lines)
    assert len(net.layers) == n
    return lines_run, CountedName.uses


def test_many_layers_are_read_in_linear_time() -> None:
    # 20,000 layers at one level: the duplicate-name check was O(n^2) (30,000 took > 10 s). Work
    # counted, not timed: ten times the layers may take ten times the lines of ilsvrc (and a little
    # more), never a hundred times, and a few hashes or comparisons of each name
    lines, _ = work_to_read(1_000)
    lines_10x, uses_10x = work_to_read(10_000, lines=11 * lines, uses=5 * 10_000)
    assert 0 < uses_10x and lines_10x > 9 * lines
    unnamed = doc_with(*[{"type": "relu"}] * 20_000)  # named by type and position: relu1, relu2, ...
    with work_budget(11 * 2 * lines):
        assert len(specfile.from_dict(unnamed).layers) == 20_000


@pytest.mark.parametrize(
    "text,json_format",
    [
        ("[" * 10_000 + "]" * 10_000, False),  # yaml's composer recurses: RecursionError, now caught
        ("[" * 10_000 + "]" * 10_000, True),  # json.loads: RecursionError, not JSONDecodeError
        (_deep_blocks(400), False),  # from_dict / analyze recursed three frames per level
        (_deep_blocks(40), True),  # within Python's limit, but beyond MAX_DEPTH
    ],
    ids=["yaml-lists", "json-lists", "blocks-400", "blocks-40"],
)
def test_deep_nesting_is_a_clean_error(text: str, json_format: bool, tmp_path: Path, capsys) -> None:
    path = tmp_path / ("deep.json" if json_format else "deep.yaml")
    if json_format and text.startswith("input"):
        text = json.dumps(yaml.safe_load(text))
    path.write_text(text)
    with hang_guard():  # a hang guard only: most of the work is the parser's (yaml's, in Python)
        assert main(["summary", str(path)]) == 2
    assert "deep" in capsys.readouterr().err


def test_deep_blocks_are_refused_before_a_deep_walk() -> None:
    # ilsvrc's own part of the above: the nesting is measured from the top and refused past MAX_DEPTH,
    # so 4,000 levels take no more work than 40 (a walk of three frames per level hit Python's
    # recursion limit at 400)
    work = {}
    for depth in (40, 400, 4000):
        layers: list = [{"type": "relu"}]
        for _ in range(depth):
            layers = [{"type": "block", "layers": layers}]
        counter = LineCounter(limit=100_000)
        with counter.active(), pytest.raises(SpecFileError, match="deep"):
            specfile.from_dict({"input": [3, 8, 8], "layers": layers})
        work[depth] = counter.lines
    assert 0 < work[4000] <= 2 * work[40] and work[400] <= 2 * work[40], work


def test_huge_adaptive_output_size_does_not_hang() -> None:
    # _adaptive_bins looped over every output position; now a closed form (checked below)
    doc = doc_with({"type": "adaptiveavgpool", "output_size": 10**18})
    with work_budget(lines_for(doc)):
        report = analyze(specfile.from_dict(doc))
    assert report.rows[0].output.height == 10**18


@given(st.integers(1, 300), st.integers(1, 300))
def test_adaptive_bins_closed_form_matches_the_loop(n: int, out: int) -> None:
    loop = max(-(-((i + 1) * n) // out) - (i * n) // out for i in range(out))
    assert _adaptive_bins(n, out) == loop


def test_huge_stride_does_not_hang() -> None:
    # a non-integer output at a square input asks for a padding fix: that loop ran range(stride + 1)
    assert_clean(doc_with({"type": "conv", "kernel": 1, "stride": 10**9}, shape=(3, 2, 2)))


@given(st.integers(1, 60), st.integers(1, 12), st.integers(0, 3), st.integers(1, 7))
def test_exact_padding_is_the_smallest_that_works(n: int, s: int, p: int, k: int) -> None:
    """The suggested padding is the smallest larger one that makes (W1 - F + 2P) divisible by S."""
    k = min(k, n + 2 * p)
    net = Network("t", (1, n, n), (Conv("c", kernel=k, stride=s, padding=p),))
    report = analyze(net, suggest=False)
    text = _exact_padding(report, "c", net.layers[0])
    fits = [q for q in range(p + 1, p + s + 1) if (n + 2 * q - k) % s == 0]
    if fits:
        assert text.startswith(f"or padding {fits[0]} ")
    else:
        assert text.startswith("no symmetric padding")


def test_from_dict_refuses_a_layer_type_that_is_not_text() -> None:
    # NODE_TYPES.get(['conv']) raised TypeError (unhashable) out of from_dict
    assert_refused(doc_with({"type": ["conv"]}), "unknown layer type")


def test_a_name_with_a_newline_is_refused() -> None:
    # _NAME ended with $, which also matches before a final newline
    assert_refused(doc_with({"type": "relu", "name": "relu1\n"}), "not usable")
