"""One driver per results directory: an advisory lock held for the whole of ``sweeper run``.

Two drivers writing the same directory would open two MLflow runs per trial and race on the
sweep record, so the second one is refused at once, told who holds the directory.

How it works: ``<out>/.sweeper.lock`` is opened and ``flock(LOCK_EX | LOCK_NB)``-ed; the holder
writes who it is into the file (pid, host, start time, command line) and empties it again on
release. The kernel drops a flock when its process dies, however it dies, so the lock itself
is never stale. What a crash leaves is the *record*: a file that still names a holder while
the flock is free means that holder ended without releasing (SIGKILL, power loss, OOM killer);
the next driver takes the lock and logs a warning naming it. The file is never deleted:
unlinking a lock file lets two processes lock two different inodes of the same name.

Limitations:
    * Advisory: only processes that call :func:`results_lock` are kept out.
    * flock is per open file description and the descriptor is not inheritable (PEP 446), so
      processes started with exec (Ray's workers, ``subprocess``) do not hold it; a child
      made with a bare ``os.fork`` would keep it alive after the driver dies.
    * Shared filesystems: on local disks and Linux NFS clients (>= 2.6.12, where flock is
      emulated with NFS byte-range locks) the lock holds across hosts. Some network
      filesystems (older NFS, CIFS/SMB and FUSE mounts without lock support, Lustre without
      ``-o flock``) either fail the call - then the run goes ahead with a warning and no
      guarantee - or lock only on the local host, so two drivers on two hosts would both get
      it. Give each driver its own results directory there.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import SweeperInputError

LOCK_NAME = ".sweeper.lock"
log = logging.getLogger("sweeper")
# errno values of a filesystem that has no flock (as opposed to a lock someone holds).
UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def holder_record(command: str | None = None) -> dict[str, Any]:
    """Who this process is, as written into the lock file."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join(sys.argv),
    }


def _read_record(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    if not data.strip():
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return {"unreadable": data[:200].decode(errors="replace")}
    return record if isinstance(record, dict) else {"unreadable": repr(record)[:200]}


def _describe(record: dict[str, Any] | None) -> str:
    if record is None:
        return "a process that has not written its details yet"
    if "unreadable" in record:
        return f"an unknown process (the lock file holds {record['unreadable']!r})"
    text = f"pid {record.get('pid')} on host {record.get('host')}, started {record.get('started')}"
    return text + (f", command: {record['command']}" if record.get("command") else "")


def _pid_running(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale_warning(path: Path, record: dict[str, Any]) -> str:
    pid, host = record.get("pid"), record.get("host")
    if "unreadable" in record:
        why = "an unreadable record was left in it"
    elif host != socket.gethostname():
        why = (f"it names pid {pid} on another host, {host}: that run has ended, unless this "
               "filesystem's locks do not reach across hosts (see sweeper.adapters.lock)")
    elif _pid_running(pid):
        why = f"it names pid {pid}, which is running but does not hold the lock (pid reused)"
    else:
        why = f"pid {pid} is not running: that run crashed or was killed"
    return (f"taking over {path}, left by {_describe(record)}; {why}. Its finished trials are "
            "kept; `sweeper run --resume` skips them")


@contextlib.contextmanager
def results_lock(out: str | Path, command: str | None = None, wait_s: float = 0.0
                 ) -> Iterator[dict[str, Any] | None]:
    """Hold ``<out>/.sweeper.lock`` for the duration of the ``with`` block.

    Args:
        out: the results directory (created if missing).
        command: the command line to record (default: this process's ``sys.argv``).
        wait_s: how long to wait for another holder to finish (saying so once, naming it)
            before giving up; 0 gives up at once.

    Yields:
        The record left by a previous holder that ended without releasing (a crash), or None.

    Raises:
        SweeperInputError: another process holds the lock; the message names it (pid, host,
            start time, command) and the lock file.

    Example:
        >>> with results_lock("results/quickstart"):
        ...     pass  # run the sweep; a second `sweeper run` on the directory exits 2
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise SweeperInputError(f"cannot create the lock file in results directory "
                                f"{str(out)!r}: {exc}") from None
    locked = False
    try:
        deadline, said = time.monotonic() + wait_s, False
        while not locked:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f" (waited {wait_s:g} s)" if wait_s else ""
                    raise SweeperInputError(
                        f"results directory {str(out)!r} is in use by "
                        f"{_describe(_waited_record(fd))} (lock file {path}){waited}; wait for "
                        "it to finish or choose another --out") from None
                if not said:
                    log.warning("results directory %s is in use by %s; waiting up to %g s "
                                "for it to finish", out, _describe(_waited_record(fd)), wait_s)
                    said = True
                time.sleep(0.2)
            except OSError as exc:
                if exc.errno not in UNSUPPORTED:
                    raise
                log.warning("cannot lock %s (%s): this filesystem has no flock, so nothing "
                            "stops a second sweeper run on this directory", path, exc.strerror)
                break
        previous = _read_record(fd) if locked else None
        if previous is not None:
            log.warning(_stale_warning(path, previous))
        if locked:
            _write_record(fd, holder_record(command))
        yield previous
    finally:
        if locked:
            with contextlib.suppress(OSError):  # a full disk must not hide the run's error
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _waited_record(fd: int, wait_s: float = 1.0) -> dict[str, Any] | None:
    """The holder's record; a holder that has just locked may not have written it yet."""
    deadline = time.monotonic() + wait_s
    record = _read_record(fd)
    while record is None and time.monotonic() < deadline:
        time.sleep(0.05)
        record = _read_record(fd)
    return record


def _write_record(fd: int, record: dict[str, Any]) -> None:
    data = (json.dumps(record) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)  # one write: a reader sees nothing or all of it
    os.fsync(fd)
