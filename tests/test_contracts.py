"""One suite every tracker passes and one every result sink passes, as optuna holds every
storage to one suite: the in-memory implementations of :mod:`sweeper.sweep.contracts` and the
real ones (MLflow on a sqlite store, Parquet in a directory) keep the invariants the
contracts' docstrings state. The executors have their suite in ``test_executors.py``."""

from __future__ import annotations

import itertools
import logging
import pickle
import threading
from pathlib import Path

import pandas as pd
import pytest

from sweeper.adapters.mlflow_tracker import TRIAL, MlflowTracker
from sweeper.adapters.parquet_sink import ParquetSink
from sweeper.space import AXES, SearchSpace, Trial, point_id, validate_space
from sweeper.sweep import ResultSink, SinkInMemory, Tracker, TrackerInMemory

# Three trials (seeds 0, 1, 2) of two points each; nothing is measured.
TINY = {"name": "contracts", "task": "noise", "cell": "rnn_tanh", "hidden_size": 4,
        "seq_len": 10, "axes": {"recurrent_scale": [0.5, 2.0], "seed": [0, 1, 2]},
        "vectorize": ["recurrent_scale"], "metrics": ["lyapunov"]}


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return validate_space(TINY)


@pytest.fixture(scope="module")
def trials(space) -> list[Trial]:
    return sorted(space.trials(), key=lambda t: t.config["seed"])


def rows(space: SearchSpace, trial: Trial, run_id: str | None = None) -> pd.DataFrame:
    """A trial's rows as a worker writes them, with a made-up lambda_1 per point."""
    names = list(trial.vectorized)
    records = []
    for values in itertools.product(*(trial.vectorized[a] for a in names)):
        point = {a: trial.config[a] for a in AXES if a in trial.config}
        point.update(zip(names, values, strict=True))
        lam = point["recurrent_scale"] - 1.0 + 0.01 * point["seed"]
        records.append({"sweep": space.name, "trial_id": trial.trial_id,
                        "point_id": point_id(trial, point), "mlflow_run_id": run_id,
                        "cell": trial.config["cell"], "task": trial.config["task"], **point,
                        "status": "ok", "region": "chaotic" if lam > 0 else "forgetful",
                        "lyapunov_max": lam})
    frame = pd.DataFrame(records)
    frame["mlflow_run_id"] = frame["mlflow_run_id"].astype("str")
    return frame


# --- Trackers -------------------------------------------------------------------------------

class InMemory:
    """Trackers on one in-memory store."""

    def __init__(self, tmp_path: Path):
        self.store: dict = {}

    def new(self) -> Tracker:
        """A tracker on the store, as a new driver makes one."""
        return TrackerInMemory(self.store)

    def statuses(self) -> dict[str, str]:
        """Every run of the sweep in the store, by trial id ("sweep": the parent run)."""
        (sweep,) = self.store.values()
        return {"sweep": sweep.parent.status,
                **{trial_id: run.status for trial_id, run in sweep.trials.items()}}


class Mlflow:
    """MlflowTrackers on one sqlite store."""

    def __init__(self, tmp_path: Path):
        self.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        self.artifacts = tmp_path / "mlartifacts"

    def new(self) -> Tracker:
        return MlflowTracker(self.uri, self.artifacts, "results")

    def statuses(self) -> dict[str, str]:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.uri)
        experiment = client.get_experiment_by_name(TINY["name"])
        runs = client.search_runs([experiment.experiment_id])
        keys = [r.data.tags.get(TRIAL, "sweep") for r in runs]
        assert len(keys) == len(set(keys)), keys  # one run per trial, one parent
        return {key: r.info.status for key, r in zip(keys, runs, strict=True)}


@pytest.fixture(params=[InMemory, Mlflow], ids=["memory", "mlflow"])
def tracking(request, tmp_path):
    return request.param(tmp_path)


def test_a_resumed_sweep_reopens_its_parent_run(tracking, space):
    first = tracking.new()
    parent = first.start_sweep(space)
    assert tracking.statuses() == {"sweep": "RUNNING"}
    assert first.available()
    first.end_sweep("FAILED")
    assert tracking.statuses() == {"sweep": "FAILED"}
    second = tracking.new()
    assert second.start_sweep(space) == parent
    assert tracking.statuses() == {"sweep": "RUNNING"}
    second.end_sweep("FINISHED")
    assert tracking.statuses() == {"sweep": "FINISHED"}


def test_a_retried_or_resumed_trial_reuses_its_run(tracking, space, trials):
    first = tracking.new()
    first.start_sweep(space)
    run = first.trial_started(trials[0])
    first.trial_failed(trials[0], "RuntimeError: planted")
    assert tracking.statuses()[trials[0].trial_id] == "FAILED"
    assert first.trial_started(trials[0]) == run  # a retry
    assert tracking.statuses()[trials[0].trial_id] == "RUNNING"
    first.end_sweep("FAILED")
    second = tracking.new()
    second.start_sweep(space)
    assert second.trial_started(trials[0]) == run  # a resume
    second.trial_finished(trials[0], rows(space, trials[0], run), "points/part-0")
    second.end_sweep("FINISHED")
    assert tracking.statuses() == {"sweep": "FINISHED", trials[0].trial_id: "FINISHED"}


def test_is_finished_once_trial_finished_also_for_a_later_driver(tracking, space, trials):
    first, other = trials[0], trials[1]
    tracker = tracking.new()
    tracker.start_sweep(space)
    assert not tracker.is_finished(first)
    run = tracker.trial_started(first)
    tracker.trial_started(other)
    assert not tracker.is_finished(first)
    tracker.trial_finished(first, rows(space, first, run), "points/part-0")
    assert tracker.is_finished(first) and not tracker.is_finished(other)
    tracker.trial_failed(other, "RuntimeError: planted")
    assert not tracker.is_finished(other)
    tracker.end_sweep("FAILED")
    later = tracking.new()
    later.start_sweep(space)
    assert later.is_finished(first) and not later.is_finished(other)
    assert not later.is_finished(trials[2])  # never started
    later.end_sweep("FAILED")


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_end_sweep_leaves_no_run_running_also_none_an_earlier_driver_left(tracking, space,
                                                                         trials, status):
    dead = tracking.new()  # a driver that died: it never ends its sweep
    dead.start_sweep(space)
    dead.trial_started(trials[0])
    run = dead.trial_started(trials[1])
    dead.trial_finished(trials[1], rows(space, trials[1], run), "points/part-1")
    tracker = tracking.new()
    tracker.start_sweep(space)
    tracker.trial_started(trials[2])
    tracker.round_started(0, 6, 6)  # optional; never changes a run's status
    tracker.end_sweep(status)
    leftover = "KILLED" if status == "KILLED" else "FAILED"
    assert tracking.statuses() == {"sweep": status, trials[0].trial_id: leftover,
                                   trials[1].trial_id: "FINISHED",
                                   trials[2].trial_id: leftover}


# --- Result sinks ---------------------------------------------------------------------------

@pytest.fixture(params=["memory", "parquet"])
def sink(request, tmp_path) -> ResultSink:
    return SinkInMemory() if request.param == "memory" else ParquetSink(tmp_path / "out")


def _expected(trials: list[Trial]) -> dict[str, int]:
    return {t.trial_id: t.n_points for t in trials}


def test_read_of_materialize_is_exactly_the_trials_rows(sink, space, trials):
    written = {t.trial_id: rows(space, t, f"run-{i}") for i, t in enumerate(trials)}
    for trial in trials:
        location = sink.write(trial.trial_id, written[trial.trial_id])
        pd.testing.assert_frame_equal(sink.read(location), written[trial.trial_id])
    for trial in trials:
        pd.testing.assert_frame_equal(sink.read(sink.materialize(trial.trial_id)),
                                      written[trial.trial_id])


def test_writing_a_trial_again_supersedes_its_earlier_rows(sink, space, trials):
    trial = trials[0]
    sink.write(trial.trial_id, rows(space, trial))
    newer = rows(space, trial, "run-2")
    sink.write(trial.trial_id, newer)
    assert sink.recover(_expected(trials)) == {trial.trial_id}
    pd.testing.assert_frame_equal(sink.read(sink.materialize(trial.trial_id)), newer)


def test_recover_lists_only_verified_trials_and_sets_the_damaged_aside(sink, space, trials,
                                                                      caplog):
    good, short, foreign = trials
    sink.write(good.trial_id, rows(space, good))
    sink.write(short.trial_id, rows(space, short).iloc[:1])  # fewer rows than points
    sink.write(foreign.trial_id, rows(space, good))  # another trial's rows
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        assert sink.recover(_expected(trials)) == {good.trial_id}
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert short.trial_id in warned and foreign.trial_id in warned
    caplog.clear()
    assert sink.recover(_expected(trials)) == {good.trial_id}
    assert not caplog.records  # set aside once: the damaged rows are gone
    sink.write(short.trial_id, rows(space, short))  # computed again
    assert sink.recover(_expected(trials)) == {good.trial_id, short.trial_id}


def test_recover_answers_for_the_expected_trials_only(sink, space, trials):
    sink.write(trials[0].trial_id, rows(space, trials[0]))
    assert sink.recover({}) == set()
    assert sink.recover(_expected(trials[1:])) == set()
    assert sink.recover(_expected(trials)) == {trials[0].trial_id}


def test_a_pickled_sink_reads_what_was_written_before(sink, space, trials):
    written = rows(space, trials[0])
    location = sink.write(trials[0].trial_id, written)
    copy = pickle.loads(pickle.dumps(sink))  # as an executor sends it to a worker
    pd.testing.assert_frame_equal(copy.read(location), written)
    assert copy.recover(_expected(trials)) == {trials[0].trial_id}


def test_a_reader_sees_a_trials_rows_whole_while_they_are_rewritten(sink, space, trials):
    trial = trials[0]
    versions = [rows(space, trial, f"run-{i}") for i in range(2)]
    location = sink.write(trial.trial_id, versions[0])
    stop, seen, failures = threading.Event(), set(), []

    def read_until_stopped() -> None:
        while not stop.is_set():
            try:
                frame = sink.read(location)
            except Exception as exc:  # reported below
                failures.append(exc)
                return
            seen.add(tuple(frame["mlflow_run_id"]))

    reader = threading.Thread(target=read_until_stopped)
    reader.start()
    try:
        for i in range(40):
            sink.write(trial.trial_id, versions[i % 2])
    finally:
        stop.set()
        reader.join()
    assert failures == []
    assert seen <= {tuple(v["mlflow_run_id"]) for v in versions}  # never half of a write
