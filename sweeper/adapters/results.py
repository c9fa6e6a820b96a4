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
from ..regions import classify
from ..space import SearchSpace, validate_space
from .mlflow_tracker import absolute_tracking_uri
from .parquet_sink import PREFIX, SUFFIX, ParquetSink

RECORD, REGION_MAP, PLOTS = "sweep.json", "region_map.parquet", "plots"


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
    the file (an edited axis gives new trial ids) are not the sweep's and are left out."""
    sink = ParquetSink(out)
    ours = {t.trial_id for t in space.trials()}
    return [Path(sink.location(t)) for t in sorted(sink.completed() & ours)]


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
    frame = region_map(points, x, y, space.rules)
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
                                  f"({space.cell}, task {space.task})"))
        orbit = _orbit_plot(space, out / PLOTS / "orbits.png", device)
        if orbit is not None:
            drawn.append(orbit)
    return Aggregated(space, frame, map_path, drawn, relabelled)


def _orbit_plot(space: SearchSpace, path: Path, device: str) -> Path | None:
    """The orbit (bifurcation) diagram along recurrent_scale, for tasks that define one."""
    from tasks import get_task

    task = get_task(space.task, dict(space.task_params))
    scales = space.axes["recurrent_scale"]
    if not getattr(task, "orbit_diagram", False) or len(scales) < 2:
        return None
    from ..figures import plot_orbits
    from ..orbits import orbits_for

    seed, hidden = space.axes["seed"][0], space.axes["hidden_size"][0]
    found = orbits_for(space.cell, hidden, task, scales, seed=seed, device=device)
    return plot_orbits(found["scale"], found["orbit"], path,
                       f"{space.name}: orbit diagram ({space.cell}, H = {hidden}, "
                       f"task {space.task}, seed {seed})")


def query(out: str | Path, sql: str) -> pd.DataFrame:
    """Run ``sql`` in DuckDB over the views ``points`` (the sweep's parts) and (once
    aggregated) ``region_map``.

    Raises:
        SweeperInputError: no sweep record or points yet, or DuckDB rejected the query (its
            message kept).
    """
    import duckdb

    out = Path(out)
    space = validate_space(read_record(out)["space"])
    parts = sweep_parts(out, space)
    if not parts:
        raise SweeperInputError(f"no points under {out / 'points'}; nothing to query")
    con = duckdb.connect()
    try:
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parts)
        con.execute(f"CREATE VIEW points AS SELECT * FROM read_parquet([{files}], "
                    "union_by_name = true)")
        if (out / REGION_MAP).exists():
            path = str(out / REGION_MAP).replace("'", "''")
            con.execute(f"CREATE VIEW region_map AS SELECT * FROM read_parquet('{path}')")
        try:
            return con.execute(sql).df()
        except duckdb.Error as exc:
            raise SweeperInputError(f"query failed: {exc}") from None
    finally:
        con.close()
