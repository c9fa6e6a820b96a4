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

``measure`` re-orthonormalises every tau steps by the rule of
``sweeper.lyapunov.Reorthonormalisation`` (a Cholesky-QR where it is accurate enough, else
Householder; tau from the spread of the running exponents and a budget of bits).

Rows: N = 100 and 256; k = N (all exponents) and k = 10. ``measure`` takes 32 gains in one
call (linspace(1.5, 4, 31) with 2.0 once more, so that g = 1.5, 2 and 4 are among them),
zero input, float64 like the baseline (``--dtype float32``: measure's default, whose
1 - tanh^2 turns exactly 0 on saturated units and biases the most negative exponents, to
-inf at g = 4), burn-in 100 + seq_len 1100 = 1200 steps, as in the issue. The baseline runs
the same 1200 steps (the first 100 discarded) at g = 1.5, 2 and 4; its seconds per point are
the mean over those three.

Printed per row, in seconds per point (one measure call / 32; the baseline's mean):
  baseline, measure, their ratio beside the target (>= 5x with all exponents, >= 20x with
  k = 10) as met or MISSED;
  step: the same pass's tangent steps alone, no QR (the cell's step_stacked over the same
  shapes, 32 points at once), and "bound" = baseline / step, the most any QR scheme could
  reach; qr/step: the share of point-steps that ended in a QR in the measure call, and
  chol: the share of those done by Cholesky-QR;
  |dl| rule: the largest difference of any exponent at g = 1.5, 2, 4 between measure's rule
  and a Householder QR every step on the same trajectory (run_dynamics with
  ``sweeper.lyapunov.EVERY_STEP``; the tangents never feed back into the state, so only the
  rule's rounding differs), against the target 0.01 nats/step;
  |dl| peer: the same against the baseline, and floor: the baseline against itself from a
  start moved by 1e-12 and another random tangent basis. The last two compare finite-time
  estimates on different trajectories of one attractor (after ~100 steps the two runs'
  roundings part them), so they are statistical: the peer difference is at the floor's
  level when the algorithms agree.

Each measure figure is the median of ``--repeats`` calls after one warm-up call; the baseline
is timed once per gain (it is what takes longest).

Run:
  .venv/bin/python benchmarks/bench_spectrum.py [--quick] [--threads N] [--profile]

``--threads N`` (default 1) sets torch's threads and numpy's BLAS threads (threadpoolctl)
alike, so both sides run on the same number of cores; on a loaded 2-core machine two threads
made a batched torch.linalg.qr ~19x slower than one. ``--quick``: N = 100 only, 600 steps (the
same 32 gains). ``--profile``: after the table, torch.profiler's top
operators (self CPU time) of one measure call per k at N = 100.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
import torch
from _timing import median_time

import sweeper.dynamics
from sweeper.cells import CELLS
from sweeper.dynamics import DynamicsConfig, PassNeeds, drive_blocks, run_dynamics
from sweeper.lyapunov import EVERY_STEP, TangentBasis, renormalise
from sweeper.measure import build_params, flushing_subnormals, measure
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


def initial_state(hidden: int) -> torch.Tensor:
    """x_0 ~ U(-1, 1)^N (float64), as measure() draws it for the seed."""
    return torch.rand(1, hidden, generator=generator(SEED, "initial-state"),
                      dtype=torch.float64)[0] * 2 - 1


def baseline_inputs(hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """The project's W (seed SEED) and start x_0, as measure() draws them."""
    weights = CELLS["rnn_tanh"].init_weights(hidden, 1, generator(SEED, "weights"))
    return weights["weight_hh"].numpy(), initial_state(hidden).numpy()


def measure_call(hidden: int, scales: np.ndarray, k: int, steps: int, dtype: str):
    return measure("rnn_tanh", hidden, recurrent_scale=scales, seed=SEED,
                   seq_len=steps - BURN_IN, task_params=ZERO_INPUT, metrics=["lyapunov"],
                   dtype=dtype,
                   columns="requested", dynamics=DynamicsConfig(lyapunov_k=k, burn_in=BURN_IN))


@contextlib.contextmanager
def recorded_bases():
    """The TangentBasis of every dynamics pass run inside, for its counts of QRs."""
    made = []

    class Recorded(TangentBasis):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    sweeper.dynamics.TangentBasis = Recorded
    try:
        yield made
    finally:
        sweeper.dynamics.TangentBasis = TangentBasis


def pass_inputs(hidden: int, scales, steps: int, dtype: torch.dtype):
    """measure()'s parameters, zero inputs and start for rnn_tanh at ``scales``."""
    cell = CELLS["rnn_tanh"]
    rs = torch.tensor([list(scales)], dtype=torch.float64)
    params = cell.prepare(build_params(cell, hidden, 1, [SEED], rs, torch.ones_like(rs), dtype,
                                       torch.device("cpu")))
    inputs = torch.zeros(1, 1, steps, 1, dtype=dtype)
    x0 = initial_state(hidden).to(dtype)[None, None, None].expand(1, rs.shape[1], 1, hidden)
    return cell, params, inputs, x0


def rule_difference(hidden: int, k: int, steps: int, dtype: torch.dtype) -> float:
    """Largest |measure's rule - a QR every step| over the exponents at the compared gains,
    on one trajectory (run_dynamics on the same inputs as measure)."""
    cell, params, inputs, x0 = pass_inputs(hidden, COMPARED, steps, dtype)
    config = DynamicsConfig(lyapunov_k=k, burn_in=BURN_IN, lipschitz_samples=0)
    needs = PassNeeds(tangents=True, jacobian_samples=False)
    rule, every = (run_dynamics(cell, params, inputs, x0, steps - BURN_IN, config, [SEED],
                                needs, **extra).lyapunov
                   for extra in ({}, {"reorthonormalisation": EVERY_STEP}))
    return float((rule - every).abs().max())


def step_only(hidden: int, scales, k: int, steps: int, dtype: torch.dtype) -> float:
    """Seconds per point of the pass's tangent steps alone (no QR, no renormalisation), over
    the same shapes: what no re-orthonormalisation scheme can go below."""
    cell, params, inputs, x0 = pass_inputs(hidden, scales, steps, dtype)
    projection = sweeper.dynamics.input_projection(params, inputs)
    v, _ = renormalise(torch.randn(1, len(scales), 1, k, hidden, dtype=dtype))
    z0 = torch.cat([x0[..., None, :], v], dim=-2)

    def run():
        z = z0
        for drive in drive_blocks(params, projection, steps):
            z, _ = cell.step_stacked(params, z, drive)
            z[..., 1:, :].mul_(0.5)  # keeps the tangents from overflowing

    with flushing_subnormals():  # as measure() does: decayed tangents become exact zeros
        return median_time(run, 1) / len(scales)


def row(hidden: int, k: int, args) -> None:
    scales = gains(args.gains)
    steps = args.steps
    with recorded_bases() as bases:
        frame = measure_call(hidden, scales, k, steps, args.dtype)  # also the warm-up
    factorisations = sum(b.factorisations for b in bases)
    by_cholesky = factorisations - sum(b.householder + b.fallbacks for b in bases)
    qr_share = factorisations / (len(scales) * steps)
    ours = median_time(lambda: measure_call(hidden, scales, k, steps, args.dtype), args.repeats,
                       warm_up=False) / len(scales)
    dtype = getattr(torch, args.dtype)
    floor_s = step_only(hidden, scales, k, steps, dtype)
    rule = rule_difference(hidden, k, steps, dtype)
    names = ["lyapunov_max", *(f"lyapunov_{i}" for i in range(2, k + 1))]
    weight, x0 = baseline_inputs(hidden)
    seconds, peer, floor = [], 0.0, 0.0
    for gain in COMPARED:
        coupling = gain * weight
        start = time.perf_counter()
        theirs = engelken_spectrum(coupling, coupling @ x0, k, steps, BURN_IN)
        seconds.append(time.perf_counter() - start)
        moved = coupling @ (x0 + 1e-12 * np.ones_like(x0))
        again = engelken_spectrum(coupling, moved, k, steps, BURN_IN, seed=2)
        index = int(np.flatnonzero(np.isclose(scales, gain))[0])
        mine = frame.loc[index, names].to_numpy(float)
        peer = max(peer, float(np.abs(mine - theirs).max()))
        floor = max(floor, float(np.abs(again - theirs).max()))
    baseline = float(np.mean(seconds))
    speedup = baseline / ours
    target = TARGETS["all"] if k == hidden else TARGETS[10]
    verdict = "met" if speedup >= target else "MISSED"
    print(f"{hidden:>4} {('all' if k == hidden else k):>4} {len(scales):>5} {baseline:>9.4f} "
          f"{ours:>9.4f} {speedup:>6.1f}x >= {target:>2g}x {verdict:<6} "
          f"{floor_s:>8.4f} {baseline / floor_s:>5.1f}x {qr_share:>7.2f} "
          f"{by_cholesky / max(factorisations, 1):>5.2f} {rule:>9.1e} "
          f"{'met' if rule <= TOLERANCE else 'MISSED':<6} {peer:>8.4f} {floor:>7.4f}",
          flush=True)


def profile(args) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    hidden = 100
    scales = gains(args.gains)
    for k in (hidden, 10):
        measure_call(hidden, scales, k, 200, args.dtype)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            measure_call(hidden, scales, k, args.steps, args.dtype)
        print(f"\ntorch.profiler: one measure call, N = {hidden}, k = {k}, {len(scales)} gains, "
              f"{args.steps} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 100 only, 600 steps")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and numpy BLAS threads, the same for both sides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("threadpoolctl not installed: numpy keeps its BLAS threads")
    else:
        threadpool_limits(limits=args.threads)
    args.gains, args.steps = 32, (600 if args.quick else 1200)
    print(f"{torch.get_num_threads()} torch thread(s) and as many numpy BLAS threads, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; baseline float64 numpy per "
          f"point, measure {args.dtype} batched; seconds per point, {args.steps} steps\n")
    print(f"{'N':>4} {'k':>4} {'gains':>5} {'baseline':>9} {'measure':>9} {'speed-up':>7} "
          f"{'target':<12} {'step':>8} {'bound':>6} {'qr/step':>7} {'chol':>5} "
          f"{'|dl| rule':>9} {'<=0.01':<6} {'|dl| peer':>8} {'floor':>7}")
    for hidden in ((100,) if args.quick else (100, 256)):
        for k in (hidden, 10):
            row(hidden, k, args)
    if args.profile:
        profile(args)


if __name__ == "__main__":
    main()
