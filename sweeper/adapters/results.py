"""A sweep's results directory, read and written: the points parts, the region map, the sweep
record, plots, and SQL over them (DuckDB).

Layout of ``<out>``::

    sweep.json            the search space, tracking URI and parent run (written by `run`)
    points/part-*.parquet one part per trial (see parquet_sink)
    region_map.parquet    one row per map cell (written by `aggregate`)
    plots/*.png           region map, metrics against the scaling, orbit diagram
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..aggregate import SCHEMA_VERSION, region_map
from ..atomic import atomic_write
from ..errors import SweeperInputError
from ..orbits import sweep_orbits
from ..regions import classify
from ..space import SearchSpace, validate_space
from ..theory import mean_field_drive
from .mlflow_tracker import absolute_tracking_uri
from .parquet_sink import CORRUPT, PREFIX, SUFFIX, ParquetSink

RECORD, REGION_MAP, PLOTS = "sweep.json", "region_map.parquet", "plots"

#: DuckDB settings of a confined query, fixed at connect time: no extension is fetched or
#: loaded behind the SQL's back, and no spill directory, since DuckDB lets a query write
#: wherever its temp_directory is even with external access off.
CONFINED = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
            "temp_directory": ""}


def write_record(out: str | Path, space: SearchSpace, tracking_uri: str,
                 parent_run_id: str | None = None) -> Path:
    """Store what `aggregate`, `show`, `query` and `ui` need to know about the sweep."""
    record = {"space": space.raw, "tracking_uri": absolute_tracking_uri(tracking_uri),
              "experiment": space.name, "parent_run_id": parent_run_id}

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(record, indent=1, default=str))

    return atomic_write(Path(out) / RECORD, write)


def read_record(out: str | Path) -> dict[str, Any]:
    path = Path(out) / RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SweeperInputError(f"{out} is not a sweep's results directory: {path} is "
                                "missing (run `sweeper run FILE --out DIR` first)") from None


def sweep_parts(out: str | Path, space: SearchSpace) -> list[Path]:
    """The finished parts of this sweep's trials, sorted; parts left by another version of
    the file (an edited axis gives new trial ids) are not the sweep's and are left out.

    Every part is verified (readable, its trial's number of rows, its own trial id) and
    none is moved: the read-only commands leave repairs to ``sweeper run --resume``.

    Raises:
        SweeperInputError: a part is damaged; the message names each one and the repair.
    """
    sink = ParquetSink(out)
    verified, damaged = sink.check({t.trial_id: t.n_points for t in space.trials()})
    if damaged:
        raise SweeperInputError(damaged_parts_message(out, damaged))
    return [Path(sink.location(t)) for t in sorted(verified)]


def damaged_parts_message(out: str | Path, damaged: dict[Path, str], shown: int = 5) -> str:
    """What a read-only command says about damaged parts: each file and why (the first
    ``shown``), and the command that sets them aside and computes their trials again."""
    lines = [f"{path}: {problem}" for path, problem in sorted(damaged.items())[:shown]]
    if len(damaged) > shown:
        lines.append(f"... and {len(damaged) - shown} more")
    listed = "\n  ".join(lines)
    return (f"{len(damaged)} damaged part(s) under {Path(out) / 'points'}:\n  {listed}\n"
            f"`sweeper run FILE --out {out} --resume` (FILE: this sweep's search-space file) "
            f"moves them to {Path(out) / 'points' / CORRUPT} and computes their trials again")


def labelled_points(out: str | Path, space: SearchSpace) -> tuple[pd.DataFrame, int]:
    """Every finished part of the sweep, labelled with the space's current region rules.

    A part whose stored labels differ (the rules were edited) is rewritten atomically, so the
    Parquet files agree with the map. Returns the points sorted by point_id and the number
    of parts rewritten.
    """
    sink = ParquetSink(out)
    frames, changed = [], 0
    for location in sweep_parts(out, space):
        frame = pd.read_parquet(location)
        region = classify(frame, space.rules)
        if "region" not in frame or not frame["region"].astype(str).equals(region.astype(str)):
            if "region" in frame:
                frame["region"] = region
            else:
                frame.insert(frame.columns.get_loc("status") + 1, "region", region)
            sink.write(location.name[len(PREFIX):-len(SUFFIX)], frame)
            changed += 1
        frames.append(frame)
    if not frames:
        raise SweeperInputError(f"no points under {Path(out) / 'points'}; the sweep has "
                                "not finished any trial")
    points = pd.concat(frames, ignore_index=True)
    return points.sort_values("point_id", kind="stable").reset_index(drop=True), changed


def write_region_map(out: str | Path, frame: pd.DataFrame, space: SearchSpace) -> Path:
    """``<out>/region_map.parquet`` with the schema version, the sweep's config, the rules and
    the map axes in the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    x, y = space.map
    metadata = {**(table.schema.metadata or {}),
                b"sweeper.schema_version": SCHEMA_VERSION.encode(),
                b"sweeper.sweep": json.dumps(space.raw, sort_keys=True, default=str).encode(),
                b"sweeper.rules": json.dumps(vars(space.rules), sort_keys=True).encode(),
                b"sweeper.map": json.dumps({"x": x, "y": y}).encode()}
    table = table.replace_schema_metadata(metadata)
    return atomic_write(Path(out) / REGION_MAP, lambda tmp: pq.write_table(table, tmp))


def read_region_map(out: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The region map and its sweeper metadata (decoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(out) / REGION_MAP
    if not path.exists():
        raise SweeperInputError(f"no region map at {path}; run `sweeper aggregate {out}`")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise SweeperInputError(f"{path} is not a readable Parquet file ({exc}); run "
                                f"`sweeper aggregate {out}` to write it again") from None
    meta = {k.decode()[len("sweeper."):]: v.decode() for k, v in
            (table.schema.metadata or {}).items() if k.startswith(b"sweeper.")}
    for key in ("sweep", "rules", "map"):
        if key not in meta:
            raise SweeperInputError(f"{path} has no sweeper.{key} metadata: it was not "
                                    f"written by `sweeper aggregate`")
        meta[key] = json.loads(meta[key])
    return table.to_pandas(), meta


@dataclass
class Aggregated:
    """What `aggregate` produced."""

    space: SearchSpace
    region_map: pd.DataFrame
    map_path: Path
    plots: list[Path] = field(default_factory=list)
    relabelled_parts: int = 0


def aggregate(out: str | Path, *, plots: bool = True, device: str = "cpu") -> Aggregated:
    """Classify, build and write the region map, draw the plots; idempotent.

    Raises:
        SweeperInputError: ``out`` holds no sweep record or no points.
    """
    out = Path(out)
    space = validate_space(read_record(out)["space"])
    points, relabelled = labelled_points(out, space)
    x, y = space.map
    drive = mean_field_drive(space.cell, space.task, space.task_params)  # None: no theory
    frame = region_map(points, x, y, space.rules, drive=drive)
    map_path = write_region_map(out, frame, space)
    drawn: list[Path] = []
    if plots:
        from ..figures import plot_metrics, plot_region_map

        drawn.append(plot_region_map(frame, x, y, out / PLOTS / "region_map.png",
                                     f"{space.name}: regions ({space.cell}, task {space.task})"))
        metric_axis = "recurrent_scale" if len(space.axes["recurrent_scale"]) > 1 else x
        drawn.append(plot_metrics(points, metric_axis, y if y != metric_axis else x,
                                  out / PLOTS / f"metrics_vs_{metric_axis}.png",
                                  f"{space.name}: metrics against {metric_axis} "
                                  f"({space.cell}, task {space.task})", drive=drive))
        orbit = _orbit_plot(space, out / PLOTS / "orbits.png", device)
        if orbit is not None:
            drawn.append(orbit)
    return Aggregated(space, frame, map_path, drawn, relabelled)


def _orbit_plot(space: SearchSpace, path: Path, device: str) -> Path | None:
    """The orbit (bifurcation) diagram along recurrent_scale, for tasks that define one."""
    from ..figures import plot_orbits

    seed, hidden = space.axes["seed"][0], space.axes["hidden_size"][0]
    found = sweep_orbits(space.cell, hidden, space.task, space.task_params,
                         space.axes["recurrent_scale"], seed=seed, device=device)
    if found is None:
        return None
    return plot_orbits(found["scale"], found["orbit"], path,
                       f"{space.name}: orbit diagram ({space.cell}, H = {hidden}, "
                       f"task {space.task}, seed {seed})")


def query(out: str | Path, sql: str, *, allow_files: bool = False) -> pd.DataFrame:
    """Run ``sql`` in DuckDB over the tables ``points`` (the sweep's parts) and (once
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
    import duckdb

    out = Path(out)
    space = validate_space(read_record(out)["space"])
    parts = sweep_parts(out, space)
    if not parts:
        raise SweeperInputError(f"no points under {out / 'points'}; nothing to query")
    tables = {"points": parts}
    if (out / REGION_MAP).exists():
        tables["region_map"] = [out / REGION_MAP]
    try:
        con = duckdb.connect(config={} if allow_files else CONFINED)
    except duckdb.Error as exc:
        raise SweeperInputError(f"DuckDB did not start: {exc}") from None
    try:
        for name, files in tables.items():
            _load_table(con, name, files, out, lazy=allow_files)
        if not allow_files:
            _confine(con)
        try:
            return con.execute(sql).df()
        except duckdb.Error as exc:
            refused = _refused(exc) and not allow_files
            hint = ("\nhint: a query reads only the tables points and region_map and "
                    "changes no setting; --allow-files lets it read and write other files, "
                    "attach databases and load extensions") if refused else ""
            raise SweeperInputError(f"query failed: {exc}{hint}") from None
    finally:
        con.close()


def _load_table(con, name: str, files: list[Path], out: Path, *, lazy: bool) -> None:
    """``name`` over the Parquet ``files``: a view (read at each query) when ``lazy``, else a
    table in memory, so that no file access is left for the SQL to need."""
    import duckdb

    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    kind = "VIEW" if lazy else "TABLE"
    try:
        con.execute(f"CREATE {kind} {name} AS SELECT * FROM read_parquet([{listed}], "
                    "union_by_name = true)")
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
