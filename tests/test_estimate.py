"""What a run costs: `analysis.estimate`'s arithmetic against a hand computation from the analyzer's
multiply-adds, `ilsvrc estimate`'s table and errors, and the estimate `ilsvrc train` prints and records,
checked against the step times it recorded (arithmetic between figures, never a clock)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ilsvrc.analysis import estimate, render
from ilsvrc.analysis.analyzer import analyze
from ilsvrc.cli import main
from ilsvrc.networks import get_spec

IMAGENET_TRAIN, IMAGENET_VAL = 1_281_167, 50_000


def run(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------------
# The arithmetic


def test_alexnet_on_imagenet_is_six_times_its_macs_per_training_image() -> None:
    """AlexNet (the paper's, two-GPU groups) at 227 px: 724,406,816 MACs (the analyzer's count); a
    training image 3 x 2 x that, a test image 2 x; an epoch adds the 50,000 validation images once."""
    report = analyze(get_spec("alexnet"))
    assert report.macs == 724_406_816
    cost = estimate.RunCost.of(report, IMAGENET_TRAIN, IMAGENET_VAL, 90)
    assert cost.train_flops == 6 * 724_406_816
    assert cost.eval_flops == 2 * 724_406_816
    epoch = IMAGENET_TRAIN * 6 * 724_406_816 + IMAGENET_VAL * 2 * 724_406_816
    assert cost.epoch_flops == epoch
    assert cost.run_flops == 90 * epoch


def test_auxiliary_classifiers_count_in_training_only() -> None:
    report = analyze(get_spec("googlenet"))
    assert report.aux_macs > 0
    cost = estimate.RunCost.of(report, 100, 10, 1)
    assert cost.train_flops == 6 * (report.macs + report.aux_macs)
    assert cost.eval_flops == 2 * report.macs


def test_protocol_views() -> None:
    assert estimate.protocol_views("center", 224) == 1
    assert estimate.protocol_views("10crop", 224) == 10
    # VGG's dense test at Q = 256, 384, 512 with flips: the area of each scale over the crop's
    assert estimate.protocol_views("dense", 224) == pytest.approx(2 * (256**2 + 384**2 + 512**2) / 224**2)
    report = analyze(get_spec("vgg16"))
    assert report.macs + report.bias_adds == 15_483_821_032  # torchinfo's count of torchvision's vgg16
    cost = estimate.RunCost.of(report, 10, 10, 1, views=10)
    assert cost.eval_flops == 2 * report.macs * 10 and cost.train_flops == 6 * report.macs


def test_time_is_flops_over_peak_times_utilisation_times_gpus() -> None:
    cost = estimate.RunCost.of(analyze(get_spec("resnet50")), IMAGENET_TRAIN, IMAGENET_VAL, 120)
    one = estimate.time_on(cost, estimate.hardware("a100"))  # bf16 by default: 312 TFLOP/s, 25%
    assert one.run_seconds == pytest.approx(cost.run_flops / (312e12 * 0.25))
    eight = estimate.time_on(cost, estimate.hardware("a100", 8))
    assert eight.run_seconds == pytest.approx(one.run_seconds / 8)  # linear scaling, as stated
    fp32 = estimate.time_on(cost, estimate.hardware("a100", precision="fp32", utilisation=0.4))
    assert fp32.epoch_seconds == pytest.approx(cost.epoch_flops / (19.5e12 * 0.4))
    given = estimate.time_on(cost, estimate.given_rate(100, 2))
    assert given.run_seconds == pytest.approx(cost.run_flops / 200e12)


def test_a_precision_the_gpu_lacks_falls_back() -> None:
    assert estimate.hardware("v100", precision="bf16").precision == "fp16"
    assert estimate.hardware("gtx580", precision="bf16").precision == "fp32"
    assert estimate.hardware("gtx580").utilisation == estimate.DEFAULT_UTILISATION["fp32"]


def test_the_paper_time_implies_a_utilisation() -> None:
    """AlexNet: 90 epochs on two GTX 580s (1.581 TFLOP/s each) took 5-6 days: the FLOPs at full peak
    over those days is the fraction of peak the paper's code reached."""
    paper = estimate.paper_run("alexnet")
    assert paper is not None and paper.count == 2 and paper.days == (5, 6)
    cost = estimate.RunCost.of(analyze(get_spec("alexnet")), IMAGENET_TRAIN, IMAGENET_VAL, paper.epochs)
    compared = estimate.compare_paper(paper, cost)
    at_peak = cost.run_flops / (2 * 1.581e12)
    assert compared.peak_seconds == pytest.approx(at_peak)
    assert compared.implied_utilisation == pytest.approx((at_peak / (6 * 86400), at_peak / (5 * 86400)))
    assert estimate.paper_run("resnet50") is None  # the ResNet paper gives no training time


def test_a_folder_is_counted(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 2)):
        for c in ("a", "b"):
            folder = tmp_path / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}.JPEG").write_bytes(b"")
            (folder / "notes.txt").write_text("not an image")
    size = estimate.data_size(str(tmp_path))
    assert (size.train, size.val, size.classes) == (6, 4, 2)


def test_step_estimate_arithmetic() -> None:
    e = estimate.StepEstimate(timed_steps=8, timed_images=256, timed_seconds=4.0, steps_per_epoch=100,
                              val_images=500, epochs=3, train_flops=6e9, eval_flops=2e9)  # fmt: skip
    assert e.step_seconds == 0.5
    assert e.rate == 256 * 6e9 / 4.0
    assert e.eval_seconds == 500 * 2e9 / e.rate
    assert e.epoch_seconds == 100 * 0.5 + e.eval_seconds
    assert e.run_seconds == 3 * e.epoch_seconds
    assert e.remaining_seconds(1, 40) == 2 * e.epoch_seconds - 40 * 0.5


def test_step_estimate_scales_each_epoch_by_its_size_and_skips_unevaluated_epochs() -> None:
    # timed at the first epoch's size (1 GFLOP an image); the later epochs cost 2 and 4
    e = estimate.StepEstimate(timed_steps=10, timed_images=100, timed_seconds=5.0, steps_per_epoch=20,
                              val_images=50, epochs=3, train_flops=1e9, eval_flops=1e9,
                              epoch_flops=(1e9, 2e9, 4e9), evaluated=(False, True, True))  # fmt: skip
    assert e.rate == 100 * 1e9 / 5.0
    train = [20 * 0.5 * k for k in (1, 2, 4)]
    assert [e.epoch_train_seconds(i) for i in range(3)] == pytest.approx(train)
    assert e.run_seconds == pytest.approx(sum(train) + 2 * e.eval_seconds)  # the first not evaluated
    assert e.remaining_seconds(1, 5) == pytest.approx(train[1] + train[2] + 2 * e.eval_seconds - 5 * 0.5 * 2)
    # a time limit that binds: 100 s, a quarter at the small size unevaluated, the rest at the largest
    quarter, rest = 25 / train[0], 75 / (train[2] + e.eval_seconds)
    assert e.epochs_by_time(100, [(0.25, 1e9, False), (0.75, 4e9, True)]) == pytest.approx(quarter + rest)
    assert e.to_dict()["epoch_train_flops_per_image"] == [1e9, 2e9, 4e9]
    # test-time flips on the last evaluation only: its mirrors' FLOPs once, at the end
    flipped = dataclasses.replace(e, last_extra_flops=1e9)
    assert flipped.run_seconds == pytest.approx(e.run_seconds + 50 * 1e9 / e.rate)
    assert flipped.remaining_seconds(2, 0) == pytest.approx(e.remaining_seconds(2, 0) + 50 * 1e9 / e.rate)
    cost = estimate.RunCost(100, 10, 20, 5, 3, last_extra_views=1.0)
    assert cost.run_flops == pytest.approx(3 * (20 * 6 * 100 + 5 * 2 * 10) + 5 * 2 * 10)


# ---------------------------------------------------------------------------------------------------
# ilsvrc estimate


def test_cli_table_shows_per_image_epoch_and_run_with_formulas(capsys) -> None:
    code, out, _ = run("estimate", "resnet50", "--gpu", "a100", "--gpus", "8", capsys=capsys)
    assert code == 0
    cost = estimate.RunCost.of(analyze(get_spec("resnet50")), IMAGENET_TRAIN, IMAGENET_VAL, 120)
    timed = estimate.time_on(cost, estimate.hardware("a100", 8))
    assert "120 epochs" in out  # the resnet recipe's
    assert f"3 x 2 x {render.short(cost.train_macs, 4)} MACs = {render.flops(cost.train_flops)}" in out
    assert f"run: 120 epochs x {render.flops(cost.epoch_flops)} = {render.flops(cost.run_flops)}" in out
    line = next(x for x in out.splitlines() if x.startswith("8 x A100"))
    assert render.duration(timed.epoch_seconds) in line and render.duration(timed.run_seconds) in line
    assert "NVIDIA A100 datasheet" in out  # its source


def test_asking_for_the_papers_gpus_gives_one_row_with_the_paper_beside_it(capsys) -> None:
    code, out, _ = run("estimate", "alexnet", "--gpu", "gtx580", "--gpus", "2", capsys=capsys)
    assert code == 0
    rows = [x for x in out.splitlines() if x.startswith("2 x GeForce GTX 580")]
    assert len(rows) == 1 and "5-6 days" in rows[0]


def test_cli_json_agrees_and_shows_the_paper_beside_today(capsys) -> None:
    code, out, _ = run("estimate", "vgg16", "--gpu", "h100", "--format", "json", capsys=capsys)
    assert code == 0
    data = json.loads(out)
    assert data["epochs"] == 74 and data["train_images"] == IMAGENET_TRAIN
    assert data["run_flops"] == pytest.approx(74 * data["epoch_flops"])
    (h100,) = data["hardware"]
    assert h100["run_seconds"] == pytest.approx(data["run_flops"] / (989.5e12 * 0.25))
    (paper,) = data["papers"]  # four Titan Blacks, 2-3 weeks
    assert paper["count"] == 4 and paper["paper_days"] == [14, 21]
    assert paper["run_seconds"] == pytest.approx(data["run_flops"] / (4 * 5.121e12 * 0.5))


def test_cli_rate_epochs_data_and_image_size(capsys, tmp_path: Path) -> None:
    code, out, _ = run("estimate", "alexnet", "--rate", "2", "--epochs", "5", "--data", "imagenette",
                       "--image-size", "128", "--format", "json", capsys=capsys)  # fmt: skip
    assert code == 0
    data = json.loads(out)
    report = analyze(get_spec("alexnet").with_num_classes(10), (3, 128, 128))
    assert data["train_macs"] == report.macs
    assert data["epoch_flops"] == 9_469 * 6 * report.macs + 2_925 * 2 * report.macs
    assert data["hardware"][0]["run_seconds"] == pytest.approx(5 * data["epoch_flops"] / 2e12)
    assert data["papers"] == []  # not the paper's run (128 px, Imagenette)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--gpu", "k80"], "Unknown GPU 'k80'"),
        (["--rate", "-3"], "--rate must be a positive"),
        (["--rate", "5", "--gpu", "a100"], "give either --rate or --gpu"),
        (["--data", "imagenet21k"], "Unknown data set 'imagenet21k'"),
        (["--data", "no/such/folder"], "does not exist"),
        (["--utilisation", "1.5"], "--utilisation is a fraction"),
        (["--images", "100", "--val-images", "-1"], "--val-images 0 or more"),
        (["--protocol", "dense", "--scales", "256,big"], "--scales takes shorter sides"),
    ],
)
def test_cli_errors_are_one_paragraph_exit_2(args: list[str], words: str, capsys) -> None:
    code, out, err = run("estimate", "alexnet", *args, capsys=capsys)
    assert code == 2 and out == ""
    assert words in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_unknown_model_is_exit_2(capsys) -> None:
    code, _, err = run("estimate", "alexnett", capsys=capsys)
    assert code == 2 and "alexnett" in err


# ---------------------------------------------------------------------------------------------------
# ilsvrc train


def _train(tmp_path: Path, capsys, *extra: str) -> tuple[str, list[dict]]:
    out = tmp_path / "run"
    code = main(["train", "resnet18", "--recipe", "cpu", "--image-size", "32", "--batch-size", "4",
                 "--synthetic-classes", "4", "--synthetic-val", "8", "--workers", "0", "--out", str(out),
                 *extra])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    return printed, [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_prints_an_estimate_that_follows_from_its_timed_steps(tmp_path: Path, capsys) -> None:
    # 10 steps an epoch; the second epoch stops after its first step (a partial line)
    printed, lines = _train(tmp_path, capsys, "--epochs", "2", "--synthetic-train", "40", "--max-steps", "11")
    first, second = lines
    e = first["estimate"]
    assert "estimate" not in second  # recorded once, in the epoch it was made
    report = analyze(get_spec("resnet18").with_num_classes(4), (3, 32, 32))
    assert e["train_flops_per_image"] == 6 * report.macs and e["eval_flops_per_image"] == 2 * report.macs
    # made after 10 steps, the first 2 left out of the timing
    assert e["after_steps"] == 10 and e["timed_steps"] == 8 and e["timed_images"] == 8 * 4
    assert e["step_seconds"] == pytest.approx(e["timed_seconds"] / 8, rel=1e-4)
    assert e["flops_per_s"] == pytest.approx(32 * e["train_flops_per_image"] / e["timed_seconds"], rel=1e-4)
    assert e["train_seconds"] == pytest.approx(10 * e["step_seconds"], rel=1e-3)
    assert e["eval_seconds"] == pytest.approx(8 * e["eval_flops_per_image"] / e["flops_per_s"], rel=1e-3)
    assert e["run_seconds"] == pytest.approx(2 * (e["train_seconds"] + e["eval_seconds"]), rel=1e-3)
    # the timed steps are some of the epoch's steps, whose recorded time includes them
    assert e["timed_seconds"] <= first["train_seconds"]
    # the printed sentence carries the same figures, before the first epoch's line
    said = next(x for x in printed.splitlines() if x.startswith("Estimate after 10 steps"))
    assert printed.index(said) < printed.index("epoch 1:")
    assert f"{e['step_seconds']:.3g} s a step" in said
    assert render.rate(e["flops_per_s"]) in said and render.duration(e["epoch_seconds"]) in said
    assert f"the run, 2 epochs: {render.duration(e['run_seconds'])}" in said
    cost = next(x for x in printed.splitlines() if x.startswith("Cost:"))
    run_flops = 2 * (40 * 6 * report.macs + 8 * 2 * report.macs)  # 2 epochs of 40 train and 8 val images
    assert render.flops(6 * report.macs) in cost and render.flops(run_flops) in cost
    # resumed, the run times its own steps again (9 left: the estimate at the epoch's end, 7 timed) and
    # says what is left from where it resumed
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    resumed = capsys.readouterr().out
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    e2 = lines[-1]["estimate"]
    assert lines[-1]["step"] == 20 and e2["after_steps"] == 9 and e2["timed_steps"] == 7
    assert e2["step_seconds"] == pytest.approx(e2["timed_seconds"] / 7, rel=1e-4)
    said = next(x for x in resumed.splitlines() if x.startswith("Estimate after 9 steps"))
    # what is left after the epoch's last step: 2 epochs - 1 - 10 steps = its evaluation
    again = estimate.StepEstimate(e2["timed_steps"], e2["timed_images"], e2["timed_seconds"], 10, 8, 2,
                                  e2["train_flops_per_image"], e2["eval_flops_per_image"])  # fmt: skip
    left = again.remaining_seconds(1, 10)
    assert left == pytest.approx(e2["eval_seconds"])
    assert f"({render.duration(left)} left from epoch 2, step 20)" in said


def test_train_with_fewer_steps_than_the_warm_up_times_them_all(tmp_path: Path, capsys) -> None:
    printed, (line,) = _train(tmp_path, capsys, "--epochs", "1", "--synthetic-train", "8",
                              "--time-limit", "30")  # fmt: skip
    e = line["estimate"]
    assert e["after_steps"] == 2 and e["timed_steps"] == 2  # both steps, said so
    assert e["timed_seconds"] == pytest.approx(line["train_seconds"], abs=1e-5)  # the whole epoch's steps
    said = next(x for x in printed.splitlines() if x.startswith("Estimate after 2 steps"))
    assert "the first 2 included" in said and "the time limit of 30 min" in said
    assert "has room for the whole run (1 epoch)" in said  # 2 steps of 4 images: far below 30 min


def test_train_under_a_size_schedule_rates_its_steps_at_the_size_they_ran(tmp_path: Path, capsys) -> None:
    # 4 epochs of 4 steps: 16 px, then 32 px from half the run (the epochs 3 and 4); evaluated from 50%
    printed, lines = _train(tmp_path, capsys, "--epochs", "4", "--synthetic-train", "16",
                            "--size-schedule", "0.5@0,1@0.5", "--eval-from", "0.5")  # fmt: skip
    e = lines[0]["estimate"]
    small, large = (analyze(get_spec("resnet18").with_num_classes(4), (3, s, s)) for s in (16, 32))
    assert e["train_flops_per_image"] == 6 * small.macs  # timed at 16 px
    assert e["epoch_train_flops_per_image"] == [6 * small.macs] * 2 + [6 * large.macs] * 2
    assert e["evaluated"] == [False, True, True, True]
    rate = e["timed_images"] * 6 * small.macs / e["timed_seconds"]
    assert e["flops_per_s"] == pytest.approx(rate, rel=1e-4)
    ratio = large.macs / small.macs
    assert e["run_seconds"] == pytest.approx(e["train_seconds"] * (2 + 2 * ratio) + 3 * e["eval_seconds"],
                                             rel=1e-3)  # fmt: skip
    said = next(x for x in printed.splitlines() if x.startswith("Estimate after"))
    assert "at 16 px" in said and "2 at 16 px, 2 at 32 px" in said and "1 epoch without evaluation" in said
    cost = next(x for x in printed.splitlines() if x.startswith("Cost:"))
    run_flops = 16 * 6 * (2 * small.macs + 2 * large.macs) + 3 * 8 * 2 * large.macs
    assert render.flops(run_flops) in cost
