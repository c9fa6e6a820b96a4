"""Batched training: equal to training each point alone and to the textbook PyTorch loop
(torch.optim.Adam, clip_grad_norm_, the torch scheduler) on an objective rebuilt every step,
divergence isolated, and small networks that learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sweeper import CELLS
from sweeper.measure import build_params
from sweeper.model import PointModel, init_readout
from sweeper.objective import Objective
from sweeper.params import CellParams
from sweeper.task import get_task
from sweeper.training import (
    AdamState,
    TrainingConfig,
    adam_update,
    clip_per_point,
    schedule_factor,
    train,
)

F64 = torch.float64
CPU = torch.device("cpu")


def _train(cell, task, hidden, scales, seeds, seq_len, config):
    rs = torch.tensor(scales, dtype=F64)
    params = build_params(CELLS[cell], hidden, task.input_size, seeds, rs, torch.ones_like(rs),
                          F64, CPU)
    readout = init_readout(task.readout, task.output_size, hidden, seeds, F64, CPU)
    return train(CELLS[cell], task, params, readout, hidden, seq_len, config)


def test_training_eight_points_at_once_equals_each_alone():
    # Adam is elementwise and clipping per point, so stacking changes only GEMM rounding:
    # measured differences ~1e-20 on losses ~1e-5 (float64). Tolerance rtol 1e-9.
    task = get_task("teacher", {"reference": 0.8})
    config = TrainingConfig(steps=25, batch_size=8, val_batch_size=16)
    scales = [0.5, 1.0, 1.5, 3.0]
    together = _train("gru", task, 8, [scales] * 2, [0, 1], 30, config)
    alone = [_train("gru", task, 8, [[s]], [seed], 30, config)
             for seed in (0, 1) for s in scales]
    for name in ("train_loss", "val_loss"):
        np.testing.assert_allclose(getattr(together, name).numpy(),
                                   [getattr(a, name).item() for a in alone], rtol=1e-9)
    torch.testing.assert_close(together.theta, torch.cat([a.theta for a in alone]), rtol=1e-9,
                               atol=1e-12)


def test_a_diverging_point_stops_alone():
    task = get_task("sine_generator")
    config = TrainingConfig(steps=5, batch_size=4, val_batch_size=4)
    # s = 1e3 makes the linear state overflow within the sequence.
    mixed = _train("linear", task, 6, [[0.5, 1e3, 0.9]], [0], 120, config)
    clean = _train("linear", task, 6, [[0.5, 0.9]], [0], 120, config)
    assert mixed.diverged.tolist() == [False, True, False]
    assert math.isnan(mixed.val_loss[1].item())
    np.testing.assert_allclose(mixed.val_loss[[0, 2]].numpy(), clean.val_loss.numpy(),
                               rtol=1e-9)


def test_threshold_steps_are_counted():
    task = get_task("teacher", {"reference": 0.8})
    result = _train("rnn_tanh", task, 8, [[0.8, 2.0]], [0], 20,
                    TrainingConfig(steps=10, threshold=1e-12, batch_size=4, val_batch_size=4))
    # At the teacher's own scale the loss is 0 from the first step.
    assert result.steps_to_threshold[0].item() == 1
    assert math.isnan(result.steps_to_threshold[1].item())


def test_bad_training_config_is_rejected():
    from sweeper import SweeperInputError

    with pytest.raises(SweeperInputError, match="schedule must be one of"):
        TrainingConfig(schedule="linear")
    with pytest.raises(SweeperInputError, match=r"lr must be a finite number > 0, got lr=0\.0"):
        TrainingConfig(lr=0.0)


@pytest.mark.parametrize(("name", "params", "seq_len", "steps"), [
    # Short windows (first symbol in [1, 4), second in [6, 9)) keep it CI-sized: measured
    # validation accuracy 1.00 at both scales after 200 steps (chance 0.25), ~3 s.
    ("temporal_order", {"t1_lo": 1, "t1_hi": 4, "t2_lo": 6, "t2_hi": 9}, 12, 200),
    # Recall 3 of 8 symbols after a delay of 10: measured 0.28 and 0.42 after 300 steps
    # (chance 0.125), ~7 s.
    ("copy_memory", {"length": 3}, 16, 300),
])
def test_small_lstm_beats_chance(name, params, seq_len, steps):
    task = get_task(name, params)
    result = _train("lstm", task, 32 if name == "copy_memory" else 16, [[1.0, 2.0]], [0],
                    seq_len, TrainingConfig(steps=steps, batch_size=32, val_batch_size=256))
    assert not result.diverged.any()
    assert (result.val_accuracy > task.chance() + 0.1).all(), result.val_accuracy


def _textbook_scheduler(optimizer, config):
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps,
                                                      eta_min=0.0)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_adam_and_schedule_equal_torch_optim(schedule, clip):
    # Per point: clip_grad_norm_ on its own row, torch.optim.Adam, the torch scheduler, fed
    # the same gradients. Same arithmetic op for op; the cosine differs only by the
    # scheduler's recursive form (rounding ~1e-16 per step), hence rtol 1e-12 (float64).
    config = TrainingConfig(steps=12, lr=0.05, schedule=schedule, clip=clip)
    gen = torch.Generator().manual_seed(0)
    points, size = 4, 9
    # Rows of very different sizes: clipping acts on some rows and steps and not on others.
    scale = torch.tensor([1e-3, 0.1, 1.0, 30.0], dtype=F64)[:, None]
    grads = [torch.randn(points, size, generator=gen, dtype=F64) * scale
             for _ in range(config.steps)]
    theta0 = torch.randn(points, size, generator=gen, dtype=F64)

    theta, state = theta0.clone(), AdamState.zeros(theta0)
    frozen = torch.zeros(points, dtype=torch.bool)
    for step, grad in enumerate(grads):
        norm = torch.linalg.vector_norm(grad, dim=-1)
        if clip is not None:
            grad = clip_per_point(grad, norm, clip)
        adam_update(theta, grad, state, config.lr * schedule_factor(config, step), config,
                    frozen)

    rows = [torch.nn.Parameter(row.clone()) for row in theta0]
    optimizer = torch.optim.Adam(rows, lr=config.lr, betas=config.betas, eps=config.eps)
    scheduler = _textbook_scheduler(optimizer, config)
    for grad in grads:
        for row, row_grad in zip(rows, grad, strict=True):
            row.grad = row_grad.clone()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(row, clip)
        optimizer.step()
        scheduler.step()
    expected = torch.stack([row.detach() for row in rows])
    torch.testing.assert_close(theta, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(state.exp_avg_sq, torch.stack(
        [optimizer.state[row]["exp_avg_sq"] for row in rows]), rtol=1e-12, atol=0)


def test_a_frozen_point_stays_put_and_leaves_the_others_unchanged():
    config = TrainingConfig(steps=6, lr=0.1)
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(3, 5, generator=gen, dtype=F64) for _ in range(config.steps)]
    theta0 = torch.randn(3, 5, generator=gen, dtype=F64)
    runs = []
    for freeze_at in (None, 2):
        theta, state = theta0.clone(), AdamState.zeros(theta0)
        frozen = torch.zeros(3, dtype=torch.bool)
        for step, grad in enumerate(grads):
            if step == freeze_at:
                frozen[1] = True
                grad = grad.clone()
                grad[1] = math.nan  # what a diverged point's gradient looks like
                before = theta[1].clone()
            adam_update(theta, grad, state, config.lr * schedule_factor(config, step),
                        config, frozen)
        runs.append(theta)
    assert torch.equal(runs[1][1], before)
    assert torch.equal(runs[1][[0, 2]], runs[0][[0, 2]])


def _objective_rebuilt(cell, task, params, readout, hidden, seq_len, batch_size, seed):
    """build_objective as it was before the problem was built once: the parameters flattened
    again, and every point its own teacher (targets at recurrent_scale = reference)."""
    batch = task.batch(seed, "train", batch_size, seq_len)
    model, theta = PointModel.from_params(cell, hidden, params, readout)
    inputs = batch.inputs[None]
    x0 = torch.zeros(1, 1, batch_size, cell.state_size(hidden), dtype=F64)
    targets = batch.targets
    if targets is None:
        teachers = CellParams(params.weights,
                              torch.full_like(params.recurrent_scale, task.reference_scale),
                              params.input_scale, dict(params.meta))
        teacher, teacher_theta = PointModel.from_params(cell, hidden, teachers, readout)
        with torch.no_grad():
            targets = teacher.forward(teacher_theta, inputs,
                                      x0.expand(teacher_theta.shape[0], -1, -1, -1))
    return Objective(model, task.loss_kind, inputs, targets, batch.mask, x0), theta


def _train_textbook(cell, task, params, readout, hidden, seq_len, config):
    """Per step: a freshly built objective, then per point clip_grad_norm_, torch.optim.Adam
    and the torch scheduler. Returns (theta, last train loss)."""
    _, theta0 = PointModel.from_params(cell, hidden, params, readout)
    rows = [torch.nn.Parameter(row.clone()) for row in theta0]
    optimizer = torch.optim.Adam(rows, lr=config.lr, betas=config.betas, eps=config.eps)
    scheduler = _textbook_scheduler(optimizer, config)
    for step in range(config.steps):
        objective, _ = _objective_rebuilt(cell, task, params, readout, hidden, seq_len,
                                          config.batch_size,
                                          config.data_seed * 1_000_003 + step)
        optimizer.zero_grad()
        loss = objective(torch.stack(rows))
        loss.sum().backward()
        for row in rows:
            torch.nn.utils.clip_grad_norm_(row, config.clip)
        optimizer.step()
        scheduler.step()
    return torch.stack([row.detach() for row in rows]), loss.detach()


@pytest.mark.parametrize(("cell", "name", "params", "seq_len"), [
    ("gru", "teacher", {"reference": 0.9}, 15),
    # prepare() projects each point's own weights (G * M layout): teachers must follow.
    ("stable_lstm", "teacher", {"reference": 1.3}, 15),
    ("rnn_tanh", "temporal_order", {"t1_lo": 1, "t1_hi": 4, "t2_lo": 6, "t2_hi": 9}, 12),
])
def test_training_equals_the_textbook_loop_that_rebuilds_the_objective(cell, name, params,
                                                                       seq_len):
    # Two groups; group 0 has a point with its own input scale (its own teacher).
    task = get_task(name, params)
    hidden, seeds = 6, [0, 1]
    rs = torch.tensor([[0.5, 1.0, 1.5], [0.8, 1.2, 2.0]], dtype=F64)
    ins = torch.tensor([[1.0, 1.0, 0.5], [1.0, 1.0, 1.0]], dtype=F64)
    weights = build_params(CELLS[cell], hidden, task.input_size, seeds, rs, ins, F64, CPU)
    readout = init_readout(task.readout, task.output_size, hidden, seeds, F64, CPU)
    config = TrainingConfig(steps=8, batch_size=4, val_batch_size=8, lr=0.05, clip=0.3)
    result = train(CELLS[cell], task, weights, readout, hidden, seq_len, config)
    theta, loss = _train_textbook(CELLS[cell], task, weights, readout, hidden, seq_len, config)
    assert not result.diverged.any()
    torch.testing.assert_close(result.theta, theta, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(result.train_loss, loss, rtol=1e-12, atol=1e-16)
