"""One driver per results prefix on an object store: what :func:`.lock.results_lock` is for a
directory, for ``--out s3://``.

An object store has no flock and no rename, but S3 (and the stores that follow it) has
conditional writes, and they are enough for a lease:

* taking: ``<prefix>/.sweeper.lock`` is created with ``If-None-Match: *``, which succeeds for
  one writer only; the holder keeps the ETag the store answers with.
* holding: a daemon thread re-writes the record every ``heartbeat_s`` with ``If-Match: <ETag>``.
  Each write has new content (a beat counter), hence a new ETag, so any other write in between
  makes the holder's next beat fail with 412: the lock was taken over.
* staleness: a holder that stops beating (SIGKILL, power loss, a lost network) leaves the
  object behind. It is stale once its ``LastModified`` is more than ``stale_s`` older than the
  store's own ``Date`` on the response that read it: both are the server's clock, so clock skew
  between hosts does not matter. HTTP dates count whole seconds, so one second is added.
* taking over: a stale lock is replaced with ``If-Match: <the ETag read>``, so of two drivers
  that both find it stale, one wins and the other is refused. A lock whose record names a pid
  of this host that is not running (a driver killed here) is taken over without waiting.
* release: the heartbeat stops, then the object is deleted with ``If-Match: <our ETag>``: a
  lock someone else has taken over is never deleted.

Before the first lock on an (endpoint, bucket), :func:`probe_conditional_writes` checks that the
store honours the two headers: an S3-compatible store that ignores them would let two drivers
both take the sweep, so the sweep is refused instead.

Limitations:
    * A lease, not a kernel lock: a holder that is paused for longer than ``stale_s`` (a long
      GC pause, a frozen VM, a laptop asleep, a network partition) can be taken over while it
      still runs. It finds out at its next beat (412), or when no beat has succeeded for
      ``stale_s``; ``on_lost`` is how the caller hears of it and must stop writing. Writes it
      made between the takeover and that beat are not prevented.
    * All drivers on one prefix should use the same ``stale_s``; a taker waits for the larger
      of its own and the one the holder wrote into its record.
    * Advisory: only processes that call :func:`object_lock` are kept out.
    * Stores that do not honour ``If-Match`` on DELETE: release then reads the object, compares
      ETags and deletes it without a condition, which leaves a short window in which a takeover
      could be deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import email.utils
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ..errors import SweeperInputError, invalid, number
from .lock import LOCK_NAME, _describe, _pid_running, holder_record
from .storage import s3_client

log = logging.getLogger("sweeper")
PROBE_NAME = ".sweeper.probe-"
#: HTTP dates (Date, Last-Modified) have a resolution of one second.
CLOCK_RESOLUTION_S = 1.0
#: Error codes of a store that refuses a conditional DELETE as not supported.
NO_CONDITIONAL_DELETE = {"NotImplemented", "InvalidArgument", "InvalidRequest"}
#: An ETag no object has, for the probes that must fail.
WRONG_ETAG = '"sweeper-probe-no-such-etag"'
#: (endpoint, bucket) -> whether DELETE honours If-Match, for the stores that passed the probe.
_PROBED: dict[tuple[str, str], bool] = {}


class _Held(NamedTuple):
    """The lock object as read: its record, its ETag and its age by the store's clock."""

    record: dict[str, Any]
    etag: str
    age_s: float


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b")``; the prefix may be empty.

    Raises:
        SweeperInputError: not an ``s3://`` URI, or no bucket in it.

    Example:
        >>> split_s3_uri("s3://sweeps/quickstart/")
        ('sweeps', 'quickstart')
    """
    text = str(uri)
    if not text.startswith("s3://"):
        raise SweeperInputError(
            f"the results lock on an object store needs S3 conditional writes (If-None-Match), "
            f"so the results must be an s3:// URI, got {text!r}. For Google Cloud Storage use "
            "its S3-compatible endpoint: AWS_ENDPOINT_URL_S3=https://storage.googleapis.com "
            "with HMAC keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and an s3:// URI")
    bucket, _, prefix = text[len("s3://"):].partition("/")
    if not bucket:
        raise invalid("the results URI", text, "s3://<bucket>/<prefix>")
    return bucket, prefix.rstrip("/")


def probe_conditional_writes(uri: str, client: Any = None) -> None:
    """Check that the store behind ``uri`` honours conditional writes, with a probe object
    ``<prefix>/.sweeper.probe-<uuid>`` (deleted afterwards, whatever happens): a second create
    with ``If-None-Match: *`` and a write with a wrong ``If-Match`` must both fail with 412.
    A store that passes is remembered per (endpoint, bucket) for the life of the process.

    Args:
        uri: ``s3://bucket/prefix``.
        client: a boto3 S3 client (default: :func:`s3_client`).

    Raises:
        SweeperInputError: the store ignores the headers (two drivers could both take the
            sweep), or it cannot be used (no such bucket, access denied, unreachable); the
            message names the URI, the endpoint and the store's error code.
    """
    bucket, prefix = split_s3_uri(uri)
    client = client if client is not None else s3_client()
    endpoint = client.meta.endpoint_url
    if (endpoint, bucket) in _PROBED:
        return
    key = _join(prefix, f"{PROBE_NAME}{uuid.uuid4().hex}")
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"probe", IfNoneMatch="*")
        ignored = [header for header, condition in
                   (("If-None-Match", {"IfNoneMatch": "*"}), ("If-Match", {"IfMatch": WRONG_ETAG}))
                   if _put_was_accepted(client, bucket, key, condition)]
        if ignored:
            raise SweeperInputError(
                f"the S3-compatible store at {endpoint} ({_endpoint_source()}) ignores "
                f"conditional-write headers ({' and '.join(ignored)} had no effect on "
                f"s3://{bucket}/{key}), so two drivers could both take the sweep at {uri}; "
                "the sweep is refused. Use a store with S3 conditional writes")
        _PROBED[(endpoint, bucket)] = _delete_is_conditional(client, bucket, key)
    except _store_errors() as exc:
        raise _store_error(uri, endpoint, exc) from None
    finally:
        with contextlib.suppress(*_store_errors()):
            client.delete_object(Bucket=bucket, Key=key)


@contextlib.contextmanager
def object_lock(uri: str, command: str | None = None, wait_s: float = 0.0,
                heartbeat_s: float = 10.0, stale_s: float = 60.0,
                on_lost: Callable[[str], None] | None = None
                ) -> Iterator[dict[str, Any] | None]:
    """Hold ``<uri>/.sweeper.lock`` on S3 for the duration of the ``with`` block.

    Args:
        uri: the results, ``s3://bucket/prefix``.
        command: the command line to record (default: this process's ``sys.argv``).
        wait_s: how long to wait for another holder to finish or go stale (saying so once,
            naming it) before giving up; 0 gives up at once.
        heartbeat_s: how often the holder re-writes the lock.
        stale_s: a lock whose last write is older than this (by the store's clock) is taken
            over; at least twice ``heartbeat_s``.
        on_lost: called with a message, from the heartbeat thread, when the lock is found
            taken over or no beat has succeeded for ``stale_s``; the caller stops the sweep.

    Yields:
        The record left by a previous holder that stopped beating (a crash), or None.

    Raises:
        SweeperInputError: another driver holds the lock (the message names its pid, host,
            start time, command and the lock's URI); the store ignores conditional writes or
            cannot be used.

    Example:
        >>> with object_lock("s3://sweeps/quickstart", on_lost=print):
        ...     pass  # run the sweep; a second `sweeper run` on the prefix exits 2
    """
    number("heartbeat_s", heartbeat_s, above=0)
    number("wait_s", wait_s, at_least=0)
    number("stale_s", stale_s, above=0)
    if stale_s < 2 * heartbeat_s:
        raise invalid("stale_s", stale_s, f"at least twice heartbeat_s={heartbeat_s:g}")
    bucket, prefix = split_s3_uri(uri)
    client = s3_client()
    probe_conditional_writes(uri, client)
    lock = _Lock(client, bucket, _join(prefix, LOCK_NAME))
    record = {**holder_record(command), "heartbeat": _now(), "beat": 0, "stale_s": stale_s,
              "token": uuid.uuid4().hex[:12]}
    try:
        etag, previous = _acquire(lock, record, wait_s, stale_s, uri)
    except _store_errors() as exc:
        raise _store_error(uri, client.meta.endpoint_url, exc) from None
    heartbeat = _Heartbeat(lock, record, etag, heartbeat_s, stale_s, on_lost)
    heartbeat.start()
    try:
        yield previous
    finally:
        heartbeat.stop()
        if not heartbeat.lost:
            _release(lock, heartbeat.etag)


@dataclasses.dataclass(frozen=True)
class _Lock:
    """The lock object ``s3://bucket/key``, reached through ``client``."""

    client: Any
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def put(self, record: dict[str, Any], **condition: str) -> str:
        """Write ``record`` under ``condition`` (IfNoneMatch / IfMatch); returns the ETag."""
        body = (json.dumps(record) + "\n").encode()
        return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                      ContentType="application/json", **condition)["ETag"]

    def read(self) -> _Held | None:
        """The lock object, or None if there is none."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except _store_errors() as exc:
            if _status(exc) == 404:
                return None
            raise
        record = _parse_record(response["Body"].read())
        now = _server_now(response, self)
        return _Held(record, response["ETag"], (now - response["LastModified"]).total_seconds())


def _acquire(lock: _Lock, record: dict[str, Any], wait_s: float, stale_s: float, uri: str
             ) -> tuple[str, dict[str, Any] | None]:
    """Take the lock: create it, or take over a stale one; wait for a live holder up to
    ``wait_s``. Returns our ETag and the stale record taken over (or None)."""
    deadline, said = time.monotonic() + wait_s, False
    while True:
        try:
            return lock.put(record, IfNoneMatch="*"), None
        except _store_errors() as exc:
            if not _lost_race(exc):
                raise
        held = lock.read()
        if held is None:
            continue  # released between the two calls
        if held.record == record:
            return held.etag, None  # our own create, answered late and retried
        stale_after = _stale_after(held.record, stale_s)
        if held.age_s > stale_after or _dead_here(held.record):
            try:
                etag = lock.put(record, IfMatch=held.etag)
            except _store_errors() as exc:
                if not (_lost_race(exc) or _status(exc) == 404):
                    raise
                continue  # another driver took it over, or it was released: read again
            log.warning(_stale_warning(lock.uri, held, stale_after))
            return etag, held.record
        if time.monotonic() >= deadline:
            waited = f" (waited {wait_s:g} s)" if wait_s else ""
            raise SweeperInputError(
                f"results {uri!r} are in use by {_describe(held.record)} (lock {lock.uri}, "
                f"written {held.age_s:.0f} s ago){waited}; wait for it to finish or choose "
                "another --out")
        if not said:
            log.warning("results %s are in use by %s; waiting up to %g s for it to finish",
                        uri, _describe(held.record), wait_s)
            said = True
        time.sleep(0.5)


class _Heartbeat:
    """Re-writes the lock every ``heartbeat_s`` with If-Match, in a daemon thread; ``etag`` is
    the holder's current ETag, ``lost`` whether the lock was lost. Read both after stop()."""

    def __init__(self, lock: _Lock, record: dict[str, Any], etag: str, heartbeat_s: float,
                 stale_s: float, on_lost: Callable[[str], None] | None) -> None:
        self.lock, self.record, self.etag, self.lost = lock, record, etag, False
        self.heartbeat_s, self.stale_s, self.on_lost = heartbeat_s, stale_s, on_lost
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper-lock-heartbeat",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        last_beat = time.monotonic()
        while not self._stopping.wait(self.heartbeat_s):
            record = {**self.record, "heartbeat": _now(), "beat": self.record["beat"] + 1}
            began = time.monotonic()
            try:
                etag = self.lock.put(record, IfMatch=self.etag)
            except _store_errors() as exc:
                failure = exc
            else:
                self.etag, self.record, last_beat = etag, record, began
                continue
            if _status(failure) in (404, 412):
                held = self._read()
                if held is not None and held.record == record:  # ours, answered late
                    self.etag, self.record, last_beat = held.etag, record, began
                    continue
                how = f"taken over by {_describe(held.record)}" if held else "deleted"
                return self._lose(f"lost the lock {self.lock.uri}: it was {how}; stop writing "
                                  "results there")
            log.warning("could not renew the lock %s (%s); retrying in %g s", self.lock.uri,
                        _code(failure), self.heartbeat_s)
            if time.monotonic() - last_beat > self.stale_s:
                return self._lose(f"lost the lock {self.lock.uri}: no heartbeat succeeded for "
                                  f"{self.stale_s:g} s (last error: {_code(failure)}), so "
                                  "another driver may take it over; stop writing results there")

    def _read(self) -> _Held | None:
        try:
            return self.lock.read()
        except _store_errors():
            return None

    def _lose(self, message: str) -> None:
        self.lost = True
        log.error(message)
        if self.on_lost is not None:
            self.on_lost(message)


def _release(lock: _Lock, etag: str) -> None:
    """Delete the lock if it is still ours; a failure is logged, never raised (it must not
    hide the block's own error)."""
    client = lock.client
    try:
        if _PROBED.get((client.meta.endpoint_url, lock.bucket), False):
            try:
                client.delete_object(Bucket=lock.bucket, Key=lock.key, IfMatch=etag)
                return
            except _store_errors() as exc:
                if _status(exc) == 404:
                    return
                if _status(exc) == 412:
                    log.warning("not deleting the lock %s: it was taken over while held",
                                lock.uri)
                    return
                if _code(exc) not in NO_CONDITIONAL_DELETE:
                    raise
        held = lock.read()
        if held is not None and held.etag == etag:
            client.delete_object(Bucket=lock.bucket, Key=lock.key)
    except _store_errors() as exc:
        log.warning("could not release the lock %s (%s); the next driver takes it over once "
                    "it is stale", lock.uri, _code(exc))


def _put_was_accepted(client: Any, bucket: str, key: str, condition: dict[str, str]) -> bool:
    """Whether a conditional write that must fail (412) went through."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"probe", **condition)
    except _store_errors() as exc:
        if _status(exc) == 412:
            return False
        raise
    return True


def _delete_is_conditional(client: Any, bucket: str, key: str) -> bool:
    """Whether DELETE with a wrong If-Match fails (412); a store that ignores it deletes the
    probe, one that rejects it answers with an error code of NO_CONDITIONAL_DELETE."""
    try:
        client.delete_object(Bucket=bucket, Key=key, IfMatch=WRONG_ETAG)
    except _store_errors() as exc:
        if _status(exc) == 412:
            return True
        if _code(exc) in NO_CONDITIONAL_DELETE or _status(exc) == 501:
            return False
        raise
    return False


def _stale_after(record: dict[str, Any], stale_s: float) -> float:
    """Seconds of silence after which ``record``'s holder counts as gone."""
    theirs = record.get("stale_s")
    if isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        stale_s = max(stale_s, float(theirs))
    return stale_s + CLOCK_RESOLUTION_S


def _dead_here(record: dict[str, Any]) -> bool:
    """Whether ``record`` names a process of this host that is not running: a driver killed
    here (SIGKILL, OOM killer) need not be waited out for ``stale_s``. A pid running again
    (reused) is not taken for dead: that holder is waited out as any other."""
    return (record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int)
            and record["pid"] != os.getpid() and not _pid_running(record["pid"]))


def _stale_warning(uri: str, held: _Held, stale_after: float) -> str:
    if "unreadable" in held.record:
        why = "an unreadable record was left in it"
    elif held.age_s <= stale_after:
        why = (f"pid {held.record.get('pid')} is not running on this host: that run crashed "
               "or was killed")
    else:
        why = (f"it was last written {held.age_s:.0f} s ago by the store's clock (stale after "
               f"{stale_after:g} s): that run crashed, was killed, lost its connection or was "
               "paused for longer than that")
    return (f"taking over {uri}, left by {_describe(held.record)}; {why}. Its finished trials "
            "are kept; `sweeper run --resume` skips them")


def _parse_record(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except ValueError:
        return {"unreadable": data[:200].decode(errors="replace")}
    return record if isinstance(record, dict) else {"unreadable": repr(record)[:200]}


def _server_now(response: dict[str, Any], lock: _Lock) -> datetime.datetime:
    """The store's time: the ``Date`` of ``response``, or else the LastModified of a fresh
    probe object."""
    date = response["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
    if date:
        return email.utils.parsedate_to_datetime(date)
    key = _join(lock.key.rpartition("/")[0], f"{PROBE_NAME}{uuid.uuid4().hex}")
    lock.client.put_object(Bucket=lock.bucket, Key=key, Body=b"clock")
    try:
        return lock.client.head_object(Bucket=lock.bucket, Key=key)["LastModified"]
    finally:
        lock.client.delete_object(Bucket=lock.bucket, Key=key)


def _store_errors() -> tuple[type[Exception], ...]:
    """botocore's two exception roots (imported late: boto3 is an optional dependency)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is None:  # not an answer from the store: connection, credentials, timeout
        return f"{type(exc).__name__}: {exc}"
    return str(response.get("Error", {}).get("Code") or _status(exc))


def _lost_race(exc: Exception) -> bool:
    """Another writer's condition won: 412, or 409 while its conditional write is in flight."""
    return _status(exc) == 412 or _code(exc) == "ConditionalRequestConflict"


def _store_error(uri: str, endpoint: str, exc: Exception) -> SweeperInputError:
    return SweeperInputError(f"cannot use the results store {uri!r} (S3 endpoint {endpoint}): "
                             f"{_code(exc)}" + _detail(exc))


def _detail(exc: Exception) -> str:
    message = (getattr(exc, "response", None) or {}).get("Error", {}).get("Message")
    return f" ({message})" if message else ""


def _endpoint_source() -> str:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return f"set by {name}"
    return "boto3's default"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
