"""The paper's chaotic 2-unit LSTM (Ribeiro et al. 2019, companion code): no bias, zero input,
h0 = c0 = 0.5, and fixed recurrent weights theta*. Along theta(s) = s * theta* the dynamics go
from a stable fixed point through period doubling into chaos (s = 1 is chaotic)."""

from __future__ import annotations

import dataclasses

from sweeper.errors import SweeperInputError
from sweeper.task import Task, TaskBatch

from ._checks import finite_number, positive_int, split_purpose

# Rows of weight_hh in PyTorch's gate order (i, f, g, o), two rows per gate.
THETA_STAR = (
    (-1.0, -4.0), (-3.0, -2.0),  # input gate
    (-2.0, 6.0), (0.0, -6.0),  # forget gate
    (-1.0, -6.0), (6.0, -9.0),  # cell candidate g
    (4.0, 1.0), (-9.0, -7.0),  # output gate
)


@dataclasses.dataclass(frozen=True)
class ChaoticLSTM(Task):
    """Zero input into the anchor LSTM theta*; only ``cell="lstm"`` with hidden_size 2.
    Supervised: the target is h itself at s = 1 (identity readout), MSE after ``burn_in``.

    Args:
        initial: the value of every entry of (h0, c0) (default 0.5, as in the paper).
        burn_in: steps before the loss counts (default 100, as in the paper).
    """

    name = "chaotic_lstm"
    orbit_diagram = True
    readout = "identity"
    initial: float = 0.5
    burn_in: int = 100

    def __post_init__(self):
        finite_number(self.name, "initial", self.initial)
        positive_int(self.name, "burn_in", self.burn_in, minimum=0)

    @property
    def input_size(self) -> int:
        return 1

    @property
    def output_size(self) -> int:
        return 2

    @property
    def reference_scale(self) -> float:
        return 1.0

    def inputs(self, seed, n_trajectories, steps):
        import torch

        return torch.zeros(n_trajectories, steps, 1, dtype=torch.float64)

    def batch(self, seed, split, batch_size, seq_len):
        import torch

        split_purpose(split)
        steps = self.burn_in + seq_len
        mask = torch.zeros(batch_size, steps, dtype=torch.bool)
        mask[:, self.burn_in:] = True
        return TaskBatch(torch.zeros(batch_size, steps, 1, dtype=torch.float64), None, mask)

    def anchor(self, cell, hidden_size):
        if cell != "lstm" or hidden_size != 2:
            raise SweeperInputError(
                "task 'chaotic_lstm' defines theta* for cell='lstm' with hidden_size=2, got "
                f"cell={cell!r}, hidden_size={hidden_size!r}")
        import torch

        from sweeper.checkpoint import from_state_dict

        # theta* as the state_dict of a bias-free torch.nn.LSTM(1, 2) with zero input weights:
        # read the way a trained checkpoint is (sweeper.checkpoint).
        state = {"weight_hh_l0": torch.tensor(THETA_STAR, dtype=torch.float64),
                 "weight_ih_l0": torch.zeros(8, 1, dtype=torch.float64)}
        return from_state_dict(state, "lstm", 2, source="theta*").weights

    def initial_state(self, state_size):
        import torch

        return torch.full((state_size,), float(self.initial), dtype=torch.float64)
