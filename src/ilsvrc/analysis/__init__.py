"""Analysis without running the model, the second layer: volumes, parameters, multiply-adds, memory,
receptive fields and the formula behind each number (`analyzer`); two networks aligned (`compare`);
tables and exports in text, Markdown, CSV, JSON and LaTeX (`render`). No torch, and nothing printed:
the command line prints what `render` returns.
"""

from __future__ import annotations

from .analyzer import DTYPE_BYTES, LayerStats, Report, Volume, analyze
from .compare import Comparison, compare

__all__ = ["DTYPE_BYTES", "Comparison", "LayerStats", "Report", "Volume", "analyze", "compare"]
