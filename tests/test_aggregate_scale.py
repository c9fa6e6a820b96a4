"""Aggregation at sweep scale: the mean-field values shared between the region map and the
metrics plot are the ones computed directly, each pair is computed once, and the plots are
drawn for a 100,000-point frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweeper import theory
from sweeper.aggregate import region_map
from sweeper.figures import MAX_LINES, drawn_groups, plot_metrics, plot_region_map
from sweeper.theory import MeanFieldDrive, edge_of_chaos, mean_field_lyapunov

GAINS = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
SCALES = np.array([0.1, 0.5, 1.0])


def _grid_points(seeds: int, gains=GAINS, scales=SCALES) -> pd.DataFrame:
    """Every (gain, input scale, seed), lambda_1 = log(gain) - input_scale / 2 plus noise."""
    g, a, s = (v.ravel() for v in np.meshgrid(gains, scales, np.arange(seeds), indexing="ij"))
    noise = np.random.default_rng(0).normal(0, 0.05, len(g))
    return pd.DataFrame({"recurrent_scale": g, "input_scale": a, "seed": s, "seq_len": 50,
                         "status": "ok", "lyapunov_max": np.log(g) - a / 2 + noise})


def _counting(monkeypatch) -> list[int]:
    """Replace theory.mean_field_lyapunov by a wrapper that records the pairs asked for."""
    asked: list[int] = []
    direct = theory.mean_field_lyapunov

    def counted(g, sigma=0.0, **options):
        asked.append(int(np.size(np.broadcast_arrays(g, sigma)[0])))
        return direct(g, sigma, **options)

    monkeypatch.setattr(theory, "mean_field_lyapunov", counted)
    return asked


def test_remembered_values_are_the_direct_ones_and_computed_once(monkeypatch):
    # Each pair's chain runs on its own (it stops at its own tolerance), so a value computed
    # in a batch equals the value computed alone; tolerance 1e-12 nats/step.
    drive = MeanFieldDrive(input_std=2.0)
    asked = _counting(monkeypatch)
    grid = drive.lyapunov(GAINS[:, None], SCALES[None, :])
    assert grid.shape == (len(GAINS), len(SCALES)) and asked == [grid.size]
    for j, scale in enumerate(SCALES):
        again = drive.lyapunov(GAINS, scale)
        np.testing.assert_array_equal(again, grid[:, j])
        np.testing.assert_allclose(
            again, mean_field_lyapunov(GAINS, 2.0 * scale, shared=True), atol=1e-12)
    assert asked == [grid.size]  # the rows again: remembered, not computed
    np.testing.assert_allclose(drive.edge(SCALES), edge_of_chaos(2.0 * SCALES, shared=True),
                               atol=1e-12)
    assert drive == MeanFieldDrive(input_std=2.0)  # what it remembers is not its value


def test_map_and_metrics_plot_share_each_pair(monkeypatch, tmp_path):
    points = _grid_points(seeds=3)
    drive = MeanFieldDrive(input_std=1.0)
    asked = _counting(monkeypatch)
    frame = region_map(points, "recurrent_scale", "input_scale", drive=drive)
    map_pairs = sum(asked)
    assert map_pairs >= len(GAINS) * len(SCALES)  # the cells, then the edges
    plot_metrics(points, "recurrent_scale", "input_scale", tmp_path / "m.png", "t",
                 drive=drive)
    assert sum(asked) == map_pairs  # the plot's dashed curves cost no chain run
    expected = mean_field_lyapunov(frame["recurrent_scale"], frame["input_scale"], shared=True)
    np.testing.assert_allclose(frame["lyapunov_mean_field"], expected, atol=1e-12)


def test_drawn_groups_thin_evenly_and_keep_the_ends():
    assert drawn_groups([1, 2, 3]) == [1, 2, 3]
    many = list(range(50))
    drawn = drawn_groups(many)
    assert len(drawn) == MAX_LINES and drawn[0] == 0 and drawn[-1] == 49
    assert drawn == sorted(drawn)


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. a legend too big for the axes
def test_plots_of_a_100k_point_sweep_are_written(tmp_path):
    scales = np.linspace(0.05, 2.0, 50)
    points = _grid_points(seeds=100, gains=np.linspace(0.25, 3.0, 20), scales=scales)
    assert len(points) == 100_000
    frame = region_map(points, "recurrent_scale", "input_scale")
    assert len(frame) == 1000
    assert plot_region_map(frame, "recurrent_scale", "input_scale", tmp_path / "r.png",
                           "t").stat().st_size > 0
    assert plot_metrics(points, "recurrent_scale", "input_scale", tmp_path / "m.png",
                        "t").stat().st_size > 0
