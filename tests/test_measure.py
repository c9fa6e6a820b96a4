"""The measure entry point: batching, divergence as data, reproducibility, the columns it
returns and the regions it labels, bad input, CLI."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import re

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

from sweeper import (
    METRIC_COLUMNS,
    DynamicsConfig,
    MemoryConfig,
    RegionRules,
    SweeperInputError,
    measure,
)
from sweeper.schema import POINT_COLUMNS

IDENTITY = [c.name for c in POINT_COLUMNS]

SMALL_MEMORY = MemoryConfig(washout=40, train=400, test=200, max_delay=40,
                            attractor_inits=6, attractor_steps=200)
NUMERIC = [c for cols in METRIC_COLUMNS.values() for c in cols
           if c not in ("memory_curve", "memory_horizon_capped")]


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "stable_lstm"])
def test_batched_equals_looped(cell):
    # Contracting points only: there rounding differences between a batch of 8 and a batch
    # of 1 (different GEMM shapes) stay at rounding level. (Chaotic points amplify them: their
    # trajectories separate and only statistics agree, see test_lyapunov.) float64, rtol 1e-7.
    grid = {"recurrent_scale": [0.3, 0.8], "input_scale": [0.5, 1.0], "seed": [0, 1]}
    common = {"seq_len": 80, "dtype": "float64", "memory": SMALL_MEMORY,
              "dynamics": DynamicsConfig(burn_in=20, lipschitz_samples=8)}
    batched = measure(cell, 6, **grid, **common)
    looped = pd.concat([measure(cell, 6, recurrent_scale=[r], input_scale=[a], seed=[s],
                                **common)
                        for s in grid["seed"] for r in grid["recurrent_scale"]
                        for a in grid["input_scale"]], ignore_index=True)
    assert (batched.status == "ok").all()
    pd.testing.assert_frame_equal(batched[["seed", "recurrent_scale", "input_scale"]],
                                  looped[["seed", "recurrent_scale", "input_scale"]])
    np.testing.assert_allclose(batched[NUMERIC].to_numpy(float), looped[NUMERIC].to_numpy(float),
                               rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(np.stack(batched.memory_curve), np.stack(looped.memory_curve),
                               rtol=1e-7, atol=1e-10)


def test_diverging_point_is_data_and_leaves_others_unchanged():
    common = {"seq_len": 60, "dtype": "float64", "memory": SMALL_MEMORY,
              "dynamics": DynamicsConfig(burn_in=10, lipschitz_samples=6)}
    # s = 1e3 makes the linear state overflow to inf within ~110 steps.
    mixed = measure("linear", 8, recurrent_scale=[0.5, 1e3, 0.9], **common)
    clean = measure("linear", 8, recurrent_scale=[0.5, 0.9], **common)
    assert mixed.status.tolist() == ["ok", "diverged", "ok"]
    bad = mixed.iloc[1]
    for column in ("lyapunov_max", "lipschitz_local_max", "memory_capacity", "memory_horizon"):
        assert np.isnan(bad[column]), column
    # The analytic bound stays meaningful for a diverging point.
    assert np.isfinite(bad.lipschitz_bound)
    np.testing.assert_allclose(mixed.iloc[[0, 2]][NUMERIC].to_numpy(float),
                               clean[NUMERIC].to_numpy(float), rtol=1e-9, atol=1e-12)


def test_results_reproduce_in_a_freshly_spawned_process():
    kwargs = {"recurrent_scale": [0.5, 1.5, 2.5], "seed": [3], "seq_len": 50,
              "memory": SMALL_MEMORY}
    here = measure("gru", 10, **kwargs)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        there = pool.submit(measure, "gru", 10, **kwargs).result(timeout=300)
    pd.testing.assert_frame_equal(here, there, check_exact=True)


def test_measure_frame_has_every_metric_column():
    frame = measure("orthogonal", 4, recurrent_scale=[1.0, 2.0], seq_len=20,
                    metrics=["lyapunov"])
    for columns in METRIC_COLUMNS.values():
        assert set(columns) <= set(frame.columns)
    assert frame.lipschitz_bound.isna().all() and frame.lyapunov_max.notna().all()
    assert len(frame) == 2


def test_requested_columns_are_the_point_and_the_requested_families():
    common = {"recurrent_scale": [0.5, 2.0], "seq_len": 20, "memory": SMALL_MEMORY,
              "dynamics": DynamicsConfig(burn_in=10, lipschitz_samples=4)}
    every = measure("rnn_tanh", 4, metrics=["memory", "lipschitz"], **common)
    asked = measure("rnn_tanh", 4, metrics=["memory", "lipschitz"], columns="requested",
                    **common)
    # Family order, as in the schema, whatever the order asked in.
    assert list(asked.columns) == [*IDENTITY, *METRIC_COLUMNS["lipschitz"],
                                   *METRIC_COLUMNS["memory"]]
    pd.testing.assert_frame_equal(asked, every[asked.columns], check_exact=True)
    # Optional columns come with their family; the default frame keeps every family's.
    k3 = measure("rnn_tanh", 4, metrics=["lyapunov"], columns="requested",
                 **{**common, "dynamics": DynamicsConfig(burn_in=10, lyapunov_k=3)})
    assert list(k3.columns) == [*IDENTITY, *METRIC_COLUMNS["lyapunov"], "lyapunov_2",
                                "lyapunov_3"]
    assert set(METRIC_COLUMNS["training"]) <= set(every.columns)


def test_regions_label_the_points_by_the_rules_after_status():
    common = {"seq_len": 30, "metrics": ["lyapunov", "memory"], "columns": "requested",
              "memory": SMALL_MEMORY, "dynamics": DynamicsConfig(burn_in=10)}
    labelled = measure("linear", 4, recurrent_scale=[0.2, 1e3], regions=True, **common)
    assert list(labelled.columns[:len(IDENTITY) + 1]) == [*IDENTITY, "region"]
    # A contracting point forgets; a point whose state overflows counts as chaotic.
    assert labelled.status.tolist() == ["ok", "diverged"]
    assert labelled.region.tolist() == ["forgetful", "chaotic"]
    # Thresholds of one's own: with epsilon above |lambda_1|, the edge of chaos is everywhere.
    loose = measure("linear", 4, recurrent_scale=[0.2], regions=RegionRules(epsilon=50.0),
                    **common)
    assert loose.region.tolist() == ["memory"]
    assert "region" not in measure("linear", 4, recurrent_scale=[0.2], **common)


@pytest.mark.parametrize(("metrics", "missing"), [
    (["lyapunov"], ["memory"]), (["lipschitz"], ["lyapunov", "memory"])])
def test_regions_without_the_families_they_read_are_refused_naming_them(metrics, missing):
    with pytest.raises(ValueError, match=(
            r"regions needs the metric families \['lyapunov', 'memory'\] .*"
            + re.escape(f"got metrics={metrics!r}: add {missing!r}"))):
        measure("rnn_tanh", 4, seq_len=10, metrics=metrics, regions=True)
    out = run_cli("measure", "--cell", "rnn_tanh", "--hidden-size", "4", "--metrics", *metrics,
                  "--regions", process=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"add {missing!r}" in out.stderr


def test_the_cli_measures_the_default_families_of_measure():
    import inspect

    from sweeper.cli import DEFAULT_METRICS

    default = inspect.signature(measure).parameters["metrics"].default
    assert tuple(default) == DEFAULT_METRICS


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"cell": "elman"}, "unknown cell 'elman'; known cells: antisymmetric_rnn, cornn, gru"),
    ({"hidden_size": 0}, "hidden_size must be an integer >= 1, got hidden_size=0"),
    ({"hidden_size": 2.5}, "hidden_size=2.5"),
    ({"seq_len": -3}, "seq_len=-3"),
    ({"recurrent_scale": [1.0, -0.5]},
     "recurrent_scale must be a non-empty list of finite numbers >= 0, got recurrent_scale=-0.5"),
    ({"input_scale": []}, r"input_scale must be a non-empty list .*, got input_scale=\[\]"),
    ({"recurrent_scale": [float("inf")]}, "finite numbers >= 0, got recurrent_scale=inf"),
    # An int too large for a float is refused like inf, not with an OverflowError.
    ({"recurrent_scale": [10**400]}, "finite numbers >= 0, got recurrent_scale=1000"),
    ({"seed": [1.5]}, "seed must be a non-empty list of integers >= 0, got seed=1.5"),
    ({"metrics": ["lyapunov", "chaos"]},
     r"metrics must be a non-empty list among \['lipschitz', .*"
     r"got metrics=\['lyapunov', 'chaos'\]"),
    ({"task": "sine"}, "unknown task 'sine'"),
    ({"dtype": "float16"}, r"dtype must be one of \['float32', 'float64'\], got dtype='float16'"),
    ({"columns": "some"}, r"columns must be one of \['all', 'requested'\], got columns='some'"),
    ({"regions": "yes"}, r"regions must be True, False or a sweeper.regions.RegionRules, got "
                         r"regions='yes'"),
])
def test_bad_input_names_parameter_and_value(kwargs, match):
    args = {"cell": "rnn_tanh", "hidden_size": 4, "seq_len": 10, **kwargs}
    with pytest.raises(SweeperInputError, match=match):
        measure(args.pop("cell"), args.pop("hidden_size"), **args)


def test_cli_prints_json_rows():
    out = run_cli("measure", "--cell", "rnn_tanh", "--hidden-size", "64", "--recurrent-scale",
                  "0.5", "3", "--seq-len", "100", "--metrics", "lyapunov", "--task-param",
                  "input_std=0.1", "--json", process=False)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["recurrent_scale"] for r in rows] == [0.5, 3.0]
    assert rows[0]["lyapunov_max"] < 0 < rows[1]["lyapunov_max"]
    # The point and the family asked for, nothing of the families not asked for.
    assert list(rows[0]) == [*IDENTITY, *METRIC_COLUMNS["lyapunov"]]


@pytest.mark.parametrize("args", [
    ["measure", "--cell", "nope", "--hidden-size", "8"],
    ["measure", "--cell", "gru", "--hidden-size", "0"],
    ["measure", "--cell", "gru", "--hidden-size", "8", "--recurrent-scale", "-1"],
    ["measure", "--cell", "gru", "--hidden-size", "8", "--task-param", "input_std=-2"],
    ["measure", "--cell", "gru", "--hidden-size", "eight"],
])
def test_cli_bad_input_exits_2_without_traceback(args):
    out = run_cli(*args, process=False)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "error" in out.stderr


def test_subnormals_are_flushed_during_measure_and_restored_after():
    from sweeper.measure import flushing_subnormals, subnormals_flushed

    assert not subnormals_flushed()  # torch's default
    with flushing_subnormals():
        assert subnormals_flushed()
        # A user who set the flag keeps it: the nested context leaves it alone.
        with flushing_subnormals():
            assert subnormals_flushed()
        assert subnormals_flushed()
    assert not subnormals_flushed()
    # A forgetful point under zero input settles on 0 through subnormals: the exponent is the
    # same whether they are flushed or not (both runs float32, same points).
    flushed = measure("rnn_tanh", 16, recurrent_scale=[0.3, 0.6], seq_len=300,
                      metrics=["lyapunov"], task_params={"input_std": 0.0}, device="cpu")
    from sweeper.dynamics import PassNeeds  # the same pass, outside the context
    from sweeper.measure import _batch, _trajectory_pass, validate

    request = validate("rnn_tanh", 16, "noise", {"input_std": 0.0}, [0.3, 0.6], (1.0,), (0,),
                       300, ["lyapunov"], "cpu", "float32", None, None, None, None)
    plain = _trajectory_pass(_batch(request), PassNeeds(tangents=True, jacobian_samples=False))
    assert not subnormals_flushed()
    np.testing.assert_allclose(flushed.lyapunov_max, plain.lyapunov[0, :, 0].numpy(),
                               rtol=1e-5)
