"""i.i.d. Gaussian input: the classic driven random network (input_std = 0: autonomous)."""

from __future__ import annotations

import dataclasses

from sweeper.task import Task

from ._checks import finite_number, positive_int


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
        positive_int(self.name, "input_size", self.input_size)
        finite_number(self.name, "input_std", self.input_std, minimum=0)

    def inputs(self, seed, n_trajectories, steps):
        import torch

        from sweeper.seeding import generator

        gen = generator(seed, "task-inputs")
        u = torch.randn(n_trajectories, steps, self.input_size, generator=gen, dtype=torch.float64)
        return u * float(self.input_std)
