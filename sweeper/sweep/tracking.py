"""Tracking off the critical path: one thread makes every tracker call of a sweep, so setting
up the store and logging each trial overlap the computing, and a tracker that fails stops
tracking, never computing (:class:`TrackingError` says so at the end)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ..space import SearchSpace, Trial
from .contracts import ResultSink, RunIdRegistry, Tracker
from .progress import Progress
from .work import RUN_ID_COLUMN, stamp_run_id

log = logging.getLogger("sweeper")


class TrackingError(RuntimeError):
    """Tracking failed during a sweep. Computing went on without it, so every part that was
    computed is on disk (``counts`` as run_sweep returns them); ``sweeper run --resume``
    logs the missing runs from the parts."""

    def __init__(self, message: str, counts: dict[str, int]):
        super().__init__(message)
        self.counts = counts


class TrackingThread:
    """The sweep's one tracking thread: the tracker is called from here alone (sqlite takes
    one writer), so its set-up and each trial's logging overlap the computing.

    After the first failure no further tracker call is made (against a server that is down
    each would wait out the client's retries); the failure is kept in ``error`` and the
    computing is not held up by it.

    Args:
        tracker: the sweep's tracker.
        sink: where the trials' rows are (read to log them, rewritten to stamp run ids).
        registry: where the opened runs' ids are published to the workers.
        progress: the progress line, told what tracking is doing.
    """

    def __init__(self, tracker: Tracker, sink: ResultSink, registry: RunIdRegistry,
                 progress: Progress):
        self.tracker, self.sink, self.registry = tracker, sink, registry
        self.progress = progress
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tracker")
        self.futures: list[Future] = []
        #: Trial id -> its run's id, for every run this driver opened (or reopened).
        self.trial_runs: dict[str, str] = {}
        self.logged: set[str] = set()
        self.error: str | None = None
        self.stopping = threading.Event()

    def submit(self, task: Callable[..., None], *args) -> None:
        self.futures.append(self.pool.submit(self._guarded, task, *args))

    def _guarded(self, task: Callable[..., None], *args, after_error: bool = False) -> None:
        if self.error is not None and not after_error:
            return
        try:
            task(*args)
        except Exception as exc:
            if self.error is not None:  # a later failure: the first one says why
                return
            self.error = f"{type(exc).__name__}: {exc}"
            self.progress.note("tracking", "tracking failed")
            log.warning("tracking failed (%s); computing goes on, and `--resume` logs the "
                        "runs later", self.error)

    def open_runs(self, space: SearchSpace, pending: list[Trial]) -> None:
        """The parent run, then a run per pending trial, published to the workers as they
        open (the first at once, then at most twice a second)."""
        self.progress.note("tracking", "opening the tracking store")
        self.tracker.start_sweep(space)
        self.open_trial_runs(pending)

    def open_trial_runs(self, pending: list[Trial]) -> None:
        """A run per trial (after ``open_runs``), published as in ``open_runs``."""
        last = -math.inf
        for i, trial in enumerate(pending):
            if self.stopping.is_set():
                return
            self.trial_runs[trial.trial_id] = self.tracker.trial_started(trial)
            if i == 0 or i == len(pending) - 1 or time.monotonic() - last >= 0.5:
                self.registry.publish(self.trial_runs)
                self.progress.note("tracking", f"opening runs {i + 1}/{len(pending)}")
                last = time.monotonic()
        self.progress.note("tracking", "tracking ready")

    def log_finished(self, trial: Trial, location: str) -> None:
        """Log a trial from its part, opening its run if that has not happened yet, and
        write the run id into the part where the worker could not (it had not been
        published when the part was written)."""
        if trial.trial_id in self.logged:
            return
        run_id = self.trial_runs.get(trial.trial_id)
        if run_id is None:
            run_id = self.trial_runs[trial.trial_id] = self.tracker.trial_started(trial)
        frame = self.sink.read(location)
        if not (frame[RUN_ID_COLUMN] == run_id).all():
            stamp_run_id(frame, run_id)
            location = self.sink.write(trial.trial_id, frame)
        self.tracker.trial_finished(trial, frame, location)
        self.logged.add(trial.trial_id)

    def reconcile(self, trials: list[Trial]) -> None:
        """Log finished parts whose runs are not FINISHED (a driver that died, was stopped,
        or lost its tracker between a worker's write and its own logging), never
        recomputing them."""
        for trial in trials:
            if self.stopping.is_set():
                return
            if trial.trial_id not in self.logged and not self.tracker.is_finished(trial):
                self.log_finished(trial, self.sink.materialize(trial.trial_id))

    def log_failed(self, trial: Trial, message: str) -> None:
        if trial.trial_id not in self.trial_runs:
            self.trial_runs[trial.trial_id] = self.tracker.trial_started(trial)
        self.tracker.trial_failed(trial, message)

    def drain(self, cancel: bool = False) -> None:
        """Wait for the queued calls (dropping those not started when ``cancel``)."""
        if cancel:
            self.stopping.set()
            for future in self.futures:
                future.cancel()
        for future in self.futures:
            if not future.cancelled():
                future.result()  # _guarded keeps errors: this only waits
        self.stopping.clear()

    def close(self, status: str) -> None:
        """Close the parent run and any run still open, also after a failure as long as the
        store answers (a down server would only make each call wait out its retries)."""
        if self.error is None or self.tracker.available():
            status = status if self.error is None or status == "KILLED" else "FAILED"
            self.futures.append(self.pool.submit(self._guarded, self.tracker.end_sweep,
                                                 status, after_error=True))
        self.drain()
        self.pool.shutdown(wait=True)
