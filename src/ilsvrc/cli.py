"""`ilsvrc <command>`: a thin layer that parses arguments and calls the library.

Exit codes: 0 success, 2 bad input (an unknown model, an impossible configuration, a malformed spec
file, a bad argument), with a one-paragraph message and no traceback (`--debug` shows one).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .analysis import render
from .analysis.analyzer import DTYPE_BYTES, Report, analyze, check_strict, smallest_input
from .analysis.compare import compare
from .errors import IlsvrcError, ShapeError, UnknownModelError
from .networks import Network, get_spec, list_models, looks_like_file, resolve

EXAMPLES = """examples:
  ilsvrc tour                                 the lecture's AlexNet, the zoo, ZFNet against AlexNet
  ilsvrc list 'vgg*'                          the zoo, filtered
  ilsvrc summary alexnet-lecture --derive     every layer with the formula behind each number
  ilsvrc summary vgg16 --input 3x128x128 --batch 64 --format json
  ilsvrc summary my-net.yaml --strict         a spec file of your own
  ilsvrc compare deploy.prototxt alexnet      a Caffe prototxt, read without Caffe (docs/caffe.md)
  ilsvrc compare zfnet-lecture alexnet-lecture
  ilsvrc summary torchvision:resnet50         any torch module, traced (also timm:NAME, file.py:build)
  ilsvrc spec alexnet > alexnet.yaml          a built-in network as an editable spec file
  ilsvrc draw alexnet -o alexnet.svg          the volumes as boxes, the two-GPU split visible
  ilsvrc chart alexnet --vs vgg16 -o c.png    parameters and multiply-adds per layer
  ilsvrc report --run runs/x -o report.html    a run and the network it trained, as one page
  ilsvrc export resnet50 -o resnet50.onnx      batch norms folded, checked in onnxruntime
"""


TORCH_SOURCE = re.compile(r"(torchvision|timm):.+|.+\.py:[A-Za-z_][A-Za-z0-9_]*")


def _resolve(args: argparse.Namespace, name: str) -> Network:
    """`name` as every command takes it; a Caffe .prototxt read for --phase (default test). A
    classical pipeline's name (sift-bow) is no network: the error says so."""
    try:
        return resolve(name, phase=getattr(args, "phase", None) or "test")
    except UnknownModelError:
        from .training.classical import is_classical, not_a_network  # here: summary stays light

        if is_classical(name):
            raise not_a_network(name) from None
        raise


def is_torch_source(name: str) -> bool:
    """Whether a model argument names a torch module (`torchvision:resnet50`, `timm:resnet50`,
    `path/to/file.py:build`) rather than a zoo network or a spec file."""
    return TORCH_SOURCE.fullmatch(name) is not None


def _network(args: argparse.Namespace, name: str, shape: tuple[int, ...] | None = None,
             edit: bool = True) -> Network:  # fmt: skip
    """A zoo network, a spec file, a Caffe .prototxt (`_resolve`), or a torch module traced at
    `shape` (default: its own input); with `edit` (the one network a command takes, or the second of
    two), the --set edits applied."""
    net = _source(args, name, shape)
    edits = getattr(args, "set", None)
    if edit and edits:
        from .networks.edit import apply_edits

        net = apply_edits(net, edits)
    return net


def _source(args: argparse.Namespace, name: str, shape: tuple[int, ...] | None) -> Network:
    if is_torch_source(name):
        kind = name.partition(":")[0]
        file = Path(name.rpartition(":")[0])
        if kind not in ("torchvision", "timm") and not file.is_file():  # before torch is imported
            raise IlsvrcError(
                f"{file} {'is a folder' if file.is_dir() else 'does not exist'}; give a Python file and "
                "the function in it that returns a torch module, e.g. models/mine.py:build."
            )
        from .tracing import network_from_source  # imports torch: only for a torch model

        return network_from_source(name, shape)
    return _resolve(args, name)


def _shape(args: argparse.Namespace) -> tuple[int, ...] | None:
    if not getattr(args, "input", None):
        return None
    from .networks.specfile import parse_shape  # here: a zoo name at its own input does not load it

    return tuple(parse_shape(args.input))


MODEL_HELP = (
    "a zoo name (see `ilsvrc list`), a .yaml/.json spec file, a Caffe .prototxt, or a torch module: "
    "torchvision:NAME, timm:NAME (with the extra ilsvrc[timm]) or path/to/file.py:FUNCTION (a function "
    "returning a module)"
)


def _analyze(args: argparse.Namespace, name: str, edit: bool = True) -> Report:
    shape = _shape(args)
    net = _network(args, name, shape, edit)
    try:
        return analyze(net, shape, batch=args.batch, dtype=args.dtype)
    except ShapeError as exc:
        c, h, w = shape or net.input_shape
        smallest = smallest_input(net, c)
        if smallest and min(h, w) < smallest:
            raise ShapeError(f"{exc} {net.name} takes inputs from {smallest}x{smallest} up.") from None
        raise


def _emit(text: str) -> None:
    sys.stdout.write(text)


def cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise IlsvrcError(
            f"No network matches {args.pattern!r}; `ilsvrc list` shows all {len(list_models())}."
        )
    cols = ["name", "year", "input", "params", "layers", "MACs", "what"]
    if args.format != "text":  # the results are long: `ilsvrc summary NAME` shows them too
        cols.append("result")
    table = render.Table(f"{len(names)} networks", cols, [], numeric={3, 4, 5})
    rows_json = []
    for name in names:
        net = get_spec(name)
        rep = analyze(net, suggest=False)
        c, h, w = net.input_shape
        macs = render.short(rep.macs, render.TABLE_DIGITS)
        row = [name, str(net.info.year or ""), f"{c}x{h}x{w}", render.n(rep.params),
               str(rep.depth), macs, net.info.title]  # fmt: skip
        table.rows.append(row if args.format == "text" else [*row, net.info.result])
        rows_json.append({"name": name, "year": net.info.year, "input": [c, h, w],
                          "params": rep.params, "weight_layers": rep.weight_layers,
                          "depth_lecture": rep.depth, "params_with_aux": rep.params_with_aux,
                          "macs": rep.macs, "title": net.info.title, "paper": net.info.paper,
                          "result": net.info.result})  # fmt: skip
    table.footer = [
        "layers = layers with weights (conv + FC) along the longest path, as the lecture counts them "
        "(AlexNet 8, GoogLeNet 22, ResNet-152 152); params and MACs per image at the default input, "
        "auxiliary classifiers left out."
    ]
    if args.format == "json":
        _emit(render.dump_json({"schema": "ilsvrc.list/1", "networks": rows_json}))
    else:
        _emit(render.render(table, args.format))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    report = _analyze(args, args.model)
    if args.strict:
        check_strict(report)
    if args.format == "json":
        _emit(render.dump_json(render.summary_json(report)))
    else:
        _emit(
            render.render(render.summary_table(report, derive=args.derive, expand=args.expand), args.format)
        )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    cmp = compare(_analyze(args, args.a, edit=False), _analyze(args, args.b))  # --set edits B
    if args.format == "json":
        _emit(render.dump_json(render.compare_json(cmp)))
    else:
        _emit(render.render(render.compare_table(cmp), args.format))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from .networks.specfile import dumps

    shape = _shape(args)
    net = _network(args, args.model, shape)
    if shape is not None and not is_torch_source(args.model):
        net = net.with_input(shape)  # type: ignore[arg-type]
    fmt = args.format or ("json" if args.out and args.out.lower().endswith(".json") else "yaml")
    text = dumps(net, fmt)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        _emit(f"written: {args.out}\n")
    else:
        _emit(text)
    return 0


TOUR_TRAIN = ["alexnet", "--recipe", "cpu", "--image-size", "96", "--epochs", "3"]


def cmd_tour(args: argparse.Namespace) -> int:
    bar = "=" * 100

    def heading(text: str) -> None:
        _emit(f"\n{bar}\n{text}\n{bar}\n")

    heading("1. The zoo: every network as data (`ilsvrc list`)")
    cmd_list(argparse.Namespace(pattern="*", format="text"))
    heading(
        "2. ZFNet set against AlexNet, as the lecture does (`ilsvrc compare zfnet-lecture alexnet-lecture`)"
    )
    ns = argparse.Namespace(a="zfnet-lecture", b="alexnet-lecture", input=None, batch=1,
                            dtype="float32", format="text")  # fmt: skip
    cmd_compare(ns)
    heading(
        "3. The lecture's AlexNet, layer by layer, with the formula behind each number "
        "(`ilsvrc summary alexnet-lecture --derive`)"
    )
    ns = argparse.Namespace(model="alexnet-lecture", input=None, batch=1, dtype="float32",
                            derive=True, strict=False, format="text", expand=False)  # fmt: skip
    cmd_summary(ns)
    if args.no_train:
        return 0
    heading(
        "4. AlexNet learns the built-in shapes in 3 short epochs, the longest step "
        f"(`ilsvrc train {' '.join(TOUR_TRAIN)}`)"
    )
    sys.stdout.flush()
    return main(["train", *TOUR_TRAIN])


TODAY_GPUS = ("v100", "a100", "h100")  # `ilsvrc estimate`'s hardware lines when no --gpu or --rate is given


def cmd_estimate(args: argparse.Namespace) -> int:
    from .analysis import estimate

    cost, size, data = args.cost, args.image_size_used, args.data_size
    if args.rate is not None:
        lines = [estimate.given_rate(args.rate, args.gpus)]
    else:
        lines = [estimate.hardware(key, args.gpus, args.precision, args.utilisation) for key in args.gpu_keys]
    timed = [estimate.time_on(cost, hw) for hw in lines]
    papers = []
    run = estimate.paper_run(args.model)
    if run is not None and size == args.default_size and data.name == estimate.DATASETS["imagenet"].name:
        paper_cost = estimate.RunCost(cost.train_macs, cost.eval_macs, cost.train_images, cost.val_images,
                                      run.epochs, cost.views)  # fmt: skip
        papers.append(estimate.compare_paper(run, paper_cost))
    table_args = (args.model, data, size, cost, timed, papers, args.protocol, args.epochs_from)
    if args.format == "json":
        _emit(render.dump_json(render.estimate_json(*table_args)))
    else:
        _emit(render.render(render.estimate_table(*table_args), args.format))
    return 0


def check_estimate(args: argparse.Namespace) -> None:
    """`ilsvrc estimate`: the model, the data, the hardware and the numbers, checked and resolved (into
    args.cost, args.data_size, args.image_size_used, args.gpu_keys) before anything is printed."""
    from .analysis import estimate
    from .errors import SpecError
    from .training.recipes import check_network_size, default_recipe, get_recipe

    recipe = get_recipe(args.recipe) if args.recipe else default_recipe(args.model)
    args.data_size = estimate.data_size(args.data, args.images, args.val_images)
    estimate.check_count(args.gpus)
    if args.utilisation is not None:
        estimate.check_utilisation(args.utilisation)
    if args.rate is not None:
        estimate.given_rate(args.rate)
        if args.gpu or args.utilisation is not None:
            raise IlsvrcError("--rate is the rate reached, in TFLOP/s: it replaces --gpu and --utilisation; "
                              "give either --rate or --gpu (with --utilisation), not both.")  # fmt: skip
    keys = [k.strip().lower() for value in (args.gpu or []) for k in value.split(",") if k.strip()]
    for key in keys:
        estimate.hardware(key, 1, args.precision)  # an unknown GPU or precision fails here
    args.gpu_keys = keys or list(TODAY_GPUS)
    network = _network(args, args.model, (3, args.image_size, args.image_size) if args.image_size else None)
    size = args.image_size or recipe.image_size or network.input_shape[1]
    check_network_size(network, size)
    if args.data_size.classes:
        try:
            network = network.with_num_classes(args.data_size.classes)
        except SpecError:  # no fully connected layer on top: the classes change nothing counted
            pass
    report = analyze(network, (network.input_shape[0], size, size), suggest=False)
    scales = (256, 384, 512)
    if args.scales:
        try:
            scales = tuple(int(q) for q in args.scales.split(","))
        except ValueError:
            scales = ()
        if not scales or min(scales) <= 0:
            raise IlsvrcError(f"--scales takes shorter sides in pixels (256,384,512), not {args.scales!r}.")
    views = estimate.protocol_views(args.protocol, size, scales)
    epochs = args.epochs or recipe.epochs
    args.epochs_from = "--epochs" if args.epochs else f"the {recipe.name} recipe's"
    args.cost = estimate.RunCost.of(report, args.data_size.train, args.data_size.val, epochs, views)
    args.image_size_used, args.default_size = size, network.input_shape[1]  # the paper's runs: at the latter


# `ilsvrc train` options that override the config or the recipe (None: keep the default)
TRAIN_SETTINGS = (
    "data", "out", "seed", "device", "amp", "workers", "time_limit", "checkpoint_every", "epochs",
    "batch_size", "image_size", "crop_fraction", "lr", "momentum", "weight_decay", "schedule",
    "warmup_epochs", "label_smoothing", "augmentation", "min_crop_area", "init", "dropout",
    "synthetic_classes", "synthetic_train", "synthetic_val", "channels_last", "cache", "compile",
    "zero_init_residual", "polyak_decay", "size_schedule", "test_scale", "wd_norm_bias", "tta_flip",
    "eval_from",
)  # fmt: skip


# options of the networks' training only, and of the classical pipelines only (`ilsvrc train sift-bow`)
NETWORK_ONLY = (
    "recipe", "epochs", "batch_size", "crop_fraction", "lr", "momentum", "weight_decay", "schedule",
    "warmup_epochs", "label_smoothing", "augmentation", "min_crop_area", "init", "dropout",
    "zero_init_residual", "device", "amp", "compile", "channels_last", "cache", "max_steps",
    "checkpoint_every", "polyak_decay", "size_schedule", "test_scale", "wd_norm_bias", "tta_flip",
    "eval_from",
)  # fmt: skip
CLASSICAL_ONLY = ("encoding", "codebook", "svm_c")


def cmd_train(args: argparse.Namespace) -> int:
    from .training import classical

    if args.resume and classical.is_classical_run(args.resume):
        _draw_curves(classical.resume_classical(args.resume))
        return 0
    if args.model and classical.is_classical(args.model):
        run = classical.train_classical(args.model, args.out, **_classical_options(args))
        _draw_curves(run)
        return 0
    from .training.loop import make_config, train

    overrides = {name: getattr(args, name) for name in TRAIN_SETTINGS}
    if args.resume:
        keep = {"epochs": args.epochs, "time_limit": args.time_limit, "workers": args.workers,
                "device": args.device, "checkpoint_every": args.checkpoint_every}  # fmt: skip
        train(resume=args.resume, overrides=keep, stop_after_steps=args.max_steps, after_epoch=_draw_curves)
        return 0
    if not args.model:
        raise IlsvrcError(
            "Name the model to train (e.g. `ilsvrc train alexnet --recipe cpu`), or --resume RUN_DIR."
        )
    if args.set:  # the edited network travels with the run (config.json), as a spec file's does
        import json

        from .networks.specfile import dumps

        overrides["spec"] = json.loads(dumps(_network(args, args.model), "json"))
        overrides["edits"] = list(args.set)
    train(make_config(args.model, args.recipe, **overrides), stop_after_steps=args.max_steps,
          after_epoch=_draw_curves)  # fmt: skip
    return 0


def _classical_options(args: argparse.Namespace) -> dict:
    """train_classical's keyword arguments from `ilsvrc train sift-bow|hog-svm`'s options."""
    from .training.classical import DEFAULT_IMAGE_SIZE

    options = {"data": args.data, "image_size": args.image_size or DEFAULT_IMAGE_SIZE, "seed": args.seed or 0,
               "time_limit": args.time_limit, "synthetic_train": args.synthetic_train,
               "synthetic_val": args.synthetic_val, "synthetic_classes": args.synthetic_classes,
               "workers": args.workers, "encoding": args.encoding or "bow", "words": args.codebook,
               "svm_c": args.svm_c}  # fmt: skip
    return options


def _draw_curves(run_dir: Path) -> None:
    """RUN/curves.png, redrawn after every epoch of `ilsvrc train`."""
    from .pictures.plots import plot_runs

    try:
        plot_runs([run_dir], run_dir / "curves.png")
    except OSError:
        pass  # a picture is not worth failing a run for


def cmd_eval(args: argparse.Namespace) -> int:
    from .training.inference import evaluate_run

    if args.more:
        return _eval_ensemble(args)
    done = evaluate_run(args.run, data=args.data, protocol=args.protocol, which=args.which,
                        scales=args.scales, workers=args.workers, flips=args.tta_flip,
                        weights=args.weights, image_size=args.image_size,
                        crop_fraction=args.crop_fraction)  # fmt: skip
    if args.format == "json":
        _emit(render.dump_json(done.to_dict()))
        return 0
    result = done.result
    other = {"last": "best", "best": "last"}.get(done.which or "")
    which = f" (the {done.which} one; --which {other} for the {other})" if other else ""
    how = f"{done.weights} weights" + (", each image and its mirror" if done.flips else "")
    if done.view is not None:
        v = done.view
        how += f", {v.size} px from {round(v.size / v.fraction)} px"
        how += "" if v.own else ", not the run's own view"
    _emit(
        f"{args.protocol} protocol on {result.images} images ({how}): top-1 error {result.top1_error:.4f}, "
        f"top-5 error {result.top5_error:.4f}\ncheckpoint: {done.checkpoint}{which}\n"
        f"written: {', '.join(str(p) for p in done.written)}\n"
    )
    return 0


def _eval_ensemble(args: argparse.Namespace) -> int:
    from .training.inference import evaluate_ensemble

    done = evaluate_ensemble([args.run, *args.more], data=args.data, protocol=args.protocol, which=args.which,
                             scales=args.scales, workers=args.workers, flips=args.tta_flip,
                             weights=args.weights, image_size=args.image_size,
                             crop_fraction=args.crop_fraction)  # fmt: skip
    if args.format == "json":
        _emit(render.dump_json(done.to_dict()))
        return 0
    table = render.Table(
        f"{args.protocol} protocol on {done.ensemble.images} images of {done.data}",
        ["", "network", "top-1 error", "top-5 error"], [], numeric={2, 3},
    )  # fmt: skip
    for run, net, r in zip(done.runs, done.networks, done.members):
        table.rows.append([run, net, f"{r.top1_error:.4f}", f"{r.top5_error:.4f}"])
    e = done.ensemble
    table.rows.append([f"ensemble of {len(done.runs)}", "", f"{e.top1_error:.4f}", f"{e.top5_error:.4f}"])
    table.footer = ["ensemble: per image, the mean of the members' softmax probabilities"]
    _emit(render.render(table, "text"))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .training.inference import predict_images

    for path, top in predict_images(args.run, args.images, which=args.which, k=args.top):
        _emit(f"{path}\n")
        for rank, (cls, prob) in enumerate(top, 1):
            _emit(f"  {rank}. {cls.name} ({cls.id}, class {cls.index}): {prob:.4f}\n")
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from .pictures.viz import visualize

    out = visualize(args.kind, args.run, args.image, out=args.out, layer=args.layer, label=args.label,
                    patch=args.patch, stride=args.stride, top=args.top, which=args.which)  # fmt: skip
    _emit(f"written: {out}\n")
    return 0


def _default_out(model: str, what: str, suffix: str) -> str:
    """`alexnet-diagram.png`, `my-net-chart.png`: a file name from a zoo name or a spec file's stem
    (`resnet50-diagram.png` for torchvision:resnet50, `mine-diagram.png` for models/mine.py:build)."""
    if is_torch_source(model):
        kind, _, rest = model.partition(":")
        hub = kind in ("torchvision", "timm")
        stem = rest.replace("/", "_") if hub else Path(model.rpartition(":")[0]).stem
    else:
        stem = Path(model).stem if looks_like_file(model) else model
    return f"{stem}-{what}{suffix}"


def cmd_draw(args: argparse.Namespace) -> int:
    from .pictures.draw import draw

    out = args.out or _default_out(args.model, "diagram", ".png")
    _emit(f"written: {draw(_analyze(args, args.model), out)}\n")
    return 0


def cmd_chart(args: argparse.Namespace) -> int:
    from .pictures.charts import chart

    if args.vs:  # --set edits the second network, drawn beside the first
        reports = [_analyze(args, args.model, edit=False), _analyze(args, args.vs)]
    else:
        reports = [_analyze(args, args.model)]
    name = args.model if not args.vs else f"{args.model}-vs-{Path(args.vs).stem}"
    out = args.out or _default_out(name, "chart", ".png")
    _emit(f"written: {chart(reports, out, log=args.log)}\n")
    return 0


def _replaying(args: argparse.Namespace) -> bool:
    return any(getattr(args, k) is not None for k in ("data", "minutes", "entries", "resume")) or args.quick


def cmd_history(args: argparse.Namespace) -> int:
    from .analysis.history import history

    rows = history()
    if _replaying(args):
        return _replay(args, rows)
    if args.chart:
        from .pictures.history import history_chart

        _emit(f"written: {history_chart(rows, args.out or 'ilsvrc-history.png')}\n")
    elif args.format == "json":
        _emit(render.dump_json(render.history_json(rows)))
    else:
        _emit(render.render(render.history_table(rows, wide=args.format != "text"), args.format))
    return 0


def _replay(args: argparse.Namespace, rows: list) -> int:
    import time

    from .pictures.history import replay_chart
    from .training.checkpoint import write_text_atomic
    from .training.replay import ReplayPlan, replay

    def written(out: Path, plan: ReplayPlan, results: list) -> None:
        """OUT/history.md and OUT/history.png, redrawn after every entry."""
        done = [r.to_dict() for r in results]
        table = render.replay_table(plan.to_dict(), done)
        write_text_atomic(out / "history.md", render.render(table, "markdown"))
        try:
            replay_chart(rows, plan.to_dict(), sorted(done, key=lambda r: r["year"]), out / "history.png")
        except OSError:
            pass  # a picture is not worth failing a replay for

    if args.resume:
        out, plan = Path(args.resume), None
    else:
        out = Path(args.out or f"runs/history-{time.strftime('%Y%m%d-%H%M%S')}")
        plan = ReplayPlan(**args.plan)
    plan, results = replay(out, plan, after_entry=written)
    written(out, plan, results)
    table = render.replay_table(plan.to_dict(), [r.to_dict() for r in results])
    _emit(render.render(table, "text") + f"written: {out / 'history.md'}, {out / 'history.png'}\n")
    return 0


def check_history(args: argparse.Namespace) -> None:
    if _replaying(args):
        from .training.replay import DEFAULT_ENTRIES, ReplayPlan

        if args.chart:
            raise IlsvrcError(
                "A replay draws its chart into its directory (OUT/history.png); leave out --chart."
            )
        if args.data is not None:
            _must_exist(args.data, "The data folder", DATA_HINT, folder=True)
        if args.resume:
            if any(getattr(args, k) is not None for k in ("data", "minutes", "entries")) or args.quick:
                raise IlsvrcError(
                    "--resume goes on with the replay's own settings; leave out --data, --minutes, "
                    "--entries and --quick (they are in OUT/replay.json)."
                )
            return
        entries = args.entries.split(",") if args.entries else list(DEFAULT_ENTRIES)
        minutes = args.minutes if args.minutes is not None else 2.0 if args.quick else 10.0
        plan = dict(entries=[e.strip() for e in entries if e.strip()], minutes=minutes, data=args.data,
                    image_size=args.image_size, seed=args.seed, recipe=args.recipe,
                    synthetic_train=args.synthetic_train, synthetic_val=args.synthetic_val)  # fmt: skip
        ReplayPlan(**plan)  # every entry known and able to take the image size, before anything runs
        args.plan = plan
        return
    if args.out is not None and not args.chart:
        raise IlsvrcError(
            "`ilsvrc history -o FILE` writes the chart: add --chart (`ilsvrc history --chart -o "
            "history.png`), or redirect the table (`ilsvrc history --format markdown > history.md`)."
        )
    if args.chart:
        _picture_out(args.out)


def cmd_sweep(args: argparse.Namespace) -> int:
    import time

    from .pictures.studies import sweep_chart
    from .training.checkpoint import write_text_atomic
    from .training.study import run_study, settings_from
    from .training.sweep import KIND, best_spec, sweep_variants

    def written(out: Path, plan: dict, results: list) -> None:
        """OUT/sweep.md, OUT/sweep.png and OUT/best.yaml, after every variant."""
        write_text_atomic(out / "sweep.md", render.render(render.sweep_table(plan, results), "markdown"))
        best_spec(plan, results, out)
        try:
            sweep_chart(plan, results, out / "sweep.png")
        except OSError:
            pass  # a picture is not worth failing a sweep for

    if args.resume:
        out, plan = Path(args.resume), None
    else:
        plan, costs = args.plan, args.costs
        _emit(render.render(render.sweep_costs_table(plan, costs), "text"))
        if args.dry_run:
            return 0
        out = Path(args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    plan, results = run_study(out, KIND, plan, sweep_variants, settings_from, after_each=written)
    written(out, plan, results)
    files = f"{out / 'sweep.md'}, {out / 'sweep.png'}, {out / 'best.yaml'} (the best variant)"
    _emit(render.render(render.sweep_table(plan, results), "text") + f"written: {files}\n")
    return 0


def check_sweep(args: argparse.Namespace) -> None:
    if args.data is not None:
        _must_exist(args.data, "The data folder", DATA_HINT, folder=True)
    if args.resume:
        if args.model or args.set or args.random is not None or args.data is not None:
            raise IlsvrcError(
                "--resume goes on with the sweep's own settings; give only --resume OUT (the model, --set, "
                "--random and --data are in OUT/sweep.json)."
            )
        return
    if not args.model:
        raise IlsvrcError("Name the network to sweep, e.g. `ilsvrc sweep alexnet --set conv1.kernel=7,9,11`.")
    from .training.sweep import plan_sweep

    minutes = args.minutes if args.minutes is not None or args.epochs is not None else 10.0
    settings = dict(minutes=minutes, epochs=args.epochs, data=args.data, image_size=args.image_size,
                    seed=args.seed, recipe=args.recipe, synthetic_classes=args.synthetic_classes,
                    synthetic_train=args.synthetic_train, synthetic_val=args.synthetic_val)  # fmt: skip
    args.plan, found = plan_sweep(args.model, args.set or [], args.random, settings)
    args.costs = [c.to_dict() for c in found]


def cmd_ablation(args: argparse.Namespace) -> int:
    import time

    from .training.ablations import ABLATIONS, KIND, ablation_variants, get_ablation, target_of, with_measures

    if args.list:
        table = render.Table("The papers' ablations", ["name", "question", "variants", "the paper"], [])
        for a in ABLATIONS.values():
            table.rows.append([a.name, a.question, ", ".join(v.label for v in a.variants), a.source])
        _emit(render.render(table, "text"))
        return 0
    from .pictures.studies import ablation_chart
    from .training.checkpoint import write_text_atomic
    from .training.study import run_study, settings_from

    def measured(plan: dict) -> tuple[dict, dict]:
        """The plan with the training error asked now (`--target-error`, also on --resume), and the
        ablation's description with the target its table and chart use."""
        if args.target_error is not None:
            plan = {**plan, "target": args.target_error / 100}
        return plan, {**get_ablation(plan["ablation"]).to_dict(), "target": target_of(plan)}

    def written(out: Path, plan: dict, results: list) -> None:
        """OUT/ablation.md and OUT/ablation.png, after every variant."""
        plan, info = measured(plan)
        rows = with_measures(plan, results)
        write_text_atomic(
            out / "ablation.md", render.render(render.ablation_table(info, plan, rows), "markdown")
        )
        try:
            ablation_chart(info, plan, rows, out / "ablation.png")
        except OSError:
            pass  # a picture is not worth failing a study for

    if args.resume:
        out, plan = Path(args.resume), None
    else:
        out = Path(args.out or f"runs/ablation-{args.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        plan = args.plan
    plan, results = run_study(out, KIND, plan, ablation_variants, settings_from, after_each=written)
    written(out, plan, results)
    plan, info = measured(plan)
    table = render.ablation_table(info, plan, with_measures(plan, results))
    _emit(render.render(table, "text") + f"written: {out / 'ablation.md'}, {out / 'ablation.png'}\n")
    return 0


def check_ablation(args: argparse.Namespace) -> None:
    if args.list:
        return
    if args.target_error is not None and not 0 < args.target_error < 100:
        raise IlsvrcError(f"--target-error {args.target_error:g} is not a training error: give a percentage "
                          "between 0 and 100, e.g. --target-error 50.")  # fmt: skip
    if args.data is not None:
        _must_exist(args.data, "The data folder", DATA_HINT, folder=True)
    if args.resume:
        if args.name or args.data is not None:
            raise IlsvrcError(
                "--resume goes on with the ablation's own settings; give only --resume OUT "
                "(and --target-error, which only changes what is measured)."
            )
        return
    from .training.ablations import ABLATIONS, check_plan, get_ablation
    from .training.study import settings_from

    if not args.name:
        raise IlsvrcError(f"Name the ablation to run: {', '.join(ABLATIONS)} (`ilsvrc ablation --list`).")
    get_ablation(args.name)
    epochs = args.epochs if args.epochs is not None or args.minutes is not None else 10
    args.plan = dict(ablation=args.name, minutes=args.minutes, epochs=epochs, data=args.data,
                     image_size=args.image_size, seed=args.seed, recipe=args.recipe,
                     synthetic_classes=args.synthetic_classes, synthetic_train=args.synthetic_train,
                     synthetic_val=args.synthetic_val, target=None)  # fmt: skip
    if args.target_error is not None:
        args.plan["target"] = args.target_error / 100
    settings_from(args.plan)
    check_plan(args.plan)


def cmd_plot(args: argparse.Namespace) -> int:
    from .pictures import figures
    from .pictures.plots import curves_figure, load_runs

    figures.image_format(args.out)  # a bad file name fails before the runs are read
    _emit(f"written: {figures.save(curves_figure(load_runs(args.runs)), args.out)}\n")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .pictures.report import run_report, write_report
    from .training.metrics import run_network

    if args.run:
        if args.input:
            raise IlsvrcError(
                f"--input does not go with --run: the report shows the network as the run {args.run} "
                "trained it, at its input size and classes. Leave out --input, or leave out --run to see "
                "the network at another input."
            )
        report = run_report(args.run, _resolve(args, args.model) if args.model else None, args.model)
        name = args.model or run_network(args.run).model
    elif args.model:
        report, name = _analyze(args, args.model), args.model
    else:
        raise IlsvrcError(
            "Name the network to report on (e.g. `ilsvrc report alexnet`), or give --run RUN_DIR to report "
            "on a training run and the network it trained."
        )
    out = args.out or _default_out(name, "report", ".html")
    command = " ".join(["ilsvrc report"] + ([args.model] if args.model else [])
                       + (["--input", args.input] if args.input else [])
                       + (["--run", args.run] if args.run else [])
                       + (["--image", args.image] if args.image else []) + ["-o", out])  # fmt: skip
    _emit(f"written: {write_report(report, out, args.run, args.image, command)}\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .training.export import TITLES, export

    done = export(args.model, args.out, args.format, fold=args.fold, opset=args.opset, weights=args.weights,
                  input_size=args.input_shape, seed=args.seed, which=args.which)  # fmt: skip
    c, h, w = done.input_shape
    opset = f", opset {done.opset}" if done.opset is not None else ""
    folded = (f"{done.folded} of {done.batchnorms} folded into the convolution before them" if args.fold
              else f"{done.batchnorms} kept (--no-fold)")  # fmt: skip
    size = render.human_bytes(done.bytes) + (f" in {len(done.files)} files" if len(done.files) > 1 else "")
    _emit(
        f"exported {done.source}\n"
        f"format: {TITLES[done.format]}{opset} ({done.exporter}), eval mode, input x: N x {c} x {h} x {w} "
        f"(N dynamic), output logits: N x {done.num_classes}\n"
        f"batch norms: {folded}\n"
        f"size: {size} ({render.n(done.bytes)} bytes)\n"
        f"checked in {done.runtime} against torch at batch {' and '.join(map(str, done.batches))}: max "
        f"|difference| {done.max_difference:.3g} <= tolerance {done.tolerance:.3g} (1e-4 x max(1, largest "
        f"|logit| {done.logit_scale:.3g}))\n"
        f"written: {', '.join(str(p) for p in done.files)}\n"
    )
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """`ilsvrc cache list|clear`: the decoded-image cache's entries (see ilsvrc.cache); no torch."""
    import time

    from .training import cache

    root, cap = cache.cache_root(), cache.cap_bytes()
    found = cache.entries(root)

    def line(e: cache.Entry) -> str:
        return (
            f"  {e.key[:12]}  {cache.describe(e)}  {render.n(e.images)} images  {render.human_bytes(e.bytes)}"
        )

    if args.cache_command == "list":
        total = sum(e.bytes for e in found)
        if args.format == "json":
            data = {"schema": "ilsvrc.cache/1", "folder": str(root), "cap_bytes": cap, "total_bytes": total,
                    "entries": [e.to_dict() for e in found]}  # fmt: skip
            _emit(render.dump_json(data))
            return 0
        rows = [[e.key[:12], e.source or "(unknown: built by an older ilsvrc)", e.split, render.n(e.images),
                 render.n(e.unreadable), render.human_bytes(e.bytes),
                 time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)), e.state]
                for e in found]  # fmt: skip
        table = render.Table(f"{len(found)} decoded-image cache entries in {root}, least recently used first",
                             ["entry", "data set", "split", "images", "unreadable", "size", "last used",
                              "state"], rows, numeric={3, 4, 5})  # fmt: skip
        table.footer = [
            f"total {render.human_bytes(total)} of the {render.human_bytes(cap)} cap (ILSVRC_CACHE_MAX_GB); "
            "to make room, the least recently used go first.",
            "`ilsvrc cache clear --all | --older-than DAYS | PATTERN` removes entries.",
        ]
        _emit(render.render(table, "text"))
        return 0
    if args.older_than is not None and not args.older_than >= 0:
        raise cache.CacheError(f"--older-than takes a number of days, 0 or more, not {args.older_than}.")
    chosen = cache.select(found, everything=args.all, older_than_days=args.older_than, pattern=args.pattern)
    if args.pattern is not None and not chosen:
        raise cache.CacheError(
            f"No decoded-image cache entry matches {args.pattern!r} (a data set folder, a shell pattern such "
            f"as '*imagenette*', or the start of an entry's key); `ilsvrc cache list` shows the "
            f"{len(found)} in {root}."
        )
    removed, kept = cache.clear(chosen)
    freed = sum(e.bytes for e in removed)
    if removed:
        _emit(f"removed {len(removed)} cache {'entry' if len(removed) == 1 else 'entries'} from {root}, "
              f"{render.human_bytes(freed)} freed:\n" + "".join(line(e) + "\n" for e in removed))  # fmt: skip
    elif not kept:
        what = "is empty" if not found else f"has no entry unused for more than {args.older_than:g} days"
        _emit(f"nothing to remove: the decoded-image cache in {root} {what}.\n")
    if kept:
        raise cache.CacheError(
            f"Kept {len(kept)} cache {'entry' if len(kept) == 1 else 'entries'}: "
            + "; ".join(f"{e.key[:12]} ({cache.describe(e)}, {render.human_bytes(e.bytes)}) {why}"
                        for e, why in kept)
            + ". An entry in use or being built is never removed: clear it again once that run has ended."
        )  # fmt: skip
    return 0


# ---------------------------------------------------------------------------------------------------
# Checks made before a command imports torch or draws: a typo fails at once, and nothing is half-done


def _must_exist(path: str, what: str, hint: str, folder: bool | None = None) -> Path:
    """`path` as a Path; IlsvrcError naming it if it does not exist (or is not a folder/file as asked)."""
    p = Path(path)
    if not p.exists():
        raise IlsvrcError(f"{what} {p} does not exist; {hint}")
    if folder is True and not p.is_dir():
        raise IlsvrcError(f"{what} {p} is a file, not a folder; {hint}")
    if folder is False and p.is_dir():
        raise IlsvrcError(f"{what} {p} is a folder, not a file; {hint}")
    return p


RUN_HINT = (
    "give the run directory that `ilsvrc train` wrote (its --out, by default runs/MODEL-DATE-TIME) or "
    "one of its checkpoint directories."
)
DATA_HINT = (
    "give a folder that holds train/<class>/... and val/<class>/..., or no --data for the built-in data."
)


def _picture_out(out: str | None) -> None:
    if out is not None:
        from .pictures import figures

        figures.check_output(out)


def check_train(args: argparse.Namespace) -> None:
    """The model, recipe, settings and folders of `ilsvrc train`, checked without torch."""
    import dataclasses

    from .training import classical
    from .training.recipes import Recipe, check, check_network_sizes, default_recipe, get_recipe

    if args.model and classical.is_classical(args.model) and not args.resume:
        check_classical_train(args)
        return
    given = [name for name in CLASSICAL_ONLY if getattr(args, name) is not None]
    if given:
        raise IlsvrcError(
            f"--{given[0].replace('_', '-')} is a setting of the classical pipelines (`ilsvrc train "
            "sift-bow` or `hog-svm`), not of a network's training; leave it out."
        )
    if args.resume:
        run = Path(args.resume)
        if not (run / "config.json").is_file():
            why = "has no config.json" if run.is_dir() else "is a file" if run.exists() else "does not exist"
            raise IlsvrcError(
                f"{run} {why}, so it is not a run directory to resume; give the directory an earlier "
                "`ilsvrc train` wrote (its --out, by default runs/MODEL-DATE-TIME), which holds "
                "config.json and checkpoints/."
            )
    elif not args.model:
        raise IlsvrcError(
            "Name the model to train (e.g. `ilsvrc train alexnet --recipe cpu`), or --resume RUN_DIR."
        )
    else:
        recipe = get_recipe(args.recipe) if args.recipe else default_recipe(args.model)
        fields = {f.name for f in dataclasses.fields(Recipe)}
        recipe = recipe.replace(**{k: getattr(args, k) for k in TRAIN_SETTINGS
                                   if k in fields and getattr(args, k) is not None})  # fmt: skip
        check(recipe)
        network = _network(args, args.model)  # with its --set edits
        check_network_sizes(network, recipe)  # the image size, and a size schedule's and test size's
    if args.data is not None:
        _must_exist(args.data, "The data folder", DATA_HINT, folder=True)


def check_classical_train(args: argparse.Namespace) -> None:
    """`ilsvrc train sift-bow|hog-svm`: only the options a classical pipeline takes, in range, its
    libraries installed, the data folder there."""
    from .training import classical

    given = [name for name in NETWORK_ONLY if getattr(args, name, None) not in (None, False)]
    if given:
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise IlsvrcError(
            f"{names} {'is a setting' if len(given) == 1 else 'are settings'} of a network's training; "
            f"{args.model} is a classical pipeline (features and linear SVMs) and takes --data, --out, "
            "--seed, --image-size, --time-limit, --workers, --synthetic-classes/-train/-val, --codebook, "
            "--svm-c and (sift-bow) --encoding bow|fisher. Leave them out."
        )
    options = _classical_options(args)
    config = classical.ClassicalConfig(
        model=args.model, settings=classical.Settings(pipeline=args.model, image_size=options["image_size"],
                                                      encoding=options["encoding"], words=options["words"],
                                                      svm_c=options["svm_c"]),
        seed=options["seed"], time_limit=args.time_limit, workers=args.workers,
    )  # fmt: skip
    config.check()
    if args.synthetic_classes is not None and not 2 <= args.synthetic_classes <= 10:
        raise IlsvrcError(
            f"--synthetic-classes takes 2 to 10 (the built-in data's), got {args.synthetic_classes}."
        )
    classical.require_extras()
    if args.data is not None:
        _must_exist(args.data, "The data folder", DATA_HINT, folder=True)


def check_run_command(args: argparse.Namespace) -> None:
    """`ilsvrc eval`, `predict`, `visualize`: the run, the images and --data exist, -o can be written."""
    if getattr(args, "run", None) is not None:
        _must_exist(args.run, "The run", RUN_HINT)
    for run in getattr(args, "more", None) or []:
        _must_exist(run, "The run", RUN_HINT)
    images = getattr(args, "images", None) or ([args.image] if getattr(args, "image", None) else [])
    for image in images:
        _must_exist(image, "The image", "check the path (a .jpg, .png, ... file).", folder=False)
    if getattr(args, "data", None) is not None:
        _must_exist(args.data, "The data folder", DATA_HINT, folder=True)
    _picture_out(getattr(args, "out", None))


def check_picture_command(args: argparse.Namespace) -> None:
    """`ilsvrc draw`, `chart`, `plot`: the picture's name and folder, before anything is drawn."""
    _picture_out(args.out)


def check_spec(args: argparse.Namespace) -> None:
    """`ilsvrc spec -o FILE`: a .yaml/.yml/.json name in a folder that exists, before any tracing."""
    if args.out is None:
        return
    out = Path(args.out)
    if not out.name.lower().endswith((".yaml", ".yml", ".json")):
        raise IlsvrcError(f"-o {out}: a spec file's name ends in .yaml, .yml or .json.")
    if not out.parent.is_dir():
        raise IlsvrcError(f"-o {out}: the folder {out.parent} does not exist; create it first.")


def check_report(args: argparse.Namespace) -> None:
    """`ilsvrc report`: an .html name in a folder that exists, and the image, before any work."""
    from .pictures import figures
    from .pictures.report import check_report_name

    if args.out is not None:
        check_report_name(args.out)
        figures.check_folder(args.out)
    if args.image is not None:
        _must_exist(args.image, "The image", "check the path (a .jpg, .png, ... file).", folder=False)


def check_export(args: argparse.Namespace) -> None:
    """`ilsvrc export`: the model or run, the format, the destination, the opset and the packages, before
    torch is imported or anything is written."""
    from .training import export

    source = Path(args.model)
    if source.is_dir():
        if not ((source / "config.json").is_file() or (source / "model.safetensors").is_file()):
            raise IlsvrcError(f"{source} holds neither config.json nor model.safetensors, so it is not a "
                              f"run or a checkpoint to export; {RUN_HINT}")  # fmt: skip
    elif looks_like_file(args.model) and not source.exists():
        raise IlsvrcError(
            f"{source} does not exist: it is neither a run directory nor a spec file. Give a zoo name "
            f"(`ilsvrc list`), a .yaml/.json spec file, or {RUN_HINT.removeprefix('give ')}"
        )
    if args.weights is not None:
        _must_exist(args.weights, "The weights file", "give a .safetensors state dict.", folder=False)
    args.input_shape = None
    if args.input:
        from .networks.specfile import parse_shape

        args.input_shape = tuple(parse_shape(args.input))
    if not source.is_dir():  # an unknown name, a bad spec file or an input it cannot take fails here
        args.batch, args.dtype = 1, "float32"
        _analyze(args, args.model)
    args.format = export.format_for(args.out, args.format)
    if args.out is None:
        args.out = Path(args.model).stem + export.SUFFIXES[args.format]  # alexnet.onnx, my-net.pt, RUN.onnx
    export.check_destination(args.out)
    export.check_opset(args.opset, args.format)
    if args.format == "onnx":
        export.require_onnx()


class _Parser(argparse.ArgumentParser):
    """argparse with the tool's one-paragraph error (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ilsvrc: error: {message} (see `{self.prog} --help`).\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ilsvrc",
        description="The classic ImageNet CNNs (AlexNet, ZFNet, VGG) as data: exact volumes, "
        "parameters, multiply-adds, memory and receptive fields, without running them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show a traceback on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def analysis_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--input",
            metavar="CxHxW",
            help="input volume, e.g. 3x224x224 (or 224); default: the network's own",
        )
        sp.add_argument("--batch", type=_positive, default=1, help="batch size for memory figures")
        sp.add_argument("--dtype", choices=list(DTYPE_BYTES), default="float32")
        _format_option(sp, render.FORMATS, "text")
        _phase_option(sp)
        _set_option(sp)

    sp = sub.add_parser("list", help="the networks of the zoo (wildcards: 'vgg*')")
    sp.add_argument("pattern", nargs="?", default="*")
    _format_option(sp, render.FORMATS, "text")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("summary", help="one network, layer by layer",
                        description="Analyse a zoo network or a .yaml/.json spec file.")  # fmt: skip
    sp.add_argument("model", help=MODEL_HELP)
    analysis_options(sp)
    sp.add_argument("--derive", action="store_true", help="show the formula behind each number")
    sp.add_argument("--expand", action="store_true",
                    help="every layer on its own row (by default a module such as inception3a or "
                    "layer3.4 is one row with its totals)")  # fmt: skip
    sp.add_argument("--strict", action="store_true",
                    help="treat a non-integer output size as an error (exit code 2)")  # fmt: skip
    sp.set_defaults(func=cmd_summary)

    sp = sub.add_parser("compare", help="two networks side by side")
    sp.add_argument("a", help=MODEL_HELP)
    sp.add_argument("b", help="the second network, in any of the same forms")
    analysis_options(sp)
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser("spec", help="print a network as a YAML or JSON spec file (or write it: -o)")
    sp.add_argument("model", help=MODEL_HELP)
    _format_option(sp, ("yaml", "json"), None, "yaml; json for an -o name ending in .json")
    sp.add_argument("-o", "--out", help="file to write (.yaml or .json); default: standard output")
    sp.add_argument("--input", metavar="CxHxW",
                    help="input volume, e.g. 3x224x224 (a torch model is traced at it); default: the "
                    "network's own")  # fmt: skip
    _phase_option(sp)
    _set_option(sp)
    sp.set_defaults(func=cmd_spec, check=check_spec)

    sp = sub.add_parser("train", help="train a network with its paper's recipe (or --recipe cpu), or a "
                        "classical pipeline (sift-bow, hog-svm)",
                        description="Train MODEL (a zoo name or spec file) on --data (an ImageNet-style "
                        "folder with train/ and val/) or, without --data, on the built-in shapes data. "
                        "Every recipe setting can be overridden. MODEL may also be a pre-deep-era "
                        "pipeline: sift-bow (dense SIFT, a visual-word codebook or Fisher vectors, linear "
                        "SVMs) or hog-svm (HOG, linear SVMs); they need `pip install -e '.[classic]'` "
                        "(docs/classical.md).")  # fmt: skip
    sp.add_argument("model", nargs="?", help="zoo name or spec file (not needed with --resume)")
    _set_option(sp)
    sp.add_argument("--data", help="folder with train/<class>/ and val/<class>/ (default: built-in data)")
    sp.add_argument("--out", help="run directory (default: runs/MODEL-DATE-TIME)")
    sp.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    sp.add_argument("--recipe", help="alexnet, zfnet, vgg, googlenet, resnet, cpu or fast (default: the "
                    "model's paper recipe)")  # fmt: skip
    sp.add_argument("--epochs", type=_positive)
    sp.add_argument("--batch-size", type=_positive)
    sp.add_argument("--image-size", type=_positive, help="training crop in pixels (e.g. 128 on a CPU)")
    sp.add_argument("--crop-fraction", type=float, help="evaluation crop over resize (default 0.875)")
    sp.add_argument("--time-limit", type=float, metavar="MINUTES", help="end cleanly after this long")
    sp.add_argument("--max-steps", type=_positive, metavar="STEPS",
                    help="stop cleanly (checkpoint, evaluation) after STEPS steps in all")  # fmt: skip
    sp.add_argument("--checkpoint-every", type=_positive, metavar="STEPS",
                    help="also checkpoint every STEPS steps (always at the end of each epoch)")  # fmt: skip
    sp.add_argument("--lr", type=float)
    sp.add_argument("--momentum", type=float)
    sp.add_argument("--weight-decay", type=float)
    sp.add_argument("--schedule", help="plateau, step, cosine, onecycle or constant")
    sp.add_argument("--warmup-epochs", type=float)
    sp.add_argument("--label-smoothing", type=float)
    sp.add_argument("--augmentation", help="alexnet, vgg, resnet, googlenet, rrc or light")
    sp.add_argument("--min-crop-area", type=float, metavar="SHARE",
                    help="the smallest share of the image's area a random resized crop takes (googlenet "
                    "and rrc 0.08, light 0.35; 1: the whole image, its aspect ratio random)")  # fmt: skip
    sp.add_argument("--init", help="alexnet, gaussian, torchvision or kaiming")
    sp.add_argument("--dropout", type=float, help="dropout probability (default: the recipe's or the spec's)")
    sp.add_argument("--zero-init-residual", action=argparse.BooleanOptionalAction, default=None,
                    help="start each residual block's last batch norm at zero (default off)")  # fmt: skip
    sp.add_argument("--polyak-decay", type=_decay, metavar="DECAY",
                    help="evaluate an EMA of the weights with this decay per step, e.g. 0.995 (0 or none: "
                    "off; default: the recipe's, on in googlenet and fast)")  # fmt: skip
    sp.add_argument("--size-schedule", metavar="SCALE@FROM,...",
                    help="progressive resizing: training sizes as fractions of --image-size from fractions "
                    "of the run, e.g. 0.5@0,0.75@0.4,1@0.75 (none: one size; default: the recipe's, on "
                    "in fast)")  # fmt: skip
    sp.add_argument("--test-scale", type=float,
                    help="evaluate at --image-size times this (e.g. 1.15; default 1)")  # fmt: skip
    sp.add_argument("--wd-norm-bias", action=argparse.BooleanOptionalAction, default=None,
                    help="weight decay on batch norms and biases too (default on)")  # fmt: skip
    sp.add_argument(
        "--tta-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the run's last evaluation on each image and its mirror, logits averaged (default off; on "
        "in fast; the evaluations on the way go without)",
    )
    sp.add_argument("--eval-from", type=float, metavar="FRACTION",
                    help="validate only the epochs that end past this fraction of the run, and the last "
                    "state (default 0: every epoch; 0.5 in fast)")  # fmt: skip
    sp.add_argument("--seed", type=int)
    sp.add_argument("--device", help="cpu (default) or cuda")
    sp.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision")
    sp.add_argument("--compile", action="store_true", default=None,
                    help="torch.compile the model (for GPUs; compiling takes minutes)")  # fmt: skip
    sp.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="channels-last memory layout (default: the faster of the two for a "
                         "training step, timed before the run; small steps keep channels-last)")  # fmt: skip
    sp.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                    help="decode --data images once into ILSVRC_CACHE_DIR (default on)")  # fmt: skip
    sp.add_argument("--workers", type=int, help="data loading processes (default 2); sift-bow, hog-svm: "
                    "feature extraction processes (default: one per core)")  # fmt: skip
    sp.add_argument("--synthetic-classes", type=int, help="classes of the built-in data (2-10)")
    sp.add_argument("--synthetic-train", type=_positive, help="training images of the built-in data")
    sp.add_argument("--synthetic-val", type=_positive, help="validation images of the built-in data")
    sp.add_argument(
        "--encoding",
        choices=["bow", "fisher"],
        help="sift-bow: bag of visual words over a spatial pyramid (default), or Fisher vectors",
    )
    sp.add_argument(
        "--codebook",
        type=_positive,
        metavar="WORDS",
        help="sift-bow: visual words (default 512), or Gaussians with --encoding fisher (64)",
    )
    sp.add_argument("--svm-c", type=float, metavar="C",
                    help="sift-bow, hog-svm: the linear SVMs' C (default 1 and 0.01)")  # fmt: skip
    sp.set_defaults(func=cmd_train, check=check_train)

    sp = sub.add_parser("estimate", help="what training MODEL costs: FLOPs per image, per epoch and for the "
                        "run, and the time on GPUs (the papers' runs on today's hardware)",
                        description="The FLOPs of training MODEL (3 x 2 x the analyzer's forward "
                        "multiply-adds an image, 2 x for each test image) over a data set for the recipe's "
                        "epochs, and the time they take on GPUs at a fraction of their peak "
                        "(docs/estimate.md).")  # fmt: skip
    sp.add_argument("model", help=MODEL_HELP)
    sp.add_argument("--data", help="imagenet (default: 1,281,167 train + 50,000 val images), imagenette, "
                    "or a folder with train/<class>/ and val/<class>/ (its images counted)")  # fmt: skip
    sp.add_argument("--images", type=_positive, help="training images of another data set (not --data)")
    sp.add_argument("--val-images", type=int, help="validation images evaluated after each epoch")
    sp.add_argument("--epochs", type=_positive, help="default: the recipe's (AlexNet 90, VGG 74, ResNet 120)")
    sp.add_argument("--recipe", help="the recipe whose epochs and image size are the defaults (default: the "
                    "model's paper recipe)")  # fmt: skip
    sp.add_argument("--image-size", type=_positive, help="training crop in pixels (default: the recipe's or "
                    "the network's)")  # fmt: skip
    sp.add_argument("--gpu", action="append", metavar="NAME",
                    help="gtx580, titan-black, v100, a100 or h100 (repeatable or comma-separated; default: "
                    "v100,a100,h100)")  # fmt: skip
    sp.add_argument("--gpus", type=_positive, default=1, help="GPUs per line (linear scaling assumed)")
    sp.add_argument("--precision", choices=["fp32", "tf32", "bf16", "fp16"], default="bf16",
                    help="default bf16 (mixed precision; a GPU without it: fp16, then fp32)")  # fmt: skip
    sp.add_argument("--utilisation", "--utilization", type=float, metavar="U",
                    help="fraction of peak reached (default 0.5 fp32, 0.25 tensor cores)")  # fmt: skip
    sp.add_argument("--rate", type=float, metavar="TFLOPS",
                    help="the rate reached, in TFLOP/s, instead of the GPU table")  # fmt: skip
    sp.add_argument("--protocol", choices=["center", "10crop", "dense"], default="center",
                    help="the evaluation after each epoch: its views per image (default center)")  # fmt: skip
    sp.add_argument("--scales", help="dense: the shorter sides Q (default 256,384,512)")
    _format_option(sp, ("text", "markdown", "json"), "text")
    _phase_option(sp)
    _set_option(sp)
    sp.set_defaults(func=cmd_estimate, check=check_estimate)

    sp = sub.add_parser("eval", help="top-1/top-5 error of a trained run (center, 10crop or dense)")
    sp.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    sp.add_argument("more", nargs="*", metavar="RUN",
                    help="more runs: each evaluated alone, and all together (softmax averaged)")  # fmt: skip
    sp.add_argument("--data", help="default: the validation split the run was trained with")
    sp.add_argument("--protocol", choices=["center", "10crop", "dense"], default="center")
    sp.add_argument("--scales", help="dense: shorter sides, e.g. 256,384,512 (default: the paper's "
                    "three scales for the run's image size)")  # fmt: skip
    sp.add_argument("--which", "--checkpoint", dest="which", choices=["last", "best"], default="last",
                    help="the run's last checkpoint, or the best on validation (default: last)")  # fmt: skip
    sp.add_argument("--workers", type=int, default=2)
    sp.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None,
                    help="center: each image and its mirror, logits averaged (default: as the run's last "
                    "evaluation in training was, its recipe's tta_flip)")  # fmt: skip
    sp.add_argument("--weights", choices=["averaged", "trained"], default=None,
                    help="a run that averaged its weights (recipe polyak_decay): its average (the "
                    "default) or the optimizer's own weights, to see what the average bought")  # fmt: skip
    sp.add_argument("--image-size", type=int, metavar="PIXELS",
                    help="center: the crop's side (default: the run's evaluation size); a network ending "
                    "in global pooling takes others, e.g. above its training size (FixRes)")  # fmt: skip
    sp.add_argument("--crop-fraction", type=float, metavar="F",
                    help="center: the crop over the resized shorter side (default: the run's recipe's, "
                    "0.875: 224 from 256); 1 shows the whole centre square")  # fmt: skip
    _format_option(sp, ("text", "json"), "text")
    sp.set_defaults(func=cmd_eval, check=check_run_command)

    sp = sub.add_parser("predict", help="the top-5 classes of images, with probabilities")
    sp.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    sp.add_argument("images", nargs="+", metavar="IMAGE")
    sp.add_argument("--which", "--checkpoint", dest="which", choices=["last", "best"], default="last",
                    help="the last checkpoint (default) or the best by validation error")  # fmt: skip
    sp.add_argument("--top", type=_positive, default=5)
    sp.set_defaults(func=cmd_predict, check=check_run_command)

    sp = sub.add_parser("visualize", help="what a trained network learned: filters, feature maps, "
                        "occlusion, deconvnet projections; where max pooling sends its gradient",
                        description="One picture from a run (or checkpoint) and an image file, drawn as the "
                        "run's evaluation sees the image. pool-gradient needs neither.")  # fmt: skip
    sp.add_argument("kind", choices=["filters", "features", "occlusion", "deconv", "pool-gradient"])
    sp.add_argument("run", nargs="?", metavar="RUN_DIR", help="run directory or checkpoint")
    sp.add_argument("image", nargs="?", metavar="IMAGE", help="image file (features, occlusion, deconv)")
    sp.add_argument("--layer", help="dotted layer name, e.g. conv1 (default: the first conv for features, "
                    "the last layer with feature maps for deconv)")  # fmt: skip
    sp.add_argument("--label", help="occlusion: class index, id or name (default: the predicted class)")
    sp.add_argument("--patch", type=_positive, help="occlusion: grey square's side in pixels (size/8)")
    sp.add_argument("--stride", type=_positive, help="occlusion: step of the square in pixels (patch/2)")
    sp.add_argument("--top", type=_positive, default=9, help="deconv: channels to project")
    sp.add_argument("--which", "--checkpoint", dest="which", choices=["last", "best"], default="last",
                    help="the last checkpoint (default) or the best by validation error")  # fmt: skip
    sp.add_argument("-o", "--out", help="picture to write, .png or .svg (default: KIND.png)")
    sp.set_defaults(func=cmd_visualize, check=check_run_command)

    def picture_options(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument(
            "--input", metavar="CxHxW", help="input volume, e.g. 3x224x224 (default: the network's own)"
        )
        sp.add_argument("-o", "--out", help=f"file to write (default: {default})")
        sp.set_defaults(batch=1, dtype="float32")
        _phase_option(sp)
        _set_option(sp)

    sp = sub.add_parser("draw", help="architecture diagram: the volumes as 3-D boxes (.svg or .png)",
                        description="Draw MODEL (a zoo name or spec file) as the AlexNet paper draws it: "
                        "every volume a box, kernel/stride on the arrows, parameters per layer.")  # fmt: skip
    sp.add_argument("model")
    picture_options(sp, "MODEL-diagram.png")
    sp.set_defaults(func=cmd_draw, check=check_picture_command)

    sp = sub.add_parser(
        "chart", help="parameters and multiply-adds per layer as bars (--vs OTHER: two networks)"
    )
    sp.add_argument("model")
    sp.add_argument(
        "--vs", metavar="OTHER", help="a second network, drawn beside the first on the same scale"
    )
    sp.add_argument("--log", action="store_true", help="logarithmic scale (small layers become visible)")
    picture_options(sp, "MODEL-chart.png")
    sp.set_defaults(func=cmd_chart, check=check_picture_command)

    sp = sub.add_parser("history", help="the ILSVRC winners 2010-2015: top-5 error, depth, parameters, "
                        "multiply-adds, sources (--chart: as a picture)")  # fmt: skip
    _format_option(sp, render.FORMATS, "text")
    sp.add_argument("--chart", action="store_true",
                    help="draw error by year and the networks' depth and multiply-adds instead")  # fmt: skip
    sp.add_argument("-o", "--out", help="the chart's file, .png or .svg (default: ilsvrc-history.png); "
                    "with a replay, its directory (default: runs/history-DATE-TIME)")  # fmt: skip
    replay = sp.add_argument_group(
        "replay",
        "train each era's entry on the same data for the same minutes, measured the same way, "
        "beside the published errors (a run directory per entry; OUT/history.md, OUT/history.png)",
    )
    replay.add_argument("--data", help="an image folder with train/ and val/ (default: the built-in data)")
    replay.add_argument("--minutes", type=float, help="each entry's budget (default 10; 2 with --quick)")
    replay.add_argument("--entries", help="comma-separated, e.g. sift-bow,alexnet,resnet18 (default: "
                        "sift-bow, alexnet, zfnet, vgg11, googlenet-torchvision, resnet18)")  # fmt: skip
    replay.add_argument("--quick", action="store_true", help="a smaller replay: 2 minutes each")
    replay.add_argument("--image-size", type=_positive, default=128, help="pixels (default 128)")
    replay.add_argument("--seed", type=int, default=0)
    replay.add_argument("--recipe", default="cpu", help="the CNNs' recipe, the same for all (default cpu)")
    replay.add_argument("--synthetic-train", type=_positive, help="training images of the built-in data")
    replay.add_argument("--synthetic-val", type=_positive, help="validation images of the built-in data")
    replay.add_argument("--resume", metavar="OUT", help="go on with the replay in OUT where it stopped")
    sp.set_defaults(func=cmd_history, check=check_history)

    def study_options(sp: argparse.ArgumentParser, kind: str, default_out: str) -> None:
        """What every study of several runs takes: the data, its settings, its directory."""
        sp.add_argument("--data", help="an image folder with train/ and val/ (default: the built-in data)")
        sp.add_argument("--image-size", type=_positive, default=128, help="pixels (default 128)")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--recipe", default="cpu", help="the recipe, the same for all (default cpu)")
        sp.add_argument(
            "--synthetic-classes", type=_positive, default=10, help="classes of the built-in data"
        )
        sp.add_argument("--synthetic-train", type=_positive, help="training images of the built-in data")
        sp.add_argument("--synthetic-val", type=_positive, help="validation images of the built-in data")
        sp.add_argument("-o", "--out", help=f"the {kind}'s directory (default: {default_out})")
        sp.add_argument("--resume", metavar="OUT", help=f"go on with the {kind} in OUT where it stopped")

    sp = sub.add_parser("sweep", help="train variants of a network (--set LAYER.FIELD=V1,V2,...) on the "
                        "same data and budget: costs first, then a ranking by val error")  # fmt: skip
    sp.add_argument("model", nargs="?", help="zoo name or spec file (not with --resume)")
    sp.add_argument("--set", action="append", metavar="LAYER.FIELD=V1,V2,...",
                    help="values to try, e.g. conv1.kernel=7,9,11 (repeatable: the grid of all)")  # fmt: skip
    sp.add_argument("--random", type=int, metavar="N", help="draw N variants of the grid (seeded) instead")
    sp.add_argument("--minutes", type=float, help="each variant's budget (default 10)")
    sp.add_argument("--epochs", type=_positive, help="or each variant's epochs")
    sp.add_argument("--dry-run", action="store_true", help="print the variants' costs and stop")
    study_options(sp, "sweep", "runs/sweep-DATE-TIME")
    sp.set_defaults(func=cmd_sweep, check=check_sweep)

    sp = sub.add_parser("ablation", help="a paper's ablation (relu-vs-tanh, lrn, overlapping-pooling, "
                        "dropout, zfnet-conv1, vgg-depth, vgg-1x1, degradation), by its claim")  # fmt: skip
    sp.add_argument("name", nargs="?", help="the ablation (`--list` shows them)")
    sp.add_argument("--list", action="store_true", help="the ablations, their questions and sources")
    sp.add_argument("--target-error", type=float, metavar="PERCENT",
                    help="measure the epochs each variant needs to reach this training top-1 error "
                    "(default: the paper's, 25%% for relu-vs-tanh; also with --resume)")  # fmt: skip
    sp.add_argument("--epochs", type=_positive, help="each variant's epochs (default 10)")
    sp.add_argument("--minutes", type=float, help="or each variant's minutes")
    study_options(sp, "ablation", "runs/ablation-NAME-DATE-TIME")
    sp.set_defaults(func=cmd_ablation, check=check_ablation)

    sp = sub.add_parser("plot", help="loss and top-1/top-5 error of runs, against epochs and wall time")
    sp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of `ilsvrc train`, overlaid")
    sp.add_argument(
        "-o", "--out", default="curves.png", help="picture to write, .png or .svg (default: curves.png)"
    )
    sp.set_defaults(func=cmd_plot, check=check_picture_command)

    sp = sub.add_parser("report", help="one self-contained HTML page: diagram, layer table, charts, run",
                        description="Write an HTML page about MODEL that needs nothing else to open: "
                        "its facts, diagram, layer table and charts; with --run, the run's curves and "
                        "what it learned, and the network's facts as the run trained it (its input size "
                        "and classes; MODEL may then be left out, and if given must be the run's "
                        "network).")  # fmt: skip
    sp.add_argument(
        "model", nargs="?", help="zoo name or spec file; with --run it may be left out (the run's network)"
    )
    sp.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="add a training run: its metrics, curves, pictures; the page then shows the network as the "
        "run trained it (input size, classes)",
    )
    sp.add_argument(
        "--image", metavar="IMAGE", help="with --run: feature maps, occlusion and deconv of this image"
    )
    picture_options(sp, "MODEL-report.html")
    sp.set_defaults(func=cmd_report, check=check_report)

    sp = sub.add_parser("export", help="a network or trained run as an ONNX or TorchScript file, checked",
                        description="Export MODEL_OR_RUN (a zoo name or spec file, with random weights or "
                        "--weights; or a run directory, with its trained or averaged weights) in eval mode, "
                        "batch norms folded into the convolutions, with a dynamic batch size. The file is "
                        "run (onnxruntime, or torch.jit.load) against torch at batch 1 and 3 before it is "
                        "put in place; a file that disagrees (beyond 1e-4 x max(1, largest |logit|)) is "
                        "not written and the exit code is 2.")  # fmt: skip
    sp.add_argument("model", metavar="MODEL_OR_RUN", help="zoo name, spec file or run directory")
    sp.add_argument("-o", "--out", help="file to write (default: MODEL.onnx, or MODEL.pt for torchscript)")
    sp.add_argument("--format", choices=["onnx", "torchscript"],
                    help="default: from the file name (.pt, .pth, .ts: torchscript), else onnx")  # fmt: skip
    sp.add_argument("--no-fold", dest="fold", action="store_false",
                    help="keep the batch norms instead of folding them into the convolutions")  # fmt: skip
    sp.add_argument("--opset", type=_positive, help="ONNX opset (default 18, the exporter's own)")
    sp.add_argument("--weights", metavar="FILE", help="a .safetensors state dict (ours or torchvision's) "
                    "instead of random weights (zoo name or spec file only)")  # fmt: skip
    sp.add_argument("--input", metavar="CxHxW", help="input volume (default: the network's or the run's)")
    sp.add_argument("--seed", type=int, default=0, help="random weights and the check's input (default 0)")
    sp.add_argument("--which", "--checkpoint", dest="which", choices=["last", "best"], default="last",
                    help="a run's last checkpoint (default) or the best by validation error")  # fmt: skip
    sp.set_defaults(func=cmd_export, check=check_export)

    sp = sub.add_parser("cache", help="the decoded-image cache: list its entries, clear them",
                        description="The decoded-image cache in ILSVRC_CACHE_DIR (default ~/.cache/ilsvrc), "
                        "capped at ILSVRC_CACHE_MAX_GB GiB (default 8): least recently used entries are "
                        "removed when a new one needs room, never one in use.")  # fmt: skip
    cache_sub = sp.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    cp = cache_sub.add_parser("list", help="each entry: data set, split, images, size, last used; the cap")
    cp.add_argument("--format", choices=["text", "json"], default="text")
    cp = cache_sub.add_parser("clear", help="remove entries: --all, --older-than DAYS or PATTERN")
    which = cp.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every entry not in use")
    which.add_argument("--older-than", type=float, metavar="DAYS", help="entries unused for more than DAYS")
    which.add_argument("pattern", nargs="?", metavar="PATTERN",
                       help="a data set folder, a pattern ('*imagenette*') or an entry's key")  # fmt: skip
    sp.set_defaults(func=cmd_cache)

    sp = sub.add_parser(
        "tour", help="the lecture's networks, checked, and AlexNet trained for 3 short epochs"
    )
    sp.add_argument("--no-train", action="store_true", help="skip the training at the end")
    sp.set_defaults(func=cmd_tour)
    return p


def _set_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--set", action="append", metavar="LAYER.FIELD=VALUE",
                    help="edit the network before use, e.g. --set conv1.kernel=7 --set 'relu*.type=tanh' "
                    "(wildcards in LAYER; repeatable; with two networks, the second is edited)")  # fmt: skip


def _format_option(sp: argparse.ArgumentParser, choices: Sequence[str], default: str | None,
                   default_text: str | None = None) -> None:  # fmt: skip
    """--format with `choices`, any case, and the aliases of render.FORMAT_ALIASES ("md": markdown)."""
    aliases = [f"{a} ({b})" for a, b in render.FORMAT_ALIASES.items() if b in choices]
    names = ", ".join(choices) + (f"; also {', '.join(aliases)}" if aliases else "")

    def name(text: str) -> str:
        text = text.lower()
        return render.FORMAT_ALIASES.get(text, text) if aliases else text

    sp.add_argument("--format", type=name, choices=choices, default=default,
                    metavar="FORMAT", help=f"{names} (default {default_text or default})")  # fmt: skip


def _phase_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--phase", choices=["test", "train"], default="test",
                    help="for a Caffe .prototxt: the layers of this phase (default test)")  # fmt: skip


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def _decay(text: str) -> float:
    """--polyak-decay: a number, or none/off (0: no averaging)."""
    if text.strip().lower() in ("none", "off"):
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (or none)") from None


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 2
    try:
        if getattr(args, "check", None):
            args.check(args)
        return args.func(args)
    except IlsvrcError as exc:
        if args.debug:
            raise
        code = getattr(exc, "exit_code", 2)
        if code != 2:  # an interrupted run: its message is already printed
            return code
        print(f"ilsvrc: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ilsvrc summary vgg16 | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
