"""Edits of a network from the command line: `--set conv1.kernel=7 --set 'relu*.type=tanh'`.

An edit is `PATTERN.FIELD=VALUE`. PATTERN names layers by their dotted names (`conv1`, `layer3.4.conv1`)
with shell wildcards (`relu*`, `*.conv2`); FIELD is a field of those layers' type (`kernel`, `stride`,
`padding`, `out_channels`, `out_features`, `p`, ...: the names of the spec files, `ilsvrc spec MODEL`
shows them) or `type`, which turns a layer into another type of the same family (`relu` into `tanh` or
`sigmoid`, `maxpool` into `avgpool`), keeping its name and the fields both types have, or, with
`type=none`, takes out a layer that keeps its volume (`norm*.type=none`: AlexNet without LRN). VALUE is read
as a YAML scalar or list: `7`, `0.3`, `true`, `[7, 5]` (or `7x5` for a height x width pair).

Edits apply in the order given, each to the network the previous ones left; the result is checked as
every spec is (a value a layer cannot take is an error naming the layer), and its volumes by the
analyzer when it is used. An edited zoo network keeps its paper but not its result: its title says what
was edited. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError, shown
from .spec import NODE_TYPES, Aux, Block, Concat, Layer, Network, Residual, walk

# types a layer may become, and what it may become of them (containers keep their type)
FAMILIES = (("relu", "tanh", "sigmoid"), ("maxpool", "avgpool"))
# layers that keep their volume may also be taken out: `type=none` (LRN off, no dropout, no activation)
REMOVABLE = ("lrn", "relu", "tanh", "sigmoid", "dropout", "batchnorm")
_PAIR = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$")


@dataclass(frozen=True)
class Edit:
    pattern: str
    field: str
    value: Any
    text: str  # as given

    def __str__(self) -> str:
        return self.text


def parse_edit(text: str) -> Edit:
    """'conv1.kernel=7' -> Edit('conv1', 'kernel', 7)."""
    target, eq, raw = str(text).partition("=")
    pattern, dot, field = target.strip().rpartition(".")
    if not eq or not dot or not pattern or not field or not raw.strip():
        raise SpecError(
            f"The edit {text!r} is not PATTERN.FIELD=VALUE; write e.g. --set conv1.kernel=7, "
            "--set conv3.out_channels=512 or --set 'relu*.type=tanh'."
        )
    return Edit(pattern, field.strip(), _value(raw.strip(), text), str(text))


def _value(raw: str, text: str) -> Any:
    m = _PAIR.match(raw)
    if m:
        return (int(m.group(1)), int(m.group(2)))
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise SpecError(
            f"The value of the edit {text!r} cannot be read; give a number (7, 0.5), true/false, a pair "
            "(7x5 or [7, 5]) or a type name (tanh)."
        ) from None
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        raise SpecError(f"The value of the edit {text!r} is a mapping; give a number, a pair or a name.")
    return value


def apply_edits(network: Network, edits: Sequence[str | Edit]) -> Network:
    """`network` with each edit applied in order; the title says what was edited."""
    parsed = [e if isinstance(e, Edit) else parse_edit(e) for e in edits]
    if not parsed:
        return network
    for edit in parsed:
        names = [name for name, _ in walk(network.layers)]
        hits = [n for n in names if fnmatch.fnmatchcase(n, edit.pattern)]
        if not hits:
            near = difflib.get_close_matches(edit.pattern, names, n=4, cutoff=0.5)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; its layers are {_some(names)}"
            raise SpecError(f"The edit {edit.text!r} names no layer of {network.name}{hint}")
        layers = _rebuild(network.layers, "", edit, set(hits))
        network = dataclasses.replace(network, layers=layers)
    said = ", ".join(e.text for e in parsed)
    info = network.info
    notes = f"Edited with --set {said}." + (
        f" Its paper's result ({info.result}) is the original's." if info.result else ""
    )
    edited = dataclasses.replace(
        info, title=f"{info.title or network.name} (edited: {said})", result="", notes=notes
    )
    return dataclasses.replace(network, info=edited)


def _some(names: list[str]) -> str:
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")


def _rebuild(layers: tuple[Layer, ...], prefix: str, edit: Edit, hits: set[str]) -> tuple[Layer, ...]:
    out = []
    for layer in layers:
        name = prefix + layer.name
        if isinstance(layer, (Block, Aux)):
            layer = dataclasses.replace(layer, layers=_rebuild(layer.layers, name + ".", edit, hits))
        elif isinstance(layer, Concat):
            layer = dataclasses.replace(layer, branches=_rebuild(layer.branches, name + ".", edit, hits))
        elif isinstance(layer, Residual):
            body = _rebuild((layer.body,), name + ".", edit, hits)[0]
            shortcut = _rebuild((layer.shortcut,), name + ".", edit, hits)[0] if layer.shortcut else None
            layer = dataclasses.replace(layer, body=body, shortcut=shortcut)
        if name in hits:
            if edit.field == "type" and str(edit.value).lower() in ("none", "null"):
                if layer.kind not in REMOVABLE:
                    raise SpecError(
                        f"The edit {edit.text!r}: layer {name} ({layer.kind}) changes the volume it passes "
                        f"on, so it cannot be taken out; type=none takes out {', '.join(REMOVABLE)} layers."
                    )
                continue
            layer = _edit_one(layer, name, edit)
        out.append(layer)
    if not out:
        raise SpecError(f"The edit {edit.text!r} would leave {prefix.rstrip('.') or 'the network'} empty.")
    return tuple(out)


def _edit_one(layer: Layer, name: str, edit: Edit) -> Layer:
    if edit.field == "type":
        return _retype(layer, name, edit)
    fields = [f.name for f in dataclasses.fields(layer) if f.name != "name"]
    if edit.field == "name" or edit.field not in fields:
        settable = (
            ", ".join(f for f in fields if f not in ("layers", "branches", "body", "shortcut")) or "none"
        )
        raise SpecError(
            f"The edit {edit.text!r}: layer {name} ({layer.kind}) has no field {edit.field!r} to set; its "
            f"fields are {settable} (and type)."
        )
    try:
        return dataclasses.replace(layer, **{edit.field: edit.value})
    except SpecError as exc:
        raise SpecError(f"The edit {edit.text!r} does not fit layer {name}: {exc}") from None
    except TypeError:
        raise SpecError(
            f"The edit {edit.text!r}: {shown(edit.value)} is not a value for {edit.field}."
        ) from None


def _retype(layer: Layer, name: str, edit: Edit) -> Layer:
    new = str(edit.value).lower()
    family = next((f for f in FAMILIES if layer.kind in f), None)
    if family is None or new not in family:
        choices = f"one of {', '.join(k for k in family if k != layer.kind)}" if family else "nothing else"
        raise SpecError(
            f"The edit {edit.text!r}: layer {name} ({layer.kind}) can become {choices}, not {new!r} "
            "(a type change keeps the layer's place and volume: activations among themselves, max and "
            "average pooling)."
        )
    cls = NODE_TYPES[new]
    keep = {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)}
    allowed = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in keep.items() if k in allowed})
