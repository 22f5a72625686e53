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
