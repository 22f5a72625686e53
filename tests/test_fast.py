"""`--recipe fast` (issue 16) and its tricks: each changes what it should, a fast run learns, and a
killed one resumes exactly.

The runs are small: the built-in data at 32 px or less, a few dozen steps, on a small network that
ends in a global pooling (so that it takes every size of a size schedule), and ResNet-18 where the
zoo's network matters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ilsvrc.cli import main
from ilsvrc.errors import IlsvrcError, ShapeError
from ilsvrc.networks.spec import AdaptiveAvgPool, BatchNorm, Conv, Flatten, Linear, MaxPool, Network, ReLU
from ilsvrc.networks.zoo import get_spec
from ilsvrc.training import checkpoint
from ilsvrc.training import loop as training_loop
from ilsvrc.training.evaluate import eval_input_transform, evaluate, flipped_logits, predict_probs
from ilsvrc.training.loop import (
    build_model,
    load_trained,
    make_config,
    parameter_groups,
    polyak_average,
    read_metrics,
    train,
)
from ilsvrc.training.recipes import (
    RECIPES,
    LRSchedule,
    check,
    check_network_sizes,
    get_recipe,
    size_at,
    size_schedule,
)

# conv -> batch norm -> ReLU -> pool, twice, then a global pooling: any input size, the same parameters
POOLED = Network(
    "pooled",
    (3, 32, 32),
    (
        Conv("conv1", 8, 3, padding=1, bias=False),
        BatchNorm("bn1"),
        ReLU("relu1"),
        MaxPool("pool1", 2),
        Conv("conv2", 16, 3, padding=1),
        BatchNorm("bn2"),
        ReLU("relu2"),
        AdaptiveAvgPool("gap", 1),
        Flatten("flatten"),
        Linear("fc", 10),
    ),
)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory) -> str:
    """POOLED as a spec file, what `ilsvrc train` takes."""
    from ilsvrc.networks.specfile import dumps

    path = tmp_path_factory.mktemp("spec") / "pooled.yaml"
    path.write_text(dumps(POOLED, "yaml"))
    return str(path)


def _quiet(*args, **kwargs) -> None:
    pass


def fast(out: Path, model: str, **changes) -> training_loop.TrainConfig:
    """The fast recipe on a small run of the built-in data: 4 epochs of 6 steps at 32 px, sizes 16 px
    for the first half of the run and 32 px after."""
    settings = dict(out=str(out), epochs=4, batch_size=8, image_size=32, workers=0, synthetic_train=48,
                    synthetic_val=24, synthetic_classes=4, size_schedule="0.5@0,1@0.5")  # fmt: skip
    settings.update(changes)
    return make_config(model, "fast", **settings)


# ---------------------------------------------------------------------------------------------------
# The recipe


def test_the_paper_recipes_leave_every_trick_off_and_fast_turns_them_on() -> None:
    for name, recipe in RECIPES.items():
        if name == "fast":
            continue
        r = recipe
        tricks = (r.size_schedule, r.test_scale, r.wd_norm_bias, r.tta_flip, r.eval_from)
        assert tricks == ("", 1.0, True, False, 0.0), name
    r = get_recipe("fast")
    assert r.size_schedule and not r.polyak_decay  # measured: the EMA cost accuracy at 20 minutes
    assert r.label_smoothing == 0 and not r.zero_init_residual  # measured: each cost accuracy at 20 minutes
    assert r.tta_flip and r.schedule == "onecycle"
    assert r.wd_norm_bias  # measured: the exemption of batch norms and biases cost accuracy at 20 minutes


# ---------------------------------------------------------------------------------------------------
# No weight decay on batch norms and biases


def test_without_wd_norm_bias_the_batch_norms_and_biases_are_not_decayed(pooled: str) -> None:
    """With a zero gradient, an SGD step is weight decay alone: w <- w - lr * wd * w. Without
    wd_norm_bias it shrinks every convolution and fully connected weight and leaves every batch-norm
    scale and shift and every bias as they were."""
    model = build_model(make_config(pooled, "fast", image_size=32), 10)
    for module in model.modules():  # give the batch norms and biases values that decay would change
        if isinstance(module, (nn.BatchNorm2d, nn.Linear)):
            nn.init.uniform_(module.bias, 0.5, 1.0)
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.0)
    lr, wd = 0.5, 0.1
    for wd_norm_bias in (True, False):
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer = torch.optim.SGD(parameter_groups(model, wd, wd_norm_bias), lr=lr, momentum=0.0)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        norms_and_biases = {f"{m}.{n}" for m, module in model.named_modules()
                            for n, _ in module.named_parameters(recurse=False)
                            if isinstance(module, nn.BatchNorm2d) or n == "bias"}  # fmt: skip
        assert len(norms_and_biases) == 2 * 2 + 2  # two batch norms; conv2's and fc's biases
        for name, p in model.named_parameters():
            decayed = wd_norm_bias or name not in norms_and_biases
            expected = before[name] * (1 - lr * wd) if decayed else before[name]
            torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0, msg=name)
        with torch.no_grad():  # back to where it was, for the other setting
            for name, p in model.named_parameters():
                p.copy_(before[name])


def test_a_run_without_wd_norm_bias_checkpoints_two_optimizer_groups(pooled: str, tmp_path: Path) -> None:
    config = fast(tmp_path / "r", pooled, epochs=1, wd_norm_bias=False)
    run = train(config, stop_after_steps=2, progress=False, log=_quiet)
    state = torch.load(checkpoint.resolve(run) / checkpoint.STATE, weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [get_recipe("fast").weight_decay, 0.0]
    # the weights of conv1, conv2 and fc decayed; the batch norms' scales and shifts and two biases not
    assert [len(g["params"]) for g in groups] == [3, 6]


# ---------------------------------------------------------------------------------------------------
# The smallest crop area (--min-crop-area)


def test_a_runs_crops_take_the_recipes_smallest_area_at_every_size_of_its_schedule(pooled: str) -> None:
    """`min_crop_area` reaches the crops a run trains on, and stays when progressive resizing changes
    their size: every crop drawn for a 180 x 240 image covers at least that share of it."""

    def smallest(train) -> float:
        crop = train.current_transform().transforms[0]
        torch.manual_seed(0)
        return min(h * w / (180 * 240) for _, _, h, w, _ in (crop.params(180, 240) for _ in range(500)))

    plain, _, _ = training_loop.datasets(fast("unused", pooled))
    assert smallest(plain) < 0.5  # the light crops' own 35%
    config = fast("unused", pooled, min_crop_area=0.8)
    train, _, _ = training_loop.datasets(config)
    assert smallest(train) >= 0.8 - 2 / 180
    training_loop.set_train_size(train, config, 16)
    assert train.current_transform().image_size == 16 and smallest(train) >= 0.8 - 2 / 180


# ---------------------------------------------------------------------------------------------------
# Test-time flips


def test_flips_average_the_logits_of_the_image_and_its_mirror() -> None:
    """By hand: softmax((f(x) + f(mirror of x)) / 2), each image alone; a network that is not mirror
    symmetric (a fully connected layer on the map) gives a different answer without the flips."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        by_hand = torch.stack([torch.softmax((net(x[i : i + 1])[0] + net(x[i : i + 1].flip(-1))[0]) / 2, 0)
                               for i in range(3)])  # fmt: skip
        torch.testing.assert_close(flipped_logits(net, x), (net(x) + net(x.flip(-1))) / 2)
    flipped = predict_probs(net, x, "center", crop=8, flips=True)
    torch.testing.assert_close(flipped, by_hand, rtol=1e-5, atol=1e-6)
    plain = predict_probs(net, x, "center", crop=8)  # the default for "center": no flips
    with torch.no_grad():
        torch.testing.assert_close(plain, torch.softmax(net(x), 1), rtol=1e-5, atol=1e-6)
    assert (plain - flipped).abs().max() > 1e-3
    # a whole loader, through `evaluate`: the same probabilities decide its errors
    targets = torch.tensor([0, 1, 2])
    result = evaluate(net, [(x, targets)], "center", crop=8, num_classes=5, flips=True)
    assert result.top1_error == pytest.approx(float((by_hand.argmax(1) != targets).float().mean()))


def test_a_run_with_tta_flip_is_evaluated_with_flips_in_training_and_by_eval(
    pooled: str, tmp_path: Path, capsys
) -> None:
    run = train(fast(tmp_path / "r", pooled, epochs=2, size_schedule="none", test_scale=1.25),
                progress=False, log=_quiet)  # fmt: skip
    lines = read_metrics(run)
    # the flips on the evaluation the run ends with; the one on the way (for the curve) without
    assert [(m["evaluated"], m["flips"]) for m in lines] == [(True, False), (True, True)]
    val = lines[-1]["val_top1_error"]
    assert main(["eval", str(run), "--format", "json", "--workers", "0"]) == 0
    with_flips = json.loads(capsys.readouterr().out)
    assert with_flips["top1_error"] == pytest.approx(val, abs=1e-6)  # as the run evaluated itself
    # by hand: the averaged model, at 40 px (32 x 1.25), on each image and its mirror
    model, config, *_ = load_trained(run)
    assert config.eval_size == 40
    _, val_set, _ = training_loop.datasets(config)
    images = torch.stack([val_set[i][0] for i in range(len(val_set))])
    targets = torch.tensor([val_set[i][1] for i in range(len(val_set))])
    assert images.shape[-1] == 40
    with torch.no_grad():
        logits = (model(images) + model(images.flip(-1))) / 2
    assert with_flips["top1_error"] == pytest.approx(float((logits.argmax(1) != targets).float().mean()))
    assert main(["eval", str(run), "--format", "json", "--workers", "0", "--no-tta-flip"]) == 0
    without = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        plain = model(images).argmax(1)
    assert without["top1_error"] == pytest.approx(float((plain != targets).float().mean()))


def test_eval_in_another_view_crops_the_same_weights_at_that_size_and_fraction(
    pooled: str, spec: str, tmp_path: Path, capsys
) -> None:
    """`ilsvrc eval --image-size N --crop-fraction F`: the centre N px of each image resized to N / F,
    the run's own weights, its files beside the run's own view's; a size where the network's
    parameters would change, or another protocol, is refused with exit code 2."""
    run = train(fast(tmp_path / "r", pooled, epochs=1, size_schedule="none", tta_flip=False),
                stop_after_steps=3, progress=False, log=_quiet)  # fmt: skip
    model, config, *_ = load_trained(run)
    _, val_set, _ = training_loop.datasets(config)
    info = config.network().info
    targets = torch.tensor([val_set[i][1] for i in range(len(val_set))])
    for size, fraction in ((40, 1.0), (24, 0.6)):
        args = ["eval", str(run), "--format", "json", "--workers", "0", "--image-size", str(size)]
        assert main([*args, "--crop-fraction", str(fraction)]) == 0
        found = json.loads(capsys.readouterr().out)
        assert (found["image_size"], found["crop_fraction"]) == (size, fraction)
        view = eval_input_transform("center", size, info.mean, info.std, fraction)
        images = torch.stack([view(val_set.base[i][0]) for i in range(len(val_set))])  # the same pictures
        assert images.shape[-1] == size
        with torch.no_grad():
            guesses = model(images).argmax(1)
        assert found["top1_error"] == pytest.approx(float((guesses != targets).float().mean()))
        assert (run / f"eval-center-{size}px-{fraction:g}.json").is_file()
    assert not (run / "eval-center.json").exists()  # the run's own view's file is not overwritten
    assert main(["eval", str(run), "--format", "json", "--workers", "0"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert (own["image_size"], own["crop_fraction"]) == (config.eval_size, config.recipe.crop_fraction)
    assert main(["eval", str(run), "--protocol", "10crop", "--image-size", "40"]) == 2
    assert "set the view of the center protocol" in capsys.readouterr().err
    assert main(["eval", str(run), "--crop-fraction", "1.5"]) == 2
    assert "in (0, 1]" in capsys.readouterr().err
    fixed = train(make_config(spec, "cpu", out=str(tmp_path / "f"), epochs=1, batch_size=8, workers=0,
                              synthetic_train=16, synthetic_val=8, synthetic_classes=10),
                  stop_after_steps=1, progress=False, log=_quiet)  # fmt: skip
    assert main(["eval", str(fixed), "--image-size", "40", "--workers", "0"]) == 2
    assert "parameters depend on its input size" in capsys.readouterr().err
    assert main(["eval", str(fixed), "--crop-fraction", "1", "--workers", "0"]) == 0  # the same size: fine


def test_eval_weights_chooses_the_average_or_the_optimizers_own_weights(
    pooled: str, tmp_path: Path, capsys
) -> None:
    """`ilsvrc eval --weights trained` evaluates the weights the optimizer reached, not their average
    (what the EMA bought, on the same run); a run without an average refuses `--weights averaged`."""
    config = fast(tmp_path / "r", pooled, epochs=1, size_schedule="none", tta_flip=False, polyak_decay=0.995)
    run = train(config, stop_after_steps=4, progress=False, log=_quiet)
    weights, _, where = checkpoint.load(run)
    assert (where / checkpoint.AVERAGED).is_file()
    model, config, classes, _ = load_trained(run, weights="trained")
    averaged, *_ = load_trained(run)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[name])  # the checkpoint's own weights, as saved
    assert not torch.equal(model.state_dict()["conv1.weight"], averaged.state_dict()["conv1.weight"])
    _, val_set, _ = training_loop.datasets(config)
    images = torch.stack([val_set[i][0] for i in range(len(val_set))])
    targets = torch.tensor([val_set[i][1] for i in range(len(val_set))])
    found = {}
    for choice, net in (("trained", model), ("averaged", averaged)):
        assert main(["eval", str(run), "--format", "json", "--workers", "0", "--weights", choice]) == 0
        found[choice] = json.loads(capsys.readouterr().out)
        assert (found[choice]["weights"], found[choice]["flips"]) == (choice, False)
        with torch.no_grad():
            guesses = net(images).argmax(1)
        confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
        confusion.index_put_((targets, guesses), torch.ones_like(targets), accumulate=True)
        assert found[choice]["confusion"] == confusion.tolist()  # image by image, these weights' guesses
    assert found["trained"]["confusion"] != found["averaged"]["confusion"]  # the two guess differently
    assert main(["eval", str(run), "--format", "json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out) == found["averaged"]  # the default: the average
    plain = train(fast(tmp_path / "p", pooled, epochs=1, polyak_decay=0.0), stop_after_steps=1,
                  progress=False, log=_quiet)  # fmt: skip
    assert main(["eval", str(plain), "--weights", "averaged", "--workers", "0"]) == 2
    assert "holds no averaged weights" in capsys.readouterr().err


def test_the_last_evaluation_is_judged_after_it_so_a_timed_run_ends_with_its_flips() -> None:
    """At an epoch's end with time for more steps before this evaluation but not after it (it will take
    as long as the last end of epoch did), this evaluation is the run's last, the one with flips. A
    run of benchmarks/fast.py once ended on an evaluation without them that way."""
    from types import SimpleNamespace

    run = SimpleNamespace(limit=1270.0, config=SimpleNamespace(recipe=SimpleNamespace(epochs=100)),
                          stop_after_steps=None, ctx=SimpleNamespace(enabled=False))  # fmt: skip
    state = SimpleNamespace(stopped=None, epoch=9, step=1470, step_seconds=1.6, wrap_up_seconds=22.0,
                            seconds=lambda: 1227.0)  # fmt: skip
    assert training_loop._steps_that_fit(run, state) > 1  # before the evaluation: room for more steps
    assert training_loop._steps_that_fit(run, state, ahead=22.0) == 0  # after it: none
    assert training_loop._last_evaluation(run, state, finished=True)
    state.seconds = lambda: 1200.0  # 70 s left: after a 22-s evaluation, room for steps and another
    assert not training_loop._last_evaluation(run, state, finished=True)
    run.limit = None  # no time limit: the epochs decide
    assert not training_loop._last_evaluation(run, state, finished=True)


# ---------------------------------------------------------------------------------------------------
# Progressive resizing


def test_the_size_schedule_gives_the_sizes_asked_by_fraction_of_the_run() -> None:
    recipe = get_recipe("fast").replace(size_schedule="0.5@0,0.75@0.4,1@0.75")
    sizes = size_schedule(recipe, 128)
    assert sizes == [(0.0, 64), (0.4, 96), (0.75, 128)]
    assert [size_at(sizes, p) for p in (0, 0.39, 0.4, 0.74, 0.75, 1)] == [64, 64, 96, 96, 128, 128]
    assert size_schedule(recipe, 160) == [(0.0, 80), (0.4, 120), (0.75, 160)]  # scales of --image-size
    for off in ("", "none", "off"):
        assert size_schedule(recipe.replace(size_schedule=off), 128) == [(0.0, 128)]


@pytest.mark.parametrize(("clock", "expected"), [(400.0, 64), (450.0, 128)])
def test_under_a_time_limit_a_size_starts_at_the_epoch_boundary_nearest_its_from(
    monkeypatch, clock: float, expected: int
) -> None:
    """A run of 1,000 s planned far beyond its time (so the clock, not the steps, sets its progress),
    64 px until half of it and 128 px after; a step took 1 s at 64 px and costs 4x at 128, an end of
    epoch 20 s. An epoch of 100 steps starting at 400 s reaches half way at 64 px at 400 + 50 + 10 s
    (46%): it stays at 64. Starting at 450 s (45%), half way is at 510 s (51%): it trains at 128 already,
    though its start is before the switch."""
    from types import SimpleNamespace

    recipe = get_recipe("fast").replace(size_schedule="0.5@0,1@0.5", epochs=1000)
    run = SimpleNamespace(
        steps_per_epoch=100, limit=1000.0, train_macs_at={64: 1, 128: 4}, ctx=SimpleNamespace(enabled=False),
        sizes=size_schedule(recipe, 128), schedule=LRSchedule(recipe, 100, 1000.0), log=lambda *a: None,
        train_set=None, config=None,
    )  # fmt: skip
    state = SimpleNamespace(offset=0, image_size=64, step=700, step_seconds=1.0, wrap_up_seconds=20.0,
                            epoch=7, seconds=lambda: clock)  # fmt: skip
    chosen: list[int] = []
    monkeypatch.setattr(training_loop, "set_train_size", lambda _s, _c, size: chosen.append(size))
    training_loop._choose_size(run, state)
    assert state.image_size == expected and chosen == [expected]
    assert size_at(run.sizes, run.schedule.progress(state.step, clock)) == 64  # at the epoch's start


@pytest.mark.parametrize(
    "text, match",
    [
        ("0.5@0.1,1@0.5", "must start at 0 and rise"),
        ("0.5@0,1@0.5,0.75@0.4", "must start at 0 and rise"),
        ("0.5@0,1@1", "each below 1"),
        ("0.5,1@0.5", "'0.5' is not SCALE@FROM"),
        ("0.5@0,x@0.5", "'x@0.5' is not SCALE@FROM"),
        ("0@0,1@0.5", "each scale must be in (0, 4]"),
    ],
)
def test_a_bad_size_schedule_is_refused_with_what_it_should_be(text: str, match: str) -> None:
    with pytest.raises(IlsvrcError, match="size_schedule") as info:
        check(get_recipe("fast").replace(size_schedule=text))
    assert match in str(info.value)


def test_a_network_whose_parameters_follow_the_input_size_cannot_take_a_size_schedule() -> None:
    fast_recipe = get_recipe("fast")
    check_network_sizes(get_spec("resnet18"), fast_recipe)  # global pooling: every size, one network
    with pytest.raises(ShapeError, match="its parameters depend on the input size") as info:
        check_network_sizes(get_spec("alexnet"), fast_recipe)  # fc6 reads 256 x 6 x 6 at 227 px only
    assert "--size-schedule none --test-scale 1" in str(info.value)
    check_network_sizes(get_spec("alexnet"), fast_recipe.replace(size_schedule="", test_scale=1.0))
    with pytest.raises(ShapeError, match="32 px, a size of the size schedule") as info:  # 1/4 of 128
        check_network_sizes(get_spec("alexnet-torchvision"), fast_recipe.replace(size_schedule="0.25@0,1@.5"))
    assert "alexnet-torchvision takes inputs from 63x63 up" in str(info.value)


def test_the_command_line_refuses_alexnet_with_the_fast_recipe_before_training(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "alexnet", "--recipe", "fast"]) == 2
    err = capsys.readouterr().err
    assert "parameters depend on the input size" in err and "Traceback" not in err and err.count("\n") == 1
    assert main(["train", "resnet18", "--recipe", "fast", "--size-schedule", "1@0.5"]) == 2
    assert "must start at 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _record_sizes(monkeypatch) -> list[tuple[int, int]]:
    """(epoch, image side) of every training batch the loop steps on."""
    seen: list[tuple[int, int]] = []
    step = training_loop._step

    def recording(run, state, images, targets):
        seen.append((state.epoch, images.shape[-1]))
        return step(run, state, images, targets)

    monkeypatch.setattr(training_loop, "_step", recording)
    return seen


def test_the_loader_gives_each_epoch_its_size_and_evaluation_the_final_one(
    pooled: str, tmp_path: Path, monkeypatch
) -> None:
    seen = _record_sizes(monkeypatch)
    lines: list[str] = []
    run = train(fast(tmp_path / "r", pooled), progress=False, log=lines.append)
    # 4 epochs: progress 0, 0.25, 0.5, 0.75 at their starts; 16 px before half of the run, 32 after
    assert sorted(set(seen)) == [(0, 16), (1, 16), (2, 32), (3, 32)]
    assert [m["image_size"] for m in read_metrics(run)] == [16, 16, 32, 32]
    assert any("training at 32 px from here (50% of the run at its start)" in x for x in lines), lines
    assert "progressive resizing: 16 px from 0%, 32 px from 50% of the run" in lines[0]
    model, config, *_ = load_trained(run)
    assert config.eval_size == 32 and model.input_shape == (3, 32, 32)


def test_a_killed_fast_run_resumes_exactly_in_an_epoch_of_its_second_size(
    pooled: str, tmp_path: Path, monkeypatch
) -> None:
    """Stopped at step 15 (in epoch 3, the first at 32 px) and resumed, with loader workers this time:
    the same sizes, the same trained and averaged weights and the same errors as a run never stopped."""
    straight = train(fast(tmp_path / "a", pooled, polyak_decay=0.995), progress=False, log=_quiet)
    stopped = train(fast(tmp_path / "b", pooled, polyak_decay=0.995), stop_after_steps=15, progress=False,
                    log=_quiet)  # fmt: skip
    state = torch.load(checkpoint.resolve(stopped) / checkpoint.STATE, weights_only=True)
    assert (state["step"], state["epoch"], state["offset"], state["image_size"]) == (15, 2, 3, 32)
    seen = _record_sizes(monkeypatch)
    train(resume=stopped, overrides={"workers": 2}, progress=False, log=_quiet)
    assert sorted(set(seen)) == [(2, 32), (3, 32)] and len(seen) == 24 - 15
    for name in (checkpoint.WEIGHTS, checkpoint.AVERAGED):
        a = load_file(checkpoint.resolve(straight) / name)
        b = load_file(checkpoint.resolve(stopped) / name)
        assert a.keys() == b.keys() and any("running_var" in k for k in a)
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    ma, mb = read_metrics(straight), read_metrics(stopped)
    assert [m["image_size"] for m in mb if m["complete"]] == [m["image_size"] for m in ma]
    assert ma[-1]["val_top1_error"] == mb[-1]["val_top1_error"]
    assert ma[-1]["train_loss"] == pytest.approx(mb[-1]["train_loss"], rel=1e-12)


# ---------------------------------------------------------------------------------------------------
# The moving average of the weights


def test_the_average_follows_the_batch_norm_statistics_and_copies_the_step_count() -> None:
    """By hand, for a 2-d batch norm: running mean and variance are averaged as the weights are
    (avg += (1 - d)(x - avg), d = min(decay, (1 + n) / (10 + n))); num_batches_tracked is copied."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    decay = 0.995
    averaged = polyak_average(net, decay)
    expected = None
    for n in range(5):
        net(torch.randn(2, 3, 6, 6) * (n + 1))  # moves the running statistics
        averaged.update_parameters(net)
        now = [net[1].running_mean.clone(), net[1].running_var.clone()]
        d = min(decay, (1 + n) / (10 + n))
        expected = now if expected is None else [e + (1 - d) * (x - e) for e, x in zip(expected, now)]
    assert expected is not None
    torch.testing.assert_close(averaged.module[1].running_mean, expected[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(averaged.module[1].running_var, expected[1], rtol=1e-6, atol=1e-7)
    assert not torch.allclose(averaged.module[1].running_var, net[1].running_var)
    assert int(averaged.module[1].num_batches_tracked) == int(net[1].num_batches_tracked) == 5


def test_polyak_decay_0_turns_the_average_off(pooled: str, tmp_path: Path) -> None:
    run = train(fast(tmp_path / "r", pooled, epochs=1, polyak_decay=0.0), stop_after_steps=1, progress=False,
                log=_quiet)  # fmt: skip
    assert not (checkpoint.resolve(run) / checkpoint.AVERAGED).exists()


# ---------------------------------------------------------------------------------------------------
# Fewer validations


def test_eval_from_leaves_out_the_early_validations_and_never_the_last(pooled: str, tmp_path: Path) -> None:
    """4 epochs of 6 steps: the first ends at 25% of the run, before eval_from 0.5, and is not
    validated; the others are. A run stopped there (--max-steps) is validated where it stops."""
    lines: list[str] = []
    run = train(fast(tmp_path / "r", pooled, eval_from=0.5), progress=False, log=lines.append)
    metrics = read_metrics(run)
    assert [m["evaluated"] for m in metrics] == [False, True, True, True]
    assert metrics[0]["val_top1_error"] is None and all(m["val_top1_error"] is not None for m in metrics[1:])
    assert any("val not evaluated (from 50% of the run on)" in x for x in lines), lines
    config = fast(tmp_path / "s", pooled, eval_from=0.5)
    stopped = train(config, stop_after_steps=6, progress=False, log=_quiet)
    (line,) = read_metrics(stopped)
    assert line["evaluated"] and line["val_top1_error"] is not None


# ---------------------------------------------------------------------------------------------------
# The whole recipe


def test_the_fast_recipe_learns_from_the_command_line(pooled: str, tmp_path: Path) -> None:
    """`ilsvrc train SPEC --recipe fast` on the built-in data (4 classes, 60 steps): the loss falls and
    the validation error ends well under chance (75%)."""
    out = tmp_path / "run"
    args = ["train", pooled, "--recipe", "fast", "--image-size", "32", "--epochs", "6", "--batch-size", "16",
            "--synthetic-train", "160", "--synthetic-val", "48", "--synthetic-classes", "4", "--workers", "0",
            "--out", str(out), "--size-schedule", "0.5@0,0.75@0.3,1@0.6", "--lr", "0.2"]  # fmt: skip
    assert main(args) == 0
    metrics = read_metrics(out)
    assert [m["image_size"] for m in metrics] == [16, 16, 24, 24, 32, 32]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["val_top1_error"] < 0.75 - 0.25
    config = json.loads((out / "config.json").read_text())["recipe"]
    assert config["name"] == "fast" and config["size_schedule"] == "0.5@0,0.75@0.3,1@0.6"


@pytest.mark.slow
def test_resnet18_learns_with_the_fast_recipe(tmp_path: Path) -> None:
    """The zoo's ResNet-18 with every trick of the recipe, 96 steps at 16 then 32 px."""
    config = fast(tmp_path / "rn", "resnet18", epochs=4, batch_size=16, synthetic_train=384)
    metrics = read_metrics(train(config, progress=False, log=_quiet))
    assert metrics[-1]["val_top1_error"] < 0.75 - 0.2
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"] and math.isfinite(metrics[-1]["train_loss"])
