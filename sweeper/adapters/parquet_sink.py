"""Trial results as Parquet parts: ``<out>/points/part-<trial_id>.parquet``, one per trial,
written to a hidden temporary name and renamed, so a reader never sees half a part and
``pandas.read_parquet(<out>/points)`` (which skips dot-files) reads exactly the finished ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from ..measure import METRIC_COLUMNS
from ..sweep import ResultSink

PREFIX, SUFFIX = "part-", ".parquet"


#: Metric columns that hold booleans or lists; the other metric columns are numbers.
BOOLEAN_COLUMNS = ("memory_horizon_capped", "diverged")
LIST_COLUMNS = ("memory_curve",)
METRICS = {c for family in METRIC_COLUMNS.values() for c in family}


def stable_types(table):
    """Give metric columns that are all-None in this trial (metrics it did not measure) the
    type they have when measured, so every part, and every reader, sees one schema."""
    import pyarrow as pa

    for index, field in enumerate(table.schema):
        if pa.types.is_null(field.type) and field.name in METRICS:
            kind = (pa.bool_() if field.name in BOOLEAN_COLUMNS else
                    pa.list_(pa.float64()) if field.name in LIST_COLUMNS else pa.float64())
            table = table.set_column(index, pa.field(field.name, kind),
                                     table.column(index).cast(kind))
    return table


class ParquetSink(ResultSink):
    """A directory of Parquet parts (a shared directory on a multi-node cluster)."""

    def __init__(self, out: str | Path):
        # Absolute now, in the driver: workers run in other directories (and the driver
        # itself chdirs around Tune's fit), so a relative path would land elsewhere.
        self.points = Path(out).resolve() / "points"

    def completed(self) -> set[str]:
        if not self.points.is_dir():
            return set()
        return {p.name[len(PREFIX):-len(SUFFIX)] for p in self.points.iterdir()
                if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX)}

    def write(self, trial_id: str, frame: pd.DataFrame) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = stable_types(pa.Table.from_pandas(frame, preserve_index=False))
        final = self.points / f"{PREFIX}{trial_id}{SUFFIX}"
        return str(atomic_write(final, lambda tmp: pq.write_table(table, tmp)))

    def read(self, location: str) -> pd.DataFrame:
        return pd.read_parquet(location)

    def location(self, trial_id: str) -> str:
        return str(self.points / f"{PREFIX}{trial_id}{SUFFIX}")
