"""Orbit (bifurcation) diagrams: the long-run values of one output for each scaling."""

from __future__ import annotations

import torch

from .cells._base import Cell
from .dynamics import rollout
from .params import CellParams

Tensor = torch.Tensor


def orbit_diagram(cell: Cell, params: CellParams, inputs: Tensor, x0: Tensor, keep: int,
                  output_index: int = 0) -> Tensor:
    """The last ``keep`` values of state entry ``output_index`` along each trajectory.

    Args:
        inputs: (G or 1, B, T, I) with T > keep; the first T - keep steps are transient.
        x0: (G, M, B, D) initial states (B of them per point: several basins show up).

    Returns:
        (G, M, B * keep): a fixed point gives one value, a period-p orbit p values, chaos a
        spread; non-finite where the state diverged.
    """
    steps = inputs.shape[-2]
    states = rollout(cell, params, inputs, x0, keep_from=steps - keep)
    values = states[..., output_index]  # (G, M, B, keep)
    return values.reshape(*values.shape[:2], -1)
