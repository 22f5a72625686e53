"""The command line as a user meets it: output, formats, exit codes, and no torch for analysis."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ilsvrc.cli import main
from work import HANG_GUARD  # child-process timeouts: a hang guard only, never a time budget


def run(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_text_shows_layers_totals_and_conventions(capsys) -> None:
    code, out, _ = run("summary", "alexnet-lecture", capsys=capsys)
    assert code == 0
    assert "55x55x96" in out and "34,944" in out
    assert "Total parameters: 28,823,912" in out
    assert "Layers with weights (the lecture's count): 8 = 5 conv + 3 fully connected" in out
    assert "FLOPs = 2 x MACs" in out


def test_derive_shows_each_formula_with_its_numbers(capsys) -> None:
    _, out, _ = run("summary", "alexnet-lecture", "--derive", capsys=capsys)
    assert "W2 = H2 = (227 - 11 + 2*0)/4 + 1 = 55" in out
    assert "params = 11*11*3*96 + 96 = 34,944" in out
    assert "params = 1024*4096 + 4096 = 4,198,400" in out


def test_input_and_batch_override(capsys) -> None:
    _, out, _ = run(
        "summary", "vgg16", "--input", "3x128x128", "--batch", "64", "--format", "json", capsys=capsys
    )
    data = json.loads(out)
    assert data["input"] == {"channels": 3, "height": 128, "width": 128, "flat": False}
    assert data["batch"] == 64
    fc6 = next(layer for layer in data["layers"] if layer["name"] == "fc6")
    assert fc6["input"]["channels"] == 512 * 4 * 4


def test_json_is_stable_and_complete(capsys) -> None:
    _, out, _ = run("summary", "alexnet", "--format", "json", capsys=capsys)
    data = json.loads(out)
    assert data["schema"] == "ilsvrc.summary/1"
    assert data["totals"]["params"] == 60_965_224
    assert data["info"]["year"] == 2012 and data["info"]["default_input"] == [3, 227, 227]
    assert len(data["info"]["mean"]) == len(data["info"]["std"]) == 3
    assert set(data["layers"][0]) == {
        "name", "type", "depth", "container", "aux", "config", "input", "output", "weights", "biases",
        "params", "macs", "macs_known", "bias_adds", "output_bytes", "receptive_field", "formulas",
    }  # fmt: skip
    assert sum(layer["params"] for layer in data["layers"]) == data["totals"]["params"]
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]


def test_csv_markdown_and_latex(capsys) -> None:
    _, out, _ = run("summary", "vgg11", "--format", "csv", capsys=capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sum(int(r["params"]) for r in rows if r["params"] != "-") == 132_863_336
    _, out, _ = run("summary", "vgg11", "--format", "markdown", capsys=capsys)
    assert "| conv1_1 | conv |" in out and "|---|" in out
    _, out, _ = run("summary", "vgg11", "--format", "latex", capsys=capsys)
    assert "\\begin{tabular}" in out and "conv1\\_1" in out and "\\end{tabular}" in out


def test_compare_zfnet_against_alexnet_the_lectures_slide(capsys) -> None:
    code, out, _ = run("compare", "zfnet-lecture", "alexnet-lecture", capsys=capsys)
    assert code == 0
    assert "7x7/4" in out and "11x11/4" in out
    assert "-20,736" in out  # conv1: (7*7 - 11*11)*3*96
    _, out, _ = run("compare", "zfnet-lecture", "alexnet-lecture", "--format", "json", capsys=capsys)
    data = json.loads(out)
    diff = data["totals"]["params"]["difference"]
    assert diff == data["totals"]["params"]["a"] - data["totals"]["params"]["b"]
    conv1 = next(r for r in data["rows"] if r["a"] and r["a"]["name"] == "conv1")
    assert "config" in conv1["differs"] and "params" in conv1["differs"]


def test_compare_networks_of_different_depth(capsys) -> None:
    _, out, _ = run("compare", "vgg16", "vgg19", "--format", "json", capsys=capsys)
    rows = json.loads(out)["rows"]
    only_b = [r["b"]["name"] for r in rows if r["a"] is None]
    assert only_b == ["conv3_4", "conv4_4", "conv5_4"]
    both = [r for r in rows if r["a"] and r["b"]]
    assert all(r["a"]["name"] == r["b"]["name"] for r in both)


def test_list_with_wildcard(capsys) -> None:
    _, out, _ = run("list", "vgg*", "--format", "json", capsys=capsys)
    names = [n["name"] for n in json.loads(out)["networks"]]
    assert names and all(n.startswith("vgg") for n in names) and "alexnet" not in names


def test_spec_file_summary_and_strict(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "input: [3, 224, 224]\nlayers:\n  - {type: conv, out_channels: 8, kernel: 11, stride: 4}\n"
        "  - {type: flatten}\n  - {type: linear, out_features: 10}\n"
    )
    code, out, _ = run("summary", str(spec), capsys=capsys)
    assert code == 0 and "Warning: conv1" in out and "54.25" in out
    code, _, err = run("summary", str(spec), "--strict", capsys=capsys)
    assert code == 2 and "54.25" in err and "--strict" in err


def test_tour_ends_with_the_lectures_alexnet(capsys) -> None:
    code, out, _ = run("tour", "--no-train", capsys=capsys)
    assert code == 0
    assert "alexnet-lecture" in out and "Total parameters: 28,823,912" in out.split("3. ")[-1]


@pytest.mark.parametrize(
    "args,match",
    [
        (["summary", "vgg61"], "Did you mean 'vgg19'"),
        (["summary", "vgg16", "--input", "3x16x16"], "vgg16 takes inputs from 32x32 up"),
        (["summary", "vgg16", "--input", "banana"], "not understood"),
        (["summary", "nowhere/net.yaml"], "does not exist"),
        (["compare", "alexnet", "zfnet2"], "There is no network called 'zfnet2'"),
        (["list", "densenet*"], "No network matches"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(args: list[str], match: str, capsys) -> None:
    code, out, err = run(*args, capsys=capsys)
    assert code == 2
    assert err.startswith("ilsvrc: error: ") and match in err
    assert "Traceback" not in err and err.count("\n") == 1


def _subprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ilsvrc", *args], capture_output=True, text=True, timeout=HANG_GUARD
    )


def test_argparse_errors_exit_2_too() -> None:
    done = _subprocess("summary", "alexnet", "--batch", "0")
    assert done.returncode == 2 and "must be positive" in done.stderr


def test_malformed_yaml_file_from_the_command_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [3, 8, 8]\nlayers: [{type: conv, kernel: [3}]\n")
    done = _subprocess("summary", str(bad))
    assert done.returncode == 2 and "not valid YAML at line 2" in done.stderr
    assert "Traceback" not in done.stderr


def test_summary_does_not_import_torch() -> None:
    code = (
        "import sys; from ilsvrc.cli import main; main(['summary', 'vgg16']); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr


def test_summary_loads_only_what_it_needs() -> None:
    """`ilsvrc summary resnet152` is a whole process a user waits for (issue 12): it loads neither torch,
    numpy nor yaml, nor what only other commands, inputs or formats use (the spec-file reader, json,
    csv, difflib), nor the zoo's other families."""
    unneeded = ["torch", "torchvision", "numpy", "yaml", "json", "csv", "difflib", "ilsvrc.networks.specfile"]
    unneeded += [f"ilsvrc.networks.zoo.{family}" for family in ("alexnet", "zfnet", "vgg", "googlenet")]
    code = (
        "import sys; from ilsvrc.cli import main; main(['summary', 'resnet152']); "
        f"print([m for m in {unneeded!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------------------
# Fast failures: names, paths and arguments are checked before torch is imported or anything is drawn

FAILING = """
import contextlib, io, json, os, sys
from ilsvrc.cli import main
d = sys.argv[1]
results = []
for argv in json.loads(sys.argv[2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([a.replace("TMP", d) for a in argv])
    results.append({"argv": argv, "code": code, "err": err.getvalue(), "torch": "torch" in sys.modules,
                    "drawn": "matplotlib.figure" in sys.modules, "files": sorted(os.listdir(d))})
print(json.dumps(results))
"""


@pytest.mark.parametrize(
    "argv,match",
    [
        (["train", "alexnett"], "There is no network called 'alexnett'"),
        (["train", "alexnet", "--data", "TMP/nodata"], "The data folder TMP/nodata does not exist"),
        (["train", "alexnet", "--data", "TMP/run/config.json"], "is a file, not a folder"),
        (["train", "--resume", "TMP/norun"], "TMP/norun does not exist, so it is not a run directory"),
        (["train", "--resume", "TMP/empty"], "TMP/empty has no config.json"),
        (["train", "alexnet", "--recipe", "cpux"], "There is no recipe called 'cpux'"),
        (["train", "alexnet", "--momentum", "3"], "momentum must be in [0, 1)"),
        (["train", "alexnet", "--min-crop-area", "0.5"], "augmentation (leave --min-crop-area out"),
        (["train", "resnet18", "--recipe", "fast", "--min-crop-area", "0"], "min_crop_area must be a share"),
        (["train", "TMP/nonet.yaml"], "Spec file TMP/nonet.yaml does not exist"),
        (["eval", "TMP/norun"], "The run TMP/norun does not exist"),
        (["eval", "TMP/run", "--data", "TMP/nodata"], "The data folder TMP/nodata does not exist"),
        (["predict", "TMP/norun", "TMP/photo.png"], "The run TMP/norun does not exist"),
        (["predict", "TMP/run", "TMP/photo.png", "TMP/nophoto.jpg"], "The image TMP/nophoto.jpg does not"),
        (["visualize", "features", "TMP/norun", "TMP/photo.png"], "The run TMP/norun does not exist"),
        (["visualize", "occlusion", "TMP/run", "TMP/nophoto.jpg"], "The image TMP/nophoto.jpg does not"),
        (["visualize", "filters", "TMP/run", "-o", "TMP/nodir/f.png"], "the folder TMP/nodir does not exist"),
        (["draw", "alexnet", "-o", "TMP/nodir/a.png"], "the folder TMP/nodir does not exist"),
        (["draw", "alexnet", "-o", "TMP/a.jpg"], "end it in .png or .svg"),
        (["chart", "alexnet", "-o", "TMP/nodir/c.png"], "the folder TMP/nodir does not exist"),
        (["chart", "alexnet", "-o", "TMP/c.pdf"], "end it in .png or .svg"),
        (["plot", "TMP/run", "-o", "TMP/nodir/p.png"], "the folder TMP/nodir does not exist"),
        (["report", "alexnet", "-o", "TMP/nodir/r.html"], "the folder TMP/nodir does not exist"),
        (["report", "alexnet", "-o", "TMP/r.txt"], "name it with .html"),
        (["report", "alexnet", "--run", "TMP/run", "--image", "TMP/nophoto.jpg", "-o", "TMP/r.html"],
         "The image TMP/nophoto.jpg does not"),
    ],
)  # fmt: skip
def test_a_mistake_fails_before_torch_is_imported_or_anything_is_drawn(argv, match, tmp_path) -> None:
    """Each command is run in a fresh process, so that torch and matplotlib are not already imported."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "photo.png").write_bytes(b"not looked at")
    before = sorted(p.name for p in tmp_path.iterdir())
    command = [sys.executable, "-c", FAILING, str(tmp_path), json.dumps([argv])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    err = result["err"]
    assert result["code"] == 2 and match.replace("TMP", str(tmp_path)) in err, err
    assert err.startswith("ilsvrc: error: ") and err.count("\n") == 1, err
    assert not result["torch"], "torch was imported before the mistake was found"
    assert not result["drawn"], "a picture was started before the mistake was found"
    assert result["files"] == before, "something was written"


def test_predict_on_a_missing_file_says_it_does_not_exist(tmp_path) -> None:
    """Not "Cannot decode ... remove or replace the file", which is about a damaged image."""
    from ilsvrc.training.images import DataError, read_image

    for name in ("gone.jpg", "gone.png"):
        with pytest.raises(DataError) as caught:
            read_image(tmp_path / name)
        assert str(caught.value) == f"The image {tmp_path / name} does not exist; check the path."
    with pytest.raises(DataError, match="is a folder, not an image file"):
        read_image(tmp_path)


def test_a_network_name_that_cannot_be_printed_is_one_paragraph_not_a_traceback(tmp_path) -> None:
    spec = tmp_path / "odd.yaml"
    spec.write_text(
        'name: "n\\ud800"\ninput: [3, 8, 8]\nlayers: [{type: flatten}, {type: linear, out_features: 2}]\n'
    )
    for command in ("summary", "draw", "spec"):
        done = _subprocess(
            command, str(spec), *(["-o", str(tmp_path / "d.svg")] if command == "draw" else [])
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"ilsvrc: error: {spec}: Network name 'n\\ud800' is not usable")
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "d.svg").exists()


@pytest.mark.parametrize("command", [["summary", "vgg11"], ["compare", "vgg11", "vgg13"], ["list", "vgg1*"]])
def test_format_md_is_markdown(command: list[str], capsys) -> None:
    for alias in ("md", "MD", "markdown"):
        code, out, err = run(*command, "--format", alias, capsys=capsys)
        assert code == 0, err
        assert out.count("\n|---|") == 1 and out.startswith("**"), out[:200]
    _, markdown, _ = run(*command, "--format", "markdown", capsys=capsys)
    _, md, _ = run(*command, "--format", "md", capsys=capsys)
    assert md == markdown


def test_input_0_says_what_is_wrong_with_0(capsys) -> None:
    code, _, err = run("summary", "alexnet", "--input", "0", capsys=capsys)
    assert code == 2
    assert "Input size '0': 0 is not a positive size (the height and width)" in err
