"""Sweep overhead: 1,000 points through `sweeper run` against the same points in one process,
and against the naive one-point-per-trial design.

Points: rnn_tanh, H = 64, seq_len 200, metrics lipschitz + lyapunov + memory;
recurrent_scale 125 values x seed 4 (vectorised) x input_scale 2 -> 2 trials of 500 points.

  (a) `sweeper run` (embedded Ray, sqlite MLflow, Parquet, region map and plots), wall time of
      the whole command from a fresh process and a fresh tracking store;
  (b) the same trials computed with no Ray or MLflow by a fresh Python process (interpreter,
      torch import, computation: what any command computing these points pays), and, for
      reference, (b') the computation alone inside this process;
  (c) the naive design: one Ray Tune trial + one MLflow run + one single-point measurement per
      point, timed on a subset and extrapolated to 1,000 points (labelled as such).

(a), (b) and (b') alternate for ``--repeat`` rounds; medians are reported.

Run:  .venv/bin/python benchmarks/bench_sweep.py [--repeat 3] [--subset 16]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SPACE = {
    "name": "bench-sweep",
    "task": "noise",
    "cell": "rnn_tanh",
    "hidden_size": 64,
    "seq_len": 200,
    "axes": {"recurrent_scale": {"linspace": [0.25, 3.0, 125]}, "seed": [0, 1, 2, 3],
             "input_scale": [0.5, 1.0]},
    "vectorize": ["recurrent_scale", "seed"],
    "metrics": ["lipschitz", "lyapunov", "memory"],
}


def sweep_cli(workdir: Path) -> float:
    import shutil

    path = workdir / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    for old in (workdir / "out", workdir / "mlflow.db"):
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sweeper.cli", "run", str(path), "--out",
                    str(workdir / "out")], cwd=workdir, check=True, capture_output=True)
    return time.perf_counter() - start


FRESH = """
import sys, yaml
from sweeper.space import validate_space
from sweeper.sweep import trial_frame
space = validate_space(yaml.safe_load(open(sys.argv[1])))
assert sum(len(trial_frame(space, t, "cpu")) for t in space.trials()) == 1000
"""


def fresh_process(workdir: Path) -> float:
    path = workdir / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FRESH, str(path)], cwd=workdir, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def in_process() -> float:
    from sweeper.space import validate_space
    from sweeper.sweep import trial_frame

    space = validate_space(SPACE)
    start = time.perf_counter()
    rows = sum(len(trial_frame(space, trial, "cpu")) for trial in space.trials())
    assert rows == 1000
    return time.perf_counter() - start


def naive(workdir: Path, subset: int) -> float:
    """One Tune trial, one MLflow run and one measure() call per point."""
    import numpy as np
    import ray
    from mlflow.tracking import MlflowClient
    from ray import tune

    from sweeper import measure

    scales = np.linspace(0.25, 3.0, 125)[:: max(1, 125 // subset)][:subset].tolist()
    client = MlflowClient(f"sqlite:///{workdir / 'naive.db'}")
    experiment = client.create_experiment("naive")

    def trainable(config):
        frame = measure("rnn_tanh", 64, recurrent_scale=[config["s"]], seed=[0], seq_len=200,
                        metrics=["lipschitz", "lyapunov", "memory"], device="cpu")
        tune.report({"lyapunov_max": float(frame.lyapunov_max[0])})

    class Log(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            run = client.create_run(experiment)
            client.log_metric(run.info.run_id, "lyapunov_max", trial.last_result["lyapunov_max"])
            client.set_terminated(run.info.run_id)

    start = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             configure_logging=False)
    try:
        tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                   param_space={"s": tune.grid_search(scales)},
                   run_config=tune.RunConfig(storage_path=str(workdir / "naive_ray"),
                                             verbose=0, callbacks=[Log()])).fit()
    finally:
        ray.shutdown()
    return (time.perf_counter() - start) * 1000 / len(scales)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=16, help="points timed for (c)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of (a), (b), (b')")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"a": [], "b": [], "b'": []}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        for _ in range(args.repeat):
            runs["b"].append(fresh_process(work))
            runs["a"].append(sweep_cli(work))
            runs["b'"].append(in_process())
        t_c = naive(work, args.subset)
    t_a, t_b, t_b1 = (statistics.median(runs[k]) for k in ("a", "b", "b'"))

    def spread(key: str) -> str:
        return "  ".join(f"{v:5.1f}" for v in runs[key])

    print("1,000 points: rnn_tanh H = 64, seq_len 200, lipschitz + lyapunov + memory, "
          f"2 trials of 500; medians of {args.repeat} rounds (each run listed)")
    print(f"  (a)  sweeper run (Ray + MLflow + Parquet + map)  {t_a:7.1f} s   [{spread('a')}]")
    print(f"  (b)  same points, fresh process, no Ray/MLflow   {t_b:7.1f} s   [{spread('b')}]")
    inner = spread("b'")
    print(f"  (b') same points, computation only (in-process)  {t_b1:7.1f} s   [{inner}]")
    print(f"  (c)  naive, one trial + run per point            {t_c:7.1f} s   "
          f"(extrapolated from {args.subset} points)")
    print(f"  overhead (a - b) / b   = {(t_a - t_b) / t_b:6.1%}   (target <= 15 %)")
    print(f"  overhead (a - b') / b' = {(t_a - t_b1) / t_b1:6.1%}   (against computation alone)")
    print(f"  naive / sweeper (c) / (a) = {t_c / t_a:6.1f}x   (target >= 30x)")


if __name__ == "__main__":
    main()
