"""House rules on who imports whom, checked on the source (an installed pandas may load
pyarrow by itself):

- the core imports no orchestration, tracking or storage packages (only the thin adapters in
  sweeper/adapters/ may), and matplotlib only in figures.py;
- dependencies point one way: the built-in tasks (tasks/, installed as rnn_sweeper_tasks)
  import sweeper, and sweeper never imports them - it finds them by entry point;
- adapters compute nothing: they read and write, and call the core's functions with plain
  data, never its tensor-level building blocks.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"ray", "mlflow", "yaml", "pyarrow", "duckdb"}
TASK_PACKAGES = {"tasks", "rnn_sweeper_tasks"}
#: What an adapter may not import: torch and numpy, and the core modules that work on tensors
#: (an adapter calls entry points such as sweep.TrialWork.compute_part or orbits.sweep_orbits
#: instead).
NUMERICS = {"torch", "numpy", "sweeper.cells", "sweeper.params", "sweeper.dynamics",
            "sweeper.memory", "sweeper.lyapunov", "sweeper.lipschitz", "sweeper.landscape",
            "sweeper.landscape_metrics", "sweeper.model", "sweeper.objective",
            "sweeper.training", "sweeper.seeding", "sweeper.paper"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_import_no_service_packages():
    files = sorted((ROOT / "sweeper").rglob("*.py")) + sorted((ROOT / "tasks").rglob("*.py"))
    files = [f for f in files if "adapters" not in f.relative_to(ROOT).parts]
    assert len(files) > 20
    for path in files:
        found = _imports(path)
        assert not found & SERVICES, (path, found & SERVICES)
        if path.name != "figures.py":
            assert "matplotlib" not in found, path


def _imported_modules(path: Path) -> set[str]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return _imports_in(path.read_text(), ".".join(parts))


def _imports_in(source: str, module: str) -> set[str]:
    """Every module that ``source`` imports, in any form and at any depth, as absolute dotted
    names: ``import a.b``; ``from a import b`` (a and a.b); relative imports resolved from
    ``module`` (the file's dotted path, ``pkg.__init__`` for a package); string constants
    passed to ``import_module`` or ``__import__``."""
    here = module.split(".")[:-1]  # the package a relative import starts from
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            source_module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(source_module)
            names.update(f"{source_module}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__")):
            names.add(node.args[0].value)
    return names


def _within(name: str, modules: set[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


def test_the_import_scanner_sees_every_form():
    source = ("import importlib\n"
              "from ..orbits import sweep_orbits\n"
              "from .. import dynamics\n"
              "def load():\n"
              "    import tasks.noise\n"
              "    from .lock import Lock\n"
              "    importlib.import_module('rnn_sweeper_tasks')\n"
              "    return __import__('torch')\n")
    found = _imports_in(source, "sweeper.adapters.results")
    assert {"sweeper.orbits", "sweeper.orbits.sweep_orbits", "sweeper.dynamics", "tasks.noise",
            "sweeper.adapters.lock", "rnn_sweeper_tasks", "torch"} <= found
    assert "sweeper.cells" in _imports_in("from .cells import CELLS", "sweeper.__init__")


def test_sweeper_never_imports_the_tasks():
    files = sorted((ROOT / "sweeper").rglob("*.py"))
    assert len(files) > 20
    for path in files:
        found = {name for name in _imported_modules(path) if _within(name, TASK_PACKAGES)}
        assert not found, (path, found)


def test_adapters_compute_nothing():
    files = sorted((ROOT / "sweeper" / "adapters").glob("*.py"))
    assert len(files) > 5
    for path in files:
        found = {name for name in _imported_modules(path) if _within(name, NUMERICS)}
        assert not found, (path, found)


def test_every_package_is_installed():
    # pyproject lists the packages (tasks/ is installed under another name, which find cannot
    # do), so a new folder of modules must be added there by hand.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {setuptools["package-dir"].get(p, p.replace(".", "/")): p
               for p in setuptools["packages"]}
    on_disk = {str(d.relative_to(ROOT)) for top in ("sweeper", "tasks")
               for d in [ROOT / top, *(ROOT / top).rglob("*")]
               if d.is_dir() and any(d.glob("*.py"))}
    assert on_disk == set(folders), on_disk ^ set(folders)
    assert folders["tasks"] == "rnn_sweeper_tasks"


#: The middle layer: plain data, the results on disk, the region rules and the commands that
#: read a finished sweep. Importing them loads neither torch (1-1.5 s here) nor Ray nor
#: MLflow; the numerics are imported where a trial runs.
TORCH_FREE = ("sweeper", "sweeper.cli", "sweeper.errors", "sweeper.columns", "sweeper.schema",
              "sweeper.protocols", "sweeper.regions", "sweeper.refine", "sweeper.axes",
              "sweeper.space", "sweeper.cell_shapes", "sweeper.task", "rnn_sweeper_tasks",
              "sweeper.sweep", "sweeper.aggregate", "sweeper.theory",
              "sweeper.terminal", "sweeper.figures", "sweeper.workload", "sweeper.adapters.results",
              "sweeper.adapters.parquet_sink", "sweeper.adapters.rounds_file",
              "sweeper.adapters.space_file", "sweeper.adapters.sqlite_store",
              "sweeper.adapters.batches", "sweeper.sweep.contracts", "sweeper.sweep.progress",
              "sweeper.sweep.rounds", "sweeper.crossings", "sweeper.plugins",
              "sweeper.adapters.query")
HEAVY = ("torch", "ray", "mlflow")


def _loaded_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; which of HEAVY it left in sys.modules (a fresh
    process: this one has imported everything by now)."""
    import json
    import subprocess
    import sys

    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_middle_layer_imports_neither_torch_nor_ray_nor_mlflow():
    loaded = _loaded_after("\n".join(f"import {m}" for m in TORCH_FREE))
    assert loaded == dict.fromkeys(HEAVY, False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished smoke sweep (in-process executor)."""
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("finished")
    result = subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "run", str(ROOT / "search_spaces" / "smoke.yaml"),
         "--executor", "local", "--out", str(base / "out"), "--tracking-uri",
         f"sqlite:///{base / 'mlflow.db'}"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "out"


@pytest.mark.parametrize("command", [
    ["--help"], ["query", "select count(*) from points"], ["show"],
    ["plot", "lyapunov_max", "--x", "recurrent_scale"]], ids=lambda c: c[0])
def test_reading_commands_start_without_torch_or_ray(finished, tmp_path, command):
    # `sweeper query`, `show`, `plot` and `--help` import neither torch nor Ray nor MLflow:
    # they start in a fraction of a second (benchmarks/bench_sweep.py --case read).
    args = list(command)
    if args[0] == "query":
        args += ["--results", str(finished)]
    elif args[0] == "show":
        args.append(str(finished))
    elif args[0] == "plot":
        args += ["--results", str(finished), "--out", str(tmp_path / "plot.png")]
    code = ("import contextlib, io\nfrom sweeper.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        assert main({args!r}) == 0\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0\n")
    assert _loaded_after(code) == dict.fromkeys(HEAVY, False)


def test_validate_imports_neither_torch_nor_ray_nor_mlflow(tmp_path):
    # Validating a file of built-in cells and tasks checks the cell by its declared shape and
    # builds the task without torch, and starts and imports nothing of Ray or MLflow, also
    # for a file it refuses. (In the test process itself they are loaded by then, so this is
    # checked in a fresh one.) A file with a trained network (``weights``) reads its checkpoint
    # with torch.load, so it is checked for Ray and MLflow only.
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "search_spaces" / "smoke.yaml").read_text() + "\nunknown_key: 1\n")
    cases = [(path, 0) for path in sorted((ROOT / "search_spaces").glob("*.yaml"))]
    assert len(cases) >= 6
    for path, expected in [*cases, (bad, 2)]:
        code = ("import contextlib, io\nfrom sweeper.cli import main\n"
                "with contextlib.redirect_stderr(io.StringIO()), "
                "contextlib.redirect_stdout(io.StringIO()):\n"
                f"    assert main(['validate', {str(path)!r}]) == {expected}\n")
        loaded = _loaded_after(code)
        if "\nweights:" in path.read_text():
            assert loaded["torch"] and not loaded["ray"] and not loaded["mlflow"], path
        else:
            assert loaded == dict.fromkeys(HEAVY, False), path


def test_aggregating_a_sweep_without_attractors_or_orbits_imports_no_torch(tmp_path):
    # The map, the metrics plot and the summary of a sweep that counts no attractors, under a
    # task that draws no orbit diagram, need no tensor: `sweeper aggregate` of it (a
    # 100,000-point one is benchmarks/bench_sweep.py --case scale) never imports torch,
    # whose import costs as much as the rest of the command's imports together. The
    # directory is made here (its parts computed in this process); the command runs in a
    # fresh one, with no tracking store to log to.
    import pandas as pd

    from sweeper.adapters.parquet_sink import ParquetSink
    from sweeper.adapters.results import write_record
    from sweeper.space import validate_space
    from sweeper.sweep import trial_frame

    space = validate_space({
        "name": "lyapunov-only", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8,
        "seq_len": 30, "axes": {"recurrent_scale": [0.5, 1.5, 2.5], "input_scale": [0.5, 1.0],
                                "seed": [0, 1]},
        "vectorize": ["recurrent_scale", "seed"], "metrics": ["lyapunov"]})
    out = tmp_path / "out"
    sink = ParquetSink(out)
    for trial in space.trials():
        frame = trial_frame(space, trial, "cpu")
        frame.insert(3, "mlflow_run_id", pd.Series([None] * len(frame), dtype="str"))
        sink.write(trial.trial_id, frame)
    write_record(out, space, f"sqlite:///{tmp_path / 'unused.db'}")
    code = ("import contextlib, io\nfrom sweeper.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['aggregate', {str(out)!r}]) == 0\n")
    assert _loaded_after(code) == dict.fromkeys(HEAVY, False)
    assert (out / "plots" / "metrics_vs_recurrent_scale.png").exists()
