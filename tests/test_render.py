"""The number formatters of analysis/render.py, and the figures renderers read from the analysis."""

from __future__ import annotations

import pytest

from ilsvrc import analyze, get_spec
from ilsvrc.analysis import render
from ilsvrc.analysis.compare import compare
from ilsvrc.pictures import draw


@pytest.mark.parametrize(
    "value,digits,text",
    [
        # pictures: 3 significant digits (diagram labels, chart bars and axes)
        (34_944, 3, "34.9K"),  # AlexNet's conv1
        (37_752_832, 3, "37.8M"),  # AlexNet's fc6
        (138_357_544, 3, "138M"),  # VGG16
        (20_000_000, 3, "20M"),  # an axis tick: no trailing zeros
        (999_999, 3, "1M"),  # rounded before the unit is chosen: not "1000K"
        (15_470_264_320, 3, "15.5G"),
        (96, 3, "96"),
        (0, 3, "0"),
        (-2_500, 3, "-2.5K"),
        # tables and pages: 4 significant digits
        (61_100_840, 4, "61.1M"),  # torchvision's AlexNet
        (714_188_480, 4, "714.2M"),
        (1_428_376_960, 4, "1.428G"),
        (15_470_264_320, 4, "15.47G"),
        (9_999_950, 4, "10M"),
        (3 * 10**15, 4, "3000T"),  # past the largest unit: no exponent
        (3 * 10**16, 3, "30000T"),
    ],
)
def test_short_at_the_precisions_of_tables_and_pictures(value: float, digits: int, text: str) -> None:
    assert render.short(value, digits) == text


def test_the_pictures_and_the_tables_use_the_one_formatter() -> None:
    assert render.short(34_944) == "34.9K"  # the pictures' precision is the default
    assert render.PICTURE_DIGITS == 3 and render.TABLE_DIGITS == 4
    assert not hasattr(draw, "short") or draw.short is render.short
    report = analyze(get_spec("alexnet-torchvision"))
    footer = "\n".join(render.summary_footer(report))
    assert f"Total parameters: 61,100,840 ({render.short(61_100_840, 4)})" in footer
    sub = draw._title_texts(report)[1]
    assert f"({render.short(61_100_840, 3)})" in sub and "61.1M" in sub
    with pytest.raises(ValueError):
        render.short(1, 0)


@pytest.mark.parametrize(
    "value,text",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (5 * 2**20, "5.0 MiB"),
        (3 * 2**40, "3.0 TiB"),
        (2**52, "4096.0 TiB"),
    ],  # fmt: skip
)
def test_human_bytes(value: int, text: str) -> None:
    assert render.human_bytes(value) == text


def test_renderers_print_the_figures_the_analysis_gives() -> None:
    report = analyze(get_spec("alexnet"), batch=8, dtype="bfloat16")
    conv1 = next(r for r in report.rows if r.name == "conv1")
    assert report.output_bytes(conv1) == 96 * 55 * 55 * 8 * 2
    assert (report.conv_layers, report.fc_layers, report.weight_layers) == (5, 3, 8)
    assert [r.name for r in report.with_weights()][:2] == ["conv1", "conv2"]
    assert report.flops == 2 * report.macs and report.macs_with_bias_adds == report.macs + report.bias_adds
    assert report.output.elements == 1000
    data = render.summary_json(report)
    assert data["layers"][0]["output_bytes"] == report.output_bytes(report.rows[0])
    assert data["totals"]["flops"] == report.flops
    table = render.summary_table(report)
    assert table.rows[0][9] == render.human_bytes(report.output_bytes(report.rows[0]))
    footer = "\n".join(table.footer)
    assert (
        "= 5 conv + 3 fully connected" in footer and f"(with them: {report.macs_with_bias_adds:,}" in footer
    )


def test_compare_rows_print_the_differences_the_comparison_gives() -> None:
    cmp = compare(analyze(get_spec("zfnet-lecture")), analyze(get_spec("alexnet-lecture")))
    conv3 = next(p for p in cmp.pairs if p.name == "conv3")
    assert conv3.difference("params") == 295_040  # docs/lecture-checked.md, Z09
    table = render.compare_table(cmp)
    row = next(r for r in table.rows if r[1] == "conv3")
    assert row[8] == "+295,040" and row[9] == f"{conv3.difference('macs'):+,}"
    deeper = compare(analyze(get_spec("vgg16")), analyze(get_spec("vgg19")))
    alone = next(p for p in deeper.pairs if p.a is None)  # VGG19's conv3_4: B only
    assert alone.b.name == "conv3_4" and alone.difference("params") == -alone.b.params < 0
