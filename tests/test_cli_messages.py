"""What the commands say: each figure's own help, `show` on a directory that is not a sweep,
a note when an edited file runs into an output that holds the earlier version's points, and
a region map that carries only the metrics the sweep measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from sweeper.cli import main
from sweeper.schema import metric_names

SPACE = {"name": "messages", "task": "noise", "cell": "rnn_tanh", "hidden_size": 6,
         "seq_len": 30, "axes": {"recurrent_scale": [0.5, 1.5, 2.5], "seed": [0, 1]},
         "vectorize": ["recurrent_scale", "seed"], "metrics": ["lyapunov"]}


def _help(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "sweeper.cli", *args, "--help"],
                          capture_output=True, text=True, check=True).stdout


def test_each_figure_has_help_of_its_own():
    figure, orbits, lstm = _help("figure"), _help("figure", "orbits"), _help("figure",
                                                                         "chaotic-lstm")
    assert len({figure, orbits, lstm}) == 3
    assert "--cell" in orbits and "--hidden-size" in orbits and "--seq-len" not in orbits
    assert "--seq-len" in lstm and "--cell" not in lstm
    assert "chaotic-lstm" in figure and "orbits" in figure


def test_show_on_a_directory_that_is_no_sweep_says_so(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["show", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "is not a sweep's results directory" in err and "sweeper run FILE" in err
    assert "sweeper aggregate" not in err


def test_an_edited_file_into_the_same_output_is_noted_and_the_map_has_measured_metrics(
        tmp_path, capsys):
    path, out = tmp_path / "space.yaml", tmp_path / "out"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = ["run", str(path), "--out", str(out), "--tracking-uri", uri,
               "--executor", "local"]
    path.write_text(yaml.safe_dump(SPACE))
    assert main(command) == 0
    first = capsys.readouterr().err
    assert "earlier version" not in first
    columns = pq.read_schema(out / "region_map.parquet").names
    means = {c.removesuffix("_mean") for c in columns if c.endswith("_mean")}
    assert "lyapunov_max" in means and means <= set(metric_names("lyapunov")), columns
    edited = dict(SPACE, axes={**SPACE["axes"], "recurrent_scale": [0.5, 3.0]})
    path.write_text(yaml.safe_dump(edited))
    assert main(command) == 0
    err = capsys.readouterr().err
    assert f"note: {out} holds points of an earlier version of this sweep (changed: axes)" \
        in err
    assert Path(out / "region_map.parquet").exists()
