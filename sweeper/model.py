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


@dataclass(frozen=True)
class PointModel:
    """K independent models (cell weights + readout) as one flat parameter matrix (K, n).

    Flat vectors make directions, slices, gradients and Hessian-vector products uniform over
    cells. Each point's loss depends on its own row only.
    """

    cell: Cell
    hidden_size: int
    shapes: dict[str, tuple[int, ...]]  # per point, cell weights then "readout_weight/bias"
    readout_kind: str
    output_size: int

    @classmethod
    def from_params(cls, cell: Cell, hidden_size: int, params: CellParams,
                    readout: Readout) -> tuple[PointModel, Tensor]:
        """Flatten (G, M) points into (K = G * M, n), scalings folded into the weights."""
        flat = params.expand()
        members = params.members
        parts = dict(flat.weights)
        if readout.weight is not None:
            parts["readout_weight"] = readout.weight.repeat_interleave(members, dim=0)
            parts["readout_bias"] = readout.bias.repeat_interleave(members, dim=0)
        shapes = {k: tuple(v.shape[1:]) for k, v in parts.items()}
        theta = torch.cat([v.reshape(v.shape[0], -1) for v in parts.values()], dim=1)
        model = cls(cell, hidden_size, shapes, "identity" if readout.weight is None
                    else "linear", readout.size)
        return model, theta

    def split(self, theta: Tensor) -> dict[str, Tensor]:
        """(K, n) -> named views (K, *shape)."""
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            out[name] = theta[:, start:start + size].reshape(theta.shape[0], *shape)
            start += size
        return out

    def unflatten(self, theta: Tensor) -> tuple[CellParams, Readout]:
        parts = self.split(theta)
        ones = torch.ones(theta.shape[0], 1, dtype=theta.dtype, device=theta.device)
        weights = {k: v for k, v in parts.items() if not k.startswith("readout_")}
        params = CellParams(weights, ones, ones.clone(), {})
        if self.readout_kind == "identity":
            return params, Readout(None, None, self.output_size)
        return params, Readout(parts["readout_weight"], parts["readout_bias"], self.output_size)

    def forward(self, theta: Tensor, inputs: Tensor, x0: Tensor) -> Tensor:
        """Outputs (K, 1, B, T, O) of every point; the cell's constraints (prepare) applied."""
        params, readout = self.unflatten(theta)
        params = self.cell.prepare(params)
        return outputs(self.cell, params, readout, inputs, x0, self.hidden_size)
