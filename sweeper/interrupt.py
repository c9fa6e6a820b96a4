"""Stopping a driver on purpose: SIGINT (Ctrl-C) and SIGTERM become one exception, raised in
the main thread, so a sweep cleans up the same way whichever signal ended it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The driver was told to stop by ``signum`` (a KeyboardInterrupt, so code that already
    cleans up on Ctrl-C does so on SIGTERM too).

    ``exit_code`` is the shell's convention for a death by that signal: 130 for SIGINT, 143
    for SIGTERM.
    """

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class SweepInterrupted(Interrupted):
    """A sweep stopped by a signal once it had cleaned up: ``done`` of ``total`` trials have
    their part on disk (a resume computes only the rest)."""

    def __init__(self, signum: int, done: int, total: int):
        super().__init__(signum)
        self.done, self.total = done, total


def _raise(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextmanager
def signals_raise_interrupted() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread
    (SIGTERM would otherwise end the process with no clean-up at all); the previous handlers
    come back afterwards. A no-op outside the main thread, where handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
