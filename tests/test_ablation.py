"""`ilsvrc ablation NAME` (issue 15, item 3): the papers' ablations as named studies, beside their claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ilsvrc import analyze, get_spec
from ilsvrc.cli import main
from ilsvrc.errors import SpecError
from ilsvrc.networks.edit import apply_edits
from ilsvrc.networks.spec import walk
from ilsvrc.training.ablations import ABLATIONS, check_plan, epochs_to, get_ablation
from ilsvrc.training.study import read_study, run_study, settings_from

TINY = ["--epochs", "1", "--image-size", "67", "--synthetic-classes", "4", "--synthetic-train", "16",
        "--synthetic-val", "8"]  # fmt: skip


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_builds_at_the_papers_size_and_differs_where_it_says(name: str) -> None:
    ablation = get_ablation(name)
    check_plan({"ablation": name, "image_size": 224})
    reports = [analyze(apply_edits(get_spec(v.model), v.edits)) for v in ablation.variants]
    assert len({r.network.layers for r in reports}) == len(reports)  # every variant a different network
    assert ablation.claim and ablation.source and ablation.question


def test_taking_a_layer_out() -> None:
    alexnet = get_spec("alexnet")
    no_lrn = apply_edits(alexnet, ["norm*.type=none"])
    assert [n for n, _ in walk(no_lrn.layers) if n.startswith("norm")] == []
    assert analyze(no_lrn).params == analyze(alexnet).params and len(no_lrn.layers) == len(alexnet.layers) - 2
    with pytest.raises(SpecError, match="cannot be taken out"):
        apply_edits(alexnet, ["conv1.type=none"])


def test_epochs_to_a_training_error_reads_the_curve() -> None:
    outcome = {"curve": [[1, 0.8, 0.7], [2, 0.3, 0.4], [3, 0.2, 0.35], [4, 0.1, 0.3]]}
    assert epochs_to(outcome, 0.05) is None
    assert epochs_to(outcome, 0.3) == 2  # reached at an epoch's end
    assert epochs_to(outcome, 0.25) == pytest.approx(2.5)  # halfway from 0.3 to 0.2 in epoch 3
    assert epochs_to(outcome, 0.9) == 1  # under it after the first epoch: the curve says no finer


def test_a_stated_target_error_replaces_the_papers(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ab"
    assert main(["ablation", "relu-vs-tanh", *TINY, "-o", str(out), "--target-error", "60"]) == 0
    plan, results = read_study(out, "ablation")
    assert plan["target"] == pytest.approx(0.6)
    table = (out / "ablation.md").read_text()
    assert "epochs to 60% train error" in table
    capsys.readouterr()
    # measured again on the runs there, nothing trained
    assert main(["ablation", "--resume", str(out), "--target-error", "70"]) == 0
    assert "epochs to 70% train error" in capsys.readouterr().out
    for r in results:
        reached = epochs_to(r, 0.7)
        assert ("not reached" if reached is None else f"{reached:.1f}") in (out / "ablation.md").read_text()
    assert main(["ablation", "relu-vs-tanh", *TINY, "--target-error", "250"]) == 2


def test_an_ablation_trains_its_variants_and_sets_them_beside_the_claim(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ab"
    assert main(["ablation", "relu-vs-tanh", *TINY, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    plan, results = read_study(out, "ablation")
    assert [r["label"] for r in results] == ["ReLU", "tanh"]
    configs = [json.loads((Path(r["run"]) / "config.json").read_text()) for r in results]
    assert configs[0]["edits"] == [] and configs[1]["edits"] == ["relu*.type=tanh"]
    kinds = {layer["type"] for layer in configs[1]["spec"]["layers"]}
    assert "tanh" in kinds and "relu" not in kinds
    assert get_ablation("relu-vs-tanh").claim in printed
    table = (out / "ablation.md").read_text()
    for r in results:
        assert f"| {r['label']} | {100 * r['top1_error']:.1f} |" in table
        reached = epochs_to(r, 0.25)
        assert ("not reached" if reached is None else f"{reached:.1f}") in table
    assert (out / "ablation.png").stat().st_size > 0


def test_a_stopped_ablation_resumes(tmp_path: Path) -> None:
    out = tmp_path / "ab"
    plan = dict(ablation="dropout", minutes=None, epochs=1, data=None, image_size=67, seed=0, recipe="cpu",
                synthetic_classes=4, synthetic_train=16, synthetic_val=8)  # fmt: skip

    def stop(*args) -> None:
        raise KeyboardInterrupt

    from ilsvrc.training.ablations import ablation_variants

    with pytest.raises(KeyboardInterrupt):
        run_study(out, "ablation", plan, ablation_variants, settings_from, progress=False,
                  log=lambda *a: None, after_each=stop)  # fmt: skip
    assert main(["ablation", "--resume", str(out)]) == 0
    _, results = read_study(out, "ablation")
    assert [r["label"] for r in results] == ["dropout 0.5", "no dropout"]


@pytest.mark.parametrize(
    "argv, says",
    [
        (["ablation", "relu-vs-sigmoid"], "no ablation called"),
        (["ablation"], "Name the ablation"),
        (["ablation", "lrn", "--image-size", "32"], "too small for alexnet"),
        (["ablation", "lrn", "--resume", "x"], "--resume goes on"),
        (["ablation", "lrn", "--epochs", "1", "--minutes", "-1"], "positive number of minutes"),
    ],
)
def test_bad_ablations_exit_2(argv: list[str], says: str, capsys) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_the_list(capsys) -> None:
    assert main(["ablation", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ABLATIONS)
