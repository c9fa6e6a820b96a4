"""Trial results as Parquet files under ``<out>/points``:

* ``part-<trial_id>.parquet``, a *part*: one trial's rows, as its worker writes them;
* ``compact-<generation>.parquet``, a *compacted file*: the rows of many trials in one file,
  sorted by trial id and zstd-compressed, written by :meth:`ParquetSink.compact` (``sweeper
  aggregate``). Five thousand parts of twenty points take ~22 KB each, mostly per-file
  metadata; compacted, the same points take a few dozen bytes each and read in one go.

Every file is written to a hidden temporary name and renamed, so a reader never sees half of
one; on an object store (``--out s3://...``, :mod:`.storage`) it is uploaded with one PUT to
its final key, which is as atomic.

The same trial may be in several files (compaction copies rows before it deletes their old
files, and a trial is written again as a part), so which rows are a trial's is one rule, the
*pick*: its part when it has one (a part is never older than a compacted copy: after
compaction a trial is only ever written again as a part), else the compacted file of the
highest generation that holds it. Compaction writes the next generation with every trial's
picked rows, then deletes the files that generation replaces; a crash anywhere in between
leaves copies the pick never reads twice. Readers go through :meth:`ParquetSink.scan`; a glob
over ``points/`` (``pandas.read_parquet(<out>/points)``, which skips the dot-files) reads each
point once only where nothing was written since the last compaction finished.

A file on disk is checked before it counts as done (see :func:`part_problem` and
:func:`compacted_contents`): a rename is atomic, but a disk that fills, a copy cut short or a
hand edit can still leave a damaged file under the final name. ``sweeper run`` moves such a
file to ``points/.corrupt/`` and computes its trials again; the read-only commands refuse it,
naming the file."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..atomic import atomic_write
from ..schema import Column, column, part_columns
from ..sweep import ResultSink
from . import storage
from .lock import UNSUPPORTED
from .storage import Location, ObjectPath, location, parquet_file, read_table

if TYPE_CHECKING:
    import pyarrow as pa

PREFIX, SUFFIX = "part-", ".parquet"
#: Names of compacted files: ``compact-000001.parquet``, the generation zero-padded.
COMPACTED = "compact-"
#: Where `run` keeps damaged files (a dot-directory: no reader of ``points/`` descends into it).
CORRUPT = ".corrupt"
#: Held (flock) while compacting, so two compactions never write one generation twice.
COMPACTION_LOCK = ".compaction.lock"
#: A hidden temporary file (``atomic_write``'s ``.NAME.XXXX.tmp``) older than this was left by
#: a process that died while writing: compaction removes it. A live write of a part or of a
#: compacted file takes seconds; an hour leaves a wide margin for a slow shared disk.
STALE_TEMPORARY_S = 3600.0
#: Rows per row group of a compacted file: large enough that per-group metadata costs well
#: under a byte per point, small enough that reading one trial skips most of a large file.
ROW_GROUP_ROWS = 65_536
#: Threads that read footers and parts: the time per file is mostly fixed overhead (opening,
#: parsing a footer), which threads overlap, also on a shared filesystem's latency.
READERS = 16
#: Files read before their tables are merged into one (see :func:`read_rows`).
READ_BATCH = 256
LOG = logging.getLogger("sweeper")


def arrow_type(declared: Column):
    """The pyarrow type of a schema column."""
    import pyarrow as pa

    return {"string": pa.string(), "int64": pa.int64(), "double": pa.float64(),
            "bool": pa.bool_(), "list<double>": pa.list_(pa.float64())}[declared.dtype]


#: The type of every column of a part, from the one schema (sweeper.schema).
TYPES = {c.name: c for c in part_columns()}


def stable_types(table):
    """Cast every declared column to its schema type, so every part, and every reader, sees
    one schema: metric columns a trial did not measure (all-None) get the type they have
    when measured, and pandas' string flavours become plain strings."""
    for index, field_ in enumerate(table.schema):
        declared = TYPES.get(field_.name) or column(field_.name)
        if declared is not None and field_.type != arrow_type(declared):
            kind = arrow_type(declared)
            table = table.set_column(index, field_.with_type(kind),
                                     table.column(index).cast(kind))
    return table


def part_problem(path: str | Path, trial_id: str, n_points: int) -> str | None:
    """Why ``path`` is not the finished part of ``trial_id`` with ``n_points`` rows, or None
    when it is: a readable Parquet footer, ``n_points`` rows, and a ``trial_id`` column that
    holds ``trial_id`` only (a part copied or renamed from another trial fails).

    Reads the footer and, unless the footer's statistics already say that it holds one value,
    that one column, never the metrics: it runs over every part on each resume and each
    read-only command, which can be thousands of parts.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        with parquet_file(path) as part:
            rows = part.metadata.num_rows
            if "trial_id" not in part.schema_arrow.names:
                return "no trial_id column"
            ids = _single_value(part.metadata, "trial_id")
            if ids is None:
                column_ = part.read(columns=["trial_id"], use_threads=False).column(0)
                ids = pc.unique(column_).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        return f"not a readable Parquet file: {exc}"
    if rows != n_points:
        return f"{rows} rows, but the trial has {n_points} points"
    if ids != [trial_id]:
        return f"its trial_id column holds {sorted(map(str, ids))}, not only {trial_id!r}"
    return None


def _single_value(metadata, name: str) -> list | None:
    """``[value]`` when the footer's statistics say that every row group's column ``name``
    holds that one value and no null; None when they cannot say (then read the column)."""
    if metadata.num_row_groups == 0:
        return None
    # The leaves' names from a row group, not from ``metadata.schema``: looked at in a reader
    # thread, a footer's schema object kept memory alive after its file was closed (about
    # the footer's size, per file: see tests/test_parts.py); column chunks keep nothing.
    first = metadata.row_group(0)
    leaves = [first.column(i).path_in_schema for i in range(metadata.num_columns)]
    if name not in leaves:
        return None
    index, values = leaves.index(name), set()
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max or stats.null_count != 0 \
                or stats.min != stats.max:
            return None
        values.add(stats.min)
    return list(values) if len(values) == 1 else None


@dataclass(frozen=True)
class Compacted:
    """A compacted file's trials, from its trial_id column alone: rows per trial, or why the
    file cannot be read (then ``rows`` is empty)."""

    path: Path
    generation: int
    rows: Mapping[str, int]
    problem: str | None = None


def compacted_contents(path: Path, generation: int) -> Compacted:
    """What the compacted file ``path`` holds; reads its footer and trial_id column only."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        with parquet_file(path) as compacted:
            if "trial_id" not in compacted.schema_arrow.names:
                return Compacted(path, generation, {}, "no trial_id column")
            ids = compacted.read(columns=["trial_id"]).column(0)
    except (pa.ArrowException, OSError) as exc:
        return Compacted(path, generation, {}, f"not a readable Parquet file: {exc}")
    if ids.null_count:
        return Compacted(path, generation, {}, f"{ids.null_count} rows without a trial_id")
    counts = pc.value_counts(ids)
    return Compacted(path, generation, dict(zip(counts.field("values").to_pylist(),
                                                counts.field("counts").to_pylist(),
                                                strict=True)))


@dataclass(frozen=True)
class Holdings:
    """What ``points/`` holds, from its listing alone: each trial's part, and each compacted
    file by generation."""

    parts: dict[str, Path]
    compacted: dict[int, Path]


def holdings(points: Location) -> Holdings:
    """List ``points/``; hidden files (temporaries, the lock, ``.corrupt/``) are not in it."""
    parts, compacted = {}, {}
    for name, path in _files(points):
        stem = name[:-len(SUFFIX)]
        if not name.endswith(SUFFIX):
            continue
        if stem.startswith(PREFIX):
            parts[stem[len(PREFIX):]] = path
        elif stem.startswith(COMPACTED) and stem[len(COMPACTED):].isdigit():
            compacted[int(stem[len(COMPACTED):])] = path
    return Holdings(parts, compacted)


def _files(folder: Location) -> list[tuple[str, Location]]:
    """(name, path) of each file directly in ``folder`` (none when it does not exist): one
    listing request on an object store."""
    if isinstance(folder, ObjectPath):
        return [(entry.name, ObjectPath(folder.root, f"{folder.key}/{entry.name}", entry))
                for entry in folder.listing() if entry.kind == "file"]
    found = []
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        found = [(entry.name, Path(entry.path)) for entry in entries if entry.is_file()]
    return found


def compacted_name(generation: int) -> str:
    return f"{COMPACTED}{generation:06d}{SUFFIX}"


def pick(parts: Mapping[str, Path], compacted: Iterable[Compacted],
         trial_ids: Iterable[str]) -> dict[str, Path]:
    """The pick rule: for each of ``trial_ids`` held anywhere, its part if ``parts`` has one,
    else the compacted file of the highest generation that holds it."""
    newest_first = sorted(compacted, key=lambda c: c.generation, reverse=True)
    chosen = {}
    for trial_id in trial_ids:
        if trial_id in parts:
            chosen[trial_id] = parts[trial_id]
            continue
        holder = next((c for c in newest_first if trial_id in c.rows), None)
        if holder is not None:
            chosen[trial_id] = holder.path
    return chosen


@dataclass(frozen=True)
class Scan:
    """Where the verified trials' rows are, and what is damaged.

    ``sources``: trial id -> its part, or the compacted file that holds its rows (among other
    trials'); ``damaged``: each damaged file (a part of an expected trial, or any compacted
    file) with what is wrong with it."""

    sources: dict[str, Path]
    damaged: dict[Path, str]


#: A file as it was when read: (device, inode, mtime in ns, size); on an object store
#: (last-modified in ns, size, ETag). Compaction deletes a file only if it still is the one
#: it read, not a newer version written since.
Identity = tuple


def identity(path: Location, fresh: bool = True) -> Identity | None:
    """``path`` as it is now; with ``fresh`` False, a stored file's identity may be the one its
    listing gave (what a reader about to read it takes, saving a request)."""
    if isinstance(path, ObjectPath):
        stat = path.listed if not fresh and path.listed is not None else path.stat()
        return None if stat.kind != "file" else (stat.mtime_ns, stat.size, stat.etag)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class Rows:
    """Rows of whole trials read from ``points/`` (a pyarrow Table), with the files they were
    read from as those were before the read: what :meth:`ParquetSink.compact` writes without
    reading them again, and deletes only if still unchanged."""

    table: pa.Table
    files: dict[Path, Identity] = field(default_factory=dict)

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()


def _threaded(function: Callable, items: list) -> list:
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(READERS, len(items))) as pool:
        return list(pool.map(function, items))


def one_schema(table):
    """``table`` with the declared types and without pandas' per-file metadata, so tables
    read from different files concatenate into one schema."""
    return stable_types(table).replace_schema_metadata(None)


def read_rows(sources: Mapping[str, Path]) -> Rows:
    """The rows of each trial in ``sources`` (trial id -> file, as :meth:`ParquetSink.scan`
    gives them): a part whole, a compacted file once, filtered to the trials taken from it.
    Parts are read by a pool of threads (each costs mostly a fixed overhead).

    Raises:
        pyarrow.ArrowException, OSError: a file could not be read.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    by_file: dict[Path, list[str]] = {}
    for trial_id, path in sources.items():
        by_file.setdefault(path, []).append(trial_id)

    def read(item: tuple[Path, list[str]]):
        path, trial_ids = item
        before = identity(path, fresh=False)
        if path.name.startswith(PREFIX):
            return before, read_table(path, use_threads=False)
        table = read_table(path)
        return before, table.filter(pc.is_in(table["trial_id"], pa.array(trial_ids)))

    items = sorted(by_file.items())
    files: dict[Path, Identity] = {}
    merged = []
    # READ_BATCH files at a time, each batch merged into one table before the next is read:
    # a table read from a part carries buffers and a schema of its own for a few rows, many
    # times what its rows take, so thousands held at once were most of a driver's memory.
    for start in range(0, len(items), READ_BATCH):
        batch = items[start:start + READ_BATCH]
        read_files = _threaded(read, batch)
        files.update({path: before for (path, _), (before, _) in zip(batch, read_files,
                                                                     strict=True)
                      if before is not None})
        merged.append(pa.concat_tables([one_schema(table) for _, table in read_files],
                                       promote_options="default").combine_chunks())
        del read_files  # not held while the next batch is read
    table = pa.concat_tables(merged, promote_options="default") if merged else pa.table({})
    return Rows(table, files)


def _flock(fd: int, operation: int) -> OSError | None:
    """``flock(fd, operation)``, waiting; the error where the filesystem has no flock (some
    network filesystems), which callers then do without."""
    try:
        fcntl.flock(fd, operation)
    except OSError as exc:
        if exc.errno not in UNSUPPORTED:
            raise
        return exc
    return None


@contextlib.contextmanager
def _compaction_lock(points: Location) -> Iterator[None]:
    """Hold ``points/.compaction.lock`` (waiting for another compaction to finish). On an
    object store there is no flock: compaction runs under the sweep's lock there
    (:mod:`.object_lock`, held by ``run`` and ``aggregate``), so nothing more is taken."""
    if isinstance(points, ObjectPath):
        yield
        return
    points.mkdir(parents=True, exist_ok=True)
    fd = os.open(points / COMPACTION_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        unsupported = _flock(fd, fcntl.LOCK_EX)
        if unsupported is not None:
            LOG.warning("cannot lock %s (%s): run one `sweeper aggregate` at a time here",
                        points / COMPACTION_LOCK, unsupported.strerror)
        yield
    finally:
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def reading(points: Path) -> Iterator[None]:
    """Hold ``points/.compaction.lock`` shared while listing, verifying and reading files: a
    compaction (which holds it exclusively) neither starts under a reader nor deletes a file
    a reader has listed, so a reader never fails, nor reports damage, because of one. Opened
    read-only, so it works in a directory this user cannot write; where no lock file exists
    and none can be made (read-only, never compacted), nothing can be compacting. An object
    store has no flock: its readers list and read again instead when a file vanished under
    them (:func:`.storage.retry_vanished`)."""
    if isinstance(points, ObjectPath):
        yield
        return
    try:
        fd = os.open(points / COMPACTION_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            points.mkdir(parents=True, exist_ok=True)
            fd = os.open(points / COMPACTION_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            yield
            return
    try:
        _flock(fd, fcntl.LOCK_SH)  # without flock, as without the lock: nothing to wait for
        yield
    finally:
        os.close(fd)


class ParquetSink(ResultSink):
    """A directory of Parquet parts and compacted files (a shared directory on a
    multi-node cluster), or a prefix in an object store that every node reaches."""

    def __init__(self, out: str | Path | ObjectPath):
        # Absolute now, in the driver: workers run in other directories (and the driver
        # itself chdirs around Tune's fit), so a relative path would land elsewhere. A key in
        # an object store is the same from everywhere.
        self.points = location(out).resolve() / "points"

    def part(self, trial_id: str) -> Path:
        """Where the trial's part is, or would be."""
        return self.points / f"{PREFIX}{trial_id}{SUFFIX}"

    def scan(self, expected: Mapping[str, int]) -> Scan:
        """Pick the rows of each trial in ``expected`` (trial id -> number of points) and check
        them, touching nothing. A trial is verified when its picked rows are a part that
        passes :func:`part_problem`, or ``n`` rows of a readable compacted file (a compacted
        trial with another count is not verified: `run` computes it again, and its new part
        wins). Damaged: expected trials' parts that fail, and every unreadable compacted file;
        parts of trials not in ``expected`` are not looked at."""
        held = holdings(self.points)
        compacted = _threaded(lambda item: compacted_contents(item[1], item[0]),
                              sorted(held.compacted.items()))
        damaged = {c.path: c.problem for c in compacted if c.problem is not None}
        chosen = pick(held.parts, [c for c in compacted if c.problem is None], expected)
        loose = [(t, path) for t, path in chosen.items() if path.name.startswith(PREFIX)]
        problems = _threaded(lambda item: part_problem(item[1], item[0], expected[item[0]]),
                             loose)
        damaged.update({path: problem for (_, path), problem in zip(loose, problems,
                                                                    strict=True) if problem})
        counts = {c.path: c.rows for c in compacted}
        sources = {t: path for t, path in chosen.items()
                   if (path.name.startswith(PREFIX) and path not in damaged)
                   or (path in counts and counts[path].get(t) == expected[t])}
        return Scan(sources, damaged)

    def check(self, expected: Mapping[str, int]) -> tuple[set[str], dict[Path, str]]:
        """Check the trials in ``expected`` (trial id -> number of points), touching
        nothing: the trial ids whose rows are verified, and each damaged file with what is
        wrong with it (see :meth:`scan`)."""
        scan = self.scan(expected)
        return set(scan.sources), scan.damaged

    def recover(self, expected: Mapping[str, int]) -> set[str]:
        # Each round moves the damaged files aside, which can uncover an older copy of a
        # trial (a compacted one, behind a damaged part): check again until nothing is.
        while True:
            verified, damaged = self.check(expected)
            if not damaged:
                return verified
            for path, problem in damaged.items():
                kept = self.set_aside(path)
                what = "part" if path.name.startswith(PREFIX) else "compacted file"
                LOG.warning("damaged %s %s (%s); moved to %s, its trials will be computed "
                            "again unless an older copy of them is intact", what, path,
                            problem, kept)

    def set_aside(self, path: Path) -> Path:
        """Move a damaged file into ``points/.corrupt/`` under a name of its own (the time,
        then a unique suffix), so an earlier damaged copy is never overwritten; returns
        where it went. Kept, not deleted: it may hold what someone needs to see why."""
        corrupt = self.points / CORRUPT
        if isinstance(path, ObjectPath):  # no rename: a copy under a unique name, then delete
            import uuid

            kept = corrupt / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.{uuid.uuid4().hex[:8]}"
            path.copy_to(kept)
            path.unlink()
            return kept
        corrupt.mkdir(exist_ok=True)
        # mkstemp reserves the unique name (O_EXCL); the rename then replaces that empty file.
        fd, kept = tempfile.mkstemp(prefix=f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.",
                                    dir=corrupt)
        os.close(fd)
        os.replace(path, kept)
        return Path(kept)

    def write(self, trial_id: str, frame: pd.DataFrame) -> str:
        """Write the trial's part atomically (it supersedes any compacted copy).

        Raises:
            WriteError: the part could not be written (disk full, over the file-size limit);
                the message names the part, and no partial part or temporary file is left.
        """
        import pyarrow as pa

        return self._write_part(trial_id, stable_types(pa.Table.from_pandas(
            frame, preserve_index=False)))

    def _write_part(self, trial_id: str, table) -> str:
        import pyarrow.parquet as pq

        # A full disk raises WriteError naming the part; the driver reports the failed trial.
        return str(atomic_write(self.part(trial_id), lambda tmp: pq.write_table(table, tmp)))

    def read(self, location: str) -> pd.DataFrame:
        """The rows at a location this sink returned (a path, or an object store's URI)."""
        return read_table(storage.location(location)).to_pandas()

    def materialize(self, trial_id: str) -> str:
        """The trial's part, written first when the trial is held only in a compacted file:
        its rows are copied out into a part of their own (the part wins the pick from then
        on, and the next compaction takes it back), so the answer is always one trial's
        file, which a tracker can attach as that trial's artifact. A trial held nowhere:
        where its part will be (nothing is written)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        part = self.part(trial_id)
        if part.exists():
            return str(part)
        held = holdings(self.points)
        for generation in sorted(held.compacted, reverse=True):
            path = held.compacted[generation]
            try:
                table = _compacted_table(path, identity(path))
            except (pa.ArrowException, OSError):
                continue  # damaged, or replaced since the listing: not where the rows are
            rows = table.filter(pc.equal(table["trial_id"], trial_id))
            if rows.num_rows:
                return self._write_part(trial_id, rows)
        return str(part)

    def rewrite(self, frames: Mapping[str, pd.DataFrame]) -> dict[str, str]:
        """Write each trial's rows (trial id -> all its rows, e.g. relabelled) again as a part
        of its own, which supersedes every stored copy; returns where each went. The next
        :meth:`compact` takes the parts back in."""
        return {trial_id: self.write(trial_id, frame) for trial_id, frame in frames.items()}

    def compact(self, read: Rows | None = None, *,
                replacing: Mapping[str, pd.DataFrame] | None = None) -> Path | None:
        """Gather every trial's picked rows into one new compacted file (the next generation,
        written atomically), then delete the parts and compacted files it replaces. Exactly
        once at every instant: until a deletion, the pick reads the old copy or the new one,
        never both, so a crash at any point loses no point and counts none twice.

        Trials of every version of the search space are kept, not only the current one's
        (readers take only the trials they expect). A part that cannot be read as its trial's
        is left where it is, untouched, as is any unreadable compacted file: the commands
        report them. A part written while compacting is never deleted: a file is deleted
        only if it is still the one that was read.

        Args:
            read: trials already read (:func:`read_rows`): written as read, without reading
                them again. Every other trial is read here.
            replacing: trial id -> all of that trial's rows (e.g. relabelled), for trials in
                ``read``: written instead of their rows there. (A trial not read has no file
                known to be the one its new rows replace, and a newer part must never be
                deleted.)

        Returns:
            The new compacted file, or None when there was nothing to compact (no part, at
            most one compacted file, nothing replaced).

        Raises:
            ValueError: ``replacing`` names a trial that is not in ``read``.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        read = read if read is not None else Rows(pa.table({}))
        ready = _replaced(read.table, replacing) if replacing else read.table  # not read again
        with _compaction_lock(self.points):
            remove_stale_temporaries(self.points)
            held = holdings(self.points)
            if not held.parts and len(held.compacted) <= 1 and not replacing:
                return None
            compacted = [compacted_contents(path, generation)
                         for generation, path in held.compacted.items()]
            readable = [c for c in compacted if c.problem is None]
            given = set(pc.unique(ready["trial_id"]).to_pylist()) if ready.num_rows else set()
            own_parts = {t: path for t, path in held.parts.items()
                         if t not in given and _readable_part(path, t)}
            everyone = set(own_parts) | {t for c in readable for t in c.rows}
            rest = read_rows(pick(own_parts, readable, sorted(everyone - given)))
            tables = [t for t in (ready, rest.table) if t.num_rows]
            if not tables:
                return None
            table = pa.concat_tables([one_schema(t) for t in tables], promote_options="default")
            table = table.take(pc.sort_indices(table, [("trial_id", "ascending")]))
            generation = max(held.compacted, default=0) + 1
            written = atomic_write(
                self.points / compacted_name(generation),
                lambda tmp: pq.write_table(table, tmp, compression="zstd",
                                           row_group_size=ROW_GROUP_ROWS))
            read_before = {**read.files, **rest.files}
            now = _identities_now(self.points, read_before)
            gone = [path for path, before in read_before.items()
                    if path.name.startswith(PREFIX) and now.get(path) == before]
            # Every trial these held is in the new generation, which outranks them.
            _delete(gone + [replaced.path for replaced in readable])
        return written


def _identities_now(points: Location, files: Mapping[Location, Identity]
                    ) -> dict[Location, Identity | None]:
    """The identity of each of ``files`` now: from one listing of ``points`` on an object
    store (a request per thousand objects instead of one per file), else from each file."""
    if isinstance(points, ObjectPath):
        listed = {path: identity(path, fresh=False) for _, path in _files(points)}
        return {path: listed.get(path) for path in files}
    return {path: identity(path) for path in files}


def _delete(paths: list[Location]) -> None:
    """Delete ``paths`` (missing ones are fine): in batches on an object store."""
    stored = [p for p in paths if isinstance(p, ObjectPath)]
    if stored:
        storage.delete_many(stored)
    for path in paths:
        if not isinstance(path, ObjectPath):
            path.unlink(missing_ok=True)


def remove_stale_temporaries(points: Path, older_than_s: float = STALE_TEMPORARY_S
                             ) -> list[Path]:
    """Delete the hidden temporary files in ``points`` (``.part-*.tmp``, ``.compact-*.tmp``)
    last modified more than ``older_than_s`` ago: a writer killed between creating and
    renaming one never comes back for it. Younger ones may be live writes and stay.
    Returns the files removed."""
    if isinstance(points, ObjectPath):
        return []  # a key is written in one PUT: no temporary name is ever left there
    now = time.time()
    removed = []
    with contextlib.suppress(FileNotFoundError), os.scandir(points) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith((f".{PREFIX}", f".{COMPACTED}")) and name.endswith(".tmp")
                    and entry.is_file(follow_symlinks=False)):
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat(follow_symlinks=False).st_mtime > older_than_s:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    if removed:
        LOG.info("removed %d temporary files left by writers that died: %s", len(removed),
                 ", ".join(p.name for p in removed[:5]))
    return removed


def _replaced(table: pa.Table, replacing: Mapping[str, pd.DataFrame]) -> pa.Table:
    """``table`` (rows of whole trials) with the rows of the trials in ``replacing`` swapped
    for the given ones, which come last, in the mapping's order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    held = (set(pc.unique(table["trial_id"]).to_pylist())
            if "trial_id" in table.column_names else set())
    unknown = sorted(set(replacing) - held)
    if unknown:
        raise ValueError(f"compact: replacing must name trials of read, got {len(unknown)} "
                         f"that are not: {unknown[:5]}")
    new = one_schema(pa.Table.from_pandas(pd.concat(replacing.values()), preserve_index=False))
    kept = table.filter(pc.invert(pc.is_in(table["trial_id"], pa.array(sorted(replacing)))))
    return pa.concat_tables([kept, new], promote_options="default")


def _readable_part(path: Path, trial_id: str) -> bool:
    """Whether ``path`` reads as a part of ``trial_id`` (any number of rows: compaction
    does not know how many a trial of another version of the space had)."""
    with contextlib.suppress(Exception):
        with parquet_file(path) as part:
            rows = part.metadata.num_rows
        return part_problem(path, trial_id, rows) is None
    return False


@functools.lru_cache(maxsize=1)
def _compacted_table(path: Path, when: Identity | None) -> pa.Table:
    """The whole compacted file, kept while it is unchanged (``when``: its identity): the
    driver copies many trials out of one file in a row (see :meth:`ParquetSink.materialize`)."""
    if when is None:
        raise FileNotFoundError(path)
    return read_table(path)
