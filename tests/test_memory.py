"""Memory metrics against theory: capacity of linear networks and closed-form horizons
(attractor counts: tests/test_attractors.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import F64, dynamics, params_from, random_params

from sweeper import CELLS, MemoryConfig, memory_capacity
from sweeper.cells._elman import haar_orthogonal


def test_linear_orthogonal_network_reaches_full_capacity():
    # A linear network with W = 0.9 Q (Q orthogonal) and a generic input vector has a
    # full-rank controllability matrix, so MC -> H - 1 (delays 1..H-1 are recoverable).
    hidden = 20
    gen = torch.Generator().manual_seed(0)
    weight = 0.9 * haar_orthogonal(hidden, gen)
    w_in = torch.randn(hidden, 1, generator=gen, dtype=F64)
    capacity, curve, finite = memory_capacity(CELLS["linear"], params_from(weight, w_in), 1,
                                              hidden, [0], MemoryConfig())
    assert finite.all()
    assert capacity.item() >= 0.97 * (hidden - 1)
    # Theory also caps it: MC <= number of state variables (slack 0.1 for the held-out noise
    # of the 2 * H - (H - 1) delays that carry no information).
    assert capacity.item() <= hidden + 0.1
    # Each r_k^2 is a squared correlation, and they add up to the capacity.
    assert curve.min().item() >= 0 and curve.max().item() <= 1
    assert curve.sum().item() == pytest.approx(capacity.item(), rel=1e-12)


def test_tanh_capacity_falls_as_input_scale_grows():
    # Stronger input saturates tanh and wipes older inputs: MC decreases monotonically.
    params = random_params("rnn_tanh", 50, [0], [[0.9] * 4], input_scales=[[0.1, 0.5, 1.5, 4.0]])
    capacity, _, _ = memory_capacity(CELLS["rnn_tanh"], params, 1, 50, [0], MemoryConfig())
    values = capacity[0].numpy()
    assert np.all(np.diff(values) < 0), values


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.97])
def test_memory_horizon_of_scaled_orthogonal_map_is_closed_form(rho):
    # For x' = rho Q x every perturbation shrinks by exactly rho per step, so the first t with
    # rho^t < tol is floor(log tol / log rho) + 1.
    hidden = 8
    weight = rho * haar_orthogonal(hidden, torch.Generator().manual_seed(1))
    tol = 1e-3
    result = dynamics("linear", params_from(weight), 400, 300, burn_in=0, lipschitz_samples=0,
                      horizon_tol=tol)
    expected = math.floor(math.log(tol) / math.log(rho)) + 1
    assert result.memory_horizon.item() == expected
    assert not result.memory_horizon_capped.item()


def test_memory_horizon_is_capped_and_flagged_for_expanding_maps():
    weight = 1.05 * haar_orthogonal(6, torch.Generator().manual_seed(2))
    result = dynamics("linear", params_from(weight), 100, 80, burn_in=0, lipschitz_samples=0,
                      x0=torch.zeros(1, 1, 1, 6, dtype=F64))
    assert result.memory_horizon.item() == 80
    assert result.memory_horizon_capped.item()


@pytest.mark.parametrize("a", [0.5, 0.8])
def test_scalar_linear_network_has_capacity_a_squared(a):
    # x' = a x + u with i.i.d. u: x_t = sum_j a^j u_{t-j}, so r_k^2 = a^(2k) (1 - a^2) and
    # MC = sum_{k>=1} = a^2. 40 delays leave a^80 < 1e-7 out; on 20000 held-out steps each
    # r_k^2 carries a bias of O(1/20000) and noise of O(1/sqrt(20000)): measured MC 0.2536
    # (a = 0.5) and 0.6401 (a = 0.8), each r_k^2 within 0.0013 and 0.0025 of the truth; the
    # tolerances are 0.005 on MC and 0.01 on each r_k^2.
    config = MemoryConfig(train=5000, test=20000, max_delay=40)
    capacity, curve, finite = memory_capacity(CELLS["linear"], params_from([[a]], [[1.0]]), 1, 1,
                                              [0], config)
    assert finite.all()
    assert capacity.item() == pytest.approx(a**2, abs=0.005)
    k = torch.arange(1, 41, dtype=F64)
    torch.testing.assert_close(curve[0, 0], a ** (2 * k) * (1 - a**2), rtol=0, atol=0.01)


def test_washout_shorter_than_delays_is_rejected():
    from sweeper import SweeperInputError

    params = random_params("rnn_tanh", 10, [0], [[1.0]])
    with pytest.raises(SweeperInputError, match="washout"):
        memory_capacity(CELLS["rnn_tanh"], params, 1, 10, [0], MemoryConfig(washout=5))


def test_chunked_capacity_equals_one_batch():
    # Chunking only splits the batch of points; results match to rounding (float64).
    params = random_params("rnn_tanh", 12, [0, 1], [[0.5, 0.9, 1.2]] * 2)
    whole = memory_capacity(CELLS["rnn_tanh"], params, 1, 12, [0, 1], MemoryConfig())
    tiny = MemoryConfig(chunk_bytes=1)  # one point per chunk
    parts = memory_capacity(CELLS["rnn_tanh"], params, 1, 12, [0, 1], tiny)
    for a, b in zip(whole, parts, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    expanded = CELLS["stable_lstm"].prepare(random_params("lstm", 4, [0, 1], [[1.0, 2.0]] * 2))
    whole = memory_capacity(CELLS["lstm"], expanded, 1, 8, [0, 0, 1, 1], MemoryConfig())
    parts = memory_capacity(CELLS["lstm"], expanded, 1, 8, [0, 0, 1, 1], tiny)
    for a, b in zip(whole, parts, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_default_washout_covers_the_delays_of_large_states():
    # Default K_max = 2 D; the default washout grows with it, so H = 256 works out of the box.
    config = MemoryConfig()
    assert config.washout_steps(512) == config.delays(512) == 1024
    assert config.washout_steps(20) == 200


def _plain_capacity(cell, params, input_size, state_size, seeds, config):
    """The fit as first written (before issue 13): stack every state, build the float64 design
    [X, 1] and the lagged targets, solve, predict the held-out segment, correlate. The
    reference for the blocked normal equations of ``memory_capacity``."""
    from sweeper.dynamics import rollout
    from sweeper.seeding import generator

    delays, washout = config.delays(state_size), config.washout_steps(state_size)
    groups, members = params.recurrent_scale.shape
    steps = washout + config.train + config.test
    u = torch.stack([torch.rand(steps, generator=generator(s, "memory-inputs"), dtype=F64) * 2
                     - 1 for s in seeds])
    inputs = torch.zeros(groups, 1, steps, input_size, dtype=F64)
    inputs[..., 0] = u[:, None]
    x0 = torch.zeros(groups, members, 1, state_size, dtype=params.dtype)
    states = rollout(cell, params, inputs, x0, keep_from=washout)[:, :, 0].double()
    design = torch.cat([states, torch.ones(*states.shape[:-1], 1, dtype=F64)], dim=-1)
    lags = torch.arange(washout, steps)[:, None] - torch.arange(1, delays + 1)[None, :]
    targets = u[:, lags][:, None]
    fit, held = slice(0, config.train), slice(config.train, None)
    gram = design[..., fit, :].mT @ design[..., fit, :]
    scale = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1)
    gram = gram + config.ridge * scale[..., None, None] * torch.eye(gram.shape[-1], dtype=F64)
    weights = torch.linalg.solve(gram, design[..., fit, :].mT @ targets[..., fit, :])
    pred = design[..., held, :] @ weights
    pred_c = pred - pred.mean(-2, keepdim=True)
    y_c = targets[..., held, :] - targets[..., held, :].mean(-2, keepdim=True)
    curve = (pred_c * y_c).sum(-2) ** 2 / ((pred_c**2).sum(-2) * (y_c**2).sum(-2))
    return curve.sum(-1), curve


@pytest.mark.parametrize(("cell", "hidden"), [("rnn_tanh", 24), ("gru", 12)])
def test_blocked_fit_equals_the_plain_fit(cell, hidden):
    # memory_capacity folds blocks of states into the normal equations and the held-out
    # correlation sums; in float64 that is the plain fit up to rounding. The solve amplifies
    # rounding by the condition number of the ridge system (up to ~1e8): measured differences
    # are below 2e-11 on r_k^2 and 6e-11 on MC; the tolerance is 1e-9 on each.
    params = random_params(cell, hidden, [0, 1], [[0.3, 0.9, 1.5, 3.0]] * 2)
    config = MemoryConfig(train=700, test=300)
    capacity, curve, finite = memory_capacity(CELLS[cell], params, 1, hidden, [0, 1], config)
    expected_capacity, expected_curve = _plain_capacity(CELLS[cell], params, 1, hidden, [0, 1],
                                                        config)
    assert finite.all()
    torch.testing.assert_close(curve, expected_curve, rtol=0, atol=1e-9)
    torch.testing.assert_close(capacity, expected_capacity, rtol=0, atol=1e-9)


def test_a_diverging_point_is_nan_only_for_itself():
    # x' = s Q x + w u with s = 1.5 overflows float64 within the protocol; the neighbours in
    # the batch keep the values they get alone.
    hidden = 6
    weight = haar_orthogonal(hidden, torch.Generator().manual_seed(3))
    w_in = torch.randn(hidden, 1, generator=torch.Generator().manual_seed(4), dtype=F64)
    config = MemoryConfig(train=600, test=300, washout=900)
    together = memory_capacity(CELLS["linear"], params_from(weight, w_in,
                                                            recurrent_scale=[0.5, 1.5, 0.9]),
                               1, hidden, [0], config)
    assert together[2][0].tolist() == [True, False, True]
    assert torch.isnan(together[1][0, 1]).all() and math.isnan(together[0][0, 1].item())
    for m, scale in ((0, 0.5), (2, 0.9)):
        alone = memory_capacity(CELLS["linear"], params_from(weight, w_in, recurrent_scale=scale),
                                1, hidden, [0], config)
        torch.testing.assert_close(together[1][0, m], alone[1][0, 0], rtol=0, atol=1e-12)
