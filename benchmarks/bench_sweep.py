"""Sweep overhead: 1,000 points through `sweeper run` against the same points in one process,
and against the naive one-point-per-trial design.

Points: rnn_tanh, H = 64, seq_len 200, metrics lipschitz + lyapunov + memory;
recurrent_scale 125 values x seed 4 (vectorised) x input_scale 2 -> 2 trials of 500 points.

  (a) `sweeper run` (embedded Ray, sqlite MLflow, Parquet, region map and plots), wall time of
      the whole command from a fresh process and a fresh tracking store;
  (a') the same command joining a Ray already running on this machine (`--address`, a head
      started once by this script with token auth), as repeated sweeps on a cluster run;
  (b) the same trials computed with no Ray or MLflow by a fresh Python process (interpreter,
      torch import, computation: what any command computing these points pays), and, for
      reference, (b') the computation alone inside this process;
  (c) the naive design: one Ray Tune trial + one MLflow run + one single-point measurement per
      point, timed on a subset and extrapolated to all points (labelled as such).

(a), (b) and (b') alternate for ``--repeat`` rounds with no other Ray on the machine; then the
head for (a') is started and (a') repeats. Medians are reported. The fixed cost of the
pipeline is measured too: the same command on a 2-point sweep (same model, 2 trials of 1
point), cold and warm, so the overhead splits into a fixed part and a per-point part.
``--input-scales N`` sweeps N input scales instead of 2 (500 N points, N trials of 500).

Run:  .venv/bin/python benchmarks/bench_sweep.py [--repeat 3] [--subset 16] [--input-scales 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
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


TINY = dict(SPACE, axes={"recurrent_scale": [1.0], "seed": [0], "input_scale": [0.5, 1.0]})


def sweep_cli(workdir: Path, space: dict = SPACE, ray: dict | None = None) -> float:
    """Wall time of `sweeper run` in a fresh process with a fresh output and tracking store;
    ``ray`` ({"address", "env"}) joins a running Ray instead of starting one."""
    path = workdir / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    for old in (workdir / "out", workdir / "mlflow.db"):
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    command = [sys.executable, "-m", "sweeper.cli", "run", str(path), "--out",
               str(workdir / "out")]
    if ray:
        command += ["--address", ray["address"]]
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True, capture_output=True,
                   env=ray["env"] if ray else None)
    return time.perf_counter() - start


@contextlib.contextmanager
def ray_head(workdir: Path):
    """A one-node Ray (token auth on, 2 CPUs) for the warm runs; stops exactly its own
    processes (found by their private temp dir) afterwards."""
    import secrets
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="rswb", dir="/tmp")  # short: Ray's socket paths
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               RAY_USAGE_STATS_ENABLED="0")
    ray_bin = Path(sys.executable).parent / "ray"
    try:
        subprocess.run([str(ray_bin), "start", "--head", f"--port={port}",
                        "--node-ip-address=127.0.0.1", "--num-cpus=2", f"--temp-dir={temp}",
                        "--include-dashboard=false", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=180)
        yield {"address": f"127.0.0.1:{port}", "env": env}
    finally:
        found = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True)
        for pid in (int(p) for p in found.stdout.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


FRESH = """
import sys, yaml
from sweeper.space import validate_space
from sweeper.sweep import trial_frame
space = validate_space(yaml.safe_load(open(sys.argv[1])))
assert sum(len(trial_frame(space, t, "cpu")) for t in space.trials()) == space.n_points
"""


def fresh_process(workdir: Path, space: dict = SPACE) -> float:
    path = workdir / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FRESH, str(path)], cwd=workdir, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def in_process(raw: dict = SPACE) -> float:
    from sweeper.space import validate_space
    from sweeper.sweep import trial_frame

    space = validate_space(raw)
    start = time.perf_counter()
    rows = sum(len(trial_frame(space, trial, "cpu")) for trial in space.trials())
    assert rows == space.n_points
    return time.perf_counter() - start


def naive(workdir: Path, subset: int, n_points: int) -> float:
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
    return (time.perf_counter() - start) * n_points / len(scales)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=16, help="points timed for (c)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each measurement")
    parser.add_argument("--input-scales", type=int, default=2,
                        help="input scales swept (500 points each; default 2: 1,000 points)")
    args = parser.parse_args()
    space = dict(SPACE, axes=dict(SPACE["axes"], input_scale=[
        round(0.5 * (i + 1), 3) for i in range(args.input_scales)]))
    n_points = 500 * args.input_scales
    runs: dict[str, list[float]] = {k: [] for k in ("a", "a'", "b", "b'", "fixed", "fixed'")}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        for _ in range(args.repeat):  # nothing else running: the embedded Ray is the only one
            runs["b"].append(fresh_process(work, space))
            runs["a"].append(sweep_cli(work, space))
            runs["b'"].append(in_process(space))
            runs["fixed"].append(sweep_cli(work, TINY))
        with ray_head(work) as head:
            for _ in range(args.repeat):
                runs["a'"].append(sweep_cli(work, space, ray=head))
                runs["fixed'"].append(sweep_cli(work, TINY, ray=head))
        t_c = naive(work, args.subset, n_points)
    t = {k: statistics.median(v) for k, v in runs.items()}

    def spread(key: str) -> str:
        return "  ".join(f"{v:5.1f}" for v in runs[key])

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(f"{n_points:,} points: rnn_tanh H = 64, seq_len 200, lipschitz + lyapunov + memory, "
          f"{args.input_scales} trials of 500; medians of {args.repeat} rounds (each run "
          f"listed); {os.cpu_count()} CPUs")
    rows = [("a", "sweeper run, embedded Ray (starts and stops Ray)"),
            ("a'", "sweeper run --address, Ray already running"),
            ("b", "same points, fresh process, no Ray/MLflow"),
            ("b'", "same points, computation only (in-process)"),
            ("fixed", "fixed cost: 2-point sweep, embedded Ray"),
            ("fixed'", "fixed cost: 2-point sweep, --address")]
    for key, label in rows:
        print(f"  ({key:6s}) {label:48s} {t[key]:7.1f} s   [{spread(key)}]")
    print(f"  (c)      naive, one trial + run per point{'':9s} {t_c:7.1f} s   "
          f"(extrapolated from {args.subset} points)")
    for a, fixed, label in (("a", "fixed", "embedded"), ("a'", "fixed'", "--address")):
        overhead = (t[a] - t["b"]) / t["b"]
        print(f"  {label:9s} overhead (a - b) / b = {overhead:6.1%}   (target <= 15 %: "
              f"{verdict(overhead <= 0.15)}); fixed cost {t[fixed]:.1f} s = "
              f"{t[fixed] / t['b']:.0%} of b; the points beyond it (a - fixed) / b = "
              f"{(t[a] - t[fixed]) / t['b']:.2f}x")
    inner = (t["a"] - t["b'"]) / t["b'"]
    print(f"  overhead (a - b') / b' = {inner:6.1%}   (embedded, against computation alone)")
    print(f"  naive / sweeper (c) / (a) = {t_c / t['a']:6.1f}x   (target >= 30x: "
          f"{verdict(t_c / t['a'] >= 30)})")


if __name__ == "__main__":
    main()
