"""``sweeper plot`` never pools silently: which points go into each line (checked through the
lines' data, not pixels), the refusals that name the pooled axis, and the figure's format,
axis scale and value labels."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

from sweeper.errors import SweeperInputError
from sweeper.lines import lines, log_spaced, refuse_pooling, select, value_text


def _points(**axes) -> pd.DataFrame:
    """One row per combination of ``axes`` (seed included), metric = a known function."""
    names = list(axes)
    rows = [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]
    frame = pd.DataFrame(rows)
    for axis in ("recurrent_scale", "input_scale", "seed", "seq_len", "hidden_size"):
        if axis not in frame:
            frame[axis] = {"seed": 0, "seq_len": 50, "hidden_size": 8}.get(axis, 1.0)
    frame["lyapunov_max"] = (frame["recurrent_scale"] - frame["input_scale"]
                             + 0.01 * frame["seed"])
    frame["point_id"] = [f"p{i}" for i in range(len(frame))]
    return frame


def test_a_line_holds_the_points_that_differ_in_seed_alone():
    points = _points(recurrent_scale=[0.5, 1.0, 2.0], input_scale=[0.2, 1.0], seed=[0, 1, 2])
    drawn = lines(points, "lyapunov_max", "recurrent_scale", "input_scale")
    assert [line.value for line in drawn] == [0.2, 1.0]
    for line in drawn:
        mine = points[points["input_scale"] == line.value]
        assert set(line.point_ids) == set(mine["point_id"]) and len(line.point_ids) == 9
        np.testing.assert_allclose(line.mean, [0.5 - line.value + 0.01, 1.0 - line.value + 0.01,
                                               2.0 - line.value + 0.01])
        np.testing.assert_allclose(line.high - line.low, 0.02)  # seeds 0 and 2


def test_an_unnamed_varied_axis_is_refused_with_how_to_choose():
    points = _points(recurrent_scale=[0.5, 1.0], input_scale=[0.05, 0.2, 0.5, 1.0, 2.0],
                     seed=[0, 1])
    with pytest.raises(SweeperInputError) as refused:
        refuse_pooling(points, "recurrent_scale", None, "results/q")
    message = str(refused.value)
    assert "would average over input_scale (5 values)" in message
    assert "--by input_scale" in message and "--where input_scale=0.05" in message
    assert "input_scale takes 0.05, 0.20, 0.50, 1.00, 2.00" in message
    chosen = select(points, {"input_scale": 0.5}, "results/q")
    refuse_pooling(chosen, "recurrent_scale", None, "results/q")  # nothing pooled now
    (line,) = lines(chosen, "lyapunov_max", "recurrent_scale", None)
    assert set(line.point_ids) == set(points[points["input_scale"] == 0.5]["point_id"])
    with pytest.raises(SweeperInputError, match=r"--where input_scale=0\.3 matches no point"):
        select(points, {"input_scale": 0.3}, "results/q")


def test_by_seed_draws_a_line_per_seed_and_x_seed_draws_the_seeds():
    points = _points(recurrent_scale=[0.5, 1.0, 2.0], seed=[0, 1])
    per_seed = lines(points, "lyapunov_max", "recurrent_scale", "seed")
    assert [line.value for line in per_seed] == [0, 1]
    for line in per_seed:
        np.testing.assert_array_equal(line.low, line.high)  # one seed: no band
        np.testing.assert_allclose(line.mean, np.array([0.5, 1.0, 2.0]) - 1 + 0.01 * line.value)
    along = lines(points, "lyapunov_max", "seed", "recurrent_scale")
    assert [line.value for line in along] == [0.5, 1.0, 2.0]
    np.testing.assert_array_equal(along[0].x, [0, 1])


def test_values_are_written_with_the_precision_that_tells_them_apart():
    gains = np.linspace(0.25, 3.0, 32)
    text = value_text(gains)
    assert text[gains[1]] == "0.34" and len(set(text.values())) == 32
    assert value_text([0.5, 1.0, 2.0]) == {0.5: "0.5", 1.0: "1.0", 2.0: "2.0"}
    assert value_text([1.0, 2.0]) == {1.0: "1", 2.0: "2"}
    assert log_spaced(np.logspace(-2, 1, 7)) and not log_spaced(gains)
    assert not log_spaced([0.0, 1.0, 2.0]) and not log_spaced([1.0, 2.0])


def test_a_yes_no_metric_is_the_fraction_of_seeds():
    points = _points(recurrent_scale=[0.5, 1.0], seed=[0, 1, 2, 3])
    points["memory_horizon_capped"] = (points["seed"] < 1) | (points["recurrent_scale"] > 0.7)
    (line,) = lines(points, "memory_horizon_capped", "recurrent_scale", None)
    np.testing.assert_allclose(line.mean, [0.25, 1.0])


def test_the_cli_refuses_to_pool_and_draws_what_it_is_told(smoke_sweep, tmp_path):
    # The smoke sweep: 3 gains x 2 input scales x 2 seeds.
    pooled = run_cli("plot", "lyapunov_max", "--x", "recurrent_scale", "--by", "none",
                     "--results", smoke_sweep, process=False)
    assert pooled.returncode == 2
    assert "would average over input_scale (2 values)" in pooled.stderr
    assert "--where input_scale=0.5" in pooled.stderr and "Traceback" not in pooled.stderr
    svg = tmp_path / "one.svg"
    done = run_cli("plot", "lyapunov_max", "--x", "recurrent_scale", "--by", "none",
                   "--where", "input_scale=0.5", "--results", smoke_sweep, "--out", svg,
                   process=False)
    assert done.returncode == 0, done.stderr
    assert svg.read_bytes().lstrip().startswith((b"<?xml", b"<svg"))
    seeds = run_cli("plot", "lyapunov_max", "--x", "seed", "--by", "recurrent_scale",
                    "--where", "input_scale=1", "--results", smoke_sweep, "--out",
                    tmp_path / "seeds.png", process=False)
    assert seeds.returncode == 0, seeds.stderr
    assert (tmp_path / "seeds.png").read_bytes().startswith(b"\x89PNG")
    bad = run_cli("plot", "lyapunov_max", "--x", "recurrent_scale", "--results", smoke_sweep,
                  "--out", tmp_path / "x.jpg", process=False)
    assert bad.returncode == 2 and "--out must end in one of ['.png', '.svg', '.pdf']" in \
        bad.stderr
    flag = run_cli("plot", "memory_horizon_capped", "--x", "recurrent_scale", "--results",
                   smoke_sweep, "--out", tmp_path / "flag.png", process=False)
    assert flag.returncode == 0, flag.stderr


def test_sweeper_load_gives_the_points_once_and_plots_as_the_cli_does(smoke_sweep, tmp_path):
    import sweeper

    results = sweeper.load(smoke_sweep)
    assert len(results.points) == 12 and results.points["point_id"].is_unique
    assert results.space.name == "smoke" and results.record["experiment"] == "smoke"
    assert len(results.region_map) == 6  # 3 gains x 2 input scales
    path = results.plot("lyapunov_max", "recurrent_scale", where={"input_scale": 1.0},
                        by="none", out=tmp_path / "l.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SweeperInputError, match="would average over input_scale"):
        results.plot("lyapunov_max", "recurrent_scale", by="none")


def test_query_takes_one_statement(smoke_sweep):
    several = run_cli("query", "select 1; select 2", "--results", smoke_sweep, process=False)
    assert several.returncode == 2 and "a query is one SQL statement, got 2" in several.stderr
    empty = run_cli("query", "  ", "--results", smoke_sweep, process=False)
    assert empty.returncode == 2 and "the query is empty" in empty.stderr
    one = run_cli("query", "select count(*) as n from points;", "--results", smoke_sweep,
                  process=False)
    assert one.returncode == 0 and "12" in one.stdout


def test_a_reader_closing_the_pipe_ends_the_output_without_a_traceback(smoke_sweep):
    """``sweeper query ... | head``: the console script stops quietly (exit 141, as SIGPIPE)
    once the reader is gone. A real process: the pipe is the point."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "sweeper"
    reader = subprocess.Popen([str(script), "query", "select * from range(200000)",
                               "--results", str(smoke_sweep)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert reader.stdout.readline()  # the header: then the reader goes away
    reader.stdout.close()
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
