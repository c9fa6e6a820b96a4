"""What the spectrum says (sweeper.spectrum): the Kaplan-Yorke dimension, the entropy rate and
the count of positive exponents, by hand, on the closed-form spectra of the linear cell and
the LRU, and through measure()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import F64, dynamics, params_from, random_params

import sweeper.dynamics
from sweeper import lyapunov, measure
from sweeper.cells import CELLS
from sweeper.dynamics import DynamicsConfig, run_dynamics
from sweeper.seeding import generator
from sweeper.spectrum import entropy_rate, kaplan_yorke_dimension, positive_count

NAN = math.nan


def _spectra(*rows):
    return torch.tensor(rows, dtype=F64)


def test_kaplan_yorke_by_hand():
    # [0.5, -0.2, -1.0]: S_1 = 0.5, S_2 = 0.3, S_3 = -0.7, so j = 2 and D = 2 + 0.3 / 1.0.
    # [0.4, -0.4, -1.0]: S_2 = 0 counts as non-negative, D = 2 + 0 / 1.0 (continuous there).
    # A -inf exponent (a direction a zero Jacobian kills) brackets with D = j.
    spectra = _spectra([0.5, -0.2, -1.0], [0.4, -0.4, -1.0], [0.3, -0.5, -0.6],
                       [-0.1, -0.2, -0.3], [0.5, 0.4, -math.inf], [-math.inf] * 3)
    expected = [2.3, 2.0, 1 + 0.3 / 0.5, 0.0, 2.0, 0.0]
    np.testing.assert_allclose(kaplan_yorke_dimension(spectra).numpy(), expected, rtol=1e-15)


def test_entropy_rate_and_positive_count_by_hand():
    spectra = _spectra([0.5, 0.1, -1.0], [0.5, 0.0, -1.0], [-0.1, -0.2, -0.3],
                       [0.5, 0.4, -math.inf])
    np.testing.assert_allclose(entropy_rate(spectra).numpy(), [0.6, 0.5, 0.0, 0.9],
                               rtol=1e-15)
    np.testing.assert_array_equal(positive_count(spectra).numpy(), [2, 1, 0, 2])


def test_a_spectrum_too_short_to_decide_gives_nan():
    # The 3 exponents still sum to >= 0: lambda_4 .. lambda_D are needed to bracket D.
    # The smallest measured exponent is positive: more positive ones may be missing.
    short = _spectra([0.3, -0.1, -0.1], [0.5, 0.4, 0.1])
    assert kaplan_yorke_dimension(short).isnan().all()
    assert entropy_rate(short)[1].isnan() and positive_count(short)[1].isnan()
    assert entropy_rate(short)[0].item() == pytest.approx(0.3, abs=1e-15)
    # The same exponents as the whole spectrum (k = D): nothing is missing.
    np.testing.assert_array_equal(kaplan_yorke_dimension(short, complete=True).numpy(), [3, 3])
    assert entropy_rate(short, complete=True)[1].item() == pytest.approx(1.0, abs=1e-15)
    assert positive_count(short, complete=True)[1].item() == 3


def test_one_exponent_decides_only_a_contracting_point():
    # k = 1 (the default): lambda_1 < 0 gives D = 0, entropy 0, no positive exponent;
    # lambda_1 >= 0 leaves D undetermined, and lambda_1 > 0 the entropy too.
    spectra = _spectra([-0.2], [0.0], [0.3])
    np.testing.assert_array_equal(kaplan_yorke_dimension(spectra).numpy(), [0, NAN, NAN])
    np.testing.assert_array_equal(entropy_rate(spectra).numpy(), [0, 0, NAN])
    np.testing.assert_array_equal(positive_count(spectra).numpy(), [0, 0, NAN])


def test_a_diverged_point_stays_nan_and_leaves_the_others():
    spectra = _spectra([NAN, NAN, NAN], [0.5, -0.2, -1.0])
    for quantity in (kaplan_yorke_dimension, entropy_rate, positive_count):
        values = quantity(spectra, complete=True)
        assert values[0].isnan() and values[1].isfinite()


def test_batched_equals_looped():
    gen = torch.Generator().manual_seed(3)
    spectra = torch.sort(torch.randn(4, 5, 6, generator=gen, dtype=F64) + 0.3,
                         descending=True).values
    for quantity in (kaplan_yorke_dimension, entropy_rate, positive_count):
        batched = quantity(spectra)
        for index in np.ndindex(4, 5):
            np.testing.assert_array_equal(batched[index].numpy(),
                                          quantity(spectra[index]).numpy())


def _linear_weight(hidden: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(hidden, hidden, generator=gen, dtype=F64) / math.sqrt(hidden)


def test_linear_cell_dimension_and_entropy_match_its_eigenvalues():
    """x' = s W x has the exponents log|eig(s W)|, so D and the entropy follow in closed form.
    Scales 0.8 (lambda_1 < 0: D = 0), 1.0 (j = 2, D = 2.16), 1.2 (j = 3, D = 3.27) and 1.5 (all
    6 exponents sum to > 0: NaN for k = 4, D = 6 for k = D). Float64, 3000 steps (2800
    averaged): exponents within 1e-3 (QR-Benettin converges like 1/T for a non-normal W,
    measured error 4e-4); D moves by at most sum_i |dD/d lambda_i| 1e-3 <= 1e-2 here
    (|lambda_{j+1}| >= 0.35), the entropy by 2e-3 (two positive exponents). The first k of
    the D tangent vectors span what k vectors alone would (Gram-Schmidt is nested), so the
    leading 4 exponents stand for a k = 4 run."""
    hidden, scales = 6, [0.8, 1.0, 1.2, 1.5]
    weight = _linear_weight(hidden)
    exact = np.sort(np.log(np.abs(np.linalg.eigvals(weight.numpy()))))[::-1]
    expected = torch.as_tensor(exact[None] + np.log(scales)[:, None])
    result = dynamics("linear", params_from(weight, recurrent_scale=scales), 3000, 2800,
                      x0=torch.zeros(1, len(scales), 1, hidden, dtype=F64), burn_in=200,
                      lyapunov_k=hidden, lipschitz_samples=0)
    full = result.lyapunov[0]
    np.testing.assert_allclose(full.numpy(), expected.numpy(), atol=1e-3)
    dimension = kaplan_yorke_dimension(full, complete=True)
    np.testing.assert_allclose(dimension.numpy(),
                               kaplan_yorke_dimension(expected, complete=True).numpy(),
                               atol=1e-2)
    assert dimension[0] == 0 and dimension[3] == hidden
    assert 2 < dimension[1] < 3 and 3 < dimension[2] < 4  # the cases the docstring names
    np.testing.assert_allclose(entropy_rate(full, complete=True).numpy(),
                               entropy_rate(expected, complete=True).numpy(), atol=2e-3)
    np.testing.assert_array_equal(positive_count(full).numpy(),
                                  positive_count(expected).numpy())
    # k = 4 brackets D at 0.8, 1.0 and 1.2, and not at 1.5, where 4 exponents sum to 1.53.
    truncated = kaplan_yorke_dimension(full[:, :4])
    np.testing.assert_allclose(truncated[:3].numpy(), dimension[:3].numpy(), atol=1e-2)
    assert truncated[3].isnan()


def test_lru_dimension_and_entropy_match_its_moduli():
    """The LRU's exponents are log(s |lambda_j|), each twice (lambda_j and its conjugate),
    for any input. Through measure() in float64, 400 steps: exponents within 1e-5 (as in
    test_modern_cells), so D within 1e-3 and the entropy within 2H 1e-5."""
    hidden, scales = 6, [0.5, 1.0, 1.2]
    frame = measure("lru", hidden, recurrent_scale=scales, input_scale=[0.0, 2.0], seed=[0, 1],
                    seq_len=400, dtype="float64", device="cpu", metrics=["lyapunov"],
                    dynamics=DynamicsConfig(lyapunov_k=2 * hidden))
    cell = CELLS["lru"]
    for seed in (0, 1):
        weights = cell.init_weights(hidden, 1, generator(seed, "weights"))
        logs = np.sort(np.log(cell.moduli(weights["weight_hh"]).numpy()))[::-1]
        rows = frame[frame["seed"] == seed]
        expected = torch.as_tensor(np.stack([np.repeat(logs + math.log(s), 2)
                                             for s in rows["recurrent_scale"]]))
        np.testing.assert_allclose(
            rows["lyapunov_dimension"], kaplan_yorke_dimension(expected, complete=True),
            atol=1e-3)
        np.testing.assert_allclose(rows["entropy_rate"],
                                   entropy_rate(expected, complete=True), atol=2e-4)
        np.testing.assert_array_equal(rows["n_positive_exponents"],
                                      positive_count(expected, complete=True))
    assert (frame["lyapunov_dimension"][frame["recurrent_scale"] == 0.5] == 0).all()
    assert (frame["entropy_rate"][frame["recurrent_scale"] == 1.2] > 0).all()


def test_measure_fills_the_columns_from_its_own_exponents():
    # rnn_tanh at gains 0.5 (contracting) and 4 (chaotic), H = 16, k = 16 and k = 1.
    scales = [0.5, 4.0]
    full = measure("rnn_tanh", 16, recurrent_scale=scales, seq_len=300, metrics=["lyapunov"],
                   columns="requested", dynamics=DynamicsConfig(lyapunov_k=16))
    exponents = full[["lyapunov_max", *(f"lyapunov_{i}" for i in range(2, 17))]].to_numpy()
    spectra = torch.tensor(exponents)
    np.testing.assert_array_equal(full["lyapunov_dimension"],
                                  kaplan_yorke_dimension(spectra, complete=True))
    np.testing.assert_array_equal(full["entropy_rate"], entropy_rate(spectra, complete=True))
    assert full["lyapunov_dimension"].iloc[0] == 0
    assert full["lyapunov_dimension"].iloc[1] > 1
    assert full["n_positive_exponents"].iloc[1] >= 1
    one = measure("rnn_tanh", 16, recurrent_scale=scales, seq_len=300, metrics=["lyapunov"],
                  columns="requested")
    np.testing.assert_array_equal(one["lyapunov_dimension"], [0, NAN])
    np.testing.assert_array_equal(one["entropy_rate"], [0, NAN])


def test_adaptive_qr_keeps_the_dimension_and_entropy_of_a_qr_every_step(monkeypatch):
    """rnn_tanh, H = 32, all 32 exponents, gains 1.5, 2.5 and 4 (chaotic), float64, 600
    averaged steps: the default rule (a QR every tau steps, Cholesky-QR where it can) against
    a Householder QR every step. The tangents never feed back into the state, so both runs
    follow the same trajectory and differ only by the rule's rounding: each exponent within
    1e-6 (the budget keeps 20 bits of each R_jj; measured 2.5e-7, at g = 4). D then moves
    by at most (j + 1) 1e-6 / |lambda_{j+1}| plus a smaller second-order term, under 1e-4
    here (|lambda_{j+1}| >= 0.025), and the entropy by at most 32e-6. The rule must do fewer
    QRs than the reference (else this compares a method with itself)."""
    counts = []

    class Counted(lyapunov.TangentBasis):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            counts.append(self)

    monkeypatch.setattr(sweeper.dynamics, "TangentBasis", Counted)
    hidden, steps = 32, 700
    params = CELLS["rnn_tanh"].prepare(random_params("rnn_tanh", hidden, [0], [[1.5, 2.5, 4.0]]))
    gen = torch.Generator().manual_seed(1)
    x0 = (torch.rand(1, 1, 1, hidden, generator=gen, dtype=F64) * 2 - 1).expand(1, 3, 1, hidden)
    inputs = torch.zeros(1, 1, steps, 1, dtype=F64)
    config = DynamicsConfig(lyapunov_k=hidden, lipschitz_samples=0)
    adaptive, every = (
        run_dynamics(CELLS["rnn_tanh"], params, inputs, x0, steps - config.burn_in, config, [0],
                     reorthonormalisation=policy).lyapunov[0]
        for policy in (lyapunov.ADAPTIVE, lyapunov.EVERY_STEP))
    np.testing.assert_allclose(adaptive.numpy(), every.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(kaplan_yorke_dimension(adaptive, complete=True).numpy(),
                               kaplan_yorke_dimension(every, complete=True).numpy(), atol=1e-4)
    np.testing.assert_allclose(entropy_rate(adaptive, complete=True).numpy(),
                               entropy_rate(every, complete=True).numpy(), atol=32e-6)
    assert 1 < kaplan_yorke_dimension(every, complete=True)[2] < hidden  # chaotic, bracketed
    assert counts[0].factorisations < counts[1].factorisations == 3 * steps
