"""One driver per results prefix on S3 (sweeper.adapters.object_lock), against moto's real S3
HTTP server and real processes: a live holder in another process refuses a second one by pid
and is never taken over while it beats; a SIGKILLed holder is taken over once stale; a holder
frozen past stale_s hears that it lost the lock; a store that ignores conditional writes (a
proxy in front of moto that drops the headers) is refused at start-up."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from helpers import lock_holder
from s3 import keys, moto_server, new_bucket, s3_env

from sweeper import SweeperInputError
from sweeper.adapters.lock import LOCK_NAME
from sweeper.adapters.object_lock import object_lock, split_s3_uri

HEARTBEAT_S, STALE_S = 0.5, 2.0

# Takes the lock, says so on stdout, and holds it until stdin closes (or it is killed); says
# "lost: <message>" if its heartbeat finds the lock taken over.
HOLDER = textwrap.dedent("""
    import sys
    from sweeper.adapters.object_lock import object_lock
    lost = lambda message: print("lost:", message, flush=True)
    with object_lock(sys.argv[1], command="holder under test", heartbeat_s=float(sys.argv[2]),
                     stale_s=float(sys.argv[3]), on_lost=lost):
        print("locked", flush=True)
        sys.stdin.read()
    print("released", flush=True)
""")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """One moto S3 server for the module, and the AWS_* variables pointing at it."""
    with moto_server() as url, s3_env(url):
        yield url


@pytest.fixture
def results(endpoint) -> tuple[str, str, str]:
    """(uri, bucket, lock key) of a results prefix in a fresh bucket."""
    bucket = new_bucket(endpoint)
    return f"s3://{bucket}/sweep", bucket, f"sweep/{LOCK_NAME}"


@contextlib.contextmanager
def holder(uri: str, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S
           ) -> Iterator[subprocess.Popen]:
    """A process holding the lock on ``uri``; stopped (by its pid) afterwards."""
    with lock_holder(HOLDER, uri, heartbeat_s, stale_s) as process:
        yield process


def line_within(process: subprocess.Popen, timeout_s: float) -> str:
    """The next line ``process`` prints, or "" if it prints none within ``timeout_s``."""
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    return process.stdout.readline() if ready else ""


def lock_record(endpoint: str, bucket: str, key: str) -> dict:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_second_driver_is_refused_naming_the_holder(endpoint, results):
    uri, bucket, key = results
    with holder(uri) as process:
        with pytest.raises(SweeperInputError) as refused:
            with object_lock(uri, heartbeat_s=HEARTBEAT_S, stale_s=STALE_S):
                pytest.fail("the lock was taken twice")
        record = lock_record(endpoint, bucket, key)
    message = str(refused.value)
    assert f"pid {process.pid} on host {socket.gethostname()}" in message
    assert "holder under test" in message and f"s3://{bucket}/{key}" in message
    assert record["pid"] == process.pid and record["command"] == "holder under test"


def test_the_lock_is_free_after_the_block(endpoint, results):
    uri, bucket, key = results
    with object_lock(uri) as previous:
        assert previous is None
        assert keys(endpoint, bucket) == [key]  # the probe object is gone
        assert lock_record(endpoint, bucket, key)["pid"] == os.getpid()
    assert keys(endpoint, bucket) == []
    # Free for another process too.
    again = subprocess.run([sys.executable, "-c", HOLDER, uri, "10", "60"], input="",
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.split() == ["locked", "released"]


def test_the_lock_is_free_after_the_block_raised(endpoint, results):
    uri, bucket, _ = results
    with pytest.raises(RuntimeError), object_lock(uri):
        raise RuntimeError("the sweep failed")
    assert keys(endpoint, bucket) == []
    with object_lock(uri) as previous:
        assert previous is None  # an error inside is not a crash: no stale record


def test_a_holder_killed_on_this_host_is_taken_over_at_once(endpoint, results, caplog):
    # Its record names this host and a pid that no longer runs: no need to wait stale_s.
    uri, bucket, key = results
    with holder(uri) as process:
        os.kill(process.pid, signal.SIGKILL)  # no release step runs: the lock object stays
        process.wait(timeout=30)
    assert lock_record(endpoint, bucket, key)["pid"] == process.pid
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        with object_lock(uri, heartbeat_s=HEARTBEAT_S, stale_s=60.0) as previous:
            assert previous["pid"] == process.pid and previous["command"] == "holder under test"
            assert lock_record(endpoint, bucket, key)["pid"] == os.getpid()
    assert f"taking over s3://{bucket}/{key}, left by pid {process.pid}" in caplog.text
    assert "is not running on this host" in caplog.text and "--resume" in caplog.text
    assert keys(endpoint, bucket) == []


def test_a_silent_holder_of_another_host_is_taken_over_once_stale(endpoint, results, caplog):
    # A driver on another machine that stopped beating: only its silence says it is gone.
    import boto3

    uri, bucket, key = results
    left = {"pid": 4242, "host": "another-host", "started": "2026-01-01T00:00:00+00:00",
            "command": "a driver elsewhere", "beat": 3, "stale_s": STALE_S}
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(left).encode())
    with pytest.raises(SweeperInputError, match="pid 4242 on host another-host"):
        with object_lock(uri, heartbeat_s=HEARTBEAT_S, stale_s=STALE_S):
            pass  # not stale yet
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        with object_lock(uri, heartbeat_s=HEARTBEAT_S, stale_s=STALE_S, wait_s=15) as previous:
            waited = time.monotonic() - began
            assert previous == left
            assert lock_record(endpoint, bucket, key)["pid"] == os.getpid()
    assert 1.0 <= waited < 10  # about STALE_S + the store's one-second clock
    assert f"taking over s3://{bucket}/{key}, left by pid 4242" in caplog.text
    assert "crashed, was killed" in caplog.text and "--resume" in caplog.text
    assert keys(endpoint, bucket) == []


def test_a_live_holder_is_not_taken_over(endpoint, results, caplog):
    uri, bucket, key = results
    with holder(uri) as process:
        first_beat = lock_record(endpoint, bucket, key)["beat"]
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="sweeper"):
            with pytest.raises(SweeperInputError, match=rf"pid {process.pid}.*waited 7 s"):
                with object_lock(uri, heartbeat_s=HEARTBEAT_S, stale_s=STALE_S, wait_s=7):
                    pytest.fail("a live holder was taken over")
        assert time.monotonic() - began >= 7 > 2 * (STALE_S + 1)
        record = lock_record(endpoint, bucket, key)
        assert record["pid"] == process.pid and record["beat"] > first_beat + 5
        process.stdin.close()
        assert process.stdout.read().split() == ["released"]  # no "lost:" either
    assert "waiting up to 7 s" in caplog.text and "taking over" not in caplog.text
    assert keys(endpoint, bucket) == []


def test_a_holder_frozen_past_stale_s_hears_it_lost_the_lock(endpoint, results):
    uri, bucket, key = results
    with holder(uri) as process:
        os.kill(process.pid, signal.SIGSTOP)  # a GC pause, a frozen VM
        try:
            with object_lock(uri, heartbeat_s=HEARTBEAT_S, stale_s=STALE_S,
                             wait_s=15) as previous:
                assert previous["pid"] == process.pid
                os.kill(process.pid, signal.SIGCONT)
                lost = line_within(process, 10)
                mine = lock_record(endpoint, bucket, key)
                process.stdin.close()
                assert process.stdout.read().split() == ["released"]
                # The old holder's release left our lock alone.
                assert lock_record(endpoint, bucket, key) == mine
        finally:
            os.kill(process.pid, signal.SIGCONT)
    assert lost.startswith(f"lost: lost the lock s3://{bucket}/{key}: it was taken over by "
                           f"pid {os.getpid()}")
    assert keys(endpoint, bucket) == []


class DroppingProxy(http.server.BaseHTTPRequestHandler):
    """Forwards every request to moto, without the headers that ``server.dropped`` names for
    its method (``{"PUT": {"if-match"}}``)."""

    protocol_version = "HTTP/1.1"

    def forward(self) -> None:
        target = urllib.parse.urlsplit(self.server.target)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        dropped = self.server.dropped.get(self.command, set()) | {"expect", "connection"}
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in dropped}
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length",
                                    "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def proxy(target: str, dropped: dict[str, set[str]]) -> Iterator[str]:
    """An S3 endpoint on 127.0.0.1 in front of ``target`` (see DroppingProxy); yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DroppingProxy)
    server.target, server.dropped = target, dropped
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_store_that_ignores_conditional_writes_is_refused(endpoint, results, monkeypatch):
    uri, bucket, _ = results
    # The proxy itself works: passing the headers through, the lock is taken.
    with proxy(endpoint, {}) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)
        with object_lock(uri):
            pass
    # boto3 signs If-None-Match and If-Match (SigV4), so dropping them breaks the signature:
    # moto does not check signatures, and answers like a store that ignores the headers.
    with proxy(endpoint, {"PUT": {"if-none-match", "if-match"}}) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)
        with pytest.raises(SweeperInputError) as refused:
            with object_lock(uri):
                pytest.fail("the lock was taken on a store without conditional writes")
    message = str(refused.value)
    assert "ignores conditional-write headers" in message and "two drivers" in message
    assert url in message and "AWS_ENDPOINT_URL_S3" in message and uri in message
    assert keys(endpoint, bucket) == []  # no probe, no lock left behind


def test_sweeper_run_on_such_a_store_exits_2_before_writing(endpoint, results, tmp_path):
    from helpers import SMOKE_SPACE, run_cli

    uri, bucket, _ = results
    with proxy(endpoint, {"PUT": {"if-none-match", "if-match"}}) as url:
        ran = run_cli("run", SMOKE_SPACE, "--out", uri, "--executor", "local", cwd=tmp_path,
                      env=dict(os.environ, AWS_ENDPOINT_URL_S3=url), process=True)
    assert ran.returncode == 2, ran.stderr[-3000:]
    assert "ignores conditional-write headers" in ran.stderr and "Traceback" not in ran.stderr
    assert keys(endpoint, bucket) == []  # no record, no part, no probe left


@pytest.mark.parametrize("dropped", [{}, {"DELETE": {"if-match"}}],
                         ids=["conditional-delete", "delete-ignores-if-match"])
def test_release_never_deletes_a_lock_taken_over(endpoint, results, monkeypatch, dropped):
    import boto3

    uri, bucket, key = results
    store = boto3.client("s3", endpoint_url=endpoint)
    with proxy(endpoint, dropped) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)
        with object_lock(uri):  # released through the proxy: by ETag, or read-compare-delete
            pass
        assert keys(endpoint, bucket) == []
        with object_lock(uri):
            # Taken over while held (a taker that judged it stale); the next beat is 10 s away.
            store.put_object(Bucket=bucket, Key=key, Body=b'{"pid": 1, "host": "taker"}')
    assert lock_record(endpoint, bucket, key) == {"pid": 1, "host": "taker"}


def test_an_unknown_bucket_is_an_input_error(endpoint):
    with pytest.raises(SweeperInputError, match=r"no-such-sweep-bucket.*NoSuchBucket"):
        with object_lock("s3://no-such-sweep-bucket/sweep"):
            pass


@pytest.mark.parametrize("uri", ["gs://bucket/sweep", "results/sweep", "s3:///sweep"])
def test_a_uri_that_is_not_s3_is_an_input_error(uri):
    with pytest.raises(SweeperInputError, match="s3://"):
        with object_lock(uri):
            pass


def test_the_gcs_advice_names_its_s3_endpoint():
    with pytest.raises(SweeperInputError, match=r"storage\.googleapis\.com"):
        split_s3_uri("gs://bucket/sweep")
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
