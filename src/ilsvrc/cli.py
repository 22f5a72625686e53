"""`ilsvrc <command>`: a thin layer that parses arguments and calls the library.

Exit codes: 0 success, 2 bad input (an unknown model, an impossible configuration, a malformed spec
file, a bad argument), with a one-paragraph message and no traceback (`--debug` shows one).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def cmd_tour(args: argparse.Namespace) -> int:
    bar = "=" * 100
    _emit(f"{bar}\n1. The zoo: every network as data (`ilsvrc list`)\n{bar}\n")
    cmd_list(argparse.Namespace(pattern="*", format="text"))
    _emit(f"\n{bar}\n2. ZFNet set against AlexNet, as the lecture does "
          f"(`ilsvrc compare zfnet-lecture alexnet-lecture`)\n{bar}\n")  # fmt: skip
    ns = argparse.Namespace(a="zfnet-lecture", b="alexnet-lecture", input=None, batch=1,
                            dtype="float32", format="text")  # fmt: skip
    cmd_compare(ns)
    _emit(f"\n{bar}\n3. The lecture's AlexNet, layer by layer, with the formula behind each number "
          f"(`ilsvrc summary alexnet-lecture --derive`)\n{bar}\n")  # fmt: skip
    ns = argparse.Namespace(model="alexnet-lecture", input=None, batch=1, dtype="float32",
                            derive=True, strict=False, format="text")  # fmt: skip
    return cmd_summary(ns)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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

    sp = sub.add_parser("tour", help="the lecture's networks, checked (the README's first command)")
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
        print(f"ilsvrc: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ilsvrc summary vgg16 | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
