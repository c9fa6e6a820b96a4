"""The ``sweeper`` command: parse, call the library, print. Bad input exits 2, no traceback."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from typing import Any

from .adapters.storage import URI
from .errors import SweeperInputError

#: Exit codes beside 0 (done), 1 (some trials failed) and 2 (bad input); a sweep stopped by
#: a signal exits 128 + its number (130 for Ctrl-C, 143 for SIGTERM).
EXIT_TRACKING_FAILED = 3
#: The Ray cluster of an --address sweep stopped answering (its head, or all of it, died).
EXIT_CLUSTER_LOST = 4
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: The families `sweeper measure` runs without --metrics (measure()'s default too).
DEFAULT_METRICS = ("lipschitz", "lyapunov", "memory")


def _task_param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


#: Each command's examples (what it does, the command), shown at the end of its help.
#: tests/test_cli_messages.py parses every one, so they stay commands that work.
EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "sweeper": (
        ("the quickstart sweep, then its map in the terminal",
         "sweeper run search_spaces/quickstart.yaml"),
        ("", "sweeper show results/quickstart"),
    ),
    "measure": (
        ("a 64-unit tanh RNN at three gains, each point with its region",
         "sweeper measure --cell rnn_tanh --hidden-size 64 --recurrent-scale 0.5 1 2 --regions"),
        ("a GRU's loss landscape against its own copy at gain 1, as JSON records",
         "sweeper measure --cell gru --hidden-size 16 --task teacher --task-param "
         "reference=1.0 --recurrent-scale 0.5 1 2 --seq-len 50 --metrics landscape --json"),
    ),
    "figure": (
        ("the orbit diagram of an 8-unit tanh RNN from s = 0.5 to 4",
         "sweeper figure orbits --cell rnn_tanh --hidden-size 8 --smin 0.5 --smax 4 --seed 3"),
        ("the paper's figure, at 200 scalings", "sweeper figure chaotic-lstm --points 200"),
    ),
    "figure orbits": (
        ("an 8-unit tanh RNN from s = 0.5 to 4",
         "sweeper figure orbits --cell rnn_tanh --hidden-size 8 --smin 0.5 --smax 4 --seed 3"),
        ("a 16-unit GRU, into a file of its own",
         "sweeper figure orbits --cell gru --hidden-size 16 --smax 6 --points 400 --out "
         "results/figures/gru_orbits.png"),
    ),
    "figure chaotic-lstm": (
        ("the paper's figure: 1000 scalings from s = 0.5 to 2, loss over 200 steps",
         "sweeper figure chaotic-lstm"),
        ("a coarser one, the loss over 100 steps",
         "sweeper figure chaotic-lstm --points 200 --seq-len 100"),
    ),
    "run": (
        ("the quickstart (in-process: its compute is short), MLflow in ./mlflow.db, points in "
         "results/quickstart", "sweeper run search_spaces/quickstart.yaml"),
        ("finish it after an interruption, computing only what is missing",
         "sweeper run search_spaces/quickstart.yaml --resume"),
    ),
    "submit": (
        ("a sweep on a cluster, its results in a directory every node sees",
         "sweeper submit search_spaces/gain_vs_input.yaml --address http://HEAD:8265 "
         "--tracking-uri http://MLFLOW:5000 --out /shared/results/gain-vs-input"),
    ),
    "aggregate": (
        ("relabel the quickstart's points, redraw its map and plots",
         "sweeper aggregate results/quickstart"),
        ("the region map only", "sweeper aggregate results/quickstart --no-plots"),
    ),
    "query": (
        ("the points per region",
         "sweeper query \"select region, count(*) from points group by region\" --results "
         "results/quickstart"),
        ("the memory cells of the map, as CSV",
         "sweeper query \"select * from region_map where region = 'memory'\" --results "
         "results/quickstart --csv"),
    ),
    "plot": (
        ("lambda_1 against the gain, a line per input scale",
         "sweeper plot lyapunov_max --x recurrent_scale --results results/quickstart"),
        ("the refined sweep over the grid sweep",
         "sweeper plot lyapunov_max --x recurrent_scale --results results/quickstart-refine "
         "--results results/quickstart"),
    ),
    "show": (
        ("the quickstart's map, coloured by region", "sweeper show results/quickstart"),
    ),
    "ui": (
        ("the quickstart's runs on http://127.0.0.1:5000",
         "sweeper ui --results results/quickstart"),
        ("the same on another port", "sweeper ui --results results/quickstart --port 5001"),
    ),
    "validate": (
        ("check the quickstart and see how it splits into trials",
         "sweeper validate search_spaces/quickstart.yaml"),
    ),
    "check-cell": (
        ("a built-in cell on a network larger than the default",
         "sweeper check-cell lru --hidden-size 16"),
    ),
}


def _examples(command: str) -> str:
    """The help's closing section: each example's purpose as a comment, then the command,
    broken between words (never inside quotes) with shell line continuations."""
    import shlex

    lines = ["examples:"]
    for purpose, example in EXAMPLES[command]:
        if purpose:
            lines.append(f"  # {purpose}")
        words = shlex.shlex(example, posix=False)
        words.whitespace_split = True  # quoted words stay whole, quotes included
        groups: list[str] = []  # an option stays on one line with its values
        for word in words:
            if groups and groups[-1].startswith("-") and not word.startswith("-"):
                groups[-1] += f" {word}"
            else:
                groups.append(word)
        rows = [""]
        for group in groups:
            if rows[-1] and len(rows[-1]) + 1 + len(group) > 84:
                rows.append("")
            rows[-1] = f"{rows[-1]} {group}" if rows[-1] else group
        lines.append("  " + " \\\n      ".join(rows))
    return "\n".join(lines)


def _cell_names() -> str:
    from .cell_shapes import CELL_SHAPES

    return ", ".join(CELL_SHAPES)


def _task_names() -> str:
    from .task import task_names

    return ", ".join(task_names())


def _families_text() -> str:
    """The measure command's list of metric families, their columns and default protocols."""
    import textwrap

    from .protocols import DynamicsConfig, LandscapeConfig, MemoryConfig, TrainingConfig
    from .schema import FAMILY_COLUMNS, SUPERVISED_FAMILIES

    lines = [f"metric families (--metrics; default: {' '.join(DEFAULT_METRICS)}) and their "
             "columns:"]
    for family, columns in FAMILY_COLUMNS.items():
        names = ", ".join(c.name for c in columns if not c.optional)
        if family in SUPERVISED_FAMILIES:
            names += " (needs a task with a loss: teacher, sine_generator, ...)"
        lines += textwrap.wrap(names, 88, initial_indent=f"  {family:<11}",
                               subsequent_indent=" " * 13)
    dynamics, memory, landscape, training = (DynamicsConfig, MemoryConfig, LandscapeConfig,
                                             TrainingConfig)
    protocols = (
        f"The families run their protocols at the defaults: {dynamics.burn_in} burn-in steps, "
        f"then the --seq-len measured ones; memory capacity from {memory.train} training and "
        f"{memory.test} test steps, attractors from {memory.attractor_inits} initial states; "
        f"landscape slices of {landscape.points} points, {landscape.hessian_steps} Hessian "
        f"steps; {training.steps} Adam steps at lr {training.lr:g} ({training.schedule}). "
        "Python's measure() takes them as DynamicsConfig, MemoryConfig, LandscapeConfig and "
        "TrainingConfig, a search-space file as mappings.")
    lines += ["", *textwrap.wrap(protocols, 88)]
    return "\n".join(lines)


#: Placeholders in the help texts, filled only when help is shown: what they read (the entry
#: points, the schema, the protocols) would otherwise cost every command ~20 ms.
HELP_PLACEHOLDERS = {"{cells}": _cell_names, "{tasks}": _task_names,
                     "{families}": _families_text}


def _filled(text: str) -> str:
    for placeholder, make in HELP_PLACEHOLDERS.items():
        if placeholder in text:
            text = text.replace(placeholder, make())
    return text


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their line breaks; the placeholders are filled."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return _filled(action.help) if action.help else action.help

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(_filled(text), width, indent)


def _command(commands, name: str, key: str | None = None, *, description: str,
             details: str = "", **kwargs) -> argparse.ArgumentParser:
    """A subcommand: its description wrapped, then ``details`` as written, and its help ends
    with its examples (``EXAMPLES[key or name]``)."""
    import textwrap

    text = textwrap.fill(description, 88) + (f"\n\n{details}" if details else "")
    return commands.add_parser(name, formatter_class=_HelpFormatter, description=text,
                               epilog=_examples(key or name), **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweeper", description=(
        "Map where recurrent networks forget, remember, or turn chaotic."),
        formatter_class=_HelpFormatter, epilog=_examples("sweeper"))
    commands = parser.add_subparsers(dest="command", required=True)
    m = _command(commands, "measure", help="measure a grid of scalings in one process",
                 description="Measure every point of seed x recurrent-scale x input-scale "
                             "and print one row per point: the point, its status and the "
                             "requested families' columns.", details="{families}")
    m.add_argument("--cell", required=True,
                   help="cell name (required): {cells}, an installed plug-in, or "
                        "module.path:Class")
    m.add_argument("--hidden-size", type=int, required=True,
                   help="H, the number of hidden units: an integer >= 1 (required)")
    m.add_argument("--task", default="noise",
                   help="task name (default noise): {tasks}; or module.path:Class")
    m.add_argument("--task-param", type=_task_param, action="append", default=[],
                   metavar="KEY=VALUE", help="a task parameter, repeatable, e.g. input_std=0.5 "
                                             "(default: the task's own; values read as JSON)")
    m.add_argument("--recurrent-scale", type=float, nargs="+", default=[1.0], metavar="S",
                   help="factors s on the recurrent weights, numbers >= 0 (default 1)")
    m.add_argument("--input-scale", type=float, nargs="+", default=[1.0], metavar="A",
                   help="factors on the input weights, numbers >= 0 (default 1)")
    m.add_argument("--seed", type=int, nargs="+", default=[0],
                   help="base draws of the weights and inputs, integers >= 0 (default 0)")
    m.add_argument("--seq-len", type=int, default=200,
                   help="N, the steps measured after the burn-in: an integer >= 1 (default 200)")
    m.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="FAMILY",
                   help="metric families, among the five above (default: "
                        f"{' '.join(DEFAULT_METRICS)})")
    m.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    m.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="float32 (default) or float64 for reference runs")
    m.add_argument("--regions", action="store_true",
                   help="add each point's region (forgetful, memory, chaotic) by the default "
                        "rules; needs the lyapunov and memory families (off by default)")
    m.add_argument("--json", action="store_true",
                   help="print JSON records of the point's and the requested families' "
                        "columns, NaN as null (default: a table of the columns with a value)")
    m.add_argument("--curve", action="store_true",
                   help="include memory_curve, r^2 for each delay k = 1..2D (memory family; "
                        "off by default)")
    f = _command(commands, "figure", help="draw an orbit diagram or the paper's figure",
                 description="Draw a figure along the scaling s; each figure has its own "
                             "options (sweeper figure NAME --help).")
    figures = f.add_subparsers(dest="name", required=True, metavar="NAME")
    lstm = _command(figures, "chaotic-lstm", "figure chaotic-lstm", help="the paper's figure",
                    description="Orbit diagram, loss and largest Lyapunov exponent of the "
                                "paper's 2-unit LSTM along theta(s) = s * theta*.")
    lstm.add_argument("--seq-len", type=int, default=200,
                      help="N, the steps the loss runs over: an integer >= 1 (default 200)")
    orbit = _command(figures, "orbits", "figure orbits", help="the orbit diagram of any cell",
                     description="The orbit (bifurcation) diagram of a cell along "
                                 "recurrent_scale under the task's constant input.")
    orbit.add_argument("--cell", default="rnn_tanh",
                       help="cell name (default rnn_tanh): {cells}, an installed plug-in, or "
                            "module.path:Class")
    orbit.add_argument("--hidden-size", type=int, default=32,
                       help="H, an integer >= 1 (default 32)")
    orbit.add_argument("--task", default="noise",
                       help="task whose constant input drives the map (default noise: zero "
                            "input): {tasks}; or module.path:Class")
    orbit.add_argument("--task-param", type=_task_param, action="append", default=[],
                       metavar="KEY=VALUE",
                       help="a task parameter, repeatable (default: the task's own)")
    orbit.add_argument("--seed", type=int, default=0,
                       help="base draw of the weights, an integer >= 0 (default 0)")
    for each in (lstm, orbit):
        each.add_argument("--points", type=int, default=1000,
                          help="number of scalings s, evenly spaced, run as one batch: an "
                               "integer >= 2 (default 1000)")
        each.add_argument("--smin", type=float, default=0.5,
                          help="the smallest s, >= 0 (default 0.5)")
        each.add_argument("--smax", type=float, default=2.0,
                          help="the largest s, above --smin (default 2)")
        each.add_argument("--out", default=None,
                          help="PNG path (default results/figures/<name>.png)")
        each.add_argument("--device", default=None,
                          help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    r = _command(commands, "run", help="run a sweep (Ray Tune + MLflow + Parquet)",
                 description="Run every trial of a search-space file; results go to "
                             "<out>/points/*.parquet, runs to MLflow.")
    r.add_argument("file", help="the search-space file (YAML; sweeper validate checks it)")
    r.add_argument("--out", default=None,
                   help="results directory (default results/<name>), or an object store's "
                        "URI, s3://BUCKET/PREFIX (endpoint and credentials from the AWS_* "
                        "environment)")
    r.add_argument("--address", default=None,
                   help="a running Ray cluster to join, HOST:6379 (default: none; see "
                        "--executor)")
    r.add_argument("--tracking-uri", default=None,
                   help=f"MLflow store (default {DEFAULT_TRACKING_URI}); a --resume of a "
                        "sweep started on another store must name that store")
    r.add_argument("--resume", action="store_true",
                   help="finish a sweep, skipping the trials done (default: an output that "
                        "holds the sweep's points is refused)")
    r.add_argument("--max-failures", type=int, default=0,
                   help="retries of a trial that raises, an integer >= 0 (default 0); a lost "
                        "worker does not count")
    r.add_argument("--executor", choices=["auto", "ray", "local"], default="auto",
                   help="where the trials run: auto (default: in-process when the sweep is "
                        "one trial or under about 10 s of estimated compute, else Ray; Ray "
                        "with --address), ray (an embedded Ray, or the one `ray start` left "
                        "running on this machine) or local (in-process, no Ray)")
    r.add_argument("--device", default=None,
                   help="cpu, cuda or cuda:N for every trial (default: cuda where the worker "
                        "has it, else cpu)")
    r.add_argument("--allow-large", action="store_true",
                   help="start a sweep over the size limits (points, trials, a trial's "
                        "memory; default: refused, exit 2)")
    s = _command(commands, "submit", help="send a sweep to a Ray cluster (Jobs API)",
                 description="Submit `sweeper run` to a Ray cluster through the Jobs API, "
                             "stream its logs, exit with its status.")
    s.add_argument("file", help="the search-space file (YAML), validated here first")
    s.add_argument("--address", required=True, help="dashboard address, http://HEAD:8265")
    s.add_argument("--tracking-uri", required=True,
                   help="MLflow server the cluster reaches (or an absolute sqlite path)")
    s.add_argument("--out", required=True,
                   help="absolute results path every node sees, or s3://BUCKET/PREFIX")
    s.add_argument("--max-failures", type=int, default=0,
                   help="retries of a trial that raises, an integer >= 0 (default 0)")
    s.add_argument("--resume", action="store_true",
                   help="finish a sweep, skipping the trials done (off by default)")
    s.add_argument("--allow-large", action="store_true",
                   help="let the cluster start a sweep over the size limits (default: "
                        "refused, exit 2)")
    a = _command(commands, "aggregate", help="classify points, write the region map and plots",
                 description="Classify every point of a results directory into forgetful / "
                             "memory / chaotic, write OUT/region_map.parquet and "
                             "OUT/plots/*.png, and attach them to the sweep's MLflow parent "
                             "run. Idempotent; `sweeper run` ends with it.")
    a.add_argument("out", help="results directory of a sweep, or its URI (s3://...)")
    a.add_argument("--no-plots", action="store_true",
                   help="only the Parquet region map (default: the plots too)")
    q = _command(commands, "query", help="SQL over a sweep's points and region map (DuckDB)",
                 description="Run one SQL statement in DuckDB over the tables `points` (every "
                             "point) and `region_map`.")
    q.add_argument("sql", help="one SQL statement over the tables points and region_map")
    q.add_argument("--results", required=True,
                   help="results directory of a sweep, or its URI (s3://...)")
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV (default: a table)")
    fmt.add_argument("--json", action="store_true",
                     help="print JSON records, NaN as null (default: a table)")
    q.add_argument("--allow-files", action="store_true",
                   help="let the SQL read and write files outside the results directory "
                        "(COPY TO, read_csv of any path, ATTACH, extensions); off by default")
    pl = _command(commands, "plot", help="draw any metric against any axis, overlaying sweeps",
                  description="One metric against one axis: the seed mean as a line per "
                              "value of --by, the seeds' range as a band; several --results "
                              "overlay their sweeps.")
    pl.add_argument("metric", help="a metric column of the points, e.g. lyapunov_max")
    pl.add_argument("--x", required=True, help="the axis along x, e.g. recurrent_scale")
    pl.add_argument("--by", default=None,
                    help="one line per value of this axis (default: the map's other axis; "
                         "'seed' for a line per seed; 'none' for one line)")
    pl.add_argument("--by-values", default=None, metavar="V1,V2,...",
                    help="the values of --by to draw (default: all, at most 8 evenly spaced)")
    pl.add_argument("--where", action="append", default=[], metavar="AXIS=VALUE",
                    help="keep the points with this value of an axis; repeatable (default: "
                         "every point). A line averages over seeds only: every other varied "
                         "axis must be --x, --by or fixed here")
    pl.add_argument("--results", action="append", required=True, metavar="OUT",
                    help="a sweep's results directory or URI (s3://...); repeat to overlay "
                         "sweeps")
    pl.add_argument("--out", default=None,
                    help="the figure's path, .png, .svg or .pdf (default "
                         "<first OUT>/plots/<metric>_vs_<x>.png)")
    sh = _command(commands, "show", help="print the region map in the terminal",
                  description="Print the region map, one character per cell (F forgetful, M "
                              "memory, C chaotic).")
    sh.add_argument("out", help="results directory of a sweep, or its URI (s3://...)")
    sh.add_argument("--colour", "--color", choices=["auto", "always", "never"], default="auto",
                    help="colour the cells by region: auto (default: on a terminal), always "
                         "or never")
    u = _command(commands, "ui", help="start the MLflow UI for a sweep's runs",
                 description="Start the MLflow UI on 127.0.0.1 for a tracking store (a "
                             "sweep's own, with --results) and wait until Ctrl-C.")
    u.add_argument("--results",
                   help="results directory of a sweep: its tracking store, and the URL of "
                        "its experiment (default: none)")
    u.add_argument("--tracking-uri",
                   help=f"MLflow store (default: the sweep's, else {DEFAULT_TRACKING_URI})")
    u.add_argument("--port", type=int, default=5000,
                   help="port on 127.0.0.1, 1..65535 (default 5000)")
    v = _command(commands, "validate", help="check a search-space file; starts nothing",
                 description="Validate a search-space file (YAML); report every problem with "
                             "its key path, exit 2 if any.")
    v.add_argument("file", help="the search-space file (YAML)")
    v.add_argument("--allow-large", action="store_true",
                   help="accept a sweep over the size limits (default: refused, exit 2)")
    c = _command(commands, "check-cell", help="check a cell against the cell contract",
                 description="Check a cell (a name, or module.path:Class) against the cell "
                             "contract in float64 on a small network: one line per check; "
                             "exit 2 on any failure.")
    c.add_argument("cell", help="cell name: {cells}, an installed plug-in, or "
                                "module.path:Class")
    c.add_argument("--hidden-size", type=int, default=8,
                   help="H of the network checked, 1..256 (default 8)")
    return parser


def _run(args: argparse.Namespace) -> int:
    from .interrupt import signals_raise_interrupted

    # SIGINT and SIGTERM raise Interrupted from here on: the sweep stops its trials, closes
    # its runs and says how to finish, whichever signal came.
    with signals_raise_interrupted():
        return _run_sweep(args)


def _run_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .adapters.space_file import load_space, machine_memory_bytes
    from .adapters.sqlite_store import check_writable
    from .adapters.storage import ObjectPath, check_reachable, location
    from .errors import integer
    from .space import check_size

    space = load_space(args.file)  # exits 2 before anything starts when invalid
    check_size(space, machine_memory_bytes(), allow_large=args.allow_large)
    integer("--max-failures", args.max_failures, minimum=0)
    choice, seconds = _executor_choice(args, space)
    print(f"executor: {'in-process' if choice.name == 'local' else 'Ray'} ({choice.reason})",
          file=sys.stderr)
    if args.address is None:  # the slots are this machine's
        note = _slots_note(space, choice, seconds)
        if note:
            print(f"note: {note}", file=sys.stderr)
    out = location(args.out or Path("results") / space.name)
    if isinstance(out, ObjectPath):  # a wrong endpoint or bucket: exit 2 before anything
        check_reachable(out)
    args.tracking_uri = _tracking_uri(args, out)
    check_writable(args.tracking_uri)  # a store that cannot take the runs: exit 2 now
    if choice.name == "local":
        from .measure import resolve_device
        from .sweep import LocalExecutor

        # The trials run here, so a device this machine lacks exits 2 before anything starts
        # (on Ray the workers' devices count, and each trial checks its own).
        resolve_device(args.device)
        executor = LocalExecutor(args.device)
    else:
        from .adapters.ray_executor import RayTuneExecutor

        # Checks --address: an unreachable cluster exits 2 before the results directory exists.
        executor = RayTuneExecutor(args.address, out / "ray_results", space.resources,
                                   args.device)
    with sweep_lock(out, on_lost=_lock_lost):  # one driver per results directory
        return _run_locked(args, space, out, executor)


def sweep_lock(out, *, wait_s: float = 0.0, on_lost=None):
    """The lock of one writer per results location: a flock on ``OUT/.sweeper.lock`` for a
    directory (:func:`.adapters.lock.results_lock`), an object written with conditional
    requests on an object store (:func:`.adapters.object_lock.object_lock`, which probes
    first that the store honours them)."""
    from .adapters.storage import ObjectPath, location

    out = location(out)
    if isinstance(out, ObjectPath):
        from .adapters.object_lock import object_lock

        return object_lock(str(out), wait_s=wait_s, on_lost=on_lost)
    from .adapters.lock import results_lock

    return results_lock(out, wait_s=wait_s)


def _lock_lost(message: str) -> None:
    """Another driver took the sweep's lock on the object store from this one (this one's
    heartbeat was late beyond the stale time): stop as after Ctrl-C, so two drivers do not
    both write; the finished trials stay."""
    import _thread

    print(f"sweeper: {message}; stopping this sweep", file=sys.stderr)
    _thread.interrupt_main()


def _executor_choice(args: argparse.Namespace, space):
    """Where the trials run (:func:`sweeper.workload.choose_executor`) and the sweep's
    estimated compute seconds; a Ray job's ``RAY_ADDRESS`` (``sweeper submit``) counts as a
    cluster address."""
    from .workload import choose_executor, compute_seconds

    trials = None if space.search.refine else len(space.trials())
    seconds = compute_seconds(space)
    return choose_executor(args.executor, args.address or os.environ.get("RAY_ADDRESS"),
                           trials, seconds), seconds


def _slots_note(space, choice, seconds: float) -> str | None:
    """The note on fewer trials than this machine's worker slots, where it matters: on Ray,
    or in-process for a sweep long enough that running it on Ray in parallel would pay."""
    from .space import parallelism_note
    from .workload import AUTO_LOCAL_SECONDS

    if choice.name == "local" and seconds < AUTO_LOCAL_SECONDS:
        return None
    return parallelism_note(space, os.cpu_count() or 1)


def _run_locked(args: argparse.Namespace, space, out, executor) -> int:
    from .adapters.mlflow_tracker import MlflowTracker, artifact_root
    from .adapters.parquet_sink import ParquetSink
    from .adapters.results import write_record
    from .adapters.rounds_file import RoundsFile
    from .adapters.run_id_file import RunIdFile
    from .interrupt import SweepInterrupted
    from .sweep import TrackingError, run_sweep

    _warn_if_edited(space, out)
    tracker = MlflowTracker(args.tracking_uri, artifact_root(args.tracking_uri, out),
                            str(out.resolve()), space_file=args.file)
    sink = ParquetSink(out)
    resume = resume_command(args, out)
    if hasattr(executor, "on_stuck"):
        executor.on_stuck = functools.partial(_cluster_lost, space=space, out=out,
                                              tracker=tracker, resume=resume,
                                              tracking_uri=args.tracking_uri)
    tracking_failed, counts = None, None
    # The record first: whatever happens to this driver, the points it leaves can be read
    # (query, show) and the sweep finished; the parent run is added once it is open.
    write_record(out, space, args.tracking_uri, _previous_parent(out, args.tracking_uri))
    try:
        counts = run_sweep(space, sink, tracker, executor, run_ids=RunIdFile(out),
                           resume=args.resume, max_failures=args.max_failures,
                           rounds=RoundsFile(out, space))
    except SweepInterrupted as stopped:
        # No region map: a map of part of the grid would pass for the whole sweep.
        lost = getattr(executor, "lost", None)
        if lost is not None:
            print(f"cluster at {lost} lost: {stopped.done} of {stopped.total} trials done; "
                  f"finish with: {resume}", file=sys.stderr)
            return EXIT_CLUSTER_LOST
        print(f"interrupted: {stopped.done} of {stopped.total} trials done; finish with: "
              f"{resume}", file=sys.stderr)
        return stopped.exit_code
    except TrackingError as exc:
        tracking_failed, counts = str(exc), exc.counts
    finally:
        # The sweep started (it was not refused): also when tracking failed before the
        # parent run opened, the points on disk need their record (parent run: none yet).
        if tracker.parent is not None or counts is not None:
            write_record(out, space, args.tracking_uri, tracker.parent)
    print(f"sweep {space.name!r}: {counts['done']} trials run, {counts['skipped']} already "
          f"done, {counts['failed']} failed, of {counts['trials']}; points in "
          f"{out / 'points'}; runs in {args.tracking_uri} (experiment {space.name!r})")
    if counts["done"] + counts["skipped"] > 0:
        # A store that failed is not asked again to hold the plots.
        _aggregate_and_report(out, plots=True, attach=tracking_failed is None)
        print(f"browse the runs: sweeper ui --results {out}")
        print(f'query the points: sweeper query "select region, count(*) from points group '
              f'by region" --results {out}')
    if tracking_failed is not None:
        print(f"sweeper: {tracking_failed}: {resume}", file=sys.stderr)
        return EXIT_TRACKING_FAILED
    return 0 if counts["failed"] == 0 else 1


def _cluster_lost(address: str, *, space, out, tracker, resume: str,
                  tracking_uri: str) -> None:
    """The cluster died and the driver's main thread is stuck in a call to it (Ray aborts the
    process a minute later): from the watch's thread, keep the record, close the runs and
    say how to finish, then end the process with EXIT_CLUSTER_LOST. Finished parts stay the
    record of what was computed; the resume logs their runs FINISHED again."""
    import os

    from .adapters.parquet_sink import ParquetSink
    from .adapters.results import write_record
    from .adapters.rounds_file import sweep_trials

    done = total = "?"
    try:
        expected = {t.trial_id: t.n_points for t in sweep_trials(out, space)}
        done, total = len(ParquetSink(out).check(expected)[0]), len(expected)
        write_record(out, space, tracking_uri, tracker.parent)
        tracker.end_sweep("KILLED")
    except Exception as exc:  # the message and the exit code matter more than this
        print(f"sweeper: while stopping: {exc}", file=sys.stderr)
    finally:
        print(f"cluster at {address} lost: {done} of {total} trials done; finish with: "
              f"{resume}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_CLUSTER_LOST)


def _tracking_uri(args: argparse.Namespace, out) -> str:
    """The store of this run: ``--tracking-uri``, else the default. A --resume without
    --tracking-uri into a sweep started on another store is refused (exit 2, naming both):
    it would log the finished trials' runs a second time, into the wrong store. Naming a
    store explicitly is a choice, and is followed."""
    from .adapters.results import read_record
    from .adapters.sqlite_store import absolute_tracking_uri

    if args.tracking_uri is not None:
        return args.tracking_uri
    if args.resume:
        try:
            recorded = read_record(out).get("tracking_uri")
        except (SweeperInputError, ValueError, OSError):
            recorded = None
        default = absolute_tracking_uri(DEFAULT_TRACKING_URI)
        if recorded and recorded != default:
            raise SweeperInputError(
                f"--resume: {out} was started with --tracking-uri {recorded}, and this run "
                f"would log into {default} (the default); pass --tracking-uri {recorded} to "
                "finish it there, or name another store explicitly")
    return DEFAULT_TRACKING_URI


def _previous_parent(out, tracking_uri: str) -> str | None:
    """The parent run of an earlier run of this sweep into ``out`` on the same store."""
    from .adapters.results import read_record
    from .adapters.sqlite_store import absolute_tracking_uri

    try:
        record = read_record(out)
    except (SweeperInputError, ValueError, OSError):
        return None
    if record.get("tracking_uri") != absolute_tracking_uri(tracking_uri):
        return None
    return record.get("parent_run_id")


def resume_command(args: argparse.Namespace, out) -> str:
    """The command that finishes this sweep: every option that decides where it writes and
    how it runs, repeated (a hint that dropped --tracking-uri would log into another store)."""
    import shlex

    from .adapters.sqlite_store import absolute_tracking_uri

    words = ["sweeper", "run", args.file, "--out", str(out), "--resume",
             "--tracking-uri", absolute_tracking_uri(args.tracking_uri)]
    if args.address:
        words += ["--address", args.address]
    if args.executor != "auto":
        words += ["--executor", args.executor]
    if args.max_failures:
        words += ["--max-failures", str(args.max_failures)]
    if args.device:
        words += ["--device", args.device]
    if args.allow_large:
        words.append("--allow-large")
    return shlex.join(words)


def _warn_if_edited(space, out) -> None:
    """Say so when ``out`` holds another version of the sweep (an edited axis, metric or
    protocol): its points stay on disk, but belong to other trials."""
    from .adapters.results import read_record
    from .errors import SweeperInputError
    from .space import measured_part

    try:
        before = read_record(out)["space"]
    except (SweeperInputError, ValueError, KeyError):  # no record, or not one we can read
        return
    if not isinstance(before, dict):
        return
    old, new = measured_part(before), space.measured
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        print(f"note: {out} holds points of an earlier version of this sweep (changed: "
              f"{', '.join(map(str, changed))}); {_reuse(before, space)}the earlier "
              f"version's other points stay in {out / 'points'} but are not this sweep's: "
              "aggregate, query and show ignore them, a glob over points/ does not (use "
              "another --out to keep the two apart)", file=sys.stderr)


def _reuse(before: dict, space) -> str:
    """'N of the M trials are reused from it, K are new; ' for two grid versions of a sweep
    (a trial is reused when its configuration, hence its id, is unchanged); '' when that
    cannot be told (a refined sweep's trials depend on its rounds)."""
    from .errors import SweeperInputError
    from .space import from_record

    try:
        earlier = from_record(before)
    except (SweeperInputError, ValueError, KeyError, TypeError):
        return ""
    if earlier.search.refine or space.search.refine:
        return ""
    old_ids = {t.trial_id for t in earlier.trials()}
    trials = space.trials()
    reused = sum(t.trial_id in old_ids for t in trials)
    return (f"{reused} of this version's {len(trials)} trials are reused from it, "
            f"{len(trials) - reused} are new; ")


def _aggregate_and_report(out, plots: bool, attach: bool = True) -> None:
    from .adapters.mlflow_tracker import log_sweep_artifacts, log_sweep_overview
    from .adapters.results import aggregate, read_record, write_summary
    from .adapters.storage import local_copies
    from .aggregate import overview_metrics
    from .terminal import render_map

    result = aggregate(out, plots=plots)
    summary = write_summary(out, result)
    record = read_record(out)
    if attach and record.get("parent_run_id"):
        with local_copies([summary, result.map_path, *result.plots]) as files:
            log_sweep_artifacts(record["tracking_uri"], record["parent_run_id"], files,
                                "summary")
        log_sweep_overview(record["tracking_uri"], record["parent_run_id"],
                           summary.read_text(),
                           overview_metrics(result.region_map, result.space.map[1]))
    x, y = result.space.map
    print(render_map(result.region_map, x, y, colour=sys.stdout.isatty()))
    if result.relabelled_parts:
        print(f"relabelled the points of {result.relabelled_parts} trials with the current "
              "region rules")
    if result.incomplete:
        print(f"note: {result.incomplete} (sweeper run FILE --out {out} --resume finishes it)",
              file=sys.stderr)
    print(f"region map: {result.map_path}")
    for path in result.plots:
        print(f"plot: {path}")


#: How long `sweeper aggregate` waits for another command holding the results directory (a
#: second aggregate, a running sweep) before giving up.
AGGREGATE_WAIT_S = 120.0


def _aggregate(args: argparse.Namespace) -> int:
    from .adapters.results import read_record, require_writable

    read_record(args.out)  # a directory that holds no sweep: said before anything is created
    require_writable(args.out, "sweeper aggregate")
    # It compacts, relabels and rewrites the map: one writer at a time under --out, the same
    # lock `sweeper run` holds (a resume moving damaged parts aside, a second aggregate).
    try:
        with sweep_lock(args.out, wait_s=AGGREGATE_WAIT_S, on_lost=_lock_lost):
            _aggregate_and_report(args.out, plots=not args.no_plots)
    except KeyboardInterrupt:  # Ctrl-C, or the lock on an object store lost (_lock_lost)
        print(f"sweeper aggregate: interrupted; every file it writes is replaced whole, so "
              f"{args.out} holds the old version or the new one of each: run it again",
              file=sys.stderr)
        return 130
    return 0


def _json_records(frame) -> str:
    """Rows as JSON with every float exact (repr round-trips) and NaN as null."""
    import math

    def plain(value):
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    records = [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]
    return json.dumps(records, indent=1, default=str)


def _query(args: argparse.Namespace) -> int:
    from .adapters.query import query

    frame = query(args.results, args.sql, allow_files=args.allow_files)
    if args.csv:
        print(frame.to_csv(index=False), end="")
    elif args.json:
        print(_json_records(frame))
    else:
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .adapters.results import plot_sweeps

    where = dict(_axis_value(item, "--where") for item in args.where)
    by_values = (None if args.by_values is None else
                 [_number(v, "--by-values") for v in args.by_values.split(",")])
    path, notes = plot_sweeps(args.results, args.metric, args.x, by=args.by, where=where,
                              by_values=by_values, out=args.out)
    for note in notes:
        print(f"note: {note}")
    print(f"plot: {path}")
    return 0


def _axis_value(text: str, option: str) -> tuple[str, float]:
    from .errors import SweeperInputError

    axis, sep, value = text.partition("=")
    if not sep:
        raise SweeperInputError(f"{option} takes AXIS=VALUE, got {option}={text!r}")
    return axis.strip(), _number(value, option)


def _number(text: str, option: str) -> float:
    from .errors import SweeperInputError
    from .lines import finite_number

    try:
        return finite_number(text.strip())
    except ValueError:
        raise SweeperInputError(f"{option} needs finite numbers, got {text!r}") from None


def _show(args: argparse.Namespace) -> int:
    from .adapters.results import read_region_map
    from .terminal import render_map

    frame, meta = read_region_map(args.out)
    colour = args.colour == "always" or (args.colour == "auto" and sys.stdout.isatty())
    name = meta.get("sweep", {}).get("name", args.out)
    print(f"sweep {name!r}: {len(frame)} cells, {int(frame['n'].sum())} points")
    print(render_map(frame, meta["map"]["x"], meta["map"]["y"], colour=colour))
    return 0


def _ui(args: argparse.Namespace) -> int:
    from .interrupt import signals_raise_interrupted

    with signals_raise_interrupted():  # SIGTERM, too, stops the server it started
        return _serve_ui(args)


def _serve_ui(args: argparse.Namespace) -> int:
    import time

    from .adapters.mlflow_ui import experiment_url, start_ui, stop_ui
    from .adapters.results import read_record
    from .adapters.sqlite_store import absolute_tracking_uri
    from .errors import require

    require(1 <= args.port <= 65535, f"--port must be in 1..65535, got {args.port}")
    experiment = None
    uri = args.tracking_uri
    if args.results:
        record = read_record(args.results)
        uri = uri or record["tracking_uri"]
        experiment = record["experiment"]
    uri = absolute_tracking_uri(uri or "sqlite:///mlflow.db")
    try:
        process, url = start_ui(uri, port=args.port)
    except (RuntimeError, TimeoutError) as exc:  # e.g. the port is taken: the log says why
        raise SweeperInputError(f"the MLflow UI did not start on 127.0.0.1:{args.port}: "
                                f"{exc}") from None
    try:
        print(f"MLflow UI for {uri}: {url}", flush=True)
        if experiment is not None:
            from .adapters.mlflow_tracker import experiment_id

            found = experiment_id(uri, experiment)
            if found is not None:
                print(f"experiment {experiment!r}: {experiment_url(url, found)}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        while process.poll() is None:
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_ui(process)


def _validate(args: argparse.Namespace) -> int:
    from .adapters.space_file import load_space, machine_memory_bytes
    from .cell_shapes import CELL_SHAPES
    from .space import axis_values, check_size

    space = load_space(args.file)
    size = check_size(space, machine_memory_bytes(), allow_large=args.allow_large)
    trials = space.trials()
    axes = ", ".join(f"{k}[{len(v)}]" for k, v in space.axes.items())
    search = ""
    if space.search.refine:
        first = space.grid.initial_points(space.search.initial)
        search = (f"; refined: at most {space.planned_points} of them, {first} in the first "
                  "round")
    if space.cell not in CELL_SHAPES:  # a plug-in: held to the contract before a sweep
        failed = _report_checks(space.cell, 8)
        if failed:
            raise SweeperInputError(f"{args.file}: cell {space.cell!r} fails the cell contract "
                                    f"({', '.join(failed)}); see the lines above")
    print(f"{args.file}: valid. sweep {space.name!r}: {space.cell} on {space.task}; axes {axes};"
          f" {len(trials)} trials x {trials[0].n_points} points = {space.n_points} points"
          f"{search}; vectorized {list(space.vectorize)}; metrics {list(space.metrics)}; about "
          f"{size.trial_bytes / 2**30:.1f} GiB per trial")
    for row in axis_values(space):
        print(f"  {row}")
    choice, seconds = _executor_choice(argparse.Namespace(executor="auto", address=None), space)
    where = "in-process" if choice.name == "local" else "on Ray"
    print(f"sweeper run: {where} ({choice.reason})")
    note = _slots_note(space, choice, seconds)
    if note:
        print(f"note: {note}")
    seed = (space.raw.get("axes") or {}).get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed > 1:
        print(f"note: seed: {seed} is the single seed {seed}; for {seed} seeds write "
              f"seed: {list(range(seed))}")
    return 0


def _report_checks(name: str, hidden_size: int) -> list[str]:
    """Print each contract check of a cell as one line; the names of those that failed."""
    from .cellcheck import check_cell
    from .cells import get_cell

    failed = []
    for check in check_cell(get_cell(name), hidden_size):
        print(f"{'ok' if check.ok else 'FAIL':<5} {check.name}: {check.detail}")
        if not check.ok:
            failed.append(check.name)
    return failed


def _check_cell(args: argparse.Namespace) -> int:
    from .errors import integer

    hidden = integer("--hidden-size", args.hidden_size, minimum=1, maximum=256)
    failed = _report_checks(args.cell, hidden)
    if failed:
        print(f"sweeper: error: cell {args.cell!r} fails {len(failed)} check(s): "
              f"{', '.join(failed)}", file=sys.stderr)
        return 2
    print(f"cell {args.cell!r} keeps the contract (hidden size {hidden}, float64)")
    return 0


def _figure(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from .errors import require
    from .figures import plot_chaotic_lstm
    from .measure import resolve_device
    from .paper import chaotic_lstm_line

    require(args.points >= 2, f"--points must be >= 2, got {args.points}")
    require(0 <= args.smin < args.smax,
            f"need 0 <= --smin < --smax, got smin={args.smin}, smax={args.smax}")
    if args.name == "chaotic-lstm":
        require(args.seq_len >= 1, f"--seq-len must be >= 1, got {args.seq_len}")
    device = resolve_device(args.device)
    start = time.perf_counter()
    scales = np.linspace(args.smin, args.smax, args.points).tolist()
    out = args.out or f"results/figures/{args.name.replace('-', '_')}.png"
    if args.name == "orbits":
        from .cells import get_cell
        from .errors import integer
        from .figures import plot_orbits
        from .orbits import input_words, orbits_for
        from .task import get_task

        cell = get_cell(args.cell)
        task = get_task(args.task, dict(args.task_param))
        integer("--hidden-size", args.hidden_size)
        found = orbits_for(cell.name, args.hidden_size, task, scales, seed=args.seed,
                           device=device)
        path = plot_orbits(found["scale"], found["orbit"], out,
                           f"{cell.name}, H = {args.hidden_size}, {input_words(task)} "
                           f"(task {task.name}), seed {args.seed}: orbit diagram")
        print(f"{args.points} scalings on {device} in {time.perf_counter() - start:.1f} s; "
              f"wrote {path}")
        return 0
    line = chaotic_lstm_line(scales, seq_len=args.seq_len, device=device)
    path = plot_chaotic_lstm(line, out, seq_len=args.seq_len)
    chaotic = int((line["lyapunov_max"] > 0).sum())
    print(f"{args.points} scalings on {device} in {time.perf_counter() - start:.1f} s; "
          f"{chaotic} chaotic (lyapunov_max > 0); wrote {path}")
    return 0


def _measure(args: argparse.Namespace) -> int:
    from .measure import measure

    frame = measure(args.cell, args.hidden_size, task=args.task,
                    task_params=dict(args.task_param), recurrent_scale=args.recurrent_scale,
                    input_scale=args.input_scale, seed=args.seed, seq_len=args.seq_len,
                    metrics=args.metrics, device=args.device, dtype=args.dtype,
                    columns="requested", regions=args.regions)
    if not args.curve:  # list columns (the memory curve) only on request
        from .schema import metric_columns

        frame = frame.drop(columns=[c.name for c in metric_columns()
                                    if c.dtype == "list<double>" and c.name in frame])
    if args.json:
        print(_json_records(frame))
    else:
        computed = [c for c in frame.columns if not frame[c].isna().all()]
        print(frame[computed].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from .adapters.ray_jobs import submit

    return submit(args.file, args.address, args.tracking_uri, args.out,
                  max_failures=args.max_failures, resume=args.resume,
                  allow_large=args.allow_large)


COMMANDS = {"measure": _measure, "figure": _figure, "validate": _validate, "run": _run,
            "aggregate": _aggregate, "query": _query, "show": _show, "ui": _ui, "plot": _plot,
            "submit": _submit, "check-cell": _check_cell}


class _NewLineHandler(logging.StreamHandler):
    """The package's warnings on the current stderr, each on a line of its own (not after the
    progress line's carriage return)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # the stderr of the moment: tests and callers may swap it
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # set by StreamHandler.__init__; always follow sys.stderr
        pass

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write("\n")
        super().emit(record)


def _log_to_stderr() -> logging.Handler | None:
    """Attach the stderr handler for one command; ``main`` removes it again."""
    logger = logging.getLogger("sweeper")
    if any(isinstance(h, _NewLineHandler) for h in logger.handlers):
        return None
    handler = _NewLineHandler()
    handler.setFormatter(logging.Formatter("sweeper: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    return handler


def check_uris(args: argparse.Namespace) -> None:
    """Check an object-store URI where a results location or an output file goes (``--out``,
    ``--results``, ``aggregate OUT``) before anything runs: a URI with credentials in it or
    without a bucket is refused (exit 2), as is one where only a local file can go (``figure
    --out``). Taken as a path, ``s3://bucket/x`` would become a local directory named
    ``s3:``: every other command reads and writes the URI itself (sweeper.adapters.storage)."""
    from .adapters.storage import location

    for option in ("out", "results"):
        values = getattr(args, option, None)
        for value in values if isinstance(values, list) else [values]:
            if not (isinstance(value, str) and URI.match(value)):
                continue
            positional = option == "out" and args.command in ("aggregate", "show")
            flag = "OUT" if positional else f"--{option}"
            if args.command == "figure":
                raise SweeperInputError(f"{flag}: got {value!r}; `sweeper figure` writes a local "
                                        "file: give a path")
            try:
                location(value)
            except SweeperInputError as exc:
                raise SweeperInputError(f"{flag}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    handler = _log_to_stderr()
    try:
        check_uris(args)
        return COMMANDS[args.command](args)
    except SweeperInputError as exc:
        print(f"sweeper: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if handler is not None:
            logging.getLogger("sweeper").removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())


def console() -> None:
    """Console-script wrapper: exit with ``main``'s code. A reader that closed the pipe
    early (``sweeper query ... | head``) ends the output quietly, exit code 141 as for
    SIGPIPE, not with a traceback."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at nothing so that raises no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    sys.exit(code)
