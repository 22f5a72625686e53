"""Using a trained run: `ilsvrc eval` (the papers' test protocols) and `ilsvrc predict`."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..analysis.analyzer import analyze
from ..errors import IlsvrcError
from . import checkpoint
from .checkpoint import write_json_atomic
from .classical import evaluate_classical, is_classical_run, predict_classical
from .data import Augmented, ClassInfo, open_dataset
from .evaluate import (
    EvalResult,
    collect_probs,
    eval_input_transform,
    evaluate,
    plot_confusion,
    predict_probs,
    result_of,
)
from .images import read_image
from .loop import TrainConfig, load_trained
from .recipes import check_network_size


def dense_scales(image_size: int, scales: str | None) -> list[int]:
    """The shorter sides Q of dense evaluation: given ('256,384,512'), or the VGG paper's three for
    jittered training (256, 384 and 512 for a 224 crop), scaled to the run's image size."""
    if scales:
        try:
            values = [int(s) for s in str(scales).split(",")]
        except ValueError:
            raise IlsvrcError(
                f"--scales takes whole numbers separated by commas, e.g. 256,384,512; got {scales!r}."
            ) from None
        if any(q < image_size for q in values):
            raise IlsvrcError(
                f"Dense evaluation needs every scale to be at least the training size {image_size} "
                f"(the fully connected layers become convolutions of that extent); got {scales}."
            )
        return values
    return [round(image_size * q / 224) for q in (256, 384, 512)]


@dataclass
class RunEvaluation:
    """What `evaluate_run` measured, on which checkpoint and data, and the files it wrote.

    which: "last" or "best" when a run directory was given (the checkpoint its pointer names), None
    when a checkpoint directory was given itself.
    """

    result: EvalResult
    checkpoint: Path
    which: str | None
    data: str
    written: list[Path]
    weights: str = "trained"  # "averaged": the run's average of its weights (recipe polyak_decay)
    flips: bool = False  # "center" on each image and its mirror too
    view: View | None = None  # "center": the crop's size and crop fraction

    def to_dict(self) -> dict[str, Any]:
        """The JSON of eval-PROTOCOL.json and `ilsvrc eval --format json` (errors to 6 decimals)."""
        seen = {"image_size": self.view.size, "crop_fraction": self.view.fraction} if self.view else {}
        return {**self.result.to_dict(), "checkpoint": str(self.checkpoint), "which": self.which,
                "data": self.data, "weights": self.weights, "flips": self.flips, **seen}  # fmt: skip


@dataclass(frozen=True)
class View:
    """What the "center" protocol shows the network: the centre `size` x `size` crop of the image
    resized to round(size / fraction) on its shorter side. `own`: the view the run itself was
    evaluated in (its evaluation size and its recipe's crop fraction)."""

    size: int
    fraction: float
    own: bool = True

    @property
    def suffix(self) -> str:
        """'' for the run's own view, else '-144px-0.875': the files of another view beside its own."""
        return "" if self.own else f"-{self.size}px-{self.fraction:g}"


def center_view(config: TrainConfig, protocol: str, image_size: int | None = None,
                crop_fraction: float | None = None) -> View | None:  # fmt: skip
    """The view "center" evaluates the run in: its own (the evaluation size and the recipe's crop
    fraction), or another size or crop fraction of the same weights (FixRes: Touvron et al. 2019).
    None for the other protocols, which take the run's training size. Refuses (IlsvrcError) a view
    for another protocol, a crop fraction outside (0, 1], and a size the network cannot take, or at
    which it would not be the same network (a fully connected layer sized by its input)."""
    own = View(config.eval_size, config.recipe.crop_fraction)
    if image_size is None and crop_fraction is None:
        return own if protocol == "center" else None
    if protocol != "center":
        raise IlsvrcError(
            f"--image-size and --crop-fraction set the view of the center protocol; {protocol} takes the "
            "run's training size (and dense its --scales). Leave them out, or use --protocol center."
        )
    if crop_fraction is not None and not 0.0 < crop_fraction <= 1.0:
        raise IlsvrcError(
            f"--crop-fraction is the centre crop's share of the resized image's shorter side, in (0, 1] "
            f"(0.875: 224 from 256); got {crop_fraction:g}."
        )
    if image_size is not None and image_size != own.size:
        if image_size < 1:
            raise IlsvrcError(
                f"--image-size is the crop's side in pixels, a whole number above 0; got {image_size}."
            )
        network = config.network()
        check_network_size(network, image_size)  # a ShapeError naming the smallest size that works

        def params(size: int) -> int:
            return analyze(network, (network.input_shape[0], size, size), suggest=False).params

        if params(image_size) != params(config.image_size):
            raise IlsvrcError(
                f"--image-size {image_size}: {network.name}'s parameters depend on its input size (a fully "
                "connected layer reads a feature map that grows with the image), so the weights it trained "
                f"at {config.image_size} px fit no other size; evaluate it at {own.size} px (leave out "
                "--image-size), or change only --crop-fraction."
            )
    view = View(image_size or own.size, crop_fraction or own.fraction)
    return replace(view, own=(view.size, view.fraction) == (own.size, own.fraction))


def evaluate_run(
    run: str | Path,
    data: str | None = None,
    protocol: str = "center",
    which: str = "last",
    scales: str | None = None,
    workers: int = 2,
    batch_size: int = 32,
    flips: bool | None = None,
    weights: str | None = None,
    image_size: int | None = None,
    crop_fraction: float | None = None,
) -> RunEvaluation:
    """Evaluate a run's `which` checkpoint ("last" or "best"), or a checkpoint directory, on `data`'s
    val split, or on the split it was trained with.

    "center" evaluates at the run's evaluation size (its image size times the recipe's test_scale) and,
    when `flips` (None: as the run's recipe says, `tta_flip`), on each image and its mirror
    (`evaluate.flipped_logits`); "10crop" and "dense" at the training size, with their own flips.
    `weights` as `load_trained`: None evaluates the run's averaged weights if it kept them (recipe
    `polyak_decay`), "trained" the optimizer's own, "averaged" insists on the average.
    `image_size` and `crop_fraction` evaluate "center" in another view of the same weights (`center_view`).

    Writes eval-PROTOCOL.json and confusion-PROTOCOL.png into the run directory (next to the
    checkpoints when given a checkpoint directory); in another view than the run's own,
    eval-center-SIZEpx-FRACTION.json and its confusion matrix beside them.
    """
    if is_classical_run(run):
        if weights == "averaged":
            raise IlsvrcError(f"{run} is a run of a classical pipeline: it holds no averaged weights; "
                              "leave out --weights.")  # fmt: skip
        if image_size is not None or crop_fraction is not None:
            raise IlsvrcError(
                f"{run} is a run of a classical pipeline: its features describe the centre crop it was "
                "trained on; leave out --image-size and --crop-fraction."
            )
        return _evaluate_classical_run(run, data, protocol, workers)
    model, config, classes, where = load_trained(run, which, weights)
    view = center_view(config, protocol, image_size, crop_fraction)
    loader, qs = _val_loader(config, classes, data, protocol, scales, workers, batch_size, view)
    mirrored = _flips(config, protocol, flips)
    result = evaluate(model, loader, protocol, crop=_crop(config, view), scales=qs,
                      num_classes=len(classes), flips=mirrored)  # fmt: skip
    run_dir = where.parent.parent if where.parent.name == "checkpoints" else where
    given = Path(run).resolve()
    named = None if where.resolve() in (given, given.parent) else which  # a checkpoint given itself
    averaged = weights != "trained" and (where / checkpoint.AVERAGED).is_file()  # as load_trained chose
    done = RunEvaluation(result, where, named, data or config.data or "built-in", [],
                         "averaged" if averaged else "trained", bool(mirrored), view)  # fmt: skip
    return _write(done, run_dir, classes)


def _crop(config: TrainConfig, view: View | None) -> int:
    """The size a protocol crops to: "center" its view's, the others the run's training size."""
    return view.size if view is not None else config.image_size


def _flips(config: TrainConfig, protocol: str, flips: bool | None) -> bool | None:
    """Whether "center" averages each image with its mirror (None: as the run's recipe, tta_flip)."""
    if protocol != "center":
        return None
    return config.recipe.tta_flip if flips is None else flips


def _val_loader(
    config: TrainConfig,
    classes: list[ClassInfo],
    data: str | None,
    protocol: str,
    scales: str | None,
    workers: int,
    batch_size: int,
    view: View | None,
) -> tuple[torch.utils.data.DataLoader, list[int]]:
    """The val split of `data` (or the run's own), transformed for `protocol` at the run's size (or
    "center"'s `view`) and normalisation, in its fixed order; and the dense scales. Its classes must be
    the run's."""
    net = config.network()
    size, r = _crop(config, view), config.recipe
    fraction = view.fraction if view is not None else r.crop_fraction
    qs = dense_scales(size, scales) if protocol == "dense" else []
    transform = eval_input_transform(protocol, max([size, *qs]), net.info.mean, net.info.std, fraction)
    source = round(config.image_size / r.crop_fraction)  # the built-in data as the run drew it
    base = open_dataset(
        data or config.data, "val", image_size=source, seed=config.seed,
        num_classes=config.synthetic_classes, length=None if data or config.data else config.synthetic_val,
    )  # fmt: skip
    theirs = [c.id for c in base.classes]
    ours = [c.id for c in classes]
    if theirs != ours:
        raise IlsvrcError(
            f"The classes of {data} ({', '.join(theirs[:5])}...) are not the ones the run was trained on "
            f"({', '.join(ours[:5])}...); evaluate on data with the same class folders."
        )
    loader = torch.utils.data.DataLoader(
        Augmented(base, transform, seed=config.seed), batch_size=batch_size, num_workers=workers
    )
    return loader, qs


@dataclass
class EnsembleEvaluation:
    """Several runs on one val split: each alone, and the average of their softmax outputs."""

    runs: list[str]
    networks: list[str]
    members: list[EvalResult]
    ensemble: EvalResult
    data: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "ilsvrc.ensemble/1",
            "combination": "the mean of the members' softmax probabilities, per image",
            "data": self.data,
            "members": [
                {"run": r, "network": n, **m.to_dict()}
                for r, n, m in zip(self.runs, self.networks, self.members)
            ],  # fmt: skip
            "ensemble": self.ensemble.to_dict(),
        }


def evaluate_ensemble(
    runs: list[str | Path],
    data: str | None = None,
    protocol: str = "center",
    which: str = "last",
    scales: str | None = None,
    workers: int = 2,
    batch_size: int = 32,
    flips: bool | None = None,
    weights: str | None = None,
    image_size: int | None = None,
    crop_fraction: float | None = None,
) -> EnsembleEvaluation:
    """Evaluate each run alone on the same val split by `protocol`, and their ensemble: per image, the
    mean of the members' class probabilities (each member sees the images at its own size and
    normalisation), as the 2012-2014 entries averaged their CNNs. The runs must share their classes
    and, without `data`, the data set they were trained with. `weights` as `load_trained`; `image_size`
    and `crop_fraction`, one view of "center" for all of them (`center_view`)."""
    loaded = [load_trained(run, which, weights) for run in runs]
    ids = [[c.id for c in classes] for _, _, classes, _ in loaded]
    if any(i != ids[0] for i in ids):
        odd = next(str(r) for r, i in zip(runs, ids) if i != ids[0])
        raise IlsvrcError(
            f"An ensemble averages the same classes: {odd} was trained on other classes than {runs[0]} "
            "(its classes.json differs); combine runs trained on the same data."
        )
    if data is None:
        sources = {(c.data, None if c.data else (c.seed, c.synthetic_classes, c.synthetic_val))
                   for _, c, _, _ in loaded}  # fmt: skip
        if len(sources) > 1:
            raise IlsvrcError(
                "The runs were trained on different data (or different built-in data sets), so they have "
                "no val split in common; give the one to use with --data DIR."
            )
    probs, members, targets = [], [], None
    for model, config, classes, _ in loaded:
        view = center_view(config, protocol, image_size, crop_fraction)
        loader, qs = _val_loader(config, classes, data, protocol, scales, workers, batch_size, view)
        p, t = collect_probs(model, loader, protocol, crop=_crop(config, view), scales=qs,
                             flips=_flips(config, protocol, flips))  # fmt: skip
        if targets is not None and not torch.equal(t, targets):
            raise IlsvrcError("The runs' val splits list their images differently; give --data DIR.")
        targets = t
        probs.append(p)
        members.append(result_of(p, t, protocol))
    assert targets is not None
    mean = torch.stack(probs).mean(dim=0)
    networks = [c.model for _, c, _, _ in loaded]
    where = data or loaded[0][1].data or "built-in"
    return EnsembleEvaluation(
        [str(r) for r in runs], networks, members, result_of(mean, targets, protocol), where
    )


def _write(done: RunEvaluation, run_dir: Path, classes: list[ClassInfo]) -> RunEvaluation:
    """Write eval-PROTOCOL.json and confusion-PROTOCOL.png into `run_dir`; `done` with their paths."""
    name = done.result.protocol + (done.view.suffix if done.view is not None else "")
    done.written = [run_dir / f"eval-{name}.json", run_dir / f"confusion-{name}.png"]
    write_json_atomic(done.written[0], done.to_dict())
    plot_confusion(done.result, [c.name for c in classes], done.written[1])
    return done


def _evaluate_classical_run(run: str | Path, data: str | None, protocol: str, workers: int) -> RunEvaluation:
    """A classical pipeline's run (`ilsvrc.training.classical`): the centre protocol only."""
    if protocol != "center":
        raise IlsvrcError(
            f"{run} is a run of a classical pipeline, evaluated with the center protocol only: its features "
            f"describe the whole centre crop, and the {protocol} protocol needs a network to run on "
            "other crops (10crop) or to slide over the image (dense). Use `--protocol center` (the default)."
        )
    result, where, classes = evaluate_classical(run, data, workers=workers or None)
    config = json.loads((Path(run) / "config.json").read_text(encoding="utf-8"))
    return _write(RunEvaluation(result, where, None, data or config.get("data") or "built-in", []), Path(run),
                  classes)  # fmt: skip


def predict_images(
    run: str | Path, images: list[str], which: str = "last", k: int = 5
) -> list[tuple[str, list[tuple[ClassInfo, float]]]]:
    """The k most probable classes of each image (centre crop at the run's size). A classical
    pipeline's run gives the softmax of its SVMs' scores (`classical.predict_classical`)."""
    if is_classical_run(run):
        return predict_classical(run, images, k)
    model, config, classes, _ = load_trained(run, which)
    net = config.network()
    size = config.eval_size
    transform = eval_input_transform("center", size, net.info.mean, net.info.std,
                                     config.recipe.crop_fraction)  # fmt: skip
    out = []
    for path in images:
        x = transform(read_image(path)).unsqueeze(0)
        probs = predict_probs(model, x, "center", crop=size, flips=config.recipe.tta_flip)[0]
        top = torch.topk(probs, min(k, len(classes)))
        out.append((path, [(classes[i], float(p)) for p, i in zip(top.values, top.indices.tolist())]))
    return out
