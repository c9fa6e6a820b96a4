"""i.i.d. Gaussian input: the classic driven random network (input_std = 0: autonomous)."""

from __future__ import annotations

import dataclasses
import math

import torch

from sweeper.errors import SweeperInputError
from sweeper.seeding import generator

from ._base import Task


@dataclasses.dataclass(frozen=True)
class Noise(Task):
    """u_t ~ N(0, input_std^2 I), independent over time, channels and trajectories.

    Args:
        input_size: number of input channels (>= 1).
        input_std: standard deviation of each channel (>= 0; 0 gives zero input).
    """

    name = "noise"
    input_size: int = 1
    input_std: float = 1.0

    def __post_init__(self):
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) \
                or self.input_size < 1:
            raise SweeperInputError(
                "noise task requires a positive integer input_size, "
                f"got input_size={self.input_size!r}")
        if isinstance(self.input_std, bool) or not isinstance(self.input_std, (int, float)) \
                or not math.isfinite(self.input_std) or self.input_std < 0:
            raise SweeperInputError(
                f"noise task requires a finite input_std >= 0, got input_std={self.input_std!r}")

    def inputs(self, seed, n_trajectories, steps):
        gen = generator(seed, "task-inputs")
        u = torch.randn(n_trajectories, steps, self.input_size, generator=gen, dtype=torch.float64)
        return u * float(self.input_std)
