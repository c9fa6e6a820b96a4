"""A large sweep's results directory made without Ray or MLflow: the parts every trial of a
tiny-network space would write, and the sweep record, so the read side (``sweeper aggregate``,
``sweeper query``, compaction) can be measured at 100,000 points without paying for the run.

The space: rnn_tanh, H = 8, seq_len 50, lyapunov only; recurrent_scale vectorised (``points``
values per trial), input_scale x seed make the trials. Every part is written by the sink the
sweep itself uses, from ``trial_frame``; run ids are null, as for a sweep whose tracking failed.

Run:  .venv/bin/python benchmarks/large_sweep.py OUT [--trials 5000] [--points 20]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path


def large_space(trials: int, points: int, name: str = "large-sweep") -> dict:
    """A search space of ``trials`` trials of ``points`` points each."""
    inputs = max(1, int(math.sqrt(trials)))
    while trials % inputs:
        inputs -= 1
    seeds = trials // inputs
    return {"name": name, "task": "noise", "cell": "rnn_tanh", "hidden_size": 8, "seq_len": 50,
            "axes": {"recurrent_scale": {"linspace": [0.25, 3.0, points]},
                     "input_scale": {"linspace": [0.05, 2.0, inputs]},
                     "seed": list(range(seeds))},
            "vectorize": ["recurrent_scale"], "metrics": ["lyapunov"],
            "map": {"x": "recurrent_scale", "y": "input_scale"}}


def make(out: str | Path, trials: int = 5000, points: int = 20) -> dict:
    """Write every part of the space and its sweep record under ``out``; returns the raw space."""
    import pandas as pd

    from sweeper.adapters.parquet_sink import ParquetSink
    from sweeper.adapters.results import write_record
    from sweeper.space import validate_space
    from sweeper.sweep import trial_frame

    raw = large_space(trials, points)
    space = validate_space(raw)
    sink = ParquetSink(out)
    start = time.perf_counter()
    for i, trial in enumerate(space.trials()):
        frame = trial_frame(space, trial, "cpu")
        frame.insert(3, "mlflow_run_id", pd.Series([None] * len(frame), dtype="str"))
        sink.write(trial.trial_id, frame)
        if i % 500 == 499:
            print(f"\r{i + 1}/{trials} trials, {time.perf_counter() - start:.0f}s",
                  end="", file=sys.stderr)
    print(file=sys.stderr)
    write_record(out, space, "sqlite:///unused.db")
    return raw


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--points", type=int, default=20)
    args = parser.parse_args()
    make(args.out, args.trials, args.points)
