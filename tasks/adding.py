"""The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; in this form Le, Jaitly &
Hinton 2015 and Arjovsky et al. 2016).

Two input channels: channel 0 carries values uniform in [0, 1), channel 1 is a marker that is
1 at exactly two steps - one in the first half of the sequence, one in the second - and 0
elsewhere. At the last step the network must output the sum of the two marked values (MSE on
that step only). Always answering the mean, 1, gives MSE 1/6.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sweeper.errors import require
from sweeper.task import Task, TaskBatch

from ._checks import split_purpose

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class Adding(Task):
    """Sum the two marked values of a random sequence; no parameters (seq_len sets the span).
    """

    name = "adding"
    default_seq_len = 100

    @property
    def input_size(self) -> int:
        return 2

    @property
    def output_size(self) -> int:
        return 1

    def check_seq_len(self, seq_len):
        require(seq_len >= 2, f"task 'adding' needs seq_len >= 2 (one marker per half), "
                              f"got seq_len={seq_len}")

    def _draw(self, gen: torch.Generator, count: int, steps: int):
        import torch

        half = steps // 2
        values = torch.rand(count, steps, generator=gen, dtype=torch.float64)
        first = torch.randint(0, half, (count,), generator=gen)
        second = torch.randint(half, steps, (count,), generator=gen)
        rows = torch.arange(count)
        marker = torch.zeros(count, steps, dtype=torch.float64)
        marker[rows, first] = 1.0
        marker[rows, second] = 1.0
        inputs = torch.stack([values, marker], dim=-1)
        return inputs, values[rows, first] + values[rows, second]

    def inputs(self, seed, n_trajectories, steps):
        from sweeper.seeding import generator

        # Train-like sequences; a single step cannot hold both markers, so cut it from two.
        inputs, _ = self._draw(generator(seed, "task-inputs"), n_trajectories, max(steps, 2))
        return inputs[:, :steps].contiguous()

    def batch(self, seed, split, batch_size, seq_len):
        import torch

        from sweeper.seeding import generator

        self.check_seq_len(seq_len)
        inputs, total = self._draw(generator(seed, split_purpose(split)), batch_size, seq_len)
        targets = torch.zeros(batch_size, seq_len, 1, dtype=torch.float64)
        targets[:, -1, 0] = total
        mask = torch.zeros(batch_size, seq_len, dtype=torch.bool)
        mask[:, -1] = True
        return TaskBatch(inputs, targets, mask)
