"""The ILSVRC history replayed (issue 14, item 3): each entry on the same data for the same minutes,
measured the same way, resumable; the command line's table and chart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ilsvrc.cli import main
from ilsvrc.training import loop
from ilsvrc.training.metrics import read_metrics
from ilsvrc.training.replay import REPLAY_FILE, ReplayError, ReplayPlan, read_replay, replay, stands_for

TINY = dict(minutes=0.04, image_size=67, synthetic_train=32, synthetic_val=16, synthetic_classes=4)


def quiet(*args, **kwargs) -> None:
    pass


def tiny_plan(entries: list[str], **changes) -> ReplayPlan:
    return ReplayPlan(entries=entries, **{**TINY, **changes})


def test_entries_stand_for_their_year_and_run_in_its_order() -> None:
    assert stands_for("alexnet").entry == "SuperVision" and stands_for("vgg16-bn").entry == "VGG"
    assert stands_for("resnet18").year == 2015 and stands_for("sift-bow").year == 2010
    plan = tiny_plan(["resnet18", "alexnet"])
    assert plan.entries == ["alexnet", "resnet18"]  # 2012 before 2015, whatever the order given
    with pytest.raises(ReplayError, match="plain18"):
        stands_for("plain18")  # a zoo network, but no entry of the history
    with pytest.raises(ReplayError, match="named twice"):
        tiny_plan(["alexnet", "alexnet"])


def test_a_replay_trains_each_entry_for_its_budget_and_measures_it(tmp_path: Path) -> None:
    out = tmp_path / "replay"
    plan, results = replay(out, tiny_plan(["resnet18", "alexnet"]), progress=False, log=quiet)
    assert [r.name for r in results] == ["alexnet", "resnet18"]  # in the order of their years
    for r in results:
        rows = read_metrics(Path(r.run))
        assert Path(r.run).parent == out
        assert r.top1_error == rows[-1]["val_top1_error"] and r.top5_error == rows[-1]["val_top5_error"]
        config = json.loads((Path(r.run) / "config.json").read_text())
        assert config["time_limit"] == plan.minutes and config["recipe"]["name"] == plan.recipe
        assert config["image_size"] == plan.image_size and config["seed"] == plan.seed
    held, again = read_replay(out)
    assert held == plan and again == results


def test_a_replay_stopped_between_entries_resumes_with_the_next(tmp_path: Path) -> None:
    out = tmp_path / "replay"

    def stop(*args) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay(out, tiny_plan(["alexnet", "resnet18"]), progress=False, log=quiet, after_entry=stop)
    first = out / "01-alexnet" / "metrics.jsonl"
    before = first.read_text()
    assert not (out / "02-resnet18").exists()
    _, results = replay(out, progress=False, log=quiet)  # resumed from what OUT holds
    assert [r.name for r in results] == ["alexnet", "resnet18"]
    assert first.read_text() == before  # the finished entry was not trained again


def test_an_entry_stopped_inside_its_run_goes_on_from_its_checkpoint(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "replay"
    real = loop.train

    def killed_after_one_step(config=None, **kwargs):
        real(config, stop_after_steps=1, **kwargs)  # a clean checkpoint at step 1, as SIGTERM leaves
        raise KeyboardInterrupt

    def three_steps(config=None, **kwargs):  # the budget is minutes: count steps instead of the clock
        return real(config, stop_after_steps=3, **kwargs)

    monkeypatch.setattr(loop, "train", killed_after_one_step)
    with pytest.raises(KeyboardInterrupt):
        replay(out, tiny_plan(["alexnet"], minutes=30), progress=False, log=quiet)
    run = out / "01-alexnet"
    assert read_metrics(run)[-1]["step"] == 1
    monkeypatch.setattr(loop, "train", three_steps)
    _, (result,) = replay(out, progress=False, log=quiet)
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3]  # the same run, on from its checkpoint at step 1
    assert result.top1_error == rows[-1]["val_top1_error"]


def test_an_entry_stopped_before_its_first_checkpoint_starts_again(tmp_path: Path) -> None:
    out = tmp_path / "replay"
    replay_plan = tiny_plan(["alexnet"])
    out.mkdir()
    (out / REPLAY_FILE).write_text(json.dumps({"plan": replay_plan.to_dict(), "results": []}))
    (out / "01-alexnet").mkdir()
    (out / "01-alexnet" / "config.json").write_text("{}")  # a run killed before it saved anything
    _, (result,) = replay(out, progress=False, log=quiet)
    assert result.name == "alexnet" and read_metrics(out / "01-alexnet")


def test_the_command_line_writes_the_table_and_the_chart(tmp_path: Path, capsys) -> None:
    out = tmp_path / "replay"
    args = ["history", "--entries", "resnet18,sift-bow,alexnet", "--minutes", "0.04", "--image-size", "67",
            "--synthetic-train", "32", "--synthetic-val", "16", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    table = (out / "history.md").read_text()
    _, results = read_replay(out)
    for r in results:
        row = f"| {r.year} | {r.stands_for} | {r.name} | {r.published_top5:g} | {100 * r.top1_error:.1f} |"
        assert row in table
        assert r.name in printed
    image = np.asarray(Image.open(out / "history.png").convert("RGB"))
    assert image.shape[1] > 1000 and (image < 250).any(axis=2).mean() > 0.03
    assert [r.name for r in results] == ["sift-bow", "alexnet", "resnet18"]  # 2010, 2012, 2015
    # the run directories are ordinary runs: `ilsvrc eval` takes them (the classical one too)
    assert main(["eval", results[0].run, "--format", "json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["top1_error"] == pytest.approx(results[0].top1_error, abs=1e-6)
    # asked again with other settings, the replay refuses instead of mixing them
    assert main([*args[:-2], "--seed", "1", "-o", str(out)]) == 2
    assert "other settings: seed 0 (asked 1)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--entries", "alexnet,lenet"], "lenet"),
        (["--entries", "alexnet", "--image-size", "32"], "too small for alexnet"),
        (["--entries", "alexnet", "--minutes", "0"], "positive number of minutes"),
        (["--entries", "alexnet", "--chart"], "leave out --chart"),
        (["--resume", "OUT", "--minutes", "3"], "--resume goes on"),
        (["--data", "no/such/folder"], "no/such/folder"),
    ],
)
def test_bad_replays_exit_2_before_anything_runs(tmp_path: Path, capsys, argv: list[str], says: str) -> None:
    argv = [a.replace("OUT", str(tmp_path / "r")) for a in argv]
    assert main(["history", *argv, "-o", str(tmp_path / "new")]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_resuming_a_folder_without_a_replay_says_so(tmp_path: Path, capsys) -> None:
    assert main(["history", "--resume", str(tmp_path)]) == 2
    assert "holds no replay" in capsys.readouterr().err
