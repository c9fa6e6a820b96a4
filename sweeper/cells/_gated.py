"""Shared pieces of the gated cells (GRU, LSTM): PyTorch's initialisation and block splits."""

from __future__ import annotations

import math

import torch

from ..params import CellParams
from ._base import Tensor


def uniform_init(hidden_size: int, input_size: int, gates: int, generator: torch.Generator
                 ) -> dict[str, Tensor]:
    """torch.nn's default U(-1/sqrt(H), 1/sqrt(H)) for the weights; biases zero (SCIENCE.md:
    base biases are zero unless a task sets them)."""
    bound = 1.0 / math.sqrt(hidden_size)

    def draw(*shape: int) -> Tensor:
        return (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound

    rows = gates * hidden_size
    return {
        "weight_hh": draw(rows, hidden_size),
        "weight_ih": draw(rows, input_size),
        "bias_ih": torch.zeros(rows, dtype=torch.float64),
        "bias_hh": torch.zeros(rows, dtype=torch.float64),
    }


def blocks(params: CellParams, name: str, gates: int) -> list[Tensor]:
    """``params.weights[name]`` split into its gate blocks along the row axis."""
    return list(params.weights[name].chunk(gates, dim=1))


def row_abs_sum(matrix: Tensor) -> Tensor:
    """Row sums of |matrix| (the infinity norm of each row), (G, R, C) -> (G, R)."""
    return matrix.double().abs().sum(-1)
