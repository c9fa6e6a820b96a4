"""Running a sweep: trials in, one Parquet part and one tracked run per trial out.

Pure orchestration against three small contracts (results sink, tracker, executor), so the
logic runs the same in-process and on Ray; the adapters in :mod:`sweeper.adapters` implement
them for Parquet, MLflow and Ray Tune.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd

from .errors import SweeperInputError
from .landscape_metrics import LandscapeConfig
from .measure import measure
from .regions import classify
from .space import SearchSpace, Trial, point_id

CONFIG_COLUMNS = ("sweep", "trial_id", "point_id")


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
    stamp its rows with the trial's tracking run id (published by the driver meanwhile, see
    :meth:`ResultSink.publish_run_ids`), write its part; returns the part's location."""
    sink.run_id(trial.trial_id, wait=False)  # tracking already failed: stop before computing
    frame = trial_frame(space, trial, device)
    frame.insert(3, "mlflow_run_id", sink.run_id(trial.trial_id))
    return sink.write(trial.trial_id, frame)


class ResultSink(ABC):
    """Where trial results land; picklable, so workers can write to it directly.

    Invariants: ``write`` is atomic (a part is complete or absent, never half-written);
    writing a trial again replaces its part, so retries never duplicate a point;
    ``completed`` lists only trials whose part is durably written.
    """

    @abstractmethod
    def completed(self) -> set[str]:
        """Trial ids with a finished part."""

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
    def publish_run_ids(self, run_ids: dict[str, str], error: str | None = None) -> None:
        """Driver side: make the trials' tracking run ids (all opened so far) visible to
        workers, replacing what was published before; ``error`` tells them tracking failed.
        Trials start before their runs exist, so a slow tracker never holds up computing."""

    @abstractmethod
    def run_id(self, trial_id: str, wait: bool = True) -> str | None:
        """Worker side: the trial's published run id, waiting for it unless ``wait`` is
        False (then None when not yet published).

        Raises:
            RuntimeError: tracking failed before this trial's run was opened, or no id came
                in time.
        """


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


def run_sweep(space: SearchSpace, sink: ResultSink, tracker: Tracker, executor: Executor,
              *, resume: bool = False, max_failures: int = 0,
              progress: Progress | None = None) -> dict[str, int]:
    """Run every trial not yet completed; returns counts (trials, skipped, done, failed).

    Without ``resume`` an output that already holds parts is refused, so two sweeps never mix.
    """
    trials = space.trials()
    done_before = sink.completed() & {t.trial_id for t in trials}
    if done_before and not resume:
        raise SweeperInputError(f"the output already holds {len(done_before)} finished trials "
                                "of this sweep; pass --resume to finish it, or choose --out")
    pending = [t for t in trials if t.trial_id not in done_before]
    progress = progress or Progress(space.n_points)
    progress.update(points=sum(t.n_points for t in trials if t.trial_id in done_before))
    counts = {"trials": len(trials), "skipped": len(done_before), "done": 0, "failed": 0}
    status = "FAILED"

    stop = threading.Event()

    def open_runs() -> None:
        opened: dict[str, str] = {}
        try:
            tracker.start_sweep(space)
            last = -math.inf
            for i, trial in enumerate(pending):
                if stop.is_set():
                    return
                opened[trial.trial_id] = tracker.trial_started(trial)
                # Published as they open (the first at once, then at most twice a second):
                # early trials need not wait for the last run.
                if i == 0 or i == len(pending) - 1 or time.monotonic() - last >= 0.5:
                    sink.publish_run_ids(opened)
                    last = time.monotonic()
        except BaseException as exc:
            sink.publish_run_ids(opened, error=f"{type(exc).__name__}: {exc}")
            raise
        # A driver killed between a worker's write and its own logging leaves a finished part
        # whose run is not FINISHED: log it now from the part, without recomputing.
        for trial in trials:
            if stop.is_set():
                return
            if trial.trial_id in done_before and not tracker.is_finished(trial):
                tracker.trial_started(trial)
                location = sink.location(trial.trial_id)
                tracker.trial_finished(trial, sink.read(location), location)

    # The tracker has one thread of its own for the whole sweep, and it alone writes. Its
    # set-up (imports, schema, runs) overlaps the executor's start-up and the first trials;
    # each finished trial is logged while others still compute and while the executor stops.
    pool = ThreadPoolExecutor(1, thread_name_prefix="tracker")
    logged: list[Future] = []

    def log_done(trial: Trial, location: str) -> None:
        tracker.trial_finished(trial, sink.read(location), location)

    def on_done(trial: Trial, location: str) -> None:
        logged.append(pool.submit(log_done, trial, location))
        counts["done"] += 1
        progress.update(points=trial.n_points)

    def on_error(trial: Trial, message: str) -> None:
        logged.append(pool.submit(tracker.trial_failed, trial, message))
        counts["failed"] += 1
        progress.update(failed=1)

    try:
        sink.publish_run_ids({})  # before any worker reads: no ids of an earlier driver
        opened = pool.submit(open_runs)
        try:
            if pending:
                executor.start()
                executor.run(space, pending, sink, on_done, on_error, max_failures)
        except BaseException:
            stop.set()  # the tracker thread stops opening runs early
            raise
        executor.stop()  # before waiting for the tracker: the two overlap
        opened.result()  # a tracking error fails the sweep
        for future in logged:
            future.result()
        status = "FINISHED" if counts["failed"] == 0 else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            executor.stop()
        finally:
            # Ctrl-C drops the trials not yet logged: their parts are on disk and a resume
            # logs them; end_sweep marks their runs KILLED meanwhile.
            pool.shutdown(wait=True, cancel_futures=status == "KILLED")
            tracker.end_sweep(status)
            progress.close()
    return counts
