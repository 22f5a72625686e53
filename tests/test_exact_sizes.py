"""The exact input sizes the analyzer suggests, found by its geometry for all sizes at once (issue 12).

`nearest_exact_sizes` (and the "To make it exact" note of a report) once analysed the whole network
at each candidate size: 62 analyses of ResNet-152 for its note at 224. It now follows the windows'
geometry for every candidate at once. These tests hold it to the old definition, full analyses at
each size (`by_full_analyses`), on zoo networks and on random networks with every kind of rounding
the analyzer knows (floor, ceil_mode, a dropped ceil window), joins and auxiliary classifiers; and
count the analyses, never the seconds.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ilsvrc import analyze, get_spec
from ilsvrc.analysis import analyzer
from ilsvrc.analysis.analyzer import input_sizes, is_exact, nearest_exact_sizes
from ilsvrc.networks.spec import (
    AdaptiveAvgPool,
    Aux,
    AvgPool,
    Block,
    Concat,
    Conv,
    Flatten,
    Layer,
    Linear,
    MaxPool,
    Network,
    ReLU,
    Residual,
)


def by_full_analyses(network: Network, shape: tuple[int, int, int], reach: int = 64) -> list[int]:
    """The definition (and the implementation before issue 12's speed-up): analyse the network at
    each square size near the height, closest first (the larger first at equal distance), and keep
    the first two other than the height at which nothing is floored."""
    c, h, _ = shape
    found = []
    for s in sorted(range(max(1, h - reach), h + reach + 1), key=lambda s: (abs(s - h), -s)):
        if s != h and is_exact(network, (c, s, s)):
            found.append(s)
            if len(found) == 2:
                break
    return found


def suggested(network: Network, shape: tuple[int, int, int]) -> list[int] | None:
    """The sizes the report's "To make it exact" note names ([] if it names none); None without one."""
    notes = [f.message for f in analyze(network, shape).findings if "To make it exact" in f.message]
    if not notes:
        return None
    sizes = re.match(r"To make it exact: an input of ((?:\d+x\d+(?: or )?)+) makes", notes[0])
    return [int(n) for n in re.findall(r"(\d+)x\1", sizes.group(1))] if sizes else []


def has_warning(network: Network, shape: tuple[int, int, int]) -> bool:
    return any(f.severity == "warning" for f in analyze(network, shape).findings)


ZOO_CASES = [
    ("alexnet-lecture", 224),  # floors at conv1; 227 is the lecture's fix
    ("alexnet", 224),
    ("zfnet", 224),
    ("zfnet-lecture", 225),
    ("vgg16", 200),
    ("googlenet", 224),  # ceil_mode pooling, auxiliary classifiers
    ("googlenet", 231),
    ("googlenet-torchvision", 225),
    ("resnet18", 224),  # residual sums, projection shortcuts
    ("resnet18", 100),
    ("resnet50-v1", 224),  # the stride on the 1x1: input columns never seen
    ("plain18", 230),
]


@pytest.mark.parametrize("name,size", ZOO_CASES)
def test_zoo_exact_sizes_are_those_full_analyses_find(name: str, size: int) -> None:
    net = get_spec(name)
    shape = (3, size, size)
    expected = by_full_analyses(net, shape)
    assert nearest_exact_sizes(net, shape) == expected
    if has_warning(net, shape):
        assert suggested(net, shape) == expected


def test_resnet152_at_224_suggests_225_and_193() -> None:
    """What `ilsvrc summary resnet152` prints, and what full analyses at those sizes confirm."""
    net = get_spec("resnet152")
    assert suggested(net, (3, 224, 224)) == [225, 193]
    assert is_exact(net, (3, 225, 225)) and is_exact(net, (3, 193, 193))


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list:
    """One entry per analysis (walk of the network) from here on: each makes one `_Autograd`."""
    made: list = []

    class Counted(analyzer._Autograd):
        def __init__(self, *args, **kwargs) -> None:
            made.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(analyzer, "_Autograd", Counted)
    return made


def test_the_suggestion_analyses_the_network_once(walks: list) -> None:
    """ResNet-152 floors at 224: the report's suggestion of exact sizes costs no further walk of the
    network (it cost 62 before issue 12's speed-up)."""
    report = analyze(get_spec("resnet152"))
    assert any("225x225 or 193x193" in f.message for f in report.findings)
    assert len(walks) == 1
    walks.clear()
    assert nearest_exact_sizes(get_spec("resnet152"), (3, 224, 224)) == [225, 193]
    assert len(walks) == 1  # alone, one analysis settles the size-independent checks


def test_a_residual_sum_of_flat_vectors_is_checked_by_full_analyses() -> None:
    """A flattened n x n map beside a flattened 2 x 2 x 25 one: the lengths agree at n = 10 only, which
    the geometry of one axis cannot see."""
    body = Block("body", (Conv("c", 1, 1), Flatten("flatten")))
    shortcut = Block("shortcut", (AdaptiveAvgPool("avg", 2), Conv("c", 25, 1), Flatten("flatten")))
    net = Network("flat", (3, 10, 10), (Residual("add", body, shortcut), Linear("fc", 2)))
    assert is_exact(net, (3, 10, 10)) and is_exact(net, (3, 9, 9)) is None
    assert nearest_exact_sizes(net, (3, 9, 9)) == by_full_analyses(net, (3, 9, 9)) == [10]


def test_a_size_independent_error_leaves_no_exact_size(walks: list) -> None:
    bad = Network("bad", (3, 8, 8), (Conv("c", 4, 3, groups=2), Flatten("flatten"), Linear("fc", 2)))
    assert nearest_exact_sizes(bad, (3, 9, 9)) == []
    assert len(walks) == 1  # the first size the geometry finds exact fails: then every size does
    assert by_full_analyses(bad, (3, 9, 9)) == []


def test_a_dropped_ceil_window_over_padding_only_is_exact() -> None:
    """2x2/2 pooling with padding 1 and ceil_mode at an odd size: the extra window would start in the
    right padding, so PyTorch drops it; what is left over is padding, so every input row is seen (a
    note, not a warning) and odd sizes are exact too."""
    net = Network("pad", (1, 8, 8), (MaxPool("pool", 2, 2, padding=1, ceil_mode=True), Flatten("f"),
                                     Linear("fc", 2)))  # fmt: skip
    assert is_exact(net, (1, 9, 9))
    assert nearest_exact_sizes(net, (1, 8, 8)) == by_full_analyses(net, (1, 8, 8)) == [9, 7]


def test_an_auxiliary_classifier_limits_the_input_sizes() -> None:
    """The main path takes any size; the auxiliary classifier's 5x5 window needs 5x5 and up."""
    aux = Aux("aux", (AvgPool("pool", 5, 3), Flatten("flatten"), Linear("fc", 2)))
    net = Network(
        "aux",
        (3, 8, 8),
        (
            Conv("c", 4, 3, padding=1),
            aux,
            AdaptiveAvgPool("avg", 1),
            Flatten("f"),
            Linear("fc", 2),
        ),  # fmt: skip
    )
    taken = [n for n in range(1, 33) if is_exact(net, (3, n, n)) is not None]
    sizes = input_sizes(net, 3, limit=32)
    assert taken[0] == 5 and sizes.smallest == 5 and sizes.every_size_up
    assert nearest_exact_sizes(net, (3, 7, 7)) == by_full_analyses(net, (3, 7, 7)) == [8, 5]


# ---------------------------------------------------------------------------------------------------
# Random networks


@st.composite
def window(draw: st.DrawFn, name: str) -> Layer:
    """A convolution (maybe dilated, maybe with different kernels and strides along the two axes) or a
    pooling (maybe ceil_mode, whose last window may round up or be dropped)."""
    k = draw(st.integers(1, 5))
    padding, stride = draw(st.integers(0, k // 2)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["conv", "max", "avg"]))
    if kind == "conv":
        kernel = (k, draw(st.integers(1, 5))) if draw(st.booleans()) else k
        stride = (stride, draw(st.integers(1, 3))) if draw(st.booleans()) else stride
        return Conv(name, 2, kernel, stride=stride, padding=padding, dilation=draw(st.integers(1, 2)))
    pool = MaxPool if kind == "max" else AvgPool
    return pool(name, k, stride=stride, padding=padding, ceil_mode=draw(st.booleans()))


@st.composite
def networks(draw: st.DrawFn) -> Network:
    """A window, a concatenation, maybe an auxiliary classifier, a residual sum (projection, or identity
    around a size-keeping body), another window, maybe adaptive pooling; then the classifier."""
    layers: list[Layer] = []
    if draw(st.booleans()):
        layers.append(draw(window("w0")))
    n = draw(st.integers(1, 3))
    branches = tuple(
        Block(f"b{i}", tuple(draw(window(f"w{j}")) for j in range(draw(st.integers(1, 2))))) for i in range(n)
    )
    layers.append(Concat("inc", branches))
    if draw(st.booleans()):
        layers.append(Aux("aux", (draw(window("w")), Flatten("flatten"), Linear("fc", 2))))
    if draw(st.booleans()):
        proj = Block("shortcut", (Conv("proj", 3, 1, stride=draw(st.integers(1, 3))),))
        layers.append(Residual("res", Block("body", (draw(window("w1")), Conv("w2", 3, 1))), proj))
        layers.append(ReLU("relu"))
    if draw(st.booleans()):
        body = Block("body", (Conv("c", 3, 3, padding=1), ReLU("relu"), Conv("d", 3, 1)))
        layers += [Conv("to3", 3, 1), Residual("same", body)]
    if draw(st.booleans()):
        layers.append(draw(window("w9")))
    if draw(st.booleans()):
        layers.append(AdaptiveAvgPool("avg", draw(st.integers(1, 3))))
    return Network("random", (1, 16, 16), (*layers, Flatten("flatten"), Linear("fc", 2)))


@settings(max_examples=150, deadline=None)
@given(networks(), st.integers(4, 40))
def test_random_exact_sizes_are_those_full_analyses_find(net: Network, size: int) -> None:
    shape = (1, size, size)
    expected = by_full_analyses(net, shape, reach=12)
    assert nearest_exact_sizes(net, shape, reach=12) == expected
    limit = 40
    taken = [n for n in range(1, limit + 1) if is_exact(net, (1, n, n)) is not None]
    sizes = input_sizes(net, 1, limit)
    assert (sizes.smallest, sizes.count) == (taken[0] if taken else None, len(taken))


@settings(max_examples=40, deadline=None)
@given(networks(), st.integers(8, 40))
def test_random_reports_suggest_what_full_analyses_find(net: Network, size: int) -> None:
    shape = (1, size, size)
    if is_exact(net, shape) is False:  # analysable, with a warning: the report suggests sizes
        assert suggested(net, shape) == by_full_analyses(net, shape)
