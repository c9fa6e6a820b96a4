"""The MLflow web UI over a sweep's tracking store: ``mlflow server`` as a child process.

The server runs from this Python environment (``sys.executable -m mlflow``) in its own
session, so that :func:`stop_ui` ends it together with the uvicorn workers it spawns. Only
the driver of a sweep writes to sqlite; the UI reads, so it may run while a sweep does.

Example::

    process, url = start_ui("sqlite:///mlflow.db")
    try:
        print(experiment_url(url, "1"))
    finally:
        stop_ui(process)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import SweeperInputError
from .sqlite_store import SQLITE


def resolve_store_uri(tracking_uri: str) -> str:
    """The backend-store URI the server should open, with a relative sqlite path made absolute.

    ``sqlite:///mlflow.db`` names ``mlflow.db`` in the current directory; the server gets
    ``sqlite:////<cwd>/mlflow.db`` so it opens the file the sweep wrote whatever its own
    working directory. Other database URIs (``postgresql://...``) pass through unchanged.

    Args:
        tracking_uri: the URI given to ``sweeper run --tracking-uri``.

    Returns:
        The URI to pass as ``--backend-store-uri``.

    Raises:
        SweeperInputError: for an HTTP(S) URI (already a server: open it in a browser), an
            in-memory sqlite URI, or a sqlite file that does not exist (a sweep has not run).
    """
    if tracking_uri.startswith(("http://", "https://")):
        raise SweeperInputError(f"tracking URI {tracking_uri} is already an MLflow server; "
                                f"open it in a browser instead of starting a UI")
    if not tracking_uri.startswith("sqlite:"):
        return tracking_uri
    path, sep, query = tracking_uri.removeprefix(SQLITE).partition("?")
    if not tracking_uri.startswith(SQLITE) or path in ("", ":memory:"):
        raise SweeperInputError(f"tracking URI {tracking_uri!r} is an in-memory sqlite store; "
                                f"a UI needs a file, e.g. sqlite:///mlflow.db")
    database = Path(path).resolve()  # relative to the current directory, as in `sweeper run`
    if not database.is_file():
        raise SweeperInputError(f"no MLflow store at {database} (from {tracking_uri!r}); run a "
                                f"sweep first or pass the --tracking-uri it used")
    return f"{SQLITE}{database}{sep}{query}"


def experiment_url(base_url: str, experiment_id: str) -> str:
    """The UI page listing an experiment's runs (MLflow 3's route ``#/experiments/<id>/runs``).

    Args:
        base_url: the server's address, e.g. ``http://127.0.0.1:5000``.
        experiment_id: the experiment's id (the sweep name is the experiment's name).

    Returns:
        The URL of the experiment's runs table.
    """
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _tail(log: Path, n_chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n_chars:]
    except OSError:
        return "(no log)"


def start_ui(tracking_uri: str, host: str = "127.0.0.1", port: int | None = None,
             artifacts_destination: str | Path | None = None, workers: int = 1,
             timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow server`` over a tracking store and wait until it answers ``/health``.

    Args:
        tracking_uri: the sweep's tracking store (``sqlite:///mlflow.db``, an absolute sqlite
            path, or another database URI); a relative sqlite path is resolved against the
            current directory.
        host: interface to bind; the default keeps the UI on this machine.
        port: port to listen on; ``None`` picks a free one.
        artifacts_destination: where the server stores artifacts uploaded through it (e.g.
            ``<results>/mlartifacts``). ``None`` serves no artifact proxy; either way a
            sweep's own artifacts are read from the location its experiment recorded.
        workers: uvicorn worker processes (one is plenty for a single viewer).
        timeout_s: how long to wait for ``/health``.

    Returns:
        ``(process, url)``: the server process (pass it to :func:`stop_ui`; its ``log_path``
        attribute names the file holding the server's output) and its base URL.

    Raises:
        SweeperInputError: see :func:`resolve_store_uri`, or ``workers < 1``.
        RuntimeError: the server exited before answering (the message ends with its log).
        TimeoutError: it did not answer within ``timeout_s`` (it is stopped first).
    """
    if workers < 1:
        raise SweeperInputError(f"requires workers >= 1, got workers={workers}")
    store = resolve_store_uri(tracking_uri)
    port = _free_port(host) if port is None else port
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
               "--host", host, "--port", str(port), "--workers", str(workers)]
    if artifacts_destination is None:
        command.append("--no-serve-artifacts")
    else:
        destination = str(artifacts_destination)
        if "://" not in destination:
            destination = str(Path(destination).resolve())
        command += ["--artifacts-destination", destination]
    # Background jobs (GenAI judges, trace roll-ups) start more processes; browsing runs
    # needs none of them.
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    fd, log_name = tempfile.mkstemp(prefix="sweeper-mlflow-ui-", suffix=".log")
    log = Path(log_name)
    with os.fdopen(fd, "wb") as sink:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    process.log_path = log  # type: ignore[attr-defined]
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = _tail(log)
            stop_ui(process)  # its workers may outlive it
            raise RuntimeError(f"mlflow server over {store} exited with code "
                               f"{process.returncode} before answering on {url}; the end of "
                               f"its log:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            tail = _tail(log)
            stop_ui(process)
            raise TimeoutError(f"mlflow server over {store} did not answer {url}/health within "
                               f"{timeout_s:g} s; the end of its log:\n{tail}")
        time.sleep(0.25)


def stop_ui(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a server started by :func:`start_ui` and every process of its session.

    SIGTERM to the whole process group (the server and its workers), then SIGKILL to whatever
    is left after ``grace_s``. Safe to call twice.

    Args:
        process: the process returned by :func:`start_ui`.
        grace_s: seconds to wait for a clean exit before killing.
    """
    if getattr(process, "stopped", False):
        return  # its group id may name someone else's processes by now
    group = process.pid  # start_new_session: the group id is the leader's pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    # Workers leave the group only by exiting; wait for them, then force the stragglers.
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=grace_s)
    process.stopped = True  # type: ignore[attr-defined]
    log = getattr(process, "log_path", None)
    if log is not None:
        log.unlink(missing_ok=True)
