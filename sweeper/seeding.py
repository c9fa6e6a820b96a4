"""Independent, reproducible random streams: one per (seed, purpose)."""

from __future__ import annotations

import numpy as np
import torch

# Purposes are listed, not hashed, so streams never change between Python versions.
PURPOSES = ("weights", "task-inputs", "initial-state", "memory-inputs", "attractor-states",
            "tangents", "lanczos", "task-train", "task-val", "readout", "directions",
            "training", "check-cell")


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for ``purpose`` under ``seed``; draws are identical in every process.

    Random numbers are always drawn on the CPU in float64 and moved afterwards, so a point
    gives the same numbers on CPU and CUDA.
    """
    index = PURPOSES.index(purpose)
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, index]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
