"""Helpers for tests: a built module against the analysis of its spec, module by module.

`check_modules` runs a module once with a forward hook on every submodule (containers included:
Inception modules, their branches, residual blocks, auxiliary heads) and checks that each one is a
row of the analysis with the same output volume and the same parameter count, and that the
multiply-adds counted from the hooks are the analyzer's. In training mode the auxiliary heads run and
are checked too; in eval mode they must not run at all.
"""

from __future__ import annotations

import torch
from torch import nn

from ilsvrc.analysis.analyzer import Report, Volume
from ilsvrc.nn import ModelOutputs


def shape_of(volume: Volume, batch: int) -> tuple[int, ...]:
    """The tensor shape torch gives for an analyzer volume."""
    if volume.flat:
        return (batch, volume.channels)
    return (batch, volume.channels, volume.height, volume.width)


def counted_macs(module: nn.Module, output: torch.Tensor, batch: int) -> int:
    """Multiply-adds per image of one leaf, counted from torch's own sizes (biases left out)."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() // batch * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def check_modules(model: nn.Module, report: Report, batch: int = 2, train: bool = True) -> object:
    """Every submodule of `model` is a row of `report` with the row's output volume and parameters;
    returns what the model returned. train: run in training mode (auxiliary heads included), else
    in eval mode (auxiliary heads must not run)."""
    rows = {row.name: row for row in report.rows}
    modules = {name: m for name, m in model.named_modules() if name}
    assert set(modules) == set(rows), set(modules) ^ set(rows)
    for name, m in modules.items():
        assert sum(p.numel() for p in m.parameters()) == rows[name].params, name
    assert sum(p.numel() for p in model.parameters()) == report.params_with_aux

    shapes: dict[str, tuple[int, ...]] = {}
    macs = [0]

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            shapes[name] = tuple(output.shape)
            if not list(module.children()):
                macs[0] += counted_macs(module, output, batch)

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
    inp = report.input
    x = torch.randn(batch, inp.channels, inp.height, inp.width)
    model.train(train)
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()

    ran = {name for name, row in rows.items() if train or not row.aux}
    assert set(shapes) == ran, set(shapes) ^ ran  # every module ran once; aux heads in training only
    for name in ran:
        assert shapes[name] == shape_of(rows[name].output, batch), (
            name,
            shapes[name],
            str(rows[name].output),
        )
    assert macs[0] == (report.macs_with_aux if train else report.macs)

    top = [row for row in report.rows if row.depth == 0]
    logits_row = next(row for row in reversed(top) if not row.aux)
    heads = [row for row in top if row.aux]
    if train and heads:
        assert isinstance(out, ModelOutputs)
        assert tuple(out.logits.shape) == shape_of(logits_row.output, batch)
        assert [tuple(a.shape) for a in out.aux] == [shape_of(h.output, batch) for h in heads]
    else:
        assert isinstance(out, torch.Tensor) and not isinstance(out, tuple)
        assert tuple(out.shape) == shape_of(logits_row.output, batch)
    return out


def randomise_batchnorms(
    model: torch.nn.Module, seed: int = 1, signed_scales: bool = False
) -> torch.nn.Module:
    """Running statistics and affine parameters far from torch's defaults (mean 0, var 1, scale 1,
    shift 0), so that folding them changes the convolutions' weights by real amounts; with
    `signed_scales` the scales take both signs (a negative one flips a filter, which a ReLU fused after
    the folded convolution must see)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.2)
                scale = torch.randn(c, generator=g) if signed_scales else torch.rand(c, generator=g) + 0.5
                m.weight.copy_(scale)
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
    return model
