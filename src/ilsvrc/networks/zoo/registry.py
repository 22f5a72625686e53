"""One registry for every network: a name maps to a function that returns its `Network` spec.

A family module registers its networks with the `register` decorator when it is imported; `_load`
imports every module of this package once (a new family is a new file here, nothing else to edit).
Families are listed by the year of their paper (the module's `YEAR`; `ORDER` breaks a tie, as the
lecture tells 2014: VGG, then GoogLeNet), then in registration order.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import re
from collections.abc import Callable
from functools import cache

from ...errors import UnknownModelError
from ..spec import Network

Builder = Callable[[], Network]
_REGISTRY: dict[str, tuple[str, Builder]] = {}  # name -> (family module, builder)
_NOT_FAMILIES = {"registry", "parts"}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: add the network that the decorated function returns under `name`.

    `@register("alexnet")` above `def alexnet() -> Network`; for a family built by one function,
    `register("vgg16")(partial(vgg, "vgg16"))`. The function must return a Network called `name`.
    """

    def add(build: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"network {name!r} registered twice")
        family = getattr(getattr(build, "func", build), "__module__", "")  # a partial: its function's
        _REGISTRY[name] = (family, build)
        return build

    return add


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style wildcard (`'vgg*'`, `'*-bn'`): families by year, then in
    the order each family registers them."""
    return [name for name in _ordered() if fnmatch.fnmatchcase(name, pattern)]


@cache
def get_spec(name: str) -> Network:
    """The spec of a registered network; an unknown name raises UnknownModelError with suggestions."""
    _load(name)
    if name not in _REGISTRY:
        import difflib  # here: only a name that is not there needs it

        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownModelError(
            f"There is no network called {name!r}.{hint} `ilsvrc list` shows all "
            f"{len(_REGISTRY)} names; a path to a .yaml or .json spec file works too."
        )
    net = _REGISTRY[name][1]()
    assert net.name == name, (net.name, name)
    return net


@cache
def _families() -> tuple[str, ...]:
    """Import every family module of the zoo (they register their networks); sorted by YEAR."""
    import pkgutil  # here: one network's family is found by its name (`_load`)

    modules = []
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _NOT_FAMILIES:
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        modules.append((getattr(module, "YEAR", 9999), getattr(module, "ORDER", 0), module.__name__))
    return tuple(name for *_, name in sorted(modules))


def _load(name: str) -> None:
    """Import the family modules that `name` needs: first the one it is named after (resnet152:
    resnet.py, as each family names its networks), the others only if that does not register it
    (plain18 is in resnet.py). A summary of one network then loads one family."""
    stem = re.match(r"[a-z]*", name).group()
    if stem and stem not in _NOT_FAMILIES and importlib.util.find_spec(f"{__package__}.{stem}"):
        importlib.import_module(f"{__package__}.{stem}")
    if name not in _REGISTRY:
        _families()


def _ordered() -> list[str]:
    families = _families()
    rank = {family: i for i, family in enumerate(families)}
    order = {name: i for i, name in enumerate(_REGISTRY)}  # registration order within a family
    return sorted(_REGISTRY, key=lambda n: (rank.get(_REGISTRY[n][0], len(rank)), order[n]))
