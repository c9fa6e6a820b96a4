"""A task's loss as a function of K flat parameter vectors: V(theta) for every point at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cells._base import Cell
from .errors import SweeperInputError
from .model import PointModel, Readout, task_loss
from .params import CellParams

Tensor = torch.Tensor


@dataclass(frozen=True)
class Objective:
    """V(theta) on one fixed batch of a supervised task.

    Calling it maps theta (K, n) to losses (K,); point k's loss depends on theta[k] only (the
    property that batched gradients and Hessian-vector products rely on).
    """

    model: PointModel
    loss_kind: str
    inputs: Tensor  # (1, B, T, I), shared by all points
    targets: Tensor  # mse: (K, 1, B, T, O); cross_entropy: (B, T) class indices
    mask: Tensor  # (B, T)
    x0: Tensor  # (1, 1, B, D)

    def evaluate(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, accuracy), each (K,); accuracy NaN for mse tasks."""
        x0 = self.x0.expand(theta.shape[0], *self.x0.shape[1:])
        predicted = self.model.forward(theta, self.inputs, x0)
        # mse targets are (1 or K, 1, B, T, O) and broadcast against (K, 1, B, T, O).
        loss, accuracy = task_loss(self.loss_kind, predicted, self.targets, self.mask)
        return loss[:, 0], accuracy[:, 0]

    def __call__(self, theta: Tensor) -> Tensor:
        return self.evaluate(theta)[0]

    def repeat_rows(self, times: int) -> Objective:
        """The objective for points repeated ``times`` times each (row k*times + p is point k),
        the layout of :func:`sweeper.landscape.slice_losses`."""
        if self.loss_kind == "mse" and self.targets.shape[0] > 1:
            return Objective(self.model, self.loss_kind, self.inputs,
                             self.targets.repeat_interleave(times, dim=0), self.mask, self.x0)
        return self

    def subset(self, rows: slice | Tensor) -> Objective:
        """The objective of a subset of points (targets follow their points)."""
        if self.loss_kind == "mse" and self.targets.shape[0] > 1:
            return Objective(self.model, self.loss_kind, self.inputs, self.targets[rows],
                             self.mask, self.x0)
        return self


def build_objective(cell: Cell, task, params: CellParams, readout: Readout, hidden_size: int,
                    seq_len: int, *, split: str = "train", batch_size: int = 32,
                    data_seed: int = 0) -> tuple[Objective, Tensor]:
    """The objective of ``task`` for the (G, M) points of ``params`` and their flat theta.

    Teacher-style tasks (targets None) take as targets the outputs of the same points with
    recurrent_scale set to ``task.reference_scale`` (same base draw, input scale, readout).

    Returns:
        (objective, theta (K, n)) with K = G * M, in the params' dtype and device.
    """
    if task.output_size == 0:
        raise SweeperInputError(f"task {task.name!r} has no loss; landscape and training "
                                "need a supervised task (teacher, sine_generator, ...)")
    task.check_seq_len(seq_len)
    device, dtype = params.device, params.dtype
    batch = task.batch(data_seed, split, batch_size, seq_len)
    # theta holds the unconstrained weights; PointModel.forward applies cell.prepare, once
    # per evaluation (theta moves during training and along slices).
    model, theta = PointModel.from_params(cell, hidden_size, params, readout)
    inputs = batch.inputs.to(device=device, dtype=dtype)[None]
    size = cell.state_size(hidden_size)
    fixed = task.initial_state(size)
    x0 = (torch.zeros(size, dtype=torch.float64) if fixed is None else fixed)
    x0 = x0.to(device=device, dtype=dtype).expand(1, 1, inputs.shape[1], size)
    mask = batch.mask.to(device)
    if batch.targets is None:
        reference = CellParams(params.weights, torch.full_like(params.recurrent_scale,
                                                                task.reference_scale),
                               params.input_scale, dict(params.meta))
        ref_model, ref_theta = PointModel.from_params(cell, hidden_size, reference, readout)
        with torch.no_grad():
            targets = ref_model.forward(ref_theta, inputs,
                                        x0.expand(ref_theta.shape[0], *x0.shape[1:]))
    elif task.loss_kind == "mse":
        targets = batch.targets.to(device=device, dtype=dtype)[None, None]
    else:
        targets = batch.targets.to(device)
    return Objective(model, task.loss_kind, inputs, targets, mask, x0), theta
