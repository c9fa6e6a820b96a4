"""The sweep driver: find what is done, start the tracking thread, run the rest round by round
on the executor, close the runs."""

from __future__ import annotations

import logging
import signal

from ..errors import SweeperInputError
from ..interrupt import SweepInterrupted
from ..space import SearchSpace, Trial
from .contracts import (
    Executor,
    ResultSink,
    RoundLog,
    RoundsInProcess,
    RunIdRegistry,
    RunIdsInProcess,
    Tracker,
)
from .progress import Progress
from .rounds import TrialSource, trial_source
from .tracking import TrackingError, TrackingThread
from .work import TrialWork

log = logging.getLogger("sweeper")


class Ledger:
    """The driver's account of a sweep, and what the executor talks to: ``next_round`` hands
    out the trials, ``trial_done`` and ``trial_failed`` take the reports. Each report is
    counted, shown on the progress line, queued for the tracking thread and passed to the
    trial source (which may propose from it).

    Args:
        source: the sweep's trials.
        done_before: the ids of the known trials already finished.
        tracking: the tracking thread.
        progress: the progress line.
    """

    def __init__(self, source: TrialSource, done_before: set[str], tracking: TrackingThread,
                 progress: Progress):
        self.source, self.tracking, self.progress = source, tracking, progress
        known = source.known
        self.finished_before = [t for t in known if t.trial_id in done_before]
        self.pending = [t for t in known if t.trial_id not in done_before]
        self.counts = {"trials": len(known), "skipped": len(done_before), "done": 0,
                       "failed": 0}
        self._unrun = list(self.pending)
        progress.update(points=sum(t.n_points for t in self.finished_before))

    def next_round(self) -> list[Trial]:
        """The pending trials, then each round the source proposes (counted, announced on
        the progress line and to the tracker, its runs opened); no trial when it proposes
        none, and the progress line's total becomes the points of the sweep's trials (a
        refinement may end below its budget)."""
        if self._unrun:
            trials, self._unrun = self._unrun, []
            return trials
        proposed = self.source.propose()
        if proposed is None:
            self.progress.total = sum(t.n_points for t in self.source.known)
            return []
        index, trials = proposed
        points = sum(t.n_points for t in trials)
        total = sum(t.n_points for t in self.source.known)
        self.counts["trials"] += len(trials)
        self.progress.note("rounds", f"round {index}: {points} points")
        self.tracking.submit(self.tracking.open_trial_runs, trials)
        self.tracking.submit(self.tracking.tracker.round_started, index, points, total)
        return trials

    def trial_done(self, trial: Trial, location: str) -> None:
        self.source.take(trial, location)
        self.tracking.submit(self.tracking.log_finished, trial, location)
        self.counts["done"] += 1
        self.progress.update(points=trial.n_points)

    def trial_failed(self, trial: Trial, message: str) -> None:
        self.source.fail(trial)
        log.error("trial %s failed: %s", trial.trial_id, message)
        self.tracking.submit(self.tracking.log_failed, trial, message)
        self.counts["failed"] += 1
        self.progress.update(failed=1)


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


def _start(executor: Executor, progress: Progress) -> None:
    """Bring up the executor's workers, saying so on the progress line meanwhile."""
    if executor.starting:
        progress.note("workers", executor.starting)
    executor.start()
    progress.note("workers", None)


def _wind_down(signum: int, trials: list[Trial], sink: ResultSink, executor: Executor,
               tracking: TrackingThread) -> SweepInterrupted:
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
    what each trial computes (default: :class:`~sweeper.sweep.work.TrialWork`, which
    measures it).

    Without ``resume`` an output that already holds parts is refused, so two sweeps never mix.
    ``run_ids`` hands the trials' run ids to the workers (default: in the driver's memory,
    enough for the in-process executor; pass a
    :class:`~sweeper.adapters.run_id_file.RunIdFile` for workers in other processes).

    Example::

        run_sweep(space, ParquetSink("out"), MlflowTracker(uri, "out/art"), LocalExecutor())

    Raises:
        SweeperInputError: the output holds parts and ``resume`` is False.
        SweepInterrupted: a KeyboardInterrupt (Ctrl-C, or SIGINT/SIGTERM turned into
            :class:`~sweeper.interrupt.Interrupted`) stopped it; the executor was stopped,
            finished parts are logged FINISHED and the other runs KILLED.
        TrackingError: tracking failed; every trial was still computed and written.
    """
    source = trial_source(space, sink, rounds or RoundsInProcess(), resume)
    done_before = _completed_before(sink, source.known, resume)
    run_ids = run_ids or RunIdsInProcess()
    progress = progress or Progress(space.planned_points)
    tracking = TrackingThread(tracker, sink, run_ids, progress)
    ledger = Ledger(source, done_before, tracking, progress)
    work = work or TrialWork(space, sink, run_ids)
    status = "FAILED"
    try:
        run_ids.publish({})  # before any worker reads: no ids of an earlier driver
        tracking.submit(tracking.open_runs, space, ledger.pending)
        tracking.submit(tracking.reconcile, ledger.finished_before)
        source.resume(ledger.finished_before)
        if ledger.pending or source.proposes:
            _start(executor, progress)
            executor.run_rounds(work, ledger.next_round, ledger.trial_done,
                                ledger.trial_failed, max_failures)
        executor.stop()  # before waiting for the tracker: the two overlap
        tracking.drain()
        status = "FINISHED" if ledger.counts["failed"] == 0 else "FAILED"
    except KeyboardInterrupt as exc:
        status = "KILLED"
        signum = getattr(exc, "signum", signal.SIGINT)
        raise _wind_down(signum, source.known, sink, executor, tracking) from None
    finally:
        try:
            executor.stop()
        finally:
            tracking.close(status)
            progress.close()
    if tracking.error is not None:
        raise TrackingError(f"tracking failed: {tracking.error}; the computed trials' points "
                            "are on disk, and a resume logs their runs without recomputing",
                            ledger.counts)
    return ledger.counts
