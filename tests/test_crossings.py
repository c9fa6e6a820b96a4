"""The mean lambda_1 = 0 crossing of a set of points (sweeper.crossings), against curves whose
crossing is known in closed form, and against the region map's crossing of the same points."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from sweeper.aggregate import region_map
from sweeper.crossings import mean_zero_crossing


def _points(scales, seeds, exponent) -> pd.DataFrame:
    """One point per (recurrent scale, seed), lyapunov_max = exponent(s, seed)."""
    rows = [(s, seed, exponent(s, seed)) for s, seed in itertools.product(scales, seeds)]
    frame = pd.DataFrame(rows, columns=["recurrent_scale", "seed", "lyapunov_max"])
    frame["input_scale"] = 1.0
    frame["status"] = "ok"
    return frame


def test_the_seed_mean_of_linear_curves_crosses_where_its_closed_form_does():
    # lambda_1 = s - 1 + seed / 10 over seeds 0..3: the mean s - 0.85 crosses at s = 0.85,
    # a point between grid values, so the linear interpolation is exact.
    points = _points(np.linspace(0.5, 2.5, 9), range(4), lambda s, seed: s - 1 + seed / 10)
    assert mean_zero_crossing(points) == pytest.approx(0.85, rel=1e-12)


def test_the_order_of_the_rows_does_not_matter():
    points = _points([0.5, 1.0, 1.5, 2.0], [0, 1], lambda s, seed: s - 1.2 + seed / 10)
    shuffled = points.sample(frac=1.0, random_state=0)
    assert mean_zero_crossing(shuffled) == mean_zero_crossing(points)


def test_it_equals_the_region_maps_crossing_of_one_row():
    points = _points(np.linspace(0.25, 3.0, 12), range(3),
                     lambda s, seed: math.log(s) - 0.1 * seed)
    row = region_map(points, "recurrent_scale", "input_scale")
    (expected,) = row["lyapunov_zero_crossing"].unique()
    assert mean_zero_crossing(points) == pytest.approx(expected, rel=1e-12)


def test_non_numeric_and_nan_values_are_skipped():
    points = _points([0.5, 1.0, 1.5], [0], lambda s, seed: s - 1.25)
    points["lyapunov_max"] = points["lyapunov_max"].astype(object)
    points.loc[points.recurrent_scale == 1.0, "lyapunov_max"] = None  # a diverged point
    # Left: -0.75 at 0.5 and +0.25 at 1.5, crossing at 0.5 + 0.75 = 1.25.
    assert mean_zero_crossing(points) == pytest.approx(1.25, rel=1e-12)


@pytest.mark.parametrize("points", [
    _points([0.5, 1.5], [0, 1], lambda s, seed: -1.0),  # never crosses
    _points([1.5], [0, 1], lambda s, seed: s),  # one scale
    _points([0.5, 1.5], [0], lambda s, seed: s - 1).drop(columns="lyapunov_max"),
    _points([0.5, 1.5], [0], lambda s, seed: s - 1).drop(columns="recurrent_scale"),
], ids=["never", "one-scale", "no-lyapunov", "no-axis"])
def test_nan_without_a_crossing(points):
    assert math.isnan(mean_zero_crossing(points))


def test_along_another_axis():
    points = _points([1.0], [0, 1, 2, 3], lambda s, seed: seed - 1.5)
    assert mean_zero_crossing(points, "seed") == pytest.approx(1.5, rel=1e-12)
