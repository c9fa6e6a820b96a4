"""Running a sweep: trials in, one Parquet part and one tracked run per trial out.

Pure orchestration against four small contracts (results sink, run-id registry, tracker,
executor), so the logic runs the same in-process and on Ray; the adapters in
:mod:`sweeper.adapters` implement them for Parquet, a JSON file, MLflow and Ray Tune.

:func:`run_sweep` reads top to bottom: find what is done, start the tracking thread, run the
pending trials on the executor, close the runs. :class:`LocalExecutor` is the in-process
reference every executor must match (``tests/test_executors.py`` holds them to it).
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
from dataclasses import dataclass

import pandas as pd

from .errors import SweeperInputError
from .interrupt import SweepInterrupted
from .refine import cells_of, next_cells
from .regions import classify
from .space import SearchSpace, Trial, point_id, protocol_configs

CONFIG_COLUMNS = ("sweep", "trial_id", "point_id")
log = logging.getLogger("sweeper")


def trial_frame(space: SearchSpace, trial: Trial, device: str | None = None) -> pd.DataFrame:
    """Measure every point of one trial (its vectorised axes as one batch).

    Returns the measure() rows plus ``sweep``, ``trial_id``, ``point_id`` and ``region``
    (classified with the space's rules) columns.
    """
    from .measure import measure  # the numerics (torch), loaded where a trial runs

    config = trial.config

    def values(axis: str) -> list:
        return list(trial.vectorized[axis]) if axis in trial.vectorized else [config[axis]]

    frame = measure(space.cell, config["hidden_size"], task=space.task,
                    task_params=space.task_params, recurrent_scale=values("recurrent_scale"),
                    input_scale=values("input_scale"), seed=values("seed"),
                    seq_len=config["seq_len"], metrics=space.metrics, device=device,
                    **protocol_configs(space))
    ids = [point_id(trial, {"recurrent_scale": r, "input_scale": a, "seed": s,
                            "seq_len": config["seq_len"], "hidden_size": config["hidden_size"]})
           for r, a, s in zip(frame.recurrent_scale, frame.input_scale, frame.seed,
                              strict=True)]
    frame.insert(0, "point_id", ids)
    frame.insert(0, "trial_id", trial.trial_id)
    frame.insert(0, "sweep", space.name)
    frame.insert(frame.columns.get_loc("status") + 1, "region", classify(frame, space.rules))
    return frame


def failure_message(error: BaseException) -> str:
    """How a failed trial is reported, whichever executor ran it: ``"RuntimeError: why"``."""
    return f"{type(error).__name__}: {error}"


class ResultSink(ABC):
    """Where trial results land; picklable, so workers can write to it directly.

    Invariants: ``write`` is atomic (a trial's rows are complete or absent, never
    half-written); writing a trial again supersedes every earlier copy of its rows, so
    retries and compaction never duplicate a point; ``recover`` lists only trials whose
    rows are durably written and verified; ``read(materialize(t))`` is exactly trial t's rows.
    """

    @abstractmethod
    def recover(self, expected: Mapping[str, int]) -> set[str]:
        """Set damaged rows aside, then return the trial ids among ``expected`` (trial id ->
        number of points) whose rows are durably written and verified (readable, ``n`` rows,
        their own trial id). A part that fails verification is moved aside with a warning and
        does not count, so a resume computes it again."""

    @abstractmethod
    def write(self, trial_id: str, frame: pd.DataFrame) -> str:
        """Store one trial's rows; returns where they are."""

    @abstractmethod
    def read(self, location: str) -> pd.DataFrame:
        """The rows stored at ``location``."""

    @abstractmethod
    def materialize(self, trial_id: str) -> str:
        """Make a completed trial's rows one place of their own (a sink that gathers trials
        together copies them out) and return it: what ``read`` takes, and what a tracker
        attaches as the trial's artifact."""


class RunIdRegistry(ABC):
    """The hand-off of tracking run ids from the driver, which opens the runs, to the workers,
    which stamp them on their rows. An optimisation only: a row written before its run id was
    published gets it from the driver when the driver logs the trial.

    Invariants: ``publish`` replaces everything published before (a new driver forgets an
    earlier one's ids) and is atomic for readers; ``lookup`` never waits and answers None
    for a trial not published yet. Picklable; only the driver publishes.
    """

    @abstractmethod
    def publish(self, run_ids: Mapping[str, str]) -> None:
        """Driver side: make these run ids (trial id -> run id) the published ones."""

    @abstractmethod
    def lookup(self, trial_id: str) -> str | None:
        """Worker side: the trial's published run id, or None."""


class RoundLog(ABC):
    """The trials of a refined sweep's rounds as they were proposed: what the sweep is made
    of, for a resume (a killed round's trials run again as they were) and for aggregation.

    Invariants: ``record`` is atomic and durable before the round's trials run; ``rounds``
    returns what was recorded, in order.
    """

    @abstractmethod
    def rounds(self) -> list[list[Trial]]:
        """Every recorded round's trials, round 0 first."""

    @abstractmethod
    def record(self, index: int, trials: list[Trial]) -> None:
        """Record round ``index``; rounds from ``index`` on recorded before are dropped."""


class RoundsInProcess(RoundLog):
    """Rounds in the driver's memory (a sweep that need not be resumed)."""

    def __init__(self) -> None:
        self._rounds: list[list[Trial]] = []

    def rounds(self) -> list[list[Trial]]:
        return [list(r) for r in self._rounds]

    def record(self, index: int, trials: list[Trial]) -> None:
        self._rounds = [*self._rounds[:index], list(trials)]


class RunIdsInProcess(RunIdRegistry):
    """Run ids in the driver's memory: what the driver publishes is seen in its own process
    at once; a copy pickled to another process keeps what was published when it was
    pickled (its other rows get their ids from the driver). See
    :class:`sweeper.adapters.run_id_file.RunIdFile` for workers on other machines."""

    def __init__(self) -> None:
        self._published: Mapping[str, str] = {}

    def publish(self, run_ids: Mapping[str, str]) -> None:
        self._published = dict(run_ids)  # one reference swap: readers see old or new, whole

    def lookup(self, trial_id: str) -> str | None:
        return self._published.get(trial_id)


@dataclass(frozen=True)
class TrialWork:
    """What an executor runs for each trial, in-process or on a worker (picklable): measure
    the trial, write its part, return where it is.

    Args:
        space: the validated sweep.
        sink: where parts are written (a directory every worker sees, on a cluster).
        run_ids: where the driver publishes the trials' tracking run ids.
    """

    space: SearchSpace
    sink: ResultSink
    run_ids: RunIdRegistry

    def compute_part(self, trial: Trial, device: str | None = None) -> str:
        """Measure the trial, stamp its rows with its tracking run id if the driver has
        published it (null otherwise: the driver fills it in when it logs the trial; computing
        never waits for tracking), write its part; returns the part's location.

        Raises:
            SweeperInputError: the trial's input is invalid (e.g. the device); retrying
                would fail the same way.
        """
        frame = trial_frame(self.space, trial, device)
        run_id = self.run_ids.lookup(trial.trial_id)
        frame.insert(3, "mlflow_run_id", pd.Series([run_id] * len(frame), dtype="str",
                                                   index=frame.index))
        return self.sink.write(trial.trial_id, frame)


class Tracker(ABC):
    """Experiment tracking, called from the driver only (one writer, as sqlite needs).

    Invariants: a retried or resumed trial reuses its run; after ``end_sweep`` no run of the
    sweep is left RUNNING, also none an earlier driver left open. ``start_sweep`` may read
    the sweep's runs; the per-trial calls must not search the store (a sweep has thousands
    of trials).
    """

    @abstractmethod
    def start_sweep(self, space: SearchSpace) -> str:
        """Open (or reopen, on resume) the sweep's parent run; returns its id."""

    @abstractmethod
    def trial_started(self, trial: Trial) -> str:
        """Open (or reopen) the trial's child run; returns its id."""

    @abstractmethod
    def trial_finished(self, trial: Trial, frame: pd.DataFrame, location: str) -> None:
        """Log the trial's metrics and where its rows are (not a copy of them), and close
        its run as FINISHED."""

    @abstractmethod
    def is_finished(self, trial: Trial) -> bool:
        """Whether the trial's run exists and is FINISHED (after ``start_sweep``)."""

    @abstractmethod
    def trial_failed(self, trial: Trial, error: str) -> None:
        """Close the trial's run as FAILED."""

    @abstractmethod
    def end_sweep(self, status: str) -> None:
        """Close the parent run (FINISHED, FAILED or KILLED) and any run still open."""

    def round_started(self, index: int, points: int, total: int) -> None:  # noqa: B027
        """A refined sweep's round ``index`` (0: the first lattice) proposes ``points``
        points, ``total`` with the rounds before it (optional; after ``start_sweep``)."""

    def available(self) -> bool:
        """Whether the tracking store answers now; cheap (seconds at most). After a failure
        the sweep closes its runs only if it does."""
        return True


class Executor(ABC):
    """Runs :meth:`TrialWork.compute_part` for each trial and reports each trial exactly
    once, in the thread that called ``run``: ``on_done(trial, location)`` or
    ``on_error(trial, message)``.

    Invariants (``tests/test_executors.py`` holds every executor to them):

    * a trial that raises is tried again, up to ``max_failures`` times, then reported with
      :func:`failure_message` of its last error; a :class:`SweeperInputError` is reported at
      once, never retried (the same input fails the same way);
    * a KeyboardInterrupt (Ctrl-C, or a signal turned into one) raised while ``run`` runs,
      also inside ``on_done`` or ``on_error``, propagates out of ``run``, and no further
      trial is reported;
    * ``start`` brings up workers ahead of ``run`` (the driver calls it in its main thread
      while the tracker sets up in another, so the two fixed costs overlap); ``run`` works
      whether or not ``start`` was called, and again after ``stop``; ``stop`` releases what
      ``start`` or ``run`` brought up, is safe to call any number of times, and is always
      called at the end of a sweep.
    """

    #: What the progress line says while ``start`` runs (None: it has nothing to bring up).
    starting: str | None = None

    def start(self) -> None:  # noqa: B027  (an optional hook: most executors need none)
        """Bring up workers (optional; the in-process executor has none)."""

    def stop(self) -> None:  # noqa: B027  (an optional hook: most executors need none)
        """Release what ``start`` or ``run`` brought up; safe to call more than once."""

    @abstractmethod
    def run(self, work: TrialWork, trials: list[Trial],
            on_done: Callable[[Trial, str], None], on_error: Callable[[Trial, str], None],
            max_failures: int) -> None: ...

    def run_rounds(self, work: TrialWork, next_round: Callable[[], list[Trial]],
                   on_done: Callable[[Trial, str], None],
                   on_error: Callable[[Trial, str], None], max_failures: int) -> None:
        """Rounds of trials: ``next_round()`` is called once every trial of the round before
        has been reported (first: at once), in the thread that called ``run_rounds``, until
        it returns no trial. The same invariants as ``run`` hold for each trial."""
        while trials := next_round():
            self.run(work, trials, on_done, on_error, max_failures)


def attempt(work: TrialWork, trial: Trial, device: str | None,
            max_failures: int) -> tuple[bool, str]:
    """One trial as every executor runs it: ``(True, location)`` once its part is written,
    or ``(False, message)`` after ``max_failures + 1`` attempts that raised (worded by
    :func:`failure_message`); an input error is not retried, it would fail the same way."""
    for tries in range(max_failures + 1):
        try:
            return True, work.compute_part(trial, device)
        except SweeperInputError as exc:
            return False, failure_message(exc)
        except Exception as exc:  # a failed trial is recorded, the sweep goes on
            if tries == max_failures:
                return False, failure_message(exc)
    raise AssertionError("unreachable: the last attempt returns")


class LocalExecutor(Executor):
    """In-process, one trial after another: the reference the Ray executor must match."""

    def __init__(self, device: str | None = None):
        self.device = device

    def run(self, work: TrialWork, trials: list[Trial],
            on_done: Callable[[Trial, str], None], on_error: Callable[[Trial, str], None],
            max_failures: int) -> None:
        for trial in trials:
            ok, outcome = attempt(work, trial, self.device, max_failures)
            (on_done if ok else on_error)(trial, outcome)


class Progress:
    """One live line on stderr: points done / total, failed trials, elapsed time, ETA, and
    what the sweep is doing beside computing (``note``: starting workers, opening runs).

    On a terminal the line is redrawn in place, also every second while nothing ends (a long
    trial still shows time passing); elsewhere (a log file, a CI job) at most every
    ``quiet_s`` seconds, each time on a line of its own. Thread-safe: the driver's executor
    thread and the tracking thread both report here.
    """

    def __init__(self, total_points: int, stream=None, quiet_s: float = 30.0):
        self.total, self.done, self.failed = total_points, 0, 0
        self.start = time.monotonic()
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 1.0 if self.live else quiet_s
        self.notes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._drawn = -math.inf
        self._stopped = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._ticker.start()

    def line(self) -> str:
        """The line as it reads now."""
        elapsed = time.monotonic() - self.start
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

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < self.interval:
            return
        self._drawn = now
        if self.live:
            self.stream.write(f"\r{self.line()}   ")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stopped.wait(self.interval):
            with self._lock:
                self._draw(force=self.live)

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            self.notes.clear()
            if self.live:
                self.stream.write(f"\r{self.line()}   \n")
            else:
                self.stream.write(self.line() + "\n")
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

    def __init__(self, tracker: Tracker, sink: ResultSink, run_ids: RunIdRegistry,
                 progress: Progress):
        self.tracker, self.sink, self.registry = tracker, sink, run_ids
        self.progress = progress
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
            self.run_ids[trial.trial_id] = self.tracker.trial_started(trial)
            if i == 0 or i == len(pending) - 1 or time.monotonic() - last >= 0.5:
                self.registry.publish(self.run_ids)
                self.progress.note("tracking", f"opening runs {i + 1}/{len(pending)}")
                last = time.monotonic()
        self.progress.note("tracking", "tracking ready")

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
                self.log_finished(trial, self.sink.materialize(trial.trial_id))

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


class _Ledger:
    """The driver's account of a sweep. The executor's reports land here (``trial_done`` and
    ``trial_failed`` are its ``on_done`` and ``on_error``): each is counted, shown on the
    progress line and queued for the tracking thread."""

    def __init__(self, trials: list[Trial], done_before: set[str], tracking: _TrackingThread,
                 progress: Progress):
        self.counts = {"trials": len(trials), "skipped": len(done_before), "done": 0,
                       "failed": 0}
        self.tracking, self.progress = tracking, progress
        progress.update(points=sum(t.n_points for t in trials if t.trial_id in done_before))

    def trial_done(self, trial: Trial, location: str) -> None:
        self.tracking.submit(self.tracking.log_finished, trial, location)
        self.counts["done"] += 1
        self.progress.update(points=trial.n_points)

    def trial_failed(self, trial: Trial, message: str) -> None:
        log.error("trial %s failed: %s", trial.trial_id, message)
        self.tracking.submit(self.tracking.log_failed, trial, message)
        self.counts["failed"] += 1
        self.progress.update(failed=1)


class _Refinement:
    """A refined sweep's rounds (see :mod:`sweeper.refine`): each proposed from the points
    measured before it, recorded in the round log before it runs. A resume takes the
    recorded rounds as they are, runs what they left undone, then goes on proposing."""

    def __init__(self, space: SearchSpace, sink: ResultSink, log: RoundLog, resume: bool,
                 on_round: Callable[[int, list[Trial]], None]):
        self.space, self.sink, self.log, self.on_round = space, sink, log, on_round
        self.grid = space.grid
        self.recorded = log.rounds() if resume else []
        self.columns = [*space.axes, "region", "status", "lyapunov_max"]
        self.rows: list[pd.DataFrame] = []
        self.failed: set[tuple[int, int, int]] = set()
        self.unfinished: list[Trial] = []

    def known(self) -> list[Trial]:
        return [t for trials in self.recorded for t in trials]

    def take(self, trial: Trial, location: str) -> None:
        """A finished trial's points join what the next round is proposed from."""
        frame = self.sink.read(location)
        self.rows.append(frame[[c for c in self.columns if c in frame]])

    def fail(self, trial: Trial) -> None:
        self.failed |= cells_of(self.grid, trial.config, trial.vectorized)

    def next_round(self) -> list[Trial]:
        if self.unfinished:  # a resumed sweep first finishes the rounds it recorded
            trials, self.unfinished = self.unfinished, []
            return trials
        spent = sum(t.n_points for t in self.known())
        points = pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame(
            columns=self.columns)
        cells = next_cells(self.grid, points, self.space.search, self.space.planned_points
                           - spent, self.failed, self.space.rules)
        if not cells:
            return []
        trials = self.space.cell_trials(cells)
        self.log.record(len(self.recorded), trials)
        self.recorded.append(trials)
        self.on_round(len(self.recorded) - 1, trials)
        return trials


def _points(trials: list[Trial]) -> dict[str, int]:
    return {t.trial_id: t.n_points for t in trials}


def _completed_before(sink: ResultSink, trials: list[Trial], resume: bool) -> set[str]:
    """The trials whose part is already written; without ``resume`` there must be none, so
    two sweeps never mix in one output."""
    done = sink.recover(_points(trials))
    if done and not resume:
        raise SweeperInputError(f"the output already holds {len(done)} finished trials "
                                "of this sweep; pass --resume to finish it, or choose --out")
    return done


def _wind_down(signum: int, trials: list[Trial], sink: ResultSink, executor: Executor,
               tracking: _TrackingThread) -> SweepInterrupted:
    """After Ctrl-C or SIGTERM: stop the workers, drop the tracker calls not yet started,
    and log as FINISHED every part that reached the disk, also those the executor never
    reported; returns the exception that says how far the sweep got."""
    executor.stop()
    tracking.drain(cancel=True)
    on_disk = sink.recover(_points(trials))
    tracking.submit(tracking.reconcile, [t for t in trials if t.trial_id in on_disk])
    tracking.drain()
    return SweepInterrupted(signum, len(on_disk), len(trials))


def run_sweep(space: SearchSpace, sink: ResultSink, tracker: Tracker, executor: Executor,
              *, run_ids: RunIdRegistry | None = None, resume: bool = False,
              max_failures: int = 0, progress: Progress | None = None,
              rounds: RoundLog | None = None, work: TrialWork | None = None
              ) -> dict[str, int]:
    """Run every trial not yet completed; returns counts (trials, skipped, done, failed).

    A grid search runs the space's trials; a refined one (``search: {method: refine}``)
    runs rounds of trials proposed from the points before them (:mod:`sweeper.refine`),
    recorded in ``rounds`` (default: in memory; pass a
    :class:`~sweeper.adapters.rounds_file.RoundsFile` to resume one). ``work`` replaces
    what each trial computes (default: :class:`TrialWork`, which measures it).

    Without ``resume`` an output that already holds parts is refused, so two sweeps never mix.
    ``run_ids`` hands the trials' run ids to the workers (default: in the driver's memory,
    enough for the in-process executor; pass a
    :class:`~sweeper.adapters.run_id_file.RunIdFile` for workers in other processes).

    Example::

        run_sweep(space, ParquetSink("out"), MlflowTracker(uri, "out/art"), LocalExecutor())

    Raises:
        SweeperInputError: the output holds parts and ``resume`` is False.
        SweepInterrupted: a KeyboardInterrupt (Ctrl-C, or SIGINT/SIGTERM turned into
            :class:`Interrupted`) stopped it; the executor was stopped, finished parts are
            logged FINISHED and the other runs KILLED.
        TrackingError: tracking failed; every trial was still computed and written.
    """
    refine = None
    if space.search.refine:
        refine = _Refinement(space, sink, rounds or RoundsInProcess(), resume,
                             lambda index, new: on_round(index, new))
        trials = refine.known()
    else:
        trials = space.trials()
    done_before = _completed_before(sink, trials, resume)
    pending = [t for t in trials if t.trial_id not in done_before]
    run_ids = run_ids or RunIdsInProcess()
    progress = progress or Progress(space.planned_points)
    tracking = _TrackingThread(tracker, sink, run_ids, progress)
    ledger = _Ledger(trials, done_before, tracking, progress)
    work = work or TrialWork(space, sink, run_ids)
    status = "FAILED"

    def on_round(index: int, new: list[Trial]) -> None:
        trials.extend(new)
        ledger.counts["trials"] += len(new)
        points = sum(t.n_points for t in new)
        total = sum(t.n_points for t in trials)
        progress.note("rounds", f"round {index}: {points} points")
        tracking.submit(tracking.open_trial_runs, new)
        tracking.submit(tracker.round_started, index, points, total)

    try:
        run_ids.publish({})  # before any worker reads: no ids of an earlier driver
        tracking.submit(tracking.open_runs, space, pending)
        tracking.submit(tracking.reconcile, [t for t in trials if t.trial_id in done_before])
        if refine is not None:
            for trial in trials:
                if trial.trial_id in done_before:
                    refine.take(trial, sink.materialize(trial.trial_id))
            refine.unfinished = pending
        if pending or refine is not None:
            if executor.starting:
                progress.note("workers", executor.starting)
            executor.start()
            progress.note("workers", None)
        if refine is not None:
            def done(trial: Trial, location: str) -> None:
                refine.take(trial, location)
                ledger.trial_done(trial, location)

            def failed(trial: Trial, message: str) -> None:
                refine.fail(trial)
                ledger.trial_failed(trial, message)

            executor.run_rounds(work, refine.next_round, done, failed, max_failures)
            progress.total = sum(t.n_points for t in trials)  # refinement may end early
        elif pending:
            executor.run(work, pending, ledger.trial_done, ledger.trial_failed, max_failures)
        executor.stop()  # before waiting for the tracker: the two overlap
        tracking.drain()
        status = "FINISHED" if ledger.counts["failed"] == 0 else "FAILED"
    except KeyboardInterrupt as exc:
        status = "KILLED"
        signum = getattr(exc, "signum", signal.SIGINT)
        raise _wind_down(signum, trials, sink, executor, tracking) from None
    finally:
        try:
            executor.stop()
        finally:
            tracking.close(status)
            ledger.progress.close()
    if tracking.error is not None:
        raise TrackingError(f"tracking failed: {tracking.error}; the computed trials' points "
                            "are on disk, and a resume logs their runs without recomputing",
                            ledger.counts)
    return ledger.counts
