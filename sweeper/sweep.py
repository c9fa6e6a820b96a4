"""Running a sweep: trials in, one Parquet part and one tracked run per trial out.

Pure orchestration against three small contracts (results sink, tracker, executor), so the
logic runs the same in-process and on Ray; the adapters in :mod:`sweeper.adapters` implement
them for Parquet, MLflow and Ray Tune.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd

from .errors import SweeperInputError
from .interrupt import SweepInterrupted
from .landscape_metrics import LandscapeConfig
from .measure import measure
from .regions import classify
from .space import SearchSpace, Trial, point_id

CONFIG_COLUMNS = ("sweep", "trial_id", "point_id")
log = logging.getLogger("sweeper")


def trial_frame(space: SearchSpace, trial: Trial, device: str | None = None) -> pd.DataFrame:
    """Measure every point of one trial (its vectorised axes as one batch).

    Returns the measure() rows plus ``sweep``, ``trial_id``, ``point_id`` and ``region``
    (classified with the space's rules) columns.
    """
    config = trial.config

    def values(axis: str) -> list:
        return list(trial.vectorized[axis]) if axis in trial.vectorized else [config[axis]]

    frame = measure(space.cell, config["hidden_size"], task=space.task,
                    task_params=space.task_params, recurrent_scale=values("recurrent_scale"),
                    input_scale=values("input_scale"), seed=values("seed"),
                    seq_len=config["seq_len"], metrics=space.metrics, device=device,
                    landscape=LandscapeConfig(**space.landscape))
    ids = [point_id(trial, {"recurrent_scale": r, "input_scale": a, "seed": s,
                            "seq_len": config["seq_len"], "hidden_size": config["hidden_size"]})
           for r, a, s in zip(frame.recurrent_scale, frame.input_scale, frame.seed,
                              strict=True)]
    frame.insert(0, "point_id", ids)
    frame.insert(0, "trial_id", trial.trial_id)
    frame.insert(0, "sweep", space.name)
    frame.insert(frame.columns.get_loc("status") + 1, "region", classify(frame, space.rules))
    return frame


def compute_part(space: SearchSpace, trial: Trial, sink: ResultSink,
                 device: str | None = None) -> str:
    """The unit of work an executor runs (in-process or on a Ray worker): measure the trial,
    stamp its rows with the trial's tracking run id when the driver has published it (see
    :meth:`ResultSink.publish_run_ids`; null otherwise, filled in by the driver when it logs
    the trial), write its part; returns the part's location. Computing never waits for
    tracking."""
    frame = trial_frame(space, trial, device)
    run_id = sink.run_id(trial.trial_id)
    frame.insert(3, "mlflow_run_id", pd.Series([run_id] * len(frame), dtype="str",
                                               index=frame.index))
    return sink.write(trial.trial_id, frame)


class ResultSink(ABC):
    """Where trial results land; picklable, so workers can write to it directly.

    Invariants: ``write`` is atomic (a part is complete or absent, never half-written);
    writing a trial again replaces its part, so retries never duplicate a point;
    ``completed`` lists only trials whose part is durably written.
    """

    @abstractmethod
    def completed(self, expected: Mapping[str, int]) -> set[str]:
        """The trial ids among ``expected`` (trial id -> number of points) whose part is
        durably written and verified (readable, ``n`` rows, its own trial id); a part that
        fails verification is moved aside with a warning and does not count, so a resume
        computes it again."""

    @abstractmethod
    def write(self, trial_id: str, frame: pd.DataFrame) -> str:
        """Store one trial's rows; returns where they are."""

    @abstractmethod
    def read(self, location: str) -> pd.DataFrame:
        """The rows stored at ``location``."""

    @abstractmethod
    def location(self, trial_id: str) -> str:
        """Where a completed trial's rows are."""

    @abstractmethod
    def publish_run_ids(self, run_ids: dict[str, str]) -> None:
        """Driver side: make the trials' tracking run ids (all opened so far) visible to
        workers, replacing what was published before."""

    @abstractmethod
    def run_id(self, trial_id: str) -> str | None:
        """Worker side: the trial's published run id, or None when it is not published yet
        (tracking is slow or down); never waits."""


class Tracker(ABC):
    """Experiment tracking, called from the driver only (one writer, as sqlite needs).

    Invariants: a retried or resumed trial reuses its run; after ``end_sweep`` no run of the
    sweep is left RUNNING.
    """

    @abstractmethod
    def start_sweep(self, space: SearchSpace) -> str:
        """Open (or reopen, on resume) the sweep's parent run; returns its id."""

    @abstractmethod
    def trial_started(self, trial: Trial) -> str:
        """Open (or reopen) the trial's child run; returns its id."""

    @abstractmethod
    def trial_finished(self, trial: Trial, frame: pd.DataFrame, location: str) -> None:
        """Log the trial's metrics and artifact, and close its run as FINISHED."""

    @abstractmethod
    def is_finished(self, trial: Trial) -> bool:
        """Whether the trial's run exists and is FINISHED (after ``start_sweep``)."""

    @abstractmethod
    def trial_failed(self, trial: Trial, error: str) -> None:
        """Close the trial's run as FAILED."""

    @abstractmethod
    def end_sweep(self, status: str) -> None:
        """Close the parent run (FINISHED, FAILED or KILLED) and any run still open."""

    def available(self) -> bool:
        """Whether the tracking store answers now; cheap (seconds at most). After a failure
        the sweep closes its runs only if it does."""
        return True


class Executor(ABC):
    """Runs ``compute_part`` for each trial and calls, in the driver, ``on_done(trial,
    location)`` or ``on_error(trial, message)``; a failing trial is retried up to
    ``max_failures`` times before it counts as failed.

    ``start`` brings up workers ahead of ``run``; the driver calls it in its main thread while
    the tracker sets up in another, so the two fixed costs overlap. ``run`` must work
    whether or not ``start`` was called; ``stop`` is always called at the end of a sweep.
    """

    def start(self) -> None:  # noqa: B027  (an optional hook: most executors need none)
        """Bring up workers (optional; the in-process executor has none)."""

    def stop(self) -> None:  # noqa: B027  (an optional hook: most executors need none)
        """Release what ``start`` or ``run`` brought up; safe to call more than once."""

    @abstractmethod
    def run(self, space: SearchSpace, trials: list[Trial], sink: ResultSink,
            on_done: Callable[[Trial, str], None], on_error: Callable[[Trial, str], None],
            max_failures: int) -> None: ...


class LocalExecutor(Executor):
    """In-process, one trial after another: the reference the Ray executor must match."""

    def __init__(self, device: str | None = None):
        self.device = device

    def run(self, space, trials, sink, on_done, on_error, max_failures):
        for trial in trials:
            for attempt in range(max_failures + 1):
                try:
                    location = compute_part(space, trial, sink, self.device)
                except SweeperInputError:
                    raise
                except Exception as exc:  # a failed trial is recorded, the sweep goes on
                    if attempt == max_failures:
                        on_error(trial, f"{type(exc).__name__}: {exc}")
                    continue
                on_done(trial, location)
                break


class Progress:
    """One live line: points done / total, failures, elapsed and ETA (stderr)."""

    def __init__(self, total_points: int, stream=None):
        self.total, self.done, self.failed = total_points, 0, 0
        self.start = time.monotonic()
        self.stream = stream or sys.stderr

    def update(self, points: int = 0, failed: int = 0) -> None:
        self.done += points
        self.failed += failed
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        eta_text = "?" if math.isinf(eta) else f"{eta:.0f}s"
        self.stream.write(f"\r{self.done}/{self.total} points, {self.failed} failed trials, "
                          f"{elapsed:.0f}s elapsed, ETA {eta_text}   ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class TrackingError(RuntimeError):
    """Tracking failed during a sweep. Computing went on without it, so every part that was
    computed is on disk (``counts`` as run_sweep returns them); ``sweeper run --resume``
    logs the missing runs from the parts."""

    def __init__(self, message: str, counts: dict[str, int]):
        super().__init__(message)
        self.counts = counts


class _TrackingThread:
    """The sweep's one tracking thread: the tracker is called from here alone (sqlite takes
    one writer), so its set-up and each trial's logging overlap the computing.

    After the first failure no further tracker call is made (against a server that is down
    each would wait out the client's retries); the failure is kept in ``error`` and the
    computing is not held up by it.
    """

    def __init__(self, tracker: Tracker, sink: ResultSink):
        self.tracker, self.sink = tracker, sink
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tracker")
        self.futures: list[Future] = []
        self.run_ids: dict[str, str] = {}
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
            log.warning("tracking failed (%s); computing goes on, and `--resume` logs the "
                        "runs later", self.error)

    def open_runs(self, space: SearchSpace, pending: list[Trial]) -> None:
        """The parent run, then a run per pending trial, published to the workers as they
        open (the first at once, then at most twice a second)."""
        self.tracker.start_sweep(space)
        last = -math.inf
        for i, trial in enumerate(pending):
            if self.stopping.is_set():
                return
            self.run_ids[trial.trial_id] = self.tracker.trial_started(trial)
            if i == 0 or i == len(pending) - 1 or time.monotonic() - last >= 0.5:
                self.sink.publish_run_ids(dict(self.run_ids))
                last = time.monotonic()

    def log_finished(self, trial: Trial, location: str) -> None:
        """Log a trial from its part, opening its run if that has not happened yet, and
        write the run id into the part where the worker could not (it had not been
        published when the part was written)."""
        if trial.trial_id in self.logged:
            return
        run_id = self.run_ids.get(trial.trial_id)
        if run_id is None:
            run_id = self.run_ids[trial.trial_id] = self.tracker.trial_started(trial)
        frame = self.sink.read(location)
        if not (frame["mlflow_run_id"] == run_id).all():
            frame["mlflow_run_id"] = pd.Series([run_id] * len(frame), dtype="str",
                                               index=frame.index)
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
                self.log_finished(trial, self.sink.location(trial.trial_id))

    def log_failed(self, trial: Trial, message: str) -> None:
        if trial.trial_id not in self.run_ids:
            self.run_ids[trial.trial_id] = self.tracker.trial_started(trial)
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


def run_sweep(space: SearchSpace, sink: ResultSink, tracker: Tracker, executor: Executor,
              *, resume: bool = False, max_failures: int = 0,
              progress: Progress | None = None) -> dict[str, int]:
    """Run every trial not yet completed; returns counts (trials, skipped, done, failed).

    Without ``resume`` an output that already holds parts is refused, so two sweeps never mix.

    Raises:
        SweeperInputError: the output holds parts and ``resume`` is False.
        SweepInterrupted: a KeyboardInterrupt (Ctrl-C, or SIGINT/SIGTERM turned into
            :class:`Interrupted`) stopped it; the executor was stopped, finished parts are
            logged FINISHED and the other runs KILLED.
        TrackingError: tracking failed; every trial was still computed and written.
    """
    trials = space.trials()
    expected = {t.trial_id: t.n_points for t in trials}
    done_before = sink.completed(expected)
    if done_before and not resume:
        raise SweeperInputError(f"the output already holds {len(done_before)} finished trials "
                                "of this sweep; pass --resume to finish it, or choose --out")
    pending = [t for t in trials if t.trial_id not in done_before]
    progress = progress or Progress(space.n_points)
    progress.update(points=sum(t.n_points for t in trials if t.trial_id in done_before))
    counts = {"trials": len(trials), "skipped": len(done_before), "done": 0, "failed": 0}
    tracking = _TrackingThread(tracker, sink)

    def on_done(trial: Trial, location: str) -> None:
        tracking.submit(tracking.log_finished, trial, location)
        counts["done"] += 1
        progress.update(points=trial.n_points)

    def on_error(trial: Trial, message: str) -> None:
        log.error("trial %s failed: %s", trial.trial_id, message)
        tracking.submit(tracking.log_failed, trial, message)
        counts["failed"] += 1
        progress.update(failed=1)

    status = "FAILED"
    try:
        sink.publish_run_ids({})  # before any worker reads: no ids of an earlier driver
        tracking.submit(tracking.open_runs, space, pending)
        tracking.submit(tracking.reconcile, [t for t in trials if t.trial_id in done_before])
        if pending:
            executor.start()
            executor.run(space, pending, sink, on_done, on_error, max_failures)
        executor.stop()  # before waiting for the tracker: the two overlap
        tracking.drain()
        status = "FINISHED" if counts["failed"] == 0 else "FAILED"
    except KeyboardInterrupt as exc:
        status = "KILLED"
        signum = getattr(exc, "signum", signal.SIGINT)
        executor.stop()
        tracking.drain(cancel=True)
        # Parts that reached the disk count as done even if the executor never said so.
        on_disk = sink.completed(expected)
        tracking.submit(tracking.reconcile, [t for t in trials if t.trial_id in on_disk])
        tracking.drain()
        raise SweepInterrupted(signum, len(on_disk), len(trials)) from None
    finally:
        try:
            executor.stop()
        finally:
            tracking.close(status)
            progress.close()
    if tracking.error is not None:
        raise TrackingError(f"tracking failed: {tracking.error}; the computed trials' points "
                            "are on disk, and a resume logs their runs without recomputing",
                            counts)
    return counts
