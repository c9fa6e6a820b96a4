"""Copy memory (Hochreiter & Schmidhuber 1997; in this form Arjovsky, Shah & Bengio 2016,
"Unitary evolution recurrent neural networks").

A sequence of T = seq_len steps: ``length`` data symbols drawn uniformly from ``n_symbols``,
then T - 2 * length blanks of which the last is replaced by a "go" marker, then ``length``
more blanks. During those last ``length`` steps the network must output the data symbols in
order. Inputs are one-hot over n_symbols + 2 (data..., blank = n_symbols, go = n_symbols + 1);
targets are classes over n_symbols + 1 (blank = n_symbols, which is the target at every
unscored step). Only the recall steps are scored, so guessing gives 1 / n_symbols accuracy.
seq_len sets the delay: Arjovsky et al.'s "T" is seq_len - 2 * length.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sweeper.errors import require
from sweeper.task import Task, TaskBatch

from ._checks import positive_int, split_purpose

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class CopyMemory(Task):
    """Reproduce ``length`` symbols after a delay, cued by a go marker.

    Args:
        n_symbols: number of data symbols (>= 2; default 8).
        length: symbols to remember (>= 1; default 5). The go marker is at step
            seq_len - length - 1, so seq_len >= 2 * length + 1 (default 30: delay 20).
    """

    name = "copy_memory"
    loss_kind = "cross_entropy"
    default_seq_len = 30
    n_symbols: int = 8
    length: int = 5

    def __post_init__(self):
        positive_int(self.name, "n_symbols", self.n_symbols, minimum=2)
        positive_int(self.name, "length", self.length)

    @property
    def input_size(self) -> int:
        return self.n_symbols + 2

    @property
    def output_size(self) -> int:
        return self.n_symbols + 1

    def chance(self) -> float:
        return 1.0 / self.n_symbols

    def _min_len(self) -> int:
        return 2 * self.length + 1

    def check_seq_len(self, seq_len):
        require(seq_len >= self._min_len(),
                f"task 'copy_memory' needs seq_len >= 2 * length + 1 ({self._min_len()}), "
                f"got seq_len={seq_len}")

    def _draw(self, gen: torch.Generator, count: int, steps: int):
        import torch
        import torch.nn.functional as F

        data = torch.randint(0, self.n_symbols, (count, self.length), generator=gen)
        symbols = torch.full((count, steps), self.n_symbols, dtype=torch.int64)
        symbols[:, :self.length] = data
        symbols[:, steps - self.length - 1] = self.n_symbols + 1
        inputs = F.one_hot(symbols, self.input_size).to(torch.float64)
        return inputs, data

    def inputs(self, seed, n_trajectories, steps):
        from sweeper.seeding import generator

        # Train-like sequences of the requested length (cut from a minimal one if shorter).
        inputs, _ = self._draw(generator(seed, "task-inputs"), n_trajectories,
                               max(steps, self._min_len()))
        return inputs[:, :steps].contiguous()

    def batch(self, seed, split, batch_size, seq_len):
        import torch

        from sweeper.seeding import generator

        self.check_seq_len(seq_len)
        inputs, data = self._draw(generator(seed, split_purpose(split)), batch_size, seq_len)
        targets = torch.full((batch_size, seq_len), self.n_symbols, dtype=torch.int64)
        targets[:, -self.length:] = data
        mask = torch.zeros(batch_size, seq_len, dtype=torch.bool)
        mask[:, -self.length:] = True
        return TaskBatch(inputs, targets, mask)
