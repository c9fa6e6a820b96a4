"""MLflow tracking: one parent run per sweep, one nested child run per trial.

Only the driver writes (sqlite takes one writer at a time). Runs are found again by tags, so
a retried or resumed trial reuses its run and a resumed sweep its parent run. A trial's rows
are not copied into MLflow: its run names the results directory (tag ``sweeper.results``) and
the part they were written to there (``sweeper.part``; ``aggregate`` may later gather parts
into a compacted file in the same directory).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import schema
from ..axes import AXES
from ..crossings import mean_zero_crossing
from ..errors import SweeperInputError
from ..regions import REGIONS, UNCLASSIFIED
from ..space import VECTORIZABLE, SearchSpace, Trial, stable_hash
from ..sweep import Tracker
from .sqlite_store import absolute_tracking_uri, prepare, sqlite_file

ROLE, SWEEP, TRIAL = "sweeper.role", "sweeper.sweep_hash", "sweeper.trial_id"
#: Where a trial's rows were written (its part), and the sweep's key (the results directory).
PART, RESULTS = "sweeper.part", "sweeper.results"
PARENT = "mlflow.parentRunId"
#: The schemes of a tracking server's URI (any other URI names a database).
SERVER = ("http://", "https://")


def logged_as_metric(name: str) -> bool:
    """Whether a part's column becomes an MLflow metric: the schema's metric columns with one
    number (or bool) per point; identity columns and lists are not."""
    declared = schema.column(name)
    return (declared is not None and declared.family != "point"
            and declared.dtype in ("double", "int64", "bool"))


def artifact_root(tracking_uri: str, out: str | Path) -> Path | None:
    """Where a new experiment of a sweep writing to ``out`` keeps its artifacts.

    - A sqlite store: ``mlartifacts/`` beside the database file, which no results directory
      owns: every sweep of the experiment (two ``--out`` of one file) writes its summary
      there, and deleting one sweep's results directory leaves the others' artifacts.
    - A tracking server (http, https): None, the server's own artifact root (proxied
      ``mlflow-artifacts:``, ``--artifacts-destination``).
    - Another database: ``<out>/mlartifacts``, as MLflow has no location of the store to use
      (a second sweep of the name with another ``--out`` then writes into the first's).
    """
    database = sqlite_file(absolute_tracking_uri(tracking_uri))
    if database is not None:
        return database.parent / "mlartifacts"
    if tracking_uri.startswith(SERVER):
        return None
    return Path(out).resolve() / "mlartifacts"


def check_reachable(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast (SweeperInputError) when an HTTP tracking server does not answer."""
    if not tracking_uri.startswith(SERVER):
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


@dataclass
class KnownRun:
    """What the tracker knows of one run of its sweep, without asking the store again."""

    run_id: str
    status: str
    start_time: int
    artifact_uri: str = ""


def read_sweep(client, experiment_id: str, sweep_hash: str,
               page_size: int = 1000) -> tuple[KnownRun | None, dict[str, KnownRun]]:
    """Every run of one sweep, in one paginated search: its parent run (or None) and its
    trial runs by trial id. Where a trial has several runs the newest counts (the search
    returns the newest first). Pages stay moderate: each run comes with its params, tags
    and latest metrics, a large answer from a tracking server."""
    parent, trials = None, {}
    token = None
    while True:
        page = client.search_runs([experiment_id], f"tags.`{SWEEP}` = '{sweep_hash}'",
                                  max_results=page_size, page_token=token)
        for run in page:
            tags = run.data.tags
            known = KnownRun(run.info.run_id, run.info.status, run.info.start_time or 0,
                             run.info.artifact_uri or "")
            if tags.get(ROLE) == "sweep" and parent is None:
                parent = known
            elif tags.get(ROLE) == "trial" and TRIAL in tags:
                trials.setdefault(tags[TRIAL], known)
        token = page.token
        if not token:
            return parent, trials


def trial_metrics(trial: Trial, frame: pd.DataFrame, timestamp: int) -> list:
    """The part's metric values as MLflow metrics: the step is the point's index along the
    first vectorised axis, the other vectorised axes go into the key
    (``lyapunov_max/seed_1``); non-finite values are left out. The first vectorised axis is
    logged too, its value at each step (``recurrent_scale``), so that a chart of the UI can
    plot any metric against it."""
    from mlflow.entities import Metric

    axes = list(trial.vectorized)
    if axes:
        index = {value: i for i, value in enumerate(trial.vectorized[axes[0]])}
        steps = [index[value] for value in frame[axes[0]]]
    else:
        steps = [0] * len(frame)
    suffixes = [""] * len(frame)
    for axis in axes[1:]:
        suffixes = [f"{s}/{axis}_{v}" for s, v in zip(suffixes, frame[axis], strict=True)]
    metrics = []
    if axes:  # the axis itself, step by step: the UI's charts can take it as their x axis
        metrics.extend(Metric(axes[0], float(value), timestamp, step)
                       for step, value in enumerate(trial.vectorized[axes[0]]))
    for column in frame.columns:
        if not logged_as_metric(column) or not pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column].to_numpy(dtype=float)
        metrics.extend(Metric(f"{column}{suffix}", float(value), timestamp, step)
                       for value, suffix, step in zip(values, suffixes, steps, strict=True)
                       if math.isfinite(value))
    return metrics


#: A trial's points are also logged as a table the UI previews (``points.csv``) up to this
#: many points; larger trials' rows stay in Parquet only (one more write per trial).
TABLE_POINTS = 500
#: The axes in the order a run name lists them: input_scale first (a trial is most often one
#: input scale, a row of the region map), seed last, the others as in :data:`AXES`.
NAME_AXES = ("input_scale", *(a for a in AXES if a not in ("input_scale", "seed")), "seed")
#: The points table's first columns: the axes a trial can batch (one value per point), then
#: each point's verdict.
TABLE_FIRST = (*VECTORIZABLE, "region", "status")
#: Its last columns: what is fixed for the whole trial (the cell, the task and the other axes,
#: alphabetically), then the point's id.
TABLE_LAST = ("cell", "task", *sorted(a for a in AXES if a not in VECTORIZABLE), "point_id")


def run_name(trial: Trial, varied: Iterable[str]) -> str:
    """A trial run's name from the axis values that tell it from the sweep's other trials:
    each varied axis the trial fixes (``input_scale=2``), then each varied axis other than
    the seed that it batches with a single value (``input_scale=2, recurrent_scale=0.5``, a
    refined sweep's trial), in :data:`NAME_AXES` order; the trial id when nothing does."""
    varied = set(varied)
    parts = [f"{a}={trial.config[a]:g}" if isinstance(trial.config[a], float)
             else f"{a}={trial.config[a]}" for a in NAME_AXES
             if a in varied and a in trial.config]
    for axis in NAME_AXES:
        values = trial.vectorized.get(axis)
        if axis in varied and values and axis != "seed" and len(values) == 1:
            parts.append(f"{axis}={values[0]:g}" if isinstance(values[0], float)
                         else f"{axis}={values[0]}")
    return ", ".join(parts) or trial.trial_id


def trial_summary(trial: Trial, frame: pd.DataFrame, timestamp: int) -> list:
    """Per-trial metrics a user compares across runs: the count of points per region
    (``n_chaotic``, ...), and, when the trial batches several recurrent scales, where its
    mean lambda_1 crosses zero along them (``lyapunov_zero_crossing``, see
    :func:`sweeper.crossings.mean_zero_crossing`; absent when it does not cross)."""
    from mlflow.entities import Metric

    metrics = []
    if "region" in frame:
        counts = frame["region"].astype(str).value_counts()
        metrics += [Metric(f"n_{label}", float(counts.get(label, 0)), timestamp, 0)
                    for label in (*REGIONS, UNCLASSIFIED)]
    if len(trial.vectorized.get("recurrent_scale", [])) > 1:
        at = mean_zero_crossing(frame, "recurrent_scale")
        if math.isfinite(at):
            metrics.append(Metric("lyapunov_zero_crossing", at, timestamp, 0))
    return metrics


def points_table(frame: pd.DataFrame) -> str:
    """The part's rows as CSV, as the UI previews them: :data:`TABLE_FIRST`, then the
    metrics measured, then :data:`TABLE_LAST` (columns NaN throughout, list-valued ones and
    the sweep, trial and run ids left out)."""
    def shown(column: str) -> bool:
        values = frame[column].dropna()
        first = values.iloc[0] if len(values) else None
        listed = hasattr(first, "__len__") and not isinstance(first, str)  # list or array
        return (column not in ("sweep", "trial_id", "mlflow_run_id") and len(values) > 0
                and not listed)

    columns = [c for c in frame.columns if shown(c)]
    front = [c for c in TABLE_FIRST if c in columns]
    back = [c for c in TABLE_LAST if c in columns]
    middle = [c for c in columns if c not in front and c not in back]
    return frame[front + middle + back].to_csv(index=False)


def _params(values: dict) -> list:
    from mlflow.entities import Param

    return [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()]


class MlflowTracker(Tracker):
    """One parent run per sweep, one nested child run per trial, in as few store round trips
    as MLflow allows: the sweep's runs are read once, in ``start_sweep``, and everything after
    answers from what the tracker knows; a new trial costs ``create_run`` (with its tags), one
    ``log_batch`` of params, one ``log_batch`` of metrics and tags per 1,000 metrics, and the
    status change.

    Knowing the runs in advance is sound because one driver at a time writes a sweep (the
    results directory's lock) and only the tracker writes its runs. A trial's rows are not
    copied into MLflow: its run's tags say where they are (see the module docstring).
    """

    def __init__(self, tracking_uri: str, artifact_root: str | Path | None,
                 sweep_key: str = ""):
        """``sweep_key`` (e.g. the results directory) tells apart two sweeps of one file; it is
        tagged ``sweeper.results`` on every run. ``artifact_root`` holds the artifacts of a new
        experiment (the sweep's summary plots; see :func:`artifact_root`); None leaves the
        choice to the store (a tracking server's own root).

        Only the reachability check runs here; the client (MLflow's import and, for a new
        sqlite file, its schema) is built on first use, off the driver's critical path."""
        check_reachable(tracking_uri)
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self._client = None
        self.artifact_root = None if artifact_root is None else Path(artifact_root).resolve()
        self.parent: str | None = None
        self.runs: dict[str, KnownRun] = {}  # trial id -> its run
        self.experiment_id: str | None = None
        self.sweep_hash: str | None = None
        self.sweep_key = sweep_key

    @property
    def client(self):
        """The MLflow client, built on first use, once the store is prepared
        (:func:`sweeper.adapters.sqlite_store.prepare`)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            prepare(self.tracking_uri)
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _set_status(self, run_id: str, status: str, end_time: int | None = None) -> None:
        """One UpdateRun with the status and end time together. The store's call, not the
        client's: ``set_terminated`` on a server first reads the run back to print its URL to
        stdout, and ``update_run`` reads it back for its end time, each a round trip per run."""
        from mlflow.entities import RunStatus

        self.client._tracking_client.store.update_run_info(
            run_id, RunStatus.from_string(status), end_time, None)

    def _tags(self) -> dict[str, str]:
        shared = {SWEEP: self.sweep_hash}
        if self.sweep_key:
            shared[RESULTS] = self.sweep_key
        return shared

    def _experiment(self, name: str) -> str:
        """The id of experiment ``name``, created when missing. Two drivers starting sweeps of
        one name on a new store race between the look-up and the creation: the loser's
        create fails on the name's uniqueness, and it takes the winner's experiment."""
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            location = None if self.artifact_root is None else self.artifact_root.as_uri()
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:  # not the race: the store refused for its own reason
                raise
            return experiment.experiment_id

    def start_sweep(self, space: SearchSpace) -> str:
        self.experiment_id = self._experiment(space.name)
        self.varied = [a for a, values in space.axes.items() if len(values) > 1]
        self.sweep_hash = stable_hash({"space": space.measured, "key": self.sweep_key})
        parent, self.runs = read_sweep(self.client, self.experiment_id, self.sweep_hash)
        if parent is not None:
            self.parent = parent.run_id
            self._set_status(self.parent, "RUNNING")
            return self.parent
        run = self.client.create_run(self.experiment_id, run_name=space.name, tags={
            ROLE: "sweep", **self._tags(), "task": space.task, "cell": space.cell,
            **source_tags()})
        self.parent = run.info.run_id
        ranges = {f"axis.{a}": (f"{len(v)} values, {min(v):g} .. {max(v):g}" if len(v) > 1
                                else f"{v[0]:g}") for a, v in space.axes.items()}
        self.client.log_batch(self.parent, params=_params({
            "task": space.task, "cell": space.cell, "task_params": space.task_params,
            "metrics": list(space.metrics), "vectorize": list(space.vectorize),
            "n_points": space.n_points, "search": space.raw.get("search") or
            {"method": "grid"}, **ranges}))
        return self.parent

    def trial_started(self, trial: Trial) -> str:
        known = self.runs.get(trial.trial_id)
        if known is not None:
            if known.status != "RUNNING":
                self._set_status(known.run_id, "RUNNING")
                known.status = "RUNNING"
            return known.run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name(trial, self.varied),
                                     tags={
            PARENT: self.parent, ROLE: "trial", **self._tags(), TRIAL: trial.trial_id,
            "trial_id": trial.trial_id, "task": trial.config["task"],
            "cell": trial.config["cell"], "n_points": str(trial.n_points)})
        self.runs[trial.trial_id] = KnownRun(run.info.run_id, "RUNNING",
                                             run.info.start_time or 0,
                                             run.info.artifact_uri or "")
        params = {k: v for k, v in trial.config.items() if k != "name"}
        for axis, values in trial.vectorized.items():
            params[f"vectorized.{axis}"] = (f"{len(values)} values from {min(values)} "
                                            f"to {max(values)}")
            listed = json.dumps(values)  # every axis value as a param, when it fits
            params[axis] = listed if len(listed) <= 6000 else params[f"vectorized.{axis}"]
        self.client.log_batch(run.info.run_id, params=_params(params))
        return run.info.run_id

    def is_finished(self, trial: Trial) -> bool:
        known = self.runs.get(trial.trial_id)
        return known is not None and known.status == "FINISHED"

    def trial_finished(self, trial: Trial, frame: pd.DataFrame, location: str) -> None:
        from mlflow.entities import RunTag

        known = self.runs[trial.trial_id]
        # The run's own start time, not the clock: a retried or resumed trial logs identical
        # (key, value, timestamp, step) entries, which MLflow stores once.
        metrics = (trial_metrics(trial, frame, known.start_time)
                   + trial_summary(trial, frame, known.start_time))
        # MLflow splits the batch into its store's limit (1,000 entries per call).
        self.client.log_batch(known.run_id, metrics=metrics, tags=[RunTag(PART, location)])
        if len(frame) <= TABLE_POINTS and known.artifact_uri:
            self._log_table(known.artifact_uri, points_table(frame))
        self._set_status(known.run_id, "FINISHED", _now_ms())
        known.status = "FINISHED"

    def _log_table(self, artifact_uri: str, text: str) -> None:
        """``points.csv`` into the run's artifacts, straight to its artifact store: the
        client's log_text would first read the run back for its artifact URI."""
        import tempfile

        from mlflow.store.artifact.artifact_repository_registry import (
            get_artifact_repository,
        )

        with tempfile.TemporaryDirectory(prefix="sweeper-table-") as tmp:
            path = Path(tmp) / "points.csv"
            path.write_text(text)
            # The tracking URI resolves a server's proxied ``mlflow-artifacts:`` locations.
            get_artifact_repository(artifact_uri, self.tracking_uri).log_artifact(str(path))

    def available(self) -> bool:
        return reachable(self.tracking_uri)

    def trial_failed(self, trial: Trial, error: str) -> None:
        known = self.runs[trial.trial_id]
        self.client.set_tag(known.run_id, "error", error[:5000])
        self._set_status(known.run_id, "FAILED", _now_ms())
        known.status = "FAILED"

    def round_started(self, index: int, points: int, total: int) -> None:
        """Two metrics on the parent run, stepped by round: ``refine_round_points`` (what
        the round proposes) and ``refine_points`` (with every round before it)."""
        from mlflow.entities import Metric

        now = _now_ms()
        self.client.log_batch(self.parent, metrics=[
            Metric("refine_round_points", float(points), now, index),
            Metric("refine_points", float(total), now, index)])

    def end_sweep(self, status: str) -> None:
        if self.parent is None:
            return
        leftover = "KILLED" if status == "KILLED" else "FAILED"
        for known in self.runs.values():
            if known.status == "RUNNING":
                self._set_status(known.run_id, leftover, _now_ms())
                known.status = leftover
        self._delete_orphans()
        self._set_status(self.parent, status, _now_ms())

    def _delete_orphans(self) -> None:
        """Delete the sweep's runs still RUNNING that the tracker does not know: a create_run
        that a server committed but whose reply was lost (the server went down) is sent again
        by the client's retries, which leaves a second, empty run of the trial, open for
        ever. One search, for the running runs of this sweep only."""
        known = {self.parent, *(k.run_id for k in self.runs.values())}
        running = self.client.search_runs(
            [self.experiment_id], f"tags.`{SWEEP}` = '{self.sweep_hash}' and "
            "attributes.status = 'RUNNING'", max_results=1000)
        for run in running:
            if run.info.run_id not in known:
                self.client.delete_run(run.info.run_id)


def _now_ms() -> int:
    return int(time.time() * 1000)


def log_sweep_artifacts(tracking_uri: str, run_id: str, paths, artifact_path: str) -> None:
    """Attach files (plots, the region map) to the sweep's parent run, from the driver."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)


def source_tags() -> dict[str, str]:
    """Where a sweep was started from, as MLflow's own source tags say it: the command line,
    the package version, and the git commit of the working directory when it is a
    checkout."""
    import subprocess
    import sys

    from .. import __version__

    tags = {"mlflow.source.name": " ".join(sys.argv)[:5000], "sweeper.version": __version__}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return tags
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def log_sweep_overview(tracking_uri: str, run_id: str, summary: str,
                       metrics: dict[str, float]) -> None:
    """Make the parent run's Overview answer: the summary as its description (the
    ``mlflow.note.content`` tag the UI shows) and the answer's numbers as metrics (cells
    per region, the lambda_1 = 0 crossing of each map row)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    client.set_tag(run_id, "mlflow.note.content", summary)
    client.log_batch(run_id, metrics=[Metric(key, value, now, 0)
                                      for key, value in metrics.items()])


def experiment_id(tracking_uri: str, name: str) -> str | None:
    """The id of the experiment called ``name``, or None."""
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri).get_experiment_by_name(name)
    return None if found is None else found.experiment_id
