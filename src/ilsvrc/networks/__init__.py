"""Networks as data, the bottom layer: the node types (`spec`), spec files (`specfile`), the zoo.

Nothing here imports torch. Every other layer reads networks through this package.
"""

from __future__ import annotations

from pathlib import Path

from .spec import Network, walk
from .zoo import get_spec, list_models, register

__all__ = ["Network", "get_spec", "list_models", "load_spec", "register", "resolve", "walk"]

SUFFIXES = (".yaml", ".yml", ".json")  # what a spec file's name ends with


def looks_like_file(name: str) -> bool:
    """Whether a model argument names a spec file (a .yaml/.yml/.json name, or a path) rather than a
    zoo network. Here rather than in `specfile`, so that a zoo name does not load the file reader."""
    return name.lower().endswith(SUFFIXES) or "/" in name or "\\" in name


def load_spec(path: str | Path) -> Network:
    """A network from a YAML or JSON spec file (`ilsvrc spec alexnet > my.yaml` writes one)."""
    from .specfile import load

    return load(path)


def resolve(name: str | Path) -> Network:
    """A zoo name (`'alexnet'`) or the path of a .yaml/.json spec file, as every command takes it."""
    if isinstance(name, Path) or looks_like_file(name):
        return load_spec(name)
    return get_spec(name)
