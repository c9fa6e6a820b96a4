"""The MLflow tracker at sweep scale, against a real sqlite store (no mocks, no Ray): the
sweep's runs are read once, each trial costs a fixed handful of store round trips whatever
the number of runs, a resume reuses every run, and ``end_sweep`` leaves nothing RUNNING.

The store is spied on, not replaced: each of its methods is wrapped to count calls. Run names
and the points table a run previews place every axis of ``sweeper.axes.AXES``."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweeper.adapters.mlflow_tracker import (
    NAME_AXES,
    TABLE_FIRST,
    TABLE_LAST,
    MlflowTracker,
    points_query,
    points_table,
    read_sweep,
    run_name,
)
from sweeper.axes import AXES
from sweeper.space import SearchSpace, Trial, validate_space

STORE_CALLS = ("search_runs", "get_run", "create_run", "log_batch", "update_run_info",
               "set_tag", "log_metric", "log_param", "get_experiment_by_name",
               "create_experiment")


def _space(n_trials: int) -> SearchSpace:
    """``n_trials`` trials (input scales) of 20 points (10 recurrent scales x 2 seeds)."""
    return validate_space({
        "name": "scale", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8, "seq_len": 30,
        "axes": {"recurrent_scale": {"linspace": [0.5, 2.5, 10]}, "seed": [0, 1],
                 "input_scale": {"linspace": [0.1, 3.0, n_trials]}},
        "vectorize": ["recurrent_scale", "seed"], "metrics": ["lyapunov", "memory"]})


def _part(trial: Trial) -> pd.DataFrame:
    """A trial's rows with a known exponent per point, lyapunov_max = s - 1 + seed / 10, and a
    metric that was not measured (NaN, so not logged)."""
    frame = pd.DataFrame(list(itertools.product(*trial.vectorized.values())),
                         columns=list(trial.vectorized))
    frame["input_scale"] = trial.config["input_scale"]
    frame["status"] = "ok"
    frame["lyapunov_max"] = frame.recurrent_scale - 1 + frame.seed / 10
    frame["memory_capacity"] = np.nan
    return frame


def _finish(tracker: MlflowTracker, trial: Trial, points: Path) -> Path:
    part = points / f"part-{trial.trial_id}.parquet"
    frame = _part(trial)
    frame.to_parquet(part)
    tracker.trial_finished(trial, frame, str(part))
    return part


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def store_calls(store, monkeypatch):
    """Counts of the calls the store gets, by method name (reset by the test at will)."""
    counts = Counter()
    backend = MlflowClient(store)._tracking_client.store  # the one store of this URI

    def counting(name, method):
        def call(*args, **kwargs):
            counts[name] += 1
            return method(*args, **kwargs)
        return call

    for name in STORE_CALLS:
        monkeypatch.setattr(backend, name, counting(name, getattr(backend, name)))
    return counts


def _runs(store: str) -> list:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("scale")
    return client.search_runs([experiment.experiment_id], max_results=50_000)


def test_each_trial_costs_the_same_few_round_trips_and_no_search(tmp_path, store, store_calls):
    space, points = _space(300), tmp_path / "points"
    points.mkdir()
    tracker = MlflowTracker(store, tmp_path / "art", str(tmp_path))
    parent = tracker.start_sweep(space)
    opened = store_calls.copy()
    assert opened["search_runs"] == 1 and opened["create_run"] == 1  # read once, the parent
    store_calls.clear()
    parts = []
    for trial in space.trials():
        tracker.trial_started(trial)
        parts.append(_finish(tracker, trial, points))
    tracker.end_sweep("FINISHED")
    # Per trial: create_run (with its tags), params, metrics + tags, status; per sweep: the
    # parent's status and one search for runs left open by retried creations. Nothing is
    # read back per trial.
    assert store_calls == {"create_run": 300, "log_batch": 600, "update_run_info": 301,
                           "search_runs": 1}

    runs = _runs(store)
    assert Counter((r.data.tags["sweeper.role"], r.info.status) for r in runs) == {
        ("sweep", "FINISHED"): 1, ("trial", "FINISHED"): 300}
    trials = [r for r in runs if r.data.tags["sweeper.role"] == "trial"]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent}
    # The part is not copied: the run names the query that reads its rows.
    assert all(r.data.tags["sweeper.points"] == points_query(str(tmp_path),
                                                              r.data.tags["sweeper.trial_id"])
               for r in trials)
    assert len(parts) == 300 and not list((tmp_path / "art").rglob("*.parquet"))
    # Metrics: the trial's summary only (no point's value): the seed-mean curve s - 0.95
    # crosses zero at s = 0.95; no region column, so no counts.
    trial = space.trials()[7]
    run = next(r for r in trials if r.data.tags["sweeper.trial_id"] == trial.trial_id)
    assert set(run.data.metrics) == {"lyapunov_zero_crossing"}
    assert run.data.metrics["lyapunov_zero_crossing"] == pytest.approx(0.95, rel=1e-9)
    # The points as a table the UI previews, in the run's own artifacts (no store read).
    table = tmp_path / "art" / run.info.run_id / "artifacts" / "points.csv"
    shown = pd.read_csv(table)
    assert len(shown) == 20 and "lyapunov_max" in shown and "memory_capacity" not in shown


def test_a_resumed_sweep_reuses_every_run_and_leaves_none_running(tmp_path, store,
                                                                  store_calls):
    space, points = _space(60), tmp_path / "points"
    points.mkdir()
    trials = space.trials()
    first = MlflowTracker(store, tmp_path / "art", str(tmp_path))
    parent = first.start_sweep(space)
    run_ids = {t.trial_id: first.trial_started(t) for t in trials}
    for trial in trials[:20]:
        _finish(first, trial, points)
    for trial in trials[20:25]:
        first.trial_failed(trial, "RuntimeError: no luck")
    # The driver dies here: no end_sweep; 35 runs are left RUNNING.

    store_calls.clear()
    resumed = MlflowTracker(store, tmp_path / "art", str(tmp_path))
    assert resumed.start_sweep(space) == parent
    done = {t.trial_id for t in trials if resumed.is_finished(t)}
    assert done == {t.trial_id for t in trials[:20]}
    assert store_calls == {"get_experiment_by_name": 1, "search_runs": 1,
                           "update_run_info": 1}  # the parent reopened
    paged = read_sweep(resumed.client, resumed.experiment_id, resumed.sweep_hash, page_size=7)
    assert paged[0].run_id == parent and paged[1] == resumed.runs  # the same, over 9 pages
    # Five finished trials (their parts were lost) and the five failed ones run again, each
    # in the run it had; a run already RUNNING is not written to at all.
    store_calls.clear()
    again = trials[15:25]
    assert [resumed.trial_started(t) for t in again] == [run_ids[t.trial_id] for t in again]
    assert store_calls == {"update_run_info": 10}
    assert resumed.trial_started(trials[15]) == run_ids[trials[15].trial_id]  # a retry
    assert resumed.trial_started(trials[40]) == run_ids[trials[40].trial_id]  # still open
    assert store_calls == {"update_run_info": 10}
    for trial in again[:7]:
        _finish(resumed, trial, points)
    resumed.end_sweep("KILLED")

    runs = _runs(store)
    assert len(runs) == 61  # no run was opened twice
    statuses = Counter((r.data.tags["sweeper.role"], r.info.status) for r in runs)
    assert statuses == {("sweep", "KILLED"): 1, ("trial", "FINISHED"): 22,
                        ("trial", "KILLED"): 38}
    # A trial logged twice holds its metric once: same timestamps, so MLflow dedups.
    history = MlflowClient(store).get_metric_history(run_ids[trials[15].trial_id],
                                                     "lyapunov_zero_crossing")
    assert len(history) == 1


@pytest.mark.parametrize(("ended", "leftover"), [("KILLED", "KILLED"), ("FAILED", "FAILED"),
                                                 ("FINISHED", "FAILED")])
def test_end_sweep_closes_the_runs_left_open(tmp_path, store, ended, leftover):
    space, points = _space(3), tmp_path / "points"
    points.mkdir()
    tracker = MlflowTracker(store, tmp_path / "art", str(tmp_path))
    tracker.start_sweep(space)
    first, *others = space.trials()
    for trial in space.trials():
        tracker.trial_started(trial)
    _finish(tracker, first, points)
    tracker.end_sweep(ended)
    statuses = Counter((r.data.tags["sweeper.role"], r.info.status) for r in _runs(store))
    assert statuses == {("sweep", ended): 1, ("trial", "FINISHED"): 1,
                        ("trial", leftover): len(others)}
    assert not any(r.info.end_time is None for r in _runs(store))


def test_a_trial_of_another_sweep_is_never_reused(tmp_path, store):
    space = _space(3)
    mine = MlflowTracker(store, tmp_path / "art", "results-a")
    other = MlflowTracker(store, tmp_path / "art", "results-b")  # same file, other --out
    mine.start_sweep(space)
    other.start_sweep(space)
    assert mine.parent != other.parent
    for trial in space.trials():
        assert mine.trial_started(trial) != other.trial_started(trial)
    assert not other.is_finished(space.trials()[0])


def test_two_drivers_creating_one_experiment_both_start(tmp_path, store):
    # Two sweeps of one name, other results directories, a new store: the second driver
    # looks the experiment up (missing), then the first creates it before the second does.
    # Made deterministic by a hook on the second tracker's look-up; before, its create
    # failed on the name's UNIQUE constraint and the sweep exited 3.
    space = _space(2)
    first = MlflowTracker(store, tmp_path / "a" / "mlartifacts", str(tmp_path / "a"))
    second = MlflowTracker(store, tmp_path / "b" / "mlartifacts", str(tmp_path / "b"))
    looked_up = second.client.get_experiment_by_name
    started = {}

    def look_up_then_lose_the_race(name):
        found = looked_up(name)
        if "first" not in started:
            started["first"] = first.start_sweep(space)
        return found

    second.client.get_experiment_by_name = look_up_then_lose_the_race
    parent = second.start_sweep(space)
    assert first.experiment_id == second.experiment_id
    runs = {run.info.run_id: run for run in _runs(store)}
    assert set(runs) == {started["first"], parent}
    assert {runs[r].data.tags["sweeper.results"] for r in runs} == {str(tmp_path / "a"),
                                                                   str(tmp_path / "b")}
    for tracker in (first, second):
        tracker.end_sweep("FINISHED")


def test_a_run_created_twice_by_a_retried_request_is_deleted_at_the_end(tmp_path, store):
    # A server that committed create_run and died before replying gets the request again
    # from the client's retries: a second, empty run of the trial, RUNNING for ever. Made
    # here by creating that run the way the lost request did (same tags); end_sweep deletes
    # it and leaves the sweep's own runs.
    space, points = _space(2), tmp_path / "points"
    points.mkdir()
    tracker = MlflowTracker(store, tmp_path / "art", str(tmp_path))
    parent = tracker.start_sweep(space)
    trial = space.trials()[0]
    tracker.trial_started(trial)
    orphan = tracker.client.create_run(tracker.experiment_id, tags={
        "sweeper.role": "trial", "sweeper.sweep_hash": tracker.sweep_hash,
        "sweeper.trial_id": trial.trial_id, "mlflow.parentRunId": parent})
    _finish(tracker, trial, points)
    tracker.end_sweep("FINISHED")
    statuses = Counter((r.data.tags["sweeper.role"], r.info.status) for r in _runs(store))
    assert statuses == {("sweep", "FINISHED"): 1, ("trial", "FINISHED"): 1}
    assert MlflowClient(store).get_run(orphan.info.run_id).info.lifecycle_stage == "deleted"


def test_run_names_and_the_points_table_follow_the_axes():
    # Every axis of sweeper.axes.AXES has its place in a run's name and in its points table.
    assert sorted(NAME_AXES) == sorted(AXES)
    assert sorted(a for a in (*TABLE_FIRST, *TABLE_LAST) if a in AXES) == sorted(AXES)
    space = validate_space({
        "name": "names", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8,
        "axes": {"recurrent_scale": [0.5, 1.5], "seed": [0, 1], "seq_len": [20, 40],
                 "input_scale": [0.25, 1.0]},
        "vectorize": ["seed"], "metrics": ["lyapunov"]})
    varied = [a for a, values in space.axes.items() if len(values) > 1]
    names = {run_name(t, varied) for t in space.trials()}
    assert "input_scale=0.25, recurrent_scale=0.5, seq_len=20" in names and len(names) == 8
    trial = space.trials()[0]
    frame = pd.DataFrame({
        "sweep": "names", "trial_id": trial.trial_id, "point_id": ["p0", "p1"],
        "mlflow_run_id": None, "cell": "rnn_tanh", "hidden_size": 8, "task": "noise",
        "seed": [0, 1], "recurrent_scale": 0.5, "input_scale": 0.25, "seq_len": 20,
        "status": "ok", "region": "memory", "lyapunov_max": [-0.5, -0.4],
        "memory_capacity": np.nan, "lyapunov_spectrum": [[-0.5], [-0.4]]})
    assert points_table(frame).splitlines()[0] == (
        "recurrent_scale,input_scale,seed,region,status,lyapunov_max,"
        "cell,task,hidden_size,seq_len,point_id")
