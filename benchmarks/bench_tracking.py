"""Per-trial cost of the MLflow tracker at sweep scale, the committed tracker (HEAD) against
the working tree's, and whether the MLflow UI still opens a sweep of thousands of trials.

For each tracker, against its own fresh sqlite store: open a sweep of N trials (default
1,000; 20 points each: 10 recurrent scales x 2 seeds, metrics lipschitz + lyapunov + memory,
frames built from the schema without measuring), then trial_started + trial_finished for every
trial, then end_sweep. The two trackers advance chunk by chunk in turn, so that the load of
this shared machine falls on both alike; ms per trial is the median over chunks (the first
and last chunk show how it grows with the number of runs). Then a resume: a new tracker's
start_sweep + is_finished over all N trials.

``--ui`` then starts ``mlflow server`` on 127.0.0.1 over the new tracker's store and drives
headless Chromium (as tests/test_mlflow_ui.py does) to the experiment page: seconds until the
parent run's row renders, and until trial rows render once it is expanded (target: <= 10 s).
It stops exactly the server and browser it started.

Run:  .venv/bin/python benchmarks/bench_tracking.py [--trials 5000] [--chunk 100] [--ui]
      [--new-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ("lipschitz", "lyapunov", "memory")


def head_tracker_class(workdir: Path):
    """``MlflowTracker`` as committed at HEAD, imported beside the working tree's adapters
    (its relative imports resolve against this checkout's package)."""
    source = subprocess.run(["git", "show", "HEAD:sweeper/adapters/mlflow_tracker.py"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    path = workdir / "mlflow_tracker_head.py"
    path.write_text(source)
    name = "sweeper.adapters.mlflow_tracker_head"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.MlflowTracker


def bench_space(n_trials: int):
    """N trials (input scales) of 20 points each."""
    from sweeper.space import validate_space

    return validate_space({
        "name": "bench-tracking", "task": "noise", "cell": "rnn_tanh", "hidden_size": 64,
        "seq_len": 200, "axes": {"recurrent_scale": {"linspace": [0.25, 3.0, 10]},
                                 "seed": [0, 1],
                                 "input_scale": {"linspace": [0.05, 5.0, n_trials]}},
        "vectorize": ["recurrent_scale", "seed"], "metrics": list(MEASURED)})


def part_frame(trial, rng: np.random.Generator) -> pd.DataFrame:
    """A trial's part as ``sweeper run`` writes it, every column from the schema: the measured
    families' metrics drawn at random, the others missing (NaN, or None where measure() leaves
    None)."""
    from sweeper import schema

    scales, seeds = trial.vectorized["recurrent_scale"], trial.vectorized["seed"]
    n = len(scales) * len(seeds)
    identity = {"sweep": trial.config["name"], "trial_id": trial.trial_id,
                "point_id": [f"{trial.trial_id}-{i}" for i in range(n)], "mlflow_run_id": None,
                "cell": trial.config["cell"], "hidden_size": trial.config["hidden_size"],
                "task": trial.config["task"], "seed": np.tile(seeds, len(scales)),
                "recurrent_scale": np.repeat(scales, len(seeds)),
                "input_scale": trial.config["input_scale"],
                "seq_len": trial.config["seq_len"], "status": "ok", "region": "memory"}
    columns = {}
    for column in schema.part_columns():
        if column.name in identity:
            columns[column.name] = identity[column.name]
        elif column.family not in MEASURED:
            columns[column.name] = np.nan if column.dtype == "double" else [None] * n
        elif column.dtype == "bool":
            columns[column.name] = rng.random(n) < 0.5
        elif column.dtype == "list<double>":
            columns[column.name] = [list(rng.random(8)) for _ in range(n)]
        else:
            columns[column.name] = rng.normal(size=n)
    return pd.DataFrame(columns)


def write_parts(trials, directory: Path) -> dict:
    """One Parquet part per trial (the location each trial_finished gets); returns
    trial id -> (frame, location)."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    parts = {}
    for trial in trials:
        frame = part_frame(trial, rng)
        location = directory / f"part-{trial.trial_id}.parquet"
        frame.to_parquet(location)
        parts[trial.trial_id] = (frame, str(location))
    return parts


class Contender:
    """One tracker class over its own fresh store, timed chunk by chunk."""

    def __init__(self, label: str, tracker_class, workdir: Path):
        self.label, self.tracker_class = label, tracker_class
        self.workdir = workdir / label
        self.workdir.mkdir()
        self.store = f"sqlite:///{self.workdir / 'mlflow.db'}"
        self.chunks: list[float] = []  # ms per trial, chunk by chunk
        self.opened_s = self.closed_s = self.resumed_s = float("nan")

    def new_tracker(self):
        return self.tracker_class(self.store, self.workdir / "mlartifacts", str(self.workdir))

    def open(self, space) -> None:
        self.tracker = self.new_tracker()
        start = time.perf_counter()
        self.tracker.start_sweep(space)
        self.opened_s = time.perf_counter() - start

    def run_chunk(self, trials, parts) -> None:
        start = time.perf_counter()
        for trial in trials:
            self.tracker.trial_started(trial)
            frame, location = parts[trial.trial_id]
            self.tracker.trial_finished(trial, frame, location)
        self.chunks.append((time.perf_counter() - start) * 1000 / len(trials))

    def close(self) -> None:
        start = time.perf_counter()
        self.tracker.end_sweep("FINISHED")
        self.closed_s = time.perf_counter() - start

    def resume(self, space, trials) -> None:
        """A new driver over the finished sweep: its start_sweep and every is_finished."""
        tracker = self.new_tracker()
        start = time.perf_counter()
        tracker.start_sweep(space)
        finished = sum(tracker.is_finished(t) for t in trials)
        self.resumed_s = time.perf_counter() - start
        assert finished == len(trials), f"{self.label}: {finished} of {len(trials)} FINISHED"
        tracker.end_sweep("FINISHED")

    def disk_mb(self) -> float:
        return sum(p.stat().st_size for p in self.workdir.rglob("*") if p.is_file()) / 2**20


def report(contenders: list[Contender], n_trials: int, chunk: int) -> None:
    print(f"\n{n_trials} trials of 20 points, chunks of {chunk}; ms per trial "
          "(trial_started + trial_finished):")
    print(f"{'tracker':<8} {'median':>8} {'first':>8} {'last':>8} {'start_sweep s':>14} "
          f"{'end_sweep s':>12} {'resume s':>9} {'disk MB':>8}")
    for c in contenders:
        print(f"{c.label:<8} {statistics.median(c.chunks):8.1f} {c.chunks[0]:8.1f} "
              f"{c.chunks[-1]:8.1f} {c.opened_s:14.2f} {c.closed_s:12.2f} {c.resumed_s:9.2f} "
              f"{c.disk_mb():8.1f}")
    if len(contenders) == 2:
        old, new = contenders
        print(f"old / new, median ms per trial: "
              f"{statistics.median(old.chunks) / statistics.median(new.chunks):.1f}x; "
              f"resume: {old.resumed_s / new.resumed_s:.1f}x")


def time_ui(store: str, experiment: str, shot: Path) -> None:
    """Seconds from opening the experiment page until the parent run's row renders, and
    until trial rows render after expanding it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright
    from test_mlflow_ui import CHROMIUM, CHROMIUM_ARGS

    from sweeper.adapters.mlflow_ui import experiment_url, start_ui, stop_ui

    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], "tags.`sweeper.role` = 'sweep'")
    parent = runs[0].info.run_id
    newest = client.search_runs([experiment_id], "tags.`sweeper.role` = 'trial'",
                                max_results=20, order_by=["attributes.start_time DESC"])
    link = 'a[href$="/runs/{}"]'
    any_child = ", ".join(link.format(r.info.run_id) for r in newest)
    started = time.perf_counter()
    server, url = start_ui(store)
    print(f"\nmlflow server up in {time.perf_counter() - started:.1f} s (pid {server.pid})")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(shot.parent / "chromium-profile"), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 900})
            try:
                page = browser.new_page()
                start = time.perf_counter()
                page.goto(experiment_url(url, experiment_id))
                page.locator(link.format(parent)).wait_for(timeout=120_000)
                parent_s = time.perf_counter() - start
                if not page.locator(any_child).count():
                    page.locator(f'div[role="gridcell"]:has({link.format(parent)}) button'
                                 ).first.click()
                page.locator(any_child).first.wait_for(timeout=120_000)
                children_s = time.perf_counter() - start
                rows = page.locator('a[href*="/runs/"]').count()
                page.screenshot(path=shot, full_page=True)
            finally:
                browser.close()
    finally:
        stop_ui(server)
    print(f"UI over {experiment!r}: parent row after {parent_s:.1f} s, trial rows after "
          f"{children_s:.1f} s ({rows} run links on the page; target <= 10 s); "
          f"screenshot {shot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--new-only", action="store_true",
                        help="time only the working tree's tracker")
    parser.add_argument("--ui", action="store_true",
                        help="then time the MLflow UI over the new tracker's store")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this (new) directory and keep it")
    args = parser.parse_args()
    if args.trials < 1 or args.chunk < 1:
        parser.error(f"requires positive --trials and --chunk, got --trials={args.trials} "
                     f"--chunk={args.chunk}")

    import torch  # imported by the schema's families; one thread on this shared machine

    torch.set_num_threads(1)
    from sweeper.adapters.mlflow_tracker import MlflowTracker

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    workdir.mkdir(parents=True, exist_ok=args.keep is None)
    space = bench_space(args.trials)
    trials = space.trials()
    parts = write_parts(trials, workdir / "points")
    contenders = [] if args.new_only else [Contender("old", head_tracker_class(workdir),
                                                     workdir)]
    contenders.append(Contender("new", MlflowTracker, workdir))
    for contender in contenders:
        contender.open(space)
    for start in range(0, len(trials), args.chunk):
        for contender in contenders:
            contender.run_chunk(trials[start:start + args.chunk], parts)
        done = min(start + args.chunk, len(trials))
        print(f"{done:>6} trials: " + ", ".join(f"{c.label} {c.chunks[-1]:.1f} ms/trial"
                                                 for c in contenders), flush=True)
    for contender in contenders:
        contender.close()
        contender.resume(space, trials)
    report(contenders, args.trials, args.chunk)
    if args.ui:
        time_ui(contenders[-1].store, space.name, workdir / "mlflow_ui.png")
    print(f"\nstores and parts in {workdir}")


if __name__ == "__main__":
    main()
