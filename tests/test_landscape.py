"""Slice metrics on curves whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from sweeper.landscape import (
    loss_curvature,
    loss_lipschitz,
    n_local_minima,
    roughness_tv,
    slice_metrics,
)

F64 = torch.float64


def test_quadratic_has_one_minimum_and_tv_two():
    alpha = torch.linspace(-1, 1, 201, dtype=F64)
    loss = (3 * alpha**2 + 1)[None]
    assert n_local_minima(loss).item() == 1
    assert roughness_tv(loss).item() == pytest.approx(2.0, rel=1e-12)
    # Second divided differences are exact for a quadratic: V'' = 6.
    assert loss_curvature(alpha, loss).item() == pytest.approx(6.0, rel=1e-9)
    # |V'| = 6 |alpha| peaks at 6 on [-1, 1]; first differences see the chord slope of the
    # last cell, 6 * (1 - h/2) with h = 0.01.
    assert loss_lipschitz(alpha, loss).item() == pytest.approx(6 * (1 - 0.005), rel=1e-9)


@pytest.mark.parametrize("periods", [1, 3, 7])
def test_sinusoid_has_one_minimum_per_period(periods):
    # V = -cos(2 pi k alpha) on (0, 1), shifted so no minimum falls on an end point.
    alpha = torch.linspace(0.01, 1.01, 4001, dtype=F64)
    loss = -torch.cos(2 * math.pi * periods * alpha)
    assert n_local_minima(loss).item() == periods
    # Derivatives: max |V'| = 2 pi k, max |V''| = (2 pi k)^2, within the O(h) / O(h^2) grid
    # error of the differences (h = 2.5e-4): rel 1e-3.
    assert loss_lipschitz(alpha, loss).item() == pytest.approx(2 * math.pi * periods, rel=1e-3)
    assert loss_curvature(alpha, loss).item() == pytest.approx((2 * math.pi * periods) ** 2,
                                                               rel=1e-3)


def test_monotone_and_flat_stretches():
    ramp = torch.tensor([[0.0, 1.0, 1.0, 1.0, 2.0, 3.0]], dtype=F64)
    assert n_local_minima(ramp).item() == 0
    assert roughness_tv(ramp).item() == pytest.approx(1.0)
    assert roughness_tv(torch.ones(1, 5, dtype=F64)).item() == 1.0
    # A flat-bottomed valley is one minimum, however wide.
    valley = torch.tensor([[3.0, 1.0, 1.0, 1.0, 2.0, 3.0]], dtype=F64)
    assert n_local_minima(valley).item() == 1
    # A slice that starts flat and then rises has none.
    start_flat = torch.tensor([[1.0, 1.0, 1.0, 2.0]], dtype=F64)
    assert n_local_minima(start_flat).item() == 0


def test_batched_slices_and_divergence():
    alpha = torch.linspace(-1, 1, 101, dtype=F64)
    loss = torch.stack([alpha**2, -torch.cos(2 * math.pi * 2 * alpha), alpha])
    loss[2, 50] = math.inf
    metrics = slice_metrics(alpha, loss)
    # -cos(4 pi alpha) on [-1, 1] has minima at alpha = n / 2: three interior ones.
    assert metrics["n_local_minima"][:2].tolist() == [1.0, 3.0]
    for name, value in metrics.items():
        assert math.isnan(value[2].item()), name
        assert torch.isfinite(value[:2]).all(), name


def test_hessian_top_eig_equals_exact_hessian_on_the_chaotic_lstm():
    # 16 parameters (weight_hh of the 2-unit LSTM), N = 12, float64. Lanczos with 16 steps
    # spans the whole space, so the top eigenvalue matches the dense Hessian to rounding.
    from rnn_sweeper_tasks.chaotic_lstm import THETA_STAR
    from sweeper.landscape import grad_norm, hessian_top_eig
    from sweeper.paper import anchor_loss

    loss = anchor_loss(seq_len=12, burn_in=0)
    theta_star = torch.tensor(THETA_STAR, dtype=F64).reshape(-1)
    points = torch.stack([0.9 * theta_star, 1.1 * theta_star, 0.5 * theta_star])
    tops = hessian_top_eig(loss, points, steps=16)
    norms = grad_norm(loss, points)
    for k in range(3):
        single = lambda t: loss(t[None])[0]  # noqa: E731
        dense = torch.autograd.functional.hessian(single, points[k])
        exact = torch.linalg.eigvalsh(dense)[-1]
        assert tops[k].item() == pytest.approx(exact.item(), rel=1e-9, abs=1e-12)
        grad = torch.autograd.functional.jacobian(single, points[k])
        assert norms[k].item() == pytest.approx(grad.norm().item(), rel=1e-12)
    # At the reference itself the loss is 0 and the gradient vanishes.
    assert grad_norm(loss, theta_star[None]).item() == pytest.approx(0.0, abs=1e-12)


def _quadratic(theta):
    return (theta**2).sum(-1)


def test_slices_planes_and_segments_of_a_quadratic_are_exact():
    from sweeper.landscape import plane_losses, segment_losses, slice_losses

    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 5, generator=gen, dtype=F64)
    d1 = torch.randn(3, 5, generator=gen, dtype=F64)
    d2 = torch.randn(3, 5, generator=gen, dtype=F64)
    alphas = torch.linspace(-1, 1, 7, dtype=F64)
    # |theta + a d|^2 = |theta|^2 + 2 a theta.d + a^2 |d|^2
    expected = ((theta**2).sum(-1)[:, None] + 2 * alphas * (theta * d1).sum(-1)[:, None]
                + alphas**2 * (d1**2).sum(-1)[:, None])
    torch.testing.assert_close(slice_losses(_quadratic, theta, d1, alphas), expected)
    plane = plane_losses(_quadratic, theta, d1, d2, alphas, alphas[:3])
    assert plane.shape == (3, 7, 3)
    torch.testing.assert_close(plane[1, 4, 2], _quadratic(theta[1] + alphas[4] * d1[1]
                                                          + alphas[2] * d2[1]))
    seg = segment_losses(_quadratic, theta, d1, torch.tensor([0.0, 1.0], dtype=F64))
    torch.testing.assert_close(seg, torch.stack([_quadratic(theta), _quadratic(d1)], dim=1))


def test_filter_normalised_direction_matches_row_norms_and_skips_biases():
    from sweeper.landscape import filter_normalised_direction

    shapes = {"weight": (4, 3), "bias": (4,)}
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(2, 16, generator=gen, dtype=F64)
    direction = filter_normalised_direction(shapes, theta, torch.Generator().manual_seed(2))
    rows_d = direction[:, :12].reshape(2, 4, 3).norm(dim=-1)
    rows_t = theta[:, :12].reshape(2, 4, 3).norm(dim=-1)
    torch.testing.assert_close(rows_d, rows_t)
    assert torch.count_nonzero(direction[:, 12:]) == 0


def test_landscape_family_at_the_teacher_scale_is_a_zero_loss_minimum():
    # The teacher's targets are the network's own outputs at s = 0.8, so at s = 0.8 the loss
    # and its gradient vanish and the Hessian is positive semi-definite (Gauss-Newton).
    from sweeper import measure
    from sweeper.landscape_metrics import LandscapeConfig

    frame = measure("gru", 6, task="teacher", task_params={"reference": 0.8},
                    recurrent_scale=[0.8, 1.6], seq_len=30, metrics=["landscape"],
                    dtype="float64", landscape=LandscapeConfig(points=21, hessian_steps=12))
    at, away = frame.iloc[0], frame.iloc[1]
    assert at.loss == 0 and at.grad_norm == 0
    assert at.hessian_top_eig >= 0
    # Along s the slice through the minimum is one valley: a single interior minimum.
    assert at.n_local_minima == 1
    assert away.loss > 0 and away.grad_norm > 0


def test_landscape_needs_a_supervised_task():
    from sweeper import SweeperInputError, measure

    with pytest.raises(SweeperInputError, match="need a supervised task"):
        measure("rnn_tanh", 4, metrics=["landscape"])


def _dense_top_eig(loss, point):
    single = lambda t: loss(t[None])[0]  # noqa: E731
    return torch.linalg.eigvalsh(torch.autograd.functional.hessian(single, point))[-1].item()


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_exact_hessian_path_equals_dense_hessian_and_lanczos(cell):
    # float64, teacher task: the exact path (n <= 128) against torch.autograd.functional's
    # dense Hessian per point (rel 1e-9), and against Lanczos with steps = n, which spans the
    # whole space (rel 1e-6: Lanczos rounding grows with the Hessian's condition).
    from sweeper import CELLS
    from sweeper.landscape import hessian_top_eig, point_hessians
    from sweeper.measure import build_params
    from sweeper.model import init_readout
    from sweeper.objective import build_objective
    from sweeper.task import get_task

    cpu = torch.device("cpu")
    rs = torch.tensor([[0.5, 1.0, 1.5]], dtype=F64)
    params = build_params(CELLS[cell], 3, 1, [0], rs, torch.ones_like(rs), F64, cpu)
    readout = init_readout("linear", 1, 3, [0], F64, cpu)
    loss, theta = build_objective(CELLS[cell], get_task("teacher"), params, readout, 3, 8,
                                  batch_size=2)
    n = theta.shape[1]
    exact = hessian_top_eig(loss, theta)
    lanczos = hessian_top_eig(loss, theta, steps=n, exact_max_params=0)
    hessians = point_hessians(loss, theta)
    torch.testing.assert_close(hessians, hessians.mT, rtol=1e-9, atol=1e-12)
    for k in range(3):
        dense = _dense_top_eig(loss.subset(slice(k, k + 1)), theta[k])
        assert exact[k].item() == pytest.approx(dense, rel=1e-9, abs=1e-12)
        assert lanczos[k].item() == pytest.approx(dense, rel=1e-6, abs=1e-10)


def test_exact_hessian_diverging_point_is_nan_and_others_exact():
    from rnn_sweeper_tasks.chaotic_lstm import THETA_STAR
    from sweeper.landscape import hessian_top_eig
    from sweeper.paper import anchor_loss

    loss = anchor_loss(seq_len=12, burn_in=0)
    theta_star = torch.tensor(THETA_STAR, dtype=F64).reshape(-1)
    points = torch.stack([0.9 * theta_star, torch.full_like(theta_star, math.inf),
                          1.1 * theta_star, torch.full_like(theta_star, math.nan)])
    tops = hessian_top_eig(loss, points)
    assert math.isnan(tops[1].item()) and math.isnan(tops[3].item())
    for k in (0, 2):
        assert tops[k].item() == pytest.approx(_dense_top_eig(loss, points[k]), rel=1e-9)


def test_identical_sequences_are_evaluated_once():
    from sweeper import CELLS
    from sweeper.landscape_metrics import distinct_sequences
    from sweeper.measure import build_params
    from sweeper.model import init_readout
    from sweeper.objective import build_objective
    from sweeper.task import get_task

    task = get_task("chaotic_lstm", {"burn_in": 5})
    rs = torch.tensor([[0.8, 1.2]], dtype=F64)
    cpu = torch.device("cpu")
    params = build_params(CELLS["lstm"], 2, 1, [0], rs, torch.ones_like(rs), F64, cpu,
                          anchor=task.anchor("lstm", 2))
    readout = init_readout(task.readout, 2, 2, [0], F64, cpu)
    full, theta = build_objective(CELLS["lstm"], task, params, readout, 2, 20, batch_size=4)
    single = distinct_sequences(full)
    assert single.inputs.shape[1] == 1 and full.inputs.shape[1] == 4
    torch.testing.assert_close(single(theta), full(theta), rtol=1e-12, atol=0)
    # Random inputs differ between sequences: nothing to merge.
    teacher, _ = build_objective(CELLS["lstm"], get_task("teacher"), params,
                                 init_readout("linear", 1, 2, [0], F64, cpu), 2, 20,
                                 batch_size=4)
    assert distinct_sequences(teacher) is teacher
