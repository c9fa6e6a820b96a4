"""Builders shared by the tests: explicit parameters and direct calls into the core, and
``run_cli``, the one way the tests run the ``sweeper`` command."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from sweeper import CELLS, CellParams, DynamicsConfig, run_dynamics, theory
from sweeper.measure import build_params

F64 = torch.float64


def params_from(weight_hh, weight_ih=None, bias_ih=None, bias_hh=None, recurrent_scale=1.0,
                input_scale=1.0) -> CellParams:
    """One group (G = 1) of explicit weights; scalings may be lists (the M points)."""
    w_hh = torch.as_tensor(weight_hh, dtype=F64)
    rows, _hidden = w_hh.shape
    w_ih = torch.zeros(rows, 1, dtype=F64) if weight_ih is None else torch.as_tensor(
        weight_ih, dtype=F64)
    zeros = torch.zeros(rows, dtype=F64)
    weights = {
        "weight_hh": w_hh[None],
        "weight_ih": w_ih[None],
        "bias_ih": (zeros if bias_ih is None else torch.as_tensor(bias_ih, dtype=F64))[None],
        "bias_hh": (zeros if bias_hh is None else torch.as_tensor(bias_hh, dtype=F64))[None],
    }
    rs = torch.as_tensor(np.atleast_1d(recurrent_scale), dtype=F64)[None]
    ins = torch.as_tensor(np.atleast_1d(input_scale), dtype=F64).expand_as(rs).clone()
    return CellParams(weights, rs, ins, {"seeds": [0]})


def random_params(cell: str, hidden: int, seeds, scales, input_scales=None, input_size=1,
                  dtype=F64) -> CellParams:
    """Seeded base draws with the given (G, M) scalings."""
    scales = torch.as_tensor(scales, dtype=F64).reshape(len(seeds), -1)
    ins = (torch.ones_like(scales) if input_scales is None
           else torch.as_tensor(input_scales, dtype=F64).reshape(scales.shape))
    return build_params(CELLS[cell], hidden, input_size, list(seeds), scales, ins, dtype,
                        torch.device("cpu"))


def dynamics(cell: str, params: CellParams, steps: int, seq_len: int, *, x0=None,
             inputs=None, **config):
    """Run the dynamics pass on explicit params (zero input and random x0 by default)."""
    cell_obj = CELLS[cell]
    params = cell_obj.prepare(params)
    groups, members = params.recurrent_scale.shape
    size = cell_obj.state_size(params.weights["weight_hh"].shape[2])
    cfg = DynamicsConfig(**config)
    batch = cfg.n_trajectories
    if inputs is None:
        inputs = torch.zeros(groups, batch, steps, params.weights["weight_ih"].shape[2],
                             dtype=params.dtype)
    if x0 is None:
        gen = torch.Generator().manual_seed(1234)
        x0 = (torch.rand(groups, 1, batch, size, generator=gen, dtype=F64) * 2 - 1)
        x0 = x0.expand(groups, members, batch, size).to(params.dtype)
    seeds = list(range(groups))
    return run_dynamics(cell_obj, params, inputs, x0, seq_len, cfg, seeds)


def mean_field_lyapunov(gain: float, sigma: float = 0.0) -> float:
    """lambda_1 of x' = tanh(g J x + sigma xi) in the large-H limit (independent noise per
    unit; see sweeper.theory)."""
    return float(theory.mean_field_lyapunov(gain, sigma))


# --- the command line ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
#: The sweep of the ``smoke_sweep`` fixture (conftest.py): 2 trials, 12 points, 6 cells.
SMOKE_SPACE = ROOT / "search_spaces" / "smoke.yaml"
# What a fresh interpreter starts with (python -W and PYTHONWARNINGS aside): the in-process
# path shows a command's warnings as its own process would, not as pytest's filters would.
PROCESS_WARNING_FILTERS = (("default", DeprecationWarning, "__main__"),
                           ("ignore", DeprecationWarning, ""),
                           ("ignore", PendingDeprecationWarning, ""),
                           ("ignore", ImportWarning, ""), ("ignore", ResourceWarning, ""))
# Commands never run inside the test process: they start Ray, MLflow runs or servers, and
# install signal handlers; a regression there must not leave them behind in pytest.
NEEDS_A_PROCESS = frozenset({"run", "ui", "submit"})


def run_cli(*args: object, process: bool, cwd: str | Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 600,
            preexec_fn: Callable[[], None] | None = None, through: Sequence[str] = (),
            check: bool = False) -> subprocess.CompletedProcess:
    """Run ``sweeper ARGS`` and return its exit code, stdout and stderr.

    ``process`` is the caller's choice, made at each call site:

    * ``False``: ``sweeper.cli.main(argv)`` in this process, which spares a fresh
      interpreter's import of torch and the package. For the commands that read, compute or
      validate and return: query, show, plot, validate, aggregate, measure, figure.
      stdout and stderr are captured; an uncaught exception becomes exit 1 with its traceback
      in stderr, and ``SystemExit`` its status, as in a process; the working directory,
      ``sys.argv``, the environment, the warning filters and the ``sweeper`` logger are
      restored afterwards.
    * ``True``: ``python -m sweeper.cli`` in a process of its own, where the process boundary
      is what is tested or what keeps this one safe: ``run``, ``ui`` and ``submit`` always
      (Ray, MLflow runs and servers, signal handlers, ``os._exit``), and any command whose
      test is about signals, locks held by another process, resource limits or a real exit
      status.

    Args:
        args: the command line after ``sweeper`` (each passed through ``str``).
        process: run in a subprocess (True) or in this process (False).
        cwd: working directory (default: the repository root).
        env: the child's whole environment (default: this process's); ``process=True`` only.
        timeout: seconds before a subprocess is killed.
        preexec_fn: run in the child before the command (a resource limit); ``process=True``
            only.
        through: a command that starts the child (``setpriv --reuid ...``: another user);
            ``process=True`` only.
        check: assert exit code 0, showing the end of stderr otherwise.

    Returns:
        A ``CompletedProcess`` with returncode, stdout and stderr (text).

    Raises:
        TypeError: ``process=False`` with a command that needs a process of its own, or with
            ``env``, ``preexec_fn`` or ``through``.

    Example:
        >>> run_cli("validate", "search_spaces/smoke.yaml", process=False).returncode
        0
    """
    argv = [str(a) for a in args]
    where = Path(cwd) if cwd is not None else ROOT
    if process:
        result = subprocess.run([*through, sys.executable, "-m", "sweeper.cli", *argv],
                                cwd=where, env=env, capture_output=True, text=True,
                                timeout=timeout, preexec_fn=preexec_fn)
    else:
        if argv and argv[0] in NEEDS_A_PROCESS:
            raise TypeError(f"sweeper {argv[0]} runs in a process of its own: pass "
                            "process=True")
        if env is not None or preexec_fn is not None or through:
            raise TypeError("env, preexec_fn and through need a process of its own: pass "
                            "process=True")
        result = _in_process(argv, where)
    if check:
        assert result.returncode == 0, (argv, result.stderr[-3000:])
    return result


def _in_process(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    from sweeper.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    logger = logging.getLogger("sweeper")
    saved = (os.getcwd(), sys.argv, dict(os.environ), list(logger.handlers), logger.level)

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    try:
        os.chdir(cwd)
        sys.argv = ["sweeper", *argv]
        with (warnings.catch_warnings(), contextlib.redirect_stdout(stdout),
              contextlib.redirect_stderr(stderr)):
            warnings.resetwarnings()
            for action, category, module in reversed(PROCESS_WARNING_FILTERS):
                warnings.filterwarnings(action, category=category, module=module)
            warnings.showwarning = show
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's usage errors, sys.exit in a command
                code = _exit_status(exc.code)
            except Exception:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        cwd_before, sys.argv, environ, handlers, level = saved
        os.chdir(cwd_before)
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)
        logger.handlers[:] = handlers
        logger.setLevel(level)
    return subprocess.CompletedProcess(["sweeper", *argv], int(code), stdout.getvalue(),
                                       stderr.getvalue())


def _exit_status(code: object) -> int:
    """The status a process ends with after ``sys.exit(code)`` (a message is printed)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def lock_holder(script: str, *args: object) -> Iterator[subprocess.Popen]:
    """A process running ``script`` (python -c) with ``args``: it takes a lock, prints
    "locked", and holds it until its stdin closes; stopped (by its pid) afterwards."""
    process = subprocess.Popen([sys.executable, "-c", script, *map(str, args)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def eight_trials(name: str) -> dict:
    """A space of eight trials of a few seconds each (32 points), one per input scale: long
    enough to stop or kill the driver in the middle of the sweep."""
    return {"name": name, "task": "noise", "cell": "rnn_tanh", "hidden_size": 24,
            "seq_len": 150, "metrics": ["lyapunov", "memory"],
            "axes": {"recurrent_scale": [0.5, 1.5], "seed": [0, 1],
                     "input_scale": [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6]},
            "vectorize": ["recurrent_scale", "seed"]}
