"""Teacher-student: targets are the outputs of the same network at a reference scale, for any
cell - the generalisation of the paper's chaotic-LSTM loss (there: theta* at s = 1)."""

from __future__ import annotations

import dataclasses

from sweeper.errors import require
from sweeper.task import Task, TaskBatch

from ._checks import finite_number, positive_int, split_purpose


@dataclasses.dataclass(frozen=True)
class Teacher(Task):
    """Gaussian input; target = readout of the same base draw at ``reference`` recurrent scale
    (same input scale and readout), so the loss is 0 at s = reference. MSE after ``washout``.

    Args:
        reference: the teacher's recurrent scale (> 0).
        input_size, output_size: channels (>= 1). input_std: input standard deviation (>= 0).
        washout: first steps left out of the loss (>= 0).
    """

    name = "teacher"
    reference: float = 1.0
    input_size: int = 1
    output_size: int = 1
    input_std: float = 1.0
    washout: int = 0

    def __post_init__(self):
        finite_number(self.name, "reference", self.reference, 0.0, strict=True)
        positive_int(self.name, "input_size", self.input_size)
        positive_int(self.name, "output_size", self.output_size)
        finite_number(self.name, "input_std", self.input_std, 0.0)
        positive_int(self.name, "washout", self.washout, minimum=0)

    @property
    def reference_scale(self) -> float:
        return float(self.reference)

    def check_seq_len(self, seq_len):
        require(seq_len > self.washout, f"task 'teacher' needs seq_len > washout "
                                         f"({self.washout}), got seq_len={seq_len}")

    def inputs(self, seed, n_trajectories, steps):
        import torch

        from sweeper.seeding import generator

        gen = generator(seed, "task-inputs")
        return torch.randn(n_trajectories, steps, self.input_size, generator=gen,
                           dtype=torch.float64) * float(self.input_std)

    def batch(self, seed, split, batch_size, seq_len):
        import torch

        from sweeper.seeding import generator

        gen = generator(seed, split_purpose(split))
        inputs = torch.randn(batch_size, seq_len, self.input_size, generator=gen,
                             dtype=torch.float64) * float(self.input_std)
        mask = torch.zeros(batch_size, seq_len, dtype=torch.bool)
        mask[:, self.washout:] = True
        return TaskBatch(inputs, None, mask)
