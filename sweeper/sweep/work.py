"""What runs for each trial, wherever it runs: measure the trial's points, stamp the rows with
the trial's tracking run id, write them to the sink. :func:`attempt` is how every executor
runs one trial (retries included), and :class:`LocalExecutor` the in-process executor, the
reference every other executor must match (``tests/test_executors.py``).

The numerics (:mod:`sweeper.measure`, torch) are imported where a trial runs, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from ..errors import SweeperInputError
from ..regions import classify
from ..space import SearchSpace, Trial, point_id, protocol_configs
from .contracts import Executor, ResultSink, RunIdRegistry

#: The column of a trial's rows that names its tracking run (declared in
#: :data:`sweeper.schema.SWEEP_COLUMNS`).
RUN_ID_COLUMN = "mlflow_run_id"


def trial_frame(space: SearchSpace, trial: Trial, device: str | None = None) -> pd.DataFrame:
    """Measure every point of one trial (its vectorised axes as one batch).

    Returns the measure() rows plus ``sweep``, ``trial_id``, ``point_id`` and ``region``
    (classified with the space's rules) columns.
    """
    from ..measure import measure  # the numerics (torch), loaded where a trial runs

    config = trial.config

    def values(axis: str) -> list:
        return list(trial.vectorized[axis]) if axis in trial.vectorized else [config[axis]]

    frame = measure(space.cell, config["hidden_size"], task=space.task,
                    task_params=space.task_params, recurrent_scale=values("recurrent_scale"),
                    input_scale=values("input_scale"), seed=values("seed"),
                    seq_len=config["seq_len"], metrics=space.metrics, device=device,
                    weights=space.weights, **protocol_configs(space))
    ids = [point_id(trial, {"recurrent_scale": r, "input_scale": a, "seed": s,
                            "seq_len": config["seq_len"], "hidden_size": config["hidden_size"]})
           for r, a, s in zip(frame.recurrent_scale, frame.input_scale, frame.seed,
                              strict=True)]
    frame.insert(0, "point_id", ids)
    frame.insert(0, "trial_id", trial.trial_id)
    frame.insert(0, "sweep", space.name)
    frame.insert(frame.columns.get_loc("status") + 1, "region", classify(frame, space.rules))
    return frame


def stamp_run_id(frame: pd.DataFrame, run_id: str | None) -> None:
    """Set :data:`RUN_ID_COLUMN` of every row to ``run_id`` (null: not known yet), in place;
    a new column goes right after ``point_id``."""
    ids = pd.Series([run_id] * len(frame), dtype="str", index=frame.index)
    if RUN_ID_COLUMN in frame:
        frame[RUN_ID_COLUMN] = ids
    else:
        frame.insert(frame.columns.get_loc("point_id") + 1, RUN_ID_COLUMN, ids)


def failure_message(error: BaseException) -> str:
    """How a failed trial is reported, whichever executor ran it: ``"RuntimeError: why"``."""
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class TrialWork:
    """What an executor runs for each trial, in-process or on a worker (picklable): measure
    the trial, write its part, return where it is.

    Args:
        space: the validated sweep.
        sink: where parts are written (a directory every worker sees, on a cluster).
        run_ids: where the driver publishes the trials' tracking run ids.
    """

    space: SearchSpace
    sink: ResultSink
    run_ids: RunIdRegistry

    def compute_part(self, trial: Trial, device: str | None = None) -> str:
        """Measure the trial, stamp its rows with its tracking run id if the driver has
        published it (null otherwise: the driver fills it in when it logs the trial; computing
        never waits for tracking), write its part; returns the part's location.

        Raises:
            SweeperInputError: the trial's input is invalid (e.g. the device); retrying
                would fail the same way.
        """
        frame = trial_frame(self.space, trial, device)
        stamp_run_id(frame, self.run_ids.lookup(trial.trial_id))
        return self.sink.write(trial.trial_id, frame)


class Attempt(NamedTuple):
    """How one trial ended: ``ok`` with its part's location as ``outcome``, or not ``ok``
    with the failure's message (:func:`failure_message`)."""

    ok: bool
    outcome: str


def attempt(work: TrialWork, trial: Trial, device: str | None, max_failures: int) -> Attempt:
    """One trial as every executor runs it: ``Attempt(True, location)`` once its part is
    written, or ``Attempt(False, message)`` after ``max_failures + 1`` attempts that raised;
    an input error is not retried, it would fail the same way."""
    for tries in range(max_failures + 1):
        try:
            return Attempt(True, work.compute_part(trial, device))
        except SweeperInputError as exc:
            return Attempt(False, failure_message(exc))
        except Exception as exc:  # a failed trial is recorded, the sweep goes on
            if tries == max_failures:
                return Attempt(False, failure_message(exc))
    raise AssertionError("unreachable: the last attempt returns")


class LocalExecutor(Executor):
    """In-process, one trial after another: the reference the Ray executor must match."""

    def __init__(self, device: str | None = None):
        self.device = device

    def run(self, work: TrialWork, trials: list[Trial],
            on_done: Callable[[Trial, str], None], on_error: Callable[[Trial, str], None],
            max_failures: int) -> None:
        for trial in trials:
            ok, outcome = attempt(work, trial, self.device, max_failures)
            (on_done if ok else on_error)(trial, outcome)
