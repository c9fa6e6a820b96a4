"""A task's loss as a function of K flat parameter vectors: V(theta) for every point at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cells._base import Cell
from .errors import SweeperInputError
from .model import PointModel, Readout, task_loss
from .params import CellParams
from .task import Task

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


@dataclass(frozen=True)
class SupervisedProblem:
    """A task and K points, with everything that does not depend on the data batch built
    once: the flat model, the initial state and, for teacher-style tasks, the teachers.

    :meth:`objective` then makes the :class:`Objective` of any batch; training calls it once
    per step with a fresh batch, so a step costs the batch, its targets and one forward and
    backward, not a re-flattening of the parameters.

    Teacher-style tasks (targets None) take as targets the outputs of the same points with
    recurrent_scale set to ``task.reference_scale`` (same base draw, input scale, readout).
    Points that share a group and an input scale therefore share a teacher: only the distinct
    (group, input_scale) pairs are run (one per group in a sweep that varies recurrent_scale
    alone), and each point reads its teacher's row (``teacher_row``). Sharing changes the
    batch of the teacher's matrix products, so shared targets equal per-point ones to
    rounding (~1e-16 relative), not bitwise; ``share_teachers=False`` keeps one teacher per
    point, whose loss at s = reference is then exactly 0.
    """

    task: Task
    model: PointModel
    theta: Tensor  # (K, n), K = G * M, in the params' dtype and device
    seq_len: int
    x0: Tensor  # (D,) the initial state of every trajectory
    teacher: PointModel | None = None
    teacher_theta: Tensor | None = None  # (G * U, n): U distinct input scales per group
    teacher_row: Tensor | None = None  # (K,) row of each point's teacher; None: row k

    @classmethod
    def build(cls, cell: Cell, task: Task, params: CellParams, readout: Readout, hidden_size: int,
              seq_len: int, *, share_teachers: bool = True) -> SupervisedProblem:
        """Raises SweeperInputError for a task without a loss or a too short ``seq_len``."""
        if task.output_size == 0:
            raise SweeperInputError(f"task {task.name!r} has no loss; landscape and training "
                                    "need a supervised task (teacher, sine_generator, ...)")
        task.check_seq_len(seq_len)
        # theta holds the unconstrained weights; PointModel.forward applies cell.prepare, once
        # per evaluation (theta moves during training and along slices).
        model, theta = PointModel.from_params(cell, hidden_size, params, readout)
        size = cell.state_size(hidden_size)
        fixed = task.initial_state(size)
        x0 = torch.zeros(size, dtype=torch.float64) if fixed is None else fixed
        x0 = x0.to(device=params.device, dtype=params.dtype)
        if task.reference_scale is None:
            return cls(task, model, theta, seq_len, x0)
        teachers, row = _teachers(params, task.reference_scale, share_teachers)
        teacher, teacher_theta = PointModel.from_params(cell, hidden_size, teachers, readout)
        return cls(task, model, theta, seq_len, x0, teacher, teacher_theta, row)

    def objective(self, split: str = "train", batch_size: int = 32, data_seed: int = 0
                  ) -> Objective:
        """The objective on the task's batch (``data_seed``, ``split``, ``batch_size``)."""
        batch = self.task.batch(data_seed, split, batch_size, self.seq_len)
        device, dtype = self.theta.device, self.theta.dtype
        inputs = batch.inputs.to(device=device, dtype=dtype)[None]
        x0 = self.x0.expand(1, 1, inputs.shape[1], self.x0.shape[0])
        mask = batch.mask.to(device)
        if batch.targets is None:
            targets = self.teacher_targets(inputs, x0)
        elif self.task.loss_kind == "mse":
            targets = batch.targets.to(device=device, dtype=dtype)[None, None]
        else:
            targets = batch.targets.to(device)
        return Objective(self.model, self.task.loss_kind, inputs, targets, mask, x0)

    def teacher_targets(self, inputs: Tensor, x0: Tensor) -> Tensor:
        """Each point's teacher outputs (K, 1, B, T, O); inputs (1, B, T, I), x0 (1, 1, B, D)."""
        if self.teacher is None:
            raise SweeperInputError(f"task {self.task.name!r} serves its own targets; it has "
                                    "no reference_scale")
        rows = self.teacher_theta.shape[0]
        with torch.no_grad():
            targets = self.teacher.forward(self.teacher_theta, inputs,
                                           x0.expand(rows, *x0.shape[1:]))
        return targets if self.teacher_row is None else targets[self.teacher_row]


def _teachers(params: CellParams, reference_scale: float, share: bool
              ) -> tuple[CellParams, Tensor | None]:
    """The teachers of the (G, M) points, one per distinct input scale within each group
    (``share``): params (G, U) at recurrent_scale ``reference_scale`` (groups with fewer than
    U distinct scales repeat their last one), and the row g * U + u of each point's teacher
    (K,), or None when every point has its own (U = M, or not ``share``)."""
    scales = params.input_scale
    distinct = [torch.unique(row, return_inverse=True) for row in scales] if share else []
    width = max((len(values) for values, _ in distinct), default=params.members)
    if width == params.members:
        teacher_scales, row = scales, None
    else:
        teacher_scales = torch.stack([torch.cat([values, values[-1:].expand(width - len(values))])
                                      for values, _ in distinct])
        row = torch.cat([g * width + inverse for g, (_, inverse) in enumerate(distinct)])
    teachers = CellParams(params.weights, torch.full_like(teacher_scales, reference_scale),
                          teacher_scales, dict(params.meta))
    return teachers, row


def build_objective(cell: Cell, task, params: CellParams, readout: Readout, hidden_size: int,
                    seq_len: int, *, split: str = "train", batch_size: int = 32,
                    data_seed: int = 0) -> tuple[Objective, Tensor]:
    """The objective of ``task`` for the (G, M) points of ``params`` and their flat theta.

    Teacher-style tasks (targets None) take as targets the outputs of the same points with
    recurrent_scale set to ``task.reference_scale`` (same base draw, input scale, readout).
    Every point has its own teacher, so the loss at s = reference is exactly 0. To evaluate
    several batches, build a :class:`SupervisedProblem` once instead.

    Returns:
        (objective, theta (K, n)) with K = G * M, in the params' dtype and device.
    """
    problem = SupervisedProblem.build(cell, task, params, readout, hidden_size, seq_len,
                                      share_teachers=False)
    return problem.objective(split, batch_size, data_seed), problem.theta
