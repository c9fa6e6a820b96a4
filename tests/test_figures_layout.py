"""What the region map and the metrics plot show, checked through their data and matplotlib's
Axes, not pixels: colours that survive red-green colour blindness, the memory-capacity peaks,
how many bands are drawn, tick labels under every column, a legend clear of the panels, and
titles that name the sweep."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest

from sweeper.aggregate import region_map, sweep_plots, sweep_setting
from sweeper.figures import (
    LINE_COLOURS,
    MAX_BANDS,
    METRIC_LABELS,
    REGION_COLOURS,
    metric_panels,
    metrics_figure,
    region_map_figure,
)
from sweeper.space import validate_space

# Machado, Oliveira & Fernandes (2009), "A physiologically-based model for simulation of color
# vision deficiency", IEEE TVCG 15(6): the severity-1.0 matrices of their table, which act on
# linear RGB.
DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968],
                         [0.280085, 0.672501, 0.047413],
                         [-0.011820, 0.042940, 0.968881]])
PROTANOPIA = np.array([[0.152286, 1.052583, -0.204868],
                       [0.114503, 0.786281, 0.099216],
                       [-0.003882, -0.048116, 1.051998]])
# sRGB (D65) linear RGB -> XYZ, and the D65 white.
RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
# CIE76 colour difference: 2.3 is just noticeable; 20 is a difference named at a glance.
REGIONS_APART = 20.0
# Eight line colours cannot all be that far apart; 15 still tells two lines apart.
LINES_APART = 15.0


def _linear(hex_colour: str) -> np.ndarray:
    """sRGB '#rrggbb' -> linear RGB in [0, 1]."""
    srgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _lab(linear_rgb: np.ndarray) -> np.ndarray:
    """Linear RGB -> CIELAB under D65."""
    xyz = RGB_TO_XYZ @ np.clip(linear_rgb, 0, 1) / RGB_TO_XYZ.sum(axis=1)
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _closest(colours, simulate: np.ndarray | None) -> float:
    """The smallest CIE76 difference between two of ``colours`` as seen through
    ``simulate`` (None: normal vision)."""
    seen = [_lab(_linear(c) if simulate is None else simulate @ _linear(c)) for c in colours]
    return min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(seen, 2))


@pytest.mark.parametrize("vision", [None, DEUTERANOPIA, PROTANOPIA],
                         ids=["normal", "deuteranopia", "protanopia"])
def test_region_and_line_colours_stay_apart_without_red_green(vision):
    regions = [REGION_COLOURS[n] for n in ("forgetful", "memory", "chaotic")]
    assert _closest(regions, vision) > REGIONS_APART
    assert _closest(LINE_COLOURS, vision) > LINES_APART


def test_the_check_fails_the_blue_green_red_it_replaced():
    assert _closest(["#4c72b0", "#55a868", "#c44e52"], DEUTERANOPIA) < REGIONS_APART


def _points(input_scales=(0.1, 0.5, 1.0), seeds=3, metrics=("lyapunov_max", "memory_capacity",
                                                              "lipschitz_bound")) -> pd.DataFrame:
    """Every (gain, input scale, seed) on a 12-gain grid; memory capacity peaks at a gain that
    grows with the input scale, each seed shifted a little, so the peak of the seed mean is
    known only through the data."""
    gains = np.linspace(0.25, 3.0, 12)
    g, a, s = (v.ravel() for v in np.meshgrid(gains, input_scales, np.arange(seeds),
                                              indexing="ij"))
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"recurrent_scale": g, "input_scale": a, "seed": s, "seq_len": 50,
                          "hidden_size": 16, "status": "ok"})
    columns = {"lyapunov_max": np.log(g) - a / 2 + rng.normal(0, 0.05, len(g)),
               "memory_capacity": 10 / (1 + 4 * (g - 0.8 - a / 2 - 0.1 * s) ** 2),
               "lipschitz_bound": 2 * g, "lipschitz_local_max": 1.5 * g + a,
               "memory_horizon": 20 * g + a, "attractor_count": 1.0 + (g > 2)}
    return frame.assign(**{m: columns[m] for m in metrics})


def _axes_of(fig, metric: str):
    (ax,) = [ax for ax in fig.axes if ax.get_ylabel() == METRIC_LABELS[metric]]
    return ax


def test_the_capacity_peaks_are_the_argmax_of_each_lines_seed_mean():
    points = _points()
    (panel,) = [p for p in metric_panels(points, "recurrent_scale", "input_scale")
                if p.metric == "memory_capacity"]
    for scale, part in points.groupby("input_scale"):
        mean = part.groupby("recurrent_scale")["memory_capacity"].mean()
        assert panel.peaks[scale] == (mean.idxmax(), pytest.approx(mean.max()))
    fig = metrics_figure(points, "recurrent_scale", "input_scale", "t")
    ax = _axes_of(fig, "memory_capacity")
    drawn = sorted(tuple(np.ravel(line.get_xydata())) for line in ax.get_lines()
                   if line.get_marker() == "^")
    np.testing.assert_allclose(drawn, sorted(panel.peaks.values()), rtol=1e-12)
    assert "peak" in ax.get_title()
    assert [p.peaks for p in metric_panels(points, "recurrent_scale", "input_scale")
            if p.metric != "memory_capacity"] == [{}, {}]


def test_bands_are_drawn_for_at_most_three_lines():
    many = _points(input_scales=np.linspace(0.1, 2.0, 7))
    panels = metric_panels(many, "recurrent_scale", "input_scale")
    lyapunov = next(p for p in panels if p.metric == "lyapunov_max")
    assert len(lyapunov.lines) == 7
    assert lyapunov.banded == (0.1, pytest.approx(1.05), 2.0)  # first, middle, last
    fig = metrics_figure(many, "recurrent_scale", "input_scale", "t")
    assert len(_axes_of(fig, "lyapunov_max").collections) == MAX_BANDS
    few = metric_panels(_points(input_scales=(0.1, 1.0)), "recurrent_scale", "input_scale")
    assert all(p.banded == tuple(p.lines) for p in few)
    bound = next(p for p in panels if p.metric == "lipschitz_bound")
    assert bound.same and bound.banded == (0.1,)  # drawn once, with its one band


@pytest.mark.parametrize("metrics", [
    ("lyapunov_max", "lipschitz_local_max", "lipschitz_bound", "memory_capacity",
     "memory_horizon"),  # a 3 x 2 grid with an empty slot
    ("lyapunov_max", "memory_capacity", "lipschitz_bound"),
    ("lyapunov_max",)])
def test_the_lowest_panel_of_every_column_has_x_tick_labels(metrics):
    fig = metrics_figure(_points(metrics=metrics), "recurrent_scale", "input_scale", "t")
    fig.canvas.draw()
    assert len(fig.axes) == len(metrics)  # the empty slot is gone, not hidden
    columns: dict[float, list] = {}
    for ax in fig.axes:
        columns.setdefault(round(ax.get_position().x0, 3), []).append(ax)
    for column in columns.values():
        column.sort(key=lambda ax: ax.get_position().y0)
        for k, ax in enumerate(column):
            shown = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
            assert bool(shown) == (k == 0), (ax.get_ylabel(), k)
            assert bool(ax.get_xlabel()) == (k == 0)


def _clear_of_the_axes(fig, legend) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1
    assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_ylabel()


@pytest.mark.parametrize("metrics", [
    ("lyapunov_max", "memory_capacity", "lipschitz_bound"), ("memory_capacity",)])
def test_the_metrics_legend_lies_beside_the_panels(metrics):
    points = _points(input_scales=np.linspace(0.1, 2.0, 8), metrics=metrics)
    fig = metrics_figure(points, "recurrent_scale", "input_scale", "t")
    (legend,) = fig.legends
    _clear_of_the_axes(fig, legend)
    labels = [t.get_text() for t in legend.get_texts()]
    assert "input_scale = 0.10" in labels and any("peak" in t for t in labels)
    assert any("band on input_scale = 0.10, " in t for t in labels)


def test_the_region_map_legend_lies_beside_the_map_and_a_log_axis_says_so():
    points = _points(input_scales=(0.01, 0.1, 1.0))
    points["region"] = np.where(points["lyapunov_max"] > 0, "chaotic", "forgetful")
    frame = region_map(points, "recurrent_scale", "input_scale")
    fig = region_map_figure(frame, "recurrent_scale", "input_scale", "t")
    (ax,) = fig.axes
    _clear_of_the_axes(fig, ax.get_legend())
    assert ax.get_yscale() == "log" and ax.get_ylabel().endswith(", log scale")
    linear = region_map_figure(region_map(points.assign(input_scale=points["input_scale"] * 0 + 1),
                                          "recurrent_scale", "input_scale"),
                               "recurrent_scale", "input_scale", "t").axes[0]
    assert "log" not in linear.get_ylabel()


def test_the_titles_name_the_cell_size_length_task_and_seeds():
    space = validate_space({"name": "small", "task": "noise", "cell": "rnn_tanh",
                            "hidden_size": 16, "seq_len": 50,
                            "axes": {"recurrent_scale": [0.5, 1.0], "input_scale": [0.1, 1.0],
                                     "seed": [0, 1, 2]}})
    setting = "rnn_tanh, H = 16, seq_len = 50, task noise, 3 seeds"
    assert sweep_setting(space) == setting
    points = _points(input_scales=(0.1, 1.0), metrics=("lyapunov_max", "attractor_count"))
    points["region"] = "forgetful"
    frame = region_map(points, "recurrent_scale", "input_scale")
    plots = sweep_plots(points, frame, space)
    region, metrics = (plots[name].keywords for name in ("region_map.png",
                                                          "metrics_vs_recurrent_scale.png"))
    assert region["title"] == f"small: regions\n{setting}"
    assert metrics["title"] == f"small: metrics against recurrent_scale\n{setting}"
    drawn = region_map_figure(frame, "recurrent_scale", "input_scale", region["title"])
    assert drawn.axes[0].get_title() == region["title"]
    fig = metrics_figure(points, "recurrent_scale", "input_scale", metrics["title"],
                         attractor_input=metrics["attractor_input"])
    assert fig.get_suptitle() == metrics["title"]
    assert _axes_of(fig, "attractor_count").get_title() == "attractors under zero input"
    raw = {k: v for k, v in space.raw.items() if k not in ("hidden_size", "seq_len")}
    several = validate_space({**raw, "axes": {**raw["axes"], "hidden_size": [8, 16, 32, 64],
                                              "seq_len": [50, 100], "seed": [0]}})
    assert sweep_setting(several) == ("rnn_tanh, H = 8-64 (4 values), seq_len = 50, 100, "
                                      "task noise, 1 seed")
    trained = dataclasses.replace(space, weights={"checkpoint": "/a/lstm_adding.pt",
                                                  "scale": "all", "sha256": "0" * 64})
    assert sweep_setting(trained).startswith("rnn_tanh from lstm_adding.pt, H = 16, ")


def test_the_metrics_plot_holds_a_third_axis_at_its_first_value_and_says_so():
    # Gain x input scale x hidden size: the lines are per input scale and average over seeds
    # only, so hidden size is held at 8 (pooled, its spread would pass for the seeds' band).
    space = validate_space({"name": "three", "task": "noise", "cell": "rnn_tanh",
                            "seq_len": 50,
                            "axes": {"recurrent_scale": [0.5, 1.0], "input_scale": [0.1, 1.0],
                                     "hidden_size": [8, 16, 32], "seed": [0, 1]}})
    points = pd.concat([_points(input_scales=(0.1, 1.0), seeds=2).assign(hidden_size=h)
                        for h in (16, 8, 32)], ignore_index=True)
    points["region"] = "forgetful"
    frame = region_map(points, "recurrent_scale", "input_scale")
    metrics = sweep_plots(points, frame, space)["metrics_vs_recurrent_scale.png"]
    drawn = metrics.args[0]
    assert set(drawn.hidden_size) == {8} and len(drawn) == len(points) // 3
    assert metrics.keywords["title"].endswith(
        "\nat hidden_size = 8 (first of 3); sweeper plot --where draws the others")
    # A sweep of the map's axes and seeds alone is drawn whole, its title unchanged.
    two = validate_space({"name": "two", "task": "noise", "cell": "rnn_tanh", "hidden_size": 16,
                          "seq_len": 50, "axes": {"recurrent_scale": [0.5, 1.0],
                                                  "input_scale": [0.1, 1.0], "seed": [0, 1]}})
    alone = points[points.hidden_size == 16]
    plot = sweep_plots(alone, frame, two)["metrics_vs_recurrent_scale.png"]
    assert plot.args[0] is alone and "\nat " not in plot.keywords["title"]
