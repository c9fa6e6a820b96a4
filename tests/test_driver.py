"""The sweep driver on the in-memory contracts alone (no torch, MLflow, Parquet or Ray): what
it counts, what it asks the tracker, how a resume and a refinement's rounds go, and what an
interrupt leaves. End-to-end runs on the real services are in test_sweep.py and
test_refine.py."""

from __future__ import annotations

import dataclasses
import io
import itertools

import pandas as pd
import pytest

from sweeper.errors import SweeperInputError
from sweeper.interrupt import SweepInterrupted
from sweeper.space import AXES, SearchSpace, Trial, point_id, validate_space
from sweeper.sweep import (
    LocalExecutor,
    Progress,
    RoundsInProcess,
    RunIdsInProcess,
    SinkInMemory,
    TrackerInMemory,
    TrialWork,
    run_sweep,
)

# Four trials (input scales) of three points (recurrent scales).
GRID = {"name": "driver", "task": "noise", "cell": "rnn_tanh", "hidden_size": 4,
        "seq_len": 10, "axes": {"recurrent_scale": [0.5, 1.0, 2.0],
                                "input_scale": [0.2, 0.4, 0.6, 0.8]},
        "vectorize": ["recurrent_scale"], "metrics": ["lyapunov"]}


@dataclasses.dataclass(frozen=True)
class Synthetic(TrialWork):
    """Rows from lambda_1 = recurrent_scale - 1 instead of measure(); a trial whose input scale
    is in ``fail_at`` raises, and one in ``interrupt_at`` is interrupted (Ctrl-C)."""

    fail_at: tuple[float, ...] = ()
    interrupt_at: tuple[float, ...] = ()

    def compute_part(self, trial: Trial, device: str | None = None) -> str:
        names = list(trial.vectorized)
        records = []
        for values in itertools.product(*(trial.vectorized[a] for a in names)):
            point = {a: trial.config[a] for a in AXES if a in trial.config}
            point.update(zip(names, values, strict=True))
            if point["input_scale"] in self.interrupt_at:
                raise KeyboardInterrupt
            if point["input_scale"] in self.fail_at:
                raise RuntimeError("planted failure")
            lam = point["recurrent_scale"] - 1.0
            records.append({"sweep": self.space.name, "trial_id": trial.trial_id,
                            "point_id": point_id(trial, point),
                            "mlflow_run_id": self.run_ids.lookup(trial.trial_id), **point,
                            "status": "ok", "region": "chaotic" if lam > 0 else "forgetful",
                            "lyapunov_max": lam})
        return self.sink.write(trial.trial_id, pd.DataFrame(records))


def _sweep(space: SearchSpace, sink: SinkInMemory, tracker: TrackerInMemory, **options):
    work = Synthetic(space, sink, RunIdsInProcess(), options.pop("fail_at", ()),
                     options.pop("interrupt_at", ()))
    progress = Progress(space.planned_points, stream=io.StringIO(), ticker=False)
    return run_sweep(space, sink, tracker, LocalExecutor(), work=work, progress=progress,
                     **options)


def _statuses(tracker: TrackerInMemory) -> dict[str, str]:
    return {"sweep": tracker.sweep.parent.status,
            **{trial_id: run.status for trial_id, run in tracker.sweep.trials.items()}}


def test_a_grid_sweep_runs_each_trial_once_and_a_resume_none_again():
    space = validate_space(GRID)
    sink, tracker = SinkInMemory(), TrackerInMemory()
    assert _sweep(space, sink, tracker) == {"trials": 4, "skipped": 0, "done": 4, "failed": 0}
    ids = {t.trial_id for t in space.trials()}
    assert _statuses(tracker) == {"sweep": "FINISHED", **dict.fromkeys(ids, "FINISHED")}
    for run in tracker.sweep.trials.values():  # every row names its trial's run
        assert run.points == 3 and set(sink.read(run.location).mlflow_run_id) == {run.run_id}
    with pytest.raises(SweeperInputError, match="pass --resume"):
        _sweep(space, sink, TrackerInMemory(tracker.store))
    again = TrackerInMemory(tracker.store)
    assert _sweep(space, sink, again, resume=True) == {"trials": 4, "skipped": 4, "done": 0,
                                                       "failed": 0}
    assert _statuses(again) == _statuses(tracker)


def test_a_failed_trial_fails_the_sweep_and_a_resume_computes_only_it():
    space = validate_space(GRID)
    sink, tracker = SinkInMemory(), TrackerInMemory()
    counts = _sweep(space, sink, tracker, fail_at=(0.4,), max_failures=1)
    assert counts == {"trials": 4, "skipped": 0, "done": 3, "failed": 1}
    assert sorted(_statuses(tracker).values()) == ["FAILED", "FAILED", "FINISHED", "FINISHED",
                                                   "FINISHED"]
    failed = next(r for r in tracker.sweep.trials.values() if r.status == "FAILED")
    assert failed.error == "RuntimeError: planted failure"
    counts = _sweep(space, sink, TrackerInMemory(tracker.store), resume=True)
    assert counts == {"trials": 4, "skipped": 3, "done": 1, "failed": 0}
    assert set(_statuses(tracker).values()) == {"FINISHED"}


def test_an_interrupt_kills_the_open_runs_and_keeps_what_was_written():
    space = validate_space(GRID)
    sink, tracker = SinkInMemory(), TrackerInMemory()
    with pytest.raises(SweepInterrupted) as stopped:
        _sweep(space, sink, tracker, interrupt_at=(0.6,))
    assert (stopped.value.done, stopped.value.total) == (2, 4)
    statuses = _statuses(tracker)
    assert statuses.pop("sweep") == "KILLED"
    # The two written trials are logged; the others' runs, those opened before the
    # interrupt cancelled the opening, are KILLED.
    assert sorted(statuses.values())[:2] == ["FINISHED", "FINISHED"]
    assert set(sorted(statuses.values())[2:]) <= {"KILLED"}


def test_a_refined_sweep_announces_each_round_and_ends_below_its_budget():
    space = validate_space(dict(GRID, axes={"recurrent_scale": [0.25 * i for i in range(1, 17)],
                                            "input_scale": [0.5]},
                                map={"x": "recurrent_scale", "y": "input_scale"},
                                search={"method": "refine", "budget": 16, "initial": 3}))
    sink, tracker, rounds = SinkInMemory(), TrackerInMemory(), RoundsInProcess()
    progress = Progress(space.planned_points, stream=io.StringIO(), ticker=False)
    counts = run_sweep(space, sink, tracker, LocalExecutor(), rounds=rounds, progress=progress,
                       work=Synthetic(space, sink, RunIdsInProcess()))
    recorded = rounds.rounds()
    assert counts["trials"] == sum(len(r) for r in recorded) == counts["done"]
    points = [sum(t.n_points for t in r) for r in recorded]
    assert tracker.sweep.rounds == [(i, p, sum(points[:i + 1])) for i, p in enumerate(points)]
    assert len(recorded) > 1 and sum(points) < 16
    assert progress.total == progress.done == sum(points)  # the total the sweep came to
