"""The docker/ stack without Docker: PostgreSQL, then docker/mlflow-server.sh, docker/ray-head.sh
and docker/ray-worker.sh, run on 127.0.0.1 with the environment docker/compose.yaml gives their
containers (only hosts, ports and paths swapped for local ones) and gated by the same
healthchecks; then `sweeper submit` of search_spaces/smoke.yaml through the token-protected Jobs
API. Everything is stopped the way `docker stop` stops it (the service's stop signal to the
main process), and the test checks that no process it started is left."""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
MARKER = "RNN_SWEEPER_STACK_TEST"  # in the environment of every process this test starts


def _postgres_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _process_table() -> dict[int, dict]:
    """Live (non-zombie) processes from /proc: ppid, command line and raw environment."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            try:
                environ = (entry / "environ").read_bytes().decode(errors="replace")
            except PermissionError:
                environ = ""
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            table[int(entry.name)] = {"ppid": int(ppid), "cmdline": cmdline[:300],
                                      "environ": environ}
    return table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compose_env(service: str) -> dict[str, str]:
    """The service's `environment` in docker/compose.yaml, `${VAR:-default}` at its default."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return {key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
            for key, value in compose["services"][service]["environment"].items()}


def _env_file(name: str) -> dict[str, str]:
    lines = (DOCKER / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


class Stack:
    """The processes of one stack: started with MARKER in their environment, in their own
    session, logging to files; `ours` finds them (and every process they started) again.
    `temp` holds the Ray nodes' directories, `pgdir` PostgreSQL's (owned by the user it runs
    as: `as_pg` is the runuser prefix when we are root, since PostgreSQL refuses root)."""

    def __init__(self, temp: Path, pgdir: Path, logs: Path, bindir: Path, as_pg: list[str]):
        self.temp, self.pgdir, self.logs, self.bindir, self.as_pg = temp, pgdir, logs, bindir, as_pg
        self.marker = secrets.token_hex(8)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.logs / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(
            argv, env={**env, MARKER: self.marker}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def log(self, name: str, chars: int = 3000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]

    def ours(self) -> dict[int, str]:
        """pid -> command line of every live process we started or that descends from one."""
        table = _process_table()
        found = {pid: info["cmdline"] for pid, info in table.items()
                 if pid != os.getpid() and (str(self.temp) in info["cmdline"]
                                            or str(self.pgdir) in info["cmdline"]
                                            or f"{MARKER}={self.marker}" in info["environ"])}
        # PostgreSQL's children overwrite their environment with their title: follow the tree.
        frontier = [p.pid for p in self.procs.values() if p.poll() is None and p.pid in table]
        while frontier:
            pid = frontier.pop()
            found[pid] = table[pid]["cmdline"]
            frontier += [child for child, info in table.items() if info["ppid"] == pid]
        return found

    def wait_until(self, name: str, check: list[str], env: dict[str, str],
                   timeout: float = 120) -> None:
        """Poll a health command while the named process lives (compose's service_healthy)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                pytest.fail(f"{name} exited with {self.procs[name].returncode}:\n{self.log(name)}")
            if subprocess.run(check, env=env, capture_output=True).returncode == 0:
                return
            time.sleep(1)
        pytest.fail(f"{name} not healthy after {timeout} s:\n{self.log(name)}")

    def stop(self, name: str, signum: int, pid: int | None = None, timeout: float = 60) -> None:
        popen = self.procs[name]
        if popen.poll() is None:
            os.kill(pid or popen.pid, signum)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def kill_all(self) -> None:
        for pid in self.ours():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for popen in self.procs.values():
            try:
                popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def stack(tmp_path):
    bindir = _postgres_bindir()
    if bindir is None:
        message = "PostgreSQL not installed (.ci/run installs it: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Short private dirs: Ray's unix sockets live under the temp dir (path length limit).
    temp = Path(tempfile.mkdtemp(prefix="rstk", dir="/tmp"))
    pgdir = Path(tempfile.mkdtemp(prefix="rstkpg", dir="/tmp"))
    logs = tmp_path / "logs"
    logs.mkdir()
    as_pg: list[str] = []
    if os.getuid() == 0:  # the postgres image runs it as `postgres` too
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(pgdir, user, user if user == "postgres" else "nogroup")
        as_pg = ["runuser", "-u", user, "--"]
    stack = Stack(temp, pgdir, logs, bindir, as_pg)
    try:
        yield stack
    finally:
        stack.kill_all()  # a no-op when the test stopped everything itself
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(pgdir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_compose_stack_entrypoints_run_a_sweep_into_postgres_backed_mlflow(stack, tmp_path):
    bindir, as_pg, pgdir = stack.bindir, stack.as_pg, stack.pgdir
    started = time.monotonic()
    base = {"PATH": f"{BIN}:{bindir}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/"),
            "LANG": "C.UTF-8"}

    # The Ray head first: it takes longest, and nothing it needs comes from the others. (Compose
    # starts it after MLflow is healthy; the order matters to nobody here.)
    gcs, dash, ml_port, pg_port = _free_port(), _free_port(), _free_port(), _free_port()
    token = secrets.token_hex(32)
    assert set(_env_file("ray-auth.env.example")) == {"RAY_AUTH_TOKEN"}
    node = {**base, "RAY_AUTH_TOKEN": token, "RAY_NODE_IP_ADDRESS": "127.0.0.1"}
    head_env = {**node, **_compose_env("ray-head"), "RAY_GCS_PORT": str(gcs),
                "RAY_DASHBOARD_HOST": "127.0.0.1", "RAY_DASHBOARD_PORT": str(dash),
                "RAY_DASHBOARD_AGENT_LISTEN_PORT": str(_free_port()),
                "RAY_CLIENT_SERVER_PORT": str(_free_port()), "RAY_TEMP_DIR": f"{stack.temp}/h"}
    stack.start("ray-head", [str(DOCKER / "ray-head.sh")], head_env)

    # PostgreSQL, with the user and database of docker/postgres.env.example and a password that
    # needs quoting in a URI (mlflow-server.sh builds the URI from the parts, as in compose).
    pg = _env_file("postgres.env.example")
    pg["POSTGRES_PASSWORD"] = f"p@ss/w:rd%{secrets.token_hex(4)}"
    (pgdir / "pw").write_text(pg["POSTGRES_PASSWORD"])
    if as_pg:
        shutil.chown(pgdir / "pw", pgdir.owner())
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(pgdir / "data"), "-U",
                    pg["POSTGRES_USER"], f"--pwfile={pgdir / 'pw'}", "--auth-local=trust",
                    "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
                   env=base, check=True, capture_output=True, timeout=120)
    stack.start("postgres", [*as_pg, str(bindir / "postgres"), "-D", str(pgdir / "data"),
                             "-h", "127.0.0.1", "-p", str(pg_port), "-k", str(pgdir),
                             "-c", "fsync=off"], base)
    # compose's healthcheck for postgres is pg_isready too.
    stack.wait_until("postgres", [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p",
                                  str(pg_port), "-U", pg["POSTGRES_USER"]], base)
    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(pg_port), "-U",
            pg["POSTGRES_USER"], "-v", "ON_ERROR_STOP=1", "-At"]
    pg_env = {**base, "PGPASSWORD": pg["POSTGRES_PASSWORD"]}
    subprocess.run([*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{pg["POSTGRES_DB"]}"'],
                   env=pg_env, check=True, capture_output=True, timeout=60)
    mlflow_env = {**base, **_compose_env("mlflow"), **pg, "POSTGRES_HOST": "127.0.0.1",
                  "POSTGRES_PORT": str(pg_port), "MLFLOW_HOST": "127.0.0.1",
                  "MLFLOW_PORT": str(ml_port), "MLFLOW_WORKERS": "1",  # two cores here
                  "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "mlartifacts")}
    stack.start("mlflow", [str(DOCKER / "mlflow-server.sh")], mlflow_env)

    health = str(DOCKER / "healthcheck.sh")
    stack.wait_until("ray-head", [health, "ray-head"], head_env)
    # The head has no CPUs (compose: RAY_NUM_CPUS=0), so the trials can only run here.
    worker_env = {**node, **_compose_env("ray-worker"), "RAY_HEAD_ADDRESS": f"127.0.0.1:{gcs}",
                  "RAY_DASHBOARD_AGENT_LISTEN_PORT": str(_free_port()),
                  "RAY_TEMP_DIR": f"{stack.temp}/w"}
    assert head_env["RAY_NUM_CPUS"] == "0" and int(worker_env["RAY_NUM_CPUS"]) >= 1
    stack.start("ray-worker", [str(DOCKER / "ray-worker.sh")], worker_env)
    stack.wait_until("mlflow", [health, "mlflow"], mlflow_env)
    stack.wait_until("ray-worker", [health, "ray-worker"], worker_env)
    ready = time.monotonic() - started

    # Token auth is on: the Jobs API refuses a request without the token.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{dash}/api/jobs/", timeout=10)
    assert refused.value.code == 401

    out = tmp_path / "results" / "smoke"
    tracking = f"http://127.0.0.1:{ml_port}"
    submit = subprocess.run(
        [str(BIN / "sweeper"), "submit", "search_spaces/smoke.yaml", "--address",
         f"http://127.0.0.1:{dash}", "--tracking-uri", tracking, "--out", str(out)],
        env={**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, MARKER: stack.marker},
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    (tmp_path / "submit.log").write_text(submit.stdout + submit.stderr)
    assert submit.returncode == 0, (submit.stdout[-3000:], submit.stderr[-3000:])
    swept = time.monotonic() - started
    assert "SUCCEEDED" in submit.stdout and "2 trials run" in submit.stdout

    frame = pd.read_parquet(out / "points")
    assert len(frame) == 12 and frame.point_id.nunique() == 12
    assert set(frame.status) == {"ok"}

    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    roles = {r.info.run_id: r.data.tags.get("sweeper.role") for r in runs}
    assert sorted(roles.values()) == ["sweep", "trial", "trial"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert set(frame.mlflow_run_id) == {k for k, v in roles.items() if v == "trial"}
    # The runs really are in PostgreSQL, in MLflow's runs table.
    rows = subprocess.run(
        [*psql, "-d", pg["POSTGRES_DB"], "-F", "|", "-c",
         "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e "
         "ON e.experiment_id = r.experiment_id WHERE e.name = 'smoke'"],
        env=pg_env, check=True, capture_output=True, text=True, timeout=60).stdout.split()
    assert {tuple(row.split("|")) for row in rows} == {(k, "FINISHED") for k in roles}

    # Stop as `docker compose down` does: dependents first, each with its stop signal
    # (SIGTERM; the postgres image's STOPSIGNAL is SIGINT, a fast shutdown).
    for name in ("ray-worker", "ray-head", "mlflow"):
        stack.stop(name, signal.SIGTERM)
    postmaster = int((pgdir / "data" / "postmaster.pid").read_text().split()[0])
    stack.stop("postgres", signal.SIGINT, pid=postmaster)
    exits = {name: popen.returncode for name, popen in stack.procs.items()}
    deadline = time.monotonic() + 30
    while stack.ours() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = stack.ours()
    assert not left, f"still running after stop: {left}"
    assert None not in exits.values(), exits
    print(f"\nstack healthy after {ready:.0f} s, sweep done after {swept:.0f} s, everything "
          f"stopped after {time.monotonic() - started:.0f} s")
