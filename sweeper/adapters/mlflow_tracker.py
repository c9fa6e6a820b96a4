"""MLflow tracking: one parent run per sweep, one nested child run per trial.

Only the driver writes (sqlite takes one writer at a time). Runs are found again by tags, so
a retried or resumed trial reuses its run and a resumed sweep its parent run. A trial's rows
are not copied into MLflow: its run names the results directory (tag ``sweeper.results``) and
the query that selects its rows there (``sweeper.points``), by trial id, which stays true
when ``aggregate`` gathers the trial's part into a compacted file. Its metrics summarise its
points (see :func:`trial_summary`); each point's values stay in the Parquet rows and the
run's ``points.csv``.

The parent run holds the search space in ``search_space/``: the file as given, byte for
byte, and as resolved (:func:`resolved_space`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import schema
from ..axes import AXES
from ..crossings import mean_zero_crossing
from ..errors import SweeperInputError
from ..regions import REGIONS, UNCLASSIFIED
from ..space import VECTORIZABLE, SearchSpace, Trial, stable_hash
from ..sweep import Tracker
from .space_file import MAX_FILE_BYTES
from .sqlite_store import absolute_tracking_uri, prepare, sqlite_file
from .storage import location

log = logging.getLogger("sweeper")

ROLE, SWEEP, TRIAL = "sweeper.role", "sweeper.sweep_hash", "sweeper.trial_id"
#: How to read a trial's rows (a ``sweeper query`` command), and the sweep's key (the results
#: directory).
POINTS, RESULTS = "sweeper.points", "sweeper.results"
#: The parent run's artifact folder holding the search space, as given and as resolved.
SPACE_FOLDER = "search_space"
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
    return location(out).resolve() / "mlartifacts"


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
    """A trial's metrics, each a summary of its points named for what it is: a run's Overview
    and the runs table show a metric's latest value, which must read as the trial's own.

    - ``n_forgetful``, ``n_memory``, ``n_chaotic``, ``n_unclassified``: points per region;
    - ``lyapunov_zero_crossing``: when the trial batches several recurrent scales, where its
      seed-mean lambda_1 crosses zero along them (see
      :func:`sweeper.crossings.mean_zero_crossing`; absent when it does not cross);
    - ``<metric>/mean`` (``lyapunov_max/mean``): when the trial's points differ by seed only
      (one value of every other axis, as in a refined sweep's trials: one map cell), each
      measured metric's mean over the seeds, as the region map's ``<metric>_mean``; finite
      values only, absent when none is.

    A mean over the scalings a trial batches is left out: it would depend on the grid, not
    on the network. Each point's values are in the Parquet rows and ``points.csv``; the
    parent run's ``summary`` plots draw them against the scalings.
    """
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
    if all(len(values) == 1 for axis, values in trial.vectorized.items() if axis != "seed"):
        for column in frame.columns:
            if not logged_as_metric(column) or not pd.api.types.is_numeric_dtype(frame[column]):
                continue
            finite = [v for v in frame[column].astype(float) if math.isfinite(v)]
            if finite:
                metrics.append(Metric(f"{column}/mean", math.fsum(finite) / len(finite),
                                      timestamp, 0))
    return metrics


def points_query(results: str, trial_id: str) -> str:
    """The ``sweeper query`` command that prints a trial's rows from its results directory,
    wherever they are there (a part, or the compacted file ``aggregate`` gathered it into)."""
    return (f'sweeper query "select * from points where trial_id = \'{trial_id}\'" '
            f"--results {shlex.quote(results)}")


def resolved_space(space: SearchSpace) -> dict[str, Any]:
    """The validated space as a search-space mapping: every axis as its list of values
    (generators expanded, defaults filled in), and the defaults of the other keys the file
    left out (metrics, vectorize, resources, regions, map, search). Protocols are as the file
    gave them (their defaults live with their config classes, :mod:`sweeper.protocols`), and
    ``weights`` as recorded (absolute path and SHA-256), so the mapping validates to the
    same trials as the file.

    Example::

        json.dumps(resolved_space(load_space("search_spaces/smoke.yaml")))
    """
    search = asdict(space.search) if space.search.refine else {"method": space.search.method}
    resolved = {"name": space.name, "task": space.task, "task_params": space.task_params,
                "cell": space.cell, "axes": space.axes, "vectorize": list(space.vectorize),
                "metrics": list(space.metrics), "resources": space.resources,
                "regions": asdict(space.rules),
                "map": {"x": space.map[0], "y": space.map[1]}, "search": search,
                **space.protocols}
    if space.weights is not None:
        resolved["weights"] = dict(space.weights)
    return resolved


def given_space_file(path: str | Path) -> tuple[str | None, bytes] | None:
    """The search-space file as ``sweeper run`` was given it: its name and bytes (``env:NAME``,
    as ``sweeper submit`` passes it: no name, the variable's text). None for what cannot be
    read twice (a pipe, ``<(...)``) or cannot be read now; ``load_space`` refused anything
    larger than MAX_FILE_BYTES."""
    text = str(path)
    if text.startswith("env:"):
        value = os.environ.get(text[4:])
        return None if value is None else (None, value.encode())
    file = Path(path)
    try:
        if not file.is_file():
            return None
        with open(file, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        log.warning("the search space %s is not logged to MLflow: %s", path, exc)
        return None
    return None if len(data) > MAX_FILE_BYTES else (file.name, data)


def points_table(frame: pd.DataFrame) -> str:
    """The part's rows as CSV, as the UI previews them: :data:`TABLE_FIRST`, then the
    metrics measured, then :data:`TABLE_LAST` (columns NaN throughout, list-valued ones and
    the sweep, trial and run ids left out). Floats have 6 significant digits, enough to
    read; the Parquet rows keep every value exact."""
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
    return frame[front + middle + back].to_csv(index=False, float_format="%.6g")


def _params(values: dict) -> list:
    from mlflow.entities import Param

    return [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()]


class MlflowTracker(Tracker):
    """One parent run per sweep, one nested child run per trial, in as few store round trips
    as MLflow allows: the sweep's runs are read once, in ``start_sweep``, and everything after
    answers from what the tracker knows; a new trial costs ``create_run`` (with its tags), one
    ``log_batch`` of params, one ``log_batch`` of its summary metrics and tags, and the status
    change.

    Knowing the runs in advance is sound because one driver at a time writes a sweep (the
    results directory's lock) and only the tracker writes its runs. A trial's rows are not
    copied into MLflow: its run's tags say where they are (see the module docstring).
    """

    def __init__(self, tracking_uri: str, artifact_root: str | Path | None,
                 sweep_key: str = "", space_file: str | Path | None = None):
        """``sweep_key`` (e.g. the results directory) tells apart two sweeps of one file; it is
        tagged ``sweeper.results`` on every run. ``artifact_root`` holds the artifacts of a new
        experiment (the sweep's summary plots; see :func:`artifact_root`); None leaves the
        choice to the store (a tracking server's own root). ``space_file``, the search-space
        file the sweep was loaded from (a path or ``env:NAME``), is read here, once, to be
        logged on the parent run as given (see :func:`given_space_file`).

        Besides, only the reachability check runs here; the client (MLflow's import and, for
        a new sqlite file, its schema) is built on first use, off the driver's critical
        path."""
        check_reachable(tracking_uri)
        self.space_file = None if space_file is None else given_space_file(space_file)
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self._client = None
        self.artifact_root = None if artifact_root is None else location(artifact_root).resolve()
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
            # Unmeasured keys (regions, map) may have changed: the space of this start.
            self._log_space(parent.artifact_uri, space)
            return self.parent
        run = self.client.create_run(self.experiment_id, run_name=space.name, tags={
            ROLE: "sweep", **self._tags(), "task": space.task, "cell": space.cell,
            **source_tags()})
        self.parent = run.info.run_id
        self._log_space(run.info.artifact_uri or "", space)
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
        metrics = trial_summary(trial, frame, known.start_time)
        # Not ``location``: ``aggregate`` deletes a part once it has compacted it.
        tags = [RunTag(POINTS, points_query(self.sweep_key, trial.trial_id))
                ] if self.sweep_key else []
        self.client.log_batch(known.run_id, metrics=metrics, tags=tags)
        if len(frame) <= TABLE_POINTS and known.artifact_uri:
            self._log_files(known.artifact_uri, {"points.csv": points_table(frame).encode()})
        self._set_status(known.run_id, "FINISHED", _now_ms())
        known.status = "FINISHED"

    def _log_files(self, artifact_uri: str, files: dict[str, bytes],
                   folder: str | None = None) -> None:
        """Files (name -> bytes) into a run's artifacts, straight to its artifact store: the
        client's log_text would first read the run back for its artifact URI."""
        import tempfile

        from mlflow.store.artifact.artifact_repository_registry import (
            get_artifact_repository,
        )

        with tempfile.TemporaryDirectory(prefix="sweeper-artifacts-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            # The tracking URI resolves a server's proxied ``mlflow-artifacts:`` locations.
            get_artifact_repository(artifact_uri, self.tracking_uri).log_artifacts(tmp, folder)

    def _log_space(self, artifact_uri: str, space: SearchSpace) -> None:
        """``search_space/``: the file as given (when the tracker was told it; by its own
        name, else ``<sweep name>.yaml``) and ``resolved.json`` (:func:`resolved_space`)."""
        if not artifact_uri:
            return
        files = {"resolved.json": json.dumps(resolved_space(space), indent=1,
                                             default=str).encode()}
        if self.space_file is not None:
            name, data = self.space_file
            name = name or f"{space.name}.yaml"
            files["given-" + name if name in files else name] = data
        self._log_files(artifact_uri, files, SPACE_FOLDER)

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
