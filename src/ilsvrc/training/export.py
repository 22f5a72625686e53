"""`ilsvrc export`: a zoo network, a spec file or a trained run, out to ONNX or TorchScript, checked.

What is exported is the module in eval mode (auxiliary heads not run, dropout off, batch norm on its
running statistics), with every batch norm that follows a convolution folded into it
(`ilsvrc.nn.fold_batchnorm`; `fold=False` keeps them). The batch size is dynamic.

- ONNX: `torch.onnx.export(..., dynamo=True)`, the exporter that goes through `torch.export` (the
  older TorchScript-based one is deprecated). The file states its opset (default `DEFAULT_OPSET`, the
  exporter's own: it writes 18 and converts to any other with onnx's version converter). A
  conversion the converter cannot make leaves the exporter at 18; that is an error here, never a
  file with another opset than the one asked for.
- TorchScript: `torch.jit.trace` in eval mode (the module's `forward` loops over its children in
  Python and the LRN has a Python autograd function, which `torch.jit.script` cannot compile; in eval
  mode the traced graph is the whole computation).

Before the file reaches its destination it is checked: the file is run (ONNX in onnxruntime on the
CPUExecutionProvider, TorchScript reloaded with `torch.jit.load`) at batch 1 and batch 3 on seeded
random input, against the output of the torch module as it was given (not folded). It must agree to
`atol = 1e-4 * max(1, max |logit|)`. The file is written in a temporary folder beside the
destination and renamed into place only when it agrees; otherwise `ExportMismatchError` names the
measured difference and nothing is left behind.

This module imports torch, onnx and onnxruntime only inside the functions that need them, so the
command line checks its arguments (`check_destination`, `check_opset`, `require_onnx`) at once.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IlsvrcError

if TYPE_CHECKING:
    from torch import nn

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
TITLES = {"onnx": "ONNX", "torchscript": "TorchScript"}
DEFAULT_OPSET = 18  # what torch's dynamo exporter writes natively; other opsets are converted from it
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
CHECK_BATCHES = (1, 3)  # neither is the batch of 2 the module is exported with: the batch is dynamic
EXPORT_BATCH = 2
RELATIVE_TOLERANCE = 1e-4  # of the logits' scale, max(1, max |logit|)
METADATA_KEY = "ilsvrc.export"


class ExportError(IlsvrcError):
    """A model cannot be exported as asked (a missing package, an opset, a destination)."""


class ExportMismatchError(ExportError):
    """The exported file does not compute what the torch module computes (to the tolerance)."""


@dataclass
class ExportResult:
    """What `export` wrote and how it was checked.

    path: the file written (for a model over 2 GB, ONNX keeps the weights in `path` + ".data" too:
    `files`). opset: None for TorchScript. folded / batchnorms: batch norms folded into a convolution,
    of those the module had. max_difference: the largest |exported - torch| over the logits of every
    checked batch; tolerance: 1e-4 * max(1, logit_scale), logit_scale the largest |logit| torch gave.
    """

    path: Path
    format: str
    exporter: str
    opset: int | None
    input_shape: tuple[int, int, int]
    num_classes: int
    source: str
    folded: int
    batchnorms: int
    files: list[Path]
    max_difference: float
    tolerance: float
    logit_scale: float
    runtime: str
    batches: tuple[int, ...] = CHECK_BATCHES
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


# ---------------------------------------------------------------------------------------------------
# Checks that need neither torch nor the model


def format_for(out: str | Path | None, fmt: str | None) -> str:
    """The format asked for: `fmt`, else the destination's suffix (.pt, .pth, .ts: TorchScript), else
    ONNX. A suffix that names the other format is an error, not a guess."""
    suffix = Path(out).suffix.lower() if out else ""
    by_suffix = "onnx" if suffix == ".onnx" else "torchscript" if suffix in (".pt", ".pth", ".ts") else None
    if fmt is None:
        return by_suffix or "onnx"
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; choose onnx or torchscript.")
    if by_suffix is not None and by_suffix != fmt:
        raise ExportError(
            f"The destination {out} ends in {suffix} (the {TITLES[by_suffix]} suffix), but the format asked "
            f"for is {TITLES[fmt]}. Name the file {Path(out).with_suffix(SUFFIXES[fmt]).name}, or leave "
            "out --format."
        )
    return fmt


def check_destination(out: str | Path) -> Path:
    """`out` as a Path whose folder exists and can be written, and which is not a folder itself."""
    path = Path(out)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ExportError(
            f"The destination {path} is a folder; give a file name, e.g. {path / 'model.onnx'}."
        )
    if not folder.is_dir():
        raise ExportError(
            f"Cannot write {path}: the folder {folder} does not exist. Create it, or choose another -o."
        )
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        what = f"{path} cannot be replaced" if path.exists() and os.access(folder, os.W_OK) else (
            f"the folder {folder} is not writable")  # fmt: skip
        raise ExportError(f"Cannot write {path}: {what}. Choose another -o.")
    return path


def require_onnx() -> None:
    """ExportError naming what is missing when onnx, onnxruntime or onnxscript cannot be imported."""
    missing = []
    for name in ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(
            f"ONNX export needs {', '.join(ONNX_PACKAGES)} (the exporter, and onnxruntime to check the "
            f"file); {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed. Install "
            "them with `pip install 'ilsvrc[export]'` (or `pip install onnx onnxruntime onnxscript`), or "
            "export with --format torchscript, which needs torch alone."
        )


def check_opset(opset: int | None, fmt: str) -> int | None:
    """The opset to write (None for TorchScript): `opset` or `DEFAULT_OPSET`, within what the installed
    onnx defines. Whether the exporter reaches it for a given network is known only after exporting."""
    if fmt != "onnx":
        if opset is not None:
            raise ExportError(
                "--opset is an ONNX setting; a TorchScript file has none. Leave out --opset, or export "
                "with --format onnx."
            )
        return None
    if opset is None:
        return DEFAULT_OPSET
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not 7 <= opset <= newest:
        raise ExportError(
            f"Opset {opset} is not one the installed onnx {onnx.__version__} knows (7 to {newest}); the "
            f"exporter writes {DEFAULT_OPSET} and converts to others. Give --opset between {DEFAULT_OPSET} "
            f"and {newest}, or leave it out for {DEFAULT_OPSET}."
        )
    return opset


# ---------------------------------------------------------------------------------------------------
# The module to export


@dataclass
class Source:
    """A module ready to export (eval mode), what it is, and what its file should record."""

    model: nn.Module
    input_shape: tuple[int, int, int]
    description: str
    metadata: dict[str, Any]


def load_source(
    model_or_run: str | Path,
    weights: str | Path | None = None,
    input_size: tuple[int, int, int] | None = None,
    seed: int = 0,
    which: str = "last",
) -> Source:
    """The module `export` writes: a run directory's trained weights (the averaged ones for a run
    that averages them, as `ilsvrc eval` uses), or a zoo name / spec file with `weights` (a
    safetensors file of our state dict, as a run's model.safetensors, or of torchvision's for the
    networks `ilsvrc.nn.TORCHVISION_NAMES` maps) or with random weights (`create_model`'s
    initialisation after `torch.manual_seed(seed)`), at `input_size` (default the spec's)."""
    import torch

    from ..networks import resolve
    from ..nn import create_model
    from .loop import load_trained

    if Path(model_or_run).is_dir():
        if weights is not None or input_size is not None:
            raise ExportError(
                f"{model_or_run} is a run directory: it brings its own weights and input size. Leave out "
                "--weights and --input, or give a zoo name or spec file instead of the run."
            )
        model, config, classes, where = load_trained(model_or_run, which)
        averaged = (where / "averaged.safetensors").is_file()
        kind = "averaged weights" if averaged else "trained weights"
        return Source(
            model.eval(), tuple(model.input_shape), f"run {model_or_run} ({kind}, checkpoint {where})",
            {"run": str(model_or_run), "checkpoint": str(where), "weights": kind, "model": config.model,
             "classes": [{"index": c.index, "id": c.id, "name": c.name} for c in classes],
             **_normalisation(model)},
        )  # fmt: skip
    network = resolve(str(model_or_run))
    if weights is None:
        torch.manual_seed(seed)
        model = create_model(network, input_size=input_size)
        what = f"random weights, seed {seed}"
    else:
        model = _with_weights(network, Path(weights), input_size)
        what = f"weights {weights}"
    return Source(
        model.eval(), tuple(model.input_shape), f"{network.name} ({what})",
        {"model": network.name, "weights": what, **_normalisation(model)},
    )  # fmt: skip


def _normalisation(model: nn.Module) -> dict[str, Any]:
    info = model.spec.info  # type: ignore[attr-defined]
    return {"input_mean": list(info.mean), "input_std": list(info.std)}


def _with_weights(network: Any, path: Path, input_size: tuple[int, int, int] | None) -> nn.Module:
    from safetensors.torch import load_file

    from ..nn import TORCHVISION_NAMES, _num_classes, build, from_torchvision

    try:
        state = load_file(path)
    except Exception as exc:  # safetensors raises its own types; a missing file is an OSError
        raise ExportError(
            f"--weights {path} is not a readable safetensors file ({str(exc).splitlines()[0]}); give the "
            "model.safetensors of a run's checkpoint, or a state dict saved with safetensors' save_file."
        ) from None
    model = build(network.with_num_classes(_num_classes(state, str(path))), input_size)
    if set(state) != set(model.state_dict()) and network.name in TORCHVISION_NAMES:
        theirs = from_torchvision(network.name, _in_torchvision_order(network.name, state))
        if input_size is None or tuple(input_size) == theirs.input_shape:
            return theirs
        model, state = build(theirs.spec, input_size), theirs.state_dict()  # e.g. a ResNet at 128 px
    if set(state) != set(model.state_dict()):
        raise ExportError(
            f"The tensors in {path} ({', '.join(list(state)[:3])}, ...) are not {network.name}'s "
            f"({', '.join(list(model.state_dict())[:3])}, ...); give a state dict of this network."
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        why = str(exc).strip().splitlines()[-1].strip().rstrip(".")
        raise ExportError(
            f"The weights in {path} do not fit {network.name} at input "
            f"{'x'.join(map(str, model.input_shape))}: {why}. A "
            "fully connected layer's size follows the input: give the --input the weights were trained at."
        ) from None
    return model


def _in_torchvision_order(name: str, state: dict[str, Any]) -> dict[str, Any]:
    """`state` in the order of torchvision's own state dict, which `from_torchvision` pairs by (a
    safetensors file keeps its tensors sorted by name, not in the module's order)."""
    import torch
    import torchvision

    from ..nn import _TORCHVISION_KWARGS, TORCHVISION_NAMES, _num_classes

    tv_name = TORCHVISION_NAMES[name]
    kwargs = dict(_TORCHVISION_KWARGS.get(tv_name, {}))
    if tv_name == "googlenet":
        kwargs["aux_logits"] = any(key.startswith("aux1.") for key in state)
    with torch.device("meta"):
        reference = torchvision.models.get_model(tv_name, weights=None, num_classes=_num_classes(state, name),
                                                 **kwargs)  # fmt: skip
    order = list(reference.state_dict())
    return {key: state[key] for key in order} if set(order) == set(state) else state


# ---------------------------------------------------------------------------------------------------
# Export and check


def count_batchnorms(module: nn.Module) -> int:
    from torch import nn

    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def export(
    model_or_run: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    fold: bool = True,
    opset: int | None = None,
    weights: str | Path | None = None,
    input_size: tuple[int, int, int] | None = None,
    seed: int = 0,
    which: str = "last",
) -> ExportResult:
    """Export a zoo network, spec file or run directory to `out` (see `load_source`, `export_module`)."""
    out = check_destination(out)
    opset = check_opset(opset, fmt)
    if fmt == "onnx":
        require_onnx()
    source = load_source(model_or_run, weights=weights, input_size=input_size, seed=seed, which=which)
    return export_module(source.model, out, fmt, fold=fold, opset=opset, input_shape=source.input_shape,
                         seed=seed, source=source.description, metadata=source.metadata)  # fmt: skip


def export_module(
    model: nn.Module,
    out: str | Path,
    fmt: str = "onnx",
    fold: bool = True,
    opset: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    seed: int = 0,
    source: str = "",
    metadata: dict[str, Any] | None = None,
    tolerance: float = RELATIVE_TOLERANCE,
) -> ExportResult:
    """Write `model` (in eval mode; folded unless `fold` is False) to `out` as ONNX or TorchScript,
    check it against `model` itself, and only then put it at `out`.

    input_shape: (C, H, W) of one image (default `model.input_shape`, which `ilsvrc.nn.build` sets).
    The check input is standard normal, from a generator seeded with `seed`. `tolerance` is relative
    to the logits' scale: the file passes when max |file - torch| <= tolerance * max(1, max |logit|).
    Raises ExportMismatchError (naming the difference) when it does not, ExportError when the
    exporter fails or cannot write the opset asked for; `out` is then left as it was.
    """
    import torch

    from ..nn import fold_batchnorm

    out = check_destination(out)
    opset = check_opset(opset, fmt)
    if fmt == "onnx":
        require_onnx()
    shape = tuple(input_shape or model.input_shape)  # type: ignore[attr-defined]
    model = model.eval()
    exported = fold_batchnorm(model) if fold else model
    batchnorms = count_batchnorms(model)
    folded = batchnorms - count_batchnorms(exported)
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(b, *shape, generator=generator) for b in CHECK_BATCHES]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
        example = torch.randn(EXPORT_BATCH, *shape, generator=generator)
    num_classes = int(expected[0].shape[1])
    exporter = "torch.onnx.export, dynamo exporter" if fmt == "onnx" else "torch.jit.trace"
    record = {**(metadata or {}), "source": source, "input_shape": list(shape), "format": fmt,
              "exporter": exporter, "opset": opset, "batchnorms_folded": folded,
              "batchnorms": batchnorms, "dynamic_axes": {"x": [0], "logits": [0]}}  # fmt: skip
    staging = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        staged = staging / out.name
        if fmt == "onnx":
            _write_onnx(exported, example, staged, opset, record, optimize=fold)  # type: ignore[arg-type]
            got, runtime = _run_onnx(staged, inputs)
        else:
            _write_torchscript(exported, example, staged, record)
            got, runtime = _run_torchscript(staged, inputs)
        scale = max(float(e.abs().max()) for e in expected)
        allowed = tolerance * max(1.0, scale)
        worst = 0.0
        for e, g in zip(expected, got):
            if tuple(g.shape) != tuple(e.shape):
                raise ExportMismatchError(
                    f"The exported {fmt} file gives logits of shape {tuple(g.shape)} where torch gives "
                    f"{tuple(e.shape)}; it was not written to {out}."
                )
            worst = max(worst, float((g - e).abs().max()))
        if not worst <= allowed:  # a NaN fails too
            raise ExportMismatchError(
                f"The exported {fmt} file disagrees with torch: on random input at batch "
                f"{' and '.join(map(str, CHECK_BATCHES))} the largest difference of the logits is "
                f"{worst:.3g}, "
                f"over the tolerance {allowed:.3g} ({tolerance:g} x max(1, largest |logit| {scale:.3g})), "
                f"in {runtime}. Nothing was written to {out}. Export with --no-fold to see whether folding "
                "the batch norms is the cause, or with --debug and report it."
            )
        files = []
        for part in sorted(staging.iterdir(), key=lambda p: p.name != out.name + ".data"):  # data first
            target = out.parent / part.name
            os.replace(part, target)
            files.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files.sort(key=lambda p: p != out)
    return ExportResult(
        path=out, format=fmt, exporter=exporter, opset=opset, input_shape=shape,  # type: ignore[arg-type]
        num_classes=num_classes, source=source, folded=folded, batchnorms=batchnorms, files=files,
        max_difference=worst, tolerance=allowed, logit_scale=scale, runtime=runtime, metadata=record,
    )  # fmt: skip


@contextlib.contextmanager
def _quiet():
    """The exporters' progress lines, warnings and logged tracebacks, kept out of the user's terminal:
    yields the list they go to (an error message quotes the last of them; a success drops them)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:  # a logged exception says why
                lines.append(f"{WHY}{str(record.exc_info[1]).strip().splitlines()[-1]}")

    keep = Keep()
    loggers = [logging.getLogger(), logging.getLogger("torch"), logging.getLogger("onnxscript")]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [keep], False
    buffer = io.StringIO()
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(buffer),
            contextlib.redirect_stderr(buffer),
        ):
            warnings.simplefilter("always")
            try:
                yield lines
            finally:
                lines.extend(str(w.message) for w in caught)
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
        lines.extend(buffer.getvalue().splitlines())


WHY = "exception: "


def _reason(lines: list[str]) -> str:
    """The last exception the exporter logged (an assertion's own words), else its last line."""
    why = [line[len(WHY) :] for line in lines if line.startswith(WHY)]
    said = why or [line.strip() for line in lines if line.strip() and not line.startswith("[torch.onnx]")]
    return said[-1].rpartition("failed: ")[2][:300] if said else ""


def _write_onnx(model: nn.Module, example: Any, path: Path, opset: int, record: dict[str, Any],
                optimize: bool = True) -> None:  # fmt: skip
    """Export to `path`. `optimize`: the exporter's graph optimisation, whose rewrite rules fuse a batch
    norm into the convolution before it too; without it (for --no-fold) only onnxscript's constant
    folding and removal of unused nodes run, so the file keeps its BatchNormalization nodes."""
    import onnx
    import onnxscript.optimizer
    import torch

    batch = torch.export.Dim("batch", min=1)
    with _quiet() as said:
        try:
            program = torch.onnx.export(
                model, (example,), None, dynamo=True, opset_version=opset, input_names=["x"],
                output_names=["logits"], dynamic_shapes={"x": {0: batch}}, verbose=False, optimize=optimize,
            )  # fmt: skip
            if not optimize:
                onnxscript.optimizer.fold_constants(program.model)
                onnxscript.optimizer.remove_unused_nodes(program.model)
        except Exception as exc:  # the exporter raises many types; its message says what it could not do
            raise ExportError(
                f"torch.onnx.export could not export {record.get('model', 'the model')} at opset {opset}: "
                f"{str(exc).strip().splitlines()[0][:400]}. Try the default opset {DEFAULT_OPSET}, "
                "--no-fold, or --format torchscript."
            ) from None
    written = int(program.model.opset_imports.get("", 0))  # the default domain's: the opset
    if written != opset:
        why = _reason(said)
        raise ExportError(
            f"The ONNX exporter cannot write opset {opset} for this network: it writes {DEFAULT_OPSET} and "
            f"onnx's version converter could not convert it ({why or 'no reason given'}). Nothing was "
            f"written. Give --opset {DEFAULT_OPSET} or higher (up to {onnx.defs.onnx_opset_version()})."
        )
    for key, value in _metadata_props(record).items():
        program.model.metadata_props[key] = value
    program.save(str(path))


def _metadata_props(record: dict[str, Any]) -> dict[str, str]:
    return {METADATA_KEY: json.dumps(record)}


def _run_onnx(path: Path, inputs: list[Any]) -> tuple[list[Any], str]:
    import onnxruntime
    import torch

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = [torch.from_numpy(session.run(None, {"x": x.numpy()})[0]) for x in inputs]
    except Exception as exc:  # onnxruntime's errors are its own types
        raise ExportError(
            f"onnxruntime {onnxruntime.__version__} cannot run the exported file: "
            f"{str(exc).strip().splitlines()[0][:400]}. Nothing was written; a lower --opset (the default "
            f"{DEFAULT_OPSET}) or a newer onnxruntime may do."
        ) from None
    return outs, f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"


def _write_torchscript(model: nn.Module, example: Any, path: Path, record: dict[str, Any]) -> None:
    import torch

    with _quiet(), torch.no_grad():  # torch 2.14 warns that TorchScript is deprecated: see docs/export.md
        traced = torch.jit.trace(model, example, check_trace=False)  # the check below is the stronger one
        torch.jit.save(traced, str(path), _extra_files={f"{METADATA_KEY}.json": json.dumps(record)})


def _run_torchscript(path: Path, inputs: list[Any]) -> tuple[list[Any], str]:
    import torch

    with _quiet(), torch.no_grad():
        loaded = torch.jit.load(str(path), map_location="cpu")
        outs = [loaded(x) for x in inputs]
    return outs, f"torch {torch.__version__.split('+')[0]} (torch.jit.load)"
