"""Cells as plug-ins: resolution by entry point and by path, the generic (autodiff) tangent
map against the hand-written one, the optional bound, and the contract checks of check-cell.

The user cells live in tests/usercell.py, loaded as "usercell:Class"."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import numpy as np
import pytest

from sweeper import measure
from sweeper.cellcheck import check_cell
from sweeper.cells import CELLS, ENTRY_POINT_GROUP, autodiff_version, cell_names, get_cell
from sweeper.errors import SweeperInputError


def test_a_cell_by_path_is_built_once_and_named_by_its_path():
    cell = get_cell("usercell:Softsign")
    assert cell is get_cell("usercell:Softsign")
    assert cell.name == "usercell:Softsign"
    assert cell.generic_tangent and not cell.has_bound
    assert not CELLS["rnn_tanh"].generic_tangent and CELLS["rnn_tanh"].has_bound


def test_a_package_registers_its_cell_by_entry_point(entry_points):
    added = entry_points[ENTRY_POINT_GROUP]
    added["softsign"] = EntryPoint("softsign", "usercell:BoundedSoftsign", ENTRY_POINT_GROUP)
    assert cell_names() == sorted([*CELLS, "softsign"])
    cell = get_cell("softsign")
    assert cell.name == "softsign" and cell.has_bound


@pytest.mark.parametrize(("source", "name", "match"), [
    ("def broken(:\n", "broken_syntax:Cell",
     r"cannot load cell 'broken_syntax:Cell': importing module 'broken_syntax' failed: "
     r"SyntaxError"),
    ("raise RuntimeError('no GPU driver')\n", "raises_on_import:Cell",
     r"importing module 'raises_on_import' failed: RuntimeError: no GPU driver"),
    ("", "empty_module:Cell", r"module 'empty_module' has no attribute 'Cell'"),
])
def test_a_broken_plugin_module_is_named_with_its_error(tmp_path, monkeypatch, source, name,
                                                        match):
    (tmp_path / f"{name.split(':')[0]}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SweeperInputError, match=match):
        get_cell(name)


def test_a_class_that_is_not_a_cell_or_cannot_be_built_is_refused(entry_points):
    added = entry_points[ENTRY_POINT_GROUP]
    with pytest.raises(SweeperInputError, match=r"'usercell:NotACell' is .*not a subclass of "
                                                r"sweeper\.cells\.Cell"):
        get_cell("usercell:NotACell")
    with pytest.raises(SweeperInputError, match=r"cannot build cell 'usercell:Unbuildable' "
                                                r"\(Unbuildable\(\)\): RuntimeError: needs a "
                                                r"config file"):
        get_cell("usercell:Unbuildable")
    added["gone"] = EntryPoint("gone", "no_such_module:Cell", ENTRY_POINT_GROUP)
    with pytest.raises(SweeperInputError, match=f"cannot load cell 'gone' registered under "
                                                f"{ENTRY_POINT_GROUP}: ModuleNotFoundError"):
        get_cell("gone")
    with pytest.raises(SweeperInputError, match=r"unknown cell 'nope'; known cells: "
                                                r"antisymmetric_rnn, .*gone, gru, .*"
                                                r"module.path:Class, .*stable_lstm"):
        get_cell("nope")


@pytest.mark.parametrize("name", sorted(CELLS))
def test_the_generic_tangent_map_measures_what_the_hand_written_one_does(name):
    """Each built-in cell with its hand-written tangent paths taken away (autodiff of its step,
    as a plug-in gets): in float64 the exponent and the Lanczos norms agree with the
    hand-written ones to 1e-12 (the same draws, the same arithmetic up to rounding)."""
    kwargs = dict(recurrent_scale=[0.5, 1.5, 3.0], input_scale=[0.5], seed=[0, 1], seq_len=60,
                  metrics=["lipschitz", "lyapunov"], dtype="float64", device="cpu")
    generic = autodiff_version(CELLS[name])
    assert generic.generic_tangent and not CELLS[name].generic_tangent
    ours, truth = measure(generic, 6, **kwargs), measure(CELLS[name], 6, **kwargs)
    for column in ("lyapunov_max", "lipschitz_local_max", "lipschitz_local_mean",
                   "cost_growth_log10_local"):
        np.testing.assert_allclose(ours[column], truth[column], rtol=1e-12, atol=1e-12,
                                   err_msg=column)


def test_a_cell_without_a_bound_has_nan_bound_columns_and_measured_local_ones():
    frame = measure("usercell:Softsign", 8, recurrent_scale=[0.5, 2.0], seq_len=40,
                    device="cpu", metrics=["lipschitz", "lyapunov"])
    assert frame["lipschitz_bound"].isna().all() and frame["cost_growth_log10"].isna().all()
    assert frame["lipschitz_local_max"].notna().all()
    assert frame["cost_growth_log10_local"].notna().all()
    assert (frame["status"] == "ok").all()


def test_a_plugin_cell_runs_every_dynamics_family_in_float32():
    frame = measure("usercell:BoundedSoftsign", 8, recurrent_scale=[0.5, 4.0], seq_len=40,
                    device="cpu")
    assert list(frame["status"]) == ["ok", "ok"]
    assert frame["cell"].eq("usercell:BoundedSoftsign").all()
    assert (frame["lipschitz_bound"] >= frame["lipschitz_local_max"] * (1 - 1e-4)).all()
    assert frame["memory_capacity"].notna().all()


@pytest.mark.parametrize("name", sorted(CELLS))
def test_every_builtin_cell_passes_its_own_contract(name):
    checks = check_cell(get_cell(name))
    assert [c.name for c in checks if not c.ok] == [], checks
    assert len(checks) >= 5


def test_check_cell_passes_a_correct_plugin_and_catches_a_wrong_one():
    assert all(c.ok for c in check_cell(get_cell("usercell:Softsign")))
    wrong = {c.name: c for c in check_cell(get_cell("usercell:WrongTangent"))}
    assert not wrong["tangent map = jacrev"].ok
    assert [n for n, c in wrong.items() if not c.ok] == ["tangent map = jacrev"]
    low = {c.name: c for c in check_cell(get_cell("usercell:TooLowBound"))}
    assert [n for n, c in low.items() if not c.ok] == ["bound >= local max"]
    assert "bound" in low["bound >= local max"].detail


def test_a_cell_whose_step_raises_fails_its_checks_without_a_traceback():
    class Raises(type(get_cell("usercell:Softsign"))):
        def step(self, params, x, drive):
            raise ValueError("shape trouble")

    checks = check_cell(Raises())
    # Only the bound check passes: the cell has none, so there is nothing to measure.
    assert [c.name for c in checks if c.ok] == ["bound >= local max"]
    assert all("ValueError: shape trouble" in c.detail for c in checks if not c.ok)


def test_a_plugin_cell_sweeps_on_embedded_ray_into_mlflow_and_the_region_map(tmp_path):
    """``cell: usercell:BoundedSoftsign`` through ``sweeper run`` on the embedded Ray (its
    workers import the module as the driver does: it is on their PYTHONPATH), MLflow on sqlite
    and the region map."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    tests = Path(__file__).resolve().parent
    space = tmp_path / "plugin.yaml"
    space.write_text("name: plugin\ntask: noise\ncell: usercell:BoundedSoftsign\n"
                     "hidden_size: 8\nseq_len: 40\naxes:\n  recurrent_scale: [0.5, 2.0, 6.0]\n"
                     "  input_scale: [0.1, 1.0]\n  seed: [0]\nvectorize: [recurrent_scale, seed]\n"
                     "metrics: [lipschitz, lyapunov, memory]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tests), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "sweeper.cli", "run", str(space), "--out",
                           str(tmp_path / "out"), "--tracking-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}", "--executor", "ray"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    points = pd.read_parquet(tmp_path / "out" / "points")
    assert len(points) == 6 and points["cell"].eq("usercell:BoundedSoftsign").all()
    assert (points["status"] == "ok").all() and points["lipschitz_bound"].notna().all()
    regions = pd.read_parquet(tmp_path / "out" / "region_map.parquet")
    assert set(regions["region"]) <= {"forgetful", "memory", "chaotic"} and len(regions) == 6
    runs = json.loads((tmp_path / "out" / "mlflow_runs.json").read_text())["runs"]
    assert sorted(runs) == sorted(points["trial_id"].unique())  # an MLflow run per trial
    assert points["mlflow_run_id"].isin(runs.values()).all()


def test_check_cell_reports_each_check_and_exits_2_on_a_violation(capsys):
    from sweeper.cli import main

    assert main(["check-cell", "usercell:WrongTangent"]) == 2
    out, err = capsys.readouterr()
    assert "FAIL  tangent map = jacrev: largest relative difference" in out
    assert "ok    batched = looped" in out
    assert "fails 1 check(s): tangent map = jacrev" in err and "Traceback" not in err
    assert main(["check-cell", "lru", "--hidden-size", "4"]) == 0
    assert "cell 'lru' keeps the contract (hidden size 4, float64)" in capsys.readouterr().out


def test_a_broken_plugin_is_exit_2_from_the_cli_naming_module_and_error(tmp_path, monkeypatch,
                                                                         capsys):
    from sweeper.cli import main

    (tmp_path / "badcell.py").write_text("import numpy\nraise ImportError('needs jax')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check-cell", "badcell:Cell"]) == 2
    err = capsys.readouterr().err
    assert "cannot load cell 'badcell:Cell': importing module 'badcell' failed: ImportError: " \
           "needs jax" in err and "Traceback" not in err


def test_validate_holds_a_plugin_cell_to_the_contract(tmp_path, capsys):
    from sweeper.cli import main

    def space(cell: str):
        path = tmp_path / f"{cell.split(':')[1]}.yaml"
        path.write_text(f"name: p\ncell: {cell}\nhidden_size: 8\nseq_len: 20\n"
                        "axes: {recurrent_scale: [1.0]}\n")
        return str(path)

    assert main(["validate", space("usercell:TooLowBound")]) == 2
    out, err = capsys.readouterr()
    assert "FAIL  bound >= local max" in out
    assert "cell 'usercell:TooLowBound' fails the cell contract (bound >= local max)" in err
    assert main(["validate", space("usercell:BoundedSoftsign")]) == 0
    assert "valid. sweep 'p': usercell:BoundedSoftsign" in capsys.readouterr().out
