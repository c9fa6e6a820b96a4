"""SQL over a sweep's results directory (DuckDB): the tables ``points`` (each finished
trial's rows, from the one file the pick gives it; see parquet_sink) and, once aggregated,
``region_map``; confined to them unless the caller allows files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import SweeperInputError
from ..space import SearchSpace, from_record
from .parquet_sink import read_rows, reading
from .results import REGION_MAP, read_record, sweep_sources
from .storage import Location, ObjectPath, location, read_table, retry_vanished

#: DuckDB settings of a confined query, fixed at connect time: no extension is fetched or
#: loaded behind the SQL's back, and no spill directory, since DuckDB lets a query write
#: wherever its temp_directory is even with external access off.
CONFINED = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
            "temp_directory": ""}


def query(out: str | Path, sql: str, *, allow_files: bool = False) -> pd.DataFrame:
    """Run ``sql`` in DuckDB over the tables ``points`` (the sweep's points) and (once
    aggregated) ``region_map``.

    By default the SQL is confined to those two tables: they are loaded into memory, then
    DuckDB's external access is switched off and its configuration locked, so the SQL cannot
    read files (``read_csv('/etc/passwd')``, another Parquet file), write them (``COPY ... TO``,
    ``EXPORT DATABASE``), ``ATTACH`` a database, ``INSTALL`` or ``LOAD`` an extension, or
    ``SET`` any of that back. ``allow_files=True`` (``sweeper query --allow-files``) lifts
    all of it: ``points`` and ``region_map`` are then views over the files, read lazily, and
    the SQL runs with the full rights of the user, as in the DuckDB shell.

    Example::

        query("results/smoke", "select region, count(*) from points group by region")

    Raises:
        SweeperInputError: no sweep record or points yet, a damaged part or region map, or
            DuckDB rejected the query (its message kept; a refused file access or setting
            adds a hint about ``--allow-files``).
    """
    out = location(out)
    space = from_record(read_record(out)["space"])

    def run() -> pd.DataFrame:
        with reading(out / "points"):  # no compaction deletes a listed file under the query
            return _query(out, space, sql, allow_files)

    return retry_vanished(run, out)


def _query(out: Location, space: SearchSpace, sql: str, allow_files: bool) -> pd.DataFrame:
    import duckdb

    sources = sweep_sources(out, space)
    if not sources:
        raise SweeperInputError(f"no points under {out / 'points'}; nothing to query")
    try:
        con = duckdb.connect(config={} if allow_files else CONFINED)
    except duckdb.Error as exc:
        raise SweeperInputError(f"DuckDB did not start: {exc}") from None
    try:
        if isinstance(out, ObjectPath):
            _load_stored(con, sources, out, lazy=allow_files)
        else:
            _load_points(con, sources, out, lazy=allow_files)
            if (out / REGION_MAP).exists():
                _load_table(con, "region_map",
                            f"SELECT * FROM {_parquet([out / REGION_MAP])}", out,
                            lazy=allow_files)
        if not allow_files:
            _confine(con)
        try:
            statements = con.extract_statements(sql)
            if not statements:
                raise SweeperInputError("the query is empty; give one SQL statement")
            if len(statements) > 1:
                raise SweeperInputError(f"a query is one SQL statement, got {len(statements)} "
                                        "(separated by ';'); run them one at a time")
            return con.execute(sql).df()
        except duckdb.Error as exc:
            refused = _refused(exc) and not allow_files
            hint = ("\nhint: a query reads only the tables points and region_map and "
                    "changes no setting; --allow-files lets it read and write other files, "
                    "attach databases and load extensions") if refused else ""
            raise SweeperInputError(f"query failed: {exc}{hint}") from None
    finally:
        con.close()


#: The (trial_id, file) pairs that say which rows of which file are the sweep's points.
SOURCES = "sweeper_sources"


def _load_points(con, sources: dict[str, Path], out: Path, *, lazy: bool) -> None:
    """``points``: each trial's rows from its source file only (a compacted file also holds
    other trials, and copies of trials whose part is newer), through a semi-join with the
    table ``sweeper_sources`` (trial_id, file), which a lazy ``points`` view keeps reading
    and the SQL may read too: where each trial's rows are."""
    pairs = pd.DataFrame({"trial_id": list(sources),
                          "file": [str(path) for path in sources.values()]})
    con.register("sweeper_pairs", pairs)
    con.execute(f"CREATE TEMP TABLE {SOURCES} AS SELECT * FROM sweeper_pairs")
    con.unregister("sweeper_pairs")
    files = sorted(set(sources.values()))
    _load_table(con, "points", f"SELECT p.* EXCLUDE (filename) FROM "
                f"{_parquet(files, filename=True)} p SEMI JOIN {SOURCES} s "
                "ON p.trial_id = s.trial_id AND p.filename = s.file", out, lazy=lazy)


def _load_stored(con, sources: dict[str, ObjectPath], out: ObjectPath, *, lazy: bool) -> None:
    """``points``, ``sweeper_sources`` and ``region_map`` of a sweep on an object store, read
    through :mod:`.storage` (the endpoint and credentials of the environment) and
    registered in DuckDB as Arrow tables: DuckDB itself reads no URL, so it needs no httpfs
    extension, and a confined query still has no file or network access."""
    import pyarrow as pa

    pairs = pd.DataFrame({"trial_id": list(sources),
                          "file": [str(path) for path in sources.values()]})
    tables = {SOURCES: pa.Table.from_pandas(pairs, preserve_index=False),
              "points": read_rows(sources).table}
    region_map = out / REGION_MAP
    if region_map.exists():
        try:
            tables["region_map"] = read_table(region_map)
        except (pa.ArrowException, OSError) as exc:
            raise SweeperInputError(f"cannot read region_map from {out}: {exc}; run `sweeper "
                                    f"aggregate {out}` to write it again") from None
    for name, table in tables.items():
        con.register(f"sweeper_arrow_{name}", table)
        kind = "TEMP TABLE" if name == SOURCES else "VIEW" if lazy else "TABLE"
        con.execute(f"CREATE {kind} {name} AS SELECT * FROM sweeper_arrow_{name}")
        if kind != "VIEW":
            con.unregister(f"sweeper_arrow_{name}")


def _parquet(files: list[Path], *, filename: bool = False) -> str:
    """DuckDB's reader over ``files``, their columns matched by name."""
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    return (f"read_parquet([{listed}], union_by_name = true"
            f"{', filename = true' if filename else ''})")


def _load_table(con, name: str, select: str, out: Path, *, lazy: bool) -> None:
    """``name`` as ``select``: a view (read at each query) when ``lazy``, else a table in
    memory, so that no file access is left for the SQL to need."""
    import duckdb

    kind = "VIEW" if lazy else "TABLE"
    try:
        con.execute(f"CREATE {kind} {name} AS {select}")
    except duckdb.Error as exc:
        repair = (f"; run `sweeper aggregate {out}` to write it again"
                  if name == "region_map" else "")
        raise SweeperInputError(f"cannot read {name} from {out}: {exc}{repair}") from None


def _confine(con) -> None:
    """Switch off DuckDB's access to files, network and extensions, then lock the
    configuration, so no statement can switch it back (``SET``, ``RESET``, ``PRAGMA``)."""
    import duckdb

    try:
        # Order matters: locked first, the second setting could not be made.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.Error as exc:  # an older DuckDB without these settings: refuse, not run
        raise SweeperInputError(f"cannot confine the query ({exc}); pass --allow-files to "
                                "run it unconfined") from None


def _refused(exc: Exception) -> bool:
    """Whether DuckDB refused the statement for the confinement (a file, an extension, a
    setting) rather than for the SQL itself."""
    import duckdb

    return (isinstance(exc, duckdb.PermissionException)
            or "configuration has been locked" in str(exc))
