"""Many small trials through the real stack: 500 trials on an embedded Ray, tracked in sqlite
MLflow, every point landing exactly once. Timings belong to benchmarks/bench_sweep.py; this
checks only that nothing is lost or doubled when trials are packed into Tune trials."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from sweeper.space import validate_space

# 20 input scales x 25 seeds = 500 trials of 2 points (recurrent_scale batched): a tiny
# network, so the sweep's cost is its orchestration.
MANY = {"name": "many", "task": "noise", "cell": "rnn_tanh", "hidden_size": 4, "seq_len": 20,
        "axes": {"recurrent_scale": [0.5, 2.0], "input_scale": {"linspace": [0.1, 2.0, 20]},
                 "seed": list(range(25))},
        "vectorize": ["recurrent_scale"], "metrics": ["lyapunov"]}


def test_500_trials_through_ray_land_every_point_once(tmp_path):
    space = validate_space(MANY)
    assert len(space.trials()) == 500
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(MANY))
    result = subprocess.run([sys.executable, "-m", "sweeper.cli", "run", str(path), "--out",
                             str(tmp_path / "out"), "--executor", "ray"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # the whole of stderr: its start says why, its end is Ray's
        pytest.fail(f"exit {result.returncode}\n--- stdout:\n{result.stdout[-3000:]}\n"
                    f"--- stderr:\n{result.stderr[-12000:]}", pytrace=False)
    assert "500 trials run, 0 already done, 0 failed, of 500" in result.stdout

    frame = pd.read_parquet(tmp_path / "out" / "points")
    assert len(frame) == space.n_points == 1000
    assert frame.point_id.is_unique
    assert frame.groupby("trial_id").size().to_dict() == {t.trial_id: t.n_points
                                                          for t in space.trials()}
    (count,) = duckdb.sql(f"select count(distinct point_id) from "
                          f"'{tmp_path}/out/points/*.parquet'").fetchall()
    assert count == (1000,)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("many")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    children = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
    assert len(children) == 500
    assert all(r.info.status == "FINISHED" for r in runs)
    assert set(frame.mlflow_run_id) == {r.info.run_id for r in children}
    assert {r.data.tags["sweeper.trial_id"] for r in children} == {
        t.trial_id for t in space.trials()}
