"""Sine generation (the paper's second experiment): a constant input omega, the target
sin(omega * t) - the network must integrate its input and generate the oscillation."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from sweeper.errors import SweeperInputError
from sweeper.task import Task, TaskBatch

from ._checks import finite_number, split_purpose

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class SineGenerator(Task):
    """u_t = omega (one constant per sequence, uniform in [omega_min, omega_max]),
    y_t = sin(omega * (t + 1)), MSE over every step.

    Args:
        omega_min, omega_max: frequency range in rad/step (default pi/16 .. pi/8, the paper's).
    """

    name = "sine_generator"
    default_seq_len = 400
    omega_min: float = math.pi / 16
    omega_max: float = math.pi / 8

    def __post_init__(self):
        finite_number(self.name, "omega_min", self.omega_min, 0.0, strict=True)
        finite_number(self.name, "omega_max", self.omega_max, 0.0, strict=True)
        if self.omega_max < self.omega_min:
            raise SweeperInputError(f"task 'sine_generator' requires omega_min <= omega_max, "
                                    f"got {self.omega_min} > {self.omega_max}")

    @property
    def input_size(self) -> int:
        return 1

    @property
    def output_size(self) -> int:
        return 1

    def _omegas(self, seed: int, purpose: str, count: int) -> torch.Tensor:
        import torch

        from sweeper.seeding import generator

        u = torch.rand(count, generator=generator(seed, purpose), dtype=torch.float64)
        return self.omega_min + (self.omega_max - self.omega_min) * u

    def inputs(self, seed, n_trajectories, steps):
        omega = self._omegas(seed, "task-inputs", n_trajectories)
        return omega[:, None, None].expand(n_trajectories, steps, 1).clone()

    def batch(self, seed, split, batch_size, seq_len):
        import torch

        omega = self._omegas(seed, split_purpose(split), batch_size)
        t = torch.arange(1, seq_len + 1, dtype=torch.float64)
        inputs = omega[:, None, None].expand(batch_size, seq_len, 1).clone()
        targets = torch.sin(omega[:, None] * t)[..., None]
        return TaskBatch(inputs, targets, torch.ones(batch_size, seq_len, dtype=torch.bool))
