"""Sweeps end to end with real services: Parquet parts read back by pandas, pyarrow and
DuckDB; runs in a real sqlite-backed MLflow; the Ray path on an embedded Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from helpers import run_cli
from mlflow.tracking import MlflowClient

from sweeper.adapters.mlflow_tracker import MlflowTracker, points_query
from sweeper.adapters.parquet_sink import ParquetSink
from sweeper.adapters.run_id_file import RunIdFile
from sweeper.space import validate_space
from sweeper.sweep import LocalExecutor, RunIdsInProcess, run_sweep

SMOKE = {
    "name": "smoke",
    "task": "noise",
    "cell": "rnn_tanh",
    "hidden_size": 8,
    "seq_len": 30,
    "axes": {"recurrent_scale": {"linspace": [0.5, 2.5, 5]}, "input_scale": [0.5, 1.0],
             "seed": [0, 1]},
    "vectorize": ["recurrent_scale", "seed"],
    "metrics": ["lipschitz", "lyapunov"],
}
TESTS = Path(__file__).resolve().parent


def _env(**variables: str) -> dict[str, str]:
    """This environment with tests/ importable (the planted tasks), for `run` and Ray's
    workers."""
    return dict(os.environ, PYTHONPATH=str(TESTS), **variables)


def _check_results(out: Path, db: Path, space: dict, n_trials: int, n_points: int):
    frame = pd.read_parquet(out / "points")
    assert len(frame) == n_points
    assert frame.point_id.is_unique
    table = pq.read_table(out / "points")
    assert table.num_rows == n_points and set(table.column_names) == set(frame.columns)
    (count,) = duckdb.sql(f"select count(*), count(distinct point_id) from "
                          f"'{out}/points/*.parquet'").fetchall()
    assert count == (n_points, n_points)
    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name(space["name"])
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert len(parents) == 1 and len(children) == n_trials
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert set(frame.mlflow_run_id) == {r.info.run_id for r in children}
    _check_rows_named(children, out)
    # The trial's summary, each metric logged once (a rerun logs the same entries again).
    metrics = children[0].data.metrics
    assert "n_forgetful" in metrics and not any("/seed_" in key for key in metrics)
    assert all(len(client.get_metric_history(children[0].info.run_id, key)) == 1
               for key in metrics)
    return frame, children


def test_local_sweep_writes_parts_and_runs_exactly_once(tmp_path):
    space = validate_space(SMOKE)
    db = tmp_path / "mlflow.db"
    out = tmp_path / "out"

    def tracker():
        return MlflowTracker(f"sqlite:///{db}", out / "mlartifacts", str(out))

    counts = run_sweep(space, ParquetSink(out), tracker(), LocalExecutor("cpu"))
    assert counts == {"trials": 2, "skipped": 0, "done": 2, "failed": 0}
    frame, _ = _check_results(out, db, SMOKE, 2, 20)
    # The rows equal a direct measure() of the same points (same code path, same seeds).
    from sweeper import measure

    direct = measure("rnn_tanh", 8, recurrent_scale=space.axes["recurrent_scale"],
                     input_scale=[0.5], seed=[0, 1], seq_len=30,
                     metrics=["lipschitz", "lyapunov"], device="cpu")
    mine = frame[frame.input_scale == 0.5].sort_values(["seed", "recurrent_scale"])
    pd.testing.assert_series_equal(mine.lyapunov_max.reset_index(drop=True),
                                   direct.lyapunov_max, check_names=False)
    # Resume after losing one part: only that trial runs again; the other part is untouched.
    parts = sorted((out / "points").glob("part-*.parquet"))
    kept = parts[0].stat().st_mtime_ns
    parts[1].unlink()
    counts = run_sweep(space, ParquetSink(out), tracker(), LocalExecutor("cpu"), resume=True)
    assert counts == {"trials": 2, "skipped": 1, "done": 1, "failed": 0}
    assert parts[0].stat().st_mtime_ns == kept
    _check_results(out, db, SMOKE, 2, 20)  # the rerun reused its run: still 2 children


def test_failing_trial_is_recorded_failed_and_the_rest_finishes(tmp_path):
    space = validate_space(dict(SMOKE, task="failing_task:FailOnSeed",
                                vectorize=["recurrent_scale"],
                                axes={"recurrent_scale": [0.5, 1.0], "seed": [0, 1]}))
    db = tmp_path / "mlflow.db"
    out = tmp_path / "out"
    counts = run_sweep(space, ParquetSink(out),
                       MlflowTracker(f"sqlite:///{db}", out / "mlartifacts", str(out)),
                       LocalExecutor("cpu"), max_failures=1)
    assert counts["done"] == 1 and counts["failed"] == 1
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    status = {r.data.tags.get("sweeper.role"): r.info.status for r in runs
              if r.data.tags.get("sweeper.role") == "sweep"}
    assert status == {"sweep": "FAILED"}
    trial_status = sorted(r.info.status for r in runs if r.data.tags["sweeper.role"] == "trial")
    assert trial_status == ["FAILED", "FINISHED"]
    assert len(pd.read_parquet(out / "points")) == 2  # only the good trial's points
    assert not any(r.info.status == "RUNNING" for r in runs)


def test_ray_sweep_from_the_cli(tmp_path):
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(SMOKE))
    # Relative --out and the default relative sqlite URI, as `make run` uses them: workers
    # and the driver (which changes directory around Tune's fit) must agree on both.
    result = run_cli("run", path, "--out", "out", "--executor", "ray", cwd=tmp_path,
                     env=_env(), process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "executor: Ray (--executor ray)" in result.stderr
    assert "2 trials run" in result.stdout
    assert "20/20 points" in result.stderr
    _check_results(tmp_path / "out", tmp_path / "mlflow.db", SMOKE, 2, 20)
    assert not (tmp_path / "out" / "ray_results" / "mlflow.db").exists()
    again = run_cli("run", path, "--out", "out", cwd=tmp_path, env=_env(), process=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run_cli("run", path, "--out", "out", "--resume", "--executor", "ray",
                      cwd=tmp_path, env=_env(), process=True)
    assert resumed.returncode == 0 and "0 trials run, 2 already done" in resumed.stdout


def test_unreachable_tracking_server_exits_2_before_any_trial(tmp_path):
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(SMOKE))
    result = run_cli("run", path, "--out", tmp_path / "out", "--tracking-uri",
                     "http://127.0.0.1:9", cwd=tmp_path, env=_env(), process=True)
    assert result.returncode == 2
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "points").exists()


@pytest.mark.parametrize("bad", ["cell: elman", "hidden_size: 0"])
def test_invalid_file_exits_2_and_starts_nothing(tmp_path, bad):
    key, value = bad.split(": ")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(dict(SMOKE, **{key: yaml.safe_load(value)})))
    result = run_cli("run", path, "--out", tmp_path / "out", cwd=tmp_path, env=_env(),
                     process=True)
    assert result.returncode == 2 and key in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


def test_driver_killed_mid_sweep_then_resume_finishes_without_recomputing(tmp_path):
    import signal
    import time

    space = dict(SMOKE, hidden_size=24, seq_len=150, metrics=["lyapunov", "memory"],
                 axes={"recurrent_scale": [0.5, 1.5], "input_scale": [0.2, 0.4, 0.6, 0.8, 1.0,
                                                                      1.2, 1.4, 1.6]},
                 vectorize=["recurrent_scale"])
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "sweeper.cli", "run", str(path), "--out", str(out),
            "--executor", "local"]
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(list((out / "points").glob("part-*.parquet"))) < 2:
            assert driver.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finished = {p.name: (p.stat().st_mtime_ns, pd.read_parquet(p))
                for p in (out / "points").glob("part-*.parquet")}
    assert 2 <= len(finished) < 8
    resumed = run_cli("run", path, "--out", out, "--executor", "local", "--resume",
                      cwd=tmp_path, env=_env(), process=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # The finished trials were not computed again (the resume ran only the others), and
    # their rows, now compacted by the resume's aggregation, are those written before the
    # kill; a part written before its run id was published, and killed before the driver
    # wrote the id in, got it from the resume.
    assert f"{8 - len(finished)} trials run, {len(finished)} already done" in resumed.stdout
    points = pd.read_parquet(out / "points")
    for _, before in finished.values():
        after = points[points.trial_id == before.trial_id[0]].sort_values("point_id")
        before = before.sort_values("point_id")
        assert after.mlflow_run_id.notna().all()
        if before.mlflow_run_id.notna().all():
            assert after.mlflow_run_id.tolist() == before.mlflow_run_id.tolist()
        pd.testing.assert_frame_equal(
            after.drop(columns=["mlflow_run_id", "region"]).reset_index(drop=True),
            before.drop(columns=["mlflow_run_id", "region"]).reset_index(drop=True))
    _check_results_no_history(out, tmp_path / "mlflow.db", space["name"], 8, 16)


def _check_results_no_history(out, db, name, n_trials, n_points):
    frame = pd.read_parquet(out / "points")
    assert len(frame) == n_points and frame.point_id.is_unique
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert len(children) == n_trials
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    assert set(frame.mlflow_run_id) == {r.info.run_id for r in children}
    _check_rows_named(children, out)


def _check_rows_named(children, out: Path) -> None:
    """Each trial run says where its rows are: ``sweeper.results``, the results directory,
    and ``sweeper.points``, the ``sweeper query`` that selects them there by trial id (true
    also after ``aggregate`` gathered its part into a compacted file; test_overview runs
    it)."""
    frame = pd.read_parquet(out / "points")
    for run in children:
        tags = run.data.tags
        assert Path(tags["sweeper.results"]).resolve() == out.resolve()
        assert tags["sweeper.points"] == points_query(tags["sweeper.results"],
                                                      tags["sweeper.trial_id"])
        rows = frame[frame.trial_id == tags["sweeper.trial_id"]]
        assert len(rows) and set(rows.mlflow_run_id) == {run.info.run_id}


def _run_killing_workers(tmp_path: Path, task: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`sweeper run` on the embedded Ray of 2 trials (seeds 0, 1) of a task that SIGKILLs its
    worker; the task's markers (which seeds killed) in the returned folder."""
    space = dict(SMOKE, task=task, axes={"recurrent_scale": [0.5, 1.5], "seed": [0, 1]},
                 vectorize=["recurrent_scale"])
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    markers = tmp_path / "markers"
    markers.mkdir()
    result = run_cli("run", path, "--out", tmp_path / "out", "--executor", "ray",
                     cwd=tmp_path, env=_env(SWEEPER_TEST_MARKERS=str(markers)), process=True)
    return result, markers


def test_killed_ray_worker_is_retried_and_every_point_lands_once(tmp_path):
    # Each trial's first worker dies by SIGKILL inside measure(). A lost worker is the
    # infrastructure's failure, not the trial's: with the default --max-failures 0 its
    # trials run again. The sweep completes with every point exactly once, and without
    # Ray's actor traceback or Tune's "Trials did not complete".
    result, markers = _run_killing_workers(tmp_path, "failing_task:KillWorkerOnce")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in markers.iterdir()) == ["seed-0", "seed-1"]  # both died once
    for noise in ("Traceback", "Trials did not complete", "ActorDiedError"):
        assert noise not in result.stderr + result.stdout
    _check_results_no_history(tmp_path / "out", tmp_path / "mlflow.db", "smoke", 2, 4)


def test_a_trial_that_kills_every_worker_fails_after_three_losses(tmp_path):
    # A trial whose worker dies each time (out of memory, a crash in native code) is not run
    # for ever: after LOSSES_PER_TRIAL losses it is failed, the other trials finish, and
    # the map says it is incomplete.
    from sweeper.adapters.tune_trials import LOSSES_PER_TRIAL

    result, markers = _run_killing_workers(tmp_path, "failing_task:KillWorkerAlways")
    assert result.returncode == 1, result.stderr[-3000:]
    deaths = (markers / "deaths-1").read_text().split()
    assert len(deaths) == LOSSES_PER_TRIAL == 3
    assert "1 trials run, 0 already done, 1 failed, of 2" in result.stdout
    assert "note: the map holds 1 of the sweep's 2 trials: 1 failed or have not run" \
        in result.stderr
    assert "**Incomplete:** the map holds 1 of the sweep's 2 trials" in (
        tmp_path / "out" / "summary.md").read_text()
    meta = pq.read_schema(tmp_path / "out" / "region_map.parquet").metadata
    assert json.loads(meta[b"sweeper.trials"]) == {"measured": 1, "expected": 2}
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    failed = [r for r in runs if r.info.status == "FAILED"
              and r.data.tags["sweeper.role"] == "trial"]
    assert len(failed) == 1 and "its worker was lost 3 times" in failed[0].data.tags["error"]


def test_executor_failing_to_start_leaves_no_running_run(tmp_path):
    from sweeper.adapters.mlflow_tracker import MlflowTracker
    from sweeper.adapters.parquet_sink import ParquetSink
    from sweeper.space import validate_space
    from sweeper.sweep import LocalExecutor, run_sweep

    class BrokenStart(LocalExecutor):
        stopped = 0

        def start(self):
            raise RuntimeError("no workers today")

        def stop(self):
            BrokenStart.stopped += 1

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = validate_space(SMOKE)
    with pytest.raises(RuntimeError, match="no workers today"):
        run_sweep(space, ParquetSink(tmp_path / "out"), MlflowTracker(db, tmp_path / "art"),
                  BrokenStart())
    assert BrokenStart.stopped == 1
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name(SMOKE["name"]).experiment_id])
    assert runs and all(r.info.status == "FAILED" for r in runs)


def test_unreachable_ray_address_exits_2_before_anything_starts(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(SMOKE))
    result = run_cli("run", path, "--out", tmp_path / "out", "--address", f"127.0.0.1:{port}",
                     cwd=tmp_path, env=_env(), process=True)
    assert result.returncode == 2
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


def test_trials_compute_while_the_tracker_is_still_opening_runs(tmp_path):
    # The tracker may not open the last trial's run until a trial has started computing: a
    # sweep that waited for every run before computing would time out here.
    import threading

    space = validate_space(SMOKE)
    computing = threading.Event()
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    last = space.trials()[-1].trial_id

    class SlowTracker(MlflowTracker):
        def trial_started(self, trial):
            if trial.trial_id == last:
                assert computing.wait(120), "no trial computed before every run was open"
            return super().trial_started(trial)

    class Flagging(LocalExecutor):
        def run(self, *args, **kwargs):
            computing.set()
            return super().run(*args, **kwargs)

    out = tmp_path / "out"
    counts = run_sweep(space, ParquetSink(out), SlowTracker(db, out / "art", str(out)),
                       Flagging("cpu"))
    assert counts["done"] == 2 and computing.is_set()
    _check_results(out, tmp_path / "mlflow.db", SMOKE, 2, 20)


def test_tracking_failure_fails_the_sweep_but_not_the_computing(tmp_path):
    from sweeper.sweep import TrackingError

    space = validate_space(SMOKE)
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    last = space.trials()[-1].trial_id

    class Failing(MlflowTracker):
        def trial_started(self, trial):
            if trial.trial_id == last:
                raise RuntimeError("tracking store went away")
            return super().trial_started(trial)

    out = tmp_path / "out"
    with pytest.raises(TrackingError, match="tracking store went away") as failed:
        run_sweep(space, ParquetSink(out), Failing(db, out / "art", str(out)),
                  LocalExecutor("cpu"))
    assert failed.value.counts == {"trials": 2, "skipped": 0, "done": 2, "failed": 0}
    # Both trials were computed and written; the one whose run never opened has no run id.
    frame = pd.read_parquet(out / "points")
    assert len(frame) == 20 and set(frame.trial_id) == {t.trial_id for t in space.trials()}
    assert frame[frame.trial_id == last].mlflow_run_id.isna().all()
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name(SMOKE["name"]).experiment_id])
    assert runs and not any(r.info.status == "RUNNING" for r in runs)
    # A resume with a working tracker logs both from their parts, computing nothing.
    counts = run_sweep(space, ParquetSink(out), MlflowTracker(db, out / "art", str(out)),
                       LocalExecutor("cpu"), resume=True)
    assert counts == {"trials": 2, "skipped": 2, "done": 0, "failed": 0}
    _check_results_no_history(out, tmp_path / "mlflow.db", SMOKE["name"], 2, 20)


def test_run_ids_reach_workers_through_the_results_directory(tmp_path):
    import pickle

    driver = RunIdFile(tmp_path)
    worker = pickle.loads(pickle.dumps(driver))  # sent once, as an executor sends it
    assert worker.lookup("t1") is None  # nothing published yet: the worker does not wait
    driver.publish({"t1": "run-a"})
    assert worker.lookup("t1") == "run-a"
    assert worker.lookup("t2") is None
    driver.publish({})  # a new driver forgets an earlier one's ids
    assert worker.lookup("t1") is None
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow_runs.json"]  # no temporary left


def test_in_process_run_ids_reach_a_copy_as_they_were_when_it_was_sent():
    import pickle

    driver = RunIdsInProcess()
    driver.publish({"t1": "run-a"})
    worker = pickle.loads(pickle.dumps(driver))
    driver.publish({"t1": "run-a", "t2": "run-b"})
    assert driver.lookup("t2") == "run-b"  # the driver's own process sees it at once
    # A copy keeps what was published when it was sent: the driver writes t2's id later.
    assert worker.lookup("t1") == "run-a" and worker.lookup("t2") is None
    driver.publish({})  # a new driver forgets an earlier one's ids
    assert driver.lookup("t1") is None


def test_two_drivers_on_one_results_directory(tmp_path):
    import signal
    import time

    space = dict(SMOKE, hidden_size=24, seq_len=150, metrics=["lyapunov", "memory"],
                 axes={"recurrent_scale": [0.5, 1.5], "input_scale": [0.2, 0.6, 1.0, 1.4]},
                 vectorize=["recurrent_scale"])
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "sweeper.cli", "run", str(path), "--out", str(out),
            "--executor", "local"]
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "points").glob("part-*.parquet")):  # it holds the lock now
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        # A process of its own: the lock is held by another process, the first driver.
        second = run_cli(*args[3:], "--resume", cwd=tmp_path, env=_env(), process=True)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"is in use by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first driver was left alone
        assert first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    # Nothing of the refused driver got in: each point once, each run the first driver's.
    _check_results_no_history(out, tmp_path / "mlflow.db", "smoke", 4, 8)
