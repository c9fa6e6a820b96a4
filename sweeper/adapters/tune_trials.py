"""Ray Tune's side of :class:`~sweeper.adapters.ray_executor.RayTuneExecutor`: the trainable
that runs one sweep trial on a worker, the callback through which the driver hears how each
ended, and the Tuner that joins them. Imported only once there is work: importing Tune takes
seconds, which the driver spends while its tracker sets up."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping

from ray import cloudpickle, tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from ..errors import SweeperInputError
from ..space import Trial
from ..sweep import TrialWork, failure_message

#: The result key of a trial whose input is invalid (reported, not raised: see run_trial).
INPUT_ERROR = "sweeper_input_error"


def run_trial(config: dict, work: TrialWork, trials: Mapping[str, Trial],
              device: str | None) -> None:
    """The trainable: one sweep trial on a Ray worker, its part written by the worker.

    An input error is reported as the trial's result rather than raised: Tune would retry
    it, and the same input fails the same way (the in-process executor does not retry it
    either). Any other exception is Tune's to retry, as is a worker that dies.
    """
    trial = trials[config["trial"]["trial_id"]]
    try:
        location = work.compute_part(trial, device)
    except SweeperInputError as exc:
        tune.report({INPUT_ERROR: failure_message(exc)})
        return
    tune.report({"location": location, "n_points": trial.n_points})


def trial_name(tune_trial) -> str:
    """Tune's name and directory for a trial: the sweep's trial id."""
    return tune_trial.config["trial"]["trial_id"]


def last_error(tune_trial) -> str:
    """The error that ended the trial's last attempt, worded as the in-process executor words
    it: Ray wraps the trainable's exception in a RayTaskError (its ``cause``); a worker that
    died is a RayActorError of its own."""
    # Tune pickles the error in the driver just before it calls on_trial_error; read that
    # file, not the copy in storage (Trial.get_pickled_error), which is synced later.
    path = tune_trial.pickled_error_file
    if path is None or not os.path.exists(path):
        return f"Ray Tune trial failed; see {tune_trial.error_file}"
    with open(path, "rb") as file:
        error = cloudpickle.load(file)
    return failure_message(getattr(error, "cause", None) or error)


class Handoff(tune.Callback):
    """Driver side: the single place where Tune's trials reach the executor's ``on_done`` and
    ``on_error``. Tune calls it in the thread that runs ``fit``, once per trial (after its
    retries), so the executor's reports come from that thread."""

    def __init__(self, trials: Mapping[str, Trial], on_done: Callable[[Trial, str], None],
                 on_error: Callable[[Trial, str], None]):
        self.trials, self.on_done, self.on_error = trials, on_done, on_error

    def __getstate__(self):
        # Tune pickles the experiment's callbacks (for Tuner.restore, which the sweep does not
        # use: it resumes from its parts). Ours reach the driver's tracker thread, which cannot
        # be pickled and means nothing in another process.
        return {}

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result
        if INPUT_ERROR in result:
            self.on_error(self.trials[trial_name(trial)], result[INPUT_ERROR])
        else:
            self.on_done(self.trials[trial_name(trial)], result["location"])

    def on_trial_error(self, iteration, trials, trial, **info):
        self.on_error(self.trials[trial_name(trial)], last_error(trial))


def fit(work: TrialWork, trials: list[Trial], on_done: Callable[[Trial, str], None],
        on_error: Callable[[Trial, str], None], *, max_failures: int, device: str | None,
        resources: Mapping[str, float], storage_path: str | None) -> None:
    """One Tune trial per sweep trial, a grid over the trial ids; returns when all ended."""
    # Tune's newer console output ignores verbose=0 and prints its trial table to stdout;
    # the sweep has its own progress line. The user's own setting wins.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's automatic loggers include TensorBoard's, whose import pulls torch into the
    # driver (seconds at start-up); the sweep keeps Tune's JSON and CSV result files.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # The sweep handles Ctrl-C itself (sweeper.interrupt): Tune's own handler would end
    # fit() quietly, as if the sweep were complete, and advise Tuner.restore.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    by_id = {t.trial_id: t for t in trials}
    trainable = functools.partial(run_trial, work=work, trials=by_id, device=device)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": resources.get("cpu", 1.0),
                                        "gpu": resources.get("gpu", 0.0)}),
        param_space={"trial": tune.grid_search([{"trial_id": t.trial_id} for t in trials])},
        tune_config=tune.TuneConfig(reuse_actors=True, trial_name_creator=trial_name,
                                    trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=work.space.name, storage_path=storage_path, verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            callbacks=[Handoff(by_id, on_done, on_error), JsonLoggerCallback(),
                       CSVLoggerCallback()]),
    )
    tuner.fit()
