"""`ilsvrc eval RUN1 RUN2 ...`: an ensemble's error against a hand computation (issue 15, item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ilsvrc.cli import main
from ilsvrc.training.data import open_dataset
from ilsvrc.training.evaluate import eval_input_transform
from ilsvrc.training.loop import load_trained

COMMON = ["--recipe", "cpu", "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--synthetic-train",
          "16", "--synthetic-val", "12", "--synthetic-classes", "4", "--workers", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(spec: str, tmp_path_factory) -> list[Path]:
    """Three tiny runs on the same built-in data: two seeds of one spec (same data seed needed: the
    built-in val split is drawn from the seed, so the runs differ by their training only)."""
    root = tmp_path_factory.mktemp("ensemble")
    out = []
    for i, lr in enumerate(("0.02", "0.05", "0.01")):
        run = root / f"r{i}"
        assert main(["train", spec, *COMMON, "--lr", lr, "--out", str(run)]) == 0
        out.append(run)
    return out


def by_hand(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's softmax on every val image and the targets, computed here from its checkpoint."""
    model, config, _, _ = load_trained(run)
    net, r = config.network(), config.recipe
    val = open_dataset(None, "val", image_size=round(config.image_size / r.crop_fraction), seed=config.seed,
                       num_classes=config.synthetic_classes, length=config.synthetic_val)  # fmt: skip
    transform = eval_input_transform(
        "center", config.image_size, net.info.mean, net.info.std, r.crop_fraction
    )
    images = torch.stack([transform(val[i][0]) for i in range(len(val))])
    targets = torch.tensor([val[i][1] for i in range(len(val))])
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(images), dim=1), targets


def test_the_ensemble_is_the_mean_of_the_members_softmax(runs: list[Path], capsys) -> None:
    assert main(["eval", *map(str, runs), "--format", "json", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    probs, targets = zip(*(by_hand(r) for r in runs))
    assert all(torch.equal(t, targets[0]) for t in targets)
    for member, p in zip(result["members"], probs):
        alone = (p.argmax(1) != targets[0]).float().mean().item()
        assert member["top1_error"] == pytest.approx(alone, abs=1e-6)
    mean = torch.stack(probs).mean(0)
    top1 = (mean.argmax(1) != targets[0]).float().mean().item()
    top3_hits = (mean.topk(4, dim=1).indices == targets[0][:, None]).any(1).float().mean().item()
    assert result["ensemble"]["top1_error"] == pytest.approx(top1, abs=1e-6)
    assert result["ensemble"]["top5_error"] == pytest.approx(1 - top3_hits, abs=1e-6)  # 4 classes: top-4
    confusion = torch.zeros(4, 4, dtype=torch.long)
    for t, p in zip(targets[0], mean.argmax(1)):
        confusion[t, p] += 1
    assert result["ensemble"]["confusion"] == confusion.tolist()
    assert result["ensemble"]["images"] == 12 and len(result["members"]) == 3


def test_the_text_table_lists_each_member_and_the_ensemble(runs: list[Path], capsys) -> None:
    assert main(["eval", str(runs[0]), str(runs[1]), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert str(runs[0]) in out and str(runs[1]) in out and "ensemble of 2" in out


def test_runs_of_other_classes_or_data_are_refused(
    runs: list[Path], spec: str, tmp_path: Path, capsys
) -> None:
    other = tmp_path / "five"
    args = [a if a != "4" else "5" for a in COMMON]  # five classes
    assert main(["train", spec, *args, "--max-steps", "1", "--out", str(other)]) == 0
    assert main(["eval", str(runs[0]), str(other), "--workers", "0"]) == 2
    assert "same classes" in capsys.readouterr().err
    seeded = tmp_path / "seed1"
    assert main(["train", spec, *COMMON, "--seed", "1", "--max-steps", "1", "--out", str(seeded)]) == 0
    assert main(["eval", str(runs[0]), str(seeded), "--workers", "0"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["eval", str(runs[0]), str(tmp_path / "nothing"), "--workers", "0"]) == 2
