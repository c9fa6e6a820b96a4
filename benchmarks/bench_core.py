"""Throughput of the batched dynamics core (Benettin's loop) against sgemm and a naive loop.

What is measured, for the ``rnn_tanh`` cell, one seed, K = 256 points
(recurrent_scale = linspace(0.5, 3, K), input_scale = 1), float32, T = 200 steps, H in {64, 256}:

  (a) the batched path: exactly the state + tangent part of ``run_dynamics``'s inner loop,
      ``z, _ = cell.step_stacked(params, z, drive(t)); renormalise_(z[..., 1:, :])`` on the
      stacked z = [x; v], one (2K x H) @ (H x H) product per step for state and tangent. The full
      ``run_dynamics`` call (burn_in=0, no Lipschitz samples) is timed too, for reference.
  (b) the machine's sgemm: ``torch.mm`` on 2048 x 2048 (peak) and on the exact per-step shape
      (2K x H) @ (H x H).
  (c) a naive per-point loop: for each point, copy s*W into a ``torch.nn.RNN`` (batch 1), run
      it over the T steps, then propagate the tangent with ``torch.mv`` in a Python loop.
      When the whole sweep would be slow it times a subset of points and extrapolates.

FLOPs are counted as 4 H^2 per point per step (2 H^2 for the state matvec, 2 H^2 for the
tangent one); elementwise work is ignored. Times are medians over repeats after a warm-up.

Run:  .venv/bin/python benchmarks/bench_core.py [--quick] [--device cuda] [--threads N]

On a small shared CPU box, other processes stealing a core make every multi-threaded ATen op
wait for its descheduled worker (milliseconds each); the load average is printed per H so such
runs can be recognised, and ``--threads 1`` gives stable numbers there.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _timing import median_time, sync

from sweeper import CELLS
from sweeper.dynamics import DynamicsConfig, drive_function, input_projection, run_dynamics
from sweeper.lyapunov import renormalise, renormalise_
from sweeper.measure import build_params

K, T, SIZES = 256, 200, (64, 256)
NAIVE_BUDGET_S = 2.0  # time one naive repeat may take before we switch to a subset of points


def setup(hidden: int, device: torch.device):
    cell = CELLS["rnn_tanh"]
    rs = torch.linspace(0.5, 3.0, K)[None]
    params = build_params(cell, hidden, 1, [0], rs, torch.ones(1, K), torch.float32, device)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(1, 1, T, 1, generator=gen).to(device)  # (G, B, T, I)
    x0 = (2 * torch.rand(1, K, 1, hidden, generator=gen) - 1).to(device)  # (G, M, B, D)
    v0 = torch.randn(1, 1, 1, 1, hidden, generator=gen).to(device).expand(1, K, 1, 1, hidden)
    v0, _ = renormalise(v0)  # (G, M, B, k=1, D), as run_dynamics starts
    return cell, params, inputs, x0, v0


def batched_loop(cell, params, inputs, x0, v0):
    drive = drive_function(params, input_projection(params, inputs))
    z = torch.cat([x0[..., None, :], v0], dim=-2)  # [x; v], as run_dynamics keeps them
    for t in range(T):
        z, _ = cell.step_stacked(params, z, drive(t))
        renormalise_(z[..., 1:, :])
    return z[..., 1:, :]


def naive_loop(params, inputs, x0, v0, points):
    """Per point: a torch.nn.RNN for the state, a Python loop of torch.mv for the tangent."""
    hidden = x0.shape[-1]
    weight, weight_ih = params.weights["weight_hh"][0], params.weights["weight_ih"][0]
    rnn = torch.nn.RNN(1, hidden, nonlinearity="tanh", bias=False).to(x0.device)
    seq = inputs[0, 0].reshape(T, 1, 1)  # (T, batch 1, I)
    finals = []
    for k in points:
        scaled = params.recurrent_scale[0, k] * weight
        rnn.weight_hh_l0.copy_(scaled)
        rnn.weight_ih_l0.copy_(params.input_scale[0, k] * weight_ih)
        out, _ = rnn(seq, x0[0, k].reshape(1, 1, hidden))
        v = v0[0, k, 0, 0]
        for t in range(T):
            v = (1 - out[t, 0] ** 2) * torch.mv(scaled, v)
            v = v / v.norm()
        finals.append(v)
    return finals


def bench(hidden: int, repeats: int, device: torch.device) -> None:
    cell, params, inputs, x0, v0 = setup(hidden, device)
    flops = 4 * hidden**2 * K * T
    gf = lambda n_flops, seconds: n_flops / seconds / 1e9  # noqa: E731

    t_a = median_time(lambda: batched_loop(cell, params, inputs, x0, v0), repeats, device)
    config = DynamicsConfig(burn_in=0, lipschitz_samples=0)
    t_full = median_time(lambda: run_dynamics(cell, params, inputs, x0, T, config, [0]),
                         repeats, device)

    big = torch.randn(2048, 2048, device=device)
    t_peak = median_time(lambda: torch.mm(big, big), repeats, device)
    lhs = torch.randn(2 * K, hidden, device=device)
    rhs = torch.randn(hidden, hidden, device=device)

    def same_shape():
        for _ in range(T):
            torch.mm(lhs, rhs)
    t_same = median_time(same_shape, repeats, device)

    # (c): time one point first, then decide how many points one repeat can afford.
    sync(device)
    start = time.perf_counter()
    naive_loop(params, inputs, x0, v0, [0])
    sync(device)
    per_point = time.perf_counter() - start
    n_naive = K if per_point * K <= NAIVE_BUDGET_S else max(4, int(NAIVE_BUDGET_S / per_point))
    points = torch.linspace(0, K - 1, n_naive).round().long().tolist()
    t_naive = median_time(lambda: naive_loop(params, inputs, x0, v0, points), repeats, device)
    t_c = t_naive * K / n_naive

    # Sanity: both paths end with the same tangent direction at the contracting point s=0.5.
    v_a = batched_loop(cell, params, inputs, x0, v0)[0, 0, 0, 0]
    v_c = naive_loop(params, inputs, x0, v0, [0])[0]
    diff = (v_a - v_c).abs().max().item()

    g_a, g_full, g_c = gf(flops, t_a), gf(flops, t_full), gf(flops, t_c)
    g_peak, g_same = gf(2 * 2048**3, t_peak), gf(2 * 2 * K * hidden**2 * T, t_same)
    note = "" if n_naive == K else f" (extrapolated from {n_naive} points)"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nH = {hidden}   (K = {K}, T = {T}, {flops / 1e9:.2f} GFLOP per sweep; "
          f"load average now {load})")
    print(f"  (a) batched step_stacked+renormalise_ {t_a * 1e3:9.1f} ms  {g_a:7.2f} GFLOP/s")
    print(f"      full run_dynamics (reference)    {t_full * 1e3:9.1f} ms  {g_full:7.2f} GFLOP/s")
    print(f"  (b) sgemm peak 2048x2048x2048        {t_peak * 1e3:9.1f} ms  {g_peak:7.2f} GFLOP/s")
    print(f"      sgemm same shape ({2 * K}x{hidden})@({hidden}x{hidden}) x{T} "
          f"{t_same * 1e3:6.1f} ms  {g_same:7.2f} GFLOP/s")
    print(f"  (c) naive per-point RNN + mv loop    {t_c * 1e3:9.1f} ms  {g_c:7.2f} GFLOP/s{note}")
    print(f"  ratios: (a)/peak sgemm = {g_a / g_peak:6.1%}   (a)/same-shape sgemm = "
          f"{g_a / g_same:6.1%}   (a)/(c) speedup = {g_a / g_c:6.1f}x")
    print(f"          full run_dynamics/peak sgemm = {g_full / g_peak:6.1%}   "
          f"full/(c) speedup = {g_full / g_c:6.1f}x")
    print(f"  check: max |v_a - v_c| at s=0.5 after {T} steps = {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = 3 if args.quick else 7
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, "
          f"median of {repeats} repeats after 1 warm-up")
    with torch.no_grad():
        for hidden in SIZES:
            bench(hidden, repeats, device)


if __name__ == "__main__":
    main()
