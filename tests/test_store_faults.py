"""Tracking stores that cannot take a sweep's runs: refused before anything starts (exit 2),
and a damaged sqlite store set aside and re-logged from the parts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "search_spaces" / "smoke.yaml")


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeper.cli", "run", SMOKE, "--executor",
                           "local", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize(("uri", "says"), [
    ("sqlite:///folder.db", "is not a file"),
    ("sqlite:////proc/sweeper-no-such/mlflow.db", "cannot create /proc/sweeper-no-such"),
])
def test_a_store_that_cannot_be_written_is_refused_before_anything_starts(tmp_path, uri, says):
    # Before, the whole sweep was computed, then it exited 3.
    (tmp_path / "folder.db").mkdir()
    result = _run(tmp_path, "--out", "out", "--tracking-uri", uri)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"--tracking-uri {uri}: " in result.stderr and says in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_damaged_store_says_so_and_is_relogged_from_the_parts(tmp_path):
    store = tmp_path / "runs.db"
    uri = f"sqlite:///{store}"
    assert _run(tmp_path, "--out", "out", "--tracking-uri", uri).returncode == 0
    before = pd.read_parquet(tmp_path / "out" / "points").sort_values("point_id")
    with open(store, "r+b") as f:  # a crash or a full disk mid-write: half the file
        f.truncate(os.path.getsize(store) // 2)
    for extra in ("-wal", "-shm"):
        Path(f"{store}{extra}").unlink(missing_ok=True)
    refused = _run(tmp_path, "--out", "out", "--tracking-uri", uri, "--resume")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"the tracking store {store} is damaged" in refused.stderr
    assert f"mv {store} {store}.damaged" in refused.stderr
    # Following the message: set it aside, run the same command again.
    store.rename(f"{store}.damaged")
    again = _run(tmp_path, "--out", "out", "--tracking-uri", uri, "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 trials run, 2 already done" in again.stdout
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert sorted((r.data.tags["sweeper.role"], r.info.status) for r in runs) == [
        ("sweep", "FINISHED"), ("trial", "FINISHED"), ("trial", "FINISHED")]
    # Nothing recomputed: the same points with the same values; only the run ids are new.
    after = pd.read_parquet(tmp_path / "out" / "points").sort_values("point_id")
    measured = [c for c in before.columns if c != "mlflow_run_id"]
    pd.testing.assert_frame_equal(after[measured].reset_index(drop=True),
                                  before[measured].reset_index(drop=True))
    assert set(after.mlflow_run_id) == {r.info.run_id for r in runs
                                        if r.data.tags["sweeper.role"] == "trial"}
