"""Cells brought by users and the modern built-in cells, through the public ``measure()``.

Rows:

  generic      rnn_tanh, gru, lstm at H = 64 and 256: measure(cell) against
               measure(autodiff_version(cell)), the same cell with its hand-written tangent
               paths taken away (a plug-in's tangents: autodiff of ``step``).
               K = 32 scalings linspace(0.5, 2.5), seq_len 500 (+ burn_in 100), one seed,
               float32, metrics [lyapunov] and [lipschitz, lyapunov]. Target: generic <= 3 x
               hand-written at H = 256 (issue 26).
  modern       lru, cornn, lipschitz_rnn, antisymmetric_rnn at H = 256, K = 128 scalings,
               seq_len 1000, zero input, metrics [lyapunov]: GFLOP/s as a share of sgemm
               (torch.mm 2048 x 2048 float32), with rnn_tanh as the reference row.
               Minimal FLOPs: K B S 2 R C (1 + k), R x C the shape of weight_hh (one product
               of state and tangent per step; elementwise work ignored).

Every figure is the median of ``--repeats`` timed calls after one warm-up call.

Run:
  .venv/bin/python benchmarks/bench_cells.py [--quick] [--device cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from _timing import median_time

from sweeper.cells import CELLS, autodiff_version
from sweeper.measure import measure

ZERO_INPUT = {"input_std": 0.0}


def weight_shape(name: str, hidden: int) -> tuple[int, int]:
    from sweeper.seeding import generator

    w = CELLS[name].init_weights(hidden, 1, generator(0, "weights"))["weight_hh"]
    return tuple(w.shape)


def generic_rows(args) -> None:
    print(f"{'cell':<9} {'H':>4} {'metrics':<20} {'hand s':>8} {'generic s':>9} {'ratio':>6}  "
          "target")
    sizes = (64,) if args.quick else (64, 256)
    for hidden in sizes:
        for name in ("rnn_tanh", "gru", "lstm"):
            for metrics in (["lyapunov"], ["lipschitz", "lyapunov"]):
                times = []
                for cell in (CELLS[name], autodiff_version(CELLS[name])):
                    def call(cell=cell, metrics=metrics, hidden=hidden):
                        return measure(cell, hidden, recurrent_scale=np.linspace(0.5, 2.5, 32),
                                       seq_len=args.seq_len, metrics=metrics,
                                       device=args.device)
                    times.append(median_time(call, args.repeats, args.device))
                target = "<= 3x" if hidden >= 256 else ""
                print(f"{name:<9} {hidden:>4} {','.join(metrics):<20} {times[0]:>8.3f} "
                      f"{times[1]:>9.3f} {times[1] / times[0]:>6.2f}  {target}", flush=True)


def modern_rows(args, peak: float) -> None:
    hidden, points, steps = (64, 32, 300) if args.quick else (256, 128, 1000)
    print(f"\n{'cell':<18} {'H':>4} {'K':>4} {'weight_hh':>10} {'s':>8} {'GFLOP/s':>8} "
          f"{'%sgemm':>7}")
    for name in ("rnn_tanh", "lru", "cornn", "lipschitz_rnn", "antisymmetric_rnn"):
        def call(name=name):
            return measure(name, hidden, recurrent_scale=np.linspace(0.5, 2.5, points),
                           seq_len=steps, task_params=ZERO_INPUT, metrics=["lyapunov"],
                           device=args.device)
        seconds = median_time(call, args.repeats, args.device)
        rows, cols = weight_shape(name, hidden)
        flops = points * (steps + 100) * 2 * rows * cols * 2  # state + 1 tangent
        rate = flops / seconds / 1e9
        print(f"{name:<18} {hidden:>4} {points:>4} {f'{rows}x{cols}':>10} {seconds:>8.3f} "
              f"{rate:>8.1f} {100 * rate / peak:>6.1f}%", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="H = 64 only, fewer steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=500)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    big = torch.randn(2048, 2048, device=args.device)
    peak = 2 * 2048**3 / median_time(lambda: torch.mm(big, big), 5, args.device) / 1e9
    print(f"device {args.device}, {torch.get_num_threads()} threads, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, sgemm {peak:.0f} GFLOP/s\n")
    generic_rows(args)
    modern_rows(args, peak)


if __name__ == "__main__":
    main()
