"""MLflow tracking: one parent run per sweep, one nested child run per trial.

Only the driver writes (sqlite takes one writer at a time). Runs are found again by tags, so
a retried or resumed trial reuses its run and a resumed sweep its parent run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .. import schema
from ..errors import SweeperInputError
from ..space import SearchSpace, Trial, stable_hash
from ..sweep import Tracker

ROLE, SWEEP, TRIAL = "sweeper.role", "sweeper.sweep_hash", "sweeper.trial_id"
PARENT = "mlflow.parentRunId"


def logged_as_metric(name: str) -> bool:
    """Whether a part's column becomes an MLflow metric: the schema's metric columns with one
    number (or bool) per point; identity columns and lists are not."""
    declared = schema.column(name)
    return (declared is not None and declared.family != "point"
            and declared.dtype in ("double", "int64", "bool"))


def absolute_tracking_uri(uri: str) -> str:
    """A relative ``sqlite:///file.db`` made absolute: the driver changes directory while
    Tune runs, and later commands must find the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def check_reachable(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast (SweeperInputError) when an HTTP tracking server does not answer."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout_s)
    except (urllib.error.URLError, OSError) as exc:
        raise SweeperInputError(f"MLflow tracking server {tracking_uri} is unreachable "
                                f"({exc}); start it or pass another --tracking-uri") from None


def reachable(tracking_uri: str, timeout_s: float = 3.0) -> bool:
    """Whether the tracking store answers now (a database URI always counts as reachable)."""
    try:
        check_reachable(tracking_uri, timeout_s)
    except SweeperInputError:
        return False
    return True


class MlflowTracker(Tracker):
    def __init__(self, tracking_uri: str, artifact_root: str | Path, sweep_key: str = ""):
        """``sweep_key`` (e.g. the results directory) tells apart two sweeps of one file.

        Only the reachability check runs here; the client (MLflow's import and, for a new
        sqlite file, its schema) is built on first use, off the driver's critical path."""
        check_reachable(tracking_uri)
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self._client = None
        self.artifact_root = Path(artifact_root).resolve()
        self.parent: str | None = None
        self.runs: dict[str, str] = {}
        self.experiment_id: str | None = None
        self.sweep_hash: str | None = None
        self.sweep_key = sweep_key

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _find(self, filters: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=filters,
                                       max_results=10)

    def start_sweep(self, space: SearchSpace) -> str:
        experiment = self.client.get_experiment_by_name(space.name)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(
                space.name, artifact_location=self.artifact_root.as_uri())
        else:
            self.experiment_id = experiment.experiment_id
        self.sweep_hash = stable_hash({"space": space.measured, "key": self.sweep_key})
        found = self._find(f"tags.`{ROLE}` = 'sweep' and tags.`{SWEEP}` = '{self.sweep_hash}'")
        if found:
            self.parent = found[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=space.name, tags={
                ROLE: "sweep", SWEEP: self.sweep_hash, "task": space.task, "cell": space.cell})
            self.parent = run.info.run_id
            from mlflow.entities import Param

            params = [Param(k, json.dumps(v) if not isinstance(v, str) else v)
                      for k, v in {"task": space.task, "cell": space.cell,
                                   "task_params": space.task_params,
                                   "metrics": list(space.metrics),
                                   "vectorize": list(space.vectorize),
                                   "n_points": space.n_points}.items()]
            self.client.log_batch(self.parent, params=params)
        return self.parent

    def trial_started(self, trial: Trial) -> str:
        found = self._find(f"tags.`{TRIAL}` = '{trial.trial_id}' and "
                           f"tags.`{SWEEP}` = '{self.sweep_hash}'")
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            from mlflow.entities import Param

            run = self.client.create_run(self.experiment_id, run_name=trial.trial_id, tags={
                PARENT: self.parent, ROLE: "trial", SWEEP: self.sweep_hash,
                TRIAL: trial.trial_id, "trial_id": trial.trial_id,
                "task": trial.config["task"], "cell": trial.config["cell"],
                "n_points": str(trial.n_points)})
            run_id = run.info.run_id
            params = {k: v for k, v in trial.config.items() if k not in ("name",)}
            for axis, values in trial.vectorized.items():
                params[f"vectorized.{axis}"] = (f"{len(values)} values from {min(values)} "
                                                f"to {max(values)}")
            self.client.log_batch(run_id, params=[
                Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in params.items()])
        self.runs[trial.trial_id] = run_id
        return run_id

    def is_finished(self, trial: Trial) -> bool:
        found = self._find(f"tags.`{TRIAL}` = '{trial.trial_id}' and "
                           f"tags.`{SWEEP}` = '{self.sweep_hash}'")
        return bool(found) and found[0].info.status == "FINISHED"

    def trial_finished(self, trial: Trial, frame: pd.DataFrame, location: str) -> None:
        from mlflow.entities import Metric

        run_id = self.runs[trial.trial_id]
        axes = list(trial.vectorized)
        first = axes[0] if axes else None
        # The run's own start time, not the clock: a retried or resumed trial logs identical
        # (key, value, timestamp, step) entries, which MLflow stores once.
        now = self.client.get_run(run_id).info.start_time or 0
        if first:
            index = {value: i for i, value in enumerate(trial.vectorized[first])}
            steps = [index[value] for value in frame[first]]
        else:
            steps = [0] * len(frame)
        suffixes = [""] * len(frame)
        for axis in axes[1:]:
            suffixes = [f"{s}/{axis}_{v}" for s, v in zip(suffixes, frame[axis], strict=True)]
        metrics = []
        for column in frame.columns:
            if not logged_as_metric(column) or not pd.api.types.is_numeric_dtype(frame[column]):
                continue
            values = frame[column].to_numpy(dtype=float)
            metrics.extend(Metric(f"{column}{suffix}", float(value), now, step)
                           for value, suffix, step in zip(values, suffixes, steps, strict=True)
                           if math.isfinite(value))
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=metrics[start:start + 1000])
        self.client.log_artifact(run_id, location)
        self.client.set_terminated(run_id, status="FINISHED")

    def available(self) -> bool:
        return reachable(self.tracking_uri)

    def trial_failed(self, trial: Trial, error: str) -> None:
        run_id = self.runs[trial.trial_id]
        self.client.set_tag(run_id, "error", error[:5000])
        self.client.set_terminated(run_id, status="FAILED")

    def end_sweep(self, status: str) -> None:
        if self.parent is None:
            return
        leftover = "KILLED" if status == "KILLED" else "FAILED"
        for run_id in self.runs.values():
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, status=leftover)
        self.client.set_terminated(self.parent, status=status)


def log_sweep_artifacts(tracking_uri: str, run_id: str, paths, artifact_path: str) -> None:
    """Attach files (plots, the region map) to the sweep's parent run, from the driver."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)


def experiment_id(tracking_uri: str, name: str) -> str | None:
    """The id of the experiment called ``name``, or None."""
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri).get_experiment_by_name(name)
    return None if found is None else found.experiment_id
