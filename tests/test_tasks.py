"""The task registry and the noise task."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

from rnn_sweeper_tasks import Noise
from sweeper import SweeperInputError, measure
from sweeper.task import ENTRY_POINT_GROUP, get_task, task_names

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ["adding", "char_lm", "chaotic_lstm", "copy_memory", "noise", "sine_generator",
           "teacher", "temporal_order"]


def test_noise_shapes_statistics_and_determinism():
    task = get_task("noise", {"input_size": 3, "input_std": 0.5})
    u = task.inputs(seed=4, n_trajectories=2, steps=5000)
    assert u.shape == (2, 5000, 3) and u.dtype == torch.float64
    # Sample std of 30000 N(0, 0.25) draws: standard error ~0.002; tolerance 0.01.
    assert u.std().item() == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(u, task.inputs(seed=4, n_trajectories=2, steps=5000), rtol=0,
                               atol=0)
    assert not torch.equal(u, task.inputs(seed=5, n_trajectories=2, steps=5000))
    assert torch.count_nonzero(get_task("noise", {"input_std": 0.0}).inputs(0, 1, 10)) == 0


@pytest.mark.parametrize(("params", "match"), [
    ({"input_size": 0}, "input_size=0"),
    ({"input_size": 1.5}, "input_size=1.5"),
    ({"input_std": -1.0}, "input_std=-1.0"),
    ({"input_std": float("nan")}, "input_std=nan"),
    ({"inputstd": 1.0},
     r"unknown task_params \['inputstd'\]; known: \['input_size', 'input_std'\]"),
])
def test_noise_rejects_bad_params(params, match):
    with pytest.raises(SweeperInputError, match=match):
        get_task("noise", params)


def test_unknown_task_lists_known_names():
    with pytest.raises(SweeperInputError, match=r"known tasks: adding, chaotic_lstm, .*noise"):
        get_task("sine")
    with pytest.raises(SweeperInputError, match="cannot load task"):
        get_task("no_such_module:Task")
    with pytest.raises(SweeperInputError, match=r"not a subclass of sweeper\.task\.Task"):
        get_task("sweeper.errors:SweeperInputError")


@pytest.mark.parametrize(("source", "error"), [
    ("def broken(:\n    pass\n", "SyntaxError: invalid syntax"),
    ("raise RuntimeError('needs a GPU\\nsecond line')\n", "RuntimeError: needs a GPU"),
    ("import no_such_dependency\n", "ModuleNotFoundError: No module named"),
    ("X = 1\n", "module '{module}' has no attribute 'Task'"),
])
def test_a_broken_plugin_module_is_exit_2_naming_it(tmp_path, monkeypatch, capsys, source,
                                                    error):
    # Whatever the user's module raises at import (a syntax error, a RuntimeError) is a clear
    # input error naming the module and the first line of the error, from validate and from
    # run (before any output exists), never a traceback.
    from sweeper.cli import main

    module = f"plugin_{abs(hash(source)) % 10**8}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    space = tmp_path / "space.yaml"
    space.write_text((ROOT / "search_spaces" / "smoke.yaml").read_text().replace(
        "task: noise", f"task: {module}:Task"))
    for command in (["validate", str(space)],
                    ["run", str(space), "--out", str(tmp_path / "out"), "--executor", "local"]):
        assert main(command) == 2
        message = capsys.readouterr().err
        assert f"cannot load task '{module}:Task'" in message
        assert error.format(module=module) in message and "second line" not in message
        assert "Traceback" not in message
    assert not (tmp_path / "out").exists()


def test_user_task_by_dotted_path_runs_like_a_builtin():
    task = get_task("usertask:Ramp", {"slope": 2.0})
    assert task.inputs(0, 1, 4)[0, :, 0].tolist() == [0.0, 0.5, 1.0, 1.5]
    frame = measure("rnn_tanh", 8, task="usertask:Ramp", task_params={"slope": 2.0},
                    seq_len=30, metrics=["lyapunov"])
    assert frame.task.tolist() == ["ramp"] and frame.status.tolist() == ["ok"]


def test_builtins_are_registered_by_entry_point_under_their_own_names():
    assert set(BUILTIN) <= set(task_names()) and task_names() == sorted(task_names())
    assert type(get_task("noise")) is Noise
    for name in BUILTIN:
        cls = type(get_task(name))
        assert cls.name == name and cls.__module__.startswith("rnn_sweeper_tasks."), cls


def test_building_a_builtin_task_needs_no_torch():
    # What validating a search space asks of a task - its parameters checked, its sizes -
    # loads no torch: checked in a fresh process (this one has imported it by now).
    script = ("import sys\nfrom sweeper.task import get_task, task_names\n"
              "for name in task_names():\n"
              "    task = get_task(name)\n"
              "    assert task.input_size >= 1 and task.output_size >= 0, name\n"
              "try:\n"
              "    get_task('noise', {'input_size': 0})\n"
              "except ValueError as exc:\n"
              "    print(exc)\n"
              "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == ("task_params.input_size must be an integer >= 1, got "
                         "task_params.input_size=0")
    assert lines[-1] == "[]"


def test_a_huge_integer_task_parameter_is_refused_naming_its_bound():
    with pytest.raises(SweeperInputError, match=r"task_params.input_size must be an integer "
                                                r"from 1 to 2147483648"):
        get_task("noise", {"input_size": 10**400})


def test_a_package_registers_its_task_by_entry_point(entry_points):
    added = entry_points[ENTRY_POINT_GROUP]
    added["ramp"] = EntryPoint("ramp", "usertask:Ramp", ENTRY_POINT_GROUP)
    added["broken"] = EntryPoint("broken", "no_such_module:Task", ENTRY_POINT_GROUP)
    added["not_a_task"] = EntryPoint("not_a_task", "sweeper.errors:SweeperInputError",
                                     ENTRY_POINT_GROUP)
    assert "ramp" in task_names()
    assert get_task("ramp", {"slope": 3.0}).slope == 3.0
    with pytest.raises(SweeperInputError, match="cannot load task 'broken' registered under"):
        get_task("broken")
    with pytest.raises(SweeperInputError, match=r"not a subclass of sweeper\.task\.Task"):
        get_task("not_a_task")


def test_a_tasks_py_in_the_working_directory_does_not_shadow_the_builtins(tmp_path):
    # The built-ins are installed as rnn_sweeper_tasks and found by entry point, so a user's
    # own tasks.py (first on sys.path when it sits in the working directory) is never imported.
    (tmp_path / "tasks.py").write_text("raise SystemExit('the user tasks.py was imported')\n")
    script = ("from sweeper import measure; "
              "frame = measure('rnn_tanh', 4, task='noise', seq_len=20, metrics=['lyapunov']); "
              "print(frame.status.tolist())")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['ok']"


@pytest.mark.parametrize(("name", "params", "match"), [
    ("teacher", {"reference": 0.0}, "reference=0.0"),
    ("teacher", {"output_size": 0}, "output_size=0"),
    ("teacher", {"washout": -1}, "washout=-1"),
    ("sine_generator", {"omega_min": -0.1}, "omega_min=-0.1"),
    ("sine_generator", {"omega_min": 0.5, "omega_max": 0.2}, "omega_min <= omega_max"),
    ("chaotic_lstm", {"initial": float("inf")}, "initial=inf"),
    ("chaotic_lstm", {"burn_in": -5}, "burn_in=-5"),
])
def test_supervised_task_params_are_validated(name, params, match):
    with pytest.raises(SweeperInputError, match=match):
        get_task(name, params)


def test_sine_and_teacher_batches_have_documented_shapes_and_truth():
    sine = get_task("sine_generator").batch(0, "train", 3, 40)
    omega = sine.inputs[:, 0, 0]
    assert sine.inputs.shape == (3, 40, 1) and sine.targets.shape == (3, 40, 1)
    assert torch.all((omega >= torch.pi / 16) & (omega <= torch.pi / 8))
    expected = torch.sin(omega[:, None] * torch.arange(1, 41, dtype=torch.float64))
    torch.testing.assert_close(sine.targets[..., 0], expected, rtol=0, atol=0)
    teacher = get_task("teacher", {"washout": 5, "input_size": 2})
    batch = teacher.batch(1, "val", 4, 20)
    assert batch.targets is None and batch.inputs.shape == (4, 20, 2)
    assert batch.mask[:, :5].sum() == 0 and batch.mask[:, 5:].all()
    assert not torch.equal(batch.inputs, teacher.batch(1, "train", 4, 20).inputs)
    with pytest.raises(SweeperInputError, match="seq_len > washout"):
        teacher.check_seq_len(5)


@pytest.mark.parametrize(("task", "cell", "hidden"), [("teacher", "rnn_tanh", 8),
                                                      ("chaotic_lstm", "lstm", 2)])
def test_loss_is_exactly_zero_at_the_reference_scale(task, cell, hidden):
    # Both tasks take their targets from the network itself at reference_scale (the teacher's
    # own draw; theta* at s = 1), so there the student reproduces them bit for bit.
    scale = get_task(task).reference_scale
    frame = measure(cell, hidden, task=task, recurrent_scale=[scale], metrics=["landscape"],
                    dtype="float64", seq_len=50)
    assert frame.loss.tolist() == [0.0]
