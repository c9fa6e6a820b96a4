"""``sweeper submit``: send a sweep to a Ray cluster through the Jobs API and stream its logs.

The job runs ``sweeper run`` on the cluster with the project as its working_dir and the
search space passed in an environment variable. Results go to ``--out``, a path every node
sees or an object store's URI (``s3://BUCKET/PREFIX``, with the endpoint and credentials in
every node's environment); runs go to ``--tracking-uri`` (a tracking server the cluster can reach).
Clusters started with RAY_AUTH_MODE=token get the token as a bearer header (from
RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, in Ray's order of precedence).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from pathlib import Path

from ..errors import SweeperInputError
from .mlflow_tracker import check_reachable
from .space_file import load_space
from .storage import URI

EXCLUDES = [".venv", ".git", "results", "*.db", "*.egg-info", "__pycache__", ".pytest_cache",
            ".hypothesis", ".ruff_cache", "docs/*.png", "ray_results"]
SPACE_VARIABLE = "SWEEPER_SPACE"


def auth_headers() -> dict[str, str]:
    """The bearer header for token-authenticated clusters; empty when auth is off."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
        try:
            token = path.read_text().strip()
        except OSError:
            token = ""
    if not token:
        raise SweeperInputError("RAY_AUTH_MODE=token but no token found: set RAY_AUTH_TOKEN, "
                                "RAY_AUTH_TOKEN_PATH, or run `ray get-auth-token`")
    return {"Authorization": f"Bearer {token}"}


def submit(file: str, address: str, tracking_uri: str, out: str, *, max_failures: int = 0,
           resume: bool = False, allow_large: bool = False) -> int:
    """Submit, stream the job's logs, and return 0 if it succeeded (1 otherwise)."""
    space = load_space(file)
    if not URI.match(out) and not Path(out).is_absolute():
        raise SweeperInputError(f"--out must be an absolute path every node sees, or an object "
                                f"store's URI (s3://BUCKET/PREFIX), got {out!r}")
    if tracking_uri.startswith("sqlite:") and not tracking_uri.startswith("sqlite:////"):
        raise SweeperInputError(f"--tracking-uri {tracking_uri!r} is relative; on a cluster use "
                                "a tracking server (http://...) or an absolute sqlite path")
    check_reachable(tracking_uri)
    from ray.job_submission import JobStatus, JobSubmissionClient

    try:
        client = JobSubmissionClient(address, headers=auth_headers())
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SweeperInputError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    root = Path(__file__).resolve().parents[2]
    command = ["python", "-m", "sweeper.cli", "run", f"env:{SPACE_VARIABLE}", "--out", out,
               "--tracking-uri", tracking_uri, "--max-failures", str(max_failures)]
    if resume:
        command.append("--resume")
    if allow_large:
        command.append("--allow-large")
    deadline = time.monotonic() + 300
    while True:
        try:
            job_id = client.submit_job(
                entrypoint=shlex.join(command),
                runtime_env={"working_dir": str(root), "excludes": EXCLUDES,
                             "env_vars": {SPACE_VARIABLE: Path(file).read_text()}},
                metadata={"sweep": space.name})
            break
        except RuntimeError as exc:
            # A freshly started head accepts connections before its job agent is up.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise SweeperInputError(f"the cluster at {address} refused the job: {exc}"
                                        ) from None
            time.sleep(2)
    print(f"submitted sweep {space.name!r} as job {job_id} to {address}", flush=True)

    async def stream() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(stream())
    status = client.get_job_status(job_id)
    print(f"job {job_id}: {status}", flush=True)
    return 0 if status == JobStatus.SUCCEEDED else 1
