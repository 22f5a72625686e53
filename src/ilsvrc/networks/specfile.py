"""Networks written as YAML or JSON files, read into the same `Network` the zoo builds.

    name: tiny
    input: [3, 32, 32]            # channels, height, width
    layers:
      - {type: conv, name: conv1, out_channels: 16, kernel: 3, padding: 1}
      - {type: relu}              # unnamed layers are named by type and position: relu1
      - {type: maxpool, kernel: 2}
      - {type: flatten}
      - {type: linear, name: fc, out_features: 10}

The field names are those of the node types in `ilsvrc.spec` (`ilsvrc spec alexnet` prints a built-in
network in this form). Joins: `{type: block, name, layers: [...]}`, `{type: concat, name, branches:
[{name, layers: [...]}, ...]}`, `{type: residual, name, body: {layers: [...]}, shortcut: {layers:
[...]}}` (no shortcut: identity). YAML is read with `yaml.safe_load`: tags that would build Python
objects are refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import IlsvrcError, SpecError, SpecFileError, shown
from . import looks_like_file
from .spec import MAX_SIZE, NODE_TYPES, Aux, Block, Concat, Layer, ModelInfo, Network, Residual

MAX_DEPTH = 64  # lists and mappings inside one another; a ResNet spec needs about 8
MAX_VALUES = 200_000  # values once YAML aliases are expanded; vgg19 has about 300


def load(path: str | Path) -> Network:
    """Read a spec file (.yaml, .yml or .json). Raises SpecFileError / SpecError with the reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is fine
    except FileNotFoundError:
        raise SpecFileError(f"Spec file {path} does not exist; check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecFileError(f"Spec file {path} cannot be read: {exc}.") from None
    return loads(text, source=str(path), json_format=path.suffix.lower() == ".json")


def loads(text: str, source: str = "<spec>", json_format: bool = False) -> Network:
    """Parse a spec from YAML (or JSON, which YAML also reads) text."""
    if json_format:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecFileError(
                f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from None
        except RecursionError:
            raise _too_deep(source) from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except RecursionError:
            raise _too_deep(source) from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecFileError(
                f"{source} is not valid YAML{at}: {problem}. (Tags that build Python objects, such "
                "as !!python/object, are refused: a spec is plain data.)"
            ) from None
    return from_dict(data, source)


def _too_deep(source: str) -> SpecFileError:
    return SpecFileError(
        f"{source} nests lists or mappings more than {MAX_DEPTH} deep; a network spec needs far "
        "fewer levels (write repeated stages one after another)."
    )


def check_size(data: Any, source: str = "<spec>") -> int:
    """The number of values in `data` with YAML aliases expanded, refusing more than MAX_VALUES, nesting
    deeper than MAX_DEPTH, and a structure that contains itself. Shared parts are counted once per use
    but visited once, so a "billion laughs" file is refused in time proportional to its length."""
    seen: dict[int, int] = {}
    open_: set[int] = set()

    def count(value: Any, depth: int) -> int:
        if not isinstance(value, (list, dict)):
            return 1
        key = id(value)
        if key in seen:
            return seen[key]
        if depth > MAX_DEPTH:
            raise _too_deep(source)
        if key in open_:
            raise SpecFileError(f"{source} contains itself (a YAML alias inside its own anchor).")
        open_.add(key)
        total = 1
        for item in value.values() if isinstance(value, dict) else value:
            total += count(item, depth + 1)
            if total > MAX_VALUES:
                raise SpecFileError(
                    f"{source} holds more than {MAX_VALUES:,} values once its YAML aliases (*name) are "
                    "expanded; a network spec is far smaller. Write the layers out, or build large "
                    "networks in Python."
                )
        open_.discard(key)
        seen[key] = total
        return total

    return count(data, 0)


def from_dict(data: Any, source: str = "<spec>") -> Network:
    """A Network from plain data (a parsed spec file). Raises SpecFileError / SpecError for bad data."""
    check_size(data, source)
    try:
        return _mark_edited(_network(data, source), source)
    except IlsvrcError as exc:  # every message names the file (the node types' own checks do not know it)
        if str(exc).startswith(source):
            raise
        raise type(exc)(f"{source}: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:  # a value of the wrong kind deep inside
        raise SpecFileError(f"{source}: {shown(str(exc))}") from None


def _network(data: Any, source: str) -> Network:
    if not isinstance(data, dict):
        raise SpecFileError(
            f"{source} must hold a mapping with 'name', 'input' and 'layers', not {type(data).__name__}."
        )
    unknown = set(data) - {"name", "input", "layers", "info"}
    if unknown:
        raise SpecFileError(
            f"{source}: unknown top-level key(s) {', '.join(sorted(map(shown, unknown)))}; a spec has "
            "name, input, layers and optionally info."
        )
    for key in ("input", "layers"):
        if key not in data:
            raise SpecFileError(f"{source} has no '{key}'; see `ilsvrc spec alexnet` for an example.")
    name = data.get("name") or Path(source).stem
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        name = str(name)  # `name: 2012` in YAML
    if not isinstance(name, str):
        raise SpecFileError(f"{source}: name must be text, got {shown(name)}.")
    shape = data["input"]
    if isinstance(shape, str):
        shape = parse_shape(shape)
    if not isinstance(shape, list) or len(shape) != 3:
        raise SpecFileError(f"{source}: input must be [channels, height, width], got {shown(shape)}.")
    layers = _layers(data["layers"], f"{source}: layers")
    info = _info(data.get("info") or {}, source)
    return Network(name, tuple(shape), layers, info)


def _mark_edited(network: Network, source: str) -> Network:
    """`network`, its info rewritten when it is an edited copy of a zoo network.

    `ilsvrc spec alexnet > my.yaml` writes alexnet's info (title, paper, ILSVRC result) into the file. If
    the layers or the input are then changed, that info would claim things no longer true. A network
    whose info is exactly that of a zoo network but whose layers or input differ from it gets the title
    "<title> (edited copy of <zoo name>)", loses the result (the original's, not its own) and says so in
    its notes; the paper stays (the design comes from it). Info the user wrote or changed is theirs and
    is kept as it is; an unedited copy keeps the original's info.
    """
    from .zoo import get_spec, list_models

    same_info = [get_spec(n) for n in list_models() if get_spec(n).info == network.info]
    if not same_info or network.info == ModelInfo():
        return network
    if any(z.layers == network.layers and z.input_shape == network.input_shape for z in same_info):
        return network
    original = next((z for z in same_info if z.name == network.name), same_info[0])
    info = original.info
    result = f" Its paper's result ({info.result}) is the original's." if info.result else ""
    notes = (
        f"Edited copy of the built-in {original.name}: its layers or input differ from it "
        f"(`ilsvrc compare {original.name} {source if looks_like_file(source) else 'FILE'}` shows "
        f"how).{result}"
    )
    edited = dataclasses.replace(
        info, title=f"{info.title or original.name} (edited copy of {original.name})", result="", notes=notes
    )
    return dataclasses.replace(network, info=edited)


def _info(data: Any, source: str) -> ModelInfo:
    fields = {f.name for f in dataclasses.fields(ModelInfo)}
    if not isinstance(data, dict) or set(data) - fields:
        raise SpecFileError(f"{source}: info must be a mapping of {', '.join(sorted(fields))}.")
    return ModelInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _layers(items: Any, where: str) -> tuple[Layer, ...]:
    if not isinstance(items, list) or not items:
        raise SpecFileError(f"{where} must be a non-empty list of layers.")
    counts: dict[str, int] = {}
    return tuple(_layer(item, f"{where}[{i}]", counts) for i, item in enumerate(items))


def _layer(item: Any, where: str, counts: dict[str, int]) -> Layer:
    if not isinstance(item, dict) or "type" not in item:
        raise SpecFileError(f"{where} must be a mapping with a 'type', e.g. {{type: conv, ...}}.")
    kind = item["type"]
    cls = NODE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        import difflib

        close = difflib.get_close_matches(kind, NODE_TYPES, n=1) if isinstance(kind, str) else []
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SpecError(
            f"{where}: unknown layer type {shown(kind)}.{hint} Known types: {', '.join(NODE_TYPES)}."
        )
    counts[kind] = counts.get(kind, 0) + 1
    values = {k: v for k, v in item.items() if k != "type"}
    values.setdefault("name", f"{kind}{counts[kind]}")
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - allowed
    if unknown:
        raise SpecError(
            f"{where} ({kind}): unknown field(s) {', '.join(sorted(map(shown, unknown)))}; "
            f"a {kind} takes {', '.join(sorted(allowed))}."
        )
    label = f"{where} ({kind} {shown(values['name'])})"
    if cls in (Block, Aux):
        values["layers"] = _layers(values.get("layers"), f"{label}.layers")
    elif cls is Concat:
        branches = values.get("branches")
        if not isinstance(branches, list) or not branches:
            raise SpecFileError(f"{label}: branches must be a list of {{name, layers}} mappings.")
        values["branches"] = tuple(
            _block(b, f"{label}.branches[{i}]", f"branch{i + 1}") for i, b in enumerate(branches)
        )
    elif cls is Residual:
        values["body"] = _block(values.get("body"), f"{label}.body", "body")
        if values.get("shortcut") is not None:
            values["shortcut"] = _block(values["shortcut"], f"{label}.shortcut", "shortcut")
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    try:
        return cls(**values)
    except TypeError as exc:
        raise SpecError(f"{label}: {shown(str(exc))}.") from None
    except SpecError as exc:  # a bad value, refused by the node type: say where it is in the file
        raise SpecError(f"{label}: {exc}") from None


def _block(data: Any, where: str, default_name: str) -> Block:
    if isinstance(data, list):
        data = {"layers": data}
    if not isinstance(data, dict) or set(data) - {"name", "layers", "type"}:
        raise SpecFileError(f"{where} must be a mapping with 'layers' (and optionally 'name').")
    return Block(data.get("name", default_name), _layers(data.get("layers"), f"{where}.layers"))


def dumps(network: Network, fmt: str = "yaml") -> str:
    """The spec as YAML or JSON text that `loads` reads back to an equal Network."""
    data = network.to_dict()
    info = {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(network.info).items()}  # fmt: skip
    data["info"] = info
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def parse_shape(text: str) -> list[int]:
    """'3x224x224' -> [3, 224, 224]; '224' -> [3, 224, 224]; '224x224' -> [3, 224, 224]."""
    parts = str(text).lower().replace("×", "x").replace(",", "x").split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise SpecError(
            f"Input size {shown(text)} is not understood; write channels x height x width, "
            "e.g. 3x224x224 (or 224 for a square RGB image)."
        ) from None
    if len(numbers) > 3:
        raise SpecError(
            f"Input size {shown(text)} has {len(numbers)} numbers; write channels x height x width, "
            "e.g. 3x224x224 (or 224 for a square RGB image)."
        )
    names = {1: ["height and width"], 2: ["height", "width"], 3: ["channels", "height", "width"]}[
        len(numbers)
    ]
    for what, value in zip(names, numbers):
        if value <= 0:
            raise SpecError(
                f"Input size {shown(text)}: {value} is not a positive size (the {what}); every number "
                "must be 1 or more, e.g. 3x224x224 (or 224 for a square RGB image)."
            )
        if value > MAX_SIZE:
            raise SpecError(
                f"Input size {shown(text)}: the {what} {value:,} is larger than the largest size torch "
                f"takes ({MAX_SIZE:,})."
            )
    if len(numbers) == 1:
        numbers = [3, numbers[0], numbers[0]]
    elif len(numbers) == 2:
        numbers = [3, *numbers]
    return numbers
