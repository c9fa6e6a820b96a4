"""Memory metrics against theory: capacity of linear networks, closed-form horizons, and
attractor counts of maps whose fixed points are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import F64, dynamics, params_from, random_params

from sweeper import CELLS, MemoryConfig, attractor_count, memory_capacity
from sweeper.cells._elman import haar_orthogonal
from sweeper.memory import count_clusters


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


def test_attractor_count_of_one_unit_tanh_map():
    # x' = tanh(w x): one fixed point (0) for w <= 1, two stable ones (+-x*) for w > 1.
    params = params_from([[1.0]], recurrent_scale=[0.5, 2.0, 3.0])
    count, finite = attractor_count(CELLS["rnn_tanh"], params, torch.zeros(1, dtype=F64), 1,
                                    [0], MemoryConfig())
    assert finite.all()
    assert count[0].tolist() == [1.0, 2.0, 2.0]


def test_count_clusters_on_hand_built_points():
    points = torch.tensor([[[0.0, 0.0], [0.001, 0.0], [1.0, 1.0], [1.0, 1.005], [5.0, 5.0]],
                           [[0.0, 0.0]] * 5], dtype=F64)
    assert count_clusters(points, 1e-2).tolist() == [3.0, 1.0]
    points[1, 2, 0] = math.inf
    result = count_clusters(points, 1e-2)
    assert result[0].item() == 3.0 and math.isnan(result[1].item())


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
