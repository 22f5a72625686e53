"""Networks written as YAML/JSON files: read, analysed like built-ins, refused with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ilsvrc import analyze, get_spec, list_models
from ilsvrc.errors import SpecError, SpecFileError
from ilsvrc.specfile import dumps, load, loads, parse_shape

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
    with pytest.raises(SpecError, match="channels x height x width|not understood"):
        parse_shape(text)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_byte_order_mark_is_read(tmp_path, suffix: str) -> None:
    """Some Windows editors start UTF-8 files with a BOM; json.loads refuses one, so it is dropped."""
    path = tmp_path / f"bom{suffix}"
    text = json.dumps({"name": "bom", "input": [3, 8, 8], "layers": [{"type": "relu"}]})
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load(path).name == "bom"
