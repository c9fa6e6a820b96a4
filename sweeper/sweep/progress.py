"""The sweep's progress line on stderr."""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """One live line on stderr: points done / total, failed trials, elapsed time, ETA, and
    what the sweep is doing beside computing (``note``: starting workers, opening runs).

    On a terminal the line is redrawn in place, also every second while nothing ends (a long
    trial still shows time passing); elsewhere (a log file, a CI job) at most every
    ``quiet_s`` seconds, each time on a line of its own. Thread-safe: the driver's executor
    thread and the tracking thread both report here.

    Args:
        total_points: the points the sweep plans to measure (``total``, which a caller may
            correct later).
        stream: where the line goes (default: stderr); a terminal if its ``isatty()`` says so.
        quiet_s: the least time between two lines on a stream that is not a terminal.
        clock: seconds from an arbitrary start, for elapsed time and ETA.
        ticker: whether a thread calls :meth:`tick` every ``interval`` seconds; without it
            (a test) the caller calls ``tick`` when it wants time to have passed.
    """

    def __init__(self, total_points: int, stream: TextIO | None = None, quiet_s: float = 30.0,
                 *, clock: Callable[[], float] = time.monotonic, ticker: bool = True):
        self.total, self.done, self.failed = total_points, 0, 0
        self.clock = clock
        self.start = clock()
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 1.0 if self.live else quiet_s
        self.notes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._drawn = -math.inf
        self._stopped = threading.Event()
        self._ticker = None
        if ticker:
            self._ticker = threading.Thread(target=self._tick_until_closed, name="progress",
                                            daemon=True)
            self._ticker.start()

    def line(self) -> str:
        """The line as it reads now."""
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        eta_text = "?" if math.isinf(eta) else f"{eta:.0f}s"
        notes = "".join(f", {text}" for text in self.notes.values())
        return (f"{self.done}/{self.total} points, {self.failed} failed trials, "
                f"{elapsed:.0f}s elapsed, ETA {eta_text}{notes}")

    def update(self, points: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.done += points
            self.failed += failed
            self._draw(force=self.live)

    def note(self, key: str, text: str | None) -> None:
        """Show ``text`` for ``key`` (e.g. "workers", "tracking") until replaced; None
        removes it. On a terminal a changed note is drawn at once; in a log only a note that
        appears or goes is (a count such as "opening runs 120/5000" waits for the next line)."""
        with self._lock:
            if self.notes.get(key) == text:
                return
            shown = key in self.notes
            if text is None:
                self.notes.pop(key, None)
            else:
                self.notes[key] = text
            self._draw(force=self.live or shown != (text is not None))

    def tick(self) -> None:
        """Time passed with nothing reported: a terminal's line is redrawn, a log's only once
        ``quiet_s`` has passed since its last line."""
        with self._lock:
            self._draw(force=self.live)

    def close(self) -> None:
        """Stop the ticker and end the line (notes removed)."""
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()  # no tick after the closing line
        with self._lock:
            self.notes.clear()
            if self.live:
                self.stream.write(f"\r{self.line()}   \n")
            else:
                self.stream.write(self.line() + "\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._drawn < self.interval:
            return
        self._drawn = now
        if self.live:
            self.stream.write(f"\r{self.line()}   ")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def _tick_until_closed(self) -> None:
        while not self._stopped.wait(self.interval):
            self.tick()
