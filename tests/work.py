"""Work counted, not timed: bounds on what a piece of code does, for tests that used to race the clock.

`count_lines` counts the lines of ilsvrc's own source that a call executes (line events of
`sys.settrace`, in frames whose code lives under src/ilsvrc; other packages run untraced). The count
depends on the code and its input only, never on the machine or its load, so a bound on it is a
test that fails for one reason: the code did more work than it should. Loops inside C (a `repr` of
a nested list, `list.count`) are invisible to it; the tests that guard those run in a child process
under a memory ceiling (test_fuzz.run_isolated) or count calls of their own.

`hang_guard` is a wall-clock alarm kept only so that a hang inside C code ends the test instead of
the suite: it is set far above any honest run (minutes for milliseconds of work) and is never the
check itself.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import ilsvrc

SOURCE = str(Path(ilsvrc.__file__).resolve().parent)
HANG_GUARD = 600.0  # seconds; a hang guard only (see the module docstring), for work of seconds


class TooMuchWork(Exception):
    """Raised inside the traced code when it runs more lines than its budget allows."""


class Hang(Exception):
    """Raised by `hang_guard` when its (generous) alarm goes off."""


class LineCounter:
    """Counts ilsvrc source lines run while active; raises `TooMuchWork` past `limit` (None: no limit)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit is not None else float("inf")
        self.lines = 0
        self.exceeded = ""  # where the limit was passed, if it was
        self._ours: dict[Any, bool] = {}  # code object -> lives under SOURCE

    def _call(self, frame: FrameType, event: str, arg: Any) -> Callable | None:
        code = frame.f_code
        ours = self._ours.get(code)
        if ours is None:
            ours = self._ours[code] = code.co_filename.startswith(SOURCE)
        return self._line if ours else None

    def _line(self, frame: FrameType, event: str, arg: Any) -> Callable:
        if event == "line":
            self.lines += 1
            if self.lines > self.limit:
                self.exceeded = (
                    self.exceeded or f"more than {self.limit:,} lines of ilsvrc run, in {_where(frame)}"
                )
                raise TooMuchWork(self.exceeded)
        return self._line

    @contextlib.contextmanager
    def active(self) -> Iterator[LineCounter]:
        previous = sys.gettrace()
        sys.settrace(self._call)
        try:
            yield self
        finally:
            sys.settrace(previous)


def _where(frame: FrameType) -> str:
    names = []
    while frame is not None and len(names) < 4:
        if frame.f_code.co_filename.startswith(SOURCE):
            names.append(frame.f_code.co_name)
        frame = frame.f_back
    return " < ".join(names) or "?"


def count_lines(fn: Callable[[], Any], limit: int | None = None) -> tuple[int, Any]:
    """(lines of ilsvrc run by fn(), its result); `TooMuchWork` past `limit`."""
    counter = LineCounter(limit)
    with counter.active():
        result = fn()
    return counter.lines, result


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_GUARD) -> Iterator[None]:
    """SIGALRM after `seconds`: a hang guard for C code that no line count sees, never a time budget."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s (a hang guard, far above any honest run)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Hang as exc:  # a fresh one: the interrupted frame may have tb_lineno None (pytest chokes)
        frames = [f.name for f in traceback.extract_tb(exc.__traceback__) if "/ilsvrc/" in f.filename]
        raise Hang(f"{exc}, in {' > '.join(frames[-4:]) or '?'}") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def work_budget(lines: int) -> Iterator[LineCounter]:
    """At most `lines` lines of ilsvrc run inside the block (`TooMuchWork` otherwise), under a hang guard.

    `TooMuchWork` leaves the block even when the traced code caught it (an `except Exception` that
    turns it into an error message of its own, say).
    """
    counter = LineCounter(lines)
    try:
        with hang_guard(), counter.active():
            yield counter
    finally:
        if counter.exceeded:
            raise TooMuchWork(counter.exceeded)  # noqa: B012 (replaces whatever the block raised)
