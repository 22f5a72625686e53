"""`ilsvrc sweep` (issue 15, item 2): each variant's cost before training, the variants that cannot be
built left out, every other trained on the same data and budget, ranked, resumable; the best saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ilsvrc import analyze
from ilsvrc.cli import main
from ilsvrc.errors import SpecError
from ilsvrc.networks import resolve
from ilsvrc.networks.edit import apply_edits
from ilsvrc.networks.specfile import load
from ilsvrc.training.metrics import read_metrics
from ilsvrc.training.study import read_study, run_study, settings_from
from ilsvrc.training.sweep import parse_choices, plan_sweep, sweep_variants, variants

DATA = ["--image-size", "32", "--synthetic-classes", "4", "--synthetic-train", "16", "--synthetic-val", "8"]
SETTINGS = dict(minutes=None, epochs=1, data=None, image_size=32, seed=0, recipe="cpu", synthetic_classes=4,
                synthetic_train=16, synthetic_val=8)  # fmt: skip


def test_choices_and_the_grid() -> None:
    assert parse_choices("conv1.kernel=7,9,11") == ("conv1.kernel", ["7", "9", "11"])
    assert parse_choices("conv1.kernel=[7, 5],3") == ("conv1.kernel", ["[7, 5]", "3"])
    with pytest.raises(SpecError, match="LAYER.FIELD=V1,V2"):
        parse_choices("conv1.kernel=7,,9")
    grid = variants([("a.x", ["1", "2", "3"]), ("b.y", ["4", "5"])])
    assert len(grid) == 6 and ["a.x=1", "b.y=4"] in grid and ["a.x=3", "b.y=5"] in grid
    drawn = variants([("a.x", ["1", "2", "3"]), ("b.y", ["4", "5"])], draws=3, seed=7)
    assert len(drawn) == 3 and all(d in grid for d in drawn) and len({tuple(d) for d in drawn}) == 3
    assert drawn == variants([("a.x", ["1", "2", "3"]), ("b.y", ["4", "5"])], draws=3, seed=7)


def test_costs_come_first_and_impossible_variants_are_left_out(spec: str) -> None:
    plan, costs = plan_sweep(spec, ["conv1.kernel=3,5,40", "fc6.out_features=16,32"], None, dict(SETTINGS))
    assert len(costs) == 6
    broken = [c for c in costs if c.error]
    assert [c.edits[0] for c in broken] == ["conv1.kernel=40", "conv1.kernel=40"]  # wider than 32 px
    assert all("conv1" in c.error for c in broken)
    assert plan["variants"] == [c.edits for c in costs if not c.error]
    for c in costs:
        if not c.error:
            net = apply_edits(resolve(spec), c.edits).with_num_classes(4)
            report = analyze(net, (3, 32, 32), batch=32, suggest=False)
            assert (c.params, c.macs) == (report.params, report.macs)
            assert c.train_memory == report.memory()["training_total"]


def test_a_sweep_trains_every_variant_and_ranks_them(spec: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", spec, "--set", "conv1.out_channels=4,8,12", "--set", "conv1.kernel=3,40",
            "--epochs", "1", *DATA, "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.index("cannot be built") < printed.index("rank")  # costs before any training
    plan, results = read_study(out, "sweep")
    assert len(results) == 3 == len(plan["variants"])  # the three 40-wide variants were not run
    table = (out / "sweep.md").read_text()
    errors = [r["top1_error"] for r in sorted(results, key=lambda r: (r["top1_error"], r["top5_error"],
                                                                     r["minutes"]))]  # fmt: skip
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [float(row.split("|")[5]) for row in rows] == [round(100 * e, 1) for e in errors]  # ranked
    best = min(results, key=lambda r: (r["top1_error"], r["top5_error"], r["minutes"]))
    assert rows[0].split("|")[2].strip() == best["label"]
    saved = load(out / "best.yaml")  # the best variant's network, loadable as a spec file
    assert analyze(saved).params == analyze(apply_edits(resolve(spec), best["edits"])).params
    for r in results:
        config = json.loads((Path(r["run"]) / "config.json").read_text())
        assert config["edits"] == r["edits"] and config["recipe"]["epochs"] == 1
    assert (out / "sweep.png").stat().st_size > 0


def test_a_killed_sweep_resumes(spec: str, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    plan, _ = plan_sweep(spec, ["conv1.out_channels=4,8"], None, dict(SETTINGS))

    def stop(*args) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(out, "sweep", plan, sweep_variants, settings_from, progress=False, log=lambda *a: None,
                  after_each=stop)  # fmt: skip
    first = next(out.glob("01-*")) / "metrics.jsonl"
    before = first.read_text()
    assert main(["sweep", "--resume", str(out)]) == 0
    _, results = read_study(out, "sweep")
    assert [r["label"] for r in results] == ["conv1.out_channels=4", "conv1.out_channels=8"]
    assert first.read_text() == before and read_metrics(next(out.glob("02-*")))


def test_a_dry_run_trains_nothing_and_bad_sweeps_exit_2(spec: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "dry"
    assert main(["sweep", spec, "--set", "conv1.kernel=3,5", "--epochs", "1", *DATA, "--dry-run", "-o",
                 str(out)]) == 0  # fmt: skip
    assert "conv1.kernel=5" in capsys.readouterr().out and not out.exists()
    for argv, says in [
        (["sweep", spec, "--epochs", "1"], "at least one --set"),
        (["sweep", spec, "--set", "conv1.kernel=40,50", *DATA], "No variant"),
        (["sweep", spec, "--set", "conv1.kernal=3", *DATA], "no field 'kernal'"),
        (["sweep", "--resume", str(out), "--set", "conv1.kernel=3"], "--resume goes on"),
        (["sweep", spec, "--set", "conv1.kernel=3", "--random", "0"], "--random"),
    ]:
        assert main(argv) == 2, argv
        assert says in capsys.readouterr().err
