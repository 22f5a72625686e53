"""The errors ilsvrc raises on purpose.

Every one carries a message meant for a person: what is wrong, where, and how to fix it. The command
line prints the message and exits with code 2; anything else escaping is a bug.
"""

from __future__ import annotations


class IlsvrcError(Exception):
    """Base class: a user-facing error with a one-paragraph message."""


class SpecError(IlsvrcError):
    """A network spec is malformed: unknown layer type, bad field, duplicate name."""


class ShapeError(IlsvrcError):
    """A layer cannot be applied to the volume it receives (kernel larger than input, size <= 0...)."""


class SpecFileError(IlsvrcError):
    """A YAML/JSON spec file cannot be read or parsed."""


class UnknownModelError(IlsvrcError):
    """A model name that the zoo does not have."""


class StrictModeError(IlsvrcError):
    """A warning (non-integer output size) turned into an error by --strict."""


_SHORT = __import__("reprlib").Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 2, 4, 4, 4
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 60, 40, 60


def shown(value: object) -> str:
    """`repr(value)` cut short, for quoting a user's value in a message whatever its size.

    A YAML file of a few lines can hold a list that repr() would expand to billions of items
    (aliases); messages quote values through this, never with `!r`.
    """
    return _SHORT.repr(value)
