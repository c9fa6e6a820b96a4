"""Regions, the region map, its Parquet file and the commands that read it.

Hand-built points check the classification and aggregation against values worked out by
hand; one real sweep (search_spaces/smoke.yaml on the in-process executor, sqlite MLflow: the
``smoke_sweep`` fixture, fresh for each test) checks the files, the readers and the commands."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers import SMOKE_SPACE, run_cli

from sweeper.aggregate import region_map, zero_crossing
from sweeper.axes import map_axes
from sweeper.errors import SweeperInputError
from sweeper.regions import RegionRules, classify

ROOT = Path(__file__).resolve().parents[1]
NAN = math.nan


def _points(rows):
    columns = ["recurrent_scale", "input_scale", "seed", "lyapunov_max", "attractor_count",
               "memory_horizon"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["seq_len"] = 100
    frame["status"] = "ok"
    return frame


def test_classify_follows_each_rule():
    frame = _points([
        (1, 1, 0, 0.5, 1, 0),        # lambda > eps: chaotic
        (1, 1, 0, 0.011, 5, 100),    # just above eps: chaotic, whatever the memory says
        (1, 1, 0, 0.0, 1, 0),        # |lambda| <= eps: memory (edge of chaos)
        (1, 1, 0, -0.01, 1, 0),      # lambda = -eps: memory (inclusive)
        (1, 1, 0, -0.5, 2, 0),       # two attractors: memory
        (1, 1, 0, -0.5, 1, 50),      # horizon >= N/2: memory
        (1, 1, 0, -0.5, 1, 49),      # horizon below N/2, one attractor: forgetful
        (1, 1, 0, NAN, 3, 100),      # lambda not measured: unclassified
        (1, 1, 0, math.inf, NAN, NAN),  # diverged to +inf: chaotic
        (1, 1, 0, -0.5, NAN, NAN),   # memory not measured, contracting: forgetful
    ])
    assert classify(frame).tolist() == [
        "chaotic", "chaotic", "memory", "memory", "memory", "memory", "forgetful",
        "unclassified", "chaotic", "forgetful"]


def test_only_stable_attractors_make_memory():
    # Attractors under the constant input, lambda_1 under the drive (contracting here, short
    # horizon): a chaotic attractor of the autonomous network is no memory, however many the
    # count says; two stable attractors are, with chaotic ones beside them or not.
    frame = _points([(1, 1, 0, -0.5, 1, 0), (1, 1, 0, -0.5, 2, 0), (1, 1, 0, -0.5, 3, 0),
                     (1, 1, 0, -0.5, 3, 0), (1, 1, 0, -0.5, 2, 0)])
    frame["chaotic_attractors"] = [1.0, 2.0, 1.0, 2.0, NAN]
    assert classify(frame).tolist() == ["forgetful", "forgetful", "memory", "forgetful",
                                        "memory"]
    # A frame from before chaotic_attractors existed keeps its labels.
    assert classify(frame.drop(columns="chaotic_attractors")).tolist() == [
        "forgetful", "memory", "memory", "memory", "memory"]


def test_quickstart_like_points_are_not_memory_through_a_chaotic_count():
    # The case, measured: H = 64 tanh networks chaotic at zero input (the attractor
    # runs) but driven hard enough to contract (lambda_1 < -eps). Before, 16 runs on one
    # chaotic attractor counted 16 attractors and made these points memory.
    from sweeper import measure

    points = measure("rnn_tanh", 64, task="noise", task_params={"input_std": 1.0},
                     recurrent_scale=[2.0], input_scale=[2.0], seed=[0, 2],
                     metrics=["lyapunov", "memory"])
    assert (points.lyapunov_max < -0.01).all() and (points.memory_horizon < 100).all()
    assert (points.attractor_count == 1).all() and (points.chaotic_attractors == 1).all()
    assert (classify(points) == "forgetful").all()


def test_a_diverged_point_is_chaotic():
    frame = _points([(1, 1, 0, NAN, NAN, NAN), (1, 1, 1, NAN, NAN, NAN)])
    frame.loc[0, "status"] = "diverged"
    assert classify(frame).tolist() == ["chaotic", "unclassified"]
    from sweeper import measure

    real = measure("linear", 4, recurrent_scale=[0.5, 1e3], seq_len=50,
                   metrics=["lyapunov"], device="cpu")
    assert real.status.tolist() == ["ok", "diverged"]
    assert classify(real).tolist() == ["forgetful", "chaotic"]


def test_classify_uses_the_configured_thresholds():
    frame = _points([(1, 1, 0, 0.05, 1, 0), (1, 1, 0, -0.5, 3, 0), (1, 1, 0, -0.5, 1, 80)])
    rules = RegionRules(epsilon=0.1, min_attractors=4, horizon_fraction=0.9)
    assert classify(frame, rules).tolist() == ["memory", "forgetful", "forgetful"]


@pytest.mark.parametrize("raw, key", [({"epsilon": 0}, "regions.epsilon"),
                                      ({"min_attractors": 1}, "regions.min_attractors"),
                                      ({"horizon_fraction": 1.5}, "regions.horizon_fraction"),
                                      ({"eps": 0.1}, "eps")])
def test_bad_region_rules_name_the_key(raw, key):
    with pytest.raises(SweeperInputError, match=re.escape(key)):
        RegionRules.from_mapping(raw)


def test_region_map_majority_share_counts_and_moments():
    rows = []
    # x = recurrent_scale 1.0: 3 forgetful seeds; 2.0: 2 chaotic + 1 memory; 3.0: a 1-1 tie
    # between memory and chaotic (2 seeds) whose seed mean (0.15) is chaotic.
    for seed, lyap in enumerate([-0.5, -0.4, -0.3]):
        rows.append((1.0, 0.5, seed, lyap, 1, 0))
    for seed, lyap in enumerate([0.2, 0.4, 0.0]):
        rows.append((2.0, 0.5, seed, lyap, 1, 0))
    rows += [(3.0, 0.5, 0, 0.0, 1, 0), (3.0, 0.5, 1, 0.3, 1, 0)]
    # x = 4.0: a 1-1 tie again, but the seed mean (lambda_1 = 0.0035, inside +-epsilon) is
    # memory, so the tie goes to memory, not to the more cautious chaotic.
    rows += [(4.0, 0.5, 0, -0.005, 1, 0), (4.0, 0.5, 1, 0.012, 1, 0)]
    frame = region_map(_points(rows), "recurrent_scale", "input_scale")
    assert frame.recurrent_scale.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert frame.region.tolist() == ["forgetful", "chaotic", "chaotic", "memory"]
    assert frame.n.tolist() == [3, 3, 2, 2]
    np.testing.assert_allclose(frame.region_share, [1.0, 2 / 3, 0.5, 0.5], rtol=1e-12)
    assert frame.n_memory.tolist() == [0, 1, 1, 1]
    np.testing.assert_allclose(frame.lyapunov_max_mean, [-0.4, 0.2, 0.15, 0.0035],
                               rtol=1e-12)
    np.testing.assert_allclose(frame.lyapunov_max_std[:3],
                               [0.1, 0.2, np.std([0, .3], ddof=1)], rtol=1e-12)


def test_zero_crossing_is_interpolated_per_row():
    rows = []
    # input 0.5: seed means -0.2 at 1.0 and +0.3 at 2.0 -> crossing at 1.0 + 0.2/0.5 = 1.4.
    rows += [(1.0, 0.5, 0, -0.1, 1, 0), (1.0, 0.5, 1, -0.3, 1, 0)]
    rows += [(2.0, 0.5, 0, 0.2, 1, 0), (2.0, 0.5, 1, 0.4, 1, 0)]
    # input 1.0: negative everywhere -> no crossing.
    rows += [(1.0, 1.0, 0, -0.5, 1, 0), (2.0, 1.0, 0, -0.1, 1, 0)]
    frame = region_map(_points(rows), "recurrent_scale", "input_scale")
    crossing = frame.groupby("input_scale").lyapunov_zero_crossing.unique()
    np.testing.assert_allclose(crossing[0.5], [1.4], rtol=1e-12)
    assert np.isnan(crossing[1.0]).all()
    # Along another x axis the crossing is not defined.
    other = region_map(_points(rows), "input_scale", "recurrent_scale")
    assert other.lyapunov_zero_crossing.isna().all()


def test_zero_crossing_edge_cases():
    assert zero_crossing(np.array([0., 1., 2.]), np.array([-1., 0., 1.])) == 1.0
    assert zero_crossing(np.array([0., 1.]), np.array([-1., math.inf])) == 1.0
    assert zero_crossing(np.array([0., 1., 2.]), np.array([-1., NAN, 1.])) == 1.0
    assert zero_crossing(np.array([0., 1.]), np.array([-math.inf, 0.5])) == 0.0
    assert math.isnan(zero_crossing(np.array([0., 1.]), np.array([1., -1.])))


def test_map_axes_defaults_and_errors():
    axes = {"recurrent_scale": [1, 2], "input_scale": [1], "seed": [0, 1], "seq_len": [10, 20],
            "hidden_size": [8]}
    assert map_axes(axes) == ("recurrent_scale", "seq_len")
    assert map_axes(axes, {"x": "seq_len"}) == ("seq_len", "recurrent_scale")
    with pytest.raises(SweeperInputError, match=r"map\.x"):
        map_axes(axes, {"x": "gain"})
    with pytest.raises(SweeperInputError, match="both"):
        map_axes(axes, {"x": "seq_len", "y": "seq_len"})


# --- one real sweep, read back by every reader and the commands -------------------------

@pytest.fixture
def sweep(smoke_sweep):
    return smoke_sweep


def test_run_ends_with_the_region_map_and_plots(sweep):
    assert (sweep / "region_map.parquet").exists()
    for name in ("region_map.png", "metrics_vs_recurrent_scale.png"):
        data = (sweep / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    points = pd.read_parquet(sweep / "points")
    assert set(points.region) <= {"forgetful", "memory", "chaotic"}
    assert points.region.tolist() == classify(points).tolist()
    from mlflow.tracking import MlflowClient

    record = json.loads((sweep / "sweep.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    attached = {a.path for a in client.list_artifacts(record["parent_run_id"], "summary")}
    assert attached == {"summary/region_map.parquet", "summary/region_map.png",
                        "summary/metrics_vs_recurrent_scale.png", "summary/summary.md"}
    assert (sweep / "summary.md").read_text().startswith(f"# Sweep {record['experiment']}")
    assert client.get_run(record["parent_run_id"]).data.tags["sweeper.role"] == "sweep"


def test_readers_agree_on_points_and_region_map(sweep):
    for name, path, glob in (("points", sweep / "points", f"{sweep}/points/*.parquet"),
                             ("region_map", sweep / "region_map.parquet",
                              str(sweep / "region_map.parquet"))):
        table = pq.read_table(path)
        frame = pd.read_parquet(path)
        relation = duckdb.sql(f"select * from read_parquet('{glob}')")
        assert table.num_rows == len(frame) == len(relation.fetchall()), name
        assert table.column_names == list(frame.columns) == relation.columns, name
        # The same logical types: arrow's, as pandas and DuckDB see them.
        for column, dtype in zip(relation.columns, relation.dtypes, strict=True):
            arrow = str(table.schema.field(column).type)
            duck = str(dtype)
            assert _compatible(arrow, duck), (name, column, arrow, duck)
    region = pd.read_parquet(sweep / "region_map.parquet")
    assert len(region) == 6 and region.n.sum() == 12  # 3 gains x 2 input scales, 2 seeds each


def _compatible(arrow: str, duck: str) -> bool:
    pairs = {"double": "DOUBLE", "int64": "BIGINT", "string": "VARCHAR", "large_string":
             "VARCHAR", "bool": "BOOLEAN", "list<element: double>": "DOUBLE[]",
             "large_list<element: double>": "DOUBLE[]", "float": "FLOAT", "int32": "INTEGER"}
    return pairs.get(arrow) == duck


def test_region_map_metadata_holds_schema_version_and_config(sweep):
    meta = pq.read_schema(sweep / "region_map.parquet").metadata
    assert meta[b"sweeper.schema_version"] == b"5"
    config = json.loads(meta[b"sweeper.sweep"])
    assert config["name"] == "smoke" and config["cell"] == "rnn_tanh"
    assert json.loads(meta[b"sweeper.map"]) == {"x": "recurrent_scale", "y": "input_scale"}
    assert json.loads(meta[b"sweeper.rules"])["epsilon"] == 0.01


KILL_MID_WRITE = """
import os, sys, time
import pyarrow.parquet as pq
real = pq.write_table
def slow(table, where, *a, **k):
    real(table, where, *a, **k)
    if str(where).endswith('.tmp') and '.region_map' in str(where):
        with open(where, 'r+b') as handle:
            handle.truncate(100)  # the temp file is half-written now
        open(sys.argv[2], 'w').close()
        time.sleep(60)
pq.write_table = slow
from sweeper.cli import main
sys.exit(main(['aggregate', sys.argv[1], '--no-plots']))
"""


def test_killed_aggregation_keeps_the_previous_map_and_rerun_is_identical(sweep, tmp_path):
    path = sweep / "region_map.parquet"
    before = path.read_bytes()
    flag = tmp_path / "mid-write"
    child = subprocess.Popen([sys.executable, "-c", KILL_MID_WRITE, str(sweep), str(flag)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert path.read_bytes() == before  # the previous map, untouched
    assert len(pd.read_parquet(path)) == 6
    leftovers = [p.name for p in sweep.iterdir() if p.name.startswith(".region_map")]
    assert leftovers, "the kill should have left the half-written temp file behind"
    for name in leftovers:
        (sweep / name).unlink()
    run_cli("aggregate", sweep, process=False, check=True)
    assert path.read_bytes() == before  # re-aggregation is idempotent, byte for byte


def test_query_returns_the_rows_pandas_finds(sweep):
    points = pd.read_parquet(sweep / "points")
    result = run_cli("query", "select point_id, lyapunov_max from points where region = "
                     "'chaotic' order by point_id", "--results", sweep, "--json",
                     process=False, check=True)
    rows = json.loads(result.stdout)
    expected = points[points.region == "chaotic"].sort_values("point_id")
    assert [r["point_id"] for r in rows] == expected.point_id.tolist()
    np.testing.assert_allclose([r["lyapunov_max"] for r in rows], expected.lyapunov_max,
                               rtol=1e-12)
    csv = run_cli("query", "select region, sum(n) as points from region_map group by region "
                  "order by region", "--results", sweep, "--csv", process=False,
                  check=True).stdout
    counts = pd.read_csv(pd.io.common.StringIO(csv))
    region = pd.read_parquet(sweep / "region_map.parquet")
    assert dict(zip(counts.region, counts.points, strict=True)) == region.groupby(
        "region").n.sum().to_dict()


def test_bad_sql_exits_2_with_duckdbs_message(sweep):
    result = run_cli("query", "selec * from points", "--results", sweep, process=False)
    assert result.returncode == 2
    assert "Parser Error" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("query", "select * from nowhere", "--results", sweep, process=False)
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_show_prints_the_map(sweep):
    result = run_cli("show", sweep, "--colour", "always", process=False, check=True)
    region = pd.read_parquet(sweep / "region_map.parquet")
    assert "\x1b[" in result.stdout
    plain = run_cli("show", sweep, "--colour", "never", process=False, check=True).stdout
    grid = [line.split("|")[1] for line in plain.splitlines() if line.count("|") == 2]
    expected = []
    for _, row in region.sort_values("input_scale", ascending=False).groupby(
            "input_scale", sort=False):
        expected.append("".join(r[0].upper() for r in row.sort_values(
            "recurrent_scale").region))
    assert grid == expected


def test_commands_on_a_directory_without_a_sweep_exit_2(tmp_path):
    for args in (("aggregate", str(tmp_path)), ("show", str(tmp_path)),
                 ("query", "select 1", "--results", str(tmp_path))):
        result = run_cli(*args, process=False)
        assert result.returncode == 2, args
        assert str(tmp_path) in result.stderr and "Traceback" not in result.stderr


def test_ui_command_serves_the_sweeps_store_and_stops_on_ctrl_c(sweep):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-m", "sweeper.cli", "ui", "--results",
                              str(sweep), "--port", str(port)], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = []
        for line in child.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text, (text, child.stderr.read()[-2000:])
        assert "experiment 'smoke'" in text and "#/experiments/" in text
        found = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
            "?experiment_name=smoke", timeout=10).read())
        assert found["experiment"]["name"] == "smoke"
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=60) == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_parts_of_an_older_version_of_the_file_are_ignored(sweep):
    stale = pd.read_parquet(sweep / "points").head(3).assign(trial_id="0123456789abcdef")
    stale.to_parquet(sweep / "points" / "part-0123456789abcdef.parquet")
    result = run_cli("query", "select count(*) as n from points", "--results", sweep,
                     "--json", process=False, check=True)
    assert json.loads(result.stdout) == [{"n": 12}]
    run_cli("aggregate", sweep, "--no-plots", process=False, check=True)
    assert pd.read_parquet(sweep / "region_map.parquet").n.sum() == 12


def test_resume_after_editing_the_thresholds_relabels_without_recomputing(sweep, tmp_path):
    import yaml
    from mlflow.tracking import MlflowClient

    # The sweep of search_spaces/smoke.yaml, finished; the same file, rules edited, resumes it.
    space = yaml.safe_load(SMOKE_SPACE.read_text())
    path = tmp_path / "smoke.yaml"
    out, db = sweep, f"sqlite:///{sweep.parent / 'mlflow.db'}"
    before = pd.read_parquet(out / "points")
    assert (before.region == "chaotic").any()
    space["regions"] = {"epsilon": 10.0}  # nothing is chaotic with this margin
    path.write_text(yaml.safe_dump(space))
    resumed = run_cli("run", path, "--executor", "local", "--out", out, "--tracking-uri", db,
                      "--resume", process=True, check=True)
    assert "2 already done" in resumed.stdout
    assert "relabelled the points of 2 trials" in resumed.stdout
    after = pd.read_parquet(out / "points").set_index("point_id").loc[before.point_id]
    assert not (after.region == "chaotic").any()
    np.testing.assert_array_equal(after.lyapunov_max, before.lyapunov_max)  # not recomputed
    client = MlflowClient(db)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    roles = sorted(r.data.tags["sweeper.role"] for r in runs)
    assert roles == ["sweep", "trial", "trial"]  # the same runs, none added
    assert all(r.info.status == "FINISHED" for r in runs)


def test_ui_on_a_taken_port_exits_2_with_the_reason(sweep):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli("ui", "--results", sweep, "--port", port, process=True)
    assert result.returncode == 2
    assert f"did not start on 127.0.0.1:{port}" in result.stderr
    assert "address already in use" in result.stderr and "Traceback" not in result.stderr


def _crossing_points(crossings_by_seed, xs=(0.0, 1.0, 2.0, 3.0), input_scale=1.0):
    """Per seed a straight lambda_1 = x - c line, so each seed crosses exactly at c."""
    rows = [(x, input_scale, seed, x - c, 1, 10) for seed, c in enumerate(crossings_by_seed)
            for x in xs]
    return _points(rows)


def test_crossing_interval_is_the_range_of_the_seeds_crossings():
    frame = region_map(_crossing_points([1.2, 1.8, 1.5]), "recurrent_scale", "input_scale")
    row = frame.iloc[0]
    assert row["lyapunov_zero_crossing"] == pytest.approx(1.5)  # the seed mean x - 1.5
    assert row["lyapunov_zero_crossing_lo"] == pytest.approx(1.2)
    assert row["lyapunov_zero_crossing_hi"] == pytest.approx(1.8)


def test_one_seed_gives_a_zero_width_interval_and_no_crossing_gives_nan():
    one = region_map(_crossing_points([1.3]), "recurrent_scale", "input_scale").iloc[0]
    assert one["lyapunov_zero_crossing_lo"] == one["lyapunov_zero_crossing_hi"] \
        == pytest.approx(1.3)
    never = region_map(_crossing_points([5.0, 6.0]), "recurrent_scale", "input_scale")
    assert never[["lyapunov_zero_crossing", "lyapunov_zero_crossing_lo",
                  "lyapunov_zero_crossing_hi"]].isna().all().all()


def test_mean_field_columns_only_with_a_drive():
    from sweeper.theory import MeanFieldDrive, edge_of_chaos, mean_field_lyapunov

    points = _crossing_points([1.2], xs=(0.5, 2.0), input_scale=0.5)
    plain = region_map(points, "recurrent_scale", "input_scale")
    assert "lyapunov_mean_field" not in plain
    frame = region_map(points, "recurrent_scale", "input_scale",
                       drive=MeanFieldDrive(input_std=2.0))  # sigma = 0.5 * 2 = 1
    np.testing.assert_allclose(frame["lyapunov_mean_field"],
                               mean_field_lyapunov([0.5, 2.0], 1.0, shared=True), atol=1e-12)
    np.testing.assert_allclose(frame["edge_of_chaos_mean_field"],
                               edge_of_chaos(1.0, shared=True), atol=1e-12)
    lstm = region_map(points.assign(cell="lstm"), "recurrent_scale", "input_scale",
                      drive=MeanFieldDrive(input_std=2.0))
    assert "lyapunov_mean_field" not in lstm


def test_map_text_and_plot_show_the_interval_and_the_mean_field_edge(tmp_path):
    from sweeper.figures import plot_metrics, plot_region_map
    from sweeper.terminal import render_map
    from sweeper.theory import MeanFieldDrive

    points = _crossing_points([1.2, 1.8])
    drive = MeanFieldDrive(input_std=0.5)
    frame = region_map(points, "recurrent_scale", "input_scale", drive=drive)
    text = render_map(frame, "recurrent_scale", "input_scale")
    assert "at recurrent_scale = 1.5 (seeds 1.2 .. 1.8), mean field 1.5" in text
    assert plot_region_map(frame, "recurrent_scale", "input_scale", tmp_path / "m.png",
                           "t").stat().st_size > 0
    assert plot_metrics(points, "recurrent_scale", "input_scale", tmp_path / "p.png", "t",
                        drive=drive).stat().st_size > 0


def test_a_read_only_results_directory_is_read_but_not_aggregated(sweep):
    # A copy of the sweep nobody may write (as root the commands run as `nobody`: root
    # writes anywhere). aggregate exits 2 naming the directory and what it writes, before
    # reading anything; query and show keep working.
    import stat
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="sweeper-ro-"))
    try:
        out = base / "out"
        shutil.copytree(sweep, out, ignore=shutil.ignore_patterns("mlartifacts", "*.lock"))
        prefix = []
        if os.geteuid() == 0:
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            if not os.access(sys.executable, os.X_OK):
                pytest.fail("the test needs setpriv and a python every user may run")
        for path in [base, *out.rglob("*"), out]:
            mode = path.stat().st_mode
            readable = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
            search = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0
            path.chmod((mode | readable | search) & ~(stat.S_IWUSR | stat.S_IWGRP
                                                         | stat.S_IWOTH))
        before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))

        def cli(*args):  # another user: a process of its own
            return run_cli(*args, cwd=base, through=prefix, process=True)

        refused = cli("aggregate", str(out))
        assert refused.returncode == 2, refused.stderr
        assert f"sweeper aggregate writes under '{out}'" in refused.stderr
        assert "is not writable" in refused.stderr and "Traceback" not in refused.stderr
        counted = cli("query", "select count(*) as n from points", "--results", str(out),
                      "--csv")
        assert counted.returncode == 0, counted.stderr
        assert counted.stdout.split() == ["n", "12"]
        shown = cli("show", str(out))
        assert shown.returncode == 0 and "sweep 'smoke': 6 cells, 12 points" in shown.stdout, \
            shown.stderr
        assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) \
            == before
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(base)


def test_two_results_directories_of_one_sweep_keep_their_own_artifacts(sweep, tmp_path):
    # One file, one sqlite store, two --out. Before, the experiment's artifact location was
    # the first --out's mlartifacts/: the second sweep's summary went there and was lost
    # with it. Now artifacts live beside the store, which no results directory owns.
    from mlflow.tracking import MlflowClient

    first, base = sweep, sweep.parent  # smoke.yaml's first --out, and its store beside it
    store = f"sqlite:///{base / 'mlflow.db'}"
    run_cli("run", SMOKE_SPACE, "--executor", "local", "--out", base / "second",
            "--tracking-uri", store, process=True, check=True)
    second = json.loads((base / "second" / "sweep.json").read_text())["parent_run_id"]
    shutil.rmtree(first)
    client = MlflowClient(store)
    run = client.get_run(second)
    assert run.info.artifact_uri.startswith((base / "mlartifacts").as_uri())
    listed = {Path(a.path).name for a in client.list_artifacts(second, "summary")}
    assert {"summary.md", "region_map.parquet", "region_map.png"} <= listed
    local = client.download_artifacts(second, "summary/summary.md", str(tmp_path / "dl"))
    assert "smoke" in Path(local).read_text()


def test_a_cell_with_an_undecided_spectrum_point_has_no_spectrum_mean():
    # At lyapunov_k = 1 a contracting seed has entropy rate 0 and a chaotic one NaN
    # (undecided, sweeper.spectrum): the cell's mean is NaN, not the contracting seeds' 0.
    rows = [(1.0, 0.5, 0, -0.3, 1, 0), (1.0, 0.5, 1, -0.2, 1, 0),
            (2.0, 0.5, 0, -0.1, 1, 0), (2.0, 0.5, 1, 0.2, 1, 0)]
    points = _points(rows)
    points["entropy_rate"] = [0.0, 0.0, 0.0, np.nan]
    points["lyapunov_dimension"] = [0.0, 0.0, 0.0, np.nan]
    frame = region_map(points, "recurrent_scale", "input_scale")
    assert frame.entropy_rate_mean.tolist()[0] == 0.0
    assert np.isnan(frame.entropy_rate_mean.tolist()[1])
    assert np.isnan(frame.lyapunov_dimension_std.tolist()[1])
    # Any other metric's mean is over the points that have a value, as before.
    np.testing.assert_allclose(frame.lyapunov_max_mean, [-0.25, 0.05], rtol=1e-12)


def test_ctrl_c_during_aggregate_is_exit_130_and_a_rerun_finishes(smoke_sweep):
    # Interrupted while it holds the results lock (its record is in the lock file): a line
    # that says what to do, no traceback, and every file still whole for the rerun.
    lock = smoke_sweep / ".sweeper.lock"
    child = subprocess.Popen([sys.executable, "-m", "sweeper.cli", "aggregate",
                              str(smoke_sweep)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.stat().st_size > 0):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert "interrupted" in err and "run it again" in err and "Traceback" not in err
    again = run_cli("aggregate", smoke_sweep, "--no-plots", process=True)
    assert again.returncode == 0, again.stderr[-2000:]
    counted = run_cli("query", "select count(*) as n from points", "--results", smoke_sweep,
                      "--csv", process=False)
    assert counted.returncode == 0 and counted.stdout.split() == ["n", "12"]
