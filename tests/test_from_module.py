"""A torch module in (`ilsvrc.from_module`, `ilsvrc summary torchvision:NAME`): every zoo network's
module gives back its own spec, torchvision's models their own parameter counts and multiply-adds, and
what does not map is an opaque layer named in a warning, never a silent 0."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import ilsvrc
from ilsvrc import analyze, get_spec, list_models
from ilsvrc.analysis.compare import compare
from ilsvrc.cli import main
from ilsvrc.errors import ShapeError, SpecError
from ilsvrc.networks.spec import Aux, Opaque, walk
from ilsvrc.networks.specfile import dumps, loads
from ilsvrc.nn import build
from ilsvrc.tracing import TraceError, from_module
from work import HANG_GUARD


def run(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def row_facts(report: ilsvrc.analysis.analyzer.Report) -> list[tuple]:
    """What a summary states per row: name, type, volumes, parameters, MACs, receptive field."""
    return [
        (r.name, r.kind, str(r.input), str(r.output), r.weights, r.biases, r.macs, r.macs_known,
         r.receptive_field, r.aux)
        for r in report.rows
    ]  # fmt: skip


def totals(report) -> dict:
    return {key: getattr(report, key) for key in ("params", "weights", "biases", "macs", "bias_adds",
            "params_with_aux", "macs_with_aux", "weight_layers", "depth")} | report.memory()  # fmt: skip


def torchvision_model(name: str, **kwargs) -> nn.Module:
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, weights=None, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Round trip: spec -> module -> spec


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_network_comes_back_from_its_module(name: str) -> None:
    spec = get_spec(name)
    with torch.device("meta"):
        module = build(spec)
    traced = from_module(module, spec.input_shape)
    assert traced.layers == spec.layers  # the same tree, names included
    a, b = analyze(spec), analyze(traced)
    assert row_facts(b) == row_facts(a)
    assert totals(b) == totals(a)
    assert [f.message for f in b.findings] == [f.message for f in a.findings]


def test_round_trip_at_another_input_and_on_the_cpu_leaves_the_module_as_it_was() -> None:
    spec = get_spec("googlenet-torchvision")
    module = build(spec, (3, 112, 112)).eval()  # real weights, on the CPU, in eval mode
    before = {k: v.clone() for k, v in module.state_dict().items()}
    traced = from_module(module, (3, 112, 112))
    assert traced.layers == spec.layers
    assert row_facts(analyze(traced)) == row_facts(analyze(spec, (3, 112, 112)))
    assert not any(m.training for m in module.modules())  # modes put back
    after = module.state_dict()
    assert all(after[k].device.type == "cpu" and torch.equal(after[k], v) for k, v in before.items())


# ---------------------------------------------------------------------------------------------------
# torchvision's own figures


@pytest.mark.parametrize(
    ("name", "gmacs", "digits"),
    [("alexnet", 0.714, 3), ("vgg16", 15.47, 2), ("googlenet", 1.498, 3), ("resnet50", 4.089, 3)],
)
def test_torchvision_models_give_torchvisions_counts(name: str, gmacs: float, digits: int) -> None:
    module = torchvision_model(name)
    report = analyze(from_module(module))
    # every parameter of the module, GoogLeNet's auxiliary classifiers included
    assert report.params_with_aux == sum(p.numel() for p in module.parameters())
    assert round(report.macs / 1e9, digits) == gmacs  # torchvision's GFLOPS figure (its "FLOPs" are MACs)
    assert report.macs_exact and not report.findings or all(f.layer for f in report.findings)


def test_torchvision_resnet50_is_the_zoos_resnet50() -> None:
    cmp = compare(analyze(from_module(torchvision_model("resnet50"))), analyze(get_spec("resnet50")))
    assert all(t["difference"] == 0 for t in cmp.totals().values())
    assert not any(p.differs for p in cmp.pairs)


def test_googlenets_auxiliary_heads_and_input_transform() -> None:
    plain = from_module(torchvision_model("googlenet", transform_input=False))
    transformed = from_module(torchvision_model("googlenet", transform_input=True))
    assert [h.name for h in plain.aux_heads] == ["aux1", "aux2"]
    assert all(isinstance(h, Aux) and h.weight == 0.3 for h in plain.aux_heads)
    zoo = get_spec("googlenet-torchvision")
    assert totals(analyze(plain)) == totals(analyze(zoo))
    # the per-channel rescaling before conv1 is read as the input: the same network, and said so
    assert transformed.layers == plain.layers
    assert "preprocessing" in transformed.info.notes


def test_inception_v3_at_its_own_input_size_with_its_auxiliary_head() -> None:
    module = torchvision_model("inception_v3", init_weights=False)
    net = from_module(module, (3, 299, 299))
    report = analyze(net)
    assert report.params_with_aux == sum(p.numel() for p in module.parameters())
    assert round(report.macs / 1e9, 2) == 5.71  # torchvision's GFLOPS for inception_v3
    assert [h.name for h in net.aux_heads] == ["AuxLogits"]


def test_functional_forms_are_the_same_layers_as_the_modules() -> None:
    """F.relu in place, F.max_pool2d with ceil_mode, `+=`, torch.cat and x.view(N, -1) give the
    network that nn.ReLU, nn.MaxPool2d, a residual sum, a concat and nn.Flatten give."""

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.a, self.b = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, 3, padding=1)
            self.fc = nn.Linear(12 * 8 * 8, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.conv(x)), 3, 2, ceil_mode=True)
            y = self.a(x)
            y += x
            x = torch.cat([nn.functional.relu(y, inplace=True), self.b(x)], 1)
            return self.fc(x.view(x.size(0), -1))

    class Residual(nn.Module):
        def __init__(self, body: nn.Module) -> None:
            super().__init__()
            self.body = body

        def forward(self, x):
            return self.body(x) + x

    class Modules(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)
            )
            self.res = Residual(nn.Conv2d(8, 8, 1))
            self.relu, self.b = nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(12 * 8 * 8, 10))

        def forward(self, x):
            x = self.stem(x)
            return self.head(torch.cat([self.relu(self.res(x)), self.b(x)], 1))

    def facts(module: nn.Module) -> list[tuple]:
        report = analyze(from_module(module, (3, 16, 16)))
        return [(r.kind, str(r.output), r.params, r.macs, r.receptive_field) for r in report.leaves]

    assert facts(Functional()) == facts(Modules())
    assert [k for k, *_ in facts(Functional())] == [
        "conv", "relu", "maxpool", "conv", "relu", "conv", "flatten", "linear"]  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# What does not map: opaque layers, named in warnings


class TinySelfAttention(nn.Module):
    """Self-attention over the positions of a feature map, with a residual sum."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)
        attention = torch.softmax(q.transpose(1, 2) @ k / c**0.5, dim=-1)
        return x + self.proj((v @ attention.transpose(1, 2)).view(n, c, h, w))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, channels // 4, 1), nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


def unknown_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.GELU(), TinySelfAttention(16), SqueezeExcite(16),
        nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(16), nn.Linear(16, 10),
    )  # fmt: skip


def test_unknown_layers_are_opaque_and_named_in_warnings() -> None:
    module = unknown_net()
    net = from_module(module, (3, 32, 32))
    report = analyze(net)
    opaque = {r.name: r for r in report.rows if isinstance(r.layer, Opaque)}
    kinds = {name: r.layer.what for name, r in opaque.items()}
    assert kinds == {"1": "torch.nn.GELU", "2": f"{__name__}.TinySelfAttention",
                     "3": f"{__name__}.SqueezeExcite", "7": "torch.nn.LayerNorm"}  # fmt: skip
    warned = {f.layer: f.message for f in report.findings if f.severity == "warning"}
    for name, row in opaque.items():
        assert name in warned and row.layer.what in warned[name] and "unknown" in warned[name]
        assert not row.macs_known and row.params == sum(p.numel() for p in module[int(name)].parameters())
    # every parameter is somewhere; MAC totals are what is known, marked as lower bounds
    assert report.params == sum(p.numel() for p in module.parameters())
    assert not report.macs_exact and [r.name for r in report.unknown_macs] == list(opaque)
    assert report.macs == sum(r.macs for r in report.leaves if r.macs_known)


def test_opaque_layers_in_tables_json_and_spec_files(capsys, tmp_path: Path) -> None:
    net = from_module(unknown_net(), (3, 32, 32))
    path = tmp_path / "unknown.yaml"
    path.write_text(dumps(net))
    assert loads(path.read_text()) == net
    code, out, _ = run("summary", str(path), capsys=capsys)
    assert code == 0
    gelu = next(line for line in out.splitlines() if line.startswith("1 "))
    assert gelu.split()[-4] == "?"  # MACs: unknown, not 0
    assert "Multiply-adds per image: at least" in out and "lower bound" in out
    assert "Warning: 1 (torch.nn.GELU)" in out
    _, out, _ = run("summary", str(path), "--format", "json", capsys=capsys)
    data = json.loads(out)
    gelu = next(layer for layer in data["layers"] if layer["name"] == "1")
    assert gelu["macs"] is None and gelu["macs_known"] is False and gelu["type"] == "opaque"
    assert data["totals"]["macs_lower_bound"] is True
    assert data["totals"]["layers_with_unknown_macs"] == ["1", "2", "3", "7"]


def test_an_opaque_layer_is_known_at_its_traced_input_only_and_cannot_be_built() -> None:
    net = from_module(unknown_net(), (3, 32, 32))
    with pytest.raises(ShapeError, match="traced"):
        analyze(net, (3, 64, 64))
    with pytest.raises(SpecError, match="opaque"):
        build(net)


def test_tokens_with_no_module_around_them_become_one_opaque_span() -> None:
    class PatchTransformer(nn.Module):  # a ViT in miniature: patches, tokens, a classifier
        def __init__(self) -> None:
            super().__init__()
            self.patches = nn.Conv2d(3, 8, 4, stride=4)
            self.encoder = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            tokens = self.patches(x).flatten(2).transpose(1, 2)
            return self.head(self.encoder(tokens).mean(1))

    module = PatchTransformer()
    report = analyze(from_module(module, (3, 16, 16)))
    assert [r.kind for r in report.leaves] == ["conv", "opaque", "linear"]
    assert report.params == sum(p.numel() for p in module.parameters())
    assert any(f.layer == report.leaves[1].name for f in report.findings if f.severity == "warning")


def test_densenets_blocks_are_opaque_where_the_spec_cannot_hold_their_joins() -> None:
    module = torchvision_model("densenet121")
    net = from_module(module)
    report = analyze(net)
    blocks = [r for r in report.leaves if isinstance(r.layer, Opaque)]
    assert [r.name for r in blocks] == [f"features.denseblock{i}" for i in range(1, 5)]
    assert all(r.layer.what == "torchvision.models.densenet._DenseBlock" for r in blocks)
    assert {f.layer for f in report.findings if f.severity == "warning"} >= {r.name for r in blocks}
    assert report.params == sum(p.numel() for p in module.parameters())
    assert "DenseNet" in net.info.notes


def test_untraceable_modules_give_a_one_paragraph_error() -> None:
    class ValueDependent(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # control flow on a tensor's value

    with pytest.raises(TraceError, match="cannot be traced by torch.fx") as info:
        from_module(ValueDependent(), (3, 8, 8))
    assert "\n" not in str(info.value)
    with pytest.raises(TraceError, match="3x8x8"):
        from_module(nn.Sequential(nn.Conv2d(3, 4, 11)), (3, 8, 8))  # the window does not fit


# ---------------------------------------------------------------------------------------------------
# The command line


def test_cli_torchvision_model_through_every_command(capsys, tmp_path: Path) -> None:
    code, out, _ = run("summary", "torchvision:resnet18", "--derive", capsys=capsys)
    assert code == 0 and "params = 7*7*3*64 = 9,408" in out
    code, out, _ = run("compare", "torchvision:resnet18", "resnet18", "--format", "json", capsys=capsys)
    assert code == 0
    assert all(t["difference"] == 0 for t in json.loads(out)["totals"].values())
    spec = tmp_path / "r18.yaml"
    assert run("spec", "torchvision:resnet18", "-o", str(spec), capsys=capsys)[0] == 0
    assert totals(analyze(ilsvrc.load_spec(spec))) == totals(analyze(get_spec("resnet18")))
    assert run("draw", "torchvision:resnet18", "-o", str(tmp_path / "r18.svg"), capsys=capsys)[0] == 0
    assert run("chart", "torchvision:resnet18", "-o", str(tmp_path / "r18.png"), capsys=capsys)[0] == 0
    assert (tmp_path / "r18.svg").stat().st_size > 0 and (tmp_path / "r18.png").stat().st_size > 0


def test_cli_input_size_is_the_families_own_or_given(capsys) -> None:
    _, out, _ = run("summary", "torchvision:inception_v3", "--format", "json", capsys=capsys)
    assert json.loads(out)["input"]["height"] == 299
    _, out, _ = run("summary", "torchvision:resnet18", "--input", "3x128x128", "--format", "json",
                    capsys=capsys)  # fmt: skip
    data = json.loads(out)
    assert data["input"]["height"] == 128
    assert data["totals"]["macs"] == analyze(get_spec("resnet18"), (3, 128, 128)).macs


def test_cli_file_and_function(capsys, tmp_path: Path) -> None:
    source = tmp_path / "mine.py"
    source.write_text(
        textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 4))

        def not_a_module():
            return 42
    """)
    )
    code, out, _ = run("summary", f"{source}:build", "--input", "3x32x32", "--format", "json", capsys=capsys)
    assert code == 0 and json.loads(out)["totals"]["params"] == 8 * 27 + 8 + 8 * 900 * 4 + 4
    report_file = tmp_path / "mine.html"
    assert run("report", f"{source}:build", "--input", "32", "-o", str(report_file), capsys=capsys)[0] == 0
    assert report_file.read_text().count("<table") >= 1
    for argument, reason in [
        (f"{source}:missing", "has no function 'missing'"),
        (f"{source}:not_a_module", "not a torch module"),
        (f"{tmp_path / 'nope.py'}:build", "does not exist"),
        ("torchvision:resnet5", "Did you mean resnet50"),
    ]:
        code, out, err = run("summary", argument, capsys=capsys)
        assert code == 2 and reason in err and err.count("\n") == 1 and not out


def test_cli_pictures_of_a_network_with_opaque_layers(capsys, tmp_path: Path) -> None:
    source = tmp_path / "odd.py"
    source.write_text(
        textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.GELU(), nn.Conv2d(8, 4, 3), nn.Flatten(),
                                 nn.Linear(4 * 28 * 28, 10))
    """)
    )
    svg, png = tmp_path / "odd.svg", tmp_path / "odd.png"
    assert run("draw", f"{source}:build", "--input", "32", "-o", str(svg), capsys=capsys)[0] == 0
    text = svg.read_text()
    assert "MACs ?" in text and "at least" in text  # the GELU named, the total a lower bound
    assert run("chart", f"{source}:build", "--input", "32", "-o", str(png), capsys=capsys)[0] == 0
    assert png.stat().st_size > 0


def test_cli_a_missing_file_fails_before_torch_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys; from ilsvrc.cli import main; "
        f"assert main(['summary', {str(tmp_path / 'nope.py')!r} + ':build']) == 2; "
        "assert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr
    assert "does not exist" in done.stderr


def test_cli_spec_refuses_a_bad_output_name_before_tracing(capsys, tmp_path: Path) -> None:
    code, _, err = run("spec", "torchvision:resnet18", "-o", str(tmp_path / "r18.txt"), capsys=capsys)
    assert code == 2 and ".yaml" in err


def test_cli_timm_missing_names_the_extra(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm then fails, as when it is absent
    code, _, err = run("summary", "timm:resnet50", capsys=capsys)
    assert code == 2 and "pip install 'ilsvrc[timm]'" in err


def test_cli_timm_model(capsys) -> None:
    pytest.importorskip("timm")
    _, out, _ = run("summary", "timm:resnet50", "--format", "json", capsys=capsys)
    assert json.loads(out)["totals"]["params"] == analyze(get_spec("resnet50")).params


def test_analysis_of_a_zoo_network_still_imports_no_torch() -> None:
    code = (
        "import sys; from ilsvrc.cli import main; main(['summary', 'resnet152']); "
        "assert 'torch' not in sys.modules and 'ilsvrc.tracing' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------------------------------
# Slow: every torchvision classification model


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision.models.list_models(torchvision.models))
def test_every_torchvision_classifier_traces_with_every_parameter(name: str) -> None:
    """Each classification model of torchvision (80 in 0.29) traces, at its weights' crop size, into
    a network whose parameters are exactly the module's; what does not map is opaque and warned of."""
    from ilsvrc.tracing import network_from_source

    try:
        module = torchvision_model(name)
    except NotImplementedError:  # its constructor reads a value (RegNet): on the CPU then
        module = torchvision.models.get_model(name, weights=None)
    net = network_from_source(f"torchvision:{name}")
    report = analyze(net)
    assert report.params_with_aux == sum(p.numel() for p in module.parameters())
    assert all(f.layer in {n for n, _ in walk(net.layers)} for f in report.findings)
