"""The inference path of a built module (eval mode, autograd off): batch norms folded into the
convolutions before them, ReLUs and residual sums fused into the convolutions' oneDNN calls, and
LRN's channel window as a matrix product. It computes what the plain layers compute, and nothing
else about the module changes: state dict, training, gradients, hooks, torchvision's weights.

The reference is the same module run with autograd on (then every layer runs as it is), torch's own
`fuse_conv_bn_eval` (through `fold_batchnorm`), and torchvision's model with the same weights.
"""

from __future__ import annotations

import copy
import os
import resource
import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn

from agree import randomise_batchnorms
from ilsvrc.networks.spec import (
    LRN,
    AdaptiveAvgPool,
    BatchNorm,
    Block,
    Concat,
    Conv,
    Flatten,
    Linear,
    MaxPool,
    Network,
    ReLU,
    Residual,
)
from ilsvrc.nn import LocalResponseNorm, create_model, fold_batchnorm, from_torchvision, to_torchvision


def small_net() -> Network:
    """Every place a batch norm, a ReLU or a residual sum can meet a convolution: a stem (conv with
    bias, BN, ReLU), LRN, an Inception-like concatenation with BN in its branches, a residual block
    with an identity shortcut and one with a projection (conv + BN), and a grouped convolution."""

    def basic(name: str, filters: int, stride: int, shortcut: Block | None) -> Residual:
        body = Block("body", (
            Conv("conv1", filters, 3, stride=stride, padding=1, bias=False), BatchNorm("bn1"),
            ReLU("relu"),
            Conv("conv2", filters, 3, padding=1, bias=False), BatchNorm("bn2"),
        ))  # fmt: skip
        return Residual(name, body, shortcut)

    projection = Block("shortcut", (Conv("conv", 32, 1, stride=2, bias=False), BatchNorm("bn")))
    return Network("small", (3, 24, 24), (
        Conv("stem", 16, 3, padding=1), BatchNorm("stem_bn"), ReLU("relu"),
        LRN("norm", size=5, alpha=1e-2, beta=0.75, k=2.0),
        Concat("inc", (
            Block("b1", (Conv("conv", 8, 1, bias=False), BatchNorm("bn"), ReLU("relu"))),
            Block("b2", (Conv("reduce", 4, 1), ReLU("relu1"), Conv("conv", 8, 3, padding=1),
                         BatchNorm("bn"))),
            Block("b3", (MaxPool("pool", 3, 1, padding=1), Conv("proj", 8, 1), ReLU("relu"))),
        )),
        Conv("grouped", 24, 3, padding=1, groups=4), BatchNorm("grouped_bn"), ReLU("relu2"),
        basic("res1", 24, 1, None), ReLU("relu3"),
        basic("res2", 32, 2, projection), ReLU("relu4"),
        AdaptiveAvgPool("avgpool", 1), Flatten("flatten"), Linear("fc", 10),
    ))  # fmt: skip


def plain(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module's output with every layer run as it is (autograd on: the inference path stays off)."""
    with torch.enable_grad():
        return model(x).detach()


def fast(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x).clone()


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return randomise_batchnorms(create_model(small_net(), num_classes=10), seed=0, signed_scales=True).eval()


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(4, 3, 24, 24)


class Counter:
    """Counts the calls of `cls.forward` (patched for the test)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cls: type[nn.Module]) -> None:
        self.calls = 0
        original = cls.forward

        def counted(module, *args):
            self.calls += 1
            return original(module, *args)

        monkeypatch.setattr(cls, "forward", counted)


# ---------------------------------------------------------------------------------------------------
# The same results


def test_inference_equals_the_plain_layers_and_torchs_folding(model: nn.Module, x: torch.Tensor) -> None:
    expected = plain(model, x)
    torch.testing.assert_close(fast(model, x), expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # no_grad as well as inference_mode
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast(fold_batchnorm(model), x), expected, rtol=1e-4, atol=1e-4)


def test_batch_norms_are_not_run_at_inference_but_are_with_autograd(
    model: nn.Module, x: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    counter = Counter(monkeypatch, nn.BatchNorm2d)
    fast(model, x)
    assert counter.calls == 0
    plain(model, x)
    assert counter.calls == norms


@pytest.mark.parametrize("layout", ["contiguous", "float64"])
def test_inference_in_torchs_default_layout_and_in_float64(model: nn.Module, x: torch.Tensor,
                                                           layout: str) -> None:  # fmt: skip
    if layout == "contiguous":
        model.set_channels_last(False)
    else:
        model, x = model.double(), x.double()
    torch.testing.assert_close(fast(model, x), plain(model, x), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Changed weights are seen: the folded filters follow every change


def test_weights_changed_in_place_after_eval_are_folded_anew(model: nn.Module, x: torch.Tensor) -> None:
    fast(model, x)  # folds and caches
    with torch.no_grad():
        model.stem.weight.mul_(1.5)
        model.stem_bn.running_var.add_(0.7)
        model.res2.shortcut.bn.bias.sub_(1.0)
    torch.testing.assert_close(fast(model, x), plain(model, x), rtol=1e-4, atol=1e-4)


def test_load_state_dict_and_a_training_step_refold(model: nn.Module, x: torch.Tensor) -> None:
    before = fast(model, x)
    other = randomise_batchnorms(create_model(small_net(), num_classes=10), seed=5, signed_scales=True)
    model.load_state_dict(other.state_dict())
    after = fast(model, x)
    assert not torch.allclose(before, after, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(after, plain(other.eval(), x), rtol=1e-4, atol=1e-4)
    # train() and eval() in turn: a step changes weights and running statistics
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    model.eval()
    stepped = fast(model, x)
    assert not torch.allclose(stepped, after, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(stepped, plain(model, x), rtol=1e-4, atol=1e-4)


def test_moved_to_another_dtype_and_back(model: nn.Module, x: torch.Tensor) -> None:
    expected = fast(model, x)
    torch.testing.assert_close(fast(model.double(), x.double()).float(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast(model.float(), x), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Nothing else changes


def test_state_dict_is_unchanged_by_inference(model: nn.Module, x: torch.Tensor) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast(model, x)
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def test_training_mode_under_no_grad_uses_batch_statistics(model: nn.Module, x: torch.Tensor) -> None:
    """Training mode keeps batch norm's batch statistics (and updates the running ones) even with
    autograd off: the inference path is for eval mode only."""
    model.train()
    reference = copy.deepcopy(model)
    with torch.no_grad():
        y = model(x)
    y_ref = plain(reference, x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(model.stem_bn.running_mean, reference.stem_bn.running_mean)


def test_gradients_in_eval_mode_are_the_plain_layers(model: nn.Module, x: torch.Tensor) -> None:
    """Eval mode with autograd on (saliency, occlusion, deconvnet views): every layer runs, the
    input gradient is torch's, and the parameters get gradients too."""
    reference = copy.deepcopy(model)
    xg = x.clone().requires_grad_()
    model(xg)[:, 3].sum().backward()
    assert model.stem.weight.grad is not None and model.stem_bn.weight.grad is not None
    folded = fold_batchnorm(reference)  # another route to the same function
    xf = x.clone().requires_grad_()
    folded(xf)[:, 3].sum().backward()
    torch.testing.assert_close(xg.grad, xf.grad, rtol=1e-4, atol=1e-4)


def test_forward_hooks_see_every_layer_at_inference(model: nn.Module, x: torch.Tensor) -> None:
    seen: dict[str, tuple[int, ...]] = {}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, tuple(o.shape)))
               for n, m in model.named_modules() if n in ("stem", "stem_bn", "res2.body.bn2")]  # fmt: skip
    expected = plain(model, x)
    seen.clear()
    torch.testing.assert_close(fast(model, x), expected, rtol=1e-4, atol=1e-4)
    for h in handles:
        h.remove()
    assert seen == {"stem": (4, 16, 24, 24), "stem_bn": (4, 16, 24, 24), "res2.body.bn2": (4, 32, 12, 12)}


def test_torchscript_trace_in_eval_mode_holds_the_plain_layers(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
    assert "batch_norm" in str(traced.inlined_graph)
    torch.testing.assert_close(traced(x), plain(model, x), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# torchvision's weights in and out, and its outputs


@pytest.mark.parametrize("name", ["resnet18", "googlenet-torchvision"])
def test_torchvision_weights_in_and_out_with_its_outputs(name: str) -> None:
    torch.manual_seed(0)
    kwargs = {"transform_input": False, "init_weights": False} if "googlenet" in name else {}
    reference = torchvision.models.get_model(name.split("-")[0], weights=None, num_classes=10, **kwargs)
    randomise_batchnorms(reference, seed=0, signed_scales=True)
    ours = from_torchvision(name, reference.state_dict()).eval()
    reference.eval()
    x = torch.randn(2, 3, 64, 64)
    y = fast(ours, x)
    with torch.no_grad():
        torch.testing.assert_close(y, reference(x), rtol=1e-4, atol=1e-4)
    back = to_torchvision(name, ours)  # the module's own tensors, unchanged by inference
    for key, value in reference.state_dict().items():
        assert torch.equal(back[key], value), key


# ---------------------------------------------------------------------------------------------------
# LRN: the channel window as a matrix product


@pytest.mark.parametrize("size", [1, 4, 5])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_lrn_matches_torch_in_both_layouts_forward_backward_and_inference(size: int, layout) -> None:
    torch.manual_seed(size)
    ours = LocalResponseNorm(size, 1e-2, 0.75, 2.0)
    theirs = nn.LocalResponseNorm(size, 1e-2 * size, 0.75, 2.0)
    x = (torch.randn(3, 12, 5, 6) * 4).contiguous(memory_format=layout)
    grad = torch.randn(3, 12, 5, 6)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    torch.testing.assert_close(y1, y2)
    (g1,) = torch.autograd.grad(y1, x1, grad)
    (g2,) = torch.autograd.grad(y2, x2, grad)
    torch.testing.assert_close(g1, g2)
    assert y1.is_contiguous(memory_format=layout)
    with torch.inference_mode():  # in place on the denominator: the input is left as it was
        y3 = ours(x)
    torch.testing.assert_close(y3, y2.detach())
    assert torch.equal(x, x1.detach())


def test_lrn_gradcheck_channels_last() -> None:
    xd = (torch.randn(2, 7, 3, 3, dtype=torch.float64) * 3).contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(lambda t: LocalResponseNorm(3, 0.1, 0.75, 1.0)(t), (xd.requires_grad_(),))


def test_published_alexnet_inference_equals_plain_layers() -> None:
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=10, input_size=99).eval()
    x = torch.randn(2, 3, 99, 99)
    torch.testing.assert_close(fast(model, x), plain(model, x), rtol=1e-4, atol=1e-5)


def test_building_a_module_keeps_freed_memory_for_reuse_unless_told_not_to() -> None:
    """The allocator setting of `keep_freed_memory`, seen from a fresh process: glibc keeps a freed
    large block, so the next one of the same size reuses its pages (no new page faults), and
    ILSVRC_MALLOC=default leaves glibc as it was (every such block mapped anew)."""
    code = (
        "import resource, torch, ilsvrc\n"
        "ilsvrc.create_model('alexnet-lecture')\n"
        "x = torch.rand(80 << 18)\n"  # 80 MiB of float32: above glibc's largest mmap threshold
        "faults = []\n"
        "for _ in range(3):\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    y = x * x\n"
        "    del y\n"
        "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
        "print(ilsvrc.keep_freed_memory(), min(faults[1:]))\n"  # the first may grow the heap
    )
    results = {}
    for setting in ("", "default"):
        env = {**os.environ, "ILSVRC_MALLOC": setting}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)  # fmt: skip
        kept, faults = out.stdout.split()
        results[setting] = (kept == "True", int(faults))
    pages = (80 << 20) // resource.getpagesize()
    assert results[""][0] and results[""][1] < pages // 10  # reused: hardly a fault
    assert not results["default"][0] and results["default"][1] > pages // 2  # mapped anew: every page
