"""A real two-node Ray cluster on this machine (token auth on) and a real MLflow tracking
server on 127.0.0.1 backed by sqlite: `sweeper submit` runs a sweep through the Jobs API,
with its results in a directory or on an S3 API (moto's server on 127.0.0.1, whose
environment every node has). The test starts everything it needs and stops exactly the
processes it started."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import run_cli
from mlflow.tracking import MlflowClient
from s3 import keys, moto_server, new_bucket, s3_env, s3_environment

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent
SMOKE = {"name": "cluster-smoke", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8,
         "seq_len": 30, "axes": {"recurrent_scale": [0.5, 1.5, 2.5], "input_scale": [0.5, 1.0]},
         "vectorize": ["recurrent_scale"], "metrics": ["lyapunov"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def _ours(marker: str) -> list[int]:
    """Pids of the processes whose command line names our private temp dir."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if int(p) != os.getpid()]


def _with_descendants(roots: list[int]) -> set[int]:
    """``roots`` and every process below them. Ray's dashboard and runtime-env agents do not
    name the temp dir, but a raylet that does started them; collected before anything is
    killed, as orphans are re-parented."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found and pid != os.getpid():
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    try:  # a zombie (ended, not yet reaped by its parent) runs nothing
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_and_wait(pids: set[int], timeout: float = 10) -> None:
    """SIGKILL each of ``pids`` (those already gone are skipped), then wait up to
    ``timeout`` seconds until none is alive."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server for the module: the clusters' nodes get its environment."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def cluster(tmp_path, s3_endpoint):
    # Short private dir: Ray's unix sockets live under it (path length limit).
    temp = tempfile.mkdtemp(prefix="rsw", dir="/tmp")
    # PYTHONPATH: the nodes' workers import the tests' own tasks and cells (failing_task,
    # usercell). The AWS_* variables: where an s3:// --out goes, as on a real cluster.
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               PATH=f"{BIN}:{os.environ['PATH']}", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=str(TESTS), **s3_environment(s3_endpoint))
    gcs, dash, mlport = _free_port(), _free_port(), _free_port()
    store = tmp_path / "server.db"
    mlflow = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
         "--port", str(mlport), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Two nodes on one machine: each needs its own agent port (both default to 52365, and
        # the loser of that race leaves the head without a job agent) and its own temp dir
        # (else one node's runtime-env cleanup deletes the other's unpacked job files).
        for node, args in (("head", ["--head", f"--port={gcs}", "--dashboard-host=127.0.0.1",
                                     f"--dashboard-port={dash}"]),
                           ("worker", [f"--address=127.0.0.1:{gcs}"])):
            subprocess.run([str(BIN / "ray"), "start", *args, "--node-ip-address=127.0.0.1",
                            "--num-cpus=1", f"--temp-dir={temp}/{node}",
                            f"--dashboard-agent-listen-port={_free_port()}",
                            "--disable-usage-stats"],
                           env=env, check=True, capture_output=True, timeout=180)
        _wait_http(f"http://127.0.0.1:{mlport}/health")
        yield {"env": env, "address": f"http://127.0.0.1:{dash}", "gcs": f"127.0.0.1:{gcs}",
               "tracking": f"http://127.0.0.1:{mlport}", "token": env["RAY_AUTH_TOKEN"],
               "temp": temp, "s3": s3_endpoint}
    finally:
        # The Ray client server names the GCS address instead of the temp dir.
        started = _with_descendants(_ours(temp) + _ours(f"address=[0-9.]*:{gcs} "))
        os.killpg(mlflow.pid, signal.SIGKILL)
        mlflow.wait(timeout=30)
        kill_and_wait(started)
        shutil.rmtree(temp, ignore_errors=True)
        assert not _ours(temp) and not _ours(f"address=[0-9.]*:{gcs} ")
        assert not [pid for pid in started if _alive(pid)], "Ray processes outlived the test"


def test_submit_to_a_two_node_cluster_with_token_auth(cluster, tmp_path):
    # Token auth is really on: the Jobs API refuses a request without the token.
    request = urllib.request.Request(f"{cluster['address']}/api/jobs/")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SMOKE))
    out = tmp_path / "shared" / "out"
    result = run_cli("submit", space, "--address", cluster["address"], "--tracking-uri",
                     cluster["tracking"], "--out", out, env=cluster["env"], process=True)
    Path(tmp_path / "submit.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert "SUCCEEDED" in result.stdout and "2 trials run" in result.stdout
    frame = pd.read_parquet(out / "points")
    assert len(frame) == 6 and frame.point_id.is_unique
    client = MlflowClient(cluster["tracking"])  # over HTTP, from the server's sqlite store
    runs = client.search_runs([client.get_experiment_by_name("cluster-smoke").experiment_id])
    assert sorted(r.data.tags.get("sweeper.role") for r in runs) == ["sweep", "trial", "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert set(frame.mlflow_run_id) == {r.info.run_id for r in runs
                                        if r.data.tags.get("sweeper.role") == "trial"}


def test_submit_with_results_on_s3_shares_nothing_but_the_bucket(cluster, tmp_path):
    # Nothing on disk is shared: the job's driver runs on the head, the trials on both
    # nodes, and every part, the record and Tune's state go to the bucket.
    bucket = new_bucket(cluster["s3"])
    uri = f"s3://{bucket}/sweeps/smoke"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SMOKE))
    result = run_cli("submit", space, "--address", cluster["address"], "--tracking-uri",
                     cluster["tracking"], "--out", uri, env=cluster["env"], process=True)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert "SUCCEEDED" in result.stdout and "2 trials run" in result.stdout
    stored = keys(cluster["s3"], bucket, "sweeps/smoke/")
    assert "sweeps/smoke/points/compact-000001.parquet" in stored
    assert "sweeps/smoke/region_map.parquet" in stored
    assert any(k.startswith("sweeps/smoke/ray_results/") for k in stored)
    assert "sweeps/smoke/.sweeper.lock" not in stored
    import sweeper

    with s3_env(cluster["s3"]):
        frame = sweeper.load(uri).points
    assert len(frame) == 6 and frame.point_id.is_unique
    client = MlflowClient(cluster["tracking"])
    runs = client.search_runs([client.get_experiment_by_name("cluster-smoke").experiment_id])
    trials = {r.info.run_id for r in runs if r.data.tags.get("sweeper.role") == "trial"}
    assert len(trials) == 2 and set(frame.mlflow_run_id) == trials


def test_run_joins_a_token_cluster_and_says_how_when_the_token_mode_is_missing(cluster,
                                                                              tmp_path):
    # A plug-in cell (tests/usercell.py, on the nodes' PYTHONPATH): the workers of both
    # nodes load it by its path, as the driver does.
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**SMOKE, "cell": "usercell:BoundedSoftsign"}))
    out, db = tmp_path / "out", tmp_path / "mlflow.db"
    command = ["run", space, "--address", cluster["gcs"], "--out", out, "--tracking-uri",
               f"sqlite:///{db}"]
    # Without RAY_AUTH_MODE=token the cluster refuses the driver: exit 2, with the fix named.
    plain = {k: v for k, v in cluster["env"].items() if k != "RAY_AUTH_MODE"}
    refused = run_cli(*command, env=plain, cwd=tmp_path, process=True)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"cannot join the Ray cluster at {cluster['gcs']}" in refused.stderr
    assert "RAY_AUTH_MODE=token" in refused.stderr
    assert not (out / "points").exists()
    # With it, the driver joins the two-node cluster and the sweep completes.
    joined = run_cli(*command, env=cluster["env"], cwd=tmp_path, process=True)
    assert joined.returncode == 0, joined.stderr[-3000:]
    frame = pd.read_parquet(out / "points")
    assert len(frame) == 6 and frame.point_id.is_unique
    assert frame["cell"].eq("usercell:BoundedSoftsign").all() and frame.status.eq("ok").all()
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("cluster-smoke").experiment_id])
    trials = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert set(frame.mlflow_run_id) == {r.info.run_id for r in trials}


#: Eight trials of about two seconds each (a slow input draw), one per input scale.
SLOW = {"name": "cluster-loss", "task": "failing_task:Slow", "task_params": {"delay": 2.0},
        "cell": "rnn_tanh", "hidden_size": 8, "seq_len": 30,
        "axes": {"recurrent_scale": [0.5, 1.5], "input_scale": [0.2, 0.4, 0.6, 0.8, 1.0,
                                                                 1.2, 1.4, 1.6]},
        "vectorize": ["recurrent_scale"], "metrics": ["lyapunov"]}


def _start_slow_sweep(cluster, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SLOW))
    out = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweeper.cli", "run", str(space), "--address", cluster["gcs"],
         "--out", str(out), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        env=cluster["env"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list((out / "points").glob("part-*.parquet"))) < 1:
        if driver.poll() is not None or time.monotonic() > deadline:
            os.killpg(driver.pid, signal.SIGKILL)
            pytest.fail(f"the sweep ended before a node could be lost: {driver.communicate()}")
        time.sleep(0.1)
    return driver, out


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _runs(db: Path) -> list:
    client = MlflowClient(f"sqlite:///{db}")
    return client.search_runs([client.get_experiment_by_name(SLOW["name"]).experiment_id])


def test_a_lost_worker_node_is_named_and_its_trials_run_on_the_head(cluster, tmp_path):
    # The worker node dies (its raylet and workers SIGKILLed) while it computes. Its trials
    # run again on the head, without counting against --max-failures (0): before, Ray's
    # ActorUnavailableError traceback and Tune's "Trials did not complete" were printed, the
    # trial failed and the map lacked its row.
    driver, out = _start_slow_sweep(cluster, tmp_path)
    _kill(_with_descendants(_ours(f"{cluster['temp']}/worker")))
    try:
        stdout, stderr = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    (tmp_path / "driver.log").write_text(stdout + stderr)
    assert driver.returncode == 0, stderr[-3000:]
    assert "8 trials run, 0 already done, 0 failed, of 8" in stdout
    lost = [line for line in stderr.splitlines() if "lost Ray node " in line]
    assert len(lost) == 1, stderr[-3000:]
    for noise in ("Traceback", "Trials did not complete", "ActorUnavailableError"):
        assert noise not in stdout + stderr
    frame = pd.read_parquet(out / "points")
    assert len(frame) == 16 and frame.point_id.is_unique
    assert sorted(frame.input_scale.unique()) == SLOW["axes"]["input_scale"]
    assert {r.info.status for r in _runs(tmp_path / "mlflow.db")} == {"FINISHED"}


def test_a_lost_cluster_is_noticed_and_the_sweep_says_how_to_finish(cluster, tmp_path):
    # The whole cluster dies (every process of both nodes SIGKILLed) during an --address
    # sweep. Before: after ~60 s Ray's core worker aborted the driver (exit 1, "Failed to
    # connect to GCS within 60 seconds"), with no record, and the runs stayed RUNNING.
    driver, out = _start_slow_sweep(cluster, tmp_path)
    _kill(_with_descendants(_ours(cluster["temp"]) + _ours(f"address=[0-9.]*:"
                                                          f"{cluster['gcs'].split(':')[1]} ")))
    lost_at = time.monotonic()
    try:
        stdout, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    waited = time.monotonic() - lost_at
    (tmp_path / "driver.log").write_text(stdout + stderr)
    assert driver.returncode == 4, stderr[-3000:]
    assert waited < 45, waited  # its own watch, well before Ray's 60 s abort
    done = len(list((out / "points").glob("part-*.parquet")))
    assert f"cluster at {cluster['gcs']} lost: {done} of 8 trials done; finish with: " \
           f"sweeper run {tmp_path / 'space.yaml'} --out {out} --resume" in stderr
    assert "Failed to connect to GCS" not in stderr and "Traceback" not in stderr
    assert json.loads((out / "sweep.json").read_text())["parent_run_id"]
    statuses = sorted((r.data.tags["sweeper.role"], r.info.status)
                      for r in _runs(tmp_path / "mlflow.db"))
    assert ("sweep", "KILLED") in statuses and all(s != "RUNNING" for _, s in statuses)
    assert statuses.count(("trial", "FINISHED")) <= done
    # Finished elsewhere (here: in-process, the cluster being gone), every point once and
    # every run FINISHED.
    resumed = run_cli("run", tmp_path / "space.yaml", "--out", out, "--resume", "--executor",
                      "local", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                      env=cluster["env"], cwd=tmp_path, process=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{8 - done} trials run, {done} already done" in resumed.stdout
    frame = pd.read_parquet(out / "points")
    assert len(frame) == 16 and frame.point_id.is_unique
    assert {r.info.status for r in _runs(tmp_path / "mlflow.db")} == {"FINISHED"}
