"""`ilsvrc <command>`: a thin layer that parses arguments and calls the library.

Exit codes: 0 success, 2 bad input (an unknown model, an impossible configuration, a malformed spec
file, a bad argument), with a one-paragraph message and no traceback (`--debug` shows one).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .analysis import render
from .analysis.analyzer import DTYPE_BYTES, Report, analyze, check_strict, smallest_input
from .analysis.compare import compare
from .errors import IlsvrcError, ShapeError, UnknownModelError
from .networks import get_spec, list_models, looks_like_file, resolve

EXAMPLES = """examples:
  ilsvrc tour                                 the lecture's AlexNet, the zoo, ZFNet against AlexNet
  ilsvrc list 'vgg*'                          the zoo, filtered
  ilsvrc summary alexnet-lecture --derive     every layer with the formula behind each number
  ilsvrc summary vgg16 --input 3x128x128 --batch 64 --format json
  ilsvrc summary my-net.yaml --strict         a spec file of your own
  ilsvrc compare zfnet-lecture alexnet-lecture
  ilsvrc spec alexnet > alexnet.yaml          a built-in network as an editable spec file
  ilsvrc draw alexnet -o alexnet.svg          the volumes as boxes, the two-GPU split visible
  ilsvrc chart alexnet --vs vgg16 -o c.png    parameters and multiply-adds per layer
  ilsvrc report --run runs/x -o report.html    a run and the network it trained, as one page
"""


def _analyze(args: argparse.Namespace, name: str) -> Report:
    try:
        net = resolve(name)
    except UnknownModelError:
        from .training.classical import is_classical, not_a_network  # here: summary stays light

        if is_classical(name):
            raise not_a_network(name) from None
        raise
    shape = None
    if args.input:
        from .networks.specfile import parse_shape  # here: a zoo name at its own input does not load it

        shape = tuple(parse_shape(args.input))
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
    cmp = compare(_analyze(args, args.a), _analyze(args, args.b))
    if args.format == "json":
        _emit(render.dump_json(render.compare_json(cmp)))
    else:
        _emit(render.render(render.compare_table(cmp), args.format))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from .networks.specfile import dumps

    _emit(dumps(resolve(args.model), args.format))
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


# `ilsvrc train` options that override the config or the recipe (None: keep the default)
TRAIN_SETTINGS = (
    "data", "out", "seed", "device", "amp", "workers", "time_limit", "checkpoint_every", "epochs",
    "batch_size", "image_size", "crop_fraction", "lr", "momentum", "weight_decay", "schedule",
    "warmup_epochs", "label_smoothing", "augmentation", "init", "dropout", "synthetic_classes",
    "synthetic_train", "synthetic_val", "channels_last", "cache", "compile", "zero_init_residual",
)  # fmt: skip


# options of the networks' training only, and of the classical pipelines only (`ilsvrc train sift-bow`)
NETWORK_ONLY = (
    "recipe", "epochs", "batch_size", "crop_fraction", "lr", "momentum", "weight_decay", "schedule",
    "warmup_epochs", "label_smoothing", "augmentation", "init", "dropout", "zero_init_residual", "device",
    "amp", "compile", "channels_last", "cache", "max_steps", "checkpoint_every",
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

    done = evaluate_run(args.run, data=args.data, protocol=args.protocol, which=args.which,
                        scales=args.scales, workers=args.workers)  # fmt: skip
    if args.format == "json":
        _emit(render.dump_json(done.to_dict()))
        return 0
    result = done.result
    other = {"last": "best", "best": "last"}.get(done.which or "")
    which = f" (the {done.which} one; --which {other} for the {other})" if other else ""
    _emit(
        f"{args.protocol} protocol on {result.images} images: top-1 error {result.top1_error:.4f}, "
        f"top-5 error {result.top5_error:.4f}\ncheckpoint: {done.checkpoint}{which}\n"
        f"written: {', '.join(str(p) for p in done.written)}\n"
    )
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
    """`alexnet-diagram.png`, `my-net-chart.png`: a file name from a zoo name or a spec file's stem."""
    stem = Path(model).stem if looks_like_file(model) else model
    return f"{stem}-{what}{suffix}"


def cmd_draw(args: argparse.Namespace) -> int:
    from .pictures.draw import draw

    out = args.out or _default_out(args.model, "diagram", ".png")
    _emit(f"written: {draw(_analyze(args, args.model), out)}\n")
    return 0


def cmd_chart(args: argparse.Namespace) -> int:
    from .pictures.charts import chart

    reports = [_analyze(args, args.model)] + ([_analyze(args, args.vs)] if args.vs else [])
    name = args.model if not args.vs else f"{args.model}-vs-{Path(args.vs).stem}"
    out = args.out or _default_out(name, "chart", ".png")
    _emit(f"written: {chart(reports, out, log=args.log)}\n")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from .analysis.history import history

    rows = history()
    if args.chart:
        from .pictures.history import history_chart

        _emit(f"written: {history_chart(rows, args.out or 'ilsvrc-history.png')}\n")
    elif args.format == "json":
        _emit(render.dump_json(render.history_json(rows)))
    else:
        _emit(render.render(render.history_table(rows, wide=args.format != "text"), args.format))
    return 0


def check_history(args: argparse.Namespace) -> None:
    if args.out is not None and not args.chart:
        raise IlsvrcError(
            "`ilsvrc history -o FILE` writes the chart: add --chart (`ilsvrc history --chart -o "
            "history.png`), or redirect the table (`ilsvrc history --format markdown > history.md`)."
        )
    if args.chart:
        _picture_out(args.out)


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
        report = run_report(args.run, resolve(args.model) if args.model else None, args.model)
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
    from .training.recipes import Recipe, check, check_network_size, default_recipe, get_recipe

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
        network = resolve(args.model)
        check_network_size(network, recipe.image_size or network.input_shape[1])
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
    images = getattr(args, "images", None) or ([args.image] if getattr(args, "image", None) else [])
    for image in images:
        _must_exist(image, "The image", "check the path (a .jpg, .png, ... file).", folder=False)
    if getattr(args, "data", None) is not None:
        _must_exist(args.data, "The data folder", DATA_HINT, folder=True)
    _picture_out(getattr(args, "out", None))


def check_picture_command(args: argparse.Namespace) -> None:
    """`ilsvrc draw`, `chart`, `plot`: the picture's name and folder, before anything is drawn."""
    _picture_out(args.out)


def check_report(args: argparse.Namespace) -> None:
    """`ilsvrc report`: an .html name in a folder that exists, and the image, before any work."""
    from .pictures import figures
    from .pictures.report import check_report_name

    if args.out is not None:
        check_report_name(args.out)
        figures.check_folder(args.out)
    if args.image is not None:
        _must_exist(args.image, "The image", "check the path (a .jpg, .png, ... file).", folder=False)


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

    sp = sub.add_parser("list", help="the networks of the zoo (wildcards: 'vgg*')")
    sp.add_argument("pattern", nargs="?", default="*")
    _format_option(sp, render.FORMATS, "text")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("summary", help="one network, layer by layer",
                        description="Analyse a zoo network or a .yaml/.json spec file.")  # fmt: skip
    sp.add_argument("model", help="a zoo name (see `ilsvrc list`) or a spec file path")
    analysis_options(sp)
    sp.add_argument("--derive", action="store_true", help="show the formula behind each number")
    sp.add_argument("--expand", action="store_true",
                    help="every layer on its own row (by default a module such as inception3a or "
                    "layer3.4 is one row with its totals)")  # fmt: skip
    sp.add_argument("--strict", action="store_true",
                    help="treat a non-integer output size as an error (exit code 2)")  # fmt: skip
    sp.set_defaults(func=cmd_summary)

    sp = sub.add_parser("compare", help="two networks side by side")
    sp.add_argument("a")
    sp.add_argument("b")
    analysis_options(sp)
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser("spec", help="print a network as a YAML or JSON spec file")
    sp.add_argument("model")
    _format_option(sp, ("yaml", "json"), "yaml")
    sp.set_defaults(func=cmd_spec)

    sp = sub.add_parser("train", help="train a network with its paper's recipe (or --recipe cpu), or a "
                        "classical pipeline (sift-bow, hog-svm)",
                        description="Train MODEL (a zoo name or spec file) on --data (an ImageNet-style "
                        "folder with train/ and val/) or, without --data, on the built-in shapes data. "
                        "Every recipe setting can be overridden. MODEL may also be a pre-deep-era "
                        "pipeline: sift-bow (dense SIFT, a visual-word codebook or Fisher vectors, linear "
                        "SVMs) or hog-svm (HOG, linear SVMs); they need `pip install -e '.[classic]'` "
                        "(docs/classical.md).")  # fmt: skip
    sp.add_argument("model", nargs="?", help="zoo name or spec file (not needed with --resume)")
    sp.add_argument("--data", help="folder with train/<class>/ and val/<class>/ (default: built-in data)")
    sp.add_argument("--out", help="run directory (default: runs/MODEL-DATE-TIME)")
    sp.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    sp.add_argument("--recipe", help="alexnet, zfnet, vgg, googlenet, resnet or cpu (default: the model's "
                    "paper recipe)")  # fmt: skip
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
    sp.add_argument("--init", help="alexnet, gaussian, torchvision or kaiming")
    sp.add_argument("--dropout", type=float, help="dropout probability (default: the recipe's or the spec's)")
    sp.add_argument("--zero-init-residual", action=argparse.BooleanOptionalAction, default=None,
                    help="start each residual block's last batch norm at zero (default off)")  # fmt: skip
    sp.add_argument("--seed", type=int)
    sp.add_argument("--device", help="cpu (default) or cuda")
    sp.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision")
    sp.add_argument("--compile", action="store_true", default=None,
                    help="torch.compile the model (for GPUs; compiling takes minutes)")  # fmt: skip
    sp.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="channels-last memory layout (default on)")  # fmt: skip
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

    sp = sub.add_parser("eval", help="top-1/top-5 error of a trained run (center, 10crop or dense)")
    sp.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    sp.add_argument("--data", help="default: the validation split the run was trained with")
    sp.add_argument("--protocol", choices=["center", "10crop", "dense"], default="center")
    sp.add_argument("--scales", help="dense: shorter sides, e.g. 256,384,512 (default: the paper's "
                    "three scales for the run's image size)")  # fmt: skip
    sp.add_argument("--which", "--checkpoint", dest="which", choices=["last", "best"], default="last",
                    help="the run's last checkpoint, or the best on validation (default: last)")  # fmt: skip
    sp.add_argument("--workers", type=int, default=2)
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
    sp.add_argument("-o", "--out", help="the chart's file, .png or .svg (default: ilsvrc-history.png)")
    sp.set_defaults(func=cmd_history, check=check_history)

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


def _format_option(sp: argparse.ArgumentParser, choices: Sequence[str], default: str) -> None:
    """--format with `choices`, any case, and the aliases of render.FORMAT_ALIASES ("md": markdown)."""
    aliases = [f"{a} ({b})" for a, b in render.FORMAT_ALIASES.items() if b in choices]
    names = ", ".join(choices) + (f"; also {', '.join(aliases)}" if aliases else "")

    def name(text: str) -> str:
        text = text.lower()
        return render.FORMAT_ALIASES.get(text, text) if aliases else text

    sp.add_argument("--format", type=name, choices=choices, default=default,
                    metavar="FORMAT", help=f"{names} (default {default})")  # fmt: skip


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


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
