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
