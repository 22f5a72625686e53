"""The training layout, channels-last or torch's default, chosen by timing a step in each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ilsvrc.networks.spec import BatchNorm, Conv, Flatten, Linear, Network, ReLU
from ilsvrc.nn import build
from ilsvrc.training import layout
from ilsvrc.training.loop import make_config, train

LAYERS = (Conv("c1", 8, 3, padding=1), BatchNorm("bn1"), ReLU("r1"), Conv("c2", 8, 3, stride=2),
          Flatten("flatten"), Linear("fc", 4))  # fmt: skip
NET = Network("n", (3, 16, 16), LAYERS)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_small_step_is_not_timed_and_keeps_channels_last(monkeypatch) -> None:
    model = build(NET)
    monkeypatch.setattr(layout, "_time_layouts", lambda *a: pytest.fail("a small step was timed"))
    choice = layout.choose_layout(model, 16, 64)
    assert (choice.channels_last, choice.reason, choice.batch) == (True, "small", layout.PROBE_BATCH)
    assert layout.probe_flops(model, 16, 32) < layout.PROBE_FLOPS
    assert "not timed" in choice.describe()


def test_timing_leaves_the_model_its_statistics_and_the_generator_as_they_were(monkeypatch) -> None:
    """The probe trains a copy: the weights, the batch norms' running statistics, the layout and the global
    random generator (which the run's data and dropout draw from) are untouched."""
    monkeypatch.setattr(layout, "PROBE_FLOPS", 0.0)
    model = build(NET).train()
    before, rng = _state(model), torch.get_rng_state()
    choice = layout.choose_layout(model, 16, 4)
    assert choice.reason == "timed" and choice.batch == 4 and choice.size == 16
    assert set(choice.seconds) == {"channels-last", "contiguous"} and min(choice.seconds.values()) > 0
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(rng, torch.get_rng_state())
    assert model.channels_last and model.c1.weight.is_contiguous(memory_format=torch.channels_last)
    assert "channels-last and" in choice.describe()


@pytest.mark.parametrize(("cl", "plain", "expected"), [(1, 0.9, False), (1, 0.97, True), (1, 1.2, True)])
def test_the_default_layout_must_win_by_the_margin(monkeypatch, cl: float, plain: float, expected: bool):
    monkeypatch.setattr(layout, "PROBE_FLOPS", 0.0)
    monkeypatch.setattr(layout, "_time_layouts", lambda *a: {"channels-last": cl, "contiguous": plain})
    assert layout.choose_layout(build(NET), 16, 8).channels_last is expected


def test_a_network_onednn_cannot_train_channels_last_is_not_timed(monkeypatch) -> None:
    net = Network("n", (3, 12, 12), (Conv("c", 4, 1, stride=(2, 1)), Flatten("flatten"), Linear("fc", 3)))
    monkeypatch.setattr(layout, "PROBE_FLOPS", 0.0)
    monkeypatch.setattr(layout, "_time_layouts", lambda *a: pytest.fail("timed"))
    choice = layout.choose_layout(build(net), 12, 8)
    assert (choice.channels_last, choice.reason) == (False, "unsupported")


def _quick(out: Path, **changes) -> dict:
    return dict(out=str(out), epochs=1, batch_size=8, image_size=32, workers=0, synthetic_train=16,
                synthetic_val=8, synthetic_classes=4, **changes)  # fmt: skip


def test_a_run_trains_in_the_layout_it_timed_faster_and_a_resume_keeps_it(tiny: str, tmp_path: Path,
                                                                          monkeypatch) -> None:  # fmt: skip
    """Timed faster in torch's default layout: the run says so, trains and checkpoints in it, writes
    channels_last false into config.json, and a resumed run reads it back without timing again."""
    monkeypatch.setattr(layout, "PROBE_FLOPS", 0.0)
    timed: list[int] = []

    def fake(model, size, batch):
        timed.append(size)
        return {"channels-last": 1.0, "contiguous": 0.5}

    monkeypatch.setattr(layout, "_time_layouts", fake)
    seen: list[bool] = []
    real_step = torch.optim.SGD.step

    def step(self, *args, **kwargs):  # the layout of the first convolution's weights at every step
        seen.append(next(p for p in self.param_groups[0]["params"] if p.dim() == 4).is_contiguous())
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    lines: list[str] = []
    run = train(make_config(tiny, "cpu", **_quick(tmp_path / "r")), stop_after_steps=1, progress=False,
                log=lambda *a, **k: lines.append(" ".join(map(str, a))))  # fmt: skip
    assert timed == [32] and seen and all(seen)
    assert json.loads((run / "config.json").read_text())["channels_last"] is False
    assert any("Memory layout torch's default (contiguous)" in line for line in lines)
    seen.clear()
    train(resume=run, progress=False, log=lambda *a, **k: None)
    assert timed == [32] and seen and all(seen)  # not timed again; still the default layout


def test_an_explicit_layout_is_not_timed(tiny: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(layout, "PROBE_FLOPS", 0.0)
    monkeypatch.setattr(layout, "_time_layouts", lambda *a: pytest.fail("timed"))
    run = train(make_config(tiny, "cpu", **_quick(tmp_path / "r", channels_last=True)), progress=False,
                log=lambda *a, **k: None)  # fmt: skip
    assert json.loads((run / "config.json").read_text())["channels_last"] is True
