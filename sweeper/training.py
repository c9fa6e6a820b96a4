"""Train K points at once: stacked parameters, the same data and optimiser for each.

Adam is elementwise, so one Adam over the stacked (K, n) parameters is K independent Adams;
gradient clipping and divergence are handled per point, so one point blowing up neither stops
nor perturbs the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import errors
from .objective import build_objective

Tensor = torch.Tensor
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser and protocol.

    Attributes:
        steps: Adam steps; batch_size: sequences per step (a fresh batch each step, the same
            for every point); val_batch_size: sequences of the validation batch.
        lr, betas, eps: Adam. schedule: "constant" or "cosine" (decay to 0 over ``steps``).
        clip: largest gradient norm per point (None: no clipping).
        threshold: train loss that counts as reached for ``steps_to_threshold`` (None: off).
        data_seed: seed of the data stream.
    """

    steps: int = 300
    batch_size: int = 32
    val_batch_size: int = 256
    lr: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "cosine"
    clip: float | None = 1.0
    threshold: float | None = None
    data_seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "val_batch_size"):
            errors.integer(name, getattr(self, name))
        errors.number("lr", self.lr, above=0)
        errors.number("eps", self.eps, above=0)
        errors.choice("schedule", self.schedule, SCHEDULES)
        if self.clip is not None:
            errors.number("clip", self.clip, above=0)
        if self.threshold is not None:
            errors.number("threshold", self.threshold)
        errors.integer("data_seed", self.data_seed, minimum=0)


@dataclass(frozen=True)
class TrainingResult:
    """Per point (K,): final train loss (last batch), validation loss and accuracy (NaN for
    mse tasks), diverged (bool), steps_to_threshold (NaN if never reached), and theta."""

    train_loss: Tensor
    val_loss: Tensor
    val_accuracy: Tensor
    diverged: Tensor
    steps_to_threshold: Tensor
    theta: Tensor


def _learning_rate(config: TrainingConfig, step: int) -> float:
    if config.schedule == "constant":
        return config.lr
    return 0.5 * config.lr * (1 + math.cos(math.pi * step / config.steps))


def train(cell, task, params, readout, hidden_size: int, seq_len: int,
          config: TrainingConfig) -> TrainingResult:
    """Train every point of ``params`` (G x M, scalings folded in) on ``task``.

    Returns a :class:`TrainingResult` whose rows follow the points in (g, m) order.
    """
    _, theta = build_objective(cell, task, params, readout, hidden_size, seq_len,
                               batch_size=1, data_seed=config.data_seed)
    theta = theta.detach().clone()
    points = theta.shape[0]
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    diverged = torch.zeros(points, dtype=torch.bool, device=theta.device)
    reached = torch.full((points,), math.nan, dtype=torch.float64, device=theta.device)
    beta1, beta2 = config.betas
    loss = torch.full((points,), math.nan, dtype=torch.float64, device=theta.device)
    for step in range(config.steps):
        objective, _ = build_objective(cell, task, params, readout, hidden_size, seq_len,
                                       batch_size=config.batch_size,
                                       data_seed=config.data_seed * 1_000_003 + step)
        with torch.enable_grad():
            point = theta.detach().requires_grad_(True)
            loss = objective(point)
            # Non-finite losses are excluded from the sum so they cannot poison the others.
            total = torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss)).sum()
            (grad,) = torch.autograd.grad(total, point)
        norm = grad.double().norm(dim=-1)
        diverged |= ~torch.isfinite(loss) | ~torch.isfinite(norm)
        if config.threshold is not None:
            hit = torch.isnan(reached) & (loss.detach().double() <= config.threshold)
            reached = torch.where(hit, float(step + 1), reached)
        grad = torch.where(diverged[:, None], torch.zeros_like(grad), grad)
        if config.clip is not None:
            factor = torch.clamp(config.clip / torch.clamp(norm, min=1e-300), max=1.0)
            grad = grad * torch.where(diverged, 1.0, factor)[:, None].to(grad.dtype)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad * grad
        m_hat = m / (1 - beta1 ** (step + 1))
        v_hat = v / (1 - beta2 ** (step + 1))
        update = _learning_rate(config, step) * m_hat / (v_hat.sqrt() + config.eps)
        theta = theta - torch.where(diverged[:, None], torch.zeros_like(update), update)
    val_objective, _ = build_objective(cell, task, params, readout, hidden_size, seq_len,
                                       split="val", batch_size=config.val_batch_size,
                                       data_seed=config.data_seed)
    with torch.no_grad():
        val_loss, val_accuracy = val_objective.evaluate(theta)
    nan = torch.full_like(val_loss, math.nan)
    return TrainingResult(
        train_loss=torch.where(diverged, nan, loss.detach().double()),
        val_loss=torch.where(diverged, nan, val_loss.double()),
        val_accuracy=torch.where(diverged, nan, val_accuracy.double()),
        diverged=diverged,
        steps_to_threshold=reached,
        theta=theta,
    )

