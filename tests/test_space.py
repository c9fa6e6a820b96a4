"""Search-space files: expansion into trials, stable ids, and every error reported at once."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper import SweeperInputError
from sweeper.cli import main
from sweeper.space import point_id, validate_space

VALID = {
    "name": "gain-vs-input",
    "task": "noise",
    "task_params": {"input_std": 1.0},
    "cell": "rnn_tanh",
    "hidden_size": 16,
    "seq_len": 50,
    "axes": {"recurrent_scale": {"linspace": [0.25, 3.0, 12]}, "input_scale": [0.1, 0.5, 1.0],
             "seed": [0, 1]},
    "vectorize": ["recurrent_scale", "seed"],
    "metrics": ["lipschitz", "lyapunov", "memory"],
    "resources": {"cpu": 1, "gpu": 0.25},
}


def test_valid_space_expands_into_trials_of_batched_points():
    space = validate_space(VALID)
    trials = space.trials()
    assert len(trials) == 3 and all(t.n_points == 24 for t in trials)
    assert space.n_points == 72
    np.testing.assert_allclose(space.axes["recurrent_scale"], np.linspace(0.25, 3.0, 12))
    assert [t.config["input_scale"] for t in trials] == [0.1, 0.5, 1.0]
    assert len({t.trial_id for t in trials}) == 3
    assert space.resources == {"cpu": 1.0, "gpu": 0.25}
    # Same file, same ids; a changed value changes them.
    assert [t.trial_id for t in validate_space(copy.deepcopy(VALID)).trials()] == [
        t.trial_id for t in trials]
    other = copy.deepcopy(VALID)
    other["seq_len"] = 60
    assert validate_space(other).trials()[0].trial_id != trials[0].trial_id
    ids = {point_id(t, {"recurrent_scale": r, "seed": s}) for t in trials
           for r in space.axes["recurrent_scale"] for s in space.axes["seed"]}
    assert len(ids) == 72


def test_trial_ids_are_the_same_in_another_process(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(VALID))
    code = ("import sys; from sweeper.adapters.space_file import load_space; "
            "print(' '.join(t.trial_id for t in load_space(sys.argv[1]).trials()))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.split() == [t.trial_id for t in validate_space(VALID).trials()]


def test_generators_logspace_and_uniform():
    space = dict(VALID, axes={"recurrent_scale": {"logspace": [0.1, 10.0, 3]},
                              "input_scale": {"uniform": [0.0, 2.0], "samples": 5}})
    expanded = validate_space(space).axes
    np.testing.assert_allclose(expanded["recurrent_scale"], [0.1, 1.0, 10.0])
    assert len(expanded["input_scale"]) == 5
    assert all(0.0 <= v < 2.0 for v in expanded["input_scale"])


def test_every_error_is_reported_at_once(tmp_path, capsys):
    bad = dict(VALID, name="bad name!", cell="elman", hidden_size=0,
               axes={"recurrent_scale": {"linspace": [0, 1]}, "gain": [1]},
               metrics=["landscape"], resources={"cpu": 0})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    for key in ("name:", "cell:", "hidden_size:", "axes.recurrent_scale.linspace:",
                "axes.gain:", "metrics:", "resources.cpu:"):
        assert key in err, key
    assert "Traceback" not in err


# One corruption per generated file: (key path named in the message, how to break it).
CORRUPTIONS = [
    ("name", lambda s, v: s.__setitem__("name", v), st.sampled_from(["", "a b", None, 3])),
    ("cell", lambda s, v: s.__setitem__("cell", v), st.text(min_size=1, max_size=8).filter(
        lambda t: t not in ("gru", "lstm", "linear", "rnn_tanh", "orthogonal"))),
    ("hidden_size", lambda s, v: s.__setitem__("hidden_size", v),
     st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.just("64"))),
    ("seq_len", lambda s, v: s.__setitem__("seq_len", v),
     st.one_of(st.integers(max_value=0), st.just(2.5))),
    ("axes.recurrent_scale", lambda s, v: s["axes"].__setitem__("recurrent_scale", v),
     st.one_of(st.just([]), st.lists(st.floats(max_value=-0.01), min_size=1, max_size=3),
               st.just({"linspace": [0, 1]}), st.just({"logspace": [0, 1, 3]}),
               st.just({"uniform": [1, 0], "samples": 3}), st.just({"grid": [1]}),
               st.just([1.0, 1.0]))),
    ("axes.seed", lambda s, v: s["axes"].__setitem__("seed", v),
     st.one_of(st.just([-1]), st.just([0.5]), st.just({"linspace": [0, 3, 4]}))),
    ("axes.", lambda s, v: s["axes"].__setitem__(v, [1.0]),
     st.sampled_from(["gain", "lr", "depth", "noise"])),
    ("vectorize", lambda s, v: s.__setitem__("vectorize", v),
     st.sampled_from([["seq_len"], ["seed", "seed"], "seed", ["hidden_size"]])),
    ("metrics", lambda s, v: s.__setitem__("metrics", v),
     st.sampled_from([[], ["chaos"], "lyapunov", ["landscape"], ["training"]])),
    ("resources.", lambda s, v: s["resources"].__setitem__(*v),
     st.sampled_from([("cpu", 0), ("gpu", -1), ("tpu", 1), ("cpu", "one")])),
    ("task", lambda s, v: s.__setitem__("task", v), st.sampled_from(["sine", "nope:Task"])),
    ("task_params", lambda s, v: s.__setitem__("task_params", v),
     st.sampled_from([{"input_std": -1}, {"std": 1}, {"input_size": 0}])),
    ("unknown key", lambda s, v: s.__setitem__(v, 1), st.sampled_from(["epochs", "gpu"])),
    ("regions", lambda s, v: s.__setitem__("regions", v),
     st.sampled_from([{"epsilon": 0}, {"epsilon": -1.0}, {"min_attractors": 1},
                      {"horizon_fraction": 2}, {"eps": 0.1}, [0.01]])),
    ("landscape", lambda s, v: s.__setitem__("landscape", v),
     st.sampled_from([{"hessian_steps": -1}, {"points": 2}, {"radius": 0}, {"hessian": 0},
                      [1]])),
    ("map", lambda s, v: s.__setitem__("map", v),
     st.sampled_from([{"x": "gain"}, {"x": "seed", "y": "seed"}, {"z": "seed"}, ["x"]])),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data(), index=st.integers(0, len(CORRUPTIONS) - 1))
def test_generated_invalid_spaces_exit_2_naming_the_key(tmp_path, capsys, data, index):
    key, corrupt, values = CORRUPTIONS[index]
    space = copy.deepcopy(VALID)
    corrupt(space, data.draw(values))
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert key.split()[0] in err if key != "unknown key" else "unknown key" in err
    assert "Traceback" not in err
    # `sweeper run` refuses the same file before starting anything.
    db = tmp_path / "mlflow.db"
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--tracking-uri",
                 f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert key.split()[0] in err if key != "unknown key" else "unknown key" in err
    assert not (tmp_path / "out").exists() and not db.exists()
    assert "ray" not in sys.modules  # neither command starts (or imports) Ray


def test_unreadable_and_non_yaml_files(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read search space" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert main(["validate", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    with pytest.raises(SweeperInputError, match="expected a mapping"):
        validate_space(["not", "a", "mapping"])


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_search_spaces_are_valid_and_explained(path):
    space = validate_space(yaml.safe_load(path.read_text()))
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert len(header) >= 2, "each example starts with a comment saying what it maps"
    assert space.trials() and space.n_points >= 1
    assert space.name.replace("-", "_") == path.stem  # file name and sweep name agree


def test_shipped_examples_cover_the_documented_set():
    names = {p.stem for p in SHIPPED}
    assert {"quickstart", "paper_chaotic_lstm", "rnn_gain_vs_length", "lstm_temporal_order",
            "gru_copy_memory", "smoke"} <= names
