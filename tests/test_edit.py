"""`--set` edits of a network (issue 15, item 1), and the tanh and sigmoid activations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ilsvrc import analyze, get_spec
from ilsvrc.cli import main
from ilsvrc.errors import ShapeError, SpecError
from ilsvrc.networks.edit import apply_edits, parse_edit
from ilsvrc.networks.spec import Conv, MaxPool, ReLU, Sigmoid, Tanh, walk
from ilsvrc.nn import build


def changed(before, after) -> dict[str, dict[str, tuple]]:
    """{layer: {field: (old, new)}} of every field that differs between two networks with the same
    layer names ('type' for a changed type); containers are compared through their leaves."""
    out: dict[str, dict[str, tuple]] = {}
    old = dict(walk(before.layers))
    for name, layer in walk(after.layers):
        was = old[name]
        if type(was) is not type(layer):
            out[name] = {"type": (was.kind, layer.kind)}
            continue
        diff = {
            f.name: (getattr(was, f.name), getattr(layer, f.name))
            for f in dataclasses.fields(layer)
            if f.name not in ("layers", "branches", "body", "shortcut")
            and getattr(was, f.name) != getattr(layer, f.name)
        }
        if diff:
            out[name] = diff
    return out


def test_an_edit_changes_exactly_the_named_field() -> None:
    alexnet = get_spec("alexnet")
    edited = apply_edits(alexnet, ["conv1.kernel=7", "conv1.stride=2", "conv3.out_channels=512"])
    assert changed(alexnet, edited) == {
        "conv1": {"kernel": ((11, 11), (7, 7)), "stride": ((4, 4), (2, 2))},
        "conv3": {"out_channels": (384, 512)},
    }
    before, after = analyze(alexnet), analyze(edited)
    row = {r.name: r for r in after.rows}
    old = {r.name: r for r in before.rows}
    assert row["conv1"].weights == 3 * 7 * 7 * 96
    assert row["conv1"].output.height == (227 - 7) // 2 + 1  # W2 = (W1 - F + 2P)/S + 1
    assert row["conv3"].output.channels == 512 and row["conv4"].input.channels == 512
    # conv4 reads 512 channels in 2 groups now: 384 filters of 3x3x256
    assert row["conv4"].weights == 384 * 3 * 3 * 256 and old["conv4"].weights == 384 * 3 * 3 * 192
    assert "edited: conv1.kernel=7" in after.network.info.title and after.network.info.result == ""


def test_a_wildcard_turns_every_relu_into_tanh() -> None:
    alexnet = get_spec("alexnet")
    edited = apply_edits(alexnet, ["relu*.type=tanh"])
    kinds = {name: layer.kind for name, layer in walk(edited.layers)}
    assert [n for n, k in kinds.items() if k == "tanh"] == [f"relu{i}" for i in range(1, 8)]
    assert not any(isinstance(layer, ReLU) for _, layer in walk(edited.layers))
    a, b = analyze(alexnet), analyze(edited)
    assert (a.params, a.macs) == (b.params, b.macs)  # an activation has no weights and no MACs
    # tanh keeps its own output for the backward pass (a new tensor); an in-place ReLU kept the one
    # it was given: the same bytes (tests/test_memory.py checks random tanh networks against autograd)
    assert b.memory()["saved_for_backward"] == a.memory()["saved_for_backward"]
    assert not any(r.in_place for r in b.rows if r.kind == "tanh")
    model = build(edited.with_input((3, 96, 96)).with_num_classes(4))
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 7
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert model(torch.randn(2, 3, 96, 96)).shape == (2, 4)


def test_type_changes_stay_within_a_family_and_keep_fields() -> None:
    vgg = apply_edits(get_spec("vgg11"), ["pool*.type=avgpool", "relu1_1.type=sigmoid"])
    pools = [layer for _, layer in walk(vgg.layers) if layer.name.startswith("pool")]
    assert pools and all(p.kind == "avgpool" and p.kernel == (2, 2) and p.stride == (2, 2) for p in pools)
    assert isinstance(dict(walk(vgg.layers))["relu1_1"], Sigmoid)
    assert analyze(vgg).params == analyze(get_spec("vgg11")).params


def test_values_are_read_as_numbers_pairs_and_flags() -> None:
    assert parse_edit("conv1.kernel=7x5").value == (7, 5)
    assert parse_edit("conv1.kernel=[7, 5]").value == (7, 5)
    assert parse_edit("drop6.p=0.3").value == 0.3
    assert parse_edit("conv1.bias=false").value is False
    net = apply_edits(get_spec("alexnet"), ["conv1.kernel=7x5", "drop6.p=0.3"])
    layers = dict(walk(net.layers))
    assert isinstance(layers["conv1"], Conv) and layers["conv1"].kernel == (7, 5)
    assert layers["drop6"].p == 0.3


def test_nested_layers_are_named_by_their_dotted_path() -> None:
    net = apply_edits(get_spec("resnet18"), ["layer1.*.conv1.out_channels=32"])
    edits = changed(get_spec("resnet18"), net)
    assert len(edits) == 2 and all(k.startswith("layer1.") and k.endswith(".conv1") for k in edits)
    assert all(v == {"out_channels": (64, 32)} for v in edits.values())
    analyze(net)  # still whole: the next convolution reads what it gets


@pytest.mark.parametrize(
    "edit, says",
    [
        ("conv9.kernel=3", "names no layer"),
        ("conv1.kernal=3", "no field 'kernal'"),
        ("conv1.kernel=0", "positive whole number"),
        ("conv1.kernel=9x", "kernel must be"),
        ("relu1.type=conv", "can become one of tanh, sigmoid"),
        ("conv1kernel7", "PATTERN.FIELD=VALUE"),
        ("conv1.name=x", "no field 'name'"),
    ],
)
def test_bad_edits_are_refused_naming_what_is_wrong(edit: str, says: str) -> None:
    with pytest.raises(SpecError, match=says):
        apply_edits(get_spec("alexnet"), [edit])


def test_an_edit_that_breaks_the_volumes_names_the_layer() -> None:
    net = apply_edits(get_spec("alexnet"), ["conv5.kernel=17"])  # a valid layer, a 13x13 input
    with pytest.raises(ShapeError, match="conv5"):
        analyze(net)


def test_the_command_line_edits_and_exits_2_on_bad_edits(tmp_path: Path, capsys) -> None:
    assert main(["summary", "alexnet", "--set", "conv1.kernel=7", "--format", "json"]) == 0
    layers = {r["name"]: r for r in json.loads(capsys.readouterr().out)["layers"]}
    assert layers["conv1"]["weights"] == 3 * 7 * 7 * 96
    for bad in (["--set", "conv1.kernal=3"], ["--set", "conv5.kernel=17"]):
        assert main(["summary", "alexnet", *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ilsvrc: error:") and "Traceback" not in err
    # compare: the second network is the edited one
    assert main(["compare", "alexnet", "alexnet", "--set", "conv1.out_channels=64", "--format", "json"]) == 0
    params = json.loads(capsys.readouterr().out)["totals"]["params"]
    assert params["a"] == analyze(get_spec("alexnet")).params
    assert params["a"] - params["b"] == (96 - 64) * (3 * 11 * 11 + 1) + (96 - 64) * 5 * 5 * 128
    out = tmp_path / "d.png"
    assert main(["draw", "alexnet", "--set", "relu*.type=tanh", "-o", str(out)]) == 0 and out.stat().st_size


def test_an_edited_network_trains_and_resumes_as_edited(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "alexnet", "--set", "relu*.type=tanh", "--set", "conv1.kernel=7", "--recipe", "cpu",
            "--image-size", "67", "--epochs", "2", "--batch-size", "8", "--synthetic-train", "8",
            "--synthetic-val", "8", "--synthetic-classes", "4", "--workers", "0", "--max-steps", "1",
            "--out", str(run)]  # fmt: skip
    assert main(args) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["edits"] == ["relu*.type=tanh", "conv1.kernel=7"]
    kinds = [layer["type"] for layer in config["spec"]["layers"]]
    assert "tanh" in kinds and "relu" not in kinds
    assert main(["train", "--resume", str(run), "--workers", "0"]) == 0  # rebuilt from config.json
    from ilsvrc.training.loop import load_trained

    model, *_ = load_trained(run)
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 7
    assert model.conv1.kernel_size == (7, 7)


def test_tanh_and_sigmoid_round_trip_through_spec_files(capsys) -> None:
    from ilsvrc.networks.specfile import loads

    assert main(["spec", "alexnet", "--set", "relu1.type=tanh", "--set", "relu2.type=sigmoid"]) == 0
    net = loads(capsys.readouterr().out)
    layers = dict(walk(net.layers))
    assert isinstance(layers["relu1"], Tanh) and isinstance(layers["relu2"], Sigmoid)
    assert isinstance(layers["pool1"], MaxPool)
