"""ilsvrc: the classic ImageNet (ILSVRC) CNNs as data, analysed exactly and built as torch modules.

`import ilsvrc` does not import torch: the analyzer and the zoo are pure Python. `create_model`,
`from_torchvision` and `from_module` (a torch module in, traced: `ilsvrc.tracing`) load torch on first
use.
"""

from __future__ import annotations

from typing import Any

from .analysis import analyze, compare
from .errors import IlsvrcError, ShapeError, SpecError, SpecFileError, UnknownModelError
from .networks import from_prototxt, get_spec, list_models, load_spec

__version__ = "0.1.0"
__all__ = [
    "IlsvrcError",
    "ShapeError",
    "SpecError",
    "SpecFileError",
    "UnknownModelError",
    "analyze",
    "compare",
    "build",
    "create_model",
    "from_module",
    "from_prototxt",
    "from_torchvision",
    "get_spec",
    "keep_freed_memory",
    "list_models",
    "load_spec",
    "to_torchvision",
]

_TORCH_NAMES = {"create_model", "from_torchvision", "to_torchvision", "build", "keep_freed_memory"}


def __getattr__(name: str) -> Any:
    if name == "from_module":
        from .tracing import from_module

        return from_module
    if name in _TORCH_NAMES:
        from . import nn

        return getattr(nn, name)
    raise AttributeError(f"module 'ilsvrc' has no attribute {name!r}")
