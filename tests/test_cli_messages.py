"""What the commands say: every option's help and every command's examples (each one parsed,
so they cannot drift from the parser), each figure's own help, `show` on a directory that is
not a sweep, a note when an edited file runs into an output that holds the earlier version's
points, a region map that carries only the metrics the sweep measured, and `sweeper plot` over
one sweep or two."""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from sweeper.cell_shapes import CELL_SHAPES
from sweeper.cli import _parser, main
from sweeper.schema import METRIC_FAMILIES, SUPERVISED_FAMILIES, metric_names
from sweeper.task import task_names

ROOT = Path(__file__).resolve().parent.parent

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


def _commands(parser: argparse.ArgumentParser, name: str = "sweeper"):
    """(command line, parser) of the program and of every command under it, figures included."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _commands(child, f"{name} {sub}")


def _examples(text: str) -> list[str]:
    """The command lines of a help's examples section, shell continuations joined."""
    _, found, section = text.partition("\nexamples:\n")
    assert found, text
    lines, pending = [], ""
    for raw in section.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, section
    return lines


def test_every_option_says_what_it_does_and_its_default():
    for name, parser in _commands(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, (name, action.dest)
            if action.option_strings and not action.required:
                assert "default" in action.help, (name, action.option_strings, action.help)


def test_every_command_ends_with_examples_that_parse():
    for name, parser in _commands(_parser()):
        examples = _examples(parser.format_help())
        assert 1 <= len(examples) <= 2, (name, examples)
        for line in examples:
            words = shlex.split(line)
            assert words[0] == "sweeper" and " ".join(words[:len(name.split())]) == name, line
            try:
                args = _parser().parse_args(words[1:])
            except SystemExit:
                raise AssertionError(f"{name}: the example does not parse: {line}") from None
            assert args.command == words[1]
            for word in words:  # the files it names are in the repository
                if word.startswith("search_spaces/"):
                    assert (ROOT / word).is_file(), line


def test_measure_help_lists_the_families_their_columns_and_defaults():
    text = _help("measure")
    for family in METRIC_FAMILIES:
        assert f"\n  {family} " in text, family  # one line each, with its first column
        assert metric_names(family)[0] in text
    text = " ".join(text.split())  # as read, whatever the line breaks
    assert "(--metrics; default: lipschitz lyapunov memory)" in text
    assert text.count("needs a task with a loss") == len(SUPERVISED_FAMILIES)
    assert "100 burn-in steps" in text and "300 Adam steps" in text
    # The installed tasks, looked up when help is shown, and the built-in cells.
    assert f"task name (default noise): {', '.join(task_names())}; or" in text
    assert f"cell name (required): {', '.join(CELL_SHAPES)}, an installed plug-in" in text


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
    shutil.copytree(out, tmp_path / "first")
    edited = dict(SPACE, axes={**SPACE["axes"], "recurrent_scale": [0.5, 3.0]})
    path.write_text(yaml.safe_dump(edited))
    assert main(command) == 0
    err = capsys.readouterr().err
    assert f"note: {out} holds points of an earlier version of this sweep (changed: axes); " \
        "0 of this version's 1 trials are reused from it, 1 are new; " in err
    assert Path(out / "region_map.parquet").exists()
    # An added input scale: the trial at the old one is the same trial, reused.
    more = dict(edited, axes={**edited["axes"], "input_scale": [1.0, 0.5]})
    path.write_text(yaml.safe_dump(more))
    assert main([*command[:-2], "--executor", "local", "--resume"]) == 0
    assert "1 of this version's 2 trials are reused from it, 1 are new; " \
        in capsys.readouterr().err
    # A glob over points/ also sees the first version's rows; the sweep's reader does not.
    from sweeper.adapters.query import query

    counted = query(out, "select count(*) as n, count(distinct point_id) as ids, "
                         "(select count(*) from sweeper_sources) as trials from points")
    assert counted.iloc[0].tolist() == [8, 8, 2]
    path.write_text(yaml.safe_dump(edited))
    # `sweeper plot`: any measured metric against an axis, one sweep or two overlaid.
    png = tmp_path / "compare.png"
    assert main(["plot", "lyapunov_max", "--x", "recurrent_scale", "--results",
                 str(tmp_path / "first"), "--results", str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    capsys.readouterr()
    assert main(["plot", "memory_capacity", "--x", "recurrent_scale", "--results",
                 str(out)]) == 2
    assert "metric must be one of the metrics measured in" in capsys.readouterr().err
    assert main(["plot", "lyapunov_max", "--x", "gain", "--results", str(out)]) == 2
    assert "--x must be one of" in capsys.readouterr().err


def test_orbit_titles_name_the_input_the_map_runs_under():
    import dataclasses

    import torch

    from sweeper.orbits import input_words
    from sweeper.task import get_task

    noise = get_task("noise", {})
    assert input_words(noise) == "zero input"  # the orbit diagram's map is autonomous

    @dataclasses.dataclass(frozen=True)
    class Held(type(noise)):
        def constant_input(self):
            return torch.tensor([0.5], dtype=torch.float64)

    assert input_words(Held()) == "constant input u = (0.5)"


def test_metric_plots_know_the_caps_and_chance_of_the_sweep():
    from sweeper.aggregate import chance_scores, metric_caps
    from sweeper.space import validate_space
    from sweeper.task import get_task

    order = validate_space({"name": "order", "task": "temporal_order", "cell": "lstm",
                            "hidden_size": 8, "seq_len": 40, "metrics": ["training"],
                            "memory": {"attractor_inits": 9}})
    classes = get_task("temporal_order", {}).output_size
    assert chance_scores(order) == {"val_accuracy": 1.0 / classes} and classes > 1
    assert metric_caps(order) == {"attractor_count": 9.0, "memory_horizon": 40.0}
    assert chance_scores(validate_space(SPACE)) == {}  # noise: no loss, nothing to guess


def test_the_summary_counts_evaluated_cells_names_what_is_missing_and_each_crossing():
    from sweeper.aggregate import Aggregated, summary_text
    from sweeper.space import validate_space

    nan = float("nan")
    space = validate_space(dict(SPACE, axes={**SPACE["axes"], "input_scale": [0.5, 1.0]}))
    frame = pd.DataFrame({
        "recurrent_scale": [0.5, 1.5, 2.5] * 2, "input_scale": [0.5] * 3 + [1.0] * 3,
        "n": [2, 2, 0, 2, 2, 2], "evaluated": [True, True, False, True, True, True],
        "region": ["forgetful", "chaotic", "chaotic", "memory", "memory", "chaotic"],
        "lyapunov_zero_crossing": [1.2345678] * 3 + [nan] * 3,
        "lyapunov_zero_crossing_lo": [1.1] * 3 + [nan] * 3,
        "lyapunov_zero_crossing_hi": [1.3] * 3 + [nan] * 3})
    result = Aggregated(space, frame, Path("/r/region_map.parquet"), [], 0,
                        trials_measured=1, trials_expected=2)
    text = summary_text(result, "out", [("points", Path("/r/points")),
                                        ("region map", Path("/r/region_map.parquet"))])
    assert text == "\n".join([
        "# Sweep messages", "", "rnn_tanh, hidden_size 6, task noise; metrics lyapunov.", "",
        "10 points in 5 map cells (recurrent_scale x input_scale) of 6 (refined: the others "
        "take the nearest evaluated cell's region). Cells by majority region: forgetful 1, "
        "memory 2, chaotic 2, unclassified 0.", "",
        "**Incomplete:** the map holds 1 of the sweep's 2 trials: 1 failed or have not run, "
        "and their cells lack those points. Finish the sweep with `sweeper run FILE --out out "
        "--resume`.", "",
        "## Edge of chaos: lambda_1 = 0 along recurrent_scale", "",
        "| input_scale | crossing (seed mean) | seeds' range | mean field |", "|---|---|---|---|",
        "| 0.5 | 1.235 | 1.1 .. 1.3 | - |", "| 1 | - | - .. - | - |", "",
        "## Files", "", "- points: `/r/points`", "- region map: `/r/region_map.parquet`", "",
        "Query: `sweeper query \"select region, count(*) from points group by region\" "
        "--results out`", ""])


@pytest.mark.parametrize("argv, flag, says", [
    (["run", str(ROOT / "search_spaces" / "smoke.yaml"), "--out",
      "s3://AKIAEXAMPLE:s3cr3t@bucket/sweeps/smoke"], "--out", "credentials in the URI"),
    (["aggregate", "s3://key:s3cr3t@bucket/smoke"], "OUT", "credentials in the URI"),
    (["show", "s3:///smoke"], "OUT", "no bucket"),
    (["query", "select 1", "--results", "gs://"], "--results", "no bucket"),
    (["figure", "chaotic-lstm", "--out", "s3://bucket/fig.png"], "--out", "writes a local file"),
])
def test_a_bad_object_store_uri_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                       capsys, argv, flag,
                                                                       says):
    # Taken as a path, s3://bucket/x would be a local directory named "s3:"; a secret in the
    # URI would be stored in the sweep record and MLflow, so it is refused and not echoed.
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{flag}: " in err and says in err, err
    assert "s3cr3t" not in err
    assert list(tmp_path.iterdir()) == []
