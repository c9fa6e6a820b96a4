"""The full Lyapunov spectrum side by side with the peer: Engelken et al.'s per-point algorithm
against ``sweeper.measure`` with ``dynamics=DynamicsConfig(lyapunov_k=k)`` (issue 29).

The baseline is the algorithm of Engelken, Wolf & Abbott (2023, Phys. Rev. Research 5,
043044; their Python demo) for the rate network dh/dt = -h + J tanh(h): per point, the
Euler step h' = (1 - dt) h + dt J tanh(h), the explicit Jacobian
D = (1 - dt) I + J diag(dt sech^2 h), k tangent vectors Q' = D Q and a QR every step, in
float64 numpy. With dt = 1 its map is h' = J tanh(h), which is rnn_tanh at zero input,
x' = tanh(s W x), seen through h_t = s W x_{t-1} (x_t = tanh(h_t)): the two maps are
conjugate, so they have the same exponents. The baseline runs on the same J = s W (the
project's draw of W for the seed) from the same start, h_1 = s W x_0.

Rows: N = 100 and 256; k = N (all exponents) and k = 10. ``measure`` takes 32 gains in one
call (linspace(1.5, 4, 31) with 2.0 once more, so that g = 1.5, 2 and 4 are among them),
zero input, float64 like the baseline (``--dtype float32``: measure's default, whose
1 - tanh^2 turns exactly 0 on saturated units and biases the most negative exponents, to
-inf at g = 4), burn-in 100 + seq_len 1100 = 1200 steps, as in the
issue. The baseline runs the same 1200 steps (the first 100 discarded) at g = 1.5, 2 and 4;
its seconds per point are the mean over those three. Printed: seconds per point of both,
the speed-up, and the largest absolute difference of any exponent at g = 1.5, 2, 4 (nats per
step), each beside its target (speed-up >= 5x with all exponents, >= 20x with k = 10;
difference <= 0.01) as met or MISSED. The difference includes the statistical error of two
finite-time estimates: after ~100 steps the two runs' roundings put them on different
trajectories of the same attractor.

Each measure figure is the median of ``--repeats`` calls after one warm-up call; the baseline
is timed once per gain (it is what takes longest).

Run:
  .venv/bin/python benchmarks/bench_spectrum.py [--quick] [--threads N] [--profile]

``--threads N`` limits torch's and numpy's BLAS threads (threadpoolctl) alike: on a loaded
2-core machine two threads made a batched torch.linalg.qr ~19x slower than one.
``--quick``: N = 100 only, 8 gains per call (3 of them compared), 600 steps. ``--profile``:
after the table, cProfile of one measure call at N = 100, k = N (the top entries by total
time).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import numpy as np
import torch
from _timing import median_time

from sweeper.cells import CELLS
from sweeper.dynamics import DynamicsConfig
from sweeper.measure import measure
from sweeper.seeding import generator

SEED = 0
COMPARED = (1.5, 2.0, 4.0)
BURN_IN = 100
ZERO_INPUT = {"input_std": 0.0}
TARGETS = {"all": 5.0, 10: 20.0}  # speed-up per point
TOLERANCE = 0.01  # nats/step


def engelken_spectrum(coupling: np.ndarray, h: np.ndarray, k: int, steps: int,
                      burn_in: int, dt: float = 1.0, seed: int = 1) -> np.ndarray:
    """The k largest exponents of dh/dt = -h + J tanh(h) by Euler steps of size dt, nats per
    step, sorted descending: Engelken et al.'s per-point algorithm (explicit Jacobian, QR
    every step). ``coupling``: J (N, N); ``h``: the start (N,)."""
    size = coupling.shape[0]
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((size, k)))
    eye = np.eye(size)
    total = np.zeros(k)
    for t in range(steps):
        sech2 = 1.0 - np.tanh(h) ** 2
        jacobian = (1 - dt) * eye + coupling * (dt * sech2)[None, :]  # J diag(dt sech^2 h)
        h = (1 - dt) * h + dt * coupling @ np.tanh(h)
        q, r = np.linalg.qr(jacobian @ q)
        if t >= burn_in:
            total += np.log(np.abs(np.diag(r)))
    return np.sort(total / (steps - burn_in))[::-1]


def gains(count: int) -> np.ndarray:
    """``count`` gains from 1.5 to 4 that include 1.5, 2 and 4."""
    grid = np.linspace(1.5, 4.0, count - 1)
    return np.sort(np.append(grid, 2.0))


def baseline_inputs(hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """The project's W (seed SEED) and start x_0 ~ U(-1, 1)^N, as measure() draws them."""
    weights = CELLS["rnn_tanh"].init_weights(hidden, 1, generator(SEED, "weights"))
    x0 = torch.rand(1, hidden, generator=generator(SEED, "initial-state"),
                    dtype=torch.float64)[0] * 2 - 1
    return weights["weight_hh"].numpy(), x0.numpy()


def measure_call(hidden: int, scales: np.ndarray, k: int, steps: int, dtype: str):
    return measure("rnn_tanh", hidden, recurrent_scale=scales, seed=SEED,
                   seq_len=steps - BURN_IN, task_params=ZERO_INPUT, metrics=["lyapunov"],
                   dtype=dtype,
                   columns="requested", dynamics=DynamicsConfig(lyapunov_k=k, burn_in=BURN_IN))


def row(hidden: int, k: int, args) -> None:
    scales = gains(args.gains)
    steps = args.steps
    frame = measure_call(hidden, scales, k, steps, args.dtype)  # also the warm-up
    ours = median_time(lambda: measure_call(hidden, scales, k, steps, args.dtype), args.repeats,
                       warm_up=False) / len(scales)
    names = ["lyapunov_max", *(f"lyapunov_{i}" for i in range(2, k + 1))]
    weight, x0 = baseline_inputs(hidden)
    seconds, worst = [], 0.0
    for gain in COMPARED:
        coupling = gain * weight
        start = time.perf_counter()
        theirs = engelken_spectrum(coupling, coupling @ x0, k, steps, BURN_IN)
        seconds.append(time.perf_counter() - start)
        index = int(np.flatnonzero(np.isclose(scales, gain))[0])
        mine = frame.loc[index, names].to_numpy(float)
        worst = max(worst, float(np.abs(mine - theirs).max()))
    baseline = float(np.mean(seconds))
    speedup = baseline / ours
    target = TARGETS["all"] if k == hidden else TARGETS[10]
    print(f"{hidden:>4} {('all' if k == hidden else k):>4} {len(scales):>4} {baseline:>10.4f} "
          f"{ours:>10.4f} {speedup:>7.1f}x  >= {target:g}x "
          f"{'met' if speedup >= target else 'MISSED':<7} {worst:>9.4f}  <= {TOLERANCE} "
          f"{'met' if worst <= TOLERANCE else 'MISSED'}", flush=True)


def profile(args) -> None:
    hidden = 100
    scales = gains(args.gains)
    measure_call(hidden, scales, hidden, 200, args.dtype)
    profiler = cProfile.Profile()
    profiler.enable()
    measure_call(hidden, scales, hidden, args.steps, args.dtype)
    profiler.disable()
    print(f"\ncProfile: one measure call, N = {hidden}, k = N, {len(scales)} gains, "
          f"{args.steps} steps")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 100 only, 8 gains per call, 600 steps")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            print("threadpoolctl not installed: numpy keeps its BLAS threads")
        else:
            threadpool_limits(limits=args.threads)
    args.gains, args.steps = (8, 600) if args.quick else (32, 1200)
    print(f"{torch.get_num_threads()} torch threads, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; baseline float64 numpy per "
          f"point, measure {args.dtype} batched; seconds per point\n")
    print(f"{'N':>4} {'k':>4} {'gains':>4} {'baseline':>10} {'measure':>10} {'speed-up':>8} "
          f"{'target':<14} {'max |dl|':>9}  target")
    for hidden in ((100,) if args.quick else (100, 256)):
        for k in (hidden, 10):
            row(hidden, k, args)
    if args.profile:
        profile(args)


if __name__ == "__main__":
    main()
