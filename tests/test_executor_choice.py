"""Where `sweeper run` computes: ``--executor auto`` (the default) runs a small sweep
in-process and any other on Ray (:mod:`sweeper.workload`, its rule and its compute estimate);
the Ray executor joins a Ray that `ray start` left running on this machine instead of
starting one, starts its own past a record left by a Ray that has stopped, and keeps Ray's
token-authentication notice out of the console. Real Ray processes, stopped by pid."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import run_cli
from test_cluster import _alive, _free_port, _ours, _with_descendants, kill_and_wait

from sweeper.adapters.ray_executor import ray_address_file, running_local_ray
from sweeper.cell_shapes import cell_shape
from sweeper.space import validate_space
from sweeper.workload import (
    AUTO_LOCAL_SECONDS,
    ExecutorChoice,
    choose_executor,
    compute_seconds,
    trial_seconds,
)

BIN = Path(sys.executable).parent
TINY = {"name": "choice", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8, "seq_len": 30,
        "axes": {"recurrent_scale": [0.5, 2.0], "input_scale": [0.5, 1.0], "seed": [0]},
        "vectorize": ["recurrent_scale", "seed"], "metrics": ["lyapunov"]}
BANNER = "Token authentication is enabled"


def test_the_rule_names_its_reason():
    assert choose_executor("ray", None, 1, 0.1) == ExecutorChoice("ray", "--executor ray")
    assert choose_executor("local", "10.0.0.5:6379", 50, 1e4).name == "local"
    assert choose_executor("auto", "10.0.0.5:6379", 1, 0.1) == ExecutorChoice(
        "ray", "--address 10.0.0.5:6379")  # a cluster is asked for by name
    assert choose_executor("auto", None, 1, 1e4) == ExecutorChoice(
        "local", "one trial: nothing to run side by side")
    small = choose_executor("auto", None, 40, AUTO_LOCAL_SECONDS - 0.5)
    assert small.name == "local" and "9.5 s of compute, under 10 s" in small.reason
    large = choose_executor("auto", None, 40, 600)
    assert large == ExecutorChoice("ray", "40 trials, about 10 min of compute, run side by side")
    refined = choose_executor("auto", None, None, 30)  # rounds unknown in advance
    assert refined == ExecutorChoice("ray", "a refined sweep, about 30 s of compute, run side "
                                            "by side")
    with pytest.raises(ValueError, match="executor must be auto, ray or local, got 'dask'"):
        choose_executor("dask", None, 1, 1.0)


def test_the_estimate_grows_with_what_a_sweep_computes():
    rnn = cell_shape("rnn_tanh")
    one = trial_seconds(rnn, 1, 64, 200, 32, ["lyapunov"])
    assert trial_seconds(rnn, 1, 64, 200, 128, ["lyapunov"]) > one  # more points
    assert trial_seconds(rnn, 1, 256, 200, 32, ["lyapunov"]) > one  # larger H
    assert trial_seconds(rnn, 1, 64, 1000, 32, ["lyapunov"]) > one  # longer sequences
    assert trial_seconds(cell_shape("lstm"), 1, 64, 200, 32, ["lyapunov"]) > one  # gated
    with_memory = trial_seconds(rnn, 1, 64, 200, 32, ["lyapunov", "memory"])
    assert with_memory > one
    # Training runs 300 optimiser steps over the sequence: minutes where dynamics is seconds.
    assert trial_seconds(rnn, 2, 64, 200, 32, ["training"]) > 10 * with_memory
    # A sweep is its trials: twice the input scales, twice the compute.
    doubled = dict(TINY, axes=dict(TINY["axes"], input_scale=[0.5, 1.0, 1.5, 2.0]))
    assert compute_seconds(validate_space(doubled)) == pytest.approx(
        2 * compute_seconds(validate_space(TINY)))


def test_run_and_validate_say_where_a_small_sweep_computes(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(TINY))
    checked = run_cli("validate", path, process=False)
    assert checked.returncode == 0
    assert "sweeper run: in-process (about " in checked.stdout
    result = run_cli("run", path, "--out", tmp_path / "out", "--tracking-uri",
                     f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path, process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "executor: in-process (about " in result.stderr
    assert "starting Ray" not in result.stderr and BANNER not in result.stderr
    assert len(pd.read_parquet(tmp_path / "out" / "points")) == 4
    # The resume hint of an auto sweep needs no --executor: auto decides the same again.
    again = run_cli("run", path, "--out", tmp_path / "out", "--resume", "--tracking-uri",
                    f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path, process=True)
    assert again.returncode == 0 and "0 trials run, 2 already done" in again.stdout


@pytest.fixture
def ray_here():
    """A Ray started with `ray start --head` (token auth on) whose address record lies where
    Ray looks for it when ``RAY_TMPDIR`` names ``parent``; stopped by pid afterwards."""
    parent = tempfile.mkdtemp(prefix="rsj", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=parent,
               PATH=f"{BIN}:{os.environ['PATH']}")
    try:
        subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}",
                        "--include-dashboard=false", "--num-cpus=2",
                        f"--temp-dir={parent}/ray", "--node-ip-address=127.0.0.1",
                        f"--dashboard-agent-listen-port={_free_port()}",
                        "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=180)
        yield {"parent": parent, "port": port, "env": env}
    finally:
        started = _with_descendants(_ours(parent) + _ours(f"address=[0-9.]*:{port} "))
        kill_and_wait(started)
        shutil.rmtree(parent, ignore_errors=True)
        assert not [pid for pid in started if _alive(pid)], "Ray processes outlived the test"


def test_ray_joins_the_ray_running_here_and_starts_its_own_past_a_stale_record(ray_here,
                                                                               tmp_path):
    env = {k: v for k, v in ray_here["env"].items() if k != "RAY_AUTH_MODE"}  # as a user's
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = ray_here["parent"]
    try:
        assert ray_address_file() == Path(ray_here["parent"]) / "ray" / "ray_current_cluster"
        found = running_local_ray()  # the address Ray recorded: this machine's, the head's port
        assert found is not None and found.endswith(f":{ray_here['port']}")
    finally:
        os.environ.pop("RAY_TMPDIR") if saved is None else os.environ.update(RAY_TMPDIR=saved)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(TINY))
    head = _ours(f"{ray_here['parent']}/ray/session")
    joined = run_cli("run", path, "--out", tmp_path / "joined", "--executor", "ray",
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path,
                     env=env, process=True)
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert f"joining the Ray running on this machine at {found}" in joined.stderr
    assert BANNER not in joined.stderr  # authentication on, its notice left out
    assert len(pd.read_parquet(tmp_path / "joined" / "points")) == 4
    assert head and all(map(_alive, head))  # the sweep left the Ray it found running

    # The Ray stops without `ray stop`: its record stays. A sweep starts a Ray of its own.
    kill_and_wait(_with_descendants(_ours(ray_here["parent"])))
    assert not any(map(_alive, head))
    assert (Path(ray_here["parent"]) / "ray" / "ray_current_cluster").is_file()
    started = run_cli("run", path, "--out", tmp_path / "started", "--executor", "ray",
                      "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path,
                      env=env, process=True, timeout=300)
    assert started.returncode == 0, started.stderr[-3000:]
    assert "starting Ray" in started.stderr and "joining" not in started.stderr
    assert BANNER not in started.stderr
    assert len(pd.read_parquet(tmp_path / "started" / "points")) == 4
