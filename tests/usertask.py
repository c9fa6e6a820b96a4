"""A user-defined task, loaded by dotted path in the tests ("usertask:Ramp")."""

from __future__ import annotations

import dataclasses

import torch

from sweeper.task import Task


@dataclasses.dataclass(frozen=True)
class Ramp(Task):
    """A deterministic ramp u_t = slope * t / T on one channel."""

    name = "ramp"
    slope: float = 1.0

    @property
    def input_size(self) -> int:
        return 1

    def inputs(self, seed, n_trajectories, steps):
        ramp = torch.arange(steps, dtype=torch.float64) * self.slope / steps
        return ramp.reshape(1, steps, 1).expand(n_trajectories, steps, 1).clone()
