"""The driver's MLflow run ids for the workers, in ``<out>/mlflow_runs.json``: a file in the
results directory, which every worker sees, written atomically (a temporary name, then a
rename), so a worker reads the old map or the new one, never half of one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ..atomic import atomic_write
from ..sweep import RunIdRegistry
from .storage import location

RUNS_FILE = "mlflow_runs.json"


class RunIdFile(RunIdRegistry):
    """``{"runs": {trial_id: run_id}}`` in ``<out>/mlflow_runs.json``.

    Example::

        driver, worker = RunIdFile("out"), RunIdFile("out")  # as on two machines
        driver.publish({"t1": "run-a"})
        worker.lookup("t1")  # "run-a"
    """

    def __init__(self, out: str | Path):
        # Absolute now, in the driver: workers run in other directories.
        self.path = location(out).resolve() / RUNS_FILE

    def publish(self, run_ids: Mapping[str, str]) -> None:
        text = json.dumps({"runs": dict(run_ids)}, indent=0)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))

    def lookup(self, trial_id: str) -> str | None:
        try:
            published = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            # Nothing published yet (or a store that did not answer): the driver writes the
            # id in later.
            return None
        return published.get("runs", {}).get(trial_id)
