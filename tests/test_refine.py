"""Adaptive refinement (``search: {method: refine}``) on synthetic functions with known
boundaries, run by the real sweep driver on the in-process executor: every lambda_1 = 0
crossing of the full grid is found within one grid spacing with at least 5x fewer points, the
points are the grid's (same ids), a killed round resumes without recomputing anything
finished, and bad ``search`` options are refused with every problem named."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run_cli

from sweeper.adapters.parquet_sink import ParquetSink
from sweeper.adapters.rounds_file import RoundsFile, sweep_trials
from sweeper.aggregate import region_map, zero_crossing
from sweeper.interrupt import SweepInterrupted
from sweeper.refine import fill_map
from sweeper.space import AXES, SearchSpace, Trial, point_id, validate_space
from sweeper.sweep import LocalExecutor, RunIdsInProcess, Tracker, TrialWork, run_sweep


def circle(x: float, y: float, seed: int) -> float:
    """Chaotic outside a circle of radius 0.6 around (1, 1): two crossings per crossed row."""
    return float(np.hypot(x - 1.0, y - 1.0) - 0.6)


def window(x: float, y: float, seed: int) -> float:
    """Chaotic on 0.7 < x < 1.3 only: two crossings on a 1-D map."""
    return float(0.3 - abs(x - 1.0))


def noisy_step(x: float, y: float, seed: int) -> float:
    """A step at x = 1.23 with seed noise (std 0.3 against a step of +-1)."""
    noise = np.random.default_rng([round(x * 1e6), seed]).normal(0.0, 0.3)
    return float(np.tanh((x - 1.23) / 0.02) + noise)


@dataclasses.dataclass(frozen=True)
class Synthetic(TrialWork):
    """A trial's rows from a function of (recurrent_scale, input_scale, seed) instead of
    measure(): lambda_1 is the function, the region its sign."""

    function: Callable[[float, float, int], float] = circle
    computed: Path | None = None  # a file per computed trial, when set

    def compute_part(self, trial: Trial, device: str | None = None) -> str:
        names = [a for a in AXES if a in trial.vectorized]
        rows = []
        for values in itertools.product(*(trial.vectorized[a] for a in names)):
            point = {a: trial.config[a] for a in AXES if a in trial.config}
            point.update(zip(names, values, strict=True))
            lam = self.function(point["recurrent_scale"], point["input_scale"], point["seed"])
            rows.append({"sweep": self.space.name, "trial_id": trial.trial_id,
                         "point_id": point_id(trial, point), "mlflow_run_id": None, **point,
                         "status": "ok", "region": "chaotic" if lam > 0 else "forgetful",
                         "lyapunov_max": lam})
        if self.computed is not None:
            (self.computed / trial.trial_id).touch()
        return self.sink.write(trial.trial_id, pd.DataFrame(rows))


class Quiet(Tracker):
    """A tracker that records nothing (MLflow is exercised by the CLI test below)."""

    def start_sweep(self, space): return "parent"
    def trial_started(self, trial): return f"run-{trial.trial_id}"
    def trial_finished(self, trial, frame, location): pass
    def is_finished(self, trial): return False
    def trial_failed(self, trial, error): pass
    def end_sweep(self, status): pass


def _space(xs: list, ys: list, seeds: list, search: dict, name: str = "refine") -> SearchSpace:
    return validate_space({
        "name": name, "task": "noise", "cell": "rnn_tanh", "hidden_size": 4, "seq_len": 10,
        "axes": {"recurrent_scale": xs, "input_scale": ys, "seed": seeds},
        "vectorize": ["recurrent_scale", "seed"], "metrics": ["lyapunov"],
        "map": {"x": "recurrent_scale", "y": "input_scale"}, "search": search})


def _sweep(space: SearchSpace, out: Path, function, **options) -> pd.DataFrame:
    sink = ParquetSink(out)
    work = Synthetic(space, sink, RunIdsInProcess(), function, options.pop("computed", None))
    run_sweep(space, sink, Quiet(), LocalExecutor(), rounds=RoundsFile(out, space), work=work,
              **options)
    return pd.concat([sink.read(sink.materialize(t.trial_id))
                      for t in sweep_trials(out, space)], ignore_index=True)


def _grid_ids(space: SearchSpace) -> set[str]:
    ids = set()
    for trial in space.trials():
        names = list(trial.vectorized)
        for values in itertools.product(*trial.vectorized.values()):
            point = {a: trial.config[a] for a in AXES if a in trial.config}
            point.update(zip(names, values, strict=True))
            ids.add(point_id(trial, point))
    return ids


def _crossings(x: np.ndarray, lam: np.ndarray) -> list[float]:
    """Midpoints of every sign change of lam along x (a crossing's position to within half
    the gap of the two points around it)."""
    side = lam > 0
    return [(x[k] + x[k + 1]) / 2 for k in range(len(x) - 1) if side[k] != side[k + 1]]


def _cell_means(points: pd.DataFrame) -> pd.Series:
    return points.groupby(["input_scale", "recurrent_scale"])["lyapunov_max"].mean()


def _check_crossings(space: SearchSpace, points: pd.DataFrame, function) -> None:
    """Every sign change of the full grid's cell means, row by row, has a sign change of the
    evaluated cells within one grid spacing, and the refined sweep has no crossing the grid
    lacks."""
    xs = np.array(space.axes["recurrent_scale"])
    spacing = xs[1] - xs[0]
    mean = _cell_means(points)
    for y in space.axes["input_scale"]:
        truth = np.array([np.mean([function(x, y, s) for s in space.axes["seed"]])
                          for x in xs])
        expected = _crossings(xs, truth)
        found = []
        if y in mean.index.get_level_values(0):
            row = mean.loc[y].sort_index()
            found = _crossings(row.index.to_numpy(), row.to_numpy())
        for at in expected:
            assert found and min(abs(at - f) for f in found) <= spacing + 1e-12, (y, at, found)
        for at in found:
            assert min(abs(at - e) for e in expected) <= spacing + 1e-12, (y, at, expected)


def test_circle_boundary_is_found_with_5x_fewer_points_on_the_grid(tmp_path):
    xs = [float(v) for v in np.linspace(0.0, 2.0, 65)]
    ys = [float(v) for v in np.linspace(0.0, 2.0, 33)]
    grid_points = len(xs) * len(ys)
    space = _space(xs, ys, [0], {"method": "refine", "budget": grid_points // 5})
    points = _sweep(space, tmp_path / "out", circle)
    assert len(points) <= grid_points // 5
    assert points["point_id"].is_unique
    assert set(points["point_id"]) <= _grid_ids(space)  # a subset of the grid sweep
    _check_crossings(space, points, circle)
    # The filled map labels the grid as the function does on nearly every cell.
    cells = fill_map(region_map(points, "recurrent_scale", "input_scale"), "recurrent_scale",
                     "input_scale", xs, ys)
    truth = np.array([circle(x, y, 0) > 0 for y in ys for x in xs])
    agree = ((cells["region"] == "chaotic").to_numpy() == truth).mean()
    assert agree >= 0.97, agree
    assert cells["evaluated"].sum() == len(points)


def test_two_crossings_on_a_one_dimensional_map(tmp_path):
    xs = [float(v) for v in np.linspace(0.0, 2.0, 201)]
    space = _space(xs, [1.0], [0, 1], {"method": "refine", "budget": 80})
    points = _sweep(space, tmp_path / "out", window)
    assert len(points) <= 80 and len(points) * 5 <= 2 * len(xs)
    _check_crossings(space, points, window)
    row = _cell_means(points).loc[1.0].sort_index()
    assert zero_crossing(row.index.to_numpy(), row.to_numpy()) == pytest.approx(0.7, abs=0.01)


def test_noisy_step_crossing_is_found_within_one_spacing(tmp_path):
    xs = [float(v) for v in np.linspace(0.0, 2.5, 251)]
    ys = [0.5, 1.0, 2.0]
    seeds = [0, 1, 2]
    grid_points = len(xs) * len(ys) * len(seeds)
    space = _space(xs, ys, seeds, {"method": "refine", "budget": grid_points // 5})
    points = _sweep(space, tmp_path / "out", noisy_step)
    assert len(points) <= grid_points // 5
    _check_crossings(space, points, noisy_step)


def test_a_killed_round_resumes_without_recomputing_anything_finished(tmp_path):
    xs = [float(v) for v in np.linspace(0.0, 2.0, 33)]
    ys = [float(v) for v in np.linspace(0.0, 2.0, 17)]
    space = _space(xs, ys, [0], {"method": "refine", "budget": 200})
    reference = _sweep(space, tmp_path / "reference", circle)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    out = tmp_path / "out"
    rounds = RoundsFile(out, space)

    @dataclasses.dataclass(frozen=True)
    class KilledInRoundTwo(Synthetic):
        def compute_part(self, trial, device=None):
            recorded = rounds.rounds()
            if len(recorded) >= 3 and sum(1 for _ in self.computed.iterdir()) > (
                    sum(len(r) for r in recorded[:2]) + 1):
                raise KeyboardInterrupt  # Ctrl-C in the middle of round 2
            return super().compute_part(trial, device)

    sink = ParquetSink(out)
    killed = KilledInRoundTwo(space, sink, RunIdsInProcess(), circle, first)
    with pytest.raises(SweepInterrupted):
        run_sweep(space, sink, Quiet(), LocalExecutor(), rounds=rounds, work=killed)
    done_first = {p.name for p in first.iterdir()}
    recorded = rounds.rounds()
    assert len(recorded) == 3
    round_two = {t.trial_id for t in recorded[2]}
    assert done_first & round_two and round_two - done_first  # killed mid-round
    resumed = Synthetic(space, sink, RunIdsInProcess(), circle, second)
    counts = run_sweep(space, sink, Quiet(), LocalExecutor(), rounds=rounds, work=resumed,
                       resume=True)
    done_second = {p.name for p in second.iterdir()}
    assert not done_first & done_second  # nothing finished was computed again
    assert counts["skipped"] == len(done_first)
    assert round_two - done_first <= done_second  # the killed round's rest ran as recorded
    points = pd.concat([sink.read(sink.materialize(t.trial_id)) for t in sweep_trials(out, space)])
    assert sorted(points["point_id"]) == sorted(reference["point_id"])


def test_cells_become_trials_of_exactly_those_points():
    space = _space([0.5, 1.0, 1.5, 2.0], [0.1, 0.2, 0.4], [3, 4],
                   {"method": "refine", "budget": 24, "initial": 2})
    cells = [(0, 0, 0), (0, 2, 0), (0, 1, 2)]
    trials = space.cell_trials(cells)
    got = set()
    for trial in trials:
        for r, s in itertools.product(trial.vectorized["recurrent_scale"],
                                      trial.vectorized["seed"]):
            got.add((r, trial.config["input_scale"], s))
    assert got == {(x, y, s) for x, y in [(0.5, 0.1), (1.5, 0.1), (1.0, 0.4)] for s in (3, 4)}
    assert len(trials) == 2  # one per input scale: gains and seeds batched


def test_invalid_search_options_exit_2_naming_each(tmp_path):
    raw = {"name": "bad", "cell": "rnn_tanh", "hidden_size": 4,
           "axes": {"recurrent_scale": {"linspace": [0.5, 2.0, 40]}, "seed": [0, 1]},
           "metrics": ["lipschitz", "memory"],
           "search": {"method": "refine", "budget": 3, "initial": 1, "slope_factor": -1,
                      "tolerance": 2}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_cli("validate", path, cwd=tmp_path, process=False)
    assert result.returncode == 2, result.stderr
    for expected in ("search.initial must be an integer from 2 to 10000",
                     "search.slope_factor must be a number from 0 to 100",
                     "search.tolerance must be absent",
                     "search.method must be grid when metrics lack 'lyapunov'"):
        assert expected in result.stderr, result.stderr
    raw["search"] = {"method": "refine", "budget": 3}
    raw["metrics"] = ["lyapunov"]
    path.write_text(yaml.safe_dump(raw))
    result = run_cli("validate", path, cwd=tmp_path, process=False)
    assert result.returncode == 2
    assert "search.budget must be an integer >= 18, the points of the first round" in (
        result.stderr)
    raw["search"] = {"method": "bisect"}
    path.write_text(yaml.safe_dump(raw))
    result = run_cli("run", path, "--out", tmp_path / "out", cwd=tmp_path, process=True)
    assert result.returncode == 2
    assert "search.method must be one of ['grid', 'refine'], got search.method='bisect'" in (
        result.stderr)
    assert not (tmp_path / "out").exists()


def test_a_refined_sweep_end_to_end_through_ray_mlflow_and_parquet(tmp_path):
    """`sweeper run` on the embedded Ray with sqlite MLflow: the rounds are recorded, each
    logged on the parent run, and the region map covers the grid with `evaluated` set on the
    measured cells only."""
    import mlflow.tracking
    import pyarrow.parquet as pq

    raw = {"name": "refine-cli", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8,
           "seq_len": 40, "axes": {"recurrent_scale": {"linspace": [0.2, 3.0, 33]},
                                   "input_scale": [0.1, 1.0], "seed": [0, 1]},
           "vectorize": ["recurrent_scale", "seed"], "metrics": ["lyapunov"],
           "map": {"x": "recurrent_scale", "y": "input_scale"},
           "search": {"method": "refine", "budget": 60, "initial": 5}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    result = run_cli("run", path, "--out", out, "--tracking-uri", uri, "--executor", "ray",
                     cwd=tmp_path, process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    space = validate_space(raw)
    rounds = RoundsFile(out, space).rounds()
    assert len(rounds) >= 2
    table = pq.read_table(out / "region_map.parquet").to_pandas()
    assert len(table) == 33 * 2  # the whole grid
    points = pd.concat([pd.read_parquet(p) for p in (out / "points").glob("*.parquet")])
    assert len(points) <= 60 and set(points["point_id"]) <= _grid_ids(space)
    evaluated = table[table["evaluated"]]
    assert len(evaluated) * 2 == len(points)
    assert table.loc[~table["evaluated"], "lyapunov_max_mean"].isna().all()
    assert table["region"].notna().all()
    client = mlflow.tracking.MlflowClient(uri)
    parent = json.loads((out / "sweep.json").read_text())["parent_run_id"]
    history = client.get_metric_history(parent, "refine_points")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(len(rounds)))
    assert max(m.value for m in history) == len(points)
    trials = client.search_runs([client.get_experiment_by_name("refine-cli").experiment_id],
                                "tags.`sweeper.role` = 'trial'")
    assert {r.data.tags["trial_id"] for r in trials} == {t.trial_id for r in rounds for t in r}
    assert all(r.info.status == "FINISHED" for r in trials)
