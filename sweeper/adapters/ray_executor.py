"""Trials on Ray Tune: one Tune trial per sweep trial, on an embedded local Ray by default or
on a cluster (``address``). Workers write their Parquet part themselves (results storage must
be a path every node sees); the driver's callback hands each finished part to the tracker."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

from ..errors import SweeperInputError
from ..space import SearchSpace, Trial
from ..sweep import Executor, ResultSink, compute_part

TOKEN_HINT = ("if the cluster uses token authentication, export RAY_AUTH_MODE=token (the token "
              "is read from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (SweeperInputError) when nothing listens at a cluster address: Ray itself
    retries for minutes before it gives up. ``auto`` is left to Ray."""
    if address == "auto":
        return
    target = address.split("://", 1)[1] if "://" in address else address
    host, colon, port = target.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise SweeperInputError(f"--address: got {address!r}; expected HOST:PORT of the "
                                "cluster's head (e.g. 10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SweeperInputError(f"no Ray cluster answers at {address} ({exc}); start one with "
                                "`ray start --head` or correct --address") from None


class RayTuneExecutor(Executor):
    def __init__(self, address: str | None = None, storage_path: str | Path | None = None,
                 resources: dict[str, float] | None = None, device: str | None = None):
        if address is not None:
            check_address(address)
        self.address = address
        self.storage_path = None if storage_path is None else str(Path(storage_path).resolve())
        self.resources = resources or {"cpu": 1.0, "gpu": 0.0}
        self.device = device
        self._started = False

    def start(self) -> None:
        """Start an embedded Ray, or join the cluster at ``address`` (once)."""
        import ray

        if ray.is_initialized():
            return
        if self.address is None and not os.environ.get("RAY_ADDRESS"):
            # An embedded Ray runs only Tune's trial actors, and Ray never hands its
            # prestarted task workers to actors: starting them costs about a second of CPU
            # during start-up for nothing (the user's own setting wins).
            os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
        # Ray's core worker installs C++ handlers for SIGTERM (print a stack, abort); the
        # driver's own handlers (sweeper.interrupt) are put back so it can clean up.
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT,
                                                                   signal.SIGTERM)}
        try:
            ray.init(address=self.address, include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            if self.address is None:
                raise
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            raise SweeperInputError(f"cannot join the Ray cluster at {self.address}: {reason}; "
                                    f"{TOKEN_HINT}") from None
        finally:
            if threading.current_thread() is threading.main_thread():
                for signum, handler in handlers.items():
                    if handler is not None:
                        signal.signal(signum, handler)
        self._started = True

    def stop(self) -> None:
        """Shut down the Ray this executor started (never one it found running)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def run(self, space: SearchSpace, trials: list[Trial], sink: ResultSink, on_done,
            on_error, max_failures: int) -> None:
        if not trials:
            return
        from ray import tune

        self.start()
        # Tune's newer console output ignores verbose=0 and prints its trial table to stdout;
        # the sweep has its own progress line. The user's own setting wins.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Tune's automatic loggers include TensorBoard's, whose import pulls torch into the
        # driver (seconds at start-up); the sweep keeps Tune's JSON and CSV result files.
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        # The sweep handles Ctrl-C itself (sweeper.interrupt): Tune's own handler would end
        # fit() quietly, as if the sweep were complete, and advise Tuner.restore.
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
        by_id = {t.trial_id: t for t in trials}
        device = self.device

        def trainable(config):
            trial = by_id[config["trial"]["trial_id"]]
            location = compute_part(space, trial, sink, device)
            tune.report({"location": location, "n_points": trial.n_points})

        def finished(tune_trial) -> None:
            on_done(by_id[tune_trial.config["trial"]["trial_id"]],
                    tune_trial.last_result["location"])

        def errored(tune_trial) -> None:
            on_error(by_id[tune_trial.config["trial"]["trial_id"]],
                     f"Ray Tune trial failed after {max_failures} retries; "
                     f"see {tune_trial.error_file}")

        class Handoff(tune.Callback):
            """Driver side: the single place where finished trials reach the tracker."""

            def __init__(self, finished, errored):
                self.finished, self.errored = finished, errored

            def __getstate__(self):
                # Tune pickles the experiment's callbacks (for Tuner.restore, which the sweep
                # does not use: it resumes from its parts). Ours reach the driver's tracker
                # thread, which cannot be pickled and means nothing in another process.
                return {}

            def on_trial_complete(self, iteration, trials, trial, **info):
                self.finished(trial)

            def on_trial_error(self, iteration, trials, trial, **info):
                self.errored(trial)

        grid = [{"trial_id": t.trial_id} for t in trials]
        resources = {"cpu": self.resources.get("cpu", 1.0),
                     "gpu": self.resources.get("gpu", 0.0)}
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"trial": tune.grid_search(grid)},
            tune_config=tune.TuneConfig(
                reuse_actors=True,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"]),
            run_config=tune.RunConfig(
                name=space.name, storage_path=self.storage_path, verbose=0,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=[Handoff(finished, errored), JsonLoggerCallback(), CSVLoggerCallback()]),
        )
        # Tune resolves paths against the working directory at the end of fit(); a Ray job's
        # unpacked working_dir can be gone by then, so run from the (absolute) storage path.
        try:
            here = os.getcwd()
        except OSError:
            here = None
        if self.storage_path is not None:
            os.makedirs(self.storage_path, exist_ok=True)
            os.chdir(self.storage_path)
        try:
            tuner.fit()
        finally:
            if here is not None:
                try:
                    os.chdir(here)
                except OSError:
                    pass
            self.stop()
