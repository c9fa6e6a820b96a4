"""Ray Tune's side of :class:`~sweeper.adapters.ray_executor.RayTuneExecutor`: the trainable
that runs a batch of sweep trials on a worker, the callback through which the driver hears
how each sweep trial ended, and the rounds of Tuners that join them. Imported only once there
is work (Tune is slow to import), while the driver's tracker sets up.

Sweep trials are packed into Tune trials (:func:`pack`): each Tune trial costs the driver
more time than a small sweep trial computes for, so a sweep of thousands of trials runs as a
few Tune trials per worker slot. A Tune trial reports once per sweep trial, as each ends, so
the driver logs and counts them one by one. Retries are the sweep's, not Tune's: an
exception raised by the computation is retried in the worker
(:func:`~sweeper.sweep.attempt`), up to ``max_failures`` times. A worker that dies (its
process killed, its node lost) is the infrastructure's failure, not the trial's: it ends its
batch, and the batch's unreported trials run again in further batches on the nodes that are
left, without counting against ``max_failures``. The sweep trial that was computing when its
worker died is charged with the loss, and reported failed after :data:`LOSSES_PER_TRIAL`
losses (a trial that itself kills its worker, by running out of memory say, must not loop
for ever). Each node found dead is named once on stderr.

One Tuner runs the whole sweep: its search algorithm (:class:`Rounds`, Tune's ``Searcher``
interface) hands out the batches of a round, waits until each has ended, sends the
unreported trials round again, then asks the sweep for its next round (a refined sweep
proposes it from the points measured so far), so Tune's workers stay up between rounds."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping

import ray
from ray import cloudpickle, tune
from ray.tune.search import Searcher

from ..space import Trial
from ..sweep import TrialWork, attempt
from .batches import pack

LOG = logging.getLogger("sweeper")

#: Worker losses (a dead worker process or node) a sweep trial may be running at before it is
#: reported failed; not counted against --max-failures, which is for the computation's errors.
LOSSES_PER_TRIAL = 3
#: Keys of the result a batch reports for each of its sweep trials.
TRIAL, LOCATION, ERROR = "sweep_trial", "location", "error"


def encode(batch: list[Trial]) -> str:
    """A batch as one JSON string, for a Tune trial's config (a round's batches are made after
    the trainable was handed to Tune, so they travel in the config). A string, not nested
    lists: Tune copies and flattens a trial's config into every result it reports, once
    per sweep trial, and a string is copied whole."""
    return json.dumps([t.to_plain() for t in batch], default=str)


def decode(batch: str) -> list[Trial]:
    return [Trial.from_plain(t) for t in json.loads(batch)]


def run_batch(config: dict, work: TrialWork, device: str | None, max_failures: int) -> None:
    """The trainable: the sweep trials of one batch in turn on a Ray worker, each part
    written by the worker and each outcome reported as soon as it is known."""
    for trial in decode(config["batch"]["trials"]):
        ok, outcome = attempt(work, trial, device, max_failures)
        tune.report({TRIAL: trial.trial_id, (LOCATION if ok else ERROR): outcome})


def batch_name(tune_trial) -> str:
    """Tune's name and directory for a batch: its round and index."""
    batch = tune_trial.config["batch"]
    return f"round{batch['round']}-batch{batch['index']:04d}"


def last_error(tune_trial) -> str:
    """Why a batch's Tune trial ended, worded as the in-process executor words an error: Ray
    wraps an exception in a RayTaskError (its ``cause``); a worker that died is a
    RayActorError of its own."""
    from ..sweep import failure_message

    # Tune pickles the error in the driver just before it calls on_trial_error; read that
    # file, not the copy in storage (Trial.get_pickled_error), which is synced later.
    path = tune_trial.pickled_error_file
    if path is None or not os.path.exists(path):
        return f"Ray Tune trial failed; see {tune_trial.error_file}"
    with open(path, "rb") as file:
        error = cloudpickle.load(file)
    return failure_message(getattr(error, "cause", None) or error)


class Handoff(tune.Callback):
    """Driver side: the single place where Tune's results reach the executor's ``on_done`` and
    ``on_error``, once per sweep trial. Tune calls it in the thread that runs ``fit``, so the
    executor's reports come from that thread. A batch that ends before reporting all its
    sweep trials is kept in ``broken`` (its unreported trials, in order, and why); ``ended``
    counts the batches that ended either way."""

    def __init__(self, on_done: Callable[[Trial, str], None],
                 on_error: Callable[[Trial, str], None]):
        self.on_done, self.on_error = on_done, on_error
        self.batches: dict[tuple[int, int], list[Trial]] = {}
        self.by_id: dict[str, Trial] = {}
        self.reported: set[str] = set()
        self.broken: list[tuple[list[Trial], str]] = []
        self.ended = 0
        self.errors = 0  # batches that ended in error (a worker lost)
        self.lost_nodes = LostNodes()

    def add(self, round_: int, index: int, batch: list[Trial]) -> None:
        self.batches[round_, index] = batch
        self.by_id.update((t.trial_id, t) for t in batch)

    def __getstate__(self):
        # Tune pickles the experiment's callbacks (for Tuner.restore, which the sweep does not
        # use: it resumes from its parts). Ours reach the driver's tracker thread, which cannot
        # be pickled and means nothing in another process.
        return {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        trial_id = result.get(TRIAL)
        if trial_id is None or trial_id in self.reported:
            return
        self.reported.add(trial_id)
        if ERROR in result:
            self.on_error(self.by_id[trial_id], result[ERROR])
        else:
            self.on_done(self.by_id[trial_id], result[LOCATION])

    def _unreported(self, tune_trial) -> list[Trial]:
        key = tune_trial.config["batch"]
        batch = self.batches.pop((key["round"], key["index"]))
        return [t for t in batch if t.trial_id not in self.reported]

    def on_trial_complete(self, iteration, trials, trial, **info):
        left = self._unreported(trial)
        if left:  # the trainable returned early: never expected, never silently lost
            self.broken.append((left, f"Ray Tune trial {batch_name(trial)} ended without "
                                      f"reporting trial {left[0].trial_id}"))
        self.ended += 1

    def on_trial_error(self, iteration, trials, trial, **info):
        left = self._unreported(trial)
        if left:
            self.broken.append((left, last_error(trial)))
        self.ended += 1
        self.errors += 1
        self.lost_nodes.report()


class LostNodes:
    """Names each Ray node that died, once. The cluster marks a node dead only after missing
    its heartbeats for a while, often after the batches it ran have already ended in error,
    so the driver asks it again every few seconds while the sweep runs (Tune asks the search
    algorithm for work many times a second)."""

    def __init__(self, every_s: float = 2.0):
        self.seen: set[str] = set()
        self.every_s, self.last = every_s, float("-inf")

    def poll(self) -> list[str]:
        """:meth:`report`, at most once every ``every_s`` seconds."""
        if time.monotonic() - self.last < self.every_s:
            return []
        return self.report()

    def settle(self, timeout_s: float = 20.0) -> list[str]:
        """After batches ended in error on a cluster of several nodes: wait up to
        ``timeout_s`` for the cluster to mark a dead node as such (its health check takes a
        while), so a sweep that finished on the other nodes in the meantime still names it.
        Nothing to wait for when a node was named already, or on a single node (where a
        lost node is the lost cluster, which the driver's watch reports)."""
        if self.seen:
            return []
        try:
            if len(ray.nodes()) <= 1:
                return []
        except Exception:
            return []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.report()
            if lines:
                return lines
            time.sleep(1.0)
        return []

    def report(self) -> list[str]:
        self.last = time.monotonic()
        try:
            nodes = ray.nodes()
        except Exception:  # the cluster itself is unreachable: its own watch says so
            return []
        lines = []
        for node in nodes:
            node_id = node.get("NodeID", "")
            if node.get("Alive", True) or node_id in self.seen:
                continue
            self.seen.add(node_id)
            lines.append(f"lost Ray node {node.get('NodeManagerAddress', '?')} "
                         f"({node_id[:12]}): the trials it was running run again on the "
                         "nodes that are left")
            LOG.warning(lines[-1])
        return lines


class Rounds(Searcher):
    """Tune's search interface over the sweep's rounds (see the module's docstring): a
    config per batch; while batches it handed out are running and none is queued it answers
    None (Tune asks again); FINISHED once ``next_round`` has nothing more."""

    def __init__(self, next_round: Callable[[], list[Trial]], handoff: Handoff, slots: int,
                 max_failures: int):
        super().__init__()
        self.next_round, self.handoff = next_round, handoff
        self.slots, self.max_failures = slots, max_failures
        self.queue: deque[dict] = deque()
        self.issued, self.round = 0, 0
        self.deaths: dict[str, int] = {}
        self.done = False

    def __getstate__(self):
        # The Tuner pickles its search algorithm (for Tuner.restore, which the sweep does
        # not use); ours reaches the driver's threads, as the Handoff does.
        return {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the configs are the batches; nothing is optimised

    def suggest(self, trial_id: str):
        self.handoff.lost_nodes.poll()
        if not self.queue:
            if self.done:
                return Searcher.FINISHED
            if self.handoff.ended < self.issued:
                return None  # the round is still running
            trials = self._again() or self.next_round()
            if not trials:
                self.done = True
                return Searcher.FINISHED
            for index, batch in enumerate(pack(trials, self.slots)):
                self.handoff.add(self.round, index, batch)
                self.queue.append({"batch": {"round": self.round, "index": index,
                                             "trials": encode(batch)}})
            self.round += 1
        self.issued += 1
        return self.queue.popleft()

    def _again(self) -> list[Trial]:
        """The broken batches' unreported trials; each batch's first one (it was running
        when its worker died) charged with the loss, and reported failed at
        :data:`LOSSES_PER_TRIAL` losses, whatever ``max_failures`` is."""
        again = []
        for left, message in self.handoff.broken:
            culprit = left[0]
            self.deaths[culprit.trial_id] = self.deaths.get(culprit.trial_id, 0) + 1
            if self.deaths[culprit.trial_id] >= LOSSES_PER_TRIAL:
                self.handoff.reported.add(culprit.trial_id)
                self.handoff.on_error(culprit, f"its worker was lost {LOSSES_PER_TRIAL} times "
                                               f"while computing it; the last: {message}")
            again += [t for t in left if t.trial_id not in self.handoff.reported]
        self.handoff.broken.clear()
        return again

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass  # the Handoff counts the ends: it also sees why a batch ended

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        pass  # the sweep resumes from its parts, never from Tune's checkpoint


def fit(work: TrialWork, trials: list[Trial], on_done: Callable[[Trial, str], None],
        on_error: Callable[[Trial, str], None], **options) -> None:
    """Every trial reported exactly once (see :func:`fit_rounds`)."""
    rounds = [list(trials)]
    fit_rounds(work, lambda: rounds.pop() if rounds else [], on_done, on_error, **options)


def fit_rounds(work: TrialWork, next_round: Callable[[], list[Trial]],
               on_done: Callable[[Trial, str], None], on_error: Callable[[Trial, str], None],
               *, max_failures: int, device: str | None, resources: Mapping[str, float],
               storage_path: str | None, slots: int) -> None:
    """Rounds of sweep trials in one Tuner, each trial reported exactly once; returns when
    ``next_round`` has no more and every trial ended."""
    # Tune's newer console output ignores verbose=0 and prints its trial table to stdout;
    # the sweep has its own progress line. The user's own setting wins.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # No automatic loggers: TensorBoard's would import torch into the driver, and the JSON
    # and CSV ones write files per trial that repeat what the parts hold.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # The sweep handles Ctrl-C itself (sweeper.interrupt): Tune's own handler would end
    # fit() quietly, as if the sweep were complete, and advise Tuner.restore.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    handoff = Handoff(on_done, on_error)
    trainable = functools.partial(run_batch, work=work, device=device,
                                  max_failures=max_failures)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": resources.get("cpu", 1.0),
                                        "gpu": resources.get("gpu", 0.0)}),
        tune_config=tune.TuneConfig(
            search_alg=Rounds(next_round, handoff, slots, max_failures), num_samples=-1,
            reuse_actors=True, trial_name_creator=batch_name,
            trial_dirname_creator=batch_name),
        run_config=tune.RunConfig(
            name=work.space.name, storage_path=storage_path, verbose=0,
            failure_config=tune.FailureConfig(max_failures=0), callbacks=[handoff]),
    )
    # fit() ends by reading each trial's result files into a ResultGrid, which the sweep does
    # not use (its results are the parts); without loggers there are none, which Tune's
    # analysis would log as a warning per batch.
    # A batch whose worker died is the sweep's business (Rounds runs its trials again and
    # the Handoff names the lost node): Tune's traceback of the actor error and its closing
    # "Trials did not complete" would read as the sweep's failure.
    quiet = {logging.getLogger("ray.tune.analysis.experiment_analysis"): logging.ERROR,
             logging.getLogger("ray.tune.execution.tune_controller"): logging.CRITICAL,
             logging.getLogger("ray.tune.tune"): logging.CRITICAL,
             logging.getLogger("ray.tune.experiment.trial"): logging.CRITICAL}
    levels = {logger: logger.level for logger in quiet}
    for logger, level in quiet.items():
        logger.setLevel(level)
    try:
        tuner.fit()
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)
    if handoff.errors:
        handoff.lost_nodes.settle()
