"""The papers, checked: one test per row of docs/papers-checked.md.

GoogLeNet's Table 1 (Szegedy et al. 2014: params and ops of every row) and ResNet's FLOPs (He et al.
2015: Table 1's last row and the figures of its Sections 3.3 and 4.1), each beside the analyzer's exact
figure. `TOOL_GIVES` computes the page's "tool gives" figures; the tests check each row against the
paper's value with the page's tolerance (one unit of the last digit the paper prints) and check the
explanation the page gives where they differ. The last tests keep page and tests in sync.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from ilsvrc import analyze, get_spec
from ilsvrc.analysis.analyzer import Report
from ilsvrc.networks.spec import Conv, Network

PAGE = Path(__file__).resolve().parents[1] / "docs" / "papers-checked.md"
K = 1024  # the unit of GoogLeNet's params column (found from its rows: G02, G12)
M = 10**6  # the unit of its ops column
G = 10**9


@cache
def report(name: str) -> Report:
    return analyze(get_spec(name))


def within(ours: float, printed: str) -> bool:
    """Whether `ours` is within one unit of the last digit of `printed` ('159', '2.7', '3.8')."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(ours - float(printed)) <= 10**-decimals + 1e-9


# --------------------------------------------------------------------------------------------------
# GoogLeNet, Table 1: row id -> (the top-level rows of `googlenet` it covers, params, ops as printed)

TABLE1 = {
    "G01": (("conv1",), "2.7", "34"),
    "G02": (("conv2_reduce", "conv2"), "112", "360"),
    "G03": (("inception3a",), "159", "128"),
    "G04": (("inception3b",), "380", "304"),
    "G05": (("inception4a",), "364", "73"),
    "G06": (("inception4b",), "437", "88"),
    "G07": (("inception4c",), "463", "100"),
    "G08": (("inception4d",), "580", "119"),
    "G09": (("inception4e",), "840", "170"),
    "G10": (("inception5a",), "1072", "54"),
    "G11": (("inception5b",), "1388", "71"),
    "G12": (("fc",), "1000", "1"),
}


def module(row_id: str) -> tuple[int, int, int]:
    """Weights, multiply-adds and output positions (H x W) of a Table 1 row in `googlenet`."""
    names = TABLE1[row_id][0]
    rows = [r for r in report("googlenet").rows if r.depth == 0 and r.name in names]
    assert [r.name for r in rows] == list(names)
    out = rows[-1].output
    return sum(r.weights for r in rows), sum(r.macs for r in rows), out.height * out.width


def verdicts(row_id: str) -> tuple[bool, bool]:
    """(params agree, ops agree) within the tolerance, in the table's units."""
    weights, macs, _ = module(row_id)
    _, params, ops = TABLE1[row_id]
    return within(weights / K, params), within(macs / M, ops)


def implied_by_ops(row_id: str) -> float:
    """The weights (in K) the table's own ops give for a module whose convolutions all run at every
    one of its output positions: ops / positions."""
    _, _, positions = module(row_id)
    return float(TABLE1[row_id][2]) * M / positions / K


def separable_conv1() -> Report:
    """G01's reading: a depthwise 7x7/2 with 8 maps per input channel (24), then a 1x1 to 64, the
    first layer of Google's Inception-v2 code (TF-slim); no biases, as the table counts."""
    return analyze(
        Network(
            "separable-conv1",
            (3, 224, 224),
            (
                Conv("depthwise", 24, 7, stride=2, padding=3, groups=3, bias=False),
                Conv("pointwise", 64, 1, bias=False),
            ),
        )  # fmt: skip
    )


def googlenet_cell(row_id: str) -> str:
    weights, macs, _ = module(row_id)
    return f"`{weights:,}` weights ({weights / K:.1f} K), `{macs:,}` MACs ({macs / M:.1f} M)"


# ResNet's FLOPs (multiply-adds), as printed, and the networks that give them: (v1, v1.5)
FLOPS = {
    "R01": ("1.8", (None, "resnet18")),
    "R02": ("3.6", (None, "resnet34")),
    "R03": ("3.8", ("resnet50-v1", "resnet50")),
    "R04": ("7.6", ("resnet101-v1", "resnet101")),
    "R05": ("11.3", ("resnet152-v1", "resnet152")),
}


def resnet_cell(row_id: str) -> str:
    v1, v15 = FLOPS[row_id][1]
    if v1 is None:
        return f"`{report(v15).macs:,}`"
    return f"v1: `{report(v1).macs:,}`; v1.5: `{report(v15).macs:,}`"


def stride_cost() -> int:
    """What moving the stride from the first 1x1 to the 3x3 costs, from the bottleneck's shapes alone:
    in each of the stages that halve the size (input H = 56, 28, 14; width w = 128, 256, 512 on 4w/2
    input channels), the first 1x1 reduction runs at H x H positions instead of H/2 x H/2."""
    return sum((h * h - (h // 2) ** 2) * w * 2 * w for h, w in ((56, 128), (28, 256), (14, 512)))


def fc_macs(name: str) -> int:
    return sum(r.macs for r in report(name).leaves if r.kind == "linear")


TOOL_GIVES: dict[str, Callable[[], str]] = {
    **{row_id: (lambda row_id=row_id: googlenet_cell(row_id)) for row_id in TABLE1},
    "G13": lambda: f"`{report('googlenet').macs:,}` MACs ({report('googlenet').macs / G:.2f} G)",
    "G14": lambda: f"`{report('alexnet').params / report('googlenet').params:.2f}`",
    **{row_id: (lambda row_id=row_id: resnet_cell(row_id)) for row_id in FLOPS},
    "R06": lambda: f"`{report('vgg19').macs:,}`",
    "R07": lambda: f"`{report('vgg16').macs:,}`",
    "R08": lambda: f"`{100 * report('plain34').macs / report('vgg19').macs:.2f}`",
}

TESTED: set[str] = set()


def row(*ids: str) -> Callable:
    """Mark a test as checking these rows of the page."""
    TESTED.update(ids)
    return lambda fn: fn


# --------------------------------------------------------------------------------------------------
# The page, read back


def page_rows() -> dict[str, dict[str, str]]:
    """Table rows of the page whose first cell is a row id, as {column header: cell}."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "id":
            header = cells
        elif re.fullmatch(r"[GR]\d\d", cells[0]):
            assert cells[0] not in rows, f"row id {cells[0]} appears twice on the page"
            rows[cells[0]] = dict(zip(header, cells))
    return rows


def verdict_cell(row_id: str) -> str:
    cells = page_rows()[row_id]
    return next(v for k, v in cells.items() if k.startswith("agrees?"))


def said(cell: str, what: str = "") -> bool:
    """The page's yes or no for `what` ('params', 'ops', 'v1', 'v1.5'; '' for a single verdict)."""
    pattern = rf"(?:^|, ){re.escape(what)} (?:\*\*)?(yes|no)" if what else r"^(?:\*\*)?(yes|no)"
    found = re.search(pattern, cell)
    assert found, (what, cell)
    return found.group(1) == "yes"


# --------------------------------------------------------------------------------------------------
# GoogLeNet


@row(*TABLE1)
@pytest.mark.parametrize("row_id", sorted(TABLE1))
def test_each_table1_row_agrees_or_not_as_the_page_says(row_id: str) -> None:
    params_ok, ops_ok = verdicts(row_id)
    cell = verdict_cell(row_id)
    assert (said(cell, "params"), said(cell, "ops")) == (params_ok, ops_ok), (row_id, cell)


@row("G02", "G12")
def test_the_tables_K_is_1024_weights_without_biases_and_its_M_a_million_multiply_adds() -> None:
    for row_id, printed in (("G02", 112), ("G12", 1000)):
        weights, macs, _ = module(row_id)
        assert weights == printed * K  # exactly, in units of 1,024
        assert not within(weights / 1000, str(printed))  # in thousands it would be 114.7 and 1,024
    _, macs, _ = module("G02")
    assert within(macs / M, "360") and not within(macs / 2**20, "360")


@row("G01", "G13")
def test_conv1_is_a_separable_7x7_in_the_table_and_a_full_one_in_bvlcs_network() -> None:
    weights, macs, _ = module("G01")
    assert (weights, macs) == (7 * 7 * 3 * 64, 112 * 112 * 64 * 7 * 7 * 3)
    sep = separable_conv1()
    assert (sep.weights, sep.macs) == (7 * 7 * 3 * 8 + 24 * 64, 112 * 112 * (7 * 7 * 3 * 8 + 24 * 64))
    assert within(sep.weights / K, "2.7") and within(sep.macs / M, "34")
    # the paper's budget of 1.5 billion: the whole network with that first layer
    net = report("googlenet")
    assert within(net.macs / G, "1.5") and round(net.macs / G, 2) == 1.58
    assert round((net.macs - macs + sep.macs) / G, 1) == 1.5
    column = sum(int(ops) for _, _, ops in TABLE1.values())
    assert column == 1502 and round(net.aux_macs / M, 1) == 8.4


@row("G03", "G04", "G06")
def test_three_modules_are_one_off_in_the_last_digit() -> None:
    assert [module(r)[0] / K for r in ("G03", "G04", "G06")] == [159.5, 379.0, 438.0]


@row("G05")
def test_4a_params_are_the_tables_own_ops_which_cut_73_6_to_73() -> None:
    weights, macs, _ = module("G05")
    assert round(macs / M, 1) == 73.6 and int(macs / M) == 73
    assert abs(implied_by_ops("G05") - 364) < 0.5  # the table's params: its own (cut) ops / 196
    assert not within(weights / K, "364")


@row("G07", "G08", "G09", "G11")
@pytest.mark.parametrize("row_id", ["G07", "G08", "G09", "G11"])
def test_the_tables_params_disagree_with_its_own_ops_which_ours_agree_with(row_id: str) -> None:
    weights, _, _ = module(row_id)
    assert abs(implied_by_ops(row_id) - weights / K) / (weights / K) < 0.005
    assert not within(weights / K, TABLE1[row_id][1])


@row("G10")
def test_5a_in_the_table_counts_about_5_percent_more_than_its_own_filters() -> None:
    weights, macs, _ = module("G10")
    _, params, ops = TABLE1["G10"]
    assert 1.05 < float(params) / (weights / K) < 1.06 and 1.05 < float(ops) / (macs / M) < 1.06
    assert abs(implied_by_ops("G10") - float(params)) / float(params) < 0.005  # they agree


@row("G14")
def test_alexnet_has_8_7_times_googlenets_parameters_not_12() -> None:
    alexnet, googlenet = report("alexnet"), report("googlenet")
    readings = [alexnet.params / googlenet.params, alexnet.weights / googlenet.weights,
                alexnet.params / googlenet.params_with_aux]  # fmt: skip
    assert [round(r, 1) for r in readings] == [8.7, 8.7, 4.6]
    assert not any(within(r, "12") for r in readings)
    assert round(alexnet.params / 12 / M, 1) == 5.1


# --------------------------------------------------------------------------------------------------
# ResNet


@row(*FLOPS)
@pytest.mark.parametrize("row_id", sorted(FLOPS))
def test_each_flops_figure_agrees_or_not_as_the_page_says(row_id: str) -> None:
    printed, (v1, v15) = FLOPS[row_id]
    cell = verdict_cell(row_id)
    if v1 is None:  # a basic block: one network
        assert said(cell) == within(report(v15).macs / G, printed)
    else:
        assert said(cell, "v1") == within(report(v1).macs / G, printed)
        assert said(cell, "v1.5") == within(report(v15).macs / G, printed)


@row("R01", "R02", "R03", "R04", "R05")
def test_resnets_are_torchvisions_own_figures() -> None:
    """torchvision's weights metadata (read locally, nothing downloaded) states each model's GFLOPS."""
    models = pytest.importorskip("torchvision.models")
    for depth in (18, 34, 50, 101, 152):
        ops = getattr(models, f"ResNet{depth}_Weights").IMAGENET1K_V1.meta["_ops"]
        assert round(report(f"resnet{depth}").macs / G, 3) == ops


@row("R03", "R04", "R05")
def test_v1_5_costs_the_same_231_million_more_at_every_depth() -> None:
    assert stride_cost() == 3 * 77_070_336 == 231_211_008
    for depth in (50, 101, 152):
        assert report(f"resnet{depth}").macs - report(f"resnet{depth}-v1").macs == stride_cost()
        assert report(f"resnet{depth}").params == report(f"resnet{depth}-v1").params


@row("R03", "R04", "R05")
def test_only_resnet50s_3_8_is_not_the_rounding_of_ours() -> None:
    v1 = {d: report(f"resnet{d}-v1").macs / G for d in (50, 101, 152)}
    assert [round(v, 1) for v in v1.values()] == [3.9, 7.6, 11.3]  # the table: 3.8, 7.6, 11.3
    assert [int(v * 10) / 10 for v in v1.values()] == [3.8, 7.5, 11.2]  # cut: only 50 fits
    projections = sum(r.macs for r in report("resnet50-v1").leaves if ".downsample." in r.name)
    assert round((report("resnet50-v1").macs - projections) / G, 2) == 3.50  # option A: no better


@row("R02", "R08")
def test_the_34_layer_3_6_is_the_network_without_projection_shortcuts() -> None:
    resnet34, plain34 = report("resnet34").macs, report("plain34").macs
    assert round(resnet34 / G, 1) == 3.7 and round(plain34 / G, 1) == 3.6
    projections = sum(h * h * w * (w // 2) for h, w in ((28, 128), (14, 256), (7, 512)))  # 1x1, w/2 -> w
    assert projections == 3 * 6_422_528 and resnet34 - plain34 == projections
    assert within(100 * plain34 / report("vgg19").macs, "18")


@row("R06", "R07")
def test_vgg_16_and_19_need_no_one_convention_for_15_3_and_19_6() -> None:
    vgg16, vgg19 = report("vgg16").macs / G, report("vgg19").macs / G
    assert within(vgg19, "19.6") and round(vgg16, 1) == 15.5 and not within(vgg16, "15.3")
    assert fc_macs("vgg16") == fc_macs("vgg19") == 123_633_664
    without_fc = (vgg16 - fc_macs("vgg16") / G, vgg19 - fc_macs("vgg19") / G)
    assert [round(v, 1) for v in without_fc] == [15.3, 19.5]


# --------------------------------------------------------------------------------------------------
# Page and tests in sync


def test_every_row_of_the_page_has_a_tool_figure_and_a_test() -> None:
    ids = set(page_rows())
    assert ids == set(TOOL_GIVES), ids ^ set(TOOL_GIVES)
    assert ids == TESTED, ids ^ TESTED


@pytest.mark.parametrize("row_id", sorted(TOOL_GIVES))
def test_the_pages_tool_column_is_what_the_analyzer_gives(row_id: str) -> None:
    cell = page_rows()[row_id]["tool gives (exact)"]
    assert cell.startswith(TOOL_GIVES[row_id]()), (row_id, cell, TOOL_GIVES[row_id]())


@row("G13", "G14", "R06", "R07", "R08")
@pytest.mark.parametrize("row_id,printed", [("G13", "1.5"), ("G14", "12"), ("R06", "19.6"),
                                            ("R07", "15.3"), ("R08", "18")])  # fmt: skip
def test_single_figures_agree_or_not_as_the_page_says(row_id: str, printed: str) -> None:
    value = {
        "G13": lambda: report("googlenet").macs / G,
        "G14": lambda: report("alexnet").params / report("googlenet").params,
        "R06": lambda: report("vgg19").macs / G,
        "R07": lambda: report("vgg16").macs / G,
        "R08": lambda: 100 * report("plain34").macs / report("vgg19").macs,
    }[row_id]()
    assert said(verdict_cell(row_id)) == within(value, printed)


def test_every_network_the_page_names_is_in_the_zoo() -> None:
    names = set(re.findall(r"`([a-z][a-z0-9-]*\d[a-z0-9-]*)`", PAGE.read_text(encoding="utf-8")))
    assert {"resnet50-v1", "resnet152", "plain34", "vgg16", "vgg19"} <= names
    for name in names:
        get_spec(name)
