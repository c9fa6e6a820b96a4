"""Trials on Ray Tune: one Tune trial per sweep trial, on an embedded local Ray by default or
on a cluster (``address``). Workers write their Parquet part themselves (results storage must
be a path every node sees); the driver's callback hands each finished part to the tracker."""

from __future__ import annotations

import os
from pathlib import Path

from ..space import SearchSpace, Trial
from ..sweep import Executor, ResultSink, compute_part


class RayTuneExecutor(Executor):
    def __init__(self, address: str | None = None, storage_path: str | Path | None = None,
                 resources: dict[str, float] | None = None, device: str | None = None):
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
        ray.init(address=self.address, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False, configure_logging=False)
        self._started = True

    def stop(self) -> None:
        """Shut down the Ray this executor started (never one it found running)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def run(self, space: SearchSpace, trials: list[Trial], run_ids, sink: ResultSink,
            on_done, on_error, max_failures: int) -> None:
        if not trials:
            return
        from ray import tune

        self.start()
        # Tune's newer console output ignores verbose=0 and prints its trial table to stdout;
        # the sweep has its own progress line. The user's own setting wins.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        by_id = {t.trial_id: t for t in trials}
        device = self.device

        def trainable(config):
            trial = by_id[config["trial"]["trial_id"]]
            location = compute_part(space, trial, config["trial"]["run_id"], sink, device)
            tune.report({"location": location, "n_points": trial.n_points})

        class Handoff(tune.Callback):
            """Driver side: the single place where finished trials reach the tracker."""

            def on_trial_complete(self, iteration, trials, trial, **info):
                ours = by_id[trial.config["trial"]["trial_id"]]
                on_done(ours, trial.last_result["location"])

            def on_trial_error(self, iteration, trials, trial, **info):
                ours = by_id[trial.config["trial"]["trial_id"]]
                on_error(ours, f"Ray Tune trial failed after {max_failures} retries; "
                               f"see {trial.error_file}")

        grid = [{"trial_id": t.trial_id, "run_id": run_ids[t.trial_id]} for t in trials]
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
                callbacks=[Handoff()]),
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
