"""The paper's chaotic LSTM: the anchor task, its orbit diagram, the roughness claim, the figure."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rnn_sweeper_tasks.chaotic_lstm import THETA_STAR
from sweeper import SweeperInputError, measure
from sweeper.cli import main
from sweeper.landscape import loss_lipschitz, roughness_tv
from sweeper.paper import chaotic_lstm_line, line_loss
from sweeper.task import get_task


def test_anchor_task_serves_only_the_two_unit_lstm():
    task = get_task("chaotic_lstm")
    assert task.anchor("lstm", 2)["weight_hh"].shape == (8, 2)
    assert torch.equal(task.initial_state(4), torch.full((4,), 0.5, dtype=torch.float64))
    assert torch.count_nonzero(task.inputs(0, 2, 10)) == 0
    with pytest.raises(SweeperInputError, match="cell='lstm' with hidden_size=2"):
        measure("gru", 2, task="chaotic_lstm")
    with pytest.raises(SweeperInputError, match="hidden_size=3"):
        measure("lstm", 3, task="chaotic_lstm")


def test_theta_star_is_chaotic_and_half_of_it_is_not():
    # The paper's anchor: lambda_1 > 0 at s = 1; at s = 0.5 the state settles on a fixed point.
    frame = measure("lstm", 2, task="chaotic_lstm", recurrent_scale=[0.5, 1.0], seq_len=2000,
                    metrics=["lyapunov"], dtype="float64")
    low, anchor = frame.lyapunov_max.tolist()
    assert low < -0.1 and anchor > 0.05


def test_orbit_diagram_separates_fixed_point_periodic_and_chaotic():
    line = chaotic_lstm_line([0.6, 0.8, 1.0], orbit_inits=3, orbit_keep=64,
                             lyapunov_steps=1000)
    orbit = line["orbit"].numpy()
    distinct = [len(np.unique(np.round(row, 6))) for row in orbit]
    assert distinct[0] == 1  # a fixed point: one value
    assert 2 <= distinct[1] <= 8  # a short periodic orbit after the first period doublings
    assert distinct[2] > 50  # chaos: (almost) every sample differs


def test_roughness_grows_with_sequence_length_at_anchor_not_at_half():
    # The paper's claim (cost over the first N steps, no burn-in): around s = 1 the loss slice
    # turns from smooth to rugged as N grows; around s = 0.5 it stays monotone and its slope
    # shrinks. Measured on 401 points over s +- 0.05: roughness_tv at s = 1 was 1.44, 1.59,
    # 3.9, 21, 53 for N = 5, 10, 20, 40, 80; at s = 0.5 it was 1.0 for every N.
    alpha = np.linspace(-0.05, 0.05, 401)
    rough_anchor, rough_half, slope_half = [], [], []
    for n in (5, 10, 20, 40, 80):
        anchor = line_loss((1.0 + alpha).tolist(), seq_len=n, burn_in=0)[None]
        half = line_loss((0.5 + alpha).tolist(), seq_len=n, burn_in=0)[None]
        rough_anchor.append(roughness_tv(anchor).item())
        rough_half.append(roughness_tv(half).item())
        slope_half.append(loss_lipschitz(torch.as_tensor(alpha), half).item())
    assert all(b > a for a, b in itertools.pairwise(rough_anchor))
    assert rough_anchor[-1] > 10 * rough_anchor[0]
    assert max(rough_half) == pytest.approx(1.0, abs=1e-9)
    assert slope_half[-1] < slope_half[0]


def test_figure_command_writes_a_png(tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "fig" / "chaotic.png"
    assert main(["figure", "chaotic-lstm", "--points", "40", "--out", str(out)]) == 0
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 500 and image.shape[1] > 500
    assert "40 scalings" in capsys.readouterr().out
    assert main(["figure", "chaotic-lstm", "--points", "1", "--out", str(out)]) == 2


def test_orbit_command_for_any_cell(tmp_path):
    # The zero-input tanh network: the origin is the only attractor for small gain, so the
    # orbit diagram there is a single value (0), and it spreads once s passes the transition.
    from sweeper.orbits import orbits_for

    found = orbits_for("rnn_tanh", 8, get_task("noise", {"input_std": 0.0}), [0.5, 3.0],
                       seed=3, steps=600, keep=20, inits=4)
    low, high = found["orbit"].numpy()
    assert np.abs(low).max() < 1e-6
    assert np.ptp(high) > 0.5
    out = tmp_path / "orbits.png"
    assert main(["figure", "orbits", "--cell", "gru", "--hidden-size", "4", "--points", "30",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000


def _reference_lyapunov(scale: float, burn_in: int, steps: int) -> float:
    """lambda_1 of the zero-input LSTM theta(s) = s theta* from h0 = c0 = 0.5, written apart
    from the package: plain float64 loop, the Jacobian of (h, c) -> (h', c') by hand (gate
    order i, f, g, o), one tangent vector renormalised every step."""
    weight = scale * np.array(THETA_STAR)
    h, c, v = np.full(2, 0.5), np.full(2, 0.5), np.full(4, 0.5)
    total = 0.0
    for t in range(burn_in + steps):
        a = weight @ h
        sig = 1 / (1 + np.exp(-a))
        i, f, o, g = sig[0:2], sig[2:4], sig[6:8], np.tanh(a[4:6])
        c_next = f * c + i * g
        th = np.tanh(c_next)
        dsig = sig * (1 - sig)
        dc_dh = ((c * dsig[2:4])[:, None] * weight[2:4] + (g * dsig[0:2])[:, None] * weight[0:2]
                 + (i * (1 - g**2))[:, None] * weight[4:6])
        dh_dh = (th * dsig[6:8])[:, None] * weight[6:8] + (o * (1 - th**2))[:, None] * dc_dh
        jac = np.block([[dh_dh, np.diag(o * (1 - th**2) * f)], [dc_dh, np.diag(f)]])
        v = jac @ v
        norm = np.linalg.norm(v)
        v /= norm
        if t >= burn_in:
            total += math.log(norm)
        h, c = o * th, c_next
    return total / steps


def test_theta_star_lyapunov_exponent_matches_an_independent_loop():
    # Measured: 0.1671 (this loop) and 0.1694 (measure), both over 20000 steps after a burn-in
    # of 100. Rounding separates the two trajectories within a few hundred steps (lambda_1 >
    # 0), so they agree as time averages over one chaotic attractor: 20000-step averages
    # scatter by about 0.005 (0.164 and 0.173 at 5000 steps), hence the tolerance 0.015.
    reference = _reference_lyapunov(1.0, 100, 20000)
    frame = measure("lstm", 2, task="chaotic_lstm", recurrent_scale=[1.0], seq_len=20000,
                    metrics=["lyapunov"], dtype="float64")
    assert reference == pytest.approx(0.167, abs=0.01)
    assert frame.lyapunov_max.item() == pytest.approx(reference, abs=0.015)


def test_sweep_orbits_only_for_tasks_that_draw_one():
    # What `sweeper aggregate` draws, from the search space's plain values: the chaotic LSTM's
    # orbit diagram equals orbits_for on the same task; noise (or one scaling) draws none.
    from sweeper.orbits import orbits_for, sweep_orbits

    scales = [0.5, 1.0]
    found = sweep_orbits("lstm", 2, "chaotic_lstm", {}, scales, steps=200, keep=5, inits=2)
    expected = orbits_for("lstm", 2, get_task("chaotic_lstm"), scales, steps=200, keep=5,
                          inits=2)
    torch.testing.assert_close(found["orbit"], expected["orbit"], rtol=0, atol=0)
    assert found["orbit"].shape == (2, 10)
    assert sweep_orbits("rnn_tanh", 4, "noise", {}, scales) is None
    assert sweep_orbits("lstm", 2, "chaotic_lstm", {}, [1.0]) is None
