"""Ray Tune's side of :class:`~sweeper.adapters.ray_executor.RayTuneExecutor`: the trainable
that runs a batch of sweep trials on a worker, the callback through which the driver hears
how each sweep trial ended, and the rounds of Tuners that join them. Imported only once there
is work: importing Tune takes seconds, which the driver spends while its tracker sets up.

Sweep trials are packed into Tune trials (:func:`pack`): Tune spends tens of milliseconds of
driver time on each of its trials, more than a small sweep trial computes for, so a sweep of
thousands of trials runs as a few Tune trials per worker slot. A Tune trial reports once per
sweep trial, as each ends, so the driver logs and counts them one by one. Retries are the
sweep's, not Tune's: an exception is retried in the worker (:func:`~sweeper.sweep.attempt`);
a worker that dies ends its batch, the sweep trial it was computing is charged with the death,
and the batch's unreported trials run again in a further round of Tune trials, each sweep
trial given ``max_failures`` deaths before it is reported failed."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping

from ray import cloudpickle, tune

from ..space import Trial
from ..sweep import TrialWork, attempt

#: Tune trials per worker slot in a round: enough to even out trials of unequal cost and to
#: bound what a dead worker's batch sends round again, few enough to spread Tune's cost thin.
BATCHES_PER_SLOT = 4
#: Keys of the result a batch reports for each of its sweep trials.
TRIAL, LOCATION, ERROR = "sweep_trial", "location", "error"


def pack(trials: list[Trial], slots: int) -> list[list[Trial]]:
    """The trials dealt into at most ``slots * BATCHES_PER_SLOT`` batches, round robin, so
    trials of one region of the grid (of similar cost) spread over the batches."""
    n = max(1, min(len(trials), max(1, slots) * BATCHES_PER_SLOT))
    return [trials[i::n] for i in range(n)]


def run_batch(config: dict, work: TrialWork, batches: list[list[Trial]],
              device: str | None, max_failures: int) -> None:
    """The trainable: the sweep trials of one batch in turn on a Ray worker, each part
    written by the worker and each outcome reported as soon as it is known."""
    for trial in batches[config["batch"]["index"]]:
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
    sweep trials is kept in ``broken`` (its unreported trials, in order, and why)."""

    def __init__(self, batches: list[list[Trial]], on_done: Callable[[Trial, str], None],
                 on_error: Callable[[Trial, str], None], reported: set[str]):
        self.batches, self.on_done, self.on_error = batches, on_done, on_error
        self.by_id = {t.trial_id: t for batch in batches for t in batch}
        self.reported = reported
        self.broken: list[tuple[list[Trial], str]] = []

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
        batch = self.batches[tune_trial.config["batch"]["index"]]
        return [t for t in batch if t.trial_id not in self.reported]

    def on_trial_complete(self, iteration, trials, trial, **info):
        left = self._unreported(trial)
        if left:  # the trainable returned early: never expected, never silently lost
            self.broken.append((left, f"Ray Tune trial {batch_name(trial)} ended without "
                                      f"reporting trial {left[0].trial_id}"))

    def on_trial_error(self, iteration, trials, trial, **info):
        left = self._unreported(trial)
        if left:
            self.broken.append((left, last_error(trial)))


def fit(work: TrialWork, trials: list[Trial], on_done: Callable[[Trial, str], None],
        on_error: Callable[[Trial, str], None], *, max_failures: int, device: str | None,
        resources: Mapping[str, float], storage_path: str | None, slots: int) -> None:
    """Every trial reported exactly once: rounds of Tune trials over batches of the trials
    not yet reported, until none is left; returns when all ended."""
    # Tune's newer console output ignores verbose=0 and prints its trial table to stdout;
    # the sweep has its own progress line. The user's own setting wins.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # No automatic loggers: TensorBoard's would import torch into the driver, and the JSON
    # and CSV ones write files per trial that repeat what the parts hold.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # The sweep handles Ctrl-C itself (sweeper.interrupt): Tune's own handler would end
    # fit() quietly, as if the sweep were complete, and advise Tuner.restore.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    reported: set[str] = set()
    deaths: dict[str, int] = {}
    pending, round_ = list(trials), 0
    while pending:
        batches = pack(pending, slots)
        handoff = Handoff(batches, on_done, on_error, reported)
        _tune_round(work, batches, handoff, round_, device=device, resources=resources,
                    storage_path=storage_path, max_failures=max_failures)
        for left, message in handoff.broken:
            culprit = left[0]  # a batch runs in order: the first unreported one was running
            deaths[culprit.trial_id] = deaths.get(culprit.trial_id, 0) + 1
            if deaths[culprit.trial_id] > max_failures:
                reported.add(culprit.trial_id)
                on_error(culprit, message)
        pending = [t for t in pending if t.trial_id not in reported]
        round_ += 1


def _tune_round(work: TrialWork, batches: list[list[Trial]], handoff: Handoff, round_: int,
                *, device: str | None, resources: Mapping[str, float],
                storage_path: str | None, max_failures: int) -> None:
    """One Tuner: a Tune trial per batch, none retried by Tune (see :func:`fit`)."""
    trainable = functools.partial(run_batch, work=work, batches=batches, device=device,
                                  max_failures=max_failures)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": resources.get("cpu", 1.0),
                                        "gpu": resources.get("gpu", 0.0)}),
        param_space={"batch": tune.grid_search([{"round": round_, "index": i}
                                                for i in range(len(batches))])},
        tune_config=tune.TuneConfig(reuse_actors=True, trial_name_creator=batch_name,
                                    trial_dirname_creator=batch_name),
        run_config=tune.RunConfig(
            name=work.space.name, storage_path=storage_path, verbose=0,
            failure_config=tune.FailureConfig(max_failures=0), callbacks=[handoff]),
    )
    # fit() ends by reading each trial's result files into a ResultGrid, which the sweep does
    # not use (its results are the parts); without loggers there are none, which Tune's
    # analysis would log as a warning per batch.
    analysis = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis.level
    analysis.setLevel(logging.ERROR)
    try:
        tuner.fit()
    finally:
        analysis.setLevel(level)
