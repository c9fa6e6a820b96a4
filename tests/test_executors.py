"""One suite every executor passes, as optuna holds every storage to one suite: the in-process
LocalExecutor (the reference) and RayTuneExecutor, on one embedded Ray for the module, report
the same trials the same way. Same parts; a failing trial tried ``max_failures + 1`` times,
then reported once with the same message; an input error reported at once, never retried; an
interrupt inside a report ends the run; ``stop`` idempotent and a stopped executor usable
again. The invariants are those of :class:`sweeper.sweep.contracts.Executor`."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pandas as pd
import pytest
from failing_task import FailOnSeed

from sweeper.adapters.parquet_sink import ParquetSink
from sweeper.adapters.ray_executor import RayTuneExecutor
from sweeper.adapters.run_id_file import RunIdFile
from sweeper.errors import SweeperInputError
from sweeper.space import Trial, validate_space
from sweeper.sweep import Executor, LocalExecutor, TrialWork, attempt

TESTS = Path(__file__).resolve().parent
# Two trials (seed 0 and seed 1) of two points each: a second or so of measuring in all.
TINY = {"name": "executors", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8,
        "seq_len": 30, "axes": {"recurrent_scale": [0.5, 2.0], "seed": [0, 1]},
        "vectorize": ["recurrent_scale"], "metrics": ["lipschitz", "lyapunov"]}


@dataclasses.dataclass(frozen=True)
class CountedFailure(FailOnSeed):
    """FailOnSeed that leaves a file in the directory ``attempts`` at each attempt of the bad
    seed (attempts are counted across processes), and fails with an input error instead of a
    RuntimeError when ``input_error``."""

    name = "counted_failure"
    attempts: str = ""
    input_error: bool = False

    def inputs(self, seed, n_trajectories, steps):
        if seed == self.bad_seed:
            (Path(self.attempts) / uuid.uuid4().hex).touch()
            if self.input_error:
                raise SweeperInputError(f"planted input error for seed {seed}")
        return super().inputs(seed, n_trajectories, steps)


@pytest.fixture(scope="module", params=["local", "ray"])
def kind(request):
    """Which executor; for Ray, one embedded Ray for the whole module (an executor never stops
    a Ray it did not start, so the tests share it)."""
    if request.param == "local":
        yield "local"
        return
    import ray

    with pytest.MonkeyPatch.context() as patch:
        # Ray's workers inherit this environment: they load the planted tasks from tests/.
        patch.setenv("PYTHONPATH", os.pathsep.join(
            p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p))
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, configure_logging=False)
    try:
        yield "ray"
    finally:
        ray.shutdown()


@pytest.fixture
def executor(kind, tmp_path) -> Executor:
    if kind == "local":
        return LocalExecutor("cpu")
    return RayTuneExecutor(storage_path=tmp_path / "ray_results", device="cpu")


class Reports:
    """What an executor reported, in order: (trial id, location or message)."""

    def __init__(self) -> None:
        self.done: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []

    def on_done(self, trial: Trial, location: str) -> None:
        self.done.append((trial.trial_id, location))

    def on_error(self, trial: Trial, message: str) -> None:
        self.failed.append((trial.trial_id, message))


def _work(tmp_path: Path, name: str = "out", **changes) -> TrialWork:
    run_ids = RunIdFile(tmp_path)
    return TrialWork(validate_space(dict(TINY, **changes)), ParquetSink(tmp_path / name),
                     run_ids)


def _run(executor: Executor, work: TrialWork, max_failures: int = 0) -> Reports:
    reports = Reports()
    executor.run(work, work.space.trials(), reports.on_done, reports.on_error, max_failures)
    executor.stop()
    return reports


def _planted(tmp_path: Path, input_error: bool) -> tuple[TrialWork, Path, Trial, Trial]:
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    work = _work(tmp_path, task="test_executors:CountedFailure",
                 task_params={"attempts": str(attempts), "input_error": input_error})
    good, bad = sorted(work.space.trials(), key=lambda t: t.config["seed"])
    return work, attempts, good, bad


def test_parts_equal_the_trials_computed_in_this_process(executor, tmp_path):
    work = _work(tmp_path)
    first, second = work.space.trials()
    work.run_ids.publish({first.trial_id: "run-a"})  # the second's id is not published yet
    reports = _run(executor, work)
    assert reports.failed == []
    assert sorted(reports.done) == sorted((t.trial_id, work.sink.materialize(t.trial_id))
                                          for t in (first, second))
    reference = dataclasses.replace(work, sink=ParquetSink(tmp_path / "reference"))
    for trial in (first, second):
        expected = reference.sink.read(reference.compute_part(trial, "cpu"))
        pd.testing.assert_frame_equal(work.sink.read(work.sink.materialize(trial.trial_id)),
                                      expected)
    assert work.sink.read(work.sink.materialize(first.trial_id)).mlflow_run_id.eq("run-a").all()
    assert work.sink.read(work.sink.materialize(second.trial_id)).mlflow_run_id.isna().all()


def test_a_failing_trial_is_tried_max_failures_plus_one_times_then_reported_once(executor,
                                                                               tmp_path):
    work, attempts, good, bad = _planted(tmp_path, input_error=False)
    reports = _run(executor, work, max_failures=1)
    assert reports.done == [(good.trial_id, work.sink.materialize(good.trial_id))]
    assert reports.failed == [(bad.trial_id, "RuntimeError: planted failure for seed 1")]
    assert len(list(attempts.iterdir())) == 2
    assert not Path(work.sink.materialize(bad.trial_id)).exists()


def test_an_input_error_is_reported_at_once_and_never_retried(executor, tmp_path):
    work, attempts, good, bad = _planted(tmp_path, input_error=True)
    reports = _run(executor, work, max_failures=2)
    assert reports.done == [(good.trial_id, work.sink.materialize(good.trial_id))]
    assert reports.failed == [(bad.trial_id,
                               "SweeperInputError: planted input error for seed 1")]
    assert len(list(attempts.iterdir())) == 1
    assert not Path(work.sink.materialize(bad.trial_id)).exists()


def test_attempt_says_how_a_trial_ended_as_a_named_pair(tmp_path):
    # What every executor runs per trial (in-process here; in a worker on Ray).
    work, attempts, good, bad = _planted(tmp_path, input_error=False)
    done = attempt(work, good, "cpu", max_failures=0)
    assert done.ok and done.outcome == work.sink.materialize(good.trial_id)
    ok, outcome = attempt(work, bad, "cpu", max_failures=1)  # unpacks as (ok, outcome)
    assert (ok, outcome) == (False, "RuntimeError: planted failure for seed 1")
    assert len(list(attempts.iterdir())) == 2


def test_stop_is_idempotent_and_a_stopped_executor_runs_again(executor, tmp_path):
    executor.stop()  # before start: nothing to release
    executor.start()
    executor.stop()
    executor.stop()
    work = _work(tmp_path, axes={"recurrent_scale": [0.5, 2.0], "seed": [0]})  # one trial
    (trial,) = work.space.trials()
    nothing = Reports()
    executor.run(work, [], nothing.on_done, nothing.on_error, 0)
    assert nothing.done == nothing.failed == []
    for _ in range(2):  # run, stop, run again
        assert _run(executor, work).done == [(trial.trial_id,
                                              work.sink.materialize(trial.trial_id))]


# Last in the module: after an interrupt a Ray run leaves its trials' workers to the driver's
# stop (Ray's shutdown), which here is the fixture's, at the end of the module.
def test_rounds_come_one_after_another_each_after_every_report(executor, tmp_path):
    """run_rounds asks for the next round only once every trial of the round before was
    reported, and stops at the first empty round (on Ray: all in one Tuner). Before the
    interrupt test: an interrupted Tuner leaves its trial actors on the shared Ray."""
    work = _work(tmp_path)
    first, second = work.space.trials()
    reports = Reports()
    asked: list[list[str]] = []
    rounds = [[first], [second], []]

    def next_round() -> list[Trial]:
        asked.append([trial_id for trial_id, _ in reports.done])
        return rounds[len(asked) - 1]

    executor.run_rounds(work, next_round, reports.on_done, reports.on_error, 0)
    executor.stop()
    assert asked == [[], [first.trial_id], [first.trial_id, second.trial_id]]
    assert reports.failed == []


def test_an_interrupt_inside_a_report_ends_the_run(executor, tmp_path):
    work = _work(tmp_path)
    reported = []

    def interrupted(trial: Trial, location: str) -> None:
        reported.append(trial.trial_id)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        executor.run(work, work.space.trials(), interrupted, interrupted, 0)
    executor.stop()
    assert len(reported) == 1

