"""Throughput of the memory family (issue 13): measure(..., metrics=("memory",)) against sgemm.

What is timed: the whole public call ``measure("rnn_tanh", H, metrics=("memory",),
recurrent_scale=linspace(0.5, 2, 128), seq_len=1000, device="cpu")``, float32, once with the
current sweeper.memory and once with the baseline below (memory_capacity and the attractor
loops as they were before issue 13, patched into the family), interleaved, medians over
repeats. The trajectory pass (memory horizon) is part of both calls and the same in both.

Minimal FLOPs (K points, D = H state size, F = gates H, T = washout + train + test rollout
steps, K_d = 2 D delays, M_a = attractor_inits, S = attractor_steps, W = attractor_window,
N = burn_in + seq_len steps of the pass):

  rollout     K T 2 F H
  ridge       K [2 train (D+1)^2 + 2 train (D+1) K_d + 2 test (D+1) K_d + (D+1)^3]
  attractors  K M_a [S 2 F H + W 2 (2 F H)]          (state, then state + tangent)
  horizon     K N 2 (2 F H)                          (the pass: state + tangent)

GFLOP/s = minimal GFLOP / wall time; "% sgemm" divides by torch.mm on 2048 x 2048 float32,
measured in the same run between the timed calls (median).

Run:  .venv/bin/python benchmarks/bench_memory.py [--repeats R] [--threads N] [--sizes 256 64]

On a small shared CPU box other processes stealing a core make multi-threaded ATen ops wait
for a descheduled worker; the load average is printed, and ``--threads 1`` is steadier.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
from _timing import median_time

import sweeper.families.memory as family
from sweeper.cells._base import Cell
from sweeper.dynamics import DynamicsConfig, drive_function, input_projection, rollout
from sweeper.errors import require
from sweeper.lyapunov import renormalise_
from sweeper.measure import measure
from sweeper.memory import Attractors, MemoryConfig, _settle
from sweeper.params import CellParams
from sweeper.seeding import generator

Tensor = torch.Tensor
POINTS, SEQ_LEN = 128, 1000


# --- baseline: sweeper.memory before issue 13 --------------------------------------------


def old_memory_capacity(cell: Cell, params: CellParams, input_size: int, state_size: int,
                    seeds: list[int], config: MemoryConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Baseline (before issue 13), kept verbatim but for this docstring."""
    delays = config.delays(state_size)
    washout = config.washout_steps(state_size)
    require(washout >= delays,
            f"MemoryConfig requires washout >= max_delay so lags never wrap; got washout="
            f"{washout}, max_delay={delays}")
    groups, members = params.recurrent_scale.shape
    steps = washout + config.train + config.test
    u = torch.stack([torch.rand(steps, generator=generator(s, "memory-inputs"),
                                dtype=torch.float64) * 2 - 1 for s in seeds])  # (G, T)
    per_point = (config.train + config.test) * (state_size + 1) * 8
    chunk = max(1, config.chunk_bytes // per_point)
    # Chunk along the points of a base draw when there are several, else along the draws;
    # every output has groups on axis 0 and members on axis 1.
    parts = []
    if members > 1:
        width, axis = max(1, chunk // groups), 1
        for start in range(0, members, width):
            sub = params.subset(members=slice(start, start + width))
            parts.append(_old_capacity(cell, sub, u, input_size, state_size, config, delays))
    else:
        axis = 0
        for start in range(0, groups, chunk):
            sub = params.subset(groups=slice(start, start + chunk))
            parts.append(_old_capacity(cell, sub, u[start:start + chunk], input_size, state_size,
                                   config, delays))
    capacity, curve, finite = (torch.cat(tensors, dim=axis) for tensors in zip(*parts, strict=True))
    return capacity, curve, finite


def _old_capacity(cell: Cell, params: CellParams, u: Tensor, input_size: int, state_size: int,
              config: MemoryConfig, delays: int) -> tuple[Tensor, Tensor, Tensor]:
    """Baseline (before issue 13), kept verbatim but for this docstring."""
    washout = config.washout_steps(state_size)
    groups, members = params.recurrent_scale.shape
    steps = u.shape[-1]
    inputs = torch.zeros(groups, 1, steps, input_size, dtype=torch.float64)
    inputs[..., 0] = u[:, None]
    device, dtype = params.device, params.dtype
    x0 = torch.zeros(groups, members, 1, state_size, dtype=dtype, device=device)
    states = rollout(cell, params, inputs.to(device), x0, keep_from=washout)[:, :, 0]
    finite = torch.isfinite(states).all(-1).all(-1)
    states = torch.where(finite[..., None, None], states, torch.zeros_like(states)).double()
    ones = torch.ones(*states.shape[:-1], 1, dtype=torch.float64, device=device)
    design = torch.cat([states, ones], dim=-1)  # (G, M, T', D + 1)

    times = torch.arange(washout, steps)
    lags = times[:, None] - torch.arange(1, delays + 1)[None, :]
    targets = u[:, lags].to(device)[:, None]  # (G, 1, T', K)

    fit, held = slice(0, config.train), slice(config.train, None)
    x_fit, y_fit = design[..., fit, :], targets[..., fit, :]
    gram = x_fit.mT @ x_fit
    size = gram.shape[-1]
    scale = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1).clamp(min=1e-300)
    gram = gram + config.ridge * scale[..., None, None] * torch.eye(size, dtype=gram.dtype,
                                                                    device=device)
    weights = torch.linalg.solve(gram, x_fit.mT @ y_fit)
    pred = design[..., held, :] @ weights
    y = targets[..., held, :].expand_as(pred)
    pred_c = pred - pred.mean(-2, keepdim=True)
    y_c = y - y.mean(-2, keepdim=True)
    cov = (pred_c * y_c).sum(-2)
    var = (pred_c**2).sum(-2) * (y_c**2).sum(-2)
    curve = torch.where(var > 0, cov**2 / torch.where(var > 0, var, torch.ones_like(var)),
                        torch.zeros_like(var))
    nan = torch.full_like(curve, math.nan)
    curve = torch.where(finite[..., None], curve, nan)
    return curve.sum(-1), curve, finite


def old_attractor_count(cell: Cell, params: CellParams, constant_input: Tensor, state_size: int,
                    seeds: list[int], config: MemoryConfig) -> Attractors:
    """Baseline (before issue 13), kept verbatim but for this docstring."""
    groups, members = params.recurrent_scale.shape
    inits = config.attractor_inits
    x0 = torch.stack([torch.rand(inits, state_size, generator=generator(s, "attractor-states"),
                                 dtype=torch.float64) * 2 - 1 for s in seeds])
    x0 = x0[:, None].expand(groups, members, inits, state_size).to(params.device, params.dtype)
    return _old_attractors(cell, params, constant_input, x0, config)


def _old_attractors(cell: Cell, params: CellParams, constant_input: Tensor, x0: Tensor,
               config: MemoryConfig) -> Attractors:
    """Baseline (before issue 13), kept verbatim but for this docstring."""
    groups, members, inits, size = x0.shape
    window, tol = config.attractor_window, config.attractor_tol
    device = params.device
    inputs = constant_input.reshape(1, 1, 1, -1).expand(1, inits, 1, -1).to(device)
    drive = drive_function(params, input_projection(params, inputs))(0)
    x = x0.to(device, params.dtype)
    for _ in range(config.attractor_steps):
        x, _ = cell.step(params, x, drive)
    end = x.double()
    end_sq = (end**2).sum(-1)
    finite = torch.isfinite(end).all(-1)
    # A fixed, generic start direction for the tangent (the exponent forgets it).
    v = torch.linspace(1.0, 2.0, size, dtype=params.dtype, device=device)
    v = (v / v.norm()).expand(groups, members, inits, 1, size).clone()
    growth = torch.zeros(groups, members, inits, dtype=torch.float64, device=device)
    away = torch.empty(window, groups, members, inits, dtype=torch.float64, device=device)
    linked = torch.zeros(groups, members, inits, inits, dtype=torch.bool, device=device)
    for w in range(window):
        x, _, v = cell.step_tangent(params, x, drive, v)
        growth += renormalise_(v)[..., 0].double()
        state = x.double()
        finite &= torch.isfinite(state).all(-1)
        away[w] = (state - end).abs().amax(-1)
        # max-abs <= tol implies squared distance <= D tol^2: a cheap screen by one product,
        # so the exact check runs only for the few pairs that pass it and are not yet linked.
        state_sq = (state**2).sum(-1)
        square = state_sq[..., :, None] + end_sq[..., None, :] - 2 * state @ end.mT
        slack = 1e-9 * (state_sq[..., :, None] + end_sq[..., None, :])
        screen = (square <= size * tol**2 + slack) & ~linked
        rows = screen.any(-1).nonzero(as_tuple=True)
        if rows[0].numel():
            near = (state[rows][:, None, :] - end[rows[:2]]).abs().amax(-1) <= tol
            linked[rows] |= near
    return _settle(away, linked, growth / window, end, finite, config)



def minimal_gflop(hidden: int, points: int = POINTS, seq_len: int = SEQ_LEN) -> float:
    """The formula of the module docstring for rnn_tanh (gates = 1, D = H), default protocols."""
    memory, dynamics = MemoryConfig(), DynamicsConfig()
    d, f = hidden, hidden
    delays, washout = memory.delays(d), memory.washout_steps(d)
    step = 2 * f * hidden
    rollout_steps = (washout + memory.train + memory.test) * step
    ridge = (2 * memory.train * (d + 1) ** 2 + 2 * memory.train * (d + 1) * delays
             + 2 * memory.test * (d + 1) * delays + (d + 1) ** 3)
    attract = memory.attractor_inits * (memory.attractor_steps * step
                                        + memory.attractor_window * 2 * step)
    horizon = (dynamics.burn_in + seq_len) * 2 * step
    return points * (rollout_steps + ridge + attract + horizon) / 1e9


def sgemm_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / median_time(lambda: torch.mm(a, b), 5) / 1e9


def run(hidden: int, baseline: bool):
    current = (family.memory_capacity, family.attractor_count)
    if baseline:
        family.memory_capacity, family.attractor_count = old_memory_capacity, old_attractor_count
    try:
        start = time.perf_counter()
        frame = measure("rnn_tanh", hidden, metrics=("memory",),
                        recurrent_scale=list(np.linspace(0.5, 2.0, POINTS)), seq_len=SEQ_LEN,
                        device="cpu")
        return time.perf_counter() - start, frame
    finally:
        family.memory_capacity, family.attractor_count = current


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 64])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for hidden in args.sizes:
        gflop = minimal_gflop(hidden)
        times: dict[str, list[float]] = {"old": [], "new": []}
        peaks, changes, same = [], [], True
        for _ in range(args.repeats):
            peaks.append(sgemm_gflops())
            old_s, old = run(hidden, baseline=True)
            peaks.append(sgemm_gflops())
            new_s, new = run(hidden, baseline=False)
            times["old"].append(old_s)
            times["new"].append(new_s)
            changes.append(np.nanmax(np.abs(np.stack(new.memory_curve)
                                            - np.stack(old.memory_curve))))
            for column in ("attractor_count", "orbit_period", "asymptotic_states", "status"):
                same &= bool((new[column].astype(str) == old[column].astype(str)).all())
        peaks.append(sgemm_gflops())
        peak = statistics.median(peaks)
        print(f"H={hidden}, {POINTS} points, seq_len={SEQ_LEN}: minimal {gflop:.1f} GFLOP; "
              f"sgemm {peak:.1f} GFLOP/s (median of {len(peaks)}); "
              f"load {os.getloadavg()[0]:.1f}")
        for name in ("old", "new"):
            wall = statistics.median(times[name])
            rate = gflop / wall
            runs = ", ".join(f"{t:.1f}" for t in times[name])
            print(f"  {name}: {wall:8.2f} s  {rate:7.2f} GFLOP/s  {100 * rate / peak:5.1f} % "
                  f"sgemm  (runs {runs})")
        ratio = statistics.median(times["old"]) / statistics.median(times["new"])
        print(f"  speed-up {ratio:.2f}x; max |r_k^2 new - old| {max(changes):.1e}; "
              f"attractor columns and status identical: {same}")


if __name__ == "__main__":
    sys.exit(main())
