"""A real two-node Ray cluster on this machine (token auth on) and a real MLflow tracking
server on 127.0.0.1 backed by sqlite: `sweeper submit` runs a sweep through the Jobs API.
The test starts everything it needs and stops exactly the processes it started."""

from __future__ import annotations

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
from mlflow.tracking import MlflowClient

BIN = Path(sys.executable).parent
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


@pytest.fixture
def cluster(tmp_path):
    # Short private dir: Ray's unix sockets live under it (path length limit).
    temp = tempfile.mkdtemp(prefix="rsw", dir="/tmp")
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               PATH=f"{BIN}:{os.environ['PATH']}", RAY_USAGE_STATS_ENABLED="0")
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
               "tracking": f"http://127.0.0.1:{mlport}", "token": env["RAY_AUTH_TOKEN"]}
    finally:
        # The Ray client server names the GCS address instead of the temp dir.
        started = _with_descendants(_ours(temp) + _ours(f"address=[0-9.]*:{gcs} "))
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(mlflow.pid, signal.SIGKILL)
        mlflow.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
        deadline = time.monotonic() + 10
        while any(map(_alive, started)) and time.monotonic() < deadline:
            time.sleep(0.1)
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
    result = subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "submit", str(space), "--address",
         cluster["address"], "--tracking-uri", cluster["tracking"], "--out", str(out)],
        env=cluster["env"], cwd=Path(__file__).resolve().parents[1], capture_output=True,
        text=True, timeout=600)
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


def test_run_joins_a_token_cluster_and_says_how_when_the_token_mode_is_missing(cluster,
                                                                              tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SMOKE))
    out, db = tmp_path / "out", tmp_path / "mlflow.db"
    command = [sys.executable, "-m", "sweeper.cli", "run", str(space), "--address",
               cluster["gcs"], "--out", str(out), "--tracking-uri", f"sqlite:///{db}"]
    # Without RAY_AUTH_MODE=token the cluster refuses the driver: exit 2, with the fix named.
    plain = {k: v for k, v in cluster["env"].items() if k != "RAY_AUTH_MODE"}
    refused = subprocess.run(command, env=plain, cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"cannot join the Ray cluster at {cluster['gcs']}" in refused.stderr
    assert "RAY_AUTH_MODE=token" in refused.stderr
    assert not (out / "points").exists()
    # With it, the driver joins the two-node cluster and the sweep completes.
    joined = subprocess.run(command, env=cluster["env"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert joined.returncode == 0, joined.stderr[-3000:]
    frame = pd.read_parquet(out / "points")
    assert len(frame) == 6 and frame.point_id.is_unique
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("cluster-smoke").experiment_id])
    trials = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert set(frame.mlflow_run_id) == {r.info.run_id for r in trials}
