"""The sweep's parent run answers from its MLflow Overview: the summary as its description,
the cells per region and each map row's lambda_1 = 0 crossing as metrics, the axes' ranges as
params, where it was started from as tags (real MLflow on sqlite, the session's smoke sweep)."""

from __future__ import annotations

import pandas as pd
from mlflow.tracking import MlflowClient

from sweeper.aggregate import overview_metrics


def test_the_parent_run_carries_the_summary_and_the_answer(smoke_sweep):
    client = MlflowClient(f"sqlite:///{smoke_sweep.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    (parent,) = client.search_runs([experiment.experiment_id],
                                   "tags.`sweeper.role` = 'sweep'")
    assert parent.data.tags["mlflow.note.content"] == (smoke_sweep / "summary.md").read_text()
    region_map = pd.read_parquet(smoke_sweep / "region_map.parquet")
    expected = overview_metrics(region_map, "input_scale")
    assert {k: parent.data.metrics[k] for k in expected} == expected
    assert sum(parent.data.metrics[f"cells/{r}"] for r in
               ("forgetful", "memory", "chaotic", "unclassified")) == len(region_map) == 6
    assert parent.data.params["axis.recurrent_scale"] == "3 values, 0.5 .. 2"
    assert parent.data.params["axis.seed"] == "2 values, 0 .. 1"
    assert parent.data.tags["sweeper.version"] and "run" in parent.data.tags[
        "mlflow.source.name"]


def test_overview_metrics_name_each_row_crossing_with_its_seed_range():
    region_map = pd.DataFrame({
        "recurrent_scale": [0.5, 1.0, 0.5, 1.0], "input_scale": [0.1, 0.1, 2.0, 2.0],
        "region": ["forgetful", "chaotic", "forgetful", "memory"],
        "lyapunov_zero_crossing": [0.8, 0.8, float("nan"), float("nan")],
        "lyapunov_zero_crossing_lo": [0.7, 0.7, float("nan"), float("nan")],
        "lyapunov_zero_crossing_hi": [0.9, 0.9, float("nan"), float("nan")]})
    assert overview_metrics(region_map, "input_scale") == {
        "cells/forgetful": 2.0, "cells/memory": 1.0, "cells/chaotic": 1.0,
        "cells/unclassified": 0.0, "lyapunov_zero_crossing/input_scale_0.1": 0.8,
        "lyapunov_zero_crossing/input_scale_0.1_lo": 0.7,
        "lyapunov_zero_crossing/input_scale_0.1_hi": 0.9}


def _aggregated(metrics, region_map):
    from pathlib import Path

    from sweeper.aggregate import Aggregated
    from sweeper.space import validate_space

    space = validate_space({"name": "s", "task": "teacher", "cell": "rnn_tanh",
                            "hidden_size": 4, "seq_len": 20, "metrics": metrics,
                            "axes": {"recurrent_scale": [0.5, 1.0],
                                     "input_scale": [0.1, 2.0]}})
    return Aggregated(space, region_map, Path("out/region_map.parquet"))


def test_a_sweep_without_a_crossing_says_so_in_its_summary():
    from sweeper.aggregate import summary_text

    region_map = pd.DataFrame({
        "recurrent_scale": [0.5, 1.0, 0.5, 1.0], "input_scale": [0.1, 0.1, 2.0, 2.0],
        "region": ["forgetful"] * 4, "n": [2] * 4, "lyapunov_max_mean": [-0.9, -0.2, -1.1, -0.4],
        "lyapunov_zero_crossing": [float("nan")] * 4})
    text = summary_text(_aggregated(["lyapunov"], region_map), "out", [])
    assert ("No map row crosses lambda_1 = 0: the seed-mean lambda_1 stays below 0 over "
            "recurrent_scale 0.5 .. 1 (from -1.1 to -0.2 nats per step). Widen "
            "recurrent_scale to find the edge.") in text


def test_the_summary_lists_landscape_and_training_metrics_per_row():
    from sweeper.aggregate import summary_text

    region_map = pd.DataFrame({
        "recurrent_scale": [0.5, 1.0, 0.5, 1.0], "input_scale": [0.1, 0.1, 2.0, 2.0],
        "region": ["forgetful", "memory", "forgetful", "chaotic"], "n": [2] * 4,
        "roughness_tv_mean": [0.1, 0.3, 0.2, 5.0], "val_loss_mean": [1.0, 0.5, 0.9, 2.0]})
    text = summary_text(_aggregated(["landscape", "training"], region_map), "out", [])
    assert "## Landscape and training, per input_scale (lowest .. highest cell mean)" in text
    assert "| 0.1 | 0.1 .. 0.3 | 0.5 .. 1 |" in text and "| 2 | 0.2 .. 5 | 0.9 .. 2 |" in text
    assert "| input_scale | roughness_tv | val_loss |" in text
    assert "Landscape" not in summary_text(_aggregated(["lyapunov"], region_map), "out", [])
