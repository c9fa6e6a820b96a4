"""A real `mlflow server` on 127.0.0.1 dies in the middle of a sweep. Computing goes on
without it; when it comes back the runs are logged, and when it stays down the parts are
complete, the exit code says so, and `--resume` logs the runs without recomputing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeper.adapters.mlflow_ui import start_ui, stop_ui
from sweeper.cli import EXIT_TRACKING_FAILED

SPACE = {"name": "outage", "task": "noise", "cell": "rnn_tanh", "hidden_size": 16,
         "seq_len": 100, "metrics": ["lyapunov", "memory"],
         "axes": {"recurrent_scale": [0.5, 1.5], "seed": [0, 1],
                  "input_scale": [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6]},
         "vectorize": ["recurrent_scale", "seed"]}
N_TRIALS, N_POINTS = 8, 32
OUTAGE_S = 10.0


@pytest.fixture
def server(tmp_path):
    """A tracking server over a sqlite store; ``kill()`` and ``restart()`` it on its port."""
    store = f"sqlite:///{tmp_path / 'server.db'}"
    MlflowClient(store).search_experiments()  # create the schema the server will serve
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Server:
        uri, db = f"http://127.0.0.1:{port}", store
        process = start_ui(store, port=port)[0]

        def kill(self):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process.stopped = True

        def restart(self):
            self.process = start_ui(store, port=port)[0]

    running = Server()
    try:
        yield running
    finally:
        stop_ui(running.process)


def _sweep(tmp_path: Path, server, env: dict[str, str], *extra: str) -> subprocess.Popen:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    return subprocess.Popen([sys.executable, "-m", "sweeper.cli", "run", "space.yaml", "--out",
                             "out", "--executor", "local", "--tracking-uri", server.uri,
                             *extra], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, **env))


def _parts(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "out" / "points").glob("part-*.parquet"))


def _wait_for_parts(tmp_path: Path, driver: subprocess.Popen, n: int) -> None:
    deadline = time.monotonic() + 300
    while len(_parts(tmp_path)) < n:
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


def _check_tracked(server, tmp_path: Path) -> pd.DataFrame:
    client = MlflowClient(server.db)
    runs = client.search_runs([client.get_experiment_by_name(SPACE["name"]).experiment_id])
    assert Counter((r.data.tags["sweeper.role"], r.info.status) for r in runs) == Counter(
        {("sweep", "FINISHED"): 1, ("trial", "FINISHED"): N_TRIALS})
    frame = pd.read_parquet(tmp_path / "out" / "points")
    assert len(frame) == N_POINTS and frame.point_id.is_unique
    children = {r.info.run_id for r in runs if r.data.tags["sweeper.role"] == "trial"}
    assert set(frame.mlflow_run_id) == children  # every row names its run
    return frame


def test_server_down_for_a_while_costs_no_computing_and_loses_nothing(tmp_path, server):
    # Backoff factor 1: the client's retries (0, 2, 4, ... 64 s apart) reach past the outage.
    driver = _sweep(tmp_path, server, {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"})
    try:
        _wait_for_parts(tmp_path, driver, 1)
        server.kill()
        killed = time.monotonic()
        _wait_for_parts(tmp_path, driver, N_TRIALS)  # computing did not wait for tracking
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))
        server.restart()
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, stderr[-3000:]
    assert f"{N_TRIALS} trials run" in stdout
    _check_tracked(server, tmp_path)


def test_server_down_for_good_keeps_the_parts_and_resume_logs_the_runs(tmp_path, server):
    # No client retries: the first failed call ends tracking for this driver.
    driver = _sweep(tmp_path, server, {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    try:
        _wait_for_parts(tmp_path, driver, 1)
        server.kill()
        _stdout, stderr = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == EXIT_TRACKING_FAILED, stderr[-3000:]
    assert "tracking failed" in stderr and "--resume" in stderr and "Traceback" not in stderr
    # Every trial's rows are on disk, compacted by the aggregation that ended the run.
    computed = pd.read_parquet(tmp_path / "out" / "points")
    assert len(computed) == N_POINTS and computed.point_id.is_unique
    assert computed.trial_id.nunique() == N_TRIALS
    server.restart()
    resumed = subprocess.run([sys.executable, "-m", "sweeper.cli", "run", "space.yaml",
                              "--out", "out", "--executor", "local", "--resume",
                              "--tracking-uri", server.uri], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"0 trials run, {N_TRIALS} already done" in resumed.stdout
    frame = _check_tracked(server, tmp_path)
    # Backfilled, not recomputed: every measured value is the one computed before.
    measured = [c for c in frame.columns if c != "mlflow_run_id"]
    key = "point_id"
    pd.testing.assert_frame_equal(
        frame[measured].sort_values(key).reset_index(drop=True),
        computed[measured].sort_values(key).reset_index(drop=True))
