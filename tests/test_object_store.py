"""Sweeps whose results live on an object store: ``--out s3://bucket/prefix`` against a real S3
API (moto's server on 127.0.0.1, in a process of its own), with nothing but that API shared
between the driver and the workers. The same guarantees as on a directory: every point
exactly once, resumable after a SIGKILL, damaged parts set aside, one driver at a time, and
the points queryable (confined) and loadable from the URI."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import SMOKE_SPACE, eight_trials, run_cli
from s3 import keys, moto_server, new_bucket, s3_env

TESTS = Path(__file__).resolve().parent
SLOW = eight_trials("stored")
N_TRIALS, N_POINTS = 8, 32
SMOKE_POINTS = 12


@pytest.fixture(scope="module")
def requests(tmp_path_factory) -> Path:
    """The moto server's request log: one line per request."""
    return tmp_path_factory.mktemp("moto") / "requests.log"


@pytest.fixture(scope="module")
def s3(requests):
    """One moto server for the module, its environment set in this process (so children,
    and Ray's workers, inherit it). Yields the endpoint URL."""
    with moto_server(log=requests) as endpoint, s3_env(endpoint):
        yield endpoint


@pytest.fixture
def bucket(s3) -> str:
    return new_bucket(s3)


def _points(uri: str) -> pd.DataFrame:
    import sweeper

    return sweeper.load(uri).points


def _stored(s3: str, bucket: str, prefix: str) -> list[str]:
    """The keys under ``prefix``, relative to it, without pyarrow's empty directory markers
    (``points/``: its delete_file recreates the parent "directory", apache/arrow#36275)."""
    return [k[len(prefix) + 1:] for k in keys(s3, bucket, prefix) if not k.endswith("/")]


def test_a_sweep_on_s3_runs_aggregates_and_answers_queries(s3, bucket, tmp_path,
                                                           smoke_sweep, requests):
    uri = f"s3://{bucket}/sweeps/smoke"
    ran = run_cli("run", SMOKE_SPACE, "--out", uri, "--executor", "local", cwd=tmp_path,
                  process=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert f"points in {uri}/points" in ran.stdout
    # Nothing local but the MLflow store and its artifacts beside it: no directory "s3:".
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlartifacts", "mlflow.db"]
    stored = _stored(s3, bucket, "sweeps/smoke")
    # The run's aggregation compacted the two parts into one file, and released its lock.
    assert [k for k in stored if k.startswith("points/")] == ["points/compact-000001.parquet"]
    assert {"sweep.json", "region_map.parquet", "summary.md", "mlflow_runs.json"} <= set(stored)
    assert any(k.startswith("plots/") and k.endswith(".png") for k in stored)
    assert ".sweeper.lock" not in stored
    assert not any(".probe" in k or k.endswith(".tmp") for k in stored), stored
    # Each part was one PUT to its final key: no multipart upload, no copy, no rename.
    log = [line for line in requests.read_text().splitlines() if f"/{bucket}/" in line]
    assert not [line for line in log if "uploads" in line or "uploadId" in line]
    puts = [line for line in log if '"PUT ' in line and "/points/part-" in line]
    assert len(puts) == 2, puts  # the smoke sweep's two trials

    # The same numbers as the same sweep in a local directory (the run ids aside).
    local = _points(str(smoke_sweep))
    remote = _points(uri)
    assert len(remote) == SMOKE_POINTS and remote.point_id.is_unique
    measured = [c for c in local.columns if c != "mlflow_run_id"]
    pd.testing.assert_frame_equal(remote[measured], local[measured])

    # Queries read through pyarrow, confined as on a directory.
    answer = run_cli("query", "select count(*) as n, count(distinct point_id) as d from points",
                     "--results", uri, "--csv", process=False)
    assert answer.returncode == 0, answer.stderr
    assert pd.read_csv(io.StringIO(answer.stdout)).iloc[0].tolist() == [SMOKE_POINTS] * 2
    cells = run_cli("query", "select count(*) as n from region_map", "--results", uri,
                    "--csv", process=False)
    assert cells.returncode == 0, cells.stderr
    assert int(pd.read_csv(io.StringIO(cells.stdout)).n[0]) > 0
    escape = run_cli("query", "select * from read_csv('/etc/passwd')", "--results", uri,
                     process=False)
    assert escape.returncode == 2 and "--allow-files" in escape.stderr
    lazy = run_cli("query", "select count(*) as n from points", "--results", uri,
                   "--allow-files", "--csv", process=False)
    assert lazy.returncode == 0 and int(pd.read_csv(io.StringIO(lazy.stdout)).n[0]) == 12
    shown = run_cli("show", uri, process=False)
    assert shown.returncode == 0 and "recurrent_scale" in shown.stdout, shown.stderr
    drawn = run_cli("plot", "lyapunov_max", "--x", "recurrent_scale", "--results", uri,
                    process=False)
    assert drawn.returncode == 0, drawn.stderr
    figure = f"{uri}/plots/lyapunov_max_vs_recurrent_scale.png"
    assert figure in drawn.stdout
    assert "plots/lyapunov_max_vs_recurrent_scale.png" in _stored(s3, bucket, "sweeps/smoke")

    # A second aggregate takes the same lock and finds nothing more to compact.
    again = run_cli("aggregate", uri, "--no-plots", process=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [k for k in _stored(s3, bucket, "sweeps/smoke") if k.startswith("points/")] == [
        "points/compact-000001.parquet"]


def test_a_ray_sweep_on_s3_lands_every_point_once(s3, bucket, tmp_path):
    uri = f"s3://{bucket}/ray/smoke"
    ran = run_cli("run", SMOKE_SPACE, "--out", uri, "--executor", "ray", cwd=tmp_path,
                  process=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "2 trials run, 0 already done, 0 failed, of 2" in ran.stdout
    points = _points(uri)
    assert len(points) == SMOKE_POINTS and points.point_id.is_unique
    # Tune's own experiment state went to the bucket too, not to a local directory.
    assert any(k.startswith("ray_results/") for k in _stored(s3, bucket, "ray/smoke"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlartifacts", "mlflow.db"]


def _parts(s3: str, bucket: str, prefix: str) -> list[str]:
    return [k for k in _stored(s3, bucket, prefix) if k.startswith("points/part-")]


def test_a_killed_driver_and_a_truncated_part_resume_to_every_point_once(s3, bucket,
                                                                         tmp_path):
    import boto3

    uri, prefix = f"s3://{bucket}/killed", "killed"
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SLOW))
    driver = subprocess.Popen([sys.executable, "-m", "sweeper.cli", "run", "space.yaml",
                               "--out", uri, "--executor", "local"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(_parts(s3, bucket, prefix)) < 3:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no three parts in 300 s"
            time.sleep(0.1)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.communicate(timeout=60)
    parts = _parts(s3, bucket, prefix)
    assert 3 <= len(parts) < N_TRIALS
    assert ".sweeper.lock" in _stored(s3, bucket, prefix)  # left behind by the killed driver

    # Cut one part short, as an upload from a broken tool would leave it.
    client = boto3.client("s3")
    cut = f"{prefix}/{parts[0]}"
    body = client.get_object(Bucket=bucket, Key=cut)["Body"].read()
    client.put_object(Bucket=bucket, Key=cut, Body=body[:len(body) // 2])
    refused = run_cli("query", "select count(*) from points", "--results", uri, process=False)
    assert refused.returncode == 2 and parts[0].split("/")[-1] in refused.stderr

    resumed = run_cli("run", "space.yaml", "--out", uri, "--resume", "--executor", "local",
                      cwd=tmp_path, process=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = len(parts) - 1
    assert f"{N_TRIALS - done} trials run, {done} already done" in resumed.stdout
    assert "taking over" in resumed.stderr  # the dead driver's lock, named
    assert "damaged part" in resumed.stderr and "points/.corrupt/" in resumed.stderr
    points = _points(uri)
    assert len(points) == N_POINTS and points.point_id.is_unique
    corrupt = [k for k in _stored(s3, bucket, prefix) if k.startswith("points/.corrupt/")]
    assert len(corrupt) == 1 and parts[0].split("/")[-1] in corrupt[0]


def test_a_second_driver_on_the_same_uri_is_refused(s3, bucket, tmp_path):
    from sweeper.adapters.object_lock import object_lock

    uri = f"s3://{bucket}/busy"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with object_lock(uri, command="the first driver"):
            held.set()
            release.wait(120)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(60)
        second = run_cli("run", SMOKE_SPACE, "--out", uri, "--executor", "local", cwd=tmp_path,
                         process=True)
    finally:
        release.set()
        holder.join(60)
    assert second.returncode == 2
    assert f"pid {os.getpid()}" in second.stderr and "the first driver" in second.stderr
    assert not [k for k in _stored(s3, bucket, "busy") if k.startswith("points/")]
