"""Trial results as Parquet parts: ``<out>/points/part-<trial_id>.parquet``, one per trial,
written to a hidden temporary name and renamed, so a reader never sees half a part and
``pandas.read_parquet(<out>/points)`` (which skips dot-files) reads exactly the finished ones.

The driver publishes the trials' MLflow run ids in ``<out>/mlflow_runs.json`` (same atomic
write) for the workers to stamp on their rows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from ..measure import METRIC_COLUMNS
from ..sweep import ResultSink

PREFIX, SUFFIX = "part-", ".parquet"
RUNS_FILE = "mlflow_runs.json"
#: How long a worker waits for its run id: the driver opens runs while trials compute, so
#: a wait means a slow tracker; past this the trial fails (and is retried) rather than hang.
RUN_ID_TIMEOUT_S = 1800.0


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
        self.runs_file = self.points.parent / RUNS_FILE

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

    def publish_run_ids(self, run_ids: dict[str, str], error: str | None = None) -> None:
        text = json.dumps({"runs": run_ids, "error": error}, indent=0)
        atomic_write(self.runs_file, lambda tmp: Path(tmp).write_text(text))

    def run_id(self, trial_id: str, wait: bool = True,
               timeout_s: float = RUN_ID_TIMEOUT_S, poll_s: float = 0.2) -> str | None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                published = json.loads(self.runs_file.read_text())
            except FileNotFoundError:
                published = {"runs": {}, "error": None}
            if trial_id in published["runs"]:
                return published["runs"][trial_id]
            if published["error"]:
                raise RuntimeError(f"trial {trial_id}: the driver's tracking failed before "
                                   f"its run was opened ({published['error']})")
            if not wait:
                return None
            if time.monotonic() > deadline:
                raise RuntimeError(f"trial {trial_id}: no MLflow run id in {self.runs_file} "
                                   f"after {timeout_s:.0f} s; is the driver still running?")
            time.sleep(poll_s)
