"""Lyapunov exponents against closed forms and mean-field theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import F64, dynamics, mean_field_lyapunov, params_from, random_params


def test_linear_spectrum_equals_log_abs_eigenvalues():
    # x' = W x has the exact spectrum log|eig(W)|. QR-Benettin converges like 1/T for a
    # non-normal W; with T = 6000 float64 steps the error is ~2e-4, tolerance 1e-3.
    gen = torch.Generator().manual_seed(0)
    hidden = 6
    weight = torch.randn(hidden, hidden, generator=gen, dtype=F64) / math.sqrt(hidden)
    result = dynamics("linear", params_from(weight), 6000, 5800,
                      x0=torch.zeros(1, 1, 1, hidden, dtype=F64), burn_in=200,
                      lyapunov_k=hidden, lipschitz_samples=0)
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(weight.numpy()))))[::-1]
    np.testing.assert_allclose(result.lyapunov[0, 0].numpy(), expected, atol=1e-3)


def test_zero_input_tanh_below_one_matches_linearisation_at_origin():
    # For g < 1 the origin attracts every state and J -> g W there, so
    # lambda_1 = log(g * rho(W)). Float64, T = 3000 after 500 steps of burn-in; tol 5e-3.
    hidden = 12
    gains = [0.3, 0.6, 0.9]
    params = random_params("rnn_tanh", hidden, [3], [gains])
    result = dynamics("rnn_tanh", params, 3500, 3000, burn_in=500, lipschitz_samples=0)
    rho = np.abs(np.linalg.eigvals(params.weights["weight_hh"][0].numpy())).max()
    expected = np.log(np.array(gains) * rho)
    np.testing.assert_allclose(result.lyapunov[0, :, 0].numpy(), expected, atol=5e-3)


@pytest.mark.slow
@pytest.mark.parametrize("gain", [2.0, 3.0])
def test_large_tanh_network_matches_mean_field(gain):
    # H = 1000, 4 seeds, 200 burn-in + 1000 averaged steps, float32. Measured deviations:
    # 0.0014 (g = 2) and 0.0045 (g = 3) nats/step. Tolerance 0.015 nats/step (5 % at g = 3),
    # which leaves room for finite-size and sampling error.
    params = random_params("rnn_tanh", 1000, [0, 1, 2, 3], [[gain]] * 4, dtype=torch.float32)
    result = dynamics("rnn_tanh", params, 1200, 1000, burn_in=200, lipschitz_samples=0)
    measured = result.lyapunov[..., 0].mean().item()
    assert measured == pytest.approx(mean_field_lyapunov(gain), abs=0.015)


def test_mean_field_reference_is_right_at_known_points():
    # Below the transition (g < 1, sigma = 0) q = 0 and lambda = log g exactly.
    assert mean_field_lyapunov(0.5) == pytest.approx(math.log(0.5), abs=1e-9)
    # The transition of the autonomous network is at g = 1 (lambda crosses 0).
    assert mean_field_lyapunov(1.02) > 0 > mean_field_lyapunov(0.98)


def test_two_trajectory_cross_check_agrees_with_benettin():
    # Contracting points follow one trajectory; the two start from different directions, so
    # they agree up to that transient (measured 1e-6, tol 1e-5). Chaotic points:
    # the twin re-runs the state with a differently rounded product, so after a few dozen
    # steps it follows another trajectory of the same attractor; the exponents then agree
    # statistically. H = 100, 2000 averaged float64 steps: measured gap 0.0014; tol 5e-3.
    params = random_params("rnn_tanh", 100, [0], [[0.5, 1.5, 2.5]])
    result = dynamics("rnn_tanh", params, 2200, 2000, burn_in=200, lipschitz_samples=0,
                      twin=True)
    twin, benettin = result.lyapunov_twin[0].numpy(), result.lyapunov[0, :, 0].numpy()
    assert twin[0] == pytest.approx(benettin[0], abs=1e-5)
    np.testing.assert_allclose(twin, benettin, atol=5e-3)


def test_zero_jacobian_gives_minus_infinity_not_nan():
    params = random_params("linear", 4, [0], [[0.0, 1.0]])
    result = dynamics("linear", params, 50, 40, burn_in=10, lipschitz_samples=0)
    assert result.lyapunov[0, 0, 0].item() == -math.inf
    assert math.isfinite(result.lyapunov[0, 1, 0].item())
