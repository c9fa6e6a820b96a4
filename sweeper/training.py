"""Train K points at once: stacked parameters, the same data and optimiser for each.

Adam is elementwise, so one Adam over the stacked (K, n) parameters is K independent Adams;
gradient clipping and divergence are handled per point, so one point blowing up neither stops
nor perturbs the others. Per point, a step is exactly the usual PyTorch loop
``clip_grad_norm_(p, clip); adam.step(); scheduler.step()`` with ``torch.optim.Adam`` and a
``LambdaLR`` of :func:`schedule_factor` (tested against it in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .objective import SupervisedProblem
from .protocols import TrainingConfig

Tensor = torch.Tensor


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


@dataclass
class AdamState:
    """Adam's moments (K, n) and the number of steps taken, as ``torch.optim.Adam`` keeps
    them (``exp_avg``, ``exp_avg_sq``, ``step``); updated in place by :func:`adam_update`."""

    exp_avg: Tensor
    exp_avg_sq: Tensor
    step: int = 0

    @classmethod
    def zeros(cls, theta: Tensor) -> AdamState:
        return cls(torch.zeros_like(theta), torch.zeros_like(theta))


def schedule_factor(config: TrainingConfig, step: int) -> float:
    """Learning rate of step ``step`` (0-based) over ``config.lr``: 1, or the cosine decay
    0.5 (1 + cos(pi step / steps)) (torch's CosineAnnealingLR with T_max = steps)."""
    if config.schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * step / config.steps))


def clip_per_point(grad: Tensor, norm: Tensor, clip: float) -> Tensor:
    """Each row of grad (K, n) scaled as ``torch.nn.utils.clip_grad_norm_(row, clip)`` would:
    by min(1, clip / (norm + 1e-6)), norm (K,) being the row's 2-norm (float64)."""
    factor = torch.clamp(clip / (norm + 1e-6), max=1.0)
    return grad * factor.to(grad.dtype)[:, None]


def adam_update(theta: Tensor, grad: Tensor, state: AdamState, lr: float,
                config: TrainingConfig, frozen: Tensor) -> None:
    """One Adam step on every row of theta (K, n), in place, with torch.optim.Adam's
    arithmetic (single-tensor path, op for op), except that ``frozen`` rows (K,) bool stay
    where they are: their gradient and first moment are zeroed, so their update is exactly 0.

    Raises nothing; a non-finite gradient row must be frozen by the caller beforehand.
    """
    beta1, beta2 = config.betas
    state.step += 1
    grad = grad.masked_fill(frozen[:, None], 0.0)
    state.exp_avg.lerp_(grad, 1 - beta1).masked_fill_(frozen[:, None], 0.0)
    state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1 ** state.step
    bias_correction2 = 1 - beta2 ** state.step
    denom = (state.exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(config.eps)
    theta.addcdiv_(state.exp_avg, denom, value=-lr / bias_correction1)


def _loss_and_grad(objective, theta: Tensor) -> tuple[Tensor, Tensor]:
    """Losses (K,) and their gradients (K, n); non-finite losses are left out of the sum that
    is differentiated, so they cannot poison the other points' gradients."""
    with torch.enable_grad():
        point = theta.detach().requires_grad_(True)
        loss = objective(point)
        total = torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss)).sum()
        (grad,) = torch.autograd.grad(total, point)
    return loss.detach(), grad


def train(cell, task, params, readout, hidden_size: int, seq_len: int,
          config: TrainingConfig) -> TrainingResult:
    """Train every point of ``params`` (G x M, scalings folded in) on ``task``.

    The model, its flat theta and the task's teachers are built once; each step draws a fresh
    batch (seed ``data_seed * 1_000_003 + step``, the same for every point).

    Returns a :class:`TrainingResult` whose rows follow the points in (g, m) order.
    """
    problem = SupervisedProblem.build(cell, task, params, readout, hidden_size, seq_len)
    theta = problem.theta.detach().clone()
    points = theta.shape[0]
    state = AdamState.zeros(theta)
    diverged = torch.zeros(points, dtype=torch.bool, device=theta.device)
    reached = torch.full((points,), math.nan, dtype=torch.float64, device=theta.device)
    loss = torch.full((points,), math.nan, dtype=torch.float64, device=theta.device)
    for step in range(config.steps):
        objective = problem.objective("train", config.batch_size,
                                      config.data_seed * 1_000_003 + step)
        loss, grad = _loss_and_grad(objective, theta)
        norm = torch.linalg.vector_norm(grad, dim=-1, dtype=torch.float64)
        diverged |= ~torch.isfinite(loss) | ~torch.isfinite(norm)
        if config.threshold is not None:
            hit = torch.isnan(reached) & (loss.double() <= config.threshold)
            reached = torch.where(hit, float(step + 1), reached)
        if config.clip is not None:
            grad = clip_per_point(grad, norm, config.clip)
        adam_update(theta, grad, state, config.lr * schedule_factor(config, step), config,
                    diverged)
    val_objective = problem.objective("val", config.val_batch_size, config.data_seed)
    with torch.no_grad():
        val_loss, val_accuracy = val_objective.evaluate(theta)
    nan = torch.full_like(val_loss, math.nan)
    return TrainingResult(
        train_loss=torch.where(diverged, nan, loss.double()),
        val_loss=torch.where(diverged, nan, val_loss.double()),
        val_accuracy=torch.where(diverged, nan, val_accuracy.double()),
        diverged=diverged,
        steps_to_threshold=reached,
        theta=theta,
    )
