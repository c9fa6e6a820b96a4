"""The objective: built once, it serves any batch; teachers shared by the points that share a
group and an input scale; the rollout equals the per-step drive loop, gradient too."""

from __future__ import annotations

import pytest
import torch

from sweeper import CELLS
from sweeper.dynamics import drive_function, input_projection
from sweeper.measure import build_params
from sweeper.model import PointModel, init_readout
from sweeper.objective import SupervisedProblem, build_objective
from sweeper.params import CellParams
from sweeper.task import get_task

F64 = torch.float64
CPU = torch.device("cpu")
HIDDEN = 5


def _points(cell: str, task, recurrent, inputs):
    seeds = list(range(len(recurrent)))
    rs, ins = torch.tensor(recurrent, dtype=F64), torch.tensor(inputs, dtype=F64)
    params = build_params(CELLS[cell], HIDDEN, task.input_size, seeds, rs, ins, F64, CPU)
    readout = init_readout(task.readout, task.output_size, HIDDEN, seeds, F64, CPU)
    return params, readout


def _teacher_per_point(cell: str, task, params, readout, inputs, x0):
    """Every point's own teacher: the same points at recurrent_scale = reference."""
    teachers = CellParams(params.weights,
                          torch.full_like(params.recurrent_scale, task.reference_scale),
                          params.input_scale, dict(params.meta))
    model, theta = PointModel.from_params(CELLS[cell], HIDDEN, teachers, readout)
    return model.forward(theta, inputs, x0.expand(theta.shape[0], -1, -1, -1))


@pytest.mark.parametrize("cell", ["rnn_tanh", "gru", "stable_lstm"])
@pytest.mark.parametrize(("inputs", "teachers"), [
    ([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], 2),  # one input scale per group: one teacher each
    ([[1.0, 0.5, 1.0], [2.0, 2.0, 2.0]], 4),  # U = 2 (group 1 repeats its only scale)
    ([[1.0, 0.5, 0.25], [2.0, 1.0, 3.0]], 6),  # every point its own teacher
])
def test_shared_teachers_equal_one_teacher_per_point(cell, inputs, teachers):
    task = get_task("teacher", {"reference": 1.1, "input_size": 2, "output_size": 2})
    params, readout = _points(cell, task, [[0.5, 1.0, 1.5], [0.7, 1.3, 2.5]], inputs)
    problem = SupervisedProblem.build(CELLS[cell], task, params, readout, HIDDEN, 9)
    assert problem.teacher_theta.shape[0] == teachers
    objective = problem.objective("train", 4, data_seed=3)
    with torch.no_grad():
        expected = _teacher_per_point(cell, task, params, readout, objective.inputs,
                                      objective.x0)
    # The same weights through the same ops; only the batch of the matrix products differs.
    torch.testing.assert_close(objective.targets, expected, rtol=1e-13, atol=1e-15)


def test_build_objective_is_the_problem_objective():
    task = get_task("teacher", {"reference": 0.9})
    params, readout = _points("gru", task, [[0.5, 2.0]], [[1.0, 1.0]])
    objective, theta = build_objective(CELLS["gru"], task, params, readout, HIDDEN, 8,
                                       split="val", batch_size=3, data_seed=5)
    # One teacher per point: the student at s = reference runs exactly the teacher's ops.
    problem = SupervisedProblem.build(CELLS["gru"], task, params, readout, HIDDEN, 8,
                                      share_teachers=False)
    again = problem.objective("val", 3, 5)
    assert problem.teacher_theta.shape[0] == 2 and problem.teacher_row is None
    assert torch.equal(theta, problem.theta)
    for name in ("inputs", "targets", "mask", "x0"):
        assert torch.equal(getattr(objective, name), getattr(again, name))
    assert torch.equal(objective(theta), again(theta))


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "stable_lstm"])
def test_rollout_equals_the_per_step_drive_loop(cell):
    # rollout unbinds the input projection instead of indexing it per step (a backward that is
    # O(T) instead of O(T^2)); the arithmetic is drive_function's, so outputs are identical
    # and gradients agree to rounding (float64).
    task = get_task("teacher", {"reference": 1.0, "input_size": 2})
    params, readout = _points(cell, task, [[0.8, 1.6]], [[1.0, 0.5]])
    objective, theta = build_objective(CELLS[cell], task, params, readout, HIDDEN, 12,
                                       batch_size=3, data_seed=1)
    model = objective.model
    x0 = objective.x0.expand(theta.shape[0], -1, -1, -1)

    def per_step(flat):
        weights, flat_readout = model.unflatten(flat)
        prepared = model.cell.prepare(weights)
        drive = drive_function(prepared, input_projection(prepared, objective.inputs))
        x, states = x0, []
        for t in range(objective.inputs.shape[-2]):
            x, _ = model.cell.step(prepared, x, drive(t))
            states.append(x)
        return flat_readout(torch.stack(states, dim=-2)[..., :HIDDEN])

    point = theta.clone().requires_grad_(True)
    ours, theirs = model.forward(point, objective.inputs, x0), per_step(point)
    assert torch.equal(ours, theirs)
    weights = torch.randn(ours.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), point)
    (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), point)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-12, atol=1e-14)
