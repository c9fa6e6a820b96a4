"""Trial results as Parquet parts: ``<out>/points/part-<trial_id>.parquet``, one per trial,
written to a hidden temporary name and renamed, so a reader never sees half a part and
``pandas.read_parquet(<out>/points)`` (which skips dot-files) reads exactly the finished ones.

A part on disk is checked before it counts as done (see :func:`part_problem`): a rename is
atomic, but a disk that fills, a copy cut short or a hand edit can still leave a damaged
file under the final name. ``sweeper run`` moves such a part to ``points/.corrupt/`` and
computes its trial again; the read-only commands refuse it, naming the file."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from ..schema import Column, column, part_columns
from ..sweep import ResultSink

PREFIX, SUFFIX = "part-", ".parquet"
#: Where `run` keeps damaged parts (a dot-directory: no reader of ``points/`` descends into it).
CORRUPT = ".corrupt"
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
    for index, field in enumerate(table.schema):
        declared = TYPES.get(field.name) or column(field.name)
        if declared is not None and field.type != arrow_type(declared):
            kind = arrow_type(declared)
            table = table.set_column(index, field.with_type(kind),
                                     table.column(index).cast(kind))
    return table


def part_problem(path: str | Path, trial_id: str, n_points: int) -> str | None:
    """Why ``path`` is not the finished part of ``trial_id`` with ``n_points`` rows, or None
    when it is: a readable Parquet footer, ``n_points`` rows, and a ``trial_id`` column that
    holds ``trial_id`` only (a part copied or renamed from another trial fails).

    Reads the footer and that one column, never the metrics: it runs over every part on each
    resume and each read-only command, which can be thousands of parts.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as part:
            rows = part.metadata.num_rows
            if "trial_id" not in part.schema_arrow.names:
                return "no trial_id column"
            ids = pc.unique(part.read(columns=["trial_id"]).column(0)).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        return f"not a readable Parquet file: {exc}"
    if rows != n_points:
        return f"{rows} rows, but the trial has {n_points} points"
    if ids != [trial_id]:
        return f"its trial_id column holds {sorted(map(str, ids))}, not only {trial_id!r}"
    return None


class ParquetSink(ResultSink):
    """A directory of Parquet parts (a shared directory on a multi-node cluster)."""

    def __init__(self, out: str | Path):
        # Absolute now, in the driver: workers run in other directories (and the driver
        # itself chdirs around Tune's fit), so a relative path would land elsewhere.
        self.points = Path(out).resolve() / "points"

    def check(self, expected: Mapping[str, int]) -> tuple[set[str], dict[Path, str]]:
        """Check the parts of the trials in ``expected`` (trial id -> number of points),
        touching nothing: the trial ids whose part is verified, and each damaged part with
        what is wrong with it (see :func:`part_problem`). Trials without a part are in
        neither; parts of trials not in ``expected`` are not looked at."""
        verified, damaged = set(), {}
        for trial_id, n_points in expected.items():
            path = Path(self.location(trial_id))
            if not path.exists():
                continue
            problem = part_problem(path, trial_id, n_points)
            if problem is None:
                verified.add(trial_id)
            else:
                damaged[path] = problem
        return verified, damaged

    def completed(self, expected: Mapping[str, int]) -> set[str]:
        verified, damaged = self.check(expected)
        for path, problem in damaged.items():
            kept = self.set_aside(path)
            LOG.warning("damaged part %s (%s); moved to %s, its trial will "
                        "be computed again", path, problem, kept)
        return verified

    def set_aside(self, path: Path) -> Path:
        """Move a damaged part into ``points/.corrupt/`` under a name of its own (the time,
        then a unique suffix), so an earlier damaged copy is never overwritten; returns
        where it went. Kept, not deleted: it may hold what someone needs to see why."""
        corrupt = self.points / CORRUPT
        corrupt.mkdir(exist_ok=True)
        # mkstemp reserves the unique name (O_EXCL); the rename then replaces that empty file.
        fd, kept = tempfile.mkstemp(prefix=f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.",
                                    dir=corrupt)
        os.close(fd)
        os.replace(path, kept)
        return Path(kept)

    def write(self, trial_id: str, frame: pd.DataFrame) -> str:
        """Write the trial's part atomically.

        Raises:
            WriteError: the part could not be written (disk full, over the file-size limit);
                the message names the part, and no partial part or temporary file is left.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = stable_types(pa.Table.from_pandas(frame, preserve_index=False))
        final = self.points / f"{PREFIX}{trial_id}{SUFFIX}"
        # A full disk raises WriteError naming the part; the driver reports the failed trial.
        return str(atomic_write(final, lambda tmp: pq.write_table(table, tmp)))

    def read(self, location: str) -> pd.DataFrame:
        return pd.read_parquet(location)

    def location(self, trial_id: str) -> str:
        return str(self.points / f"{PREFIX}{trial_id}{SUFFIX}")
