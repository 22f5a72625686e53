"""Caffe prototxt files read without Caffe: the files in tests/data/caffe (written for these tests)
analyse to the zoo's counts layer by layer; malformed files are refused in one paragraph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ilsvrc
from caffe_googlenet import prototxt as googlenet_prototxt
from ilsvrc import analyze, from_prototxt, get_spec
from ilsvrc.cli import main
from ilsvrc.errors import IlsvrcError, SpecFileError
from ilsvrc.networks import resolve
from ilsvrc.networks.importers.textformat import Ident, parse
from ilsvrc.networks.spec import LRN, Aux, AvgPool, BatchNorm, Concat, Conv, MaxPool, Residual, walk
from ilsvrc.networks.specfile import dumps, loads

DATA = Path(__file__).parent / "data" / "caffe"
ALEXNET_PARAMS = 60_965_224  # the AlexNet paper's net with its two-GPU groups
GOOGLENET_PARAMS, GOOGLENET_WITH_AUX = 6_998_552, 13_378_280  # BVLC GoogLeNet, without / with aux heads


def rows(network) -> dict:
    return {r.name: r for r in analyze(network).rows}


def same_rows(a: dict, b: dict, names: list[tuple[str, str]]) -> None:
    for x, y in names:
        assert (a[x].output, a[x].params, a[x].macs) == (b[y].output, b[y].params, b[y].macs), (x, y)


# -- the files of tests/data/caffe ----------------------------------------------------------------------


def test_alexnet_with_groups_and_lrn_is_the_zoo_alexnet_layer_by_layer() -> None:
    net = from_prototxt(DATA / "alexnet.prototxt")
    zoo = get_spec("alexnet")
    report, expected = analyze(net), analyze(zoo)
    assert report.params == expected.params == ALEXNET_PARAMS
    assert report.macs == expected.macs
    assert net.input_shape == zoo.input_shape
    assert [r.name for r in report.rows] == [r.name for r in expected.rows]
    same_rows(rows(net), rows(zoo), [(r.name, r.name) for r in expected.rows])
    conv2 = next(x for x in net.layers if x.name == "conv2")
    assert conv2.groups == 2
    # Caffe's alpha 0.0005 over local_size 5 is the paper's 1e-4 (the zoo's form)
    assert [x for x in net.layers if isinstance(x, LRN)] == [x for x in zoo.layers if isinstance(x, LRN)]


def test_caffe_pooling_rounds_up_in_an_inception_module() -> None:
    net = from_prototxt(DATA / "inception.prototxt")
    got, zoo = rows(net), rows(get_spec("googlenet"))
    assert got["pool2_3x3_s2"].input.width == 56
    assert got["pool2_3x3_s2"].output.width == 28  # (56 - 3)/2 + 1 = 27.5, rounded up as Caffe does
    assert all(x.ceil_mode for _, x in walk(net.layers) if isinstance(x, (MaxPool, AvgPool)))
    (inception,) = [x for x in net.layers if isinstance(x, Concat)]
    assert inception.name == "inception_3a" and len(inception.branches) == 4
    same_rows(got, zoo, [("inception_3a", "inception3a")])
    assert got["inception_3a"].output.channels == 64 + 128 + 32 + 32
    # inception_3a/3x3 -> the block inception_3a, a part starting with a digit gets an underscore
    assert "inception_3a.b2._3x3" in got


def test_v1_layers_file_is_the_lecture_alexnet_in_either_phase() -> None:
    zoo = get_spec("alexnet-lecture")
    for phase in ("test", "train"):
        net = from_prototxt(DATA / "lecture_v1.prototxt", phase=phase)
        assert net.input_shape == zoo.input_shape  # 3 channels, crop_size 227
        report, expected = analyze(net), analyze(zoo)
        assert report.params == expected.params and report.macs == expected.macs
        same_rows(rows(net), rows(zoo), [(r.name, r.name) for r in expected.rows])


def test_resnet_blocks_with_batchnorm_scale_and_eltwise_are_the_zoo_resnet50_blocks() -> None:
    net = from_prototxt(DATA / "resnet_block.prototxt")
    res2a, _, res2b, _ = net.layers
    assert isinstance(res2a, Residual) and isinstance(res2b, Residual)
    assert [x.kind for x in res2a.shortcut.layers] == ["conv", "batchnorm"]  # projection, Scale merged
    assert res2b.shortcut is None  # identity
    assert all(not isinstance(x, Conv) or not x.bias for _, x in walk(net.layers))
    assert {x.eps for _, x in walk(net.layers) if isinstance(x, BatchNorm)} == {1e-5}
    got, zoo = rows(net), rows(get_spec("resnet50-v1"))
    same_rows(got, zoo, [("res2a", "layer1.0"), ("res2b", "layer1.1")])


def test_googlenet_train_val_has_its_side_classifiers_as_aux_heads() -> None:
    zoo = analyze(get_spec("googlenet"))
    for phase in ("test", "train"):
        net = from_prototxt(DATA / "googlenet_train_val.prototxt", phase=phase)
        report = analyze(net)
        assert (report.params, report.params_with_aux) == (GOOGLENET_PARAMS, GOOGLENET_WITH_AUX)
        assert (report.macs, report.macs_with_aux) == (zoo.macs, zoo.macs_with_aux)
        names = [x.name for x in net.layers]
        assert [(h.name, h.weight) for h in net.aux_heads] == [("loss1", 0.3), ("loss2", 0.3)]
        assert names.index("loss1") == names.index("inception_4a") + 1
        assert names.index("loss2") == names.index("inception_4d") + 1


def test_the_googlenet_file_is_what_its_script_writes() -> None:
    assert (DATA / "googlenet_train_val.prototxt").read_text() == googlenet_prototxt()


def test_an_imported_network_saves_as_a_spec_file_and_loads_back() -> None:
    net = from_prototxt(DATA / "googlenet_train_val.prototxt")
    again = loads(dumps(net, "yaml"))
    assert again.layers == net.layers and again.input_shape == net.input_shape


@pytest.mark.parametrize("name", ["inception", "resnet_block"])
def test_an_imported_network_builds_and_runs_as_analysed(name: str) -> None:
    import torch

    net = from_prototxt(DATA / f"{name}.prototxt")
    report = analyze(net)
    model = ilsvrc.build(net).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, *net.input_shape))
    last = {r.name: r for r in report.rows}[net.layers[-1].name]  # the top-level layer's row
    assert tuple(out.shape[1:]) == (last.output.channels, last.output.height, last.output.width)
    assert sum(p.numel() for p in model.parameters()) == report.params


def test_text_works_as_well_as_a_path_and_resolve_reads_prototxt() -> None:
    text = (DATA / "alexnet.prototxt").read_text()
    assert from_prototxt(text).layers == from_prototxt(str(DATA / "alexnet.prototxt")).layers
    assert resolve(str(DATA / "alexnet.prototxt")).layers == from_prototxt(text).layers


# -- the command line -------------------------------------------------------------------------------------


def test_cli_summary_compare_and_spec_take_a_prototxt(capsys, tmp_path: Path) -> None:
    alexnet = str(DATA / "alexnet.prototxt")
    assert main(["summary", alexnet, "--derive"]) == 0
    assert f"{ALEXNET_PARAMS:,}" in capsys.readouterr().out
    assert main(["compare", alexnet, "alexnet", "--format", "json"]) == 0
    capsys.readouterr()
    assert main(["summary", str(DATA / "googlenet_train_val.prototxt"), "--phase", "train"]) == 0
    assert f"{GOOGLENET_WITH_AUX:,}" in capsys.readouterr().out
    assert main(["spec", str(DATA / "inception.prototxt")]) == 0
    spec = tmp_path / "inception.yaml"
    spec.write_text(capsys.readouterr().out)
    assert resolve(str(spec)).layers == from_prototxt(DATA / "inception.prototxt").layers


def test_import_ilsvrc_does_not_load_the_caffe_reader() -> None:
    code = "import sys, ilsvrc; print('caffe' in ' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert callable(ilsvrc.from_prototxt)


# -- malformed files ----------------------------------------------------------------------------------------

HEAD = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'
CONV = 'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { %s } }\n'


@pytest.mark.parametrize(
    "text, match",
    [
        (HEAD + CONV % "num_output: 8 kernel_size: 3" + "layer { name: 'x' ", r":4:7: the message opened"),
        (HEAD + CONV % "num_output: 8 kernel_size: 3x3", r":3:.*'3x3' is not a number"),
        (HEAD + CONV % "num_output: 8.5 kernel_size: 3", r"conv1.*num_output must be a positive whole"),
        (HEAD + CONV % "kernel_size: 3", r"conv1.*num_output is missing"),
        (
            HEAD + 'layer { name: "up" type: "Deconvolution" bottom: "data" top: "up" }\n'
            'layer { name: "s" type: "Sigmoid" bottom: "up" top: "s" }\n',
            r"Deconvolution \('up', line 3\); Sigmoid \('s', line 4\).*Supported: .*Convolution",
        ),
        (HEAD + 'layer { name: "r" type: "ReLU" bottom: "conv0" top: "r" }\n', r"'r' \(ReLU\).*'conv0'"),
        (
            HEAD + CONV % "num_output: 8 kernel_size: 3" + 'layer { name: "m" type: "Eltwise" bottom: "data" '
            'bottom: "conv1" top: "m" eltwise_param { operation: PROD } }\n',
            r"'m' \(Eltwise\).*PROD",
        ),
        (CONV % "num_output: 8 kernel_size: 3", r"the input size is not given"),
        (HEAD + 'layer { name: "s" type: "Scale" bottom: "data" top: "s" }\n', r"'s' \(Scale\).*BatchNorm"),
        (
            HEAD + 'layer { name: "p/3x3" type: "Pooling" bottom: "data" top: "p" '
            "pooling_param { pool: MAX kernel_size: 3 pad: 2 } }\n",
            r":3: layer 'p/3x3' \(Pooling\): .*padding 2 is more than half the kernel 3",
        ),
        (
            HEAD
            + CONV % "num_output: 8 kernel_size: 3"
            + 'layer { name: "p" type: "Pooling" bottom: "conv1" '
            'top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 } }\n',
            r"'p' \(Pooling\).*STOCHASTIC",
        ),
    ],
)
def test_malformed_prototxt_exits_2_with_one_paragraph(text: str, match: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.prototxt"
    path.write_text(text)
    with pytest.raises(IlsvrcError, match=match):
        from_prototxt(path)
    assert main(["summary", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ilsvrc: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_a_missing_file_and_a_bad_phase_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpecFileError, match="nothere.prototxt is not a file"):
        from_prototxt(tmp_path / "nothere.prototxt")
    with pytest.raises(SpecFileError, match="phase must be"):
        from_prototxt(DATA / "alexnet.prototxt", phase="val")


def test_phase_rules_include_and_exclude() -> None:
    text = (
        HEAD
        + CONV % "num_output: 8 kernel_size: 3"
        + (
            'layer { name: "d" type: "Dropout" bottom: "conv1" top: "conv1" include { phase: TRAIN } }\n'
            'layer { name: "r" type: "ReLU" bottom: "conv1" top: "conv1" exclude { phase: TRAIN } }\n'
        )
    )
    assert [x.kind for x in from_prototxt(text).layers] == ["conv", "relu"]
    assert [x.kind for x in from_prototxt(text, phase="train").layers] == ["conv", "dropout"]


# -- the text format ----------------------------------------------------------------------------------------


def test_text_format_values() -> None:
    msg = parse(
        """# a comment
        name: "a" 'b'   # adjacent strings join
        esc: "tab\\there \\"q\\" \\x41\\101"
        n: 0x1F m: -017 f: 1e-4 g: .5f h: -inf
        list: [1, 2, 3], e: MAX; t: true
        sub < k: 1 > sub: { k: 2 }
        """
    )
    assert msg.get("name") == "ab"
    assert msg.get("esc") == 'tab\there "q" AA'
    assert (msg.get("n"), msg.get("m"), msg.get("f"), msg.get("g")) == (31, -15, 1e-4, 0.5)
    assert msg.get("h") == float("-inf")
    assert msg.all("list") == [1, 2, 3]
    assert isinstance(msg.get("e"), Ident) and not isinstance(msg.get("name"), Ident)
    assert [s.get("k") for s in msg.all("sub")] == [1, 2]
    assert msg.where("list") == (5, 9)


@pytest.mark.parametrize(
    "text, where",
    [
        ("a: 1\nb { c: 2\n", "2:3"),
        ("a: 1 }", "1:6"),
        ("a b", "1:3"),
        ('a: "x\n', "1:4"),
        ("a: [1 2]", "1:7"),
        ("a: @", "1:4"),
    ],
)
def test_text_format_errors_give_line_and_column(text: str, where: str) -> None:
    with pytest.raises(SpecFileError, match=f"<text>:{where}: "):
        parse(text)


# -- property: a random chain written in either form reads back to the same spec ----------------------------


@st.composite
def chains(draw) -> list[dict]:
    layers = []
    for i in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            groups = draw(st.sampled_from([1, 2]))
            layers.append(
                dict(
                    kind="conv",
                    name=f"conv{i}",
                    out=groups * draw(st.integers(1, 8)),
                    k=draw(st.integers(1, 3)),
                    s=draw(st.integers(1, 2)),
                    p=draw(st.integers(0, 1)),
                    g=groups,
                )
            )
        else:
            k = draw(st.integers(1, 3))
            layers.append(
                dict(
                    kind=draw(st.sampled_from(["MAX", "AVE"])),
                    name=f"pool{i}",
                    k=k,
                    s=draw(st.integers(1, 2)),
                    p=draw(st.integers(0, k // 2)),
                )
            )
    return layers


def write(chain: list[dict], v1: bool) -> str:
    word, conv, pool, relu = (
        ("layers", "CONVOLUTION", "POOLING", "RELU")
        if v1
        else ("layer", '"Convolution"', '"Pooling"', '"ReLU"')
    )
    text, at = 'input: "data" input_dim: 1 input_dim: 4 input_dim: 32 input_dim: 32\n', "data"
    for x in chain:
        if x["kind"] == "conv":
            param = (
                f"convolution_param {{ num_output: {x['out']} kernel_size: {x['k']} stride: {x['s']} "
                f"pad: {x['p']} group: {x['g']} }}"
            )
            text += (
                f'{word} {{ name: "{x["name"]}" type: {conv} bottom: "{at}" top: "{x["name"]}" {param} }}\n'
            )
            text += (
                f'{word} {{ name: "r{x["name"]}" type: {relu} bottom: "{x["name"]}" top: "{x["name"]}" }}\n'
            )
        else:
            param = (
                f"pooling_param {{ pool: {x['kind']} kernel_h: {x['k']} kernel_w: {x['k']} "
                f"stride: {x['s']} pad: {x['p']} }}"
            )
            text += (
                f'{word} {{ name: "{x["name"]}" type: {pool} bottom: "{at}" top: "{x["name"]}" {param} }}\n'
            )
        at = x["name"]
    return text


@settings(max_examples=40, deadline=None)
@given(chains())
def test_random_chains_read_the_same_in_both_forms(chain: list[dict]) -> None:
    new, old = from_prototxt(write(chain, v1=False)), from_prototxt(write(chain, v1=True))
    assert new.layers == old.layers
    convs = [x for x in new.layers if isinstance(x, Conv)]
    pools = [x for x in new.layers if isinstance(x, (MaxPool, AvgPool))]
    assert [(c.out_channels, c.kernel[0], c.stride[0], c.padding[0], c.groups) for c in convs] == [
        (x["out"], x["k"], x["s"], x["p"], x["g"]) for x in chain if x["kind"] == "conv"
    ]
    assert [(type(p) is MaxPool, p.kernel[0], p.stride[0], p.padding[0], p.ceil_mode) for p in pools] == [
        (x["kind"] == "MAX", x["k"], x["s"], x["p"], True) for x in chain if x["kind"] != "conv"
    ]
    assert not any(isinstance(x, Aux) for x in new.layers)


# -- robustness: a damaged file is refused in one paragraph, never with a crash --------------------------

TOKENS = ["{", "}", ":", '"', "#", "\n", "-", "1e9", "0", "x", "layer", "bottom", "top", '"data"', "TRAIN",
          "[", "]", "99999999999999999999", "nan", "inf", "'", "\\", "group: 7", "pad: 9"]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_damaged_files_raise_only_ilsvrc_errors(data) -> None:
    text = (DATA / data.draw(st.sampled_from(["alexnet", "inception", "lecture_v1", "resnet_block"]))
            ).with_suffix(".prototxt").read_text()  # fmt: skip
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 12))
        text = text[:at] + data.draw(st.sampled_from(["", *TOKENS])) + text[at + cut :]
    try:
        net = from_prototxt(text, phase=data.draw(st.sampled_from(["test", "train"])))
        analyze(net)
    except IlsvrcError as exc:
        assert "\n" not in str(exc) and str(exc).strip()
