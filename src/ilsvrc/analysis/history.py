"""The history table: each entry of the challenge beside the analysis of the zoo network standing for it.

`history()` analyses each entry's network once, at its default input (one image), exactly as `ilsvrc
summary NAME` does, so the depth, parameters and multiply-adds in the table are the summary's own.
`drops()` says how much each year took off the year before's best error (2012's is the one the lecture
points at). Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..networks import get_spec
from ..networks.history import ENTRIES, Entry
from .analyzer import Report, analyze


@dataclass(frozen=True)
class HistoryRow:
    entry: Entry
    report: Report | None  # None for the entries before the deep era

    @property
    def depth(self) -> int | None:
        """Layers with weights along the longest path, the lecture's count (8, 8, 19, 22, 152)."""
        return None if self.report is None else self.report.depth

    @property
    def params(self) -> int | None:
        return None if self.report is None else self.report.params

    @property
    def macs(self) -> int | None:
        """Multiply-adds per image at the network's default input, auxiliary classifiers left out."""
        return None if self.report is None else self.report.macs


@dataclass(frozen=True)
class Drop:
    """From one year's best top-5 error to the next year's."""

    year: int
    before: float
    after: float

    @property
    def points(self) -> float:
        return round(self.before - self.after, 2)


def history(entries: Sequence[Entry] = ENTRIES) -> list[HistoryRow]:
    """Each entry with the analysis of its zoo network (None before 2012)."""
    return [
        HistoryRow(e, None if e.model is None else analyze(get_spec(e.model), suggest=False)) for e in entries
    ]


def best_by_year(entries: Sequence[Entry] = ENTRIES) -> dict[int, float]:
    best: dict[int, float] = {}
    for e in entries:
        best[e.year] = min(best.get(e.year, e.top5_error), e.top5_error)
    return dict(sorted(best.items()))


def drops(entries: Sequence[Entry] = ENTRIES) -> list[Drop]:
    """Each year's fall of the best top-5 error from the year before's, in order of years."""
    best = list(best_by_year(entries).items())
    return [Drop(year, before, after) for (_, before), (year, after) in zip(best, best[1:])]


def largest_drop(entries: Sequence[Entry] = ENTRIES) -> Drop:
    """The year of the largest fall: 2012, AlexNet's (25.8 -> 16.4)."""
    return max(drops(entries), key=lambda d: d.points)
