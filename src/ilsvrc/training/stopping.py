"""Stopping a run cleanly when asked: SIGTERM (a cluster taking the machine back) or SIGINT (Ctrl-C).

The handler only records the request; the training loop checks it after each step, finishes that
step, writes a checkpoint and exits with a message naming the `--resume` command. A second Ctrl-C
while that happens is also only recorded: the checkpoint is still written completely.
"""

from __future__ import annotations

import signal
from types import FrameType


class StopRequest:
    """A context manager that turns SIGTERM and SIGINT into a flag (in the main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum

    def __enter__(self) -> StopRequest:
        try:
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave the handlers alone
            self._previous.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
