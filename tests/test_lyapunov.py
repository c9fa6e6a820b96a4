"""Lyapunov exponents against closed forms and mean-field theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import F64, dynamics, mean_field_lyapunov, params_from, random_params

import sweeper.dynamics
from sweeper.cells import CELLS
from sweeper.dynamics import DynamicsConfig, run_dynamics
from sweeper.errors import SweeperInputError
from sweeper.lyapunov import (
    ADAPTIVE,
    BUDGET_BITS,
    EVERY_STEP,
    Reorthonormalisation,
    TangentBasis,
    orthonormalise,
)


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


# --- re-orthonormalisation every tau steps, Cholesky-QR with its Householder fall-back -------


@pytest.fixture
def bases(monkeypatch):
    """The TangentBasis of every dynamics pass run in the test, in order (their counts of
    QRs tell which rule ran)."""
    made = []

    class Recorded(TangentBasis):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(sweeper.dynamics, "TangentBasis", Recorded)
    return made


def _spectrum_pass(cell: str, params, x0, steps: int, burn_in: int, policy):
    """run_dynamics at zero input with every exponent (k = D) under ``policy``."""
    cell_obj = CELLS[cell]
    params = cell_obj.prepare(params)
    groups = params.recurrent_scale.shape[0]
    inputs = torch.zeros(groups, 1, steps, params.weights["weight_ih"].shape[2], dtype=F64)
    config = DynamicsConfig(burn_in=burn_in, lyapunov_k=x0.shape[-1], lipschitz_samples=0)
    return run_dynamics(cell_obj, params, inputs, x0, steps - burn_in, config,
                        list(range(groups)), reorthonormalisation=policy)


def _graded_weight(hidden: int) -> torch.Tensor:
    """P diag(d) P^-1 with |d| from 1.3 to 1e-3: exponents 7.2 nats apart, so the budget,
    not tau_max, sets the interval, and a non-normal P (condition ~10)."""
    gen = torch.Generator().manual_seed(0)
    torch.randn(hidden, hidden, generator=gen)  # the draw of _linear_weight's W, skipped
    basis = torch.randn(hidden, hidden, generator=gen, dtype=F64)
    moduli = torch.tensor([1.3, -1.0, 0.4, -0.15, 0.05, -0.01], dtype=F64)
    return basis @ torch.diag(moduli) @ torch.linalg.inv(basis)


@pytest.mark.parametrize("weight, cholesky", [("gaussian", True), ("graded", False)])
def test_adaptive_reorthonormalisation_matches_every_step_on_linear_spectra(bases, weight,
                                                                            cholesky):
    """x' = s W x: log|eig(s W)| exactly. The adaptive rule and a Householder QR every step
    run the same trajectory (x = 0), so they differ only by the rule's rounding: the budget
    keeps K = 20 bits of each R_jj, 2^-20 = 1e-6 relative per QR, so the averages agree to
    1e-6 (measured 1e-12 for the Gaussian W; 2e-7 for the graded one, whose QRs lose 32
    bits). Both are within 1e-3 of the closed form (QR-Benettin converges like 1/T for a
    non-normal W; measured 4e-4). The adaptive pass must do under half the QRs (tau > 1),
    mostly by Cholesky-QR for the Gaussian W (narrow spectrum: tau_max) and by Householder
    for the graded one (2 tau_C < tau_H), and leave the memory horizon (the first tangent's
    growth per step) unchanged."""
    hidden, scales = 6, [0.8, 1.0, 1.5]
    w = (torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(0), dtype=F64)
         / math.sqrt(hidden)) if weight == "gaussian" else _graded_weight(hidden)
    x0 = torch.zeros(1, len(scales), 1, hidden, dtype=F64)
    adaptive, every = (_spectrum_pass("linear", params_from(w, recurrent_scale=scales), x0,
                                      2200, 200, policy) for policy in (ADAPTIVE, EVERY_STEP))
    exact = (np.sort(np.log(np.abs(np.linalg.eigvals(w.numpy()))))[::-1][None]
             + np.log(scales)[:, None])
    np.testing.assert_allclose(adaptive.lyapunov[0].numpy(), every.lyapunov[0].numpy(),
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(adaptive.lyapunov[0].numpy(), exact, atol=1e-3)
    np.testing.assert_array_equal(adaptive.memory_horizon, every.memory_horizon)
    rule, reference = bases
    assert reference.factorisations == 2200 * len(scales)
    assert rule.factorisations < reference.factorisations / 2
    by_cholesky = rule.factorisations - rule.householder - rule.fallbacks
    assert (by_cholesky > rule.householder) == cholesky


def test_adaptive_reorthonormalisation_matches_every_step_on_the_lru(bases):
    """The LRU's exponents are log(s |lambda_j|), each twice, for every input. Float64, 300
    averaged steps, 2 seeds x 3 scales: the adaptive rule within 1e-9 of a QR every step
    (a normal map loses no bits: measured 1e-15) and both within 1e-4 of the closed form
    (a conjugate pair's two exponents trade growth back and forth and agree only on
    average; measured 1.2e-5). Under a fifth of the QRs (the spectrum is narrow: tau_max)."""
    hidden, scales = 6, [0.5, 1.0, 1.2]
    params = random_params("lru", hidden, [0, 1], [scales, scales])
    gen = torch.Generator().manual_seed(1)
    x0 = (torch.rand(2, 1, 1, 2 * hidden, generator=gen, dtype=F64) * 2 - 1).expand(
        2, len(scales), 1, 2 * hidden)
    adaptive, every = (_spectrum_pass("lru", params, x0, 400, 100, policy)
                       for policy in (ADAPTIVE, EVERY_STEP))
    moduli = CELLS["lru"].moduli(params.weights["weight_hh"]).numpy()  # (G, H)
    exact = np.stack([[np.repeat(np.sort(np.log(s * m))[::-1], 2) for s in scales]
                      for m in moduli])
    np.testing.assert_allclose(adaptive.lyapunov.numpy(), every.lyapunov.numpy(), atol=1e-9,
                               rtol=0)
    np.testing.assert_allclose(adaptive.lyapunov.numpy(), exact, atol=1e-4)
    rule, reference = bases
    assert rule.factorisations < reference.factorisations / 5


def _orthonormal_columns(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=F64))[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cholesky_qr_equals_householder_on_a_well_conditioned_block(dtype):
    """16 Gaussian blocks (k = 5, D = 8; no column lost more than 1.2 bits): Cholesky-QR
    keeps every block and gives Householder's rows (up to each row's sign, which Householder
    leaves as LAPACK gives it) and log-diagonal within 100 eps of the dtype (both are
    backward stable here; measured 4 eps), and orthonormal rows."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(16, 5, 8, generator=gen, dtype=F64).to(dtype)
    done, reference = orthonormalise(v, BUDGET_BITS[dtype]), orthonormalise(v, 1.0, False)
    tol = 100 * torch.finfo(dtype).eps
    assert not done.householder.any() and reference.householder.all()
    signs = torch.sign((done.rows * reference.rows).sum(-1, keepdim=True))
    np.testing.assert_allclose(done.rows.numpy(), (signs * reference.rows).numpy(), atol=tol,
                               rtol=0)
    np.testing.assert_allclose(done.logs.numpy(), reference.logs.numpy(), atol=tol, rtol=0)
    np.testing.assert_allclose((done.rows @ done.rows.mT).numpy(),
                               np.broadcast_to(np.eye(5), (16, 5, 5)), atol=tol, rtol=0)


def test_an_ill_conditioned_block_falls_back_to_householder():
    """Rows v = L Q^T with Q orthonormal (D = 7, k = 4) and diag(L) = (1, 2^-21, 1, 0.5):
    the second row lies 2^-21 off the first, so it has lost 21 bits, more than the 16.5
    that Cholesky-QR may lose in float64. Those blocks fall back to Householder and get
    log|diag L| within 1e-8 (Householder loses the 21 bits once: ~eps 2^21 = 5e-10;
    measured 4e-10), while Cholesky-QR alone is off by more than 1e-5 on some block (it
    loses them twice; measured 5e-4 and 5e-3 on two of these five, 1e-9 on the others).
    In the same batch a well-conditioned block keeps Cholesky-QR, and a block with a zero
    row (a singular Gram matrix) falls back and gets log 0 = -inf for that row."""
    gen = torch.Generator().manual_seed(0)
    blocks, exact = [], []
    for _ in range(5):
        factor = torch.tril(torch.randn(4, 4, generator=gen, dtype=F64))
        factor.diagonal().copy_(torch.tensor([1.0, 2.0**-21, 1.0, 0.5], dtype=F64))
        factor[1, 0] = 1.0
        blocks.append(factor @ _orthonormal_columns(7, 4, gen).mT)
        exact.append(torch.log(factor.diagonal()))
    well = torch.randn(4, 7, generator=gen, dtype=F64)
    singular = torch.randn(4, 7, generator=gen, dtype=F64)
    singular[2] = 0.0
    v = torch.stack([*blocks, well, singular])
    done = orthonormalise(v, BUDGET_BITS[F64])
    assert done.householder.tolist() == [True] * 5 + [False, True]
    assert (done.lost[:5] > 20).all() and done.lost[5] < 3
    np.testing.assert_allclose(done.logs[:5].numpy(), torch.stack(exact).numpy(), atol=1e-8,
                               rtol=0)
    reference = orthonormalise(v[5:], 1.0, cholesky=False)
    np.testing.assert_allclose(done.logs[5].numpy(), reference.logs[0].numpy(), atol=1e-13,
                               rtol=0)
    assert done.logs[6, 2] == -math.inf and done.logs[6, :2].isfinite().all()
    np.testing.assert_allclose((done.rows[:6] @ done.rows[:6].mT).numpy(),
                               np.broadcast_to(np.eye(4), (6, 4, 4)), atol=1e-13, rtol=0)
    unchecked = orthonormalise(v[:5], budget_bits=200.0)  # Cholesky-QR kept whatever the loss
    assert not unchecked.householder.any()
    assert (unchecked.logs - torch.stack(exact)).abs().max() > 1e-5


def _guarded_run(policy, limit: float | None = None):
    """Float32 tangents (k = D = 3) of x' = x for 40 steps, then of x' = e^12 U diag(1, e^-1,
    e^-2) U^T x for 40 more, driven through a TangentBasis by hand; the exponents of the
    last 40 steps."""
    gen = torch.Generator().manual_seed(0)
    rotation = _orthonormal_columns(3, 3, gen)
    growth = torch.diag(torch.tensor([1.0, math.exp(-1), math.exp(-2)], dtype=F64))
    jacobian = (math.exp(12.0) * rotation @ growth @ rotation.mT).float()
    v = orthonormalise(torch.randn(1, 3, 3, generator=gen, dtype=F64), 33.0).rows.float()
    basis = TangentBasis(policy, 1, 3, torch.float32, burn_in=40, steps=80)
    if limit is not None:
        basis.limit = limit
    logs = torch.zeros(80, 1, 3, dtype=F64)
    for t in range(80):
        v = v @ jacobian.mT if t >= 40 else v.clone()
        basis.advance(t, v, logs[t])
    return logs[40:].sum(0)[0] / 40


def test_the_overflow_guard_reorthonormalises_before_the_tangents_overflow():
    """40 steps of the identity make the running exponents 0, so the rule asks for tau_max
    = 16; then every step multiplies by e^12, and 16 steps would reach e^192, far beyond
    float32's e^88. The guard (the first column grown by more than L = 22 nats) forces a QR
    after 2 steps: the exponents stay finite and equal a float32 QR every step within 1e-4
    (float32 rounding of 40 steps; measured 2e-8). With the guard off, the same run turns
    to NaN: the check can fail."""
    guarded, every = _guarded_run(ADAPTIVE), _guarded_run(EVERY_STEP)
    assert guarded.isfinite().all()
    np.testing.assert_allclose(guarded.numpy(), every.numpy(), atol=1e-4, rtol=0)
    assert not _guarded_run(ADAPTIVE, limit=math.inf).isfinite().all()


def test_reorthonormalisation_settings_are_checked():
    with pytest.raises(SweeperInputError, match="tau_max must be an integer >= 1, got "
                                                "tau_max=0"):
        Reorthonormalisation(tau_max=0)
    with pytest.raises(SweeperInputError, match="budget_bits"):
        Reorthonormalisation(budget_bits=-1.0)
