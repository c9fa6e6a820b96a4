"""The five contracts a sweep runs against, and in-memory implementations of them.

A sweep is pure orchestration (:func:`~sweeper.sweep.driver.run_sweep`) against five small
abstract classes, so the same driver runs in-process and on a cluster:

* :class:`ResultSink`: where each trial's rows land (Parquet:
  :class:`~sweeper.adapters.parquet_sink.ParquetSink`);
* :class:`RunIdRegistry`: how the driver hands tracking run ids to the workers (a JSON file:
  :class:`~sweeper.adapters.run_id_file.RunIdFile`);
* :class:`RoundLog`: the rounds a refined sweep proposed, for a resume (a JSON file:
  :class:`~sweeper.adapters.rounds_file.RoundsFile`);
* :class:`Tracker`: experiment tracking (MLflow:
  :class:`~sweeper.adapters.mlflow_tracker.MlflowTracker`);
* :class:`Executor`: what runs the trials (Ray Tune:
  :class:`~sweeper.adapters.ray_executor.RayTuneExecutor`; in-process:
  :class:`~sweeper.sweep.work.LocalExecutor`).

Each docstring states the invariants every implementation keeps; ``tests/test_contracts.py``
and ``tests/test_executors.py`` hold the in-memory and the real implementations to them. The
in-memory ones here (:class:`SinkInMemory`, :class:`RunIdsInProcess`,
:class:`RoundsInProcess`, :class:`TrackerInMemory`) run a sweep without any service, for
tests and notebooks::

    run_sweep(space, SinkInMemory(), TrackerInMemory(), LocalExecutor())
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from ..space import stable_hash

if TYPE_CHECKING:
    from ..space import SearchSpace, Trial
    from .work import TrialWork

log = logging.getLogger("sweeper")


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


class Tracker(ABC):
    """Experiment tracking, called from the driver only (one writer, as sqlite needs).

    Invariants: a retried or resumed trial reuses its run; after ``end_sweep`` no run of the
    sweep is left RUNNING, also none an earlier driver left open. ``start_sweep`` may read
    the sweep's runs; the per-trial calls must not search the store (a sweep has thousands
    of trials). The per-trial calls come after ``start_sweep``; ``trial_finished`` and
    ``trial_failed`` after the trial's ``trial_started``.
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
        """Close the parent run (FINISHED, FAILED or KILLED) and any run still open (KILLED
        when the sweep was, else FAILED)."""

    def round_started(self, index: int, points: int, total: int) -> None:  # noqa: B027
        """A refined sweep's round ``index`` (0: the first lattice) proposes ``points``
        points, ``total`` with the rounds before it (optional; after ``start_sweep``)."""

    def available(self) -> bool:
        """Whether the tracking store answers now; cheap (seconds at most). After a failure
        the sweep closes its runs only if it does."""
        return True


class Executor(ABC):
    """Runs :meth:`~sweeper.sweep.work.TrialWork.compute_part` for each trial and reports each
    trial exactly once, in the thread that called ``run``: ``on_done(trial, location)`` or
    ``on_error(trial, message)``. The driver calls ``run_rounds`` (a grid sweep is one round).

    Invariants (``tests/test_executors.py`` holds every executor to them):

    * a trial that raises is tried again, up to ``max_failures`` times, then reported with
      :func:`~sweeper.sweep.work.failure_message` of its last error; a
      :class:`~sweeper.errors.SweeperInputError` is reported at once, never retried (the same
      input fails the same way);
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
            max_failures: int) -> None:
        """Run ``trials`` and report each once, as the class docstring says."""

    def run_rounds(self, work: TrialWork, next_round: Callable[[], list[Trial]],
                   on_done: Callable[[Trial, str], None],
                   on_error: Callable[[Trial, str], None], max_failures: int) -> None:
        """Rounds of trials: ``next_round()`` is called once every trial of the round before
        has been reported (first: at once), in the thread that called ``run_rounds``, until
        it returns no trial. The same invariants as ``run`` hold for each trial."""
        while trials := next_round():
            self.run(work, trials, on_done, on_error, max_failures)


class SinkInMemory(ResultSink):
    """Each trial's rows in a dict, for a sweep on the in-process executor (tests,
    notebooks). A location is ``memory:<trial id>``. Picklable, but a copy sent to another
    process writes into that copy, which the driver never reads."""

    PREFIX = "memory:"

    def __init__(self) -> None:
        self.rows: dict[str, pd.DataFrame] = {}
        #: Rows ``recover`` found damaged, with why, in the order it found them.
        self.damaged: list[tuple[str, pd.DataFrame, str]] = []

    def recover(self, expected: Mapping[str, int]) -> set[str]:
        verified = set()
        for trial_id, n_points in expected.items():
            frame = self.rows.get(trial_id)
            if frame is None:
                continue
            problem = rows_problem(frame, trial_id, n_points)
            if problem is None:
                verified.add(trial_id)
                continue
            del self.rows[trial_id]
            self.damaged.append((trial_id, frame, problem))
            log.warning("damaged rows of trial %s (%s); set aside, the trial will be "
                        "computed again", trial_id, problem)
        return verified

    def write(self, trial_id: str, frame: pd.DataFrame) -> str:
        # A copy made whole, then one reference swap: a reader sees the old rows or the new.
        self.rows[trial_id] = frame.reset_index(drop=True).copy(deep=True)
        return self.PREFIX + trial_id

    def read(self, location: str) -> pd.DataFrame:
        """The rows at ``location``. Raises KeyError for a location nothing was written to."""
        if not location.startswith(self.PREFIX):
            raise KeyError(f"not a location of this sink: {location!r}")
        trial_id = location[len(self.PREFIX):]
        if trial_id not in self.rows:
            raise KeyError(f"nothing written at {location!r}")
        return self.rows[trial_id].copy(deep=True)

    def materialize(self, trial_id: str) -> str:
        """Where the trial's rows are, or would be: they are always one place of their own."""
        return self.PREFIX + trial_id


def rows_problem(frame: pd.DataFrame, trial_id: str, n_points: int) -> str | None:
    """Why ``frame`` is not trial ``trial_id``'s ``n_points`` rows, or None when it is."""
    if "trial_id" not in frame:
        return "no trial_id column"
    if len(frame) != n_points:
        return f"{len(frame)} rows, but the trial has {n_points} points"
    ids = sorted(map(str, frame["trial_id"].unique()))
    if ids != [trial_id]:
        return f"its trial_id column holds {ids}, not only {trial_id!r}"
    return None


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


class RoundsInProcess(RoundLog):
    """Rounds in the driver's memory (a sweep that need not be resumed)."""

    def __init__(self) -> None:
        self._rounds: list[list[Trial]] = []

    def rounds(self) -> list[list[Trial]]:
        return [list(r) for r in self._rounds]

    def record(self, index: int, trials: list[Trial]) -> None:
        self._rounds = [*self._rounds[:index], list(trials)]


@dataclass
class TrackedRun:
    """One run as :class:`TrackerInMemory` keeps it."""

    run_id: str
    status: str = "RUNNING"
    #: Where the trial's rows are and how many (``trial_finished``).
    location: str | None = None
    points: int = 0
    #: Why the trial failed (``trial_failed``).
    error: str | None = None


@dataclass
class TrackedSweep:
    """A sweep's runs in a :class:`TrackerInMemory` store: its parent run, its trials' runs
    by trial id, and the rounds announced (index, points, total)."""

    parent: TrackedRun
    trials: dict[str, TrackedRun] = field(default_factory=dict)
    rounds: list[tuple[int, int, int]] = field(default_factory=list)


class TrackerInMemory(Tracker):
    """Runs in a dict, ``store`` (sweep key -> :class:`TrackedSweep`), for tests and
    notebooks. A second tracker on the same store is a later driver of the sweep: it finds
    and reuses the runs the first left. A sweep's key is the hash of what it measures."""

    def __init__(self, store: dict[str, TrackedSweep] | None = None) -> None:
        self.store = {} if store is None else store
        self.sweep: TrackedSweep | None = None

    def start_sweep(self, space: SearchSpace) -> str:
        key = stable_hash(space.measured)
        if key not in self.store:
            self.store[key] = TrackedSweep(TrackedRun(_new_run_id()))
        self.sweep = self.store[key]
        self.sweep.parent.status = "RUNNING"
        return self.sweep.parent.run_id

    def trial_started(self, trial: Trial) -> str:
        runs = self._started().trials
        if trial.trial_id not in runs:
            runs[trial.trial_id] = TrackedRun(_new_run_id())
        run = runs[trial.trial_id]
        run.status = "RUNNING"
        return run.run_id

    def trial_finished(self, trial: Trial, frame: pd.DataFrame, location: str) -> None:
        run = self._started().trials[trial.trial_id]
        run.location, run.points, run.status = location, len(frame), "FINISHED"

    def is_finished(self, trial: Trial) -> bool:
        run = self._started().trials.get(trial.trial_id)
        return run is not None and run.status == "FINISHED"

    def trial_failed(self, trial: Trial, error: str) -> None:
        run = self._started().trials[trial.trial_id]
        run.error, run.status = error, "FAILED"

    def round_started(self, index: int, points: int, total: int) -> None:
        self._started().rounds.append((index, points, total))

    def end_sweep(self, status: str) -> None:
        if self.sweep is None:
            return
        leftover = "KILLED" if status == "KILLED" else "FAILED"
        for run in self.sweep.trials.values():
            if run.status == "RUNNING":
                run.status = leftover
        self.sweep.parent.status = status

    def _started(self) -> TrackedSweep:
        if self.sweep is None:
            raise RuntimeError("TrackerInMemory: call start_sweep before the per-trial calls")
        return self.sweep


def _new_run_id() -> str:
    return uuid.uuid4().hex
