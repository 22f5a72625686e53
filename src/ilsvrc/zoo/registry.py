"""One registry for every network: a name maps to a function that returns its `Network` spec."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from functools import cache

from ..errors import UnknownModelError
from ..spec import Network

_REGISTRY: dict[str, Callable[[], Network]] = {}


def register(name: str, build: Callable[[], Network]) -> None:
    """Add a network under `name`; `build()` must return a Network called `name`."""
    if name in _REGISTRY:
        raise ValueError(f"network {name!r} registered twice")
    _REGISTRY[name] = build


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard (`'vgg*'`, `'*-bn'`), in registration order."""
    _load()
    return [name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern)]


@cache
def get_spec(name: str) -> Network:
    """The spec of a registered network; an unknown name raises UnknownModelError with suggestions."""
    _load()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownModelError(
            f"There is no network called {name!r}.{hint} `ilsvrc list` shows all "
            f"{len(_REGISTRY)} names; a path to a .yaml or .json spec file works too."
        )
    net = _REGISTRY[name]()
    assert net.name == name, (net.name, name)
    return net


def _load() -> None:
    """Import the family modules, which register their networks (once)."""
    for family in ("alexnet", "zfnet", "vgg"):  # the order `ilsvrc list` shows
        importlib.import_module(f"{__package__}.{family}")
