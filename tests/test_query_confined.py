"""`sweeper query` runs the user's SQL confined to the sweep's tables: each way out of them
(writing a file, reading one, attaching a database, loading an extension, switching the
confinement off) is tried through the real command on a real sweep (the ``smoke_sweep``
fixture), and must exit 2 with DuckDB's reason and a hint, leaving nothing behind;
``--allow-files`` lifts it. The command runs in this process: DuckDB's confinement is the
connection's, not the process's."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_cli

HINT = "--allow-files lets it read and write other files"


@pytest.fixture
def sweep(smoke_sweep):
    return smoke_sweep


def _snapshot(out: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_queries_over_points_and_region_map_still_work(sweep):
    points = pd.read_parquet(sweep / "points")
    result = run_cli("query", "select count(*) as n, count(distinct point_id) as ids, "
                     "(select sum(n) from region_map) as mapped from points", "--results",
                     sweep, "--json", process=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [{"n": len(points), "ids": len(points),
                                          "mapped": len(points)}]
    joined = run_cli("query", "select count(*) as n from points p join region_map m using "
                     "(recurrent_scale, input_scale) where p.region = m.region", "--results",
                     sweep, "--json", process=False)
    assert joined.returncode == 0 and json.loads(joined.stdout)[0]["n"] > 0


def _outside_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere.parquet"
    pd.DataFrame({"secret": [42]}).to_parquet(path)
    return path


# Each way out: (SQL with {tmp} and {out} to fill in, what DuckDB says, what must not exist).
ESCAPES = {
    "copy to a file": ("copy (select * from points) to '{tmp}/leak.csv'", "Permission Error",
                       "leak.csv"),
    "copy over a points file": ("copy (select 1 as x) to '{part}' (format parquet, "
                                "use_tmp_file false)", "Permission Error", None),
    "copy into the results": ("copy (select * from points) to '{out}/leak.parquet'",
                              "Permission Error", None),
    "export database": ("export database '{tmp}/dump'", "Permission Error", "dump"),
    "read /etc/passwd": ("select * from read_csv('/etc/passwd')", "Permission Error", None),
    "read a parquet file elsewhere": ("select * from read_parquet('{elsewhere}')",
                                      "Permission Error", None),
    "list a directory": ("select * from glob('/etc/*')", "Permission Error", None),
    "attach a database": ("attach '{tmp}/other.duckdb' as other", "Permission Error",
                          "other.duckdb"),
    "install an extension": ("install httpfs", "Permission Error", None),
    "load an extension": ("load httpfs", "Permission Error", None),
    "switch external access on": ("set enable_external_access = true",
                                  "configuration has been locked", None),
    "unlock the configuration": ("set lock_configuration = false",
                                 "configuration has been locked", None),
    "reset external access": ("reset enable_external_access",
                              "configuration has been locked", None),
    "allow a directory": ("set allowed_directories = ['/']", "configuration has been locked",
                          None),
}


@pytest.mark.parametrize("escape", ESCAPES)
def test_each_way_out_of_the_tables_exits_2_and_leaves_nothing(sweep, tmp_path, escape):
    template, says, must_not_exist = ESCAPES[escape]
    part = next((sweep / "points").glob("*.parquet"))  # compacted by `run`'s aggregate
    sql = template.format(tmp=tmp_path, out=sweep, part=part,
                          elsewhere=_outside_parquet(tmp_path))
    before = _snapshot(sweep)
    result = run_cli("query", sql, "--results", sweep, cwd=tmp_path, process=False)
    stderr = result.stderr
    assert result.returncode == 2, (result.stdout[-2000:], stderr[-2000:])
    assert says in stderr and HINT in stderr, stderr
    assert "Traceback" not in stderr
    assert _snapshot(sweep) == before  # no part, map or new file in the results
    if must_not_exist:
        assert not (tmp_path / must_not_exist).exists()
    assert not (tmp_path / ".tmp").exists()  # DuckDB's spill directory was not created


def test_a_plain_sql_error_gets_no_allow_files_hint(sweep):
    result = run_cli("query", "select nonsense from points", "--results", sweep,
                     process=False)
    assert result.returncode == 2 and "nonsense" in result.stderr
    assert HINT not in result.stderr and "Traceback" not in result.stderr


def test_allow_files_lifts_the_confinement(sweep, tmp_path):
    target = tmp_path / "points.csv"
    copied = run_cli("query", f"copy (select point_id from points order by point_id) to "
                     f"'{target}'", "--results", sweep, "--allow-files", process=False)
    assert copied.returncode == 0, copied.stderr[-2000:]
    points = pd.read_parquet(sweep / "points")
    assert pd.read_csv(target).point_id.tolist() == sorted(points.point_id)
    read = run_cli("query", f"select secret from read_parquet('{_outside_parquet(tmp_path)}')",
                   "--results", sweep, "--allow-files", "--json", process=False)
    assert read.returncode == 0 and json.loads(read.stdout) == [{"secret": 42}]
