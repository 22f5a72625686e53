"""Pictures of the branched networks (issue 12, item 6): GoogLeNet and ResNet diagrams, charts and reports.

The diagram's structure is checked (the nodes, rows, labels and repeat counts the figure carries), the
charts' bars against the analysis, and every picture for legibility: no label overlaps another or leaves
the picture, and the figure keeps a readable width. Pixels are not compared.
"""

from __future__ import annotations

import math
import re

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ilsvrc import analyze, get_spec
from ilsvrc.cli import main
from ilsvrc.networks.spec import Block, Conv, Flatten, Linear, Network, Residual
from ilsvrc.networks.zoo.resnet import STAGES
from ilsvrc.pictures.charts import chart_bars, chart_figure, is_grouped
from ilsvrc.pictures.draw import AuxHead, Bar, Box, Branches, Repeat, build_nodes, diagram_figure
from ilsvrc.pictures.report import build_page

INCEPTIONS = [f"inception{m}" for m in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]


def every(nodes: list) -> list:
    """The nodes and, depth first, the nodes drawn inside them."""
    out = []
    for node in nodes:
        out.append(node)
        for row in node.inner_rows():
            out += every(row.nodes)
    return out


def svg_texts(path) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())


def corners(text, renderer) -> list[tuple[float, float]]:
    """The four corners of `text`'s box in pixels, turned with the text (a slanted tick label's box is
    not its upright bounding box, which would make neighbours seem to overlap)."""
    angle = text.get_rotation()
    if angle:
        text.set_rotation(0)
    box = text.get_window_extent(renderer)
    points = [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
    if not angle:
        return points
    text.set_rotation(angle)  # matplotlib turns the upright box about the anchor
    ax, ay = text.get_transform().transform(text.get_position())
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(ax + (x - ax) * c - (y - ay) * s, ay + (x - ax) * s + (y - ay) * c) for x, y in points]


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]], slack: float = 0.5) -> bool:
    """Whether two convex quadrilaterals overlap by more than `slack` pixels (separating axes)."""
    for poly in (a, b):
        for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
            nx, ny = y0 - y1, x1 - x0
            length = math.hypot(nx, ny) or 1.0
            pa = [(x * nx + y * ny) / length for x, y in a]
            pb = [(x * nx + y * ny) / length for x, y in b]
            if max(pa) <= min(pb) + slack or max(pb) <= min(pa) + slack:
                return False
    return True


def assert_legible(fig, texts) -> None:
    """No two labels overlap, none leaves the figure."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [(t.get_text(), corners(t, renderer)) for t in texts if t.get_text().strip()]
    width, height = fig.get_size_inches() * fig.dpi
    for i, (text, box) in enumerate(boxes):
        assert all(-1 <= x <= width + 1 and -1 <= y <= height + 1 for x, y in box), text
        for other, other_box in boxes[i + 1 :]:
            assert not overlap(box, other_box), (text, other)


# ---------------------------------------------------------------------------------------------------
# The diagram


def test_resnet152_draws_each_stages_first_block_then_the_identical_rest_once_with_its_count() -> None:
    nodes = build_nodes(analyze(get_spec("resnet152")))
    repeats = [(n.names, n.count) for n in nodes if isinstance(n, Repeat)]
    assert repeats == [
        (("layer1.1", "layer1.2"), 2),
        (("layer2.1", "layer2.7"), 7),
        (("layer3.1", "layer3.35"), 35),
        (("layer4.1", "layer4.2"), 2),
    ]
    firsts = [n for n in nodes if isinstance(n, Branches)]  # each stage's first block changes the volume
    assert [n.name() for n in firsts] == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    assert all(n.labels == ["body", "downsample"] and n.join is None for n in firsts)
    assert [len(r.nodes) for r in firsts[2].rows] == [3, 1]  # 1x1, 3x3, 1x1 beside the projection
    # every block is drawn or counted, once: 1 + 2, 1 + 7, 1 + 35, 1 + 2
    assert len(firsts) + sum(count for _, count in repeats) == sum(STAGES[152][1])
    for repeat in (n for n in nodes if isinstance(n, Repeat)):
        (block,) = repeat.row.nodes  # the repeated block: its body beside the identity, into the sum
        assert isinstance(block, Branches) and block.labels == ["body", "identity"]
        assert block.rows[1].nodes == [] and len(block.rows[0].nodes) == 3
    names = [n.name() for n in nodes]
    assert names[:3] == ["input", "conv1", "maxpool"] and names[-2:] == ["avgpool", "fc"]


def test_the_repeat_label_and_count_are_in_the_picture(tmp_path) -> None:
    out = tmp_path / "resnet152.svg"
    assert main(["draw", "resnet152", "-o", str(out)]) == 0
    texts = svg_texts(out)
    assert "\u00d735" in texts and "layer3.1 \u2013 layer3.35" in texts
    assert {"layer1.0", "layer3.0", "identity", "downsample: 1x1/2", "body: 1x1/1", "+"} <= set(texts)
    assert "152 layers deep" in " ".join(texts)


def test_resnet18s_first_stage_is_one_block_twice_and_the_others_differ() -> None:
    nodes = build_nodes(analyze(get_spec("resnet18")))
    shown = [
        (n.name(), n.count if isinstance(n, Repeat) else 1)
        for n in nodes
        if isinstance(n, (Repeat, Branches))
    ]
    # layer1.0 keeps the volume (64 channels in and out): identical to layer1.1
    assert shown == [
        ("layer1.0 \u2013 layer1.1", 2),
        ("layer2.0", 1),
        ("layer2.1", 1),
        ("layer3.0", 1),
        ("layer3.1", 1),
        ("layer4.0", 1),
        ("layer4.1", 1),
    ]


def test_only_consecutive_modules_with_the_same_layers_on_the_same_volume_are_repeated() -> None:
    def block(name: str, filters: int = 8) -> Block:
        body = Block("body", (Conv("conv", filters, 3, padding=1),))
        return Block(name, (Residual("add", body),))

    # a, b and c: the same layers on the same 16x16x8 volume; d: another kernel; e is a's twin, after d
    other = Block("d", (Residual("add", Block("body", (Conv("conv", 8, 1),))),))
    layers = (Conv("stem", 8, 3, padding=1), block("a"), block("b"), block("c"), other, block("e"))
    net = Network("rep", (3, 16, 16), (*layers, Flatten("flatten"), Linear("fc", 10)))
    nodes = build_nodes(analyze(net))
    kinds = [(type(n).__name__, n.name()) for n in nodes]
    assert kinds == [
        ("Box", "input"),
        ("Box", "stem"),
        ("Repeat", "a \u2013 c"),
        ("Branches", "d"),
        ("Branches", "e"),
        ("Bar", "fc"),
    ]
    # the same layers on another volume are not the same block: stem2 gives 16 channels to f, g reads 8
    first = Block("f", (Conv("conv", 8, 1),))
    net = Network("vol", (3, 16, 16), (Conv("stem", 16, 1), first, Block("g", (Conv("conv", 8, 1),)),
                                       Flatten("flatten"), Linear("fc", 10)))  # fmt: skip
    assert not any(isinstance(n, Repeat) for n in build_nodes(analyze(net)))


def test_a_repeated_deck_keeps_its_label_on_the_arrow_into_its_frame() -> None:
    """plain34's blocks are two 3x3 convolutions, drawn as a deck: the label of the arrow into the deck
    ("3x3/1 p1 x2") was lost inside the frame, where a row's first arrow is not drawn."""
    nodes = build_nodes(analyze(get_spec("plain34")))
    repeats = [(n.names, n.count, n.arrow) for n in nodes if isinstance(n, Repeat)]
    deck = "3x3/1 p1 \u00d72"
    assert repeats == [
        (("layer1.0", "layer1.2"), 3, deck),
        (("layer2.1", "layer2.3"), 3, deck),
        (("layer3.1", "layer3.5"), 5, deck),
        (("layer4.1", "layer4.2"), 2, deck),
    ]
    assert all(n.row.nodes[0].arrow == "" for n in nodes if isinstance(n, Repeat))


def test_the_overlap_check_sees_slanted_labels_as_they_are() -> None:
    square = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]
    assert overlap(square, [(x + 5, y + 5) for x, y in square])
    assert not overlap(square, [(x + 10, y) for x, y in square])  # touching edges
    diamond = [(14.0, 9.0), (19.0, 14.0), (14.0, 19.0), (9.0, 14.0)]  # beside the corner (10, 10)
    assert not overlap(square, diamond)  # their upright bounding boxes overlap
    assert overlap(square, [(x - 5, y) for x, y in diamond])


def test_googlenet_draws_nine_inception_modules_of_four_branches_and_its_two_auxiliary_heads() -> None:
    nodes = build_nodes(analyze(get_spec("googlenet")))
    modules = [n for n in nodes if isinstance(n, Branches)]
    assert [m.join.name() for m in modules] == INCEPTIONS
    for m in modules:
        assert m.labels == ["b1", "b2", "b3", "b4"]
        assert [len(r.nodes) for r in m.rows] == [1, 2, 2, 2]  # 1x1; reduce, 3x3; reduce, 5x5; pool, proj
        assert m.join.volume_text() == str(m.stats[0].output)  # the concatenated volume
    five = modules[0].rows[2].nodes[1]
    assert five.arrow == "5x5/1 p2" and five.volume_text() == "28x28x32"  # the true 5x5 branch
    order = [n.name() for n in nodes]
    assert order.index("aux1") == order.index("inception4a") + 1
    assert order.index("aux2") == order.index("inception4d") + 1
    heads = [n for n in nodes if isinstance(n, AuxHead)]
    for head in heads:
        assert head.weight == 0.3 and "training only" in head.caption()
        assert [type(n) for n in head.row.nodes] == [Box, Box, Bar, Bar]
        assert [n.name() for n in head.row.nodes] == ["pool", "conv", "fc1", "fc2"]
        assert head.row.nodes[2].arrow == "flatten + fc" and head.row.nodes[-1].volume_text() == "1000"
    assert not any(isinstance(n, Repeat) for n in nodes)  # no two inception modules are the same


def test_torchvisions_googlenet_draws_its_5x5_branch_as_the_3x3_it_is() -> None:
    nodes = build_nodes(analyze(get_spec("googlenet-torchvision")))
    modules = [n for n in nodes if isinstance(n, Branches)]
    assert all(m.rows[2].nodes[1].arrow == "3x3/1 p1" for m in modules)
    assert all("BN" in n.extras for n in every(nodes) if isinstance(n, Box) and isinstance(n.layer, Conv))
    assert [n.name() for n in nodes if isinstance(n, AuxHead)] == ["aux1", "aux2"]


@pytest.mark.parametrize("model", ["googlenet", "googlenet-torchvision", "resnet18", "resnet152", "plain34"])
def test_branched_diagrams_have_no_overlapping_labels_and_a_readable_width(model) -> None:
    fig = diagram_figure(analyze(get_spec(model)))
    assert_legible(fig, fig.axes[0].texts)
    assert fig.get_size_inches()[0] <= 14, "rows wrap so that the picture stays readable"


# ---------------------------------------------------------------------------------------------------
# The charts


def test_googlenet_is_charted_per_module_with_its_aux_heads_apart() -> None:
    report = analyze(get_spec("googlenet"))
    assert is_grouped(report) and not is_grouped(analyze(get_spec("vgg16")))
    assert [r.name for r in report.groups()] == [
        "conv1", "conv2_reduce", "conv2", *INCEPTIONS[:3], "aux1", *INCEPTIONS[3:6], "aux2",
        *INCEPTIONS[6:], "fc",
    ]  # fmt: skip
    fig = chart_figure([report])
    params_ax, macs_ax = fig.axes[0], fig.axes[1]
    labels = [t.get_text() for t in params_ax.get_xticklabels()]
    assert labels == [r.name for r in report.groups()]
    bars = {p.get_gid(): p for p in params_ax.patches}
    main_bars = [bars[n] for n in labels if not n.startswith("aux")]
    # the bars are the modules' totals: without the heads they add up to the network's
    assert sum(b.get_height() for b in main_bars) == report.params == 6_998_552
    assert sum(bars[n].get_height() for n in ("aux1", "aux2")) == report.aux_params
    assert sum(p.get_height() for p in macs_ax.patches if not p.get_gid().startswith("aux")) == report.macs
    assert bars["aux1"].get_hatch() and not bars["inception4a"].get_hatch()
    assert bars["inception4a"].get_height() == next(r.params for r in report.rows if r.name == "inception4a")


def test_resnet152_is_charted_per_stage_with_its_block_counts() -> None:
    report = analyze(get_spec("resnet152"))
    bars = chart_bars(report)
    assert [b.label for b in bars] == [
        "conv1", "layer1\n3 blocks", "layer2\n8 blocks", "layer3\n36 blocks", "layer4\n3 blocks", "fc",
    ]  # fmt: skip
    bn1 = next(r for r in report.rows if r.name == "bn1")  # a top-level batch norm: not a bar
    assert sum(b.params for b in bars) == report.params - bn1.params
    assert sum(b.macs for b in bars) == report.macs
    per_layer = chart_bars(report, grouped=False)  # still possible: 156 bars
    assert len(per_layer) == report.weight_layers == 156


@pytest.mark.parametrize(
    "names,log",
    [(["googlenet"], False), (["googlenet-torchvision"], False), (["googlenet-torchvision"], True),
     (["resnet152"], False), (["resnet18"], True), (["alexnet", "googlenet-torchvision"], False)],
)  # fmt: skip
def test_grouped_charts_keep_their_labels_and_bars_apart(names, log) -> None:
    reports = [analyze(get_spec(n)) for n in names]
    fig = chart_figure(reports, log=log)
    for ax in fig.axes:
        assert_legible(fig, ax.get_xticklabels())
    assert_legible(fig, [*fig.texts, *(ax._left_title for ax in fig.axes)])  # texts: title, note
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # places the shares' box
    renderer = canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_tightbbox(renderer))
    for ax in fig.axes[: len(reports)]:  # the parameters' row: the shares' box over the bars
        (shares,) = [t for t in ax.texts if t.get_gid() == "shares"]
        box = shares.get_bbox_patch().get_window_extent(renderer)
        values = [t for t in ax.texts if t is not shares]
        assert values, "the value over each bar"
        for artist in [*ax.patches, *values]:
            assert not box.overlaps(artist.get_window_extent(renderer)), artist


# ---------------------------------------------------------------------------------------------------
# The report


@pytest.mark.parametrize(
    "model,facts",
    [
        ("googlenet", ["22 layers with weights on the longest path (58 in all)",
                       "+6,379,728 parameters (13,378,280"]),
        ("googlenet-torchvision", ["22 layers with weights on the longest path", "(13,004,888 in training)"]),
        ("resnet18", ["18 layers with weights on the longest path (21 in all)"]),
        ("resnet152", ["152 layers with weights on the longest path (156 in all)"]),
    ],
)  # fmt: skip
def test_the_report_of_a_branched_network_states_its_depth_and_aux_heads(model, facts) -> None:
    page = build_page(analyze(get_spec(model)))
    for fact in facts:
        assert fact in page
    assert page.count('src="data:image/png;base64,') == 2  # the diagram and the chart
    assert ("per module or stage" in page) and (
        "inception3a" in page if "googlenet" in model else "layer3" in page
    )
    assert ("auxiliary classifiers (training only)" in page) == model.startswith("googlenet")
