"""`ilsvrc <command>`: a thin layer that parses arguments and calls the library.

Exit codes: 0 success, 2 bad input (an unknown model, an impossible configuration, a malformed spec
file, a bad argument), with a one-paragraph message and no traceback (`--debug` shows one).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import render, specfile
from .analysis import DTYPE_BYTES, Report, analyze, check_strict, smallest_input
from .compare import compare
from .errors import IlsvrcError, ShapeError
from .spec import Network
from .zoo import get_spec, list_models

EXAMPLES = """examples:
  ilsvrc tour                                 the lecture's AlexNet, the zoo, ZFNet against AlexNet
  ilsvrc list 'vgg*'                          the zoo, filtered
  ilsvrc summary alexnet-lecture --derive     every layer with the formula behind each number
  ilsvrc summary vgg16 --input 3x128x128 --batch 64 --format json
  ilsvrc summary my-net.yaml --strict         a spec file of your own
  ilsvrc compare zfnet-lecture alexnet-lecture
  ilsvrc spec alexnet > alexnet.yaml          a built-in network as an editable spec file
"""


def resolve(name: str) -> Network:
    """A zoo name, or the path of a .yaml/.json spec file."""
    if specfile.looks_like_file(name):
        return specfile.load(name)
    return get_spec(name)


def _analyze(args: argparse.Namespace, name: str) -> Report:
    net = resolve(name)
    shape = tuple(specfile.parse_shape(args.input)) if args.input else None
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
        row = [name, str(net.info.year or ""), f"{c}x{h}x{w}", render.n(rep.params),
               str(rep.weight_layers), render.short(rep.macs), net.info.title]  # fmt: skip
        table.rows.append(row if args.format == "text" else [*row, net.info.result])
        rows_json.append({"name": name, "year": net.info.year, "input": [c, h, w],
                          "params": rep.params, "weight_layers": rep.weight_layers,
                          "macs": rep.macs, "title": net.info.title, "paper": net.info.paper,
                          "result": net.info.result})  # fmt: skip
    table.footer = ["layers = layers with weights (conv + FC); MACs per image at the default input."]
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
        _emit(render.render(render.summary_table(report, derive=args.derive), args.format))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    cmp = compare(_analyze(args, args.a), _analyze(args, args.b))
    if args.format == "json":
        _emit(render.dump_json(render.compare_json(cmp)))
    else:
        _emit(render.render(render.compare_table(cmp), args.format))
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    _emit(specfile.dumps(resolve(args.model), args.format))
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
                            derive=True, strict=False, format="text")  # fmt: skip
    cmd_summary(ns)
    if args.no_train:
        return 0
    heading(
        f"4. AlexNet learns the built-in shapes in about a minute (`ilsvrc train {' '.join(TOUR_TRAIN)}`)"
    )
    sys.stdout.flush()
    return main(["train", *TOUR_TRAIN])


# `ilsvrc train` options that override the config or the recipe (None: keep the default)
TRAIN_SETTINGS = (
    "data", "out", "seed", "device", "amp", "workers", "time_limit", "checkpoint_every", "epochs",
    "batch_size", "image_size", "crop_fraction", "lr", "momentum", "weight_decay", "schedule",
    "warmup_epochs", "label_smoothing", "augmentation", "init", "dropout", "synthetic_classes",
    "synthetic_train", "synthetic_val",
)  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from .train import make_config, train

    overrides = {name: getattr(args, name) for name in TRAIN_SETTINGS}
    overrides["channels_last"] = args.channels_last
    if args.resume:
        keep = {"epochs": args.epochs, "time_limit": args.time_limit, "workers": args.workers,
                "device": args.device, "checkpoint_every": args.checkpoint_every}  # fmt: skip
        train(resume=args.resume, overrides=keep)
        return 0
    if not args.model:
        raise IlsvrcError(
            "Name the model to train (e.g. `ilsvrc train alexnet --recipe cpu`), or --resume RUN_DIR."
        )
    train(make_config(args.model, args.recipe, **overrides))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .inference import evaluate_run

    result, written = evaluate_run(args.run, data=args.data, protocol=args.protocol, which=args.checkpoint,
                                   scales=args.scales, workers=args.workers)  # fmt: skip
    if args.format == "json":
        _emit(render.dump_json(result.to_dict()))
    else:
        _emit(
            f"{args.protocol} protocol on {result.images} images: top-1 error {result.top1_error:.4f}, "
            f"top-5 error {result.top5_error:.4f}\nwritten: {', '.join(str(p) for p in written)}\n"
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict_images

    for path, top in predict_images(args.run, args.images, which=args.checkpoint, k=args.top):
        _emit(f"{path}\n")
        for rank, (cls, prob) in enumerate(top, 1):
            _emit(f"  {rank}. {cls.name} ({cls.id}, class {cls.index}): {prob:.4f}\n")
    return 0


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
        sp.add_argument("--format", choices=render.FORMATS, default="text")  # fmt: skip

    sp = sub.add_parser("list", help="the networks of the zoo (wildcards: 'vgg*')")
    sp.add_argument("pattern", nargs="?", default="*")
    sp.add_argument("--format", choices=render.FORMATS, default="text")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("summary", help="one network, layer by layer",
                        description="Analyse a zoo network or a .yaml/.json spec file.")  # fmt: skip
    sp.add_argument("model", help="a zoo name (see `ilsvrc list`) or a spec file path")
    analysis_options(sp)
    sp.add_argument("--derive", action="store_true", help="show the formula behind each number")
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
    sp.add_argument("--format", choices=["yaml", "json"], default="yaml")
    sp.set_defaults(func=cmd_spec)

    sp = sub.add_parser("train", help="train a network with its paper's recipe (or --recipe cpu)",
                        description="Train MODEL (a zoo name or spec file) on --data (an ImageNet-style "
                        "folder with train/ and val/) or, without --data, on the built-in shapes data. "
                        "Every recipe setting can be overridden.")  # fmt: skip
    sp.add_argument("model", nargs="?", help="zoo name or spec file (not needed with --resume)")
    sp.add_argument("--data", help="folder with train/<class>/ and val/<class>/ (default: built-in data)")
    sp.add_argument("--out", help="run directory (default: runs/MODEL-DATE-TIME)")
    sp.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    sp.add_argument("--recipe", help="alexnet, zfnet, vgg or cpu (default: the model's paper recipe)")
    sp.add_argument("--epochs", type=_positive)
    sp.add_argument("--batch-size", type=_positive)
    sp.add_argument("--image-size", type=_positive, help="training crop in pixels (e.g. 128 on a CPU)")
    sp.add_argument("--crop-fraction", type=float, help="evaluation crop over resize (default 0.875)")
    sp.add_argument("--time-limit", type=float, metavar="MINUTES", help="end cleanly after this long")
    sp.add_argument("--checkpoint-every", type=_positive, metavar="STEPS",
                    help="also checkpoint every STEPS steps (always at the end of each epoch)")  # fmt: skip
    sp.add_argument("--lr", type=float)
    sp.add_argument("--momentum", type=float)
    sp.add_argument("--weight-decay", type=float)
    sp.add_argument("--schedule", help="plateau, step, cosine, onecycle or constant")
    sp.add_argument("--warmup-epochs", type=float)
    sp.add_argument("--label-smoothing", type=float)
    sp.add_argument("--augmentation", help="alexnet, vgg, rrc or light")
    sp.add_argument("--init", help="alexnet, gaussian, torchvision or kaiming")
    sp.add_argument("--dropout", type=float, help="dropout probability (default: the recipe's or the spec's)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--device", help="cpu (default) or cuda")
    sp.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision")
    sp.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="channels-last memory layout (default on)")  # fmt: skip
    sp.add_argument("--workers", type=int, help="data loading processes (default 2)")
    sp.add_argument("--synthetic-classes", type=int, help="classes of the built-in data (2-10)")
    sp.add_argument("--synthetic-train", type=_positive, help="training images of the built-in data")
    sp.add_argument("--synthetic-val", type=_positive, help="validation images of the built-in data")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("eval", help="top-1/top-5 error of a trained run (center, 10crop or dense)")
    sp.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    sp.add_argument("--data", help="default: the validation split the run was trained with")
    sp.add_argument("--protocol", choices=["center", "10crop", "dense"], default="center")
    sp.add_argument("--scales", help="dense: shorter sides, e.g. 256,384,512 (default: the paper's "
                    "three scales for the run's image size)")  # fmt: skip
    sp.add_argument("--checkpoint", choices=["last", "best"], default="last")
    sp.add_argument("--workers", type=int, default=2)
    sp.add_argument("--format", choices=["text", "json"], default="text")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("predict", help="the top-5 classes of images, with probabilities")
    sp.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT")
    sp.add_argument("images", nargs="+", metavar="IMAGE")
    sp.add_argument("--checkpoint", choices=["last", "best"], default="last")
    sp.add_argument("--top", type=_positive, default=5)
    sp.set_defaults(func=cmd_predict)

    sp = sub.add_parser("tour", help="the lecture's networks, checked, and AlexNet trained for a minute")
    sp.add_argument("--no-train", action="store_true", help="skip the one-minute training at the end")
    sp.set_defaults(func=cmd_tour)
    return p


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
