"""Hostile search-space files: duplicate keys, YAML 1.1/1.2 number spellings, YAML tags and
aliases, huge numbers and generators, broken syntax, oversized and binary files. Every one
must end in exit code 2 with the key path (or, for a syntax error, the line) in the message,
within seconds, before anything is created or imported - never a traceback, a hang or a run.

The generated cases mutate the text of one valid file, one mutation each, and drive the CLI
in-process: `sweeper validate` always, `sweeper run --executor local` for a drawn subset."""

from __future__ import annotations

import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper import SweeperInputError
from sweeper.adapters.space_file import MAX_FILE_BYTES, load_space, parse_space_text
from sweeper.cli import main
from sweeper.space import MAX_AXIS_VALUES

# The valid file every generated case starts from, one (key path, line) per line, so that a
# mutation can find the line of a key path.
BASE = [
    ("name", "name: fuzz"),
    ("task", "task: noise"),
    ("task_params", "task_params: {input_std: 1.0}"),
    ("cell", "cell: rnn_tanh"),
    ("hidden_size", "hidden_size: 16"),
    ("seq_len", "seq_len: 50"),
    ("axes", "axes:"),
    ("axes.recurrent_scale", "  recurrent_scale: {linspace: [0.25, 3.0, 12]}"),
    ("axes.input_scale", "  input_scale: [0.1, 0.5, 1.0]"),
    ("axes.seed", "  seed: [0, 1]"),
    ("vectorize", "vectorize: [recurrent_scale, seed]"),
    ("metrics", "metrics: [lipschitz, lyapunov, memory]"),
    ("resources", "resources:"),
    ("resources.cpu", "  cpu: 1"),
    ("resources.gpu", "  gpu: 0.25"),
]
LEAVES = [path for path, line in BASE if not line.endswith(":")]

# Spellings that no integer setting accepts, among them what YAML 1.1 and 1.2 read differently
# (1e3 is a float in 1.2, a string in 1.1), tags the safe loader builds into other types or
# cannot build, a recursive alias, and numbers past every limit or past float range.
ODD = ["yes", "~", "[]", "{}", "!!int abc", "!!float x", "!!bool maybe", "!!binary AAAA",
       "!!set {a}", "!!timestamp x", "2001-12-14", "&a [*a]", "!!python/name:os.system",
       '!!python/object/apply:os.system ["true"]', '!!str ""', ".nan", ".inf", "-.inf", "1e400"]
NOT_INTEGER = [*ODD, "1e3", "1e-3", "2.5", '"64"', "-1", "10000000000000000000000000000000",
               "0x7fffffffffffffffffffffff"]
NOT_SCALE = [*ODD, "-1e-3", "-1", '"0.5"', "-1e308"]
REPLACEMENTS = {  # key path -> values that make it invalid
    "name": [*ODD, '""', '"a b"', "3", "1e-3", '"' + "x" * 101 + '"'],
    "cell": [*ODD, "elman", "RNN_TANH", "1e-3", '"rnn_tanh "'],
    "hidden_size": [*NOT_INTEGER, "0", "1000000000000", "65537"],
    "seq_len": [*NOT_INTEGER, "0", "10000000000", "1000001"],
    "axes.recurrent_scale": [*ODD, "{linspace: [0, 1, 10000000]}", "{linspace: [0, 1, 1e7]}",
                             "{uniform: [0, 1], samples: 1000000000}",
                             "{uniform: [0, 1], samples: 3, seed: ~}",
                             "{logspace: [1e-3, 1e3, 1e7]}", "{linspace: [0, 1e400, 5]}",
                             "{linspace: [-1e308, 1e308, 3]}", "{grid: [1]}", "[1e-3, 1e-3]"],
    "axes.seed": [*ODD, "[0, 4294967296]", "[0, 1e3]", "{linspace: [0, 3, 4]}", "[-1]"],
    "vectorize": [*(v for v in ODD if v != "[]"), "seed",  # [] is valid: nothing vectorized
                  "[seed, seed]", "[hidden_size]", "[1e-3]"],
    "metrics": [*ODD, "[]", "[chaos]", "lyapunov", "[landscape]", "[lyapunov, !!int abc]"],
    "resources.cpu": [*NOT_SCALE, "0"],
    "resources.gpu": NOT_SCALE,
}
# Inside a flow list "[...]" a tag with ':' is a syntax error, tested apart (BROKEN).
IN_FLOW = [v for v in NOT_INTEGER if "python/" not in v]
LIST_ITEMS = {"axes.input_scale": (3, [v for v in NOT_SCALE if "python/" not in v]),
              "axes.seed": (2, IN_FLOW)}
UNKNOWN = [("", "epochs: 3", "epochs"), ("axes", "  gain: [1]", "axes.gain"),
           ("resources", "  tpu: 1", "resources.tpu"),
           ("", "landscape: {foo: 1}", "landscape"), ("", "regions: {eps: 0.1}", "regions"),
           ("", "map: {z: seed}", "map"), ("", "task_params: {std: 1}", "task_params"),
           ("", "landscape: {radius: .inf}", "landscape.radius"),
           ("", "landscape: {points: 1e400}", "landscape.points")]


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _lines() -> list[str]:
    return [line for _, line in BASE]


def _index(path: str) -> int:
    return [p for p, _ in BASE].index(path)


def _key(line: str) -> str:
    return line.split(":", 1)[0]


@st.composite
def replaced_value(draw):
    path = draw(st.sampled_from(sorted(REPLACEMENTS)))
    value = draw(st.sampled_from(REPLACEMENTS[path]))
    lines = _lines()
    lines[_index(path)] = f"{_key(lines[_index(path)])}: {value}"
    return _text(lines), path


@st.composite
def replaced_item(draw):
    path = draw(st.sampled_from(sorted(LIST_ITEMS)))
    length, pool = LIST_ITEMS[path]
    position, value = draw(st.integers(0, length - 1)), draw(st.sampled_from(pool))
    lines = _lines()
    key, items = lines[_index(path)].split(":", 1)
    items = items.strip()[1:-1].split(", ")
    items[position] = value
    lines[_index(path)] = f"{key}: [{', '.join(items)}]"
    return _text(lines), f"{path}[{position}]"


@st.composite
def duplicated_key(draw):
    """A leaf key given twice in its mapping (the second time with any value, valid or not),
    or a whole top-level block repeated at the end."""
    lines = _lines()
    if draw(st.booleans()):
        path = draw(st.sampled_from(LEAVES))
        value = draw(st.sampled_from(["1", "[0, 1]", "fuzz", "rnn_tanh", "0.5", "~"]))
        lines.insert(_index(path) + 1, f"{_key(lines[_index(path)])}: {value}")
        return _text(lines), f"{path}: duplicate key"
    path = draw(st.sampled_from(["axes", "resources"]))
    return _text([*lines, f"{path}: {{}}"]), f"{path}: duplicate key"


@st.composite
def unknown_key(draw):
    parent, line, path = draw(st.sampled_from(UNKNOWN))
    lines = _lines()
    lines.insert(_index(parent) + 1 if parent else len(lines), line)
    return _text(lines), path


BROKEN = [  # (mutation of the text, what the message names instead of a key path)
    (lambda t: t.replace("[0, 1]", "[0, 1"), "line"),
    (lambda t: t.replace("name: fuzz", 'name: "fuzz'), "line"),
    (lambda t: t + "\tbad: 1\n", "line"),
    (lambda t: t.replace("task: noise", "task: noise: other"), "line"),
    (lambda t: t + "- an item\n", "line"),
    (lambda t: t.replace("{linspace: [0.25, 3.0, 12]}", "{linspace: [0.25, 3.0, 12]"), "line"),
    (lambda t: t + "---\nname: second\n", "line"),
    (lambda t: "[" * 5000 + "]" * 5000, "nested too deeply"),
    (lambda t: t + "*undefined\n", "line"),
]


@st.composite
def broken_syntax(draw):
    mutate, named = draw(st.sampled_from(BROKEN))
    return mutate(_text(_lines())), named


HOSTILE = st.one_of(replaced_value(), replaced_item(), duplicated_key(), unknown_key(),
                    broken_syntax())


def test_the_base_file_is_valid(tmp_path, capsys):
    path = tmp_path / "base.yaml"
    path.write_text(_text(_lines()))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=HOSTILE, also_run=st.booleans())
def test_hostile_files_exit_2_naming_the_key_and_start_nothing(tmp_path, capsys, case,
                                                                also_run):
    text, named = case
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    path = work / "space.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert named in err, (text, err)
    assert "Traceback" not in err and len(err) < 20_000
    if also_run:
        out, db = work / "out", work / "mlflow.db"
        assert main(["run", str(path), "--out", str(out), "--executor", "local",
                     "--tracking-uri", f"sqlite:///{db}"]) == 2
        assert named in capsys.readouterr().err
        assert sorted(p.name for p in work.iterdir()) == ["space.yaml"]  # no out/, no db
    # That neither command imports Ray is checked in a fresh process (test_layering).


def _error(text: str, tmp_path: Path, capsys) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    return capsys.readouterr().err


def test_a_duplicate_key_is_named_with_both_lines(tmp_path, capsys):
    text = _text([*_lines()[:6], "cell: lstm", *_lines()[6:]])
    assert "cell: duplicate key (lines 4 and 7)" in _error(text, tmp_path, capsys)
    nested = _text(_lines()).replace("  seed: [0, 1]", "  seed: [0, 1]\n  seed: [2]")
    assert "axes.seed: duplicate key (lines 10 and 11)" in _error(nested, tmp_path, capsys)
    flow = _text(_lines()).replace("{input_std: 1.0}", "{input_std: 1.0, input_std: 2.0}")
    assert "task_params.input_std: duplicate key (line 3, columns 15 and 31)" in _error(
        flow, tmp_path, capsys)


def test_yaml_1_2_floats_are_numbers_and_yaml_is_left_alone(tmp_path):
    text = _text(_lines()).replace("[0.1, 0.5, 1.0]", "[1e-3, 1e308, 2.5E-1, 1e0]").replace(
        "gpu: 0.25", "gpu: 5e-1")
    path = tmp_path / "space.yaml"
    path.write_text(text)
    space = load_space(path)
    assert space.axes["input_scale"] == [1e-3, 1e308, 2.5e-1, 1.0]
    assert space.resources["gpu"] == 0.5
    assert yaml.safe_load("a: 1e-3") == {"a": "1e-3"}  # PyYAML itself is unchanged
    values = parse_space_text("[.inf, -.inf, .nan, 1e400, 1_000.5, 0x10, 12, '1e3']")
    assert values[:2] == [math.inf, -math.inf] and math.isnan(values[2])
    assert values[3:] == [math.inf, 1000.5, 16, 12, "1e3"]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e400"])
def test_non_finite_numbers_are_rejected(tmp_path, capsys, value):
    text = _text(_lines()).replace("[0.1, 0.5, 1.0]", f"[0.1, {value}]")
    err = _error(text, tmp_path, capsys)
    assert "axes.input_scale[1] must be a finite number >= 0, got axes.input_scale[1]=" in err


def test_a_huge_generator_is_refused_before_it_expands(tmp_path, capsys, monkeypatch):
    def guarded(name):
        real = getattr(np, name)

        def call(lo, hi, n, *args, **kwargs):
            assert n <= MAX_AXIS_VALUES, f"{name} expanded {n} values"
            return real(lo, hi, n, *args, **kwargs)
        return call

    for name in ("linspace", "geomspace"):
        monkeypatch.setattr(np, name, guarded(name))
    text = _text(_lines()).replace("[0.25, 3.0, 12]", "[0.25, 3.0, 10000000]")
    err = _error(text, tmp_path, capsys)
    assert (f"axes.recurrent_scale.linspace must be [lo, hi, n] with n <= {MAX_AXIS_VALUES} "
            "(an axis has at most that many values), got axes.recurrent_scale.linspace="
            "[0.25, 3.0, 10000000]") in err
    samples = _text(_lines()).replace("{linspace: [0.25, 3.0, 12]}",
                                      "{uniform: [0, 1], samples: 1000000000}")
    assert ("axes.recurrent_scale.samples must be an integer from 1 to "
            f"{MAX_AXIS_VALUES}, got axes.recurrent_scale.samples=1000000000"
            ) in _error(samples, tmp_path, capsys)


def test_points_and_trials_are_counted_before_trials_are_built(tmp_path, capsys):
    text = _text(_lines()).replace("[0.1, 0.5, 1.0]", "{linspace: [0, 1, 100000]}").replace(
        "[0.25, 3.0, 12]", "[0.25, 3.0, 100000]").replace("  seed: [0, 1]", "  seed: [0]")
    start = time.perf_counter()
    err = _error(text, tmp_path, capsys)
    assert "axes: 10000000000 points (the product of the axis lengths); a sweep has at most " \
           "1000000000" in err
    unvectorized = _text(_lines()).replace("[0.1, 0.5, 1.0]", "{linspace: [0, 1, 1001]}") \
        .replace("[0.25, 3.0, 12]", "[0.25, 3.0, 1000]").replace(
            "vectorize: [recurrent_scale, seed]", "vectorize: []")
    err = _error(unvectorized, tmp_path, capsys)
    assert "vectorize: 2002000 trials" in err and "at most 1000000" in err
    assert time.perf_counter() - start < 10  # expanding 10^10 points would never finish


def test_huge_sizes_are_refused_with_their_limits(tmp_path, capsys):
    text = _text(_lines()).replace("hidden_size: 16", "hidden_size: 1000000000000").replace(
        "seq_len: 50", "seq_len: 10000000000")
    err = _error(text, tmp_path, capsys)
    assert "hidden_size must be an integer from 1 to 65536, got hidden_size=1000000000000" in err
    assert "seq_len must be an integer from 1 to 1000000, got seq_len=10000000000" in err


def test_huge_values_of_protocols_and_task_params_are_refused_in_a_short_message(tmp_path,
                                                                                capsys):
    # The config classes and the tasks bound their integers (10**40 would reach the size
    # estimate's floats), and a megabyte-long value is cut in the message.
    text = _text(_lines()).replace("{input_std: 1.0}", "{input_size: " + "9" * 40 + "}") + (
        "training: {schedule: " + "x" * 200_000 + ", steps: " + "9" * 40 + "}\n")
    err = _error(text, tmp_path, capsys)
    assert "task_params.input_size must be an integer from 1 to 2147483648" in err
    assert "training.steps must be an integer from 1 to 2147483648" in err
    assert "training.schedule must be one of ['constant', 'cosine'], got " in err
    assert re.search(r"got training.schedule='x+\.\.\. \(2000\d\d characters\)", err)
    assert len(err) < 2_000


def test_alias_bombs_and_recursive_aliases_are_refused_quickly(tmp_path, capsys):
    bomb = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    start = time.perf_counter()
    err = _error(_text([*bomb, "name: *a8"]), tmp_path, capsys)
    assert "more than 100000 values (aliases counted each time they are used)" in err
    assert time.perf_counter() - start < 10
    err = _error(_text(_lines()).replace("[0, 1]", "&s [0, *s]"), tmp_path, capsys)
    assert "axes.seed[1]: an alias refers to a node that contains it" in err


def test_tags_the_safe_loader_cannot_build_are_named_by_path(tmp_path, capsys):
    text = _text(_lines()).replace("cell: rnn_tanh", "cell: !!python/object/apply:os.system "
                                   '["touch pwned"]')
    err = _error(text, tmp_path, capsys)
    assert "cell: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed" \
        in err
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    bad_int = _text(_lines()).replace("hidden_size: 16", "hidden_size: !!int sixteen")
    assert "hidden_size: cannot read 'sixteen' as 'tag:yaml.org,2002:int'" in _error(
        bad_int, tmp_path, capsys)


def test_oversized_binary_and_special_files(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text(_text(_lines()) + "# " + "x" * MAX_FILE_BYTES + "\n")
    assert main(["validate", str(big)]) == 2
    assert f"more than {MAX_FILE_BYTES} bytes" in capsys.readouterr().err
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\x00fuzz\n")
    assert main(["validate", str(binary)]) == 2
    assert "not UTF-8 text: byte 0xff at offset 6" in capsys.readouterr().err
    if Path("/dev/zero").exists():  # endless: read up to the limit, never to the end
        assert main(["validate", "/dev/zero"]) == 2
        assert f"more than {MAX_FILE_BYTES} bytes" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 2  # a directory
    assert "cannot read search space" in capsys.readouterr().err
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert main(["validate", str(empty)]) == 2
    assert "search space: got NoneType; expected a mapping" in capsys.readouterr().err


def test_parse_errors_are_input_errors():
    with pytest.raises(SweeperInputError, match="line 1"):
        parse_space_text("name: [unclosed\n", "s.yaml")
    with pytest.raises(SweeperInputError, match="key at line 1 is a sequence"):
        parse_space_text("? [1, 2]\n: 3\n")
    assert parse_space_text("base: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n") == {
        "base": {"x": 1}, "m": {"x": 2}}  # merge keys are not duplicates


@pytest.mark.parametrize(("env", "profile"), [
    ({"CI": "true"}, "ci"), ({"CI": "1"}, "ci"), ({"CI": "false"}, "dev"), ({}, "dev"),
    ({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}, "dev")])
def test_ci_runs_the_fuzzing_derandomized(monkeypatch, env, profile):
    from conftest import _profile

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _profile() == profile
    assert settings.get_profile("ci").derandomize and not settings.get_profile("dev").derandomize
