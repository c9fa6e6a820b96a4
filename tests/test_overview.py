"""The sweep's runs answer from their MLflow Overview. The parent run: the summary as its
description, the cells per region and each map row's lambda_1 = 0 crossing as metrics, the
axes' ranges as params, where it was started from as tags, the search space as given and as
resolved as artifacts. A trial run: only summaries of its points as metrics (never one
point's value, which the Overview would show as the trial's), its points as a table of
readable numbers, and the query that reads its rows, true after compaction (real MLflow on
sqlite, the session's smoke sweep)."""

from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pandas as pd
import pytest
from helpers import SMOKE_SPACE
from mlflow.tracking import MlflowClient

from sweeper.adapters.mlflow_tracker import MlflowTracker, resolved_space
from sweeper.adapters.query import query
from sweeper.adapters.space_file import load_space, parse_space_text
from sweeper.aggregate import overview_metrics
from sweeper.crossings import mean_zero_crossing
from sweeper.space import validate_space


def _runs(smoke_sweep):
    """The smoke sweep's client, parent run and trial runs (by input scale)."""
    client = MlflowClient(f"sqlite:///{smoke_sweep.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["sweeper.role"] == "sweep"]
    trials = {float(r.data.params["input_scale"]): r for r in runs
              if r.data.tags["sweeper.role"] == "trial"}
    return client, parent, trials


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


def test_a_trial_run_shows_summaries_of_its_points_never_one_point(smoke_sweep):
    # Before, lyapunov_max/seed_0 was a history over the gains and the Overview showed its
    # last step (the largest gain's value) as if it were the trial's.
    client, _, trials = _runs(smoke_sweep)
    points = pd.read_parquet(smoke_sweep / "points")
    counts = {f"n_{r}" for r in ("forgetful", "memory", "chaotic", "unclassified")}
    assert set(trials) == {0.5, 1.0}
    for scale, run in trials.items():
        rows = points[points.input_scale == scale]
        crossing = mean_zero_crossing(rows, "recurrent_scale")
        expected = counts | ({"lyapunov_zero_crossing"} if np.isfinite(crossing) else set())
        assert set(run.data.metrics) == expected
        assert {k: run.data.metrics[k] for k in counts} == {
            f"n_{r}": float((rows.region == r).sum())
            for r in ("forgetful", "memory", "chaotic", "unclassified")}
        for key in run.data.metrics:
            assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
    assert trials[0.5].data.metrics["lyapunov_zero_crossing"] == pytest.approx(
        mean_zero_crossing(points[points.input_scale == 0.5], "recurrent_scale"))


def test_a_trial_of_one_cell_logs_each_metric_s_seed_mean(tmp_path):
    # A trial whose points differ by seed only (as a refined sweep's) is one map cell: its
    # metrics are the seeds' means, named so.
    space = validate_space({"name": "cell", "task": "noise", "cell": "rnn_tanh",
                            "hidden_size": 4, "seq_len": 10, "metrics": ["lyapunov"],
                            "axes": {"recurrent_scale": [0.5, 2.0], "seed": [0, 1, 2]},
                            "vectorize": ["seed"]})
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(store, tmp_path / "art", str(tmp_path))
    tracker.start_sweep(space)
    trial = space.trials()[0]
    run_id = tracker.trial_started(trial)
    frame = pd.DataFrame({"seed": [0, 1, 2], "recurrent_scale": 0.5, "status": "ok",
                          "region": "forgetful", "lyapunov_max": [-0.5, -0.25, np.nan],
                          "lipschitz_bound": np.nan})
    tracker.trial_finished(trial, frame, str(tmp_path / "part.parquet"))
    tracker.end_sweep("FINISHED")
    metrics = MlflowClient(store).get_run(run_id).data.metrics
    assert metrics["lyapunov_max/mean"] == pytest.approx(-0.375)  # finite values only
    assert "lipschitz_bound/mean" not in metrics and metrics["n_forgetful"] == 3.0


def test_points_csv_rounds_for_reading_and_parquet_keeps_every_digit(smoke_sweep):
    _, _, trials = _runs(smoke_sweep)
    table = (smoke_sweep.parent / "mlartifacts" / trials[0.5].info.run_id / "artifacts"
             / "points.csv")
    decimals = re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", table.read_text())
    digits = [len(re.sub(r"[-.]|e.*", "", n).lstrip("0")) for n in decimals]
    assert digits and max(digits) <= 6  # significant digits (17 before)
    shown = pd.read_csv(table)
    exact = pd.read_parquet(smoke_sweep / "points").set_index("point_id").loc[shown.point_id]
    assert shown.lyapunov_max.to_numpy() == pytest.approx(exact.lyapunov_max.to_numpy(),
                                                          rel=5e-6)
    assert (shown.lyapunov_max.to_numpy() != exact.lyapunov_max.to_numpy()).any()


def test_a_trial_run_names_a_query_that_outlives_compaction(smoke_sweep):
    _, _, trials = _runs(smoke_sweep)
    points = pd.read_parquet(smoke_sweep / "points")
    assert not list((smoke_sweep / "points").glob("part-*"))  # `aggregate` compacted them
    for run in trials.values():
        trial_id = run.data.tags["sweeper.trial_id"]
        command = shlex.split(run.data.tags["sweeper.points"])
        assert command == ["sweeper", "query",
                           f"select * from points where trial_id = '{trial_id}'",
                           "--results", str(smoke_sweep.resolve())]
        rows = query(command[4], command[2])
        assert sorted(rows.point_id) == sorted(points.point_id[points.trial_id == trial_id])
        assert set(rows.mlflow_run_id) == {run.info.run_id}


def test_the_parent_run_holds_the_resolved_space(smoke_sweep):
    _, parent, _ = _runs(smoke_sweep)
    folder = smoke_sweep.parent / "mlartifacts" / parent.info.run_id / "artifacts"
    resolved = json.loads((folder / "search_space" / "resolved.json").read_text())
    space = load_space(SMOKE_SPACE)
    assert resolved == json.loads(json.dumps(resolved_space(space)))
    assert resolved["axes"]["recurrent_scale"] == [0.5, 1.0, 2.0]
    assert resolved["regions"] == {"epsilon": 0.01, "min_attractors": 2,
                                   "horizon_fraction": 0.5}  # defaults written out
    again = validate_space(resolved)  # a search space of its own: the same sweep
    assert [t.trial_id for t in again.trials()] == [t.trial_id for t in space.trials()]
    # `sweeper run` hands the tracker its file: it is there as given, byte for byte
    assert (folder / "search_space" / "smoke.yaml").read_bytes() == SMOKE_SPACE.read_bytes()


@pytest.mark.parametrize("given", ["path", "env"])
def test_the_parent_run_holds_the_space_file_byte_for_byte(tmp_path, monkeypatch, given):
    text = ("# a comment, kept: gain g — é\nname: given\ncell: rnn_tanh\nhidden_size: 4\n"
            "seq_len: 10   # trailing spaces and comments stay too\n"
            "axes: {recurrent_scale: {linspace: [0.5, 1.5, 3]}}\n").encode()
    file = tmp_path / "my space.yaml"
    file.write_bytes(text)
    monkeypatch.setenv("SWEEPER_TEST_SPACE", text.decode())
    source = file if given == "path" else "env:SWEEPER_TEST_SPACE"
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(store, tmp_path / "art", str(tmp_path), space_file=source)
    file.write_bytes(b"edited later")  # what the sweep was given was read at the start
    parent = tracker.start_sweep(validate_space(parse_space_text(text.decode())))
    tracker.end_sweep("FINISHED")
    folder = tmp_path / "art" / parent / "artifacts" / "search_space"
    name = "my space.yaml" if given == "path" else "given.yaml"
    assert sorted(p.name for p in folder.iterdir()) == sorted([name, "resolved.json"])
    assert (folder / name).read_bytes() == text
    listed = MlflowClient(store).list_artifacts(parent, "search_space")
    assert {f.path for f in listed} == {f"search_space/{name}", "search_space/resolved.json"}


def test_a_resumed_sweep_logs_the_space_it_was_resumed_with(tmp_path):
    # The region thresholds are not measured: a resume may change them, and its parent run
    # (the same run) then holds the space of the latest start.
    raw = {"name": "resumed", "cell": "rnn_tanh", "hidden_size": 4, "seq_len": 10,
           "axes": {"recurrent_scale": [0.5, 1.5]}}
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = MlflowTracker(store, tmp_path / "art", str(tmp_path))
    parent = first.start_sweep(validate_space(raw))
    first.end_sweep("KILLED")
    again = MlflowTracker(store, tmp_path / "art", str(tmp_path))
    assert again.start_sweep(validate_space(dict(raw, regions={"epsilon": 0.05}))) == parent
    again.end_sweep("FINISHED")
    resolved = tmp_path / "art" / parent / "artifacts" / "search_space" / "resolved.json"
    assert json.loads(resolved.read_text())["regions"]["epsilon"] == 0.05
