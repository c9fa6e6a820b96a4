"""Attractor counts, orbit periods and asymptotic states against maps whose orbits are known
exactly, through the batched core that measure() calls."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from helpers import F64, params_from, random_params

from rnn_sweeper_tasks.chaotic_lstm import THETA_STAR
from sweeper import CELLS, MemoryConfig, attractor_count, measure
from sweeper.cells._base import Cell, recurrent_product
from sweeper.errors import SweeperInputError
from sweeper.memory import attractors

ZERO = torch.zeros(1, dtype=F64)


def _found(cell, params, size, config=None):
    found = attractor_count(CELLS[cell], CELLS[cell].prepare(params), ZERO, size, [0],
                            config or MemoryConfig())
    assert found.finite.all()
    return found.count[0].tolist(), found.period[0].tolist(), found.states[0].tolist()


def test_one_unit_tanh_maps_fixed_points_and_period_two():
    # x' = tanh(w x): w = 0.5 has the single fixed point 0; w = 2 and 3 the two stable fixed
    # points +-x* (x* = tanh(w x*)); w = -2 the one period-2 orbit {x*, -x*}, whose two
    # phases are one attractor but two states a readout can tell apart.
    params = params_from([[1.0]], recurrent_scale=[0.5, 2.0, 3.0])
    assert _found("rnn_tanh", params, 1) == ([1.0, 2.0, 2.0], [1.0, 1.0, 1.0], [1.0, 2.0, 2.0])
    count, period, states = _found("rnn_tanh", params_from([[-2.0]]), 1)
    assert (count, period, states) == ([1.0], [2.0], [2.0])


def test_two_unit_rotation_through_tanh_has_one_period_four_orbit():
    # x' = tanh(w R x), R the rotation by pi / 2, w = 2: (x1, x2) -> (-tanh(w x2), tanh(w x1))
    # maps the corners (c, c) -> (-c, c) -> (-c, -c) -> (c, -c) -> (c, c), c = tanh(w c); every
    # coordinate is pulled to +-c (the stable fixed points of tanh(w .)), so all generic
    # starts land on this one period-4 orbit.
    params = params_from([[0.0, -2.0], [2.0, 0.0]])
    assert _found("rnn_tanh", params, 2) == ([1.0], [4.0], [4.0])


def test_linear_quarter_turn_has_one_period_four_orbit_per_start():
    # x' = R x: every orbit {x, Rx, -x, -Rx} is neutral and has period 4; starts a, Ra, -a
    # share one orbit, b (another radius) has its own: 2 attractors, 8 states.
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)
    a, b = torch.tensor([0.6, 0.2], dtype=F64), torch.tensor([0.1, -0.3], dtype=F64)
    x0 = torch.stack([a, rotation @ a, -a, b])[None, None]
    found = attractors(CELLS["linear"], params_from(rotation), ZERO, x0, MemoryConfig())
    assert (found.count.item(), found.period.item(), found.states.item()) == (2.0, 4.0, 8.0)


def test_irrational_rotation_is_one_quasi_periodic_attractor():
    # Rotation by the golden angle 2 pi (1 - 1 / phi) on the unit circle: no period, and the
    # orbit of any start passes within tol of every other start once the window is long
    # enough (W = 1000: gaps between orbit points < 2 tol). 12 starts evenly spread on the
    # circle stay 12 tol-distinct end states.
    angle = math.pi * (3 - math.sqrt(5))
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)],
                             [math.sin(angle), math.cos(angle)]], dtype=F64)
    phase = torch.arange(12, dtype=F64) * 2 * math.pi / 12 + 0.1
    x0 = torch.stack([phase.cos(), phase.sin()], dim=-1)[None, None]
    found = attractors(CELLS["linear"], params_from(rotation), ZERO, x0,
                       MemoryConfig(attractor_window=1000))
    assert (found.count.item(), found.period.item(), found.states.item()) == (1.0, 0.0, 12.0)


def test_still_moving_runs_do_not_add_attractors():
    # x' = 0.999 x converges so slowly that after 500 steps the 16 runs are still spread over
    # [-0.6, 0.6]: none is periodic, returns or is chaotic, so they count as one unconfirmed
    # attractor (not 16); the spread end states are what a readout would still see.
    count, period, states = _found("linear", params_from([[0.999]]), 1)
    assert count == [1.0] and period == [0.0]
    assert states[0] > 1


def test_batched_equals_looped():
    # Points in one batch never see each other: G x M at once equals one point at a time.
    weights = [[[1.0]], [[-2.0]]]
    scales = [0.5, 1.5, 3.0]
    for weight in weights:
        together = attractor_count(CELLS["rnn_tanh"], params_from(weight, recurrent_scale=scales),
                                   ZERO, 1, [0], MemoryConfig())
        for m, scale in enumerate(scales):
            alone = attractor_count(CELLS["rnn_tanh"], params_from(weight, recurrent_scale=scale),
                                    ZERO, 1, [0], MemoryConfig())
            for a, b in zip((together.count, together.period, together.states),
                            (alone.count, alone.period, alone.states), strict=True):
                assert a[0, m].item() == b[0, 0].item()


def _lstm_period(scale: float) -> int:
    """Period of the chaotic LSTM's orbit from h0 = c0 = 0.5, in plain Python float64."""
    def step(h, c):
        a = [scale * (r[0] * h[0] + r[1] * h[1]) for r in THETA_STAR]
        sig = [1 / (1 + math.exp(-z)) for z in a]
        c = [sig[2 + k] * c[k] + sig[k] * math.tanh(a[4 + k]) for k in range(2)]
        return [sig[6 + k] * math.tanh(c[k]) for k in range(2)], c

    h, c = [0.5, 0.5], [0.5, 0.5]
    for _ in range(5000):
        h, c = step(h, c)
    orbit = [h + c]
    for _ in range(100):
        h, c = step(h, c)
        orbit.append(h + c)
    return next(p for p in range(1, 50)
                if all(max(abs(x - y) for x, y in zip(orbit[p + t], orbit[t], strict=True))
                       < 1e-9 for t in range(50)))


@pytest.mark.parametrize(("scale", "period"), [(0.8, 3), (1.6, 4), (2.0, 4)])
def test_chaotic_lstm_periodic_windows_are_one_attractor(scale, period):
    # Along theta(s) = s theta*: a period-3 orbit at s = 0.8 and period-4 orbits at 1.6 and 2
    # (the plain iteration agrees). Every random start reaches that one orbit: 1 attractor
    # with `period` phases (before the count was by end state: 3, 4, 4).
    assert _lstm_period(scale) == period
    row = measure("lstm", 2, task="chaotic_lstm", recurrent_scale=[scale], metrics=["memory"],
                  dtype="float64").iloc[0]
    assert (row.attractor_count, row.orbit_period, row.asymptotic_states) == (1, period, period)


@pytest.mark.parametrize("flushed", [False, True], ids=["subnormals", "flushed"])
def test_float32_runs_settling_on_zero_are_one_fixed_point(flushed):
    # x' = tanh(0.1 W x) in float32 reaches the subnormal range within ~40 steps; whether the
    # subnormals are kept or flushed to 0 (as measure() does, for speed), the runs meet on the
    # one fixed point 0.
    from sweeper.measure import flushing_subnormals

    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(8, 8, generator=gen, dtype=F64) / math.sqrt(8)
    params = params_from(weight, recurrent_scale=[0.1, 0.5]).to(dtype=torch.float32)
    with flushing_subnormals() if flushed else contextlib.nullcontext():
        found = attractor_count(CELLS["rnn_tanh"], params, ZERO, 8, [0], MemoryConfig())
    assert found.finite.all()
    assert found.count[0].tolist() == [1.0, 1.0] and found.period[0].tolist() == [1.0, 1.0]
    assert found.states[0].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# Chaotic attractors are counted once: exact maps, and the tanh network against long averages.

class FoldedLogistic(Cell):
    """x' = s W (x (1 - |x|)) + drive, unit by unit when W = I: on x > 0 each unit is the
    logistic map with r = s; the map is odd, so each unit's sign never changes (0 is an
    unstable fixed point no generic orbit reaches) and x < 0 holds the mirror image of the
    logistic attractor. A test cell: the logistic map at r = 4 is chaotic (lambda = log 2)
    and ergodic on (0, 1), with invariant density 1 / (pi sqrt(x (1 - x)))."""

    name = "folded_logistic"

    def init_weights(self, hidden_size, input_size, generator):
        raise NotImplementedError("a test cell: its weights are given")

    def step(self, params, x, drive):
        return recurrent_product(params, x * (1 - x.abs())) + drive, {"x": x}

    def jvp(self, params, cache, v):
        return recurrent_product(params, (1 - 2 * cache["x"].abs())[..., None, :] * v)

    def lipschitz_bound(self, params, context):
        raise NotImplementedError


FOLDED = FoldedLogistic()


def _folded(x0, units, scale=4.0, config=None):
    params = params_from(torch.eye(units, dtype=F64), recurrent_scale=scale)
    zero = torch.zeros(1, dtype=F64)
    found = attractors(FOLDED, params, zero, x0[None, None], config or MemoryConfig())
    assert found.finite.all()
    return found


def test_logistic_map_at_r4_is_one_chaotic_attractor():
    # 16 starts in (0, 1): one ergodic chaotic attractor, however the runs lie on it.
    x0 = torch.rand(16, 1, generator=torch.Generator().manual_seed(0), dtype=F64) * 0.98 + 0.01
    found = _folded(x0, 1)
    assert (found.count.item(), found.chaotic.item(), found.period.item()) == (1.0, 1.0, 0.0)


def test_mirrored_chaotic_bands_that_never_mix_are_two_attractors():
    # The odd map's two bands (0, 1) and (-1, 0): starts of both signs reach both, each
    # chaotic, and no orbit crosses 0.
    x0 = torch.rand(16, 1, generator=torch.Generator().manual_seed(1), dtype=F64) * 0.98 + 0.01
    x0[::2] *= -1
    found = _folded(x0, 1)
    assert (found.count.item(), found.chaotic.item(), found.period.item()) == (2.0, 2.0, 0.0)


@pytest.mark.parametrize("patterns", [1, 3, 5])
def test_eight_unit_chaos_is_counted_by_sign_pattern_not_by_run(patterns):
    # Eight uncoupled folded logistic maps: the attractors are exactly the sign patterns (each
    # unit keeps its sign and is ergodic on its band). In 8 dimensions a run is almost never
    # back within tol of another's end state in 100 steps, so only the time averages can
    # join the runs: 16 starts spread over `patterns` sign patterns are `patterns` attractors.
    gen = torch.Generator().manual_seed(patterns)
    signs = torch.where(torch.rand(patterns, 8, generator=gen) < 0.5, -1.0, 1.0).to(F64)
    signs[:, 0] = torch.where(torch.arange(patterns) % 2 == 0, 1.0, -1.0)
    while len({tuple(s.tolist()) for s in signs}) < patterns:  # distinct patterns
        signs = torch.where(torch.rand(patterns, 8, generator=gen) < 0.5, -1.0, 1.0).to(F64)
    x0 = (torch.rand(16, 8, generator=gen, dtype=F64) * 0.98 + 0.01) * signs[torch.arange(16)
                                                                              % patterns]
    found = _folded(x0, 8)
    assert (found.count.item(), found.chaotic.item()) == (float(patterns), float(patterns))
    # Without the averages (a threshold no difference passes), every run is its own attractor:
    # the statistics, not the returns, do the joining here.
    alone = _folded(x0, 8, config=MemoryConfig(attractor_se=1e-9, attractor_tol=1e-12))
    assert alone.count.item() == 16.0


def _reference_groups(weight: np.ndarray, gain: float, x0: np.ndarray) -> int:
    """An independent count in plain numpy: 3,000 transient steps, then the per-unit mean and
    variance of each run over 5,000 steps; runs whose averages differ by at most 0.2 in every
    unit are one attractor (connected components). Within one attractor of these networks the
    averages agree to 0.02-0.07; mirrored or distinct attractors differ by ~1."""
    x = x0.copy()
    for _ in range(3000):
        x = np.tanh(gain * x @ weight.T)
    first, second = np.zeros_like(x), np.zeros_like(x)
    for _ in range(5000):
        x = np.tanh(gain * x @ weight.T)
        first += x
        second += x * x
    mean = first / 5000
    variance = second / 5000 - mean**2
    gap = np.maximum(np.abs(mean[:, None] - mean[None]).max(-1),
                     np.abs(variance[:, None] - variance[None]).max(-1))
    group = list(range(len(x0)))  # union-find over the pairs that agree

    def root(i):
        while group[i] != i:
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(gap <= 0.2), strict=True):
        group[root(i)] = root(j)
    return len({root(i) for i in range(len(x0))})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tanh_network_at_gain_3_counts_what_long_averages_count(seed):
    # The zero-input tanh network, H = 64, g = 3: chaotic (lambda_1 ~ 0.15-0.3). Before, every
    # one of the 16 runs counted as an attractor of its own; the count now equals the grouping
    # of 5,000-step averages from the same starts.
    from sweeper.seeding import generator

    row = measure("rnn_tanh", 64, task="noise", task_params={"input_std": 0.0},
                  recurrent_scale=[3.0], seed=[seed], metrics=["memory", "lyapunov"]).iloc[0]
    weight = random_params("rnn_tanh", 64, [seed], [[1.0]]).weights["weight_hh"][0].numpy()
    x0 = (torch.rand(16, 64, generator=generator(seed, "attractor-states"), dtype=F64) * 2
          - 1).numpy()
    assert row.lyapunov_max > 0.1
    assert row.attractor_count == _reference_groups(weight, 3.0, x0)
    assert 1 <= row.chaotic_attractors <= row.attractor_count


def test_batched_chaotic_points_equal_looped():
    # Scalings 1.6 .. 3 of one draw at H = 16, and the 8-unit folded map: the time averages
    # and the statistics rule see no other point of the batch.
    params = random_params("rnn_tanh", 16, [4], [[1.6, 2.2, 3.0]])
    zero = torch.zeros(1, dtype=F64)
    together = attractor_count(CELLS["rnn_tanh"], params, zero, 16, [4], MemoryConfig())
    for m, scale in enumerate([1.6, 2.2, 3.0]):
        alone = attractor_count(CELLS["rnn_tanh"], random_params("rnn_tanh", 16, [4], [[scale]]),
                                zero, 16, [4], MemoryConfig())
        for name in ("count", "chaotic", "period", "states"):
            assert getattr(together, name)[0, m].item() == getattr(alone, name)[0, 0].item()


@pytest.mark.parametrize("scale", [1.0, 1.1, 1.2, 1.3])
def test_chaotic_lstm_is_one_chaotic_attractor(scale):
    # The paper's theta* at s = 1.0-1.3 is chaotic under zero input: one attractor, chaotic.
    row = measure("lstm", 2, task="chaotic_lstm", recurrent_scale=[scale],
                  metrics=["memory", "lyapunov"], dtype="float64").iloc[0]
    assert row.lyapunov_max > 0.01
    assert (row.attractor_count, row.chaotic_attractors, row.orbit_period) == (1, 1, 0)


def test_time_average_settings_are_checked():
    with pytest.raises(SweeperInputError, match="attractor_batches"):
        MemoryConfig(attractor_batches=1)
    with pytest.raises(SweeperInputError, match="attractor_se"):
        MemoryConfig(attractor_se=0.0)
    with pytest.raises(SweeperInputError, match="attractor_batches"):
        MemoryConfig(attractor_steps=4, attractor_window=3, attractor_batches=8)
