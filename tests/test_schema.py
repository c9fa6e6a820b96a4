"""The one result schema, the metric-family pipeline and the merged status.

Checks that every consumer reads the same schema (measure's frame, the Parquet types, the
MLflow metric list, the region map, the README), that the trajectory pass computes only what
the requested families need, and that each family's failure reaches ``status``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

import sweeper.dynamics
from sweeper import measure
from sweeper.adapters.mlflow_tracker import logged_as_metric
from sweeper.adapters.parquet_sink import arrow_type, stable_types
from sweeper.aggregate import MAP_METRICS, region_map
from sweeper.cells import get_cell
from sweeper.errors import SweeperInputError, integer, number, value_list
from sweeper.families import FAMILIES
from sweeper.landscape_metrics import LandscapeConfig
from sweeper.measure import build_params
from sweeper.schema import (
    POINT_COLUMNS,
    README_BLOCKS,
    column,
    metric_columns,
    readme_blocks,
)
from sweeper.status import DIVERGED, LOSS_NONFINITE, OK, STATUSES, TRAINING_DIVERGED, merge
from sweeper.training import TrainingConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_tables_are_the_schema():
    found = readme_blocks(README.read_text(encoding="utf-8"))
    assert set(found) == set(README_BLOCKS), "README lacks a schema block"
    for name, table in README_BLOCKS.items():
        assert found[name] == table(), (
            f"README's {name} table differs from sweeper.schema; regenerate it with "
            "python -c \"from sweeper.schema import write_readme; write_readme('README.md')\"")


def test_measure_returns_the_schema_columns_in_order():
    frame = measure("rnn_tanh", 4, recurrent_scale=[0.5], seq_len=20)
    expected = [c.name for c in POINT_COLUMNS] + [c.name for c in metric_columns()]
    assert list(frame.columns) == expected


def test_every_metric_column_belongs_to_its_family_and_is_declared_once():
    names = [c.name for c in metric_columns(optional=True)]
    assert len(names) == len(set(names))
    for family in FAMILIES.values():
        assert all(c.family == family.name for c in family.columns)
    assert column("lyapunov_3").name == "lyapunov_<i>"  # pattern columns match
    assert column("no_such_column") is None


def test_parquet_types_mlflow_metrics_and_map_metrics_come_from_the_schema():
    # A lipschitz-only frame leaves the other families' columns all-None; the part still
    # carries the schema's type for each.
    frame = measure("rnn_tanh", 4, recurrent_scale=[0.5, 1.5], seq_len=20,
                    metrics=["lipschitz"])
    table = stable_types(pa.Table.from_pandas(frame, preserve_index=False))
    for c in (*POINT_COLUMNS, *metric_columns()):
        assert table.schema.field(c.name).type == arrow_type(c), c.name
    logged = {name for name in frame.columns if logged_as_metric(name)}
    assert logged == {c.name for c in metric_columns() if c.dtype != "list<double>"}
    assert set(MAP_METRICS) == {c.name for c in metric_columns() if c.dtype != "list<double>"}


def _refuse(*args, **kwargs):
    raise AssertionError("computed although no requested family needs it")


def test_a_lyapunov_only_measure_runs_no_lanczos(monkeypatch):
    monkeypatch.setattr(sweeper.dynamics, "top_singular_value", _refuse)
    frame = measure("rnn_tanh", 8, recurrent_scale=[0.5, 2.0], seq_len=50,
                    metrics=["lyapunov"])
    assert frame.lyapunov_max.notna().all()
    assert frame.lipschitz_local_max.isna().all()


def test_a_lipschitz_only_measure_carries_no_tangents(monkeypatch):
    cell = get_cell("gru")
    monkeypatch.setattr(type(cell), "step_stacked", _refuse)
    frame = measure(cell, 6, recurrent_scale=[0.5, 2.0], seq_len=30, metrics=["lipschitz"])
    assert frame.lipschitz_local_max.notna().all()
    assert frame.lyapunov_max.isna().all()


def test_the_pass_gives_each_family_what_the_full_pass_gives():
    """Skipping work must not change what is computed: lyapunov alone and lipschitz alone
    equal the same columns from a pass that computes both."""
    scales = dict(recurrent_scale=[0.7, 1.3], seed=[0, 1], seq_len=40)
    both = measure("lstm", 5, metrics=["lipschitz", "lyapunov"], **scales)
    alone_l = measure("lstm", 5, metrics=["lyapunov"], **scales)
    alone_j = measure("lstm", 5, metrics=["lipschitz"], **scales)
    np.testing.assert_array_equal(both.lyapunov_max, alone_l.lyapunov_max)
    np.testing.assert_array_equal(both.lipschitz_local_max, alone_j.lipschitz_local_max)


def test_status_merge_keeps_the_most_fundamental_failure():
    failures = {LOSS_NONFINITE: np.array([True, True, False, False]),
                DIVERGED: np.array([True, False, False, False]),
                TRAINING_DIVERGED: np.array([False, True, True, False])}
    assert merge(failures, 4).tolist() == [DIVERGED, LOSS_NONFINITE, TRAINING_DIVERGED, OK]
    assert STATUSES[0] == OK


def test_a_non_finite_loss_and_a_diverged_training_reach_status_and_the_map():
    # Linear cell: at s = 60 the outputs overflow float32 after 40 steps (60^40), at s = 0.5
    # they stay O(1); the state map is linear, so nothing else can fail.
    common = dict(task="teacher", recurrent_scale=[0.5, 60.0], seq_len=40)
    landscape = measure("linear", 4, metrics=["landscape"],
                        landscape=LandscapeConfig(points=5, hessian_steps=0), **common)
    assert landscape.status.tolist() == [OK, LOSS_NONFINITE]
    trained = measure("linear", 4, metrics=["training"], training=TrainingConfig(steps=5),
                      **common)
    assert trained.status.tolist() == [OK, TRAINING_DIVERGED]
    assert trained.diverged.tolist() == [False, True]
    # With a dynamics family the state itself diverges, which takes precedence.
    both = measure("linear", 4, metrics=["lyapunov", "landscape"],
                   landscape=LandscapeConfig(points=5, hessian_steps=0), **common)
    assert both.status.tolist() == [OK, DIVERGED]
    points = pd.concat([landscape, trained], ignore_index=True)
    points["region"] = "forgetful"
    cell_map = region_map(points, "recurrent_scale", "input_scale")
    assert cell_map.set_index("recurrent_scale").n_not_ok.to_dict() == {0.5: 0, 60.0: 2}


def test_prepare_keeps_point_order_and_names_each_groups_seed():
    cell = get_cell("stable_lstm")
    scales = torch.tensor([[0.5, 2.0], [0.5, 2.0]], dtype=torch.float64)
    base = build_params(cell, 3, 1, [4, 9], scales, torch.ones_like(scales), torch.float64,
                        torch.device("cpu"))
    prepared = cell.prepare(base)
    assert (prepared.groups, prepared.members) == (4, 1)
    assert prepared.group_seeds == [4, 4, 9, 9]
    # Point k of the prepared layout is point (k // M, k % M) of the request.
    for k in range(4):
        alone = cell.prepare(base.subset(groups=slice(k // 2, k // 2 + 1),
                                         members=slice(k % 2, k % 2 + 1)))
        torch.testing.assert_close(prepared.weights["weight_hh"][k],
                                   alone.weights["weight_hh"][0], rtol=0, atol=0)


def test_stable_lstm_batches_like_single_points_in_every_family():
    """The layout change of stable_lstm's prepare is invisible: each point measured in a
    batch equals the point measured alone (landscape included, which failed on main)."""
    # sine_generator: an O(1) loss (a teacher's loss is ~0 once the projection maps s onto
    # the reference, and roughness of rounding noise depends on summation order).
    kwargs = dict(task="sine_generator", seq_len=20, metrics=["memory", "landscape"],
                  landscape=LandscapeConfig(points=5, hessian_steps=2), dtype="float64")
    batch = measure("stable_lstm", 3, recurrent_scale=[0.5, 2.0], **kwargs)
    for i, s in enumerate([0.5, 2.0]):
        alone = measure("stable_lstm", 3, recurrent_scale=[s], **kwargs)
        for name in ("memory_capacity", "attractor_count", "loss", "grad_norm",
                     "loss_lipschitz"):
            np.testing.assert_allclose(batch[name][i], alone[name][0], rtol=1e-9, err_msg=name)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: integer("hidden_size", -3),
     "hidden_size must be an integer >= 1, got hidden_size=-3"),
    (lambda: integer("hidden_size", 2.5),
     "hidden_size must be an integer >= 1, got hidden_size=2.5"),
    (lambda: number("lr", 0.0, above=0), "lr must be a finite number > 0, got lr=0.0"),
    (lambda: number("lr", 10**400, above=0),
     f"lr must be a finite number > 0, got lr={10**400!r}"),
    (lambda: value_list("seed", [1, -2], integer=True),
     "seed must be a non-empty list of integers >= 0, got seed=-2"),
])
def test_one_message_shape_for_every_value_rule(call, message):
    with pytest.raises(SweeperInputError) as info:
        call()
    assert str(info.value) == message


@pytest.mark.parametrize("where", ["measure", "config"])
def test_measure_and_the_configs_use_the_same_words(where):
    with pytest.raises(SweeperInputError) as info:
        if where == "measure":
            measure("rnn_tanh", -3)
        else:
            TrainingConfig(steps=-3)
    name = "hidden_size" if where == "measure" else "steps"
    assert str(info.value) == f"{name} must be an integer >= 1, got {name}=-3"
