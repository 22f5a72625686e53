"""`ilsvrc export`: batch norm folded into the convolutions, ONNX and TorchScript files that compute
what the torch module computes (checked here in onnxruntime / torch.jit.load at batch 1 and 3, apart
from the check the export makes itself), trained runs, and bad input that leaves nothing behind."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import ilsvrc
from agree import randomise_batchnorms
from ilsvrc.cli import main
from ilsvrc.nn import create_model, fold_batchnorm
from ilsvrc.training import checkpoint
from ilsvrc.training import export as export_module_
from ilsvrc.training.export import (
    DEFAULT_OPSET,
    EXPORT_BATCH,
    METADATA_KEY,
    ExportError,
    ExportMismatchError,
    export,
    export_module,
)
from ilsvrc.training.loop import load_trained, make_config, train

# torch 2.14 deprecates TorchScript (docs/export.md); the TorchScript tests reload files on purpose
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

BN_SPEC = """name: tiny-bn
input: [3, 32, 32]
layers:
  - {type: conv, name: conv1, out_channels: 8, kernel: 3, padding: 1, bias: false}
  - {type: batchnorm, name: bn1}
  - {type: relu, name: relu1}
  - {type: maxpool, name: pool1, kernel: 2}
  - type: residual
    name: res
    body:
      layers: [{type: conv, name: conv, out_channels: 8, kernel: 3, padding: 1}, {type: batchnorm, name: bn}]
  - {type: relu, name: relu2}
  - {type: batchnorm, name: bn2}
  - {type: adaptiveavgpool, name: gap, output_size: 1}
  - {type: flatten, name: flatten}
  - {type: linear, name: fc, out_features: 4}
"""


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def onnx_logits(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def agree(got: torch.Tensor, want: torch.Tensor, relative: float = 1e-4) -> bool:
    return got.shape == want.shape and float((got - want).abs().max()) <= relative * max(
        1.0, float(want.abs().max())
    )


def inputs(shape: tuple[int, ...], seed: int = 7) -> list[torch.Tensor]:
    """Batch 1 and batch 3, neither the batch the export traced (2): the batch size is dynamic."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, *shape, generator=g) for b in (1, 3)]


@pytest.fixture(scope="module")
def bn_spec(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("spec") / "tiny-bn.yaml"
    path.write_text(BN_SPEC)
    return str(path)


# ---------------------------------------------------------------------------------------------------
# fold_batchnorm


@pytest.mark.parametrize("name, size", [("vgg11-bn", 32), ("resnet18", 32)])
def test_folded_bn_net_computes_what_the_unfolded_one_does(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = randomise_batchnorms(create_model(name, input_size=size)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want, got = model(x), folded(x)
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())
    # every batch norm of these networks follows a convolution: all are folded, the convs gain biases
    assert batchnorms(model) > 0 and batchnorms(folded) == 0
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    # the given module is untouched: same tensors, batch norms in place
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert batchnorms(model) == len([k for k in before if k.endswith("running_mean")])


def test_a_batch_norm_after_a_relu_stays_and_the_rest_fold(bn_spec: str) -> None:
    torch.manual_seed(0)
    model = randomise_batchnorms(create_model(ilsvrc.load_spec(bn_spec), num_classes=4)).eval()
    folded = fold_batchnorm(model)
    kept = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert kept == ["bn2"]  # after relu2; bn1 follows conv1 and res.body.bn follows res.body.conv
    assert isinstance(folded.bn1, nn.Identity) and folded.conv1.bias is not None
    assert model.conv1.bias is None  # the copy got the bias, not the original
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert float((folded(x) - model(x)).abs().max()) <= 1e-5 * float(model(x).abs().max())


def test_folding_a_training_module_returns_an_eval_copy_and_keeps_the_original_training(bn_spec) -> None:
    model = create_model(ilsvrc.load_spec(bn_spec), num_classes=4).train()
    folded = fold_batchnorm(model)
    assert not folded.training and model.training


# ---------------------------------------------------------------------------------------------------
# ONNX


def test_alexnet_as_published_exports_to_onnx_with_a_dynamic_batch(tmp_path: Path, capsys) -> None:
    out = tmp_path / "alexnet.onnx"  # LRN, groups=2; at 99 px to keep it small
    assert main(["export", "alexnet", "-o", str(out), "--input", "99", "--seed", "3"]) == 0
    said = capsys.readouterr().out
    assert sorted(tmp_path.iterdir()) == [out]  # no temporary folder left beside it
    proto = onnx.load(str(out))
    assert {o.domain: o.version for o in proto.opset_import}[""] == DEFAULT_OPSET
    record = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert record["input_shape"] == [3, 99, 99] and record["opset"] == DEFAULT_OPSET
    assert record["weights"] == "random weights, seed 3"
    for words in (f"ONNX, opset {DEFAULT_OPSET}", "N x 3 x 99 x 99 (N dynamic)", "0 of 0 folded",
                  f"({out.stat().st_size:,} bytes)", "at batch 1 and 3: max |difference|"):  # fmt: skip
        assert words in said, said
    torch.manual_seed(3)
    model = create_model("alexnet", input_size=99).eval()  # the same seeded random weights
    for x in inputs((3, 99, 99)):
        with torch.no_grad():
            assert agree(onnx_logits(out, x), model(x))


def test_no_fold_keeps_the_batch_norms_in_the_file(bn_spec: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomise_batchnorms(create_model(ilsvrc.load_spec(bn_spec), num_classes=4)).eval()
    out = tmp_path / "kept.onnx"
    done = export_module(model, out, fold=False)
    assert (done.folded, done.batchnorms) == (0, 3)
    nodes = [node.op_type for node in onnx.load(str(out)).graph.node]
    assert nodes.count("BatchNormalization") == 3
    for x in inputs((3, 32, 32)):
        with torch.no_grad():
            assert agree(onnx_logits(out, x), model(x))


def test_googlenet_torchvision_exports_folded_and_without_its_aux_heads(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    model = randomise_batchnorms(create_model("googlenet-torchvision", input_size=64)).train()
    out = tmp_path / "g.onnx"
    done = export_module(model, out)  # put in eval mode: the heads are not run, only the logits come out
    assert not model.training and done.num_classes == 1000
    with torch.device("meta"):  # every BasicConv2d's batch norm, the aux heads' included, is folded
        reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    assert done.folded == done.batchnorms == batchnorms(reference)
    graph = onnx.load(str(out)).graph
    assert [o.name for o in graph.output] == ["logits"]
    ops = {node.op_type for node in graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    for x in inputs((3, 64, 64)):
        with torch.no_grad():
            assert agree(onnx_logits(out, x), model(x))


# ---------------------------------------------------------------------------------------------------
# TorchScript, weights, runs


def test_torchscript_of_alexnet_with_lrn_reloads_and_agrees(tmp_path: Path) -> None:
    out = tmp_path / "alexnet.pt"
    done = export("alexnet", out, "torchscript", input_size=(3, 99, 99), seed=5)
    assert done.opset is None and done.exporter == "torch.jit.trace"
    torch.manual_seed(5)
    model = create_model("alexnet", input_size=99).eval()  # the same seeded random weights
    extra = {f"{METADATA_KEY}.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra[f"{METADATA_KEY}.json"])["weights"] == "random weights, seed 5"
    for x in inputs((3, 99, 99)):
        with torch.no_grad():
            assert agree(loaded(x), model(x))


def test_torchvision_weights_are_exported_as_torchvision_computes(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    randomise_batchnorms(reference)
    save_file(reference.state_dict(), tmp_path / "tv.safetensors")
    out = tmp_path / "r18.pt"  # at 64 px: a ResNet takes any size, its weights do not change
    export("resnet18", out, "torchscript", weights=tmp_path / "tv.safetensors", input_size=(3, 64, 64))
    loaded = torch.jit.load(str(out))
    for x in inputs((3, 64, 64)):
        with torch.no_grad():
            assert agree(loaded(x), reference(x))


@pytest.fixture(scope="module")
def averaged_run(bn_spec: str, tmp_path_factory) -> Path:
    """The batch-norm spec trained a few steps on the built-in data, its weights averaged (decay 0.5)."""
    out = tmp_path_factory.mktemp("run") / "run"
    settings = dict(out=str(out), epochs=1, batch_size=8, image_size=32, workers=0, synthetic_train=32,
                    synthetic_val=8, synthetic_classes=4, polyak_decay=0.5)  # fmt: skip
    train(make_config(bn_spec, "cpu", **settings), progress=False, log=lambda *a, **k: None)
    return out


def test_a_run_is_exported_with_its_averaged_weights(averaged_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run.pt"
    assert main(["export", str(averaged_run), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "averaged weights" in said and "2 of 3 folded" in said and "TorchScript (torch.jit.trace)" in said
    model, _, classes, _ = load_trained(averaged_run)  # the averaged weights, as eval uses them
    extra = {f"{METADATA_KEY}.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    record = json.loads(extra[f"{METADATA_KEY}.json"])
    assert [c["id"] for c in record["classes"]] == [c.id for c in classes]
    trained = copy.deepcopy(model)
    trained.load_state_dict(checkpoint.load(averaged_run)[0])  # the weights as the last step left them
    for x in inputs((3, 32, 32)):
        with torch.no_grad():
            got = loaded(x)
            assert agree(got, model(x))
            assert not agree(got, trained(x))  # not the last trained weights


def test_a_checkpoint_directory_exports_to_torchscript(averaged_run: Path, tmp_path: Path) -> None:
    where = checkpoint.resolve(averaged_run, "best")
    out = tmp_path / "best.pt"
    assert main(["export", str(where), "-o", str(out)]) == 0
    model = load_trained(where)[0]
    loaded = torch.jit.load(str(out))
    for x in inputs((3, 32, 32)):
        with torch.no_grad():
            assert agree(loaded(x), model(x))


# ---------------------------------------------------------------------------------------------------
# A file that disagrees is not written; bad input


class TracedWrong(nn.Module):
    """Python that looks at the batch size: tracing freezes the branch the example batch took, so the
    traced file and the module part ways at other batch sizes (a real pitfall of torch.jit.trace)."""

    input_shape = (3, 4, 4)

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(48, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.flatten(1))
        return y if x.shape[0] == EXPORT_BATCH else -y


def test_a_file_that_disagrees_is_not_written_and_the_old_one_stays(tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    out.write_bytes(b"the previous file")
    with pytest.raises(ExportMismatchError, match=r"largest difference of the logits is [0-9.e+-]+, over"):
        export_module(TracedWrong(), out, "torchscript")
    assert out.read_bytes() == b"the previous file" and sorted(tmp_path.iterdir()) == [out]


def test_the_command_line_exits_2_naming_the_difference(tmp_path: Path, monkeypatch, capsys) -> None:
    def traced_wrong(*args, **kwargs) -> export_module_.Source:
        return export_module_.Source(TracedWrong(), (3, 4, 4), "a module traced wrong", {})

    monkeypatch.setattr(export_module_, "load_source", traced_wrong)
    assert main(["export", "alexnet", "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "disagrees with torch" in err and err.count("\n") == 1
    assert _nothing_written(tmp_path)


def _nothing_written(folder: Path) -> bool:
    return not any(folder.iterdir())


@pytest.mark.parametrize(
    "args, match",
    [
        (["alexnett"], "no network called 'alexnett'"),
        (["alexnet", "-o", "{tmp}/missing/a.onnx"], "folder .*missing does not exist"),
        (["alexnet", "-o", "{tmp}"], "is a folder; give a file name"),
        (["alexnet", "-o", "{tmp}/a.onnx", "--format", "torchscript"], "ends in .onnx \\(the ONNX suffix\\)"),
        (["alexnet", "-o", "{tmp}/a.onnx", "--opset", "99"], "Opset 99 is not one the installed onnx"),
        (["alexnet", "-o", "{tmp}/a.pt", "--opset", "18"], "--opset is an ONNX setting"),
        (
            ["alexnet", "-o", "{tmp}/a.onnx", "--weights", "{tmp}/none.safetensors"],
            "weights file .* not exist",
        ),
        (["{tmp}", "-o", "{tmp}/a.onnx"], "holds neither config.json nor model.safetensors"),
        (["{tmp}/runs/nope"], "neither a run directory nor a spec file"),
        (["alexnet-lecture", "-o", "{tmp}/a.onnx", "--input", "99"], "takes inputs from 195x195 up"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(args: list[str], match: str, tmp_path: Path, capsys) -> None:
    assert main(["export", *(a.replace("{tmp}", str(tmp_path)) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ilsvrc: error: ") and err.count("\n") == 1
    assert re.search(match, err), err
    assert _nothing_written(tmp_path)


def test_an_opset_the_exporter_cannot_reach_is_refused_with_its_reason(bn_spec: str, tmp_path: Path,
                                                                        capsys) -> None:  # fmt: skip
    # the exporter writes 18; onnx's converter has no step down to 17 for Pad (the max pooling's)
    assert main(["export", bn_spec, "-o", str(tmp_path / "a.onnx"), "--opset", "17"]) == 2
    err = capsys.readouterr().err
    assert "cannot write opset 17" in err and "Nothing was written" in err and err.count("\n") == 1
    assert _nothing_written(tmp_path)


def test_missing_onnxruntime_is_named_with_the_extra_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    assert main(["export", "alexnet", "-o", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime is not installed" in err and "ilsvrc[export]" in err and "torchscript" in err
    assert _nothing_written(tmp_path)
    with pytest.raises(ExportError, match="onnxruntime is not installed"):
        export_module(create_model("alexnet", input_size=99), tmp_path / "b.onnx")
    assert _nothing_written(tmp_path)


def test_a_run_with_weights_or_input_is_refused(averaged_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", str(averaged_run), "-o", str(tmp_path / "a.pt"), "--input", "64"]) == 2
    assert "brings its own weights and input size" in capsys.readouterr().err
    assert _nothing_written(tmp_path)


# ---------------------------------------------------------------------------------------------------
# The whole zoo (slow)


@pytest.mark.slow
@pytest.mark.parametrize("name", ilsvrc.list_models())
def test_every_zoo_network_agrees_with_torch_in_onnxruntime(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = randomise_batchnorms(create_model(name)).eval()  # at the network's own input size
    shape = model.input_shape
    out = tmp_path / f"{name}.onnx"
    try:
        done = export_module(model, out, source=name)
        assert done.max_difference <= done.tolerance and done.folded == done.batchnorms
        assert done.input_shape == tuple(shape)
        for x in inputs(shape):
            with torch.no_grad():
                assert agree(onnx_logits(out, x), model(x))
    finally:
        out.unlink(missing_ok=True)  # VGG-19's file is 575 MB: 28 of them would fill a small disk
