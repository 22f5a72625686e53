"""Networks as data, the bottom layer: the node types (`spec`), spec files (`specfile`), the zoo.

Nothing here imports torch. Every other layer reads networks through this package.
"""

from __future__ import annotations

from pathlib import Path

from .spec import Network, walk
from .specfile import looks_like_file
from .zoo import get_spec, list_models, register

__all__ = ["Network", "get_spec", "list_models", "load_spec", "register", "resolve", "walk"]


def load_spec(path: str | Path) -> Network:
    """A network from a YAML or JSON spec file (`ilsvrc spec alexnet > my.yaml` writes one)."""
    from .specfile import load

    return load(path)


def resolve(name: str | Path) -> Network:
    """A zoo name (`'alexnet'`) or the path of a .yaml/.json spec file, as every command takes it."""
    if isinstance(name, Path) or looks_like_file(name):
        return load_spec(name)
    return get_spec(name)
