"""Temporal order (Hochreiter & Schmidhuber 1997, experiment 6a; used as a long-memory
benchmark by Ribeiro et al. 2020, "Beyond exploding and vanishing gradients").

Every step shows one of six symbols, one-hot: the relevant X (index 0) and Y (1), and the
distractors a, b, c, d (2-5). A sequence is distractors except for one relevant symbol at a
step drawn uniformly in [t1_lo, t1_hi) and one in [t2_lo, t2_hi) (0-based steps). At the last
step the network must name their order: XX, XY, YX, YY -> classes 0, 1, 2, 3 (2 * first +
second). The only information is far back in the sequence, so the task probes memory.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sweeper.errors import SweeperInputError, require
from sweeper.task import Task, TaskBatch

from ._checks import positive_int, split_purpose

if TYPE_CHECKING:
    import torch

N_SYMBOLS = 6  # X, Y, a, b, c, d


@dataclasses.dataclass(frozen=True)
class TemporalOrder(Task):
    """Classify the order of two relevant symbols hidden among distractors.

    Args:
        t1_lo, t1_hi: window [t1_lo, t1_hi) of the first relevant symbol (default 9, 19).
        t2_lo, t2_hi: window [t2_lo, t2_hi) of the second (default 39, 49); t1_hi <= t2_lo.
    """

    name = "temporal_order"
    loss_kind = "cross_entropy"
    default_seq_len = 200
    t1_lo: int = 9
    t1_hi: int = 19
    t2_lo: int = 39
    t2_hi: int = 49

    def __post_init__(self):
        for field in ("t1_lo", "t1_hi", "t2_lo", "t2_hi"):
            positive_int(self.name, field, getattr(self, field), minimum=0)
        for lo, hi in (("t1_lo", "t1_hi"), ("t2_lo", "t2_hi")):
            if getattr(self, lo) >= getattr(self, hi):
                raise SweeperInputError(
                    f"task 'temporal_order' requires {lo} < {hi}, "
                    f"got {lo}={getattr(self, lo)}, {hi}={getattr(self, hi)}")
        # Overlapping windows could put both symbols on one step (or swap their order).
        if self.t1_hi > self.t2_lo:
            raise SweeperInputError(f"task 'temporal_order' requires t1_hi <= t2_lo, "
                                    f"got t1_hi={self.t1_hi}, t2_lo={self.t2_lo}")

    @property
    def input_size(self) -> int:
        return N_SYMBOLS

    @property
    def output_size(self) -> int:
        return 4

    def check_seq_len(self, seq_len):
        require(seq_len >= self.t2_hi, f"task 'temporal_order' needs seq_len >= t2_hi "
                                       f"({self.t2_hi}), got seq_len={seq_len}")

    def _draw(self, gen: torch.Generator, count: int, steps: int):
        import torch
        import torch.nn.functional as F

        symbols = torch.randint(2, N_SYMBOLS, (count, steps), generator=gen)
        t1 = torch.randint(self.t1_lo, self.t1_hi, (count,), generator=gen)
        t2 = torch.randint(self.t2_lo, self.t2_hi, (count,), generator=gen)
        relevant = torch.randint(0, 2, (count, 2), generator=gen)  # 0 = X, 1 = Y
        rows = torch.arange(count)
        symbols[rows, t1] = relevant[:, 0]
        symbols[rows, t2] = relevant[:, 1]
        inputs = F.one_hot(symbols, N_SYMBOLS).to(torch.float64)
        return inputs, 2 * relevant[:, 0] + relevant[:, 1]

    def inputs(self, seed, n_trajectories, steps):
        from sweeper.seeding import generator

        # Train-like sequences; shorter runs are cut from full-length ones so that the
        # stream does not depend on whether both symbols fit.
        inputs, _ = self._draw(generator(seed, "task-inputs"), n_trajectories,
                               max(steps, self.t2_hi))
        return inputs[:, :steps].contiguous()

    def batch(self, seed, split, batch_size, seq_len):
        import torch

        from sweeper.seeding import generator

        self.check_seq_len(seq_len)
        inputs, labels = self._draw(generator(seed, split_purpose(split)), batch_size, seq_len)
        targets = torch.zeros(batch_size, seq_len, dtype=torch.int64)
        targets[:, -1] = labels
        mask = torch.zeros(batch_size, seq_len, dtype=torch.bool)
        mask[:, -1] = True
        return TaskBatch(inputs, targets, mask)
