"""Networks as data, the bottom layer: the node types (`spec`), spec files (`specfile`), the zoo.

Nothing here imports torch. Every other layer reads networks through this package.
"""

from __future__ import annotations

from pathlib import Path

from .spec import Network, walk
from .zoo import get_spec, list_models, register

__all__ = ["Network", "from_prototxt", "get_spec", "list_models", "load_spec", "register", "resolve", "walk"]

SUFFIXES = (".yaml", ".yml", ".json", ".prototxt")  # what a spec (or Caffe) file's name ends with


def looks_like_file(name: str) -> bool:
    """Whether a model argument names a file (a .yaml/.yml/.json spec, a Caffe .prototxt, or a path)
    rather than a zoo network. Here rather than in `specfile`, so that a zoo name does not load the
    file reader."""
    return name.lower().endswith(SUFFIXES) or "/" in name or "\\" in name


def load_spec(path: str | Path) -> Network:
    """A network from a YAML or JSON spec file (`ilsvrc spec alexnet > my.yaml` writes one)."""
    from .specfile import load

    return load(path)


def from_prototxt(source: str | Path, *, phase: str = "test") -> Network:
    """A network from a Caffe prototxt (a path, or its text), read without Caffe, for the phase "test"
    (default) or "train" (docs/caffe.md)."""
    from .importers.caffe import from_prototxt as read

    return read(source, phase=phase)


def resolve(name: str | Path, *, phase: str = "test") -> Network:
    """A zoo name (`'alexnet'`), the path of a .yaml/.json spec file or of a Caffe .prototxt (read for
    `phase`), as every command takes it."""
    if isinstance(name, Path) or looks_like_file(name):
        if str(name).lower().endswith(".prototxt"):
            return from_prototxt(name, phase=phase)
        return load_spec(name)
    return get_spec(name)
