"""Running a sweep: trials in, one result part and one tracked run per trial out.

Pure orchestration against five small contracts (:mod:`.contracts`: result sink, run-id
registry, round log, tracker, executor), so the logic runs the same in-process and on Ray;
the adapters in :mod:`sweeper.adapters` implement them for Parquet, JSON files, MLflow and
Ray Tune. One concept per module, read in this order:

* :mod:`.contracts`: the contracts and their in-memory implementations;
* :mod:`.work`: what runs for each trial (measure, write), and the in-process executor;
* :mod:`.rounds`: where the trials come from (the grid, or a refinement's rounds);
* :mod:`.progress`: the progress line;
* :mod:`.tracking`: the thread that makes every tracker call;
* :mod:`.driver`: :func:`run_sweep`, which ties them together.

None of them imports torch (:mod:`.work` loads the numerics where a trial runs), nor Ray,
MLflow, pyarrow or DuckDB.
"""

from __future__ import annotations

from .contracts import (
    Executor,
    ResultSink,
    RoundLog,
    RoundsInProcess,
    RunIdRegistry,
    RunIdsInProcess,
    SinkInMemory,
    Tracker,
    TrackerInMemory,
)
from .driver import run_sweep
from .progress import Progress
from .tracking import TrackingError
from .work import (
    RUN_ID_COLUMN,
    Attempt,
    LocalExecutor,
    TrialWork,
    attempt,
    failure_message,
    trial_frame,
)

__all__ = [
    "RUN_ID_COLUMN",
    "Attempt",
    "Executor",
    "LocalExecutor",
    "Progress",
    "ResultSink",
    "RoundLog",
    "RoundsInProcess",
    "RunIdRegistry",
    "RunIdsInProcess",
    "SinkInMemory",
    "Tracker",
    "TrackerInMemory",
    "TrackingError",
    "TrialWork",
    "attempt",
    "failure_message",
    "run_sweep",
    "trial_frame",
]
