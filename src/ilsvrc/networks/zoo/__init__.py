"""The networks, one module per family, behind one registry."""

from .registry import get_spec, list_models, register

__all__ = ["get_spec", "list_models", "register"]
