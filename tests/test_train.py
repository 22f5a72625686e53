"""Training end to end on the built-in data: learning, exact resumption, checkpoints, eval, predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ilsvrc.cli import main
from ilsvrc.training import checkpoint
from ilsvrc.training.loop import load_trained, make_config, read_metrics, train
from ilsvrc.training.recipes import RECIPES, LRSchedule, Recipe


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
    from ilsvrc.cli import _draw_curves  # what `ilsvrc train` passes: the loop itself does not draw

    run = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "run")), progress=False, log=_quiet,
                after_epoch=_draw_curves)  # fmt: skip
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
    """On the real clock: a limit of 0.02 min (1.2 s) on 1,000 epochs, which no machine runs in that
    time, stops the run by the limit with a metrics line and a readable checkpoint. (Where exactly it
    stops is checked on a fake clock: test_time_limit_stops_at_the_boundary_it_allows.)"""
    lines: list[str] = []
    cfg = make_config(tiny, "cpu", **quick(tiny, tmp_path / "t", epochs=1000, time_limit=0.02))
    run = train(cfg, progress=False, log=lines.append)
    metrics = read_metrics(run)
    assert metrics and metrics[-1]["epoch"] < 1000
    assert any(x.startswith("Stopped at step") and "the time limit of 0.02 min" in x for x in lines), lines
    model, *_ = load_trained(run)  # the final checkpoint is readable
    assert model.fc8.out_features == 4


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_runs_on_the_built_in_data(tiny: str, tmp_path: Path, name: str) -> None:
    # the tiny network's fc6 reads a map that grows with the input: one size only (test_fast.py has
    # the fast recipe's size schedule on a network that takes every size)
    one_size = {"size_schedule": "none", "test_scale": 1.0} if name == "fast" else {}
    run = train(
        make_config(tiny, name, **quick(tiny, tmp_path / name, epochs=1, batch_size=8, lr=None, **one_size)),
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
    from ilsvrc.training.loop import build_model

    model = build_model(make_config("alexnet", "alexnet"), 10)
    assert torch.all(model.conv2.bias == 1) and torch.all(model.fc7.bias == 1)
    assert torch.all(model.conv1.bias == 0) and torch.all(model.fc8.bias == 0)
    assert model.conv3.weight.std().item() == pytest.approx(0.01, rel=0.05)
    zf = build_model(make_config("zfnet", None), 10)
    assert torch.all(zf.conv2.bias == 0) and zf.fc6.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_zfnet_filter_renormalisation() -> None:
    from ilsvrc.training.loop import renormalise_filters

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
        (["train", "alexnet", "--recipe", "fastest"], "no recipe called 'fastest'"),
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


# ---------------------------------------------------------------------------------------------------
# Resuming a finished run, extending one (issue 10, item 3)


def test_extending_a_finished_onecycle_run_never_raises_the_lr(
    tiny: str, tmp_path: Path, monkeypatch
) -> None:
    """--resume RUN --epochs N on a finished one-cycle run: the lr stays at the one it ended with."""
    run = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "r")), progress=False, log=_quiet)
    ended = read_metrics(run)[-1]["lr"]
    used: list[float] = []
    real_lr = LRSchedule.lr

    def recorded(self, step: int, progress: float) -> float:
        used.append(real_lr(self, step, progress))
        return used[-1]

    monkeypatch.setattr(LRSchedule, "lr", recorded)
    lines: list[str] = []
    train(resume=run, overrides={"epochs": 4}, progress=False, log=lines.append)
    assert len(used) == 12  # two more epochs of 6 steps
    assert max(used) <= ended
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]
    assert all(m["lr"] <= ended for m in metrics[2:])
    assert any("fine-tuning tail" in x and "from 2 to 4 epochs" in x for x in lines), lines
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["epochs"] == 4  # a plain --resume later goes on to 4, not back to 2
    (extension,) = config["extensions"]
    assert extension["previous_epochs"] == 2 and extension["epochs"] == 4 and extension["step"] == 12


def test_extending_a_schedule_continues_it(tmp_path: Path) -> None:
    """The rest of an unfinished plan is spread over the new total; a finished one keeps its last lr;
    the time budget counts as the plan too; plateau keeps its divisions."""
    spe = 10
    for name in ("cosine", "onecycle"):
        before = LRSchedule(Recipe("t", lr=1.0, schedule=name, epochs=2), spe)
        last = before.lr(9, before.progress(9))
        after = LRSchedule(Recipe("t", lr=1.0, schedule=name, epochs=4), spe)
        after.extend(before, 10, 0.0, last)  # half-way through the old plan
        assert after.progress(10) == pytest.approx(0.5) and after.progress(40) == pytest.approx(1.0)
        lrs = [after.lr(s, after.progress(s)) for s in range(10, 40)]
        assert lrs[0] == pytest.approx(before.lr(10, before.progress(10)))  # no jump
        if name == "cosine":
            assert max(lrs) <= last and lrs == sorted(lrs, reverse=True)
        finished = LRSchedule(Recipe("t", lr=1.0, schedule=name, epochs=2), spe)
        ended = finished.lr(19, finished.progress(19))
        longer = LRSchedule(Recipe("t", lr=1.0, schedule=name, epochs=6), spe)
        longer.extend(finished, 20, 0.0, ended)
        assert {longer.lr(s, longer.progress(s)) for s in range(20, 60)} == {ended}
        again = LRSchedule(Recipe("t", lr=1.0, schedule=name, epochs=6), spe)
        again.load_state_dict(longer.state_dict())  # the checkpoint keeps the tail
        assert again.lr(30, again.progress(30)) == ended
    timed = LRSchedule(Recipe("t", lr=1.0, schedule="onecycle", epochs=100), spe, time_limit=100.0)
    more = LRSchedule(Recipe("t", lr=1.0, schedule="onecycle", epochs=100), spe, time_limit=200.0)
    more.extend(timed, 50, 98.0, 0.01)
    assert more.progress(50, 98.0) == pytest.approx(0.98) and more.progress(60, 200.0) == pytest.approx(1.0)
    plateau = LRSchedule(Recipe("t", lr=1.0, schedule="plateau", plateau_patience=1, epochs=2), spe)
    plateau.end_epoch(0.5)
    plateau.end_epoch(0.6)  # divided by 10
    longer = LRSchedule(Recipe("t", lr=1.0, schedule="plateau", plateau_patience=1, epochs=4), spe)
    assert "goes on as it was" in longer.extend(plateau, 20, 0.0, 0.1)
    assert longer.lr(25, longer.progress(25)) == pytest.approx(0.1) and longer.best == 0.5


def test_resuming_a_finished_run_says_there_is_nothing_left_to_do(tiny: str, tmp_path: Path, capsys) -> None:
    run = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "r", epochs=1)), progress=False, log=_quiet)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    for extra in ([], ["--epochs", "1"]):
        assert main(["train", "--resume", str(run), *extra]) == 2
        captured = capsys.readouterr()
        assert not captured.out
        err = captured.err
        assert err.startswith("ilsvrc: error: Nothing left to do") and err.count("\n") == 1, err
        assert f"ilsvrc train --resume {run} --epochs N" in err and "above 1" in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing touched
    assert main(["train", "--resume", str(run), "--max-steps", "6", "--epochs", "2"]) == 2
    assert "--max-steps 6 counts every step" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# The time limit, on a fake clock (issue 10, item 4): steps and evaluations take set durations


class FakeClock:
    """The training loop's clock (ilsvrc.training.loop._now), moved only by what the loop does: each batch the
    loader hands over takes `step` seconds, each evaluation `evaluation`, each checkpoint `save`."""

    def __init__(self, monkeypatch, step: float, evaluation: float, save: float = 0.0) -> None:
        import ilsvrc.training.loop as training

        self.now, self.evaluations = 1000.0, 0
        real_loader, real_evaluate, real_save = training.loader, training.evaluate, checkpoint.save

        def loader(*args, **kwargs):
            for batch in real_loader(*args, **kwargs):
                self.now += step
                yield batch

        def evaluate(*args, **kwargs):
            self.now += evaluation
            self.evaluations += 1
            return real_evaluate(*args, **kwargs)

        def save_checkpoint(*args, **kwargs):
            self.now += save
            return real_save(*args, **kwargs)

        monkeypatch.setattr(training, "_now", lambda: self.now)
        monkeypatch.setattr(training, "loader", loader)
        monkeypatch.setattr(training, "evaluate", evaluate)
        monkeypatch.setattr(checkpoint, "save", save_checkpoint)


def test_time_limit_counts_the_data_preparation(tiny: str, tmp_path: Path, monkeypatch) -> None:
    """Opening the data (decoding it into the cache, on a real data set) is part of the run's time: with
    30 s of it, a 60 s limit leaves room for 2 epochs of 11 s and then 2 steps and their evaluation
    (30 + 22 + 2 + 5 = 59), not the 5 epochs of an instant start; the metrics' seconds count from
    before it."""
    import ilsvrc.training.loop as training

    clock = FakeClock(monkeypatch, step=1.0, evaluation=5.0)
    real_datasets = training.datasets

    def slow_datasets(*args, **kwargs):
        clock.now += 30.0
        return real_datasets(*args, **kwargs)

    monkeypatch.setattr(training, "datasets", slow_datasets)
    cfg = make_config(tiny, "cpu", **quick(tiny, tmp_path / "t", epochs=50, time_limit=1.0))
    metrics = read_metrics(train(cfg, progress=False, log=_quiet))
    assert [m["epoch"] for m in metrics] == [1, 2, pytest.approx(2 + 2 / 6, abs=1e-3)]
    assert metrics[1]["seconds"] == pytest.approx(52.0) and metrics[-1]["seconds"] == pytest.approx(59.0)


def test_time_limit_stops_at_the_boundary_it_allows(tiny: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """6 steps of 1 s and an evaluation of 5 s make an epoch of 11 s; a limit of 60 s leaves room for 5
    epochs (55 s) and not for another step and its evaluation (55 + 1 + 5 > 60): the run stops after
    epoch 5, evaluating each state once, and reports the rate of its steps."""
    clock = FakeClock(monkeypatch, step=1.0, evaluation=5.0)
    cfg = make_config(tiny, "cpu", **quick(tiny, tmp_path / "t", epochs=50, time_limit=1.0))
    lines: list[str] = []
    run = train(cfg, progress=False, log=lines.append)
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4, 5] and all(m["complete"] for m in metrics)
    assert clock.evaluations == len(metrics)  # no second evaluation of the last state
    assert metrics[-1]["seconds"] == pytest.approx(55.0) and metrics[-1]["step"] == 30
    assert {m["images_per_s"] for m in metrics} == {8.0}  # 8 images per 1-second step
    assert any("the time limit of 1 min" in x for x in lines)
    # nothing left: resuming says so; a larger total limit goes on
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "Nothing left to do" in err and "--time-limit MINUTES" in err and err.count("\n") == 1
    train(resume=run, overrides={"time_limit": 1.35}, progress=False, log=_quiet)  # 81 s in all
    assert [m["epoch"] for m in read_metrics(run)] == [1, 2, 3, 4, 5, 6, 7]  # 77 + 1 + 5 > 81
    assert clock.evaluations == 7


def test_checkpoints_and_evaluations_are_not_training_time(tiny: str, tmp_path: Path, monkeypatch) -> None:
    """images_per_s: training images over the time of the training steps alone."""
    FakeClock(monkeypatch, step=0.5, evaluation=3.0, save=2.0)
    cfg = make_config(tiny, "cpu", **quick(tiny, tmp_path / "c", checkpoint_every=1))
    metrics = read_metrics(train(cfg, progress=False, log=_quiet))
    assert [m["images_per_s"] for m in metrics] == [16.0, 16.0]  # 8 images per 0.5 s
    assert [m["data_wait_fraction"] for m in metrics] == [1.0, 1.0]  # the fake steps are all loading
    # wall time: 6 steps, 5 periodic checkpoints and an evaluation, then the epoch's checkpoint
    assert metrics[0]["seconds"] == pytest.approx(6 * 0.5 + 5 * 2.0 + 3.0)


# ---------------------------------------------------------------------------------------------------
# Resuming keeps the metrics its checkpoint includes; unreadable validation sets (issue 10, item 8)


def test_a_resumed_run_keeps_the_line_of_its_partial_epoch(tiny: str, tmp_path: Path) -> None:
    run = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "p")), stop_after_steps=9, progress=False,
                log=_quiet)  # fmt: skip
    assert [m["epoch"] for m in read_metrics(run)] == [1, 1.5]  # stopped half-way through epoch 2
    with open(run / "metrics.jsonl", "a") as f:  # a line whose checkpoint a crash lost
        f.write(json.dumps({"epoch": 2, "step": 12, "complete": True}) + "\n")
    train(resume=run, progress=False, log=_quiet)
    metrics = read_metrics(run)
    assert [(m["epoch"], m["step"]) for m in metrics] == [(1, 6), (1.5, 9), (2, 12)]
    assert "train_loss" in metrics[-1]  # the lost line was written again, by the resumed run


def test_an_unreadable_validation_set_is_not_fatal(tiny: str, tmp_path: Path) -> None:
    """Every validation file unreadable: the run trains, and says the val errors were not measured."""
    from PIL import Image

    root = tmp_path / "data"
    for c, name in enumerate(("ant", "bee")):
        for split in ("train", "val"):
            (root / split / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (36, 36), (40 + 150 * c, 20 * i, 90)).save(root / "train" / name / f"{i}.png")
        for i in range(2):
            (root / "val" / name / f"{i}.jpg").write_text("not an image")
    lines: list[str] = []
    cfg = make_config(tiny, "cpu", data=str(root), out=str(tmp_path / "run"), epochs=2, batch_size=4,
                      image_size=32, workers=0, cache=False)  # fmt: skip
    run = train(cfg, progress=False, log=lines.append)
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(m["val_top1_error"] is None and m["val_top5_error"] is None for m in metrics)
    assert all(m["skipped_val"] == 4 for m in metrics)
    assert any("val not measured (4 unreadable images" in x for x in lines), lines
    assert "No validation error was measured" in lines[-1]


# ---------------------------------------------------------------------------------------------------
# Smaller things (issue 10, item 9)


def test_a_too_small_image_size_names_the_smallest_that_works(tmp_path: Path, capsys, monkeypatch) -> None:
    import ilsvrc.training.loop as training

    def no_data(*args, **kwargs):
        raise AssertionError("data was read before the image size was checked")

    monkeypatch.setattr(training, "datasets", no_data)
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()  # exists, so only the size can be refused
    assert main(["train", "alexnet", "--image-size", "64", "--data", str(data), "--out", "run"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("ilsvrc: error: --image-size 64 is too small for alexnet: ") and err.count("\n") == 1
    )
    assert "alexnet takes inputs from 67x67 up; use --image-size 67 or more." in err
    assert list(tmp_path.iterdir()) == [data]  # no run directory
    with pytest.raises(AssertionError, match="data was read"):  # 67 passes the check
        main(["train", "alexnet", "--image-size", "67", "--data", str(data), "--out", "run"])


def test_eval_says_which_checkpoint_and_rounds_its_json(tiny: str, tmp_path: Path, capsys) -> None:
    import re

    run = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "e", synthetic_val=21)), progress=False,
                log=_quiet)  # fmt: skip
    capsys.readouterr()
    assert main(["eval", str(run), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {checkpoint.resolve(run, 'last')} (the last one; --which best for the best)" in out
    for option in ("--which", "--checkpoint"):  # --checkpoint: the old name, kept
        assert main(["eval", str(run), option, "best", "--format", "json", "--workers", "0"]) == 0
        text = capsys.readouterr().out
        result = json.loads(text)
        assert result["which"] == "best" and result["checkpoint"] == str(checkpoint.resolve(run, "best"))
        assert not re.findall(r"\d\.\d{7,}", text), text  # 6 decimals at most
        assert result["images"] == 21 and result["top1_error"] == round(result["top1_error"], 6)
        assert json.loads((run / "eval-center.json").read_text()) == result
    assert main(["eval", str(checkpoint.resolve(run, "best")), "--format", "json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["which"] is None  # a checkpoint given itself


def test_stop_after_one_step_is_singular(tiny: str, tmp_path: Path) -> None:
    lines: list[str] = []
    train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "s", epochs=1)), stop_after_steps=1,
          progress=False, log=lines.append)  # fmt: skip
    assert any("(stop after 1 step)" in x for x in lines), lines
    assert "1 epoch of 6 steps" in lines[0]


# ---------------------------------------------------------------------------------------------------
# A step does not wait for the device (issue 11, item 2)


def test_the_loop_reads_the_device_once_every_sync_interval(tiny: str, tmp_path: Path, monkeypatch) -> None:
    """The steps leave their losses and hits on the device; the loop reads them, in one transfer, every
    SYNC_EVERY steps and at the epoch's end: 24 steps make 3 reads (it read four times at every step)."""
    import sys

    import ilsvrc.training.loop as training

    reads: list[str] = []
    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            if sys._getframe(1).f_code.co_filename == training.__file__:  # the loop's own code reads
                reads.append(f"{_name} in {sys._getframe(1).f_code.co_name}")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    assert training.SYNC_EVERY == 10
    run = train(make_config(tiny, "cpu", **quick(tiny, tmp_path / "r", epochs=1, synthetic_train=24 * 8)),
                progress=False, log=_quiet)  # fmt: skip
    assert read_metrics(run)[0]["step"] == 24
    # besides the epoch's shuffle (on the CPU; also once at set-up) and the weights' check before the
    # checkpoint: the losses, after steps 10 and 20 and (the last 4) at the epoch's end
    steps = [x for x in reads if not x.endswith((" in epoch_batches", " in _save"))]
    assert steps == ["tolist in read"] * 3, reads


def test_a_nan_is_named_at_its_step_and_never_checkpointed(spec: str, tmp_path: Path) -> None:
    """A loss that turns NaN between two reads: the error names the step where it did, whenever it was
    read; with a checkpoint after every step, the last one on disk is from just before that step, with
    finite sums and weights."""
    import re

    from ilsvrc.training.loop import DivergedError

    settings = dict(image_size=32, synthetic_classes=4, workers=0, epochs=3, synthetic_train=48,
                    synthetic_val=16, batch_size=8, lr=30.0, schedule="constant")  # fmt: skip
    named = {}
    for every in (None, 1):
        run = tmp_path / f"every-{every}"
        with pytest.raises(DivergedError, match=r"at step \d+") as info:
            train(make_config(spec, "cpu", out=str(run), checkpoint_every=every, **settings), progress=False,
                  log=_quiet)  # fmt: skip
        named[every] = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    assert named[None] == named[1] >= 1
    weights, state, _ = checkpoint.load(tmp_path / "every-1")
    assert state["step"] == named[1]  # the state before the step whose loss was NaN
    assert math.isfinite(state["sums"]["loss"]) and all(torch.isfinite(w).all() for w in weights.values())
