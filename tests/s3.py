"""A real S3 API on 127.0.0.1 for the object-store tests: moto's server in a process of its
own (started by the tests, stopped by pid), and the environment that points boto3, pyarrow
and every child process (``sweeper run``, Ray's workers) at it.

Only the standard variables are used (``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ...), as
a user's cluster would set them; nothing about the endpoint reaches the code otherwise."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Started in a child process: prints the port it listens on, then serves until killed.
SERVER = """
import sys, time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=sys.argv[1] == "log")
server.start()
print(server.get_host_and_port()[1], flush=True)
while True:
    time.sleep(3600)
"""


def s3_environment(endpoint: str) -> dict[str, str]:
    """The variables a process needs to reach the S3 API at ``endpoint`` (test credentials:
    moto accepts any)."""
    return {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@contextlib.contextmanager
def moto_server(timeout_s: float = 60.0, log: Path | None = None) -> Iterator[str]:
    """Start moto's S3 server in a child process; yields its endpoint URL. Stopped by pid.
    ``log``: a file that gets one line per request (method, path and query, status)."""
    with open(log or os.devnull, "w") as sink:
        process = subprocess.Popen([sys.executable, "-c", SERVER, "log" if log else "quiet"],
                                   stdout=subprocess.PIPE, stderr=sink, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        line = process.stdout.readline().strip()
        while line and not line.isdigit():  # verbose, it first says it is starting
            line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"moto's server did not start (printed {line!r})")
        endpoint = f"http://127.0.0.1:{line}"
        while time.monotonic() < deadline:  # it prints the port as it starts listening
            with contextlib.suppress(OSError):
                import urllib.request

                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            time.sleep(0.1)
        yield endpoint
    finally:
        process.kill()
        process.wait(timeout=30)


@contextlib.contextmanager
def s3_env(endpoint: str) -> Iterator[dict[str, str]]:
    """Set :func:`s3_environment` in ``os.environ`` (children inherit it); put back after."""
    variables = s3_environment(endpoint)
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield variables
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def new_bucket(endpoint: str, prefix: str = "sweeps") -> str:
    """Create a bucket of a fresh name on the server; returns its name."""
    import boto3

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=name)
    return name


def keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``bucket``, sorted."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [item["Key"] for item in page.get("Contents", [])]
    return sorted(found)
