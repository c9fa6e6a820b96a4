"""A cell plus a readout: outputs and task losses for K points at once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .cells._base import Cell
from .dynamics import rollout
from .params import CellParams
from .seeding import generator

Tensor = torch.Tensor


@dataclass(frozen=True)
class Readout:
    """y = weight @ h + bias per group: weight (G, O, H), bias (G, O); or the identity on the
    first O hidden units when ``weight`` is None."""

    weight: Tensor | None
    bias: Tensor | None
    size: int

    def __call__(self, hidden: Tensor) -> Tensor:
        """hidden (G, M, B, T, H) -> outputs (G, M, B, T, O)."""
        if self.weight is None:
            return hidden[..., : self.size]
        out = torch.einsum("gmbth,goh->gmbto", hidden, self.weight)
        return out + self.bias[:, None, None, None, :]


def init_readout(kind: str, output_size: int, hidden_size: int, seeds: list[int],
                 dtype: torch.dtype, device: torch.device) -> Readout:
    """Seeded N(0, 1/H) readout weights and zero bias per group (or the identity)."""
    if kind == "identity":
        return Readout(None, None, output_size)
    draws = [torch.randn(output_size, hidden_size, generator=generator(s, "readout"),
                         dtype=torch.float64) / math.sqrt(hidden_size) for s in seeds]
    weight = torch.stack(draws).to(device=device, dtype=dtype)
    bias = torch.zeros(len(seeds), output_size, dtype=dtype, device=device)
    return Readout(weight, bias, output_size)


def outputs(cell: Cell, params: CellParams, readout: Readout, inputs: Tensor, x0: Tensor,
            hidden_size: int) -> Tensor:
    """Readout of the hidden state after every input: (G, M, B, T, O).

    inputs (G or 1, B, T, I); x0 (G, M, B, D). The hidden state is the first ``hidden_size``
    entries of the state (h for the LSTM's (h, c)).
    """
    states = rollout(cell, params, inputs, x0)
    return readout(states[..., :hidden_size])


def task_loss(loss_kind: str, predicted: Tensor, targets: Tensor, mask: Tensor
              ) -> tuple[Tensor, Tensor]:
    """Mean loss over the masked steps and the batch, per point, and the accuracy.

    Args:
        predicted: (G, M, B, T, O). targets: (G or 1, M or 1, B, T, O) for mse, (B, T) or
            broadcastable class indices for cross_entropy. mask: (B, T) bool.

    Returns:
        loss (G, M) and accuracy (G, M) (NaN for mse). Points whose outputs are non-finite get
        NaN loss; the others are unaffected.
    """
    weights = mask.to(predicted.dtype)
    count = weights.sum().clamp(min=1)
    if loss_kind == "mse":
        per_step = ((predicted - targets) ** 2).mean(-1)
        loss = (per_step * weights).sum(dim=(-1, -2)) / count
        return loss, torch.full_like(loss, math.nan)
    logp = torch.log_softmax(predicted, dim=-1)
    index = targets.expand(predicted.shape[:-1]).unsqueeze(-1)
    nll = -torch.gather(logp, -1, index)[..., 0]
    loss = (nll * weights).sum(dim=(-1, -2)) / count
    hits = (predicted.argmax(-1) == index[..., 0]).to(predicted.dtype)
    accuracy = (hits * weights).sum(dim=(-1, -2)) / count
    bad = ~torch.isfinite(predicted).all(-1).all(-1).all(-1)
    return loss, torch.where(bad, torch.full_like(accuracy, math.nan), accuracy)
