"""The modern cells (lru, cornn, lipschitz_rnn, antisymmetric_rnn): the contract against
autodiff, and each cell's science against its closed form or its paper's claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sweeper import measure
from sweeper.cellcheck import check_cell
from sweeper.cells import CELLS
from sweeper.protocols import DynamicsConfig
from sweeper.seeding import generator

MODERN = ("lru", "cornn", "lipschitz_rnn", "antisymmetric_rnn")


@pytest.mark.parametrize("name", MODERN)
def test_each_modern_cell_keeps_the_contract(name):
    """jvp = jacrev and vjp = J^T to 1e-8, batched = looped, bound >= measured ||J_t||, a
    non-finite state stays in its point (sweeper.cellcheck)."""
    checks = check_cell(CELLS[name])
    assert [c.name for c in checks if not c.ok] == [], checks


def test_lru_exponents_are_the_logs_of_the_scaled_moduli_for_any_input():
    """Every exponent of the real 2H-dimensional layout equals log(s |lambda_j|), each twice
    (lambda_j and its conjugate), whatever the input scale: the map is linear. Tolerance
    1e-9 in float64 over 400 steps (the QR iteration of a normal matrix is exact up to
    rounding)."""
    hidden = 6
    frame = measure("lru", hidden, recurrent_scale=[0.5, 1.0, 1.2], input_scale=[0.0, 2.0],
                    seed=[0, 1], seq_len=400, dtype="float64", device="cpu",
                    metrics=["lyapunov"], dynamics=DynamicsConfig(lyapunov_k=2 * hidden))
    columns = ["lyapunov_max", *(f"lyapunov_{i}" for i in range(2, 2 * hidden + 1))]
    cell = CELLS["lru"]
    for seed in (0, 1):
        weights = cell.init_weights(hidden, 1, generator(seed, "weights"))
        logs = np.sort(np.log(cell.moduli(weights["weight_hh"]).numpy()))[::-1]
        for _, row in frame[frame["seed"] == seed].iterrows():
            expected = np.repeat(logs + math.log(row["recurrent_scale"]), 2)
            np.testing.assert_allclose(row[columns].to_numpy(float), expected, atol=1e-5)


def test_lru_bound_is_exact_and_its_moduli_lie_on_the_ring():
    cell = CELLS["lru"]
    weights = cell.init_weights(64, 3, generator(0, "weights"))
    moduli = cell.moduli(weights["weight_hh"])
    assert float(moduli.min()) >= cell.r_min and float(moduli.max()) <= cell.r_max
    frame = measure("lru", 16, recurrent_scale=[0.5, 1.0], seq_len=50, dtype="float64",
                    device="cpu", metrics=["lipschitz"])
    # ||J||_2 = s max|lambda| at every state: the bound equals the measured norm.
    np.testing.assert_allclose(frame["lipschitz_bound"], frame["lipschitz_local_max"],
                               rtol=1e-9)


def test_cornn_is_not_chaotic_at_the_papers_constants():
    """Rusch & Mishra (2021, Prop. 3.1 and 3.3): with its damping the coRNN's hidden states stay
    bounded and its gradients do not explode; measured here as lambda_1 < 0 for gains up to 2
    (an rnn_tanh with the same gains and a weak input is chaotic at g = 2)."""
    kwargs = dict(recurrent_scale=[0.5, 1.0, 2.0], input_scale=[0.05, 1.0], seed=[0, 1],
                  seq_len=300, device="cpu", dtype="float64", metrics=["lyapunov"])
    cornn = measure("cornn", 32, **kwargs)
    assert (cornn["lyapunov_max"] < 0).all(), cornn["lyapunov_max"].tolist()
    tanh = measure("rnn_tanh", 32, **kwargs)
    weak = tanh[(tanh["recurrent_scale"] == 2.0) & (tanh["input_scale"] == 0.05)]
    assert (weak["lyapunov_max"] > 0.05).all(), weak["lyapunov_max"].tolist()


def test_antisymmetric_rnn_stays_near_neutral_stability():
    """Chang et al. (2019): an antisymmetric recurrence neither explodes nor vanishes, so
    |lambda_1| stays a small fraction (here below 15 %) of the log of its Lipschitz bound,
    the growth a generic cell with that bound could reach, over gains 0.5 to 4."""
    frame = measure("antisymmetric_rnn", 32, recurrent_scale=[0.5, 1.0, 2.0, 4.0],
                    seed=[0, 1], seq_len=300, device="cpu", dtype="float64",
                    metrics=["lipschitz", "lyapunov"])
    ceiling = np.log(frame["lipschitz_bound"])
    assert (frame["lyapunov_max"].abs() < 0.15 * ceiling).all(), frame[
        ["recurrent_scale", "lyapunov_max", "lipschitz_bound"]]


def test_lipschitz_rnn_exponent_never_exceeds_its_bound():
    """The bound ||I + eps s A|| + eps s ||W|| caps every finite-time growth rate, so
    lambda_1 <= log(bound); it is also at most the paper's 1 + eps s (||A|| + ||W||)."""
    frame = measure("lipschitz_rnn", 32, recurrent_scale=[0.5, 1.0, 4.0], seed=[0, 1],
                    seq_len=200, device="cpu", dtype="float64",
                    metrics=["lipschitz", "lyapunov"])
    assert (frame["lyapunov_max"] <= np.log(frame["lipschitz_bound"])).all()
    cell = CELLS["lipschitz_rnn"]
    weights = cell.init_weights(32, 1, generator(0, "weights"))["weight_hh"]
    norm_w = float(torch.linalg.matrix_norm(weights[:32], ord=2))
    norm_a = float(torch.linalg.matrix_norm(weights[32:], ord=2))
    row = frame[(frame["seed"] == 0) & (frame["recurrent_scale"] == 4.0)].iloc[0]
    assert row["lipschitz_bound"] <= 1 + cell.eps * 4.0 * (norm_a + norm_w) + 1e-12
