"""Same code path on CPU and CUDA: compare ``measure`` on both, then time a larger grid.

Run on a machine with a GPU:  python benchmarks/check_device.py [--device cuda]

1. For every cell, contracting points in float64 (where rounding differences between devices
   stay at rounding level) must agree to rtol 1e-6 in every metric column; the script prints
   the largest relative difference per cell and exits 1 if any exceeds it.
2. Times measure() for rnn_tanh, H = 256, 256 scalings x 2 seeds, float32, on both devices.
3. Runs every workload of ``bench_workloads.py`` on the device (its CUDA-only H = 512,
   1,024-scaling row included), with % of the card's own sgemm.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _timing import median_time

from sweeper import CELLS, METRIC_COLUMNS, DynamicsConfig, MemoryConfig, measure

SMALL_MEMORY = MemoryConfig(washout=40, train=400, test=200, max_delay=40, attractor_inits=6,
                            attractor_steps=200)
NUMERIC = [c for cols in METRIC_COLUMNS.values() for c in cols
           if c not in ("memory_curve", "memory_horizon_capped")]


def compare(device: str) -> bool:
    ok = True
    grid = {"recurrent_scale": [0.3, 0.8], "input_scale": [0.5, 1.0], "seed": [0, 1],
            "seq_len": 80, "dtype": "float64", "memory": SMALL_MEMORY,
            "dynamics": DynamicsConfig(burn_in=20, lipschitz_samples=8)}
    for name in CELLS:
        cpu = measure(name, 16, device="cpu", **grid)
        dev = measure(name, 16, device=device, **grid)
        a, b = cpu[NUMERIC].to_numpy(float), dev[NUMERIC].to_numpy(float)
        rel = np.nanmax(np.abs(a - b) / np.maximum(np.abs(a), 1e-12))
        same_status = (cpu.status == dev.status).all()
        good = rel <= 1e-6 and same_status and np.array_equal(np.isnan(a), np.isnan(b))
        ok &= bool(good)
        print(f"  {name:12s} max rel diff {rel:.2e}  status equal {same_status}  "
              f"{'OK' if good else 'MISMATCH'}")
    return ok


def timing(device: str, repeats: int = 3) -> float:
    scales = np.linspace(0.25, 3.0, 256).tolist()

    def run():
        measure("rnn_tanh", 256, recurrent_scale=scales, seed=[0, 1], seq_len=200,
                device=device, metrics=("lipschitz", "lyapunov", "memory"))
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return median_time(run, repeats, device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--skip-cpu-timing", action="store_true")
    parser.add_argument("--skip-workloads", action="store_true")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here; nothing to compare", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, device {args.device}: "
          f"{torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}")
    print("1. CPU vs device, float64, contracting points:")
    ok = compare(args.device)
    print("2. measure(rnn_tanh, H=256, 512 points, all metrics, float32), median of 3:")
    t_dev = timing(args.device)
    print(f"  {args.device}: {t_dev:.2f} s  ({512 / t_dev:.0f} points/s)")
    if not args.skip_cpu_timing:
        t_cpu = timing("cpu", repeats=1)
        print(f"  cpu: {t_cpu:.2f} s  ({512 / t_cpu:.0f} points/s)   ratio cpu/{args.device} = "
              f"{t_cpu / t_dev:.1f}x")
    if not args.skip_workloads:
        print("3. every workload on the device (benchmarks/bench_workloads.py --quick):",
              flush=True)
        script = Path(__file__).with_name("bench_workloads.py")
        done = subprocess.run([sys.executable, str(script), "--device", args.device, "--quick"],
                              check=False)
        ok &= done.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
