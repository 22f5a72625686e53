"""Networks written as YAML/JSON files: read, analysed like built-ins, refused with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ilsvrc import analyze, get_spec, list_models
from ilsvrc.errors import IlsvrcError, SpecError, SpecFileError
from ilsvrc.networks.specfile import dumps, load, loads, parse_shape

TINY = """
name: tiny
input: [3, 32, 32]
layers:
  - {type: conv, name: conv1, out_channels: 16, kernel: 3, padding: 1}
  - {type: relu}
  - {type: maxpool, kernel: 2}
  - type: concat
    name: inc
    branches:
      - {name: a, layers: [{type: conv, out_channels: 8, kernel: 1}]}
      - {name: b, layers: [{type: conv, out_channels: 8, kernel: 3, padding: 1}]}
  - type: residual
    name: res
    body:
      layers:
        - {type: conv, out_channels: 16, kernel: 3, padding: 1}
        - {type: batchnorm}
  - {type: flatten}
  - {type: linear, name: fc, out_features: 10}
"""


def test_yaml_spec_is_analysed_like_a_built_in() -> None:
    net = loads(TINY)
    report = analyze(net)
    rows = {r.name: r for r in report.rows}
    assert rows["relu1"].output.width == 32  # unnamed layers are named by type and position
    assert rows["inc"].output.channels == 16
    assert rows["res.body.conv1"].params == 3 * 3 * 16 * 16 + 16
    assert rows["res.body.batchnorm1"].params == 32
    assert rows["fc"].input.channels == 16 * 16 * 16


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_every_zoo_network_round_trips_through_a_file(name: str, fmt: str) -> None:
    net = get_spec(name)
    again = loads(dumps(net, fmt), json_format=fmt == "json")
    assert again.layers == net.layers
    assert again.input_shape == net.input_shape
    assert again.info == net.info


def test_load_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    assert load(path).name == "tiny"
    with pytest.raises(SpecFileError, match="does not exist"):
        load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "text,error,match",
    [
        (
            "name: x\ninput: [3, 8, 8]\nlayers: [{type: conv, kernel: [3}]",
            SpecFileError,
            "not valid YAML at line",
        ),
        ("- just\n- a list", SpecFileError, "must hold a mapping"),
        ("name: x\nlayers: [{type: relu}]", SpecFileError, "has no 'input'"),
        ("name: x\ninput: [3, 8]\nlayers: [{type: relu}]", SpecFileError, r"\[channels, height, width\]"),
        ("input: [3, 8, 8]\nlayers: [{type: convolution}]", SpecError, "unknown layer type 'convolution'"),
        ("input: [3, 8, 8]\nlayers: [{type: conv, filters: 8}]", SpecError, "unknown field.*filters"),
        ("input: [3, 8, 8]\nlayers: [{type: conv, kernel: 3.5}]", SpecError, "whole number"),
        ("input: [3, 8, 8]\nlayers: []", SpecFileError, "non-empty list"),
        ("input: [3, 8, 8]\nlayers: [{type: conv, out_channels: -1}]", SpecError, "positive whole number"),
        ("input: [3, 8, 8]\nlayer: []", SpecFileError, "unknown top-level key"),
    ],
)
def test_malformed_specs_give_a_reason(text: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        loads(text)


def test_unknown_type_suggests_the_close_one() -> None:
    with pytest.raises(SpecError, match="Did you mean 'maxpool'"):
        loads("input: [3, 8, 8]\nlayers: [{type: maxpol}]")


def test_python_tags_are_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"!!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(SpecFileError, match="not valid YAML"):
        loads(text)
    assert not marker.exists()


def test_bad_json_names_the_line() -> None:
    with pytest.raises(SpecFileError, match="line 2"):
        loads('{"name": "x",\n "input": [3, 8, 8],,}', json_format=True)


@pytest.mark.parametrize(
    "text,shape",
    [
        ("3x224x224", [3, 224, 224]),
        ("224", [3, 224, 224]),
        ("1x28x28", [1, 28, 28]),
        ("128x96", [3, 128, 96]),
    ],
)
def test_parse_shape(text: str, shape: list[int]) -> None:
    assert parse_shape(text) == shape


@pytest.mark.parametrize("text", ["big", "3x0x4", "1x2x3x4", ""])
def test_parse_shape_refuses_nonsense(text: str) -> None:
    with pytest.raises(SpecError, match="channels x height x width|not understood|not a positive size"):
        parse_shape(text)


@pytest.mark.parametrize(
    "text,match",
    [
        ("0", "'0': 0 is not a positive size (the height and width)"),
        ("3x0x4", "'3x0x4': 0 is not a positive size (the height)"),
        ("224x-5", "-5 is not a positive size (the width)"),
        ("0x8x8", "0 is not a positive size (the channels)"),
        ("1x2x3x4", "'1x2x3x4' has 4 numbers"),
    ],
)
def test_parse_shape_says_which_number_is_wrong(text: str, match: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_shape(text)
    assert match in str(caught.value)


@pytest.mark.parametrize(
    "body,match",
    [
        ("input: [3, 8, 8]\nlayers: [{type: conv, out_channels: 4, kernel: [3, a]}]", "kernel must be"),
        ("input: [3, 8, 8]\ninfo: {year: abc}\nlayers: [{type: relu}]", "year must be a whole number"),
        ("input: [3, 8, 8]\ninfo: {mean: [1, 2]}\nlayers: [{type: relu}]", "mean must be three numbers"),
        ("input: 3x0x8\nlayers: [{type: relu}]", "0 is not a positive size"),
        ("input: [3, 0, 8]\nlayers: [{type: relu}]", "input must be three positive whole numbers"),
        ("input: [3, 8, 8]\nlayers: [{type: relu, name: a}, {type: relu, name: a}]", "a"),
        ("input: [3, 8, 8]\nlayers: [{type: dropout, p: 2}]", "p"),
        ('name: "n\\ud800"\ninput: [3, 8, 8]\nlayers: [{type: relu}]', "is not usable"),
        ("input: [3, 8, 8]\nlayers: [{type: conv, out_channels: 4, kernel: 3}, {type: convv}]", "convv"),
    ],
)
def test_every_spec_file_error_names_the_file(tmp_path: Path, body: str, match: str) -> None:
    """The node types check their own values without knowing the file: the file name is added."""
    path = tmp_path / "mine.yaml"
    path.write_text(body)
    with pytest.raises(IlsvrcError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and match in message, message
    assert message.count(str(path)) == 1, message


def test_a_network_name_that_cannot_be_printed_is_refused() -> None:
    with pytest.raises(SpecError, match="lone surrogates"):
        loads('name: "n\\ud800"\ninput: [3, 8, 8]\nlayers: [{type: relu}]')
    with pytest.raises(SpecError, match="cannot be printed"):
        loads('input: [3, 8, 8]\ninfo: {title: "t\\udfff"}\nlayers: [{type: relu}]')
    assert loads("name: réseau 名前 v2\ninput: [3, 8, 8]\nlayers: [{type: relu}]").name == "réseau 名前 v2"


def test_an_edited_copy_of_a_zoo_network_does_not_keep_the_originals_claims() -> None:
    original = get_spec("alexnet")
    text = dumps(original)
    assert loads(text).info == original.info  # an unedited copy is the original
    edited = loads(text.replace("out_channels: 96", "out_channels: 64", 1), source="my.yaml")
    assert edited.info.title == f"{original.info.title} (edited copy of alexnet)"
    assert edited.info.result == "" and original.info.result in edited.info.notes
    assert "ilsvrc compare alexnet my.yaml" in edited.info.notes
    assert edited.info.paper == original.info.paper  # the design still comes from the paper
    renamed = loads(
        text.replace("name: alexnet", "name: mine").replace("input: [3, 227, 227]", "input: [3, 200, 200]")
    )
    assert "(edited copy of alexnet)" in renamed.info.title  # another input, another name: still a copy
    own = loads(text.replace("out_channels: 96", "out_channels: 64", 1).replace("year: 2012", "year: 2024"))
    assert own.info.title == original.info.title and own.info.year == 2024  # info the user changed is theirs
    again = loads(dumps(edited))
    assert again.info == edited.info  # writing an edited copy out and reading it back changes nothing


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_byte_order_mark_is_read(tmp_path, suffix: str) -> None:
    """Some Windows editors start UTF-8 files with a BOM; json.loads refuses one, so it is dropped."""
    path = tmp_path / f"bom{suffix}"
    text = json.dumps({"name": "bom", "input": [3, 8, 8], "layers": [{"type": "relu"}]})
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load(path).name == "bom"
