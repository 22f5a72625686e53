"""Training end to end on the built-in data: learning, exact resumption, checkpoints, eval, predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ilsvrc import checkpoint
from ilsvrc.cli import main
from ilsvrc.recipes import RECIPES, LRSchedule, Recipe
from ilsvrc.train import load_trained, make_config, read_metrics, train


def quick(tiny: str, out: Path, **changes) -> dict:
    settings = dict(out=str(out), epochs=2, batch_size=8, image_size=32, workers=0, synthetic_train=48,
                    synthetic_val=24, synthetic_classes=4, lr=0.02)  # fmt: skip
    settings.update(changes)
    return settings


def test_resumed_run_ends_with_the_same_weights(tiny: str, tmp_path: Path) -> None:
    straight = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "a")), progress=False, log=_quiet)
    # stop in the middle of the first epoch, resume with data loading workers this time
    stopped = train(
        make_config(tiny, "cpu", **quick(tiny, tmp_path / "b")),
        stop_after_steps=4,
        progress=False,
        log=_quiet,
    )
    assert json.loads((stopped / "checkpoints" / "last.json").read_text())["step"] == 4
    train(resume=stopped, overrides={"workers": 2}, progress=False, log=_quiet)
    a = load_file(checkpoint.resolve(straight) / "model.safetensors")
    b = load_file(checkpoint.resolve(stopped) / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:  # exact resume: the same steps on the same path (workers only move the data loading)
        assert torch.equal(a[key], b[key]), key
    ma, mb = read_metrics(straight), read_metrics(stopped)
    assert [m["epoch"] for m in ma] == [1, 2]
    assert [m["epoch"] for m in mb if m["complete"]] == [1, 2]
    assert ma[-1]["val_top1_error"] == mb[-1]["val_top1_error"]  # exact: the same weights, evaluated alike
    assert ma[-1]["train_loss"] == pytest.approx(mb[-1]["train_loss"], rel=1e-12)


def test_run_directory_contents(tiny: str, tmp_path: Path) -> None:
    run = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "run")), progress=False, log=_quiet)
    config = json.loads((run / "config.json").read_text())
    assert (
        config["recipe"]["name"] == "cpu" and config["image_size"] == 32 and config["spec"]["name"] == "tiny"
    )
    classes = json.loads((run / "classes.json").read_text())
    assert [c["index"] for c in classes] == [0, 1, 2, 3] and classes[0]["id"] == "circle"
    for line in read_metrics(run):
        for key in ("epoch", "train_loss", "train_top1_error", "val_top1_error", "val_top5_error", "lr",
                    "images_per_s", "seconds"):  # fmt: skip
            assert isinstance(line[key], (int, float)) and math.isfinite(line[key]), key
        assert 0 < line["data_wait_fraction"] < 1  # some waiting for the loader, never all of the time
    assert (run / "curves.png").stat().st_size > 10_000
    last, best = checkpoint.resolve(run, "last"), checkpoint.resolve(run, "best")
    assert (last / "model.safetensors").exists() and (best / "state.pt").exists()
    kept = sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir())
    assert set(kept) == {last.name, best.name}  # older checkpoints pruned


def test_time_limit_ends_cleanly(tiny: str, tmp_path: Path) -> None:
    run = train(
        make_config(tiny, "cpu", **quick(tiny, tmp_path / "t", epochs=50, time_limit=0.02)),
        progress=False,
        log=_quiet,
    )
    metrics = read_metrics(run)
    assert metrics and metrics[-1]["seconds"] < 50 * 6  # far from the 50 epochs
    assert metrics[-1]["epoch"] < 50
    model, *_ = load_trained(run)  # the final checkpoint is readable
    assert model.fc8.out_features == 4


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_runs_on_the_built_in_data(tiny: str, tmp_path: Path, name: str) -> None:
    run = train(
        make_config(tiny, name, **quick(tiny, tmp_path / name, epochs=1, batch_size=8, lr=None)),
        progress=False,
        log=_quiet,
    )
    (line,) = read_metrics(run)
    assert math.isfinite(line["train_loss"]) and 0 <= line["val_top1_error"] <= 1


@pytest.mark.parametrize("augmentation", ["alexnet", "vgg", "rrc", "light"])
def test_every_augmentation_trains(tiny: str, tmp_path: Path, augmentation: str) -> None:
    cfg = make_config(
        tiny, "cpu", **quick(tiny, tmp_path / augmentation, epochs=1, augmentation=augmentation)
    )
    assert read_metrics(train(cfg, progress=False, log=_quiet))[0]["complete"]


def test_paper_initialisations(tiny: str) -> None:
    from ilsvrc.train import build_model

    model = build_model(make_config("alexnet", "alexnet"), 10)
    assert torch.all(model.conv2.bias == 1) and torch.all(model.fc7.bias == 1)
    assert torch.all(model.conv1.bias == 0) and torch.all(model.fc8.bias == 0)
    assert model.conv3.weight.std().item() == pytest.approx(0.01, rel=0.05)
    zf = build_model(make_config("zfnet", None), 10)
    assert torch.all(zf.conv2.bias == 0) and zf.fc6.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_zfnet_filter_renormalisation() -> None:
    from ilsvrc.train import renormalise_filters

    conv = torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([torch.full((3, 3, 3), v) for v in (0.05, 0.1, 0.2, 1.0)]))
    renormalise_filters(torch.nn.Sequential(conv), 0.1)
    rms = conv.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(rms, torch.tensor([0.05, 0.1, 0.1, 0.1]))


def test_schedules() -> None:
    r = Recipe("t", lr=1.0, schedule="onecycle")
    s = LRSchedule(r, steps_per_epoch=10)
    assert s.lr(0, 0.0) == pytest.approx(1 / 25)
    assert s.lr(25, 0.25) == pytest.approx(1.0)
    assert s.lr(100, 1.0) == pytest.approx(1e-4)
    cos = LRSchedule(Recipe("t", lr=1.0, schedule="cosine"), 10)
    assert cos.lr(50, 0.5) == pytest.approx(0.5)
    step = LRSchedule(Recipe("t", lr=1.0, schedule="step", step_epochs=2), 10)
    assert step.lr(19, 0) == 1.0 and step.lr(20, 0) == pytest.approx(0.1)
    warm = LRSchedule(Recipe("t", lr=1.0, schedule="constant", warmup_epochs=1), 10)
    assert warm.lr(0, 0) == pytest.approx(0.1) and warm.lr(5, 0) == pytest.approx(0.55)
    plateau = LRSchedule(Recipe("t", lr=1.0, schedule="plateau", plateau_patience=2), 10)
    assert not plateau.end_epoch(0.5) and not plateau.end_epoch(0.6)
    assert plateau.end_epoch(0.55) and plateau.lr(0, 0) == pytest.approx(0.1)
    again = LRSchedule(Recipe("t", lr=1.0, schedule="plateau", plateau_patience=2), 10)
    again.load_state_dict(plateau.state_dict())
    assert again.lr(0, 0) == plateau.lr(0, 0) and again.best == 0.5


def test_eval_protocols_and_predict_from_the_command_line(tiny: str, tmp_path: Path, capsys) -> None:
    run = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "e")), progress=False, log=_quiet)
    for protocol in ("center", "10crop", "dense"):
        assert main(["eval", str(run), "--protocol", protocol, "--format", "json", "--workers", "0"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["images"] == 24 and 0 <= result["top5_error"] <= result["top1_error"] <= 1
        written = json.loads((run / f"eval-{protocol}.json").read_text())
        assert written["top1_error"] == result["top1_error"]  # one result, printed and written
        assert (run / f"confusion-{protocol}.png").stat().st_size > 5_000
    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    assert main(["predict", str(run), str(image)]) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.strip().startswith(("1.", "2.", "3.", "4."))]
    assert len(lines) == 4  # 4 classes: the top-5 is all of them
    probs = [float(x.rsplit(":", 1)[1]) for x in lines]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize(
    "args,match",
    [
        (["train", "alexnet", "--recipe", "fast"], "no recipe called 'fast'"),
        (["train", "alexnet", "--data", "/nonexistent/data"], "does not exist"),
        (["train", "alexnet", "--schedule", "weekly"], "schedule 'weekly'"),
        (["train"], "Name the model to train"),
        (["train", "--resume", "/nonexistent/run"], "not a run directory"),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["train", "alexnet", "--device", "cuda"], "no usable GPU"),
        (["train", "alexnet", "--workers", "-3"], "workers must be 0"),
        (["train", "alexnet", "--time-limit", "-5"], "time_limit must be a positive"),
        (["train", "alexnet", "--dropout", "1.5"], "dropout must be a probability"),
        (["train", "alexnet", "--warmup-epochs", "nan"], "warmup_epochs must be a number, got nan"),
        (["train", "alexnet", "--momentum", "inf"], "momentum must be a number, got inf"),
        (["train", "alexnet", "--momentum", "1.5"], "momentum must be in [0, 1)"),
        (["train", "alexnet", "--lr", "-1", "--weight-decay", "-1"], "lr must be positive, got -1.0; weight"),
        (["train", "alexnet", "--seed", "-1"], "seed must be a whole number from 0"),
        (["train", "alexnet", "--lr", "x"], "argument --lr: invalid float value"),
        (["train", "alexnet", "--epochs", "0"], "argument --epochs: 0 must be positive"),
    ],
)
def test_bad_training_input_exits_2(args: list[str], match: str, capsys, tmp_path: Path, monkeypatch) -> None:
    """One paragraph, exit code 2, before anything is written (no run directory appears)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("ilsvrc: error: ") and match in err and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_existing_run_directory_is_not_overwritten(tiny: str, tmp_path: Path) -> None:
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("do not lose me")
    with pytest.raises(Exception, match="already exists"):
        train(make_config(tiny, "cpu", **quick(tiny, out)), progress=False, log=_quiet)
    assert (out / "precious.txt").read_text() == "do not lose me"


def test_the_readme_main_job_learns(tmp_path: Path, capsys) -> None:
    """The tour's training (AlexNet, cpu recipe, 96 px, 3 epochs, built-in data) learns."""
    from ilsvrc.cli import TOUR_TRAIN

    assert main(["train", *TOUR_TRAIN, "--out", str(tmp_path / "main")]) == 0
    metrics = read_metrics(tmp_path / "main")
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] - 0.3
    assert metrics[-1]["val_top1_error"] < 0.6  # chance is 0.9
    assert "Best val top-1 error" in capsys.readouterr().out


def _quiet(*args, **kwargs) -> None:
    pass


@pytest.mark.slow
def test_compiled_training_ends_where_eager_training_does(spec: str, tmp_path: Path) -> None:
    """--compile (torch.compile, inductor) changes speed, not the run: weights close to eager's."""
    weights = {}
    for compiled in (False, True):
        cfg = make_config(spec, "cpu", out=str(tmp_path / str(compiled)), image_size=32, synthetic_classes=4,
                          workers=0, epochs=1, synthetic_train=32, synthetic_val=16, batch_size=8,
                          compile=compiled)  # fmt: skip
        run = train(cfg, progress=False, log=lambda *a: None)
        weights[compiled] = load_file(checkpoint.resolve(run) / "model.safetensors")
    for key in weights[False]:
        torch.testing.assert_close(weights[True][key], weights[False][key], rtol=1e-3, atol=1e-4)
