"""A sweep's results directory, read and written: the points parts, the region map, the sweep
record, plots, and SQL over them (DuckDB).

Layout of ``<out>``::

    sweep.json               the search space, tracking URI and parent run (written by `run`)
    points/part-*.parquet    one part per trial, as the workers write them (see parquet_sink)
    points/compact-*.parquet many trials' rows per file: `aggregate` compacts the parts
    region_map.parquet       one row per map cell (written by `aggregate`)
    plots/*.png              region map, metrics against the scaling, orbit diagram

A trial's rows may be in a part and in a compacted file at once (a crash while compacting, a
trial written again since); each reader takes each trial's rows from one file, its part if
it has one, else the newest compacted file (see parquet_sink), never a glob over points/.
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
from ..refine import fill_map
from ..regions import classify
from ..space import SearchSpace, from_record
from ..theory import mean_field_drive
from .mlflow_tracker import absolute_tracking_uri
from .parquet_sink import CORRUPT, ParquetSink, Rows, one_schema, read_rows, reading
from .rounds_file import sweep_trials

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


def sweep_sources(out: str | Path, space: SearchSpace) -> dict[str, Path]:
    """Where each finished trial of this sweep has its rows: trial id -> its part, or the
    compacted file that holds them. Trials left by another version of the file (an edited
    axis gives new trial ids) are not the sweep's and are left out.

    Every source is verified (see :meth:`ParquetSink.scan`) and none is moved: the
    read-only commands leave repairs to ``sweeper run --resume``.

    Raises:
        SweeperInputError: a file is damaged; the message names each one and the repair.
    """
    scan = ParquetSink(out).scan({t.trial_id: t.n_points for t in sweep_trials(out, space)})
    if scan.damaged:
        raise SweeperInputError(damaged_parts_message(out, scan.damaged))
    return dict(sorted(scan.sources.items()))


def damaged_parts_message(out: str | Path, damaged: dict[Path, str], shown: int = 5) -> str:
    """What a read-only command says about damaged files (parts, compacted files): each file
    and why (the first ``shown``), and the command that sets them aside and computes their
    trials again."""
    lines = [f"{path}: {problem}" for path, problem in sorted(damaged.items())[:shown]]
    if len(damaged) > shown:
        lines.append(f"... and {len(damaged) - shown} more")
    listed = "\n  ".join(lines)
    return (f"{len(damaged)} damaged file(s) under {Path(out) / 'points'}:\n  {listed}\n"
            f"`sweeper run FILE --out {out} --resume` (FILE: this sweep's search-space file) "
            f"moves them to {Path(out) / 'points' / CORRUPT} and computes their trials again")


def relabel(points: pd.DataFrame, rules) -> tuple[pd.DataFrame, set[str]]:
    """``points`` with the region the ``rules`` give each row (a ``region`` column after
    ``status`` if it had none), and the trials whose stored labels differ."""
    region = classify(points, rules).astype("str")  # the dtype a read of the labels gives
    if "region" in points:
        differs = points["region"].astype(str).to_numpy() != region.to_numpy()
        changed = set(points["trial_id"][differs])
        if changed:
            points = points.assign(region=region)
    else:
        changed = set(points["trial_id"])
        points = points.copy()
        points.insert(points.columns.get_loc("status") + 1, "region", region)
    return points, changed


def labelled_points(out: str | Path, space: SearchSpace, *,
                    compact: bool = False) -> tuple[pd.DataFrame, int]:
    """Every finished trial of the sweep, labelled with the space's current region rules.

    Trials whose stored labels differ (the rules were edited) are written again, so the
    Parquet files agree with the map: each as a part of its own, or, with ``compact``, in
    the compaction that follows (:meth:`ParquetSink.compact`), which gathers every trial's
    rows, relabelled or not, into one new compacted file.

    Returns:
        The points sorted by point_id, and the number of trials relabelled.

    Raises:
        SweeperInputError: no sweep record or points yet, or a damaged file.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    sink = ParquetSink(out)
    with reading(sink.points):  # released before compacting, which locks exclusively
        sources = sweep_sources(out, space)
        if not sources:
            raise SweeperInputError(f"no points under {Path(out) / 'points'}; the sweep has "
                                    "not finished any trial")
        rows = read_rows(sources)
    points, changed = relabel(rows.table.to_pandas(), space.rules)
    if changed:
        relabelled = points[points["trial_id"].isin(changed)]
        if compact:
            kept = rows.table.filter(pc.invert(pc.is_in(rows.table["trial_id"],
                                                        pa.array(sorted(changed)))))
            new = one_schema(pa.Table.from_pandas(relabelled, preserve_index=False))
            rows = Rows(pa.concat_tables([kept, new], promote_options="default"),
                        rows.files, frozenset(changed))
        else:
            for trial_id, frame in relabelled.groupby("trial_id", sort=True):
                sink.write(trial_id, frame)
    if compact:
        sink.compact(rows)
    return points.sort_values("point_id", kind="stable").reset_index(drop=True), len(changed)


def measured_only(points: pd.DataFrame, space: SearchSpace) -> pd.DataFrame:
    """``points`` without the metric columns of the families the sweep does not measure
    (all NaN: the region map would carry a mean and std of nothing for each)."""
    from ..schema import metric_names

    measured = {name for family in space.metrics for name in metric_names(family)}
    unmeasured = [c for c in metric_names() if c in points and c not in measured]
    return points.drop(columns=unmeasured)


def write_region_map(out: str | Path, frame: pd.DataFrame, space: SearchSpace,
                     trials: tuple[int, int] | None = None) -> Path:
    """``<out>/region_map.parquet`` with the schema version, the sweep's config, the rules,
    the map axes and (``trials``: measured, expected) how many of the sweep's trials the
    map holds in the file's metadata (``sweeper.trials``: ``{"measured", "expected"}``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    x, y = space.map
    metadata = {**(table.schema.metadata or {}),
                b"sweeper.schema_version": SCHEMA_VERSION.encode(),
                b"sweeper.sweep": json.dumps(space.raw, sort_keys=True, default=str).encode(),
                b"sweeper.rules": json.dumps(vars(space.rules), sort_keys=True).encode(),
                b"sweeper.map": json.dumps({"x": x, "y": y}).encode()}
    if trials is not None:
        metadata[b"sweeper.trials"] = json.dumps({"measured": trials[0],
                                                  "expected": trials[1]}).encode()
    table = table.replace_schema_metadata(metadata)
    return atomic_write(Path(out) / REGION_MAP, lambda tmp: pq.write_table(table, tmp))


def read_region_map(out: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The region map and its sweeper metadata (decoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(out) / REGION_MAP
    if not path.exists():
        read_record(out)  # not a sweep's directory at all: says so, and what to run instead
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
    trials_measured: int = 0
    trials_expected: int = 0

    @property
    def incomplete(self) -> str | None:
        """What the map lacks, in words, or None when it holds every trial of the sweep."""
        missing = self.trials_expected - self.trials_measured
        if missing <= 0:
            return None
        return (f"the map holds {self.trials_measured} of the sweep's {self.trials_expected} "
                f"trials: {missing} failed or have not run, and their cells lack those points")


def require_writable(out: str | Path, command: str) -> None:
    """Refuse, before anything is read, a results directory ``command`` could not write: it
    writes OUT/points/ (the compaction lock and compacted files), region_map.parquet,
    summary.md and plots/ (an existing file is replaced through a new one beside it, so its
    directory must be writable).

    Raises:
        SweeperInputError: naming the first directory that is not writable.
    """
    import os

    out = Path(out)
    for folder in (out, out / "points", out / PLOTS):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise SweeperInputError(
                f"{command} writes under {str(out)!r} (points/ is compacted, region_map.parquet, "
                f"summary.md and plots/ are rewritten), but {str(folder)!r} is not writable "
                "by this user; run it where you can write, or read the sweep with `sweeper "
                "query` and `sweeper show`, which need no write access")


def aggregate(out: str | Path, *, plots: bool = True, device: str = "cpu",
              compact: bool = True) -> Aggregated:
    """Classify, compact the points (unless ``compact`` is False), build and write the region
    map, draw the plots; idempotent.

    Compacting gathers the parts into one file (see :meth:`ParquetSink.compact`): a sweep of
    thousands of trials then takes a few dozen bytes per point instead of ~1 KB, and reads
    in one go. A resumed sweep writes parts again, and the next `aggregate` takes them in.

    Raises:
        SweeperInputError: ``out`` holds no sweep record or no points.
    """
    out = Path(out)
    space = from_record(read_record(out)["space"])
    points, relabelled = labelled_points(out, space, compact=compact)
    x, y = space.map
    drive = mean_field_drive(space.cell, space.task, space.task_params)  # None: no theory
    frame = region_map(measured_only(points, space), x, y, space.rules, drive=drive)
    if space.search.refine:  # the whole grid, unevaluated cells filled in
        frame = fill_map(frame, x, y, space.axes[x], space.axes[y])
    trials = (int(points["trial_id"].nunique()), len(sweep_trials(out, space)))
    map_path = write_region_map(out, frame, space, trials)
    drawn: list[Path] = []
    if plots:
        from ..figures import plot_metrics, plot_region_map

        drawn.append(plot_region_map(frame, x, y, out / PLOTS / "region_map.png",
                                     f"{space.name}: regions ({space.cell}, task {space.task})",
                                     epsilon=space.rules.epsilon))
        metric_axis = "recurrent_scale" if len(space.axes["recurrent_scale"]) > 1 else x
        drawn.append(plot_metrics(points, metric_axis, y if y != metric_axis else x,
                                  out / PLOTS / f"metrics_vs_{metric_axis}.png",
                                  f"{space.name}: metrics against {metric_axis} "
                                  f"({space.cell}, task {space.task})", drive=drive,
                                  caps=_caps(space), chance=_chance(space)))
        orbit = _orbit_plot(space, out / PLOTS / "orbits.png", device)
        if orbit is not None:
            drawn.append(orbit)
    return Aggregated(space, frame, map_path, drawn, relabelled, *trials)


SUMMARY = "summary.md"


def _figure(row: pd.Series, column: str) -> str:
    number = row.get(column, float("nan"))
    return "-" if pd.isna(number) else f"{number:.4g}"


def write_summary(out: str | Path, result: Aggregated) -> Path:
    """``<out>/summary.md``: what the sweep found, in words and one table, for the parent
    run's artifacts (the UI shows it as text): the model, the points, the cells per region,
    the lambda_1 = 0 crossing of each map row with the seeds' range, and where the files are."""
    space, frame = result.space, result.region_map
    x, y = space.map
    evaluated = frame["evaluated"] if "evaluated" in frame else pd.Series(True, frame.index)
    counts = frame.loc[evaluated.astype(bool), "region"].value_counts()
    lines = [f"# Sweep {space.name}", "",
             f"{space.cell}, hidden_size {', '.join(map(str, space.axes['hidden_size']))}, "
             f"task {space.task}" + (f" {space.task_params}" if space.task_params else "")
             + f"; metrics {', '.join(space.metrics)}.", "",
             f"{int(frame['n'].sum())} points in {int(evaluated.sum())} map cells "
             f"({x} x {y})" + (f" of {len(frame)} (refined: the others take the nearest "
                               "evaluated cell's region)" if not evaluated.all() else "")
             + ". Cells by majority region: "
             + ", ".join(f"{label} {counts.get(label, 0)}"
                         for label in ("forgetful", "memory", "chaotic", "unclassified")) + "."]
    if result.incomplete:
        lines += ["", f"**Incomplete:** {result.incomplete}. Finish the sweep with `sweeper run "
                      f"FILE --out {out} --resume`."]
    if "lyapunov_zero_crossing" in frame and frame["lyapunov_zero_crossing"].notna().any():
        lines += ["", f"## Edge of chaos: lambda_1 = 0 along {x}", "",
                  f"| {y} | crossing (seed mean) | seeds' range | mean field |",
                  "|---|---|---|---|"]
        for value, row in frame.groupby(y, sort=True):
            first = row.iloc[0]
            lines.append(f"| {value:g} | {_figure(first, 'lyapunov_zero_crossing')} | "
                         f"{_figure(first, 'lyapunov_zero_crossing_lo')} .. "
                         f"{_figure(first, 'lyapunov_zero_crossing_hi')} | "
                         f"{_figure(first, 'edge_of_chaos_mean_field')} |")
    out = Path(out)
    lines += ["", "## Files", "", f"- points: `{out.resolve() / 'points'}`",
              f"- region map: `{result.map_path.resolve()}`",
              *[f"- plot: `{p.resolve()}`" for p in result.plots], "",
              f"Query: `sweeper query \"select region, count(*) from points group by region\" "
              f"--results {out}`", ""]
    return atomic_write(out / SUMMARY, lambda tmp: Path(tmp).write_text("\n".join(lines)))


def _caps(space: SearchSpace) -> dict[str, float]:
    """The most some metrics can reach in this sweep: the attractor count is at most the
    initial states tried, the memory horizon at most the sequence length (one seq_len)."""
    from ..space import protocol_configs

    caps = {"attractor_count": float(protocol_configs(space)["memory"].attractor_inits)}
    if len(space.axes["seq_len"]) == 1:
        caps["memory_horizon"] = float(space.axes["seq_len"][0])
    return caps


def _chance(space: SearchSpace) -> dict[str, float]:
    """What guessing scores: 1 / classes of validation accuracy for a classification task."""
    from ..task import get_task

    task = get_task(space.task, dict(space.task_params))
    if task.loss_kind == "cross_entropy" and task.output_size > 1:
        return {"val_accuracy": 1.0 / task.output_size}
    return {}


def _orbit_plot(space: SearchSpace, path: Path, device: str) -> Path | None:
    """The orbit (bifurcation) diagram along recurrent_scale, for tasks that define one."""
    from ..figures import plot_orbits
    from ..orbits import input_words, sweep_orbits  # the numerics (torch): aggregate only

    seed, hidden = space.axes["seed"][0], space.axes["hidden_size"][0]
    found = sweep_orbits(space.cell, hidden, space.task, space.task_params,
                         space.axes["recurrent_scale"], seed=seed, device=device)
    if found is None:
        return None
    from ..task import get_task

    words = input_words(get_task(space.task, dict(space.task_params)))
    return plot_orbits(found["scale"], found["orbit"], path,
                       f"{space.name}: orbit diagram ({space.cell}, H = {hidden}, {words}, "
                       f"seed {seed})")


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

    out = Path(out)
    space = from_record(read_record(out)["space"])
    with reading(out / "points"):  # no compaction deletes a listed file under the query
        return _query(out, space, sql, allow_files)


def _query(out: Path, space: SearchSpace, sql: str, allow_files: bool) -> pd.DataFrame:
    import duckdb

    sources = sweep_sources(out, space)
    if not sources:
        raise SweeperInputError(f"no points under {out / 'points'}; nothing to query")
    try:
        con = duckdb.connect(config={} if allow_files else CONFINED)
    except duckdb.Error as exc:
        raise SweeperInputError(f"DuckDB did not start: {exc}") from None
    try:
        _load_points(con, sources, out, lazy=allow_files)
        if (out / REGION_MAP).exists():
            _load_table(con, "region_map", f"SELECT * FROM {_parquet([out / REGION_MAP])}",
                        out, lazy=allow_files)
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
