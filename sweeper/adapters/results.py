"""A sweep's results directory, read and written: the sweep record, the points (through
parquet_sink), the region map, the summary and the plots of `aggregate`, whose steps are the
core's (sweeper.aggregate). SQL over the directory is sweeper.adapters.query.

Layout of ``<out>``::

    sweep.json               the search space, tracking URI and parent run (written by `run`)
    points/part-*.parquet    one part per trial, as the workers write them (see parquet_sink)
    points/compact-*.parquet many trials' rows per file: `aggregate` compacts the parts
    region_map.parquet       one row per map cell (written by `aggregate`)
    summary.md               what the sweep found, in words (written by `aggregate`)
    plots/*.png              region map, metrics against the scaling, orbit diagram

A trial's rows may be in a part and in a compacted file at once (a crash while compacting, a
trial written again since); each reader takes each trial's rows from one file, its part if
it has one, else the newest compacted file (see parquet_sink), never a glob over points/.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..aggregate import SCHEMA_VERSION, Aggregated, relabel, summary_text, sweep_map, sweep_plots
from ..atomic import atomic_write
from ..errors import SweeperInputError
from ..space import SearchSpace, from_record
from ..theory import mean_field_drive
from .parquet_sink import CORRUPT, ParquetSink, read_rows, reading
from .rounds_file import sweep_trials
from .sqlite_store import absolute_tracking_uri
from .storage import Location, ObjectPath, local_file, location, retry_vanished
from .storage import read_table as read_stored_table

RECORD, REGION_MAP, PLOTS, SUMMARY = "sweep.json", "region_map.parquet", "plots", "summary.md"


def write_record(out: str | Path, space: SearchSpace, tracking_uri: str,
                 parent_run_id: str | None = None) -> Path:
    """Store what `aggregate`, `show`, `query` and `ui` need to know about the sweep."""
    record = {"space": space.raw, "tracking_uri": absolute_tracking_uri(tracking_uri),
              "experiment": space.name, "parent_run_id": parent_run_id}

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(record, indent=1, default=str))

    return atomic_write(location(out) / RECORD, write)


def read_record(out: str | Path | ObjectPath) -> dict[str, Any]:
    path = location(out) / RECORD
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SweeperInputError(f"{out} is not a sweep's results directory: {path} is "
                                "missing (run `sweeper run FILE --out DIR` first)") from None
    except OSError as exc:  # an object store that does not answer, or refuses the read
        raise SweeperInputError(f"cannot read {path}: {exc}") from None


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
        # On an object store a file listed, then deleted by a compaction before it was read,
        # reads as damaged: FileNotFoundError makes the reader list again (retry_vanished).
        vanished = [p for p in scan.damaged if isinstance(p, ObjectPath) and not p.exists()]
        if vanished:
            raise FileNotFoundError(f"{vanished[0]} was deleted while it was read")
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
    points = location(out) / "points"
    return (f"{len(damaged)} damaged file(s) under {points}:\n  {listed}\n"
            f"`sweeper run FILE --out {out} --resume` (FILE: this sweep's search-space file) "
            f"moves them to {points / CORRUPT} and computes their trials again")


def labelled_points(out: str | Path, space: SearchSpace, *,
                    compact: bool = False) -> tuple[pd.DataFrame, int]:
    """Every finished trial of the sweep, labelled with the space's current region rules
    (:func:`sweeper.aggregate.relabel`).

    Trials whose stored labels differ (the rules were edited) are written again, so the
    Parquet files agree with the map: each as a part of its own
    (:meth:`ParquetSink.rewrite`), or, with ``compact``, in the compaction that follows
    (:meth:`ParquetSink.compact`), which gathers every trial's rows, relabelled or not, into
    one new compacted file.

    Returns:
        The points sorted by point_id, and the number of trials relabelled.

    Raises:
        SweeperInputError: no sweep record or points yet, or a damaged file.
    """
    sink = ParquetSink(out)

    def read():
        with reading(sink.points):  # released before compacting, which locks exclusively
            sources = sweep_sources(out, space)
            if not sources:
                raise SweeperInputError(f"no points under {sink.points}; the sweep has not "
                                        "finished any trial")
            return read_rows(sources)

    rows = retry_vanished(read, sink.points)
    points, changed = relabel(rows.to_pandas(), space.rules)
    relabelled = {trial_id: rows for trial_id, rows in
                  points[points["trial_id"].isin(changed)].groupby("trial_id", sort=True)}
    if compact:
        sink.compact(rows, replacing=relabelled)
    else:
        sink.rewrite(relabelled)
    return points.sort_values("point_id", kind="stable").reset_index(drop=True), len(changed)


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
    return atomic_write(location(out) / REGION_MAP, lambda tmp: pq.write_table(table, tmp))


def read_region_map(out: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The region map and its sweeper metadata (decoded)."""
    import pyarrow as pa

    path = location(out) / REGION_MAP
    if not path.exists():
        read_record(out)  # not a sweep's directory at all: says so, and what to run instead
        raise SweeperInputError(f"no region map at {path}; run `sweeper aggregate {out}`")
    try:
        table = read_stored_table(path)
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


def require_writable(out: str | Path, command: str) -> None:
    """Refuse, before anything is read, a results directory ``command`` could not write: it
    writes OUT/points/ (the compaction lock and compacted files), region_map.parquet,
    summary.md and plots/ (an existing file is replaced through a new one beside it, so its
    directory must be writable).

    Raises:
        SweeperInputError: naming the first directory that is not writable.
    """
    out = location(out)
    if isinstance(out, ObjectPath):  # the lock's probe writes there first, and says so
        return
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
    map, draw the plots (the orbit diagram computed on ``device``); idempotent. The steps are
    sweeper.aggregate's; this reads their input and writes what they return.

    Compacting gathers the parts into one file (see :meth:`ParquetSink.compact`): a sweep of
    thousands of trials then takes a few dozen bytes per point instead of ~1 KB, and reads
    in one go. A resumed sweep writes parts again, and the next `aggregate` takes them in.

    Raises:
        SweeperInputError: ``out`` holds no sweep record or no points.
    """
    out = location(out)
    space = from_record(read_record(out)["space"])
    points, relabelled = labelled_points(out, space, compact=compact)
    drive = mean_field_drive(space.cell, space.task, space.task_params)  # None: no theory
    frame = sweep_map(points, space, drive)
    trials = (int(points["trial_id"].nunique()), len(sweep_trials(out, space)))
    map_path = write_region_map(out, frame, space, trials)
    drawn = ([_drawn(draw, out / PLOTS / name) for name, draw in
              sweep_plots(points, frame, space, drive, device=device).items()] if plots else [])
    return Aggregated(space, frame, map_path, drawn, relabelled, *trials)


def _drawn(draw, target: Location) -> Location:
    """``draw(path)`` (a figure saved to a local file) into ``target``, local or stored."""
    with local_file(target) as path:
        draw(path)
    return target


def write_summary(out: str | Path, result: Aggregated) -> Path:
    """``<out>/summary.md`` (:func:`sweeper.aggregate.summary_text`), for the parent run's
    artifacts (the UI shows it as text), naming the points, the map and the plots by their
    absolute paths."""
    files = [("points", location(out).resolve() / "points"),
             ("region map", result.map_path.resolve()),
             *[("plot", p.resolve()) for p in result.plots]]
    text = summary_text(result, out, files)
    return atomic_write(location(out) / SUMMARY, lambda tmp: Path(tmp).write_text(text))


def plot_sweeps(outs: list[str | Path], metric: str, x: str, *, by: str | None = None,
                where: dict[str, float] | None = None, by_values: list[float] | None = None,
                out: str | Path | None = None) -> tuple[Path, list[str]]:
    """``sweeper plot``: ``metric`` against ``x`` for the sweeps in ``outs``, each line the
    points that differ in seed alone (:mod:`sweeper.lines`). Returns the figure's path and
    the notes to show (values of ``by`` thinned).

    Raises:
        SweeperInputError: an unknown axis or metric, a format other than png/svg/pdf, or an
            axis the lines would average over (named, with the ``where`` that picks it).
    """
    from ..axes import AXES
    from ..figures import FORMATS, plot_metric
    from ..lines import MAX_LINES, is_flag, lines, refuse_pooling, select, spaced
    from ..schema import numeric_metrics

    if x not in AXES:
        raise SweeperInputError(f"--x must be one of {list(AXES)}, got --x={x!r}")
    where = dict(where or {})
    target = location(out or location(outs[0]) / PLOTS / f"{metric}_vs_{x}.png")
    if target.suffix.lstrip(".").lower() not in FORMATS:
        raise SweeperInputError(f"--out must end in one of {['.' + f for f in FORMATS]}, got "
                                f"--out={str(target)!r}")
    sweeps, notes, flag = [], [], False
    for results in outs:
        space = from_record(read_record(results)["space"])
        chosen = by or next((a for a in space.map if a not in (x, "seed")), None)
        chosen = None if chosen == "none" or chosen == x else chosen
        if chosen is not None and chosen not in AXES:
            raise SweeperInputError(f"--by must be one of {list(AXES)} or none, got "
                                    f"--by={chosen!r}")
        points = _points_of(results, space)
        measured = [m for m in numeric_metrics() if m in points and points[m].notna().any()]
        if metric not in measured:
            raise SweeperInputError(f"metric must be one of the metrics measured in {results}: "
                                    f"{measured}, got metric={metric!r}")
        points = select(points, where, str(results))
        if points[x].nunique() < 2:
            raise SweeperInputError(f"--x {x} has one value in {results}; the sweep varies "
                                    f"{[a for a in AXES if len(space.axes[a]) > 1]}")
        refuse_pooling(points, x, chosen, str(results))
        flag = flag or is_flag(points[metric])
        if chosen is not None and by_values is None and points[chosen].nunique() > MAX_LINES:
            shown = spaced(sorted(points[chosen].unique()))
            notes.append(f"{results}: drawing {len(shown)} of the {points[chosen].nunique()} "
                         f"values of --by {chosen}, evenly spaced; choose them with "
                         "--by-values")
        sweeps.append((space.name, lines(points, metric, x, chosen, by_values), chosen))
    bys = {chosen for _, _, chosen in sweeps}
    common = bys.pop() if len(bys) == 1 else None  # split by different axes: a line each
    names = " vs ".join(name for name, _, _ in sweeps)
    fixed = "".join(f", {a} = {v:g}" for a, v in where.items())
    with local_file(target) as local:
        plot_metric([(name, drawn) for name, drawn, _ in sweeps], metric, x, common, local,
                    f"{names}: {metric} against {x}{fixed}", flag=flag)
    return target, notes


def _points_of(out: str | Path, space: SearchSpace) -> pd.DataFrame:
    """Every finished trial's rows, each trial from one file (the sweep's current trials)."""
    points = location(out) / "points"

    def read() -> pd.DataFrame:
        with reading(points):  # a compaction waits until they are read
            sources = sweep_sources(out, space)
            if not sources:
                raise SweeperInputError(f"no points under {points} yet")
            return read_rows(sources).to_pandas()

    return retry_vanished(read, points)


@dataclass
class Results:
    """A finished (or running) sweep as pandas: what ``sweeper.load`` returns.

    Attributes:
        out: the results directory. record: ``sweep.json`` (the space, the tracking URI, the
            parent run). space: the validated search space.
        points: one row per measured point of the sweep's current trials, each exactly once.
        region_map: one row per map cell, or None before ``sweeper aggregate``.
    """

    out: Location
    record: dict[str, Any]
    space: SearchSpace
    points: pd.DataFrame
    region_map: pd.DataFrame | None

    def plot(self, metric: str, x: str, *, by: str | None = None,
             where: dict[str, float] | None = None, by_values: list[float] | None = None,
             out: str | Path | None = None) -> Path:
        """The figure ``sweeper plot`` draws for this sweep; returns its path."""
        return plot_sweeps([self.out], metric, x, by=by, where=where, by_values=by_values,
                           out=out)[0]


def load(out: str | Path) -> Results:
    """A sweep's results directory as pandas (the equivalent of ``sweeper query`` and
    ``sweeper show`` in a notebook).

    Raises:
        SweeperInputError: not a results directory, or no finished trial yet.

    Example:
        >>> results = sweeper.load("results/quickstart")  # doctest: +SKIP
        >>> results.points.groupby("region").size()  # doctest: +SKIP
    """
    out = location(out)
    record = read_record(out)
    space = from_record(record["space"])
    points = _points_of(out, space).sort_values("point_id", kind="stable")
    region_map = None
    if (out / REGION_MAP).exists():
        region_map = read_region_map(out)[0]
    return Results(out, record, space, points.reset_index(drop=True), region_map)
