"""Stopping `sweeper run` on purpose: Ctrl-C (SIGINT to the whole process group, as a
terminal sends it) with the Ray executor, SIGTERM to the driver alone with the in-process
executor, and SIGTERM to `sweeper ui`. Real Ray, sqlite MLflow and Parquet throughout."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import eight_trials, run_cli
from mlflow.tracking import MlflowClient

TESTS = Path(__file__).resolve().parent
SPACE = eight_trials("interrupted")
N_TRIALS, N_POINTS = 8, 32


def _pids(name: str) -> set[int]:
    found = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return {int(p) for p in found.stdout.split()}


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return subprocess.Popen([sys.executable, "-m", "sweeper.cli", "run", "space.yaml", "--out",
                             "out", *extra], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(TESTS)))


def _stop_after_parts(driver: subprocess.Popen, out: Path, parts: int, send) -> tuple:
    deadline = time.monotonic() + 300
    while len(list((out / "points").glob("part-*.parquet"))) < parts:
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            pytest.fail(f"the sweep ended before it could be stopped: {driver.communicate()}")
        time.sleep(0.05)
    send()
    try:
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    return driver.returncode, stdout, stderr


def _statuses(db: Path) -> Counter:
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name(SPACE["name"]).experiment_id])
    return Counter((r.data.tags["sweeper.role"], r.info.status) for r in runs)


def _check_interrupted(tmp_path: Path, code: int, stdout: str, stderr: str, exit_code: int,
                       db: str = "mlflow.db", options: str = ""):
    out = tmp_path / "out"
    parts = sorted((out / "points").glob("part-*.parquet"))
    assert code == exit_code, stderr[-3000:]
    # The hint repeats every option that matters: the store above all (without it, the
    # resume would log into ./mlflow.db and leave the real store's runs KILLED).
    assert f"interrupted: {len(parts)} of {N_TRIALS} trials done; finish with: sweeper run " \
           f"space.yaml --out out --resume --tracking-uri sqlite:///{tmp_path / db}{options}\n" \
           in stderr
    for noise in ("Tuner.restore", "Failed to fetch metrics", "Traceback", "SIGTERM received"):
        assert noise not in stdout + stderr
    assert not (out / "region_map.parquet").exists() and not (out / "plots").exists()
    assert 2 <= len(parts) < N_TRIALS
    # Parts on disk are FINISHED runs (also those the executor never reported), every other
    # trial run opened so far is KILLED, none is left RUNNING. (The tracker opens the runs
    # while the trials compute; a stop can come before it has opened all eight.)
    statuses = _statuses(tmp_path / db)
    assert statuses[("sweep", "KILLED")] == 1
    assert statuses[("trial", "FINISHED")] == len(parts)
    assert len(parts) + statuses[("trial", "KILLED")] <= N_TRIALS
    assert set(statuses) <= {("sweep", "KILLED"), ("trial", "FINISHED"), ("trial", "KILLED")}
    return {p.name: pd.read_parquet(p) for p in parts}


def _check_resumed(tmp_path: Path, finished: dict[str, pd.DataFrame]):
    resumed = run_cli("run", "space.yaml", "--out", "out", "--resume", "--executor", "local",
                      cwd=tmp_path, process=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{N_TRIALS - len(finished)} trials run, {len(finished)} already done" \
        in resumed.stdout
    frame = pd.read_parquet(tmp_path / "out" / "points")
    assert len(frame) == N_POINTS and frame.point_id.is_unique
    # Not recomputed (the counts above), and the rows written before the stop are those the
    # resume's aggregation compacted (a run id may have been written in since).
    measured = [c for c in frame.columns if c not in ("mlflow_run_id", "region")]
    for before in finished.values():
        after = frame[frame.trial_id == before.trial_id[0]]
        pd.testing.assert_frame_equal(
            after[measured].sort_values("point_id").reset_index(drop=True),
            before[measured].sort_values("point_id").reset_index(drop=True))
    assert _statuses(tmp_path / "mlflow.db") == Counter({("sweep", "FINISHED"): 1,
                                                         ("trial", "FINISHED"): N_TRIALS})


def test_ctrl_c_on_a_ray_sweep_stops_ray_and_says_how_to_finish(tmp_path):
    raylets = _pids("raylet")
    driver = _start(tmp_path, "--executor", "ray")  # the Ray executor, embedded
    # The terminal sends SIGINT to the whole foreground process group, Ray's processes too.
    code, stdout, stderr = _stop_after_parts(
        driver, tmp_path / "out", 2, lambda: os.killpg(driver.pid, signal.SIGINT))
    finished = _check_interrupted(tmp_path, code, stdout, stderr, 130,
                                  options=" --executor ray")
    assert _pids("raylet") <= raylets  # the embedded Ray is gone
    _check_resumed(tmp_path, finished)


def test_sigterm_to_the_driver_alone_stops_a_local_sweep(tmp_path):
    # What --resume does after a stop is the same for both signals: checked once, above.
    # Here a store of its own: the printed hint, followed word for word, finishes the sweep
    # in that store (before, it dropped --tracking-uri and logged into ./mlflow.db).
    driver = _start(tmp_path, "--executor", "local", "--tracking-uri", "sqlite:///custom.db")
    code, stdout, stderr = _stop_after_parts(driver, tmp_path / "out", 2,
                                             lambda: driver.send_signal(signal.SIGTERM))
    _check_interrupted(tmp_path, code, stdout, stderr, 143, db="custom.db",
                       options=" --executor local")
    hint = shlex.split(stderr.split("finish with: ", 1)[1].splitlines()[0])
    assert hint[0] == "sweeper"
    resumed = run_cli(*hint[1:], cwd=tmp_path, process=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _statuses(tmp_path / "custom.db") == Counter({("sweep", "FINISHED"): 1,
                                                         ("trial", "FINISHED"): N_TRIALS})
    assert not (tmp_path / "mlflow.db").exists()
    # Without --tracking-uri, a --resume into this sweep is refused, naming both stores.
    bare = run_cli("run", "space.yaml", "--out", "out", "--resume", "--executor", "local",
                   cwd=tmp_path, process=True)
    assert bare.returncode == 2
    assert f"started with --tracking-uri sqlite:///{tmp_path / 'custom.db'}" in bare.stderr
    assert f"would log into sqlite:///{tmp_path / 'mlflow.db'}" in bare.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_sigterm_to_sweeper_ui_stops_its_mlflow_server(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # a store to serve
    ui = subprocess.Popen([sys.executable, "-m", "sweeper.cli", "ui", "--tracking-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(port)],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True)
    try:
        line = ui.stdout.readline()  # "MLflow UI for ...: http://127.0.0.1:PORT"
        assert "MLflow UI for" in line, ui.stderr.read()[-3000:] if ui.poll() else line
        pattern = f"mlflow server.*{tmp_path / 'mlflow.db'}"
        servers = subprocess.run(["pgrep", "-f", pattern], capture_output=True,
                                 text=True).stdout.split()
        assert servers
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
        left = subprocess.run(["pgrep", "-f", pattern], capture_output=True,
                              text=True).stdout.split()
        assert not left, "the mlflow server outlived `sweeper ui`"
        for pid in map(int, servers):  # nor any worker of its process group
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
