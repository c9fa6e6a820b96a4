"""The ``landscape`` metric family for K points: loss, gradient norm, top Hessian eigenvalue,
and slice roughness along the scaling direction and a filter-normalised random direction."""

from __future__ import annotations

import math

import torch

from .landscape import (
    filter_normalised_direction,
    grad_norm,
    hessian_top_eig,
    slice_losses,
    slice_metrics,
)
from .model import PointModel, Readout
from .objective import Objective, build_objective
from .params import RECURRENT, CellParams
from .protocols import LandscapeConfig
from .seeding import generator

Tensor = torch.Tensor


def scaling_direction(model: PointModel, cell, params: CellParams, readout: Readout
                      ) -> Tensor:
    """d theta / d s: each point's unscaled recurrent weights, zero elsewhere, (K, n)."""
    unit = CellParams(params.weights, torch.ones_like(params.recurrent_scale),
                      params.input_scale, dict(params.meta))
    _, theta_unit = PointModel.from_params(cell, model.hidden_size, unit, readout)
    direction = torch.zeros_like(theta_unit)
    start = 0
    for name, shape in model.shapes.items():
        size = math.prod(shape)
        if name == RECURRENT:
            direction[:, start:start + size] = theta_unit[:, start:start + size]
        start += size
    return direction


def distinct_sequences(objective: Objective) -> Objective:
    """The objective on one sequence when all B sequences of its batch are the same (same
    inputs, initial state, mask and targets), else ``objective`` itself.

    The loss is a mean over identical copies, so one copy gives the same value at 1/B of the
    cost; deterministic tasks (chaotic_lstm: zero input from a fixed state) have such batches.
    """
    # Batch axis of each field: inputs (1, B, T, I), x0 (1, 1, B, D), mask (B, T); targets
    # (K, 1, B, T, O) for mse, (B, T) class indices otherwise.
    fields = [(objective.inputs, 1), (objective.x0, 2), (objective.mask, 0),
              (objective.targets, 2 if objective.loss_kind == "mse" else 0)]
    if objective.inputs.shape[1] == 1 or not all(
            bool((t == t.narrow(axis, 0, 1)).all()) for t, axis in fields):
        return objective
    first = [t.narrow(axis, 0, 1) for t, axis in fields]
    return Objective(objective.model, objective.loss_kind, inputs=first[0], targets=first[3],
                     mask=first[2], x0=first[1])


def landscape_metrics(cell, task, params: CellParams, readout: Readout, hidden_size: int,
                      seq_len: int, config: LandscapeConfig) -> dict[str, Tensor]:
    """Every landscape column for the (G, M) points of ``params``, each (K,) float64."""
    objective, theta = build_objective(cell, task, params, readout, hidden_size, seq_len,
                                       batch_size=config.batch_size, data_seed=config.data_seed)
    objective = distinct_sequences(objective)
    with torch.no_grad():
        loss = objective(theta).double()
    out = {"loss": loss, "grad_norm": grad_norm(objective, theta)}
    if config.hessian_steps:
        out["hessian_top_eig"] = hessian_top_eig(objective, theta, config.hessian_steps,
                                                 seed=config.data_seed)
    along = objective.repeat_rows(config.points)
    with torch.no_grad():
        alphas = torch.linspace(-config.radius, config.radius, config.points,
                                dtype=torch.float64)
        scaled = slice_losses(along, theta, scaling_direction(objective.model, cell, params,
                                                              readout), alphas)
        out.update({k: v for k, v in slice_metrics(alphas, scaled).items()})
        gen = generator(config.data_seed, "directions")
        random_dir = filter_normalised_direction(objective.model.shapes, theta, gen)
        alphas = torch.linspace(-config.random_radius, config.random_radius, config.points,
                                dtype=torch.float64)
        rand = slice_losses(along, theta, random_dir, alphas)
        out.update({f"{k}_random": v for k, v in slice_metrics(alphas, rand).items()})
    return out
