"""Timing shared by the benchmarks: medians after a warm-up (these machines are noisy)."""

from __future__ import annotations

import statistics
import time

import torch


def sync(device: torch.device | str = "cpu") -> None:
    """Wait for queued GPU work so that wall time covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: torch.device | str = "cpu", *,
                warm_up: bool = True) -> float:
    """Median wall time of fn() over ``repeats`` runs, after one warm-up run (``warm_up=False``
    skips it, for calls too slow to run twice or already warmed up by the caller)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
