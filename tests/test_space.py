"""Search-space files: expansion into trials, stable ids, and every error reported at once."""

from __future__ import annotations

import copy
import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper import SweeperInputError
from sweeper.axes import AXES
from sweeper.cell_shapes import CELL_SHAPES, CellShape
from sweeper.cli import main
from sweeper.protocols import TrainingConfig
from sweeper.space import (
    AXIS_DEFAULTS,
    INTEGER_RANGES,
    LARGE_POINTS,
    LARGE_TRIALS,
    MAX_AXIS_VALUES,
    MAX_HIDDEN_SIZE,
    MAX_SEED,
    MAX_SEQ_LEN,
    PROTOCOLS,
    SCALAR_AXES,
    check_size,
    estimate,
    point_id,
    trial_bytes,
    validate_space,
)

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
    lines = [line.strip() for line in err.splitlines()[1:]]
    for key in ("name", "cell", "hidden_size", "axes.recurrent_scale.linspace", "axes.gain",
                "metrics", "resources.cpu"):
        # "<key> must be ..., got <key>=..." for a value, "<key>: ..." otherwise
        assert any(line.startswith((f"{key} must be ", f"{key}: ")) for line in lines), key
    assert "Traceback" not in err


# One corruption per generated file: (key path named in the message, how to break it).
CORRUPTIONS = [
    ("name", lambda s, v: s.__setitem__("name", v), st.sampled_from(["", "a b", None, 3])),
    ("cell", lambda s, v: s.__setitem__("cell", v), st.text(min_size=1, max_size=8).filter(
        lambda t: t not in CELL_SHAPES)),
    ("hidden_size", lambda s, v: s.__setitem__("hidden_size", v),
     st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.just("64"),
               st.integers(min_value=MAX_HIDDEN_SIZE + 1, max_value=10**30),
               st.sampled_from([[16], {"h": 16}, None, True]))),
    ("seq_len", lambda s, v: s.__setitem__("seq_len", v),
     st.one_of(st.integers(max_value=0), st.just(2.5),
               st.integers(min_value=MAX_SEQ_LEN + 1, max_value=10**400))),
    ("axes.recurrent_scale", lambda s, v: s["axes"].__setitem__("recurrent_scale", v),
     st.one_of(st.just([]), st.lists(st.floats(max_value=-0.01), min_size=1, max_size=3),
               st.just({"linspace": [0, 1]}), st.just({"logspace": [0, 1, 3]}),
               st.just({"uniform": [1, 0], "samples": 3}), st.just({"grid": [1]}),
               st.just([1.0, 1.0]),
               st.lists(st.sampled_from([math.inf, -math.inf, math.nan, 10**400]), min_size=1,
                        max_size=1),
               st.builds(lambda n: {"linspace": [0, 1, n]},
                         st.integers(min_value=MAX_AXIS_VALUES + 1, max_value=10**12)),
               st.builds(lambda n: {"uniform": [0, 1], "samples": n},
                         st.integers(min_value=MAX_AXIS_VALUES + 1, max_value=10**12)),
               st.sampled_from([{"linspace": [0, math.inf, 3]}, {"logspace": [1, 10**400, 3]},
                                {"uniform": [0, 1], "samples": 3, "seed": -1},
                                {"uniform": [0, 1], "samples": 3, "seed": None},
                                {"uniform": [0, 1], "samples": 3, "seed": "x"},
                                {"linspace": [0, 1, 3.0]}, {"linspace": [0, 1, True]}]))),
    ("axes.seed", lambda s, v: s["axes"].__setitem__("seed", v),
     st.one_of(st.just([-1]), st.just([0.5]), st.just({"linspace": [0, 3, 4]}),
               st.lists(st.integers(min_value=MAX_SEED + 1, max_value=2**80), min_size=1,
                        max_size=3, unique=True))),
    ("axes.", lambda s, v: s["axes"].__setitem__(v, [1.0]),
     st.sampled_from(["gain", "lr", "depth", "noise"])),
    ("vectorize", lambda s, v: s.__setitem__("vectorize", v),
     st.sampled_from([["seq_len"], ["seed", "seed"], "seed", ["hidden_size"]])),
    ("metrics", lambda s, v: s.__setitem__("metrics", v),
     st.sampled_from([[], ["chaos"], "lyapunov", ["landscape"], ["training"]])),
    ("resources.", lambda s, v: s["resources"].__setitem__(*v),
     st.sampled_from([("cpu", 0), ("gpu", -1), ("tpu", 1), ("cpu", "one"), ("cpu", math.nan),
                      ("gpu", math.inf), ("cpu", 10**400), ("gpu", [0])])),
    ("task", lambda s, v: s.__setitem__("task", v),
     st.sampled_from(["sine", "nope:Task", ":Task", None, ["noise"], 3])),
    ("task_params", lambda s, v: s.__setitem__("task_params", v),
     st.sampled_from([{"input_std": -1}, {"std": 1}, {"input_size": 0},
                      {"input_std": 10**400}, {1: 2}, {"input_std": math.nan}, [1],
                      {"input_size": 10**400}])),
    ("unknown key", lambda s, v: s.__setitem__(v, 1), st.sampled_from(["epochs", "gpu"])),
    ("regions", lambda s, v: s.__setitem__("regions", v),
     st.sampled_from([{"epsilon": 0}, {"epsilon": -1.0}, {"min_attractors": 1},
                      {"horizon_fraction": 2}, {"eps": 0.1}, [0.01]])),
    ("landscape", lambda s, v: s.__setitem__("landscape", v),
     st.sampled_from([{"hessian_steps": -1}, {"points": 2}, {"radius": 0}, {"hessian": 0},
                      [1], {"radius": math.inf}, {"random_radius": math.nan},
                      {"points": 10**400}, {"batch_size": "16"}, {"points": 41.5}])),
    ("search", lambda s, v: s.__setitem__("search", v),
     st.sampled_from([{"method": "bisect"}, {"method": "refine"}, [1],
                      {"method": "refine", "budget": 0}, {"method": "grid", "budget": 5},
                      {"method": "refine", "budget": 10**6, "initial": 1},
                      {"method": "refine", "budget": 3}])),
    ("training", lambda s, v: s.__setitem__("training", v),
     st.sampled_from([{"steps": 0}, {"lr": -1}, {"schedule": "linear"}, {"betas": [0.9]},
                      {"clip": math.inf}, {"threshold": "low"}, {"epochs": 3}, [1]])),
    ("dynamics", lambda s, v: s.__setitem__("dynamics", v),
     st.sampled_from([{"burn_in": -1}, {"n_trajectories": 1.5}, {"horizon_tol": 2},
                      {"twin": "yes"}, {"warmup": 1}])),
    ("memory", lambda s, v: s.__setitem__("memory", v),
     st.sampled_from([{"train": 0}, {"washout": -5}, {"ridge": math.nan},
                      {"attractor_inits": "16"}, {"delays": 3}])),
    ("cell", lambda s, v: s.__setitem__("cell", v),
     st.sampled_from([["rnn_tanh"], {"rnn_tanh": 1}, None, 1.5])),
    ("map", lambda s, v: s.__setitem__("map", v),
     st.sampled_from([{"x": "gain"}, {"x": "seed", "y": "seed"}, {"z": "seed"}, ["x"]])),
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
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
    # That neither imports Ray is checked in a fresh process (test_layering): here an earlier
    # test module has loaded it already.


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
    # As sweeper reads a file: its relative paths (a checkpoint) start from its directory.
    space = validate_space(yaml.safe_load(path.read_text()), root=path.parent)
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert len(header) >= 2, "each example starts with a comment saying what it maps"
    assert space.trials() and space.n_points >= 1
    assert space.name.replace("-", "_") == path.stem  # file name and sweep name agree
    size = check_size(space, 24 * 2**30)  # the examples start on a 24 GB machine
    assert size.points == space.planned_points and size.trials == len(space.trials())


def test_shipped_examples_cover_the_documented_set():
    names = {p.stem for p in SHIPPED}
    assert {"quickstart", "paper_chaotic_lstm", "rnn_gain_vs_length", "lstm_temporal_order",
            "gru_copy_memory", "smoke"} <= names


GIB = 2**30


def test_estimate_counts_points_trials_and_batches():
    size = estimate(validate_space(VALID))
    assert (size.points, size.trials, size.points_per_trial) == (72, 3, 24)
    by_size = dict(VALID, hidden_size=None, axes={**VALID["axes"], "hidden_size": [8, 64]})
    del by_size["hidden_size"]
    larger = estimate(validate_space(by_size))
    assert (larger.points, larger.trials, larger.points_per_trial) == (144, 6, 24)
    # The largest trial (H = 64) bounds the others.
    assert larger.trial_bytes == estimate(validate_space(dict(VALID, hidden_size=64))).trial_bytes


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "stable_lstm"])
@pytest.mark.parametrize("metrics", [["lyapunov"], ["memory"], ["landscape"], ["training"]])
def test_trial_memory_grows_with_every_size(cell, metrics):
    from sweeper.task import get_task

    task = get_task("teacher")
    # 8 and 32 points stay below the memory family's chunk (43 points at H = 256).
    base = {"hidden_size": 256, "seq_len": 2000, "points": 8, "seeds": 2}

    def peak(**changed):
        sizes = {**base, **changed}
        return trial_bytes(CELL_SHAPES[cell], task, sizes["hidden_size"], sizes["seq_len"],
                           sizes["points"], sizes["seeds"], metrics)

    reference = peak()
    for name in ("hidden_size", "seq_len", "points"):
        if name == "seq_len" and metrics == ["memory"]:
            continue  # the memory protocol's length is its own (washout + train + test)
        assert peak(**{name: base[name] * 4}) > reference, name


def test_check_size_refuses_a_trial_larger_than_the_memory():
    huge = validate_space(dict(VALID, cell="lstm", hidden_size=MAX_HIDDEN_SIZE, axes={}))
    with pytest.raises(SweeperInputError) as refused:
        check_size(huge, 24 * GIB)
    message = str(refused.value)
    assert "memory: one trial (1 point, hidden_size 65536, seq_len 50) needs about" in message
    assert "this machine has 24.0 GiB" in message and "--allow-large" in message
    assert check_size(huge, 24 * GIB, allow_large=True).trial_bytes > 24 * GIB
    batched = validate_space(dict(VALID, hidden_size=4096))
    with pytest.raises(SweeperInputError, match="vectorize fewer axes"):
        check_size(batched, 4 * GIB)
    assert check_size(batched, 10**15).points_per_trial == 24


def test_check_size_limits_points_and_trials():
    many_points = validate_space(dict(VALID, axes={
        "recurrent_scale": {"linspace": [0.25, 3.0, 100_000]}, "input_scale": [0.5],
        "seed": list(range(11))}))
    with pytest.raises(SweeperInputError, match=f"points: the sweep has 1100000 points; the "
                                                f"limit is {LARGE_POINTS}"):
        check_size(many_points, 10**15)
    many_trials = validate_space(dict(VALID, vectorize=[], axes={
        "recurrent_scale": {"linspace": [0.25, 3.0, 101]},
        "input_scale": {"linspace": [0.0, 1.0, 100]}}))
    with pytest.raises(SweeperInputError, match=f"trials: the sweep has 10100 trials .*the "
                                                f"limit is {LARGE_TRIALS}"):
        check_size(many_trials, 10**15)
    assert check_size(many_trials, 10**15, allow_large=True).trials == 10100


@pytest.mark.parametrize("memory", [0, -1, 2.5e10, "24G", True])
def test_check_size_needs_a_memory_figure(memory):
    with pytest.raises(SweeperInputError, match="memory_bytes must be an integer >= 1"):
        check_size(validate_space(VALID), memory)


def test_machine_memory_is_a_positive_figure_no_larger_than_the_physical_memory():
    import os

    from sweeper.adapters.space_file import machine_memory_bytes

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < machine_memory_bytes() <= physical


MEASURE_PEAK = """
import os, resource, sys, yaml
from sweeper.space import PROCESS_BYTES, estimate, validate_space
from sweeper.sweep import trial_frame
space = validate_space(yaml.safe_load(sys.argv[1]))
# The resident memory now, not the peak so far (an import's passing peak would hide growth).
before = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
trial_frame(space, space.trials()[0], "cpu")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak - before, estimate(space).trial_bytes - PROCESS_BYTES)
"""


@pytest.mark.slow
def test_the_memory_estimate_is_near_a_measured_peak():
    """One trial whose memory is mostly the landscape slices (41 x 8 rollouts of 16 sequences
    of 200 steps, H = 64): the estimate above the process's own memory is within a factor 2
    of the growth of the measured peak resident memory, counted from the resident memory
    before the trial (not from the peak so far, which an import's passing peak can raise)."""
    space = {"name": "peak", "task": "teacher", "cell": "rnn_tanh", "hidden_size": 64,
             "seq_len": 200, "axes": {"recurrent_scale": {"linspace": [0.5, 2.5, 8]}},
             "metrics": ["landscape"], "landscape": {"hessian_steps": 0}}
    out = subprocess.run([sys.executable, "-c", MEASURE_PEAK, yaml.safe_dump(space)],
                         capture_output=True, text=True, check=True, timeout=300)
    measured, estimated = map(int, out.stdout.split())
    assert measured > 200 * 2**20  # the trial itself allocated a lot: the test means something
    assert 0.5 < estimated / measured < 2, (estimated, measured)


def test_protocol_keys_reach_the_measurement_and_the_trial_id():
    """`training:`, `dynamics:` and `memory:` set their family's protocol as `landscape:`
    does: validated, part of each trial's config (another protocol: other trial ids), and
    passed to measure() (a loss threshold makes steps_to_threshold a number)."""
    from sweeper.sweep import trial_frame

    raw = {"name": "protocols", "task": "teacher", "cell": "rnn_tanh", "hidden_size": 8,
           "seq_len": 20, "axes": {"recurrent_scale": [0.5, 1.0]}, "metrics": ["training"],
           "training": {"steps": 40, "threshold": 10.0, "betas": [0.8, 0.99]},
           "dynamics": {"burn_in": 10}, "memory": {"train": 200, "test": 100}}
    space = validate_space(raw)
    trial = space.trials()[0]
    assert trial.config["training"] == {"steps": 40, "threshold": 10.0, "betas": [0.8, 0.99]}
    assert trial.config["dynamics"] == {"burn_in": 10}
    plain = validate_space({k: v for k, v in raw.items() if k != "training"})
    assert plain.trials()[0].trial_id != trial.trial_id
    frame = trial_frame(space, trial, "cpu")
    # A threshold above every loss is reached by every point at its first step.
    assert (frame["steps_to_threshold"] == 1).all()
    without = trial_frame(plain, plain.trials()[0], "cpu")
    assert without["steps_to_threshold"].isna().all()


def test_bad_protocol_fields_are_named_each_with_what_is_allowed():
    raw = dict(VALID, training={"steps": 2.5, "schedule": 3, "clip": "x", "betas": [1, 2, 3]},
               dynamics={"twin": 1, "speed": 2}, memory={"ridge": math.inf, "washout": -5},
               landscape={"points": 10**400})
    with pytest.raises(SweeperInputError) as caught:
        validate_space(raw)
    message = str(caught.value)
    for expected in ("training.steps must be an integer >= 1, got training.steps=2.5",
                     "training.schedule must be one of ['constant', 'cosine'], got "
                     "training.schedule=3",
                     "training.clip must be a finite number > 0, got training.clip='x'",
                     "training.betas must be a list of 2 finite numbers",
                     "dynamics: unknown keys ['speed']",
                     "memory.ridge must be a finite number >= 0, got memory.ridge=inf",
                     "memory.washout must be None or an integer >= 1, got memory.washout=-5",
                     "landscape.points must be an integer from 3 to 2147483648, got "
                     "landscape.points=1000"):
        assert expected in message, message


# One bad value per field: the file's problem is the config class's own, under its key path.
BAD_FIELDS = {
    "dynamics": {"burn_in": -1, "n_trajectories": 0, "lyapunov_k": 1.5, "lipschitz_samples": "8",
                 "lanczos_steps": 2**40, "horizon_tol": 1.0, "twin": 1},
    "memory": {"washout": 0, "train": None, "test": True, "max_delay": -2, "ridge": -1e-3,
               "chunk_bytes": 0, "attractor_inits": [16], "attractor_steps": 0,
               "attractor_window": 2.0, "attractor_tol": 0, "attractor_chaos": math.nan,
               "attractor_batches": 1, "attractor_se": -4},
    "landscape": {"points": 2, "radius": 0, "random_radius": math.inf, "batch_size": 0,
                  "hessian_steps": -1, "data_seed": -1},
    "training": {"steps": 0, "batch_size": 10**400, "val_batch_size": 1.0, "lr": 0,
                 "betas": [0.9], "eps": -1, "schedule": "linear", "clip": 0, "threshold": "low",
                 "data_seed": 0.5},
}


@pytest.mark.parametrize("key", sorted(PROTOCOLS))
def test_the_config_class_is_the_one_source_of_its_fields_rules(key):
    # Every field has a rule and a bad value here; the file validator reports exactly what
    # constructing the class says, with the field named by its key path.
    cls = PROTOCOLS[key]
    assert list(cls.RULES) == [f.name for f in dataclasses.fields(cls)] == list(BAD_FIELDS[key])
    with pytest.raises(SweeperInputError) as caught:
        validate_space(dict(VALID, **{key: BAD_FIELDS[key]}))
    reported = str(caught.value).splitlines()[1:]
    assert len(reported) == len(BAD_FIELDS[key])
    for (name, value), line in zip(BAD_FIELDS[key].items(), reported, strict=True):
        with pytest.raises(SweeperInputError) as built:
            cls(**{name: value})
        own = str(built.value)
        assert own.startswith(f"{name} must be ") and f", got {name}=" in own, own
        assert line.strip()[:400] == own.replace(name, f"{key}.{name}", 2)[:400]


def test_a_rule_between_fields_is_the_class_own_under_its_key():
    raw = dict(VALID, memory={"attractor_steps": 2, "attractor_window": 1})
    with pytest.raises(SweeperInputError, match=r"memory: MemoryConfig requires attractor_steps "
                                                r"// 2 \+ attractor_window >= attractor_batches"):
        validate_space(raw)
    assert TrainingConfig(betas=(0.8, 0.99), clip=None).betas == (0.8, 0.99)


def test_every_axis_has_one_rule_for_its_default_and_its_values():
    assert set(SCALAR_AXES) | set(AXIS_DEFAULTS) == set(AXES)
    assert not set(SCALAR_AXES) & set(AXIS_DEFAULTS)
    assert set(INTEGER_RANGES) <= set(AXES)


def test_every_axis_is_a_point_column_of_the_type_of_its_values():
    from sweeper.schema import POINT_COLUMNS

    types = {c.name: c.dtype for c in POINT_COLUMNS}
    for axis in AXES:
        assert types[axis] == ("int64" if axis in INTEGER_RANGES else "double"), axis


def test_the_cell_shapes_describe_the_built_in_cells():
    # Validation and the size estimate read CELL_SHAPES for a built-in cell (no torch): every
    # built-in cell has one, and it says what the cell says.
    from sweeper.cells import CELLS

    assert set(CELL_SHAPES) == set(CELLS)
    for name, cell in CELLS.items():
        shape = CELL_SHAPES[name]
        assert shape == CellShape.of(cell), name
        assert [shape.state_size(h) for h in (1, 2, 7)] == [cell.state_size(h)
                                                            for h in (1, 2, 7)], name
    assert CELL_SHAPES["stable_lstm"].per_point_weights  # the one that projects its weights


def test_by_default_the_gain_and_the_seed_are_batched_and_the_rest_split_into_trials():
    from sweeper.space import parallelism_note

    raw = {"name": "d", "cell": "rnn_tanh", "hidden_size": 8, "seq_len": 20,
           "axes": {"recurrent_scale": [0.5, 1.0, 2.0], "input_scale": [0.1, 1.0],
                    "seed": [0, 1]}}
    space = validate_space(raw)
    assert space.vectorize == ("recurrent_scale", "seed") and len(space.trials()) == 2
    assert parallelism_note(space, 2) is None
    note = parallelism_note(space, 8)
    assert note.startswith("2 trial(s) for 8 worker slots (8 cores, 1 per trial)")
    assert "vectorize: ['seed']" in note and "split recurrent_scale into trials" in note
    one = validate_space({**raw, "vectorize": ["recurrent_scale", "input_scale", "seed"]})
    assert len(one.trials()) == 1 and "1 trial(s) for 2 worker slots" in parallelism_note(one, 2)


def test_validate_prints_each_axis_and_says_what_a_scalar_seed_means(tmp_path, capsys):
    from sweeper.cli import main

    path = tmp_path / "s.yaml"
    path.write_text("name: s\ncell: rnn_tanh\nhidden_size: 8\nseq_len: 20\n"
                    "axes: {recurrent_scale: {linspace: [0.25, 3.0, 32]}, seed: 3}\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "  recurrent_scale (32): 0.25, 0.34, 0.43, ..., 2.82, 2.91, 3.00" in out
    assert "note: seed: 3 is the single seed 3; for 3 seeds write seed: [0, 1, 2]" in out
    # One short trial runs in-process: no slots to fill, no note.
    assert "sweeper run: in-process (one trial: nothing to run side by side)" in out
    assert "trial(s) for" not in out


def test_validate_notes_a_long_single_trial_that_leaves_slots_idle(tmp_path, capsys):
    import os

    from sweeper.cli import main

    path = tmp_path / "s.yaml"  # one trial of 384 points at H = 256: about 20 s of compute
    path.write_text("name: s\ncell: rnn_tanh\nhidden_size: 256\nseq_len: 200\n"
                    "axes: {recurrent_scale: {linspace: [0.25, 3.0, 128]}, seed: [0, 1, 2]}\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sweeper run: in-process (one trial: nothing to run side by side)" in out
    assert ("note: 1 trial(s) for 2 worker slots" in out) == (os.cpu_count() == 2)
    assert ("to split recurrent_scale into trials" in out) == ((os.cpu_count() or 1) > 1)
