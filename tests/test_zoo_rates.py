"""The 'zoo' benchmark case's own choices, checked without timing anything: every network of the zoo
gets a setting the analyzer accepts, within the case's work budget, and the training loss counts
GoogLeNet's auxiliary heads the same way for ilsvrc's module and torchvision's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch.nn import functional as F

import ilsvrc

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def zoo_rates():
    sys.path.insert(0, str(BENCHMARKS))  # the case imports `harness` as a plain module
    try:
        import zoo_rates

        yield zoo_rates
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("quick", [False, True])
def test_every_zoo_network_gets_a_setting_within_the_budget(zoo_rates, quick: bool) -> None:
    budget = zoo_rates.QUICK_BATCH_GFLOP if quick else zoo_rates.BATCH_GFLOP
    for name in ilsvrc.list_models():
        size, batch = zoo_rates.setting(name, quick)
        gflop = 2 * ilsvrc.analyze(ilsvrc.get_spec(name), (3, size, size)).macs / 1e9
        assert 1 <= batch <= 64 and (batch * gflop <= budget or batch == 1), (name, size, batch)
        assert batch * 2 > 64 or batch * 2 * gflop > budget, (name, batch)  # the largest that fits
        if name.startswith(zoo_rates.CLASSIC_PREFIXES) or name == "googlenet":
            assert size == ilsvrc.get_spec(name).input_shape[1], name
        else:
            assert size == zoo_rates.SMALL_SIZE, name


def test_googlenet_training_loss_is_the_same_for_both_models(zoo_rates) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, num_classes=10, aux_logits=True,
                                             transform_input=False, init_weights=False)  # fmt: skip
    ours = ilsvrc.from_torchvision("googlenet-torchvision", reference.state_dict())
    ours.train(), reference.train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 7])
    torch.manual_seed(1)  # dropout draws the same masks in both
    theirs_out = reference(x)
    torch.manual_seed(1)
    ours_out = ours(x)
    expected = F.cross_entropy(theirs_out.logits, y) + 0.3 * (
        F.cross_entropy(theirs_out.aux_logits1, y) + F.cross_entropy(theirs_out.aux_logits2, y)
    )
    torch.testing.assert_close(zoo_rates._loss(theirs_out, y), expected)
    assert len(ours_out.aux) == 2
    plain = F.cross_entropy(ours_out.logits, y)
    assert zoo_rates._loss(ours_out, y) > plain  # the heads' losses are added
    assert zoo_rates._loss(ours_out.logits, y) == plain
