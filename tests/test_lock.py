"""One driver per results directory (sweeper.adapters.lock), with real processes: a holder in
another process refuses a second one by pid, a SIGKILLed holder's record is taken over with a
warning, and leaving the block frees the directory."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from helpers import lock_holder

from sweeper import SweeperInputError
from sweeper.adapters import lock as lock_module
from sweeper.adapters.lock import LOCK_NAME, results_lock

# Takes the lock, says so on stdout, and holds it until stdin closes (or it is killed).
HOLDER = textwrap.dedent("""
    import sys
    from sweeper.adapters.lock import results_lock
    with results_lock(sys.argv[1], command="holder under test"):
        print("locked", flush=True)
        sys.stdin.read()
    print("released", flush=True)
""")


@pytest.fixture
def holder(tmp_path):
    """A process holding the lock on tmp_path / "out"; stopped (by its pid) afterwards."""
    with lock_holder(HOLDER, tmp_path / "out") as process:
        yield process


def test_a_second_driver_is_refused_naming_the_holder(tmp_path, holder):
    with pytest.raises(SweeperInputError) as refused:
        with results_lock(tmp_path / "out"):
            pytest.fail("the lock was taken twice")
    message = str(refused.value)
    assert f"pid {holder.pid} on host {socket.gethostname()}" in message
    assert "holder under test" in message and LOCK_NAME in message and "--out" in message
    # Refused in this process too: flock is per open file, not per process.
    record = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
    assert record["pid"] == holder.pid and record["command"] == "holder under test"


def test_the_lock_is_free_once_the_holder_leaves_its_block(tmp_path, holder):
    holder.stdin.close()  # ends the holder's `with` block; the process then exits
    assert holder.stdout.readline().strip() == "released"
    assert holder.wait(timeout=30) == 0
    assert (tmp_path / "out" / LOCK_NAME).read_text() == ""  # released, not crashed
    with results_lock(tmp_path / "out") as previous:
        assert previous is None
        record = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid()
    # Released in this process too: another process can take it now.
    again = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path / "out")], input="",
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.split() == ["locked", "released"]


def test_a_killed_holder_is_taken_over_with_a_warning(tmp_path, holder, caplog):
    os.kill(holder.pid, signal.SIGKILL)  # no release step runs: its record stays
    holder.wait(timeout=30)
    assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        with results_lock(tmp_path / "out") as previous:
            assert previous["pid"] == holder.pid
    warning = caplog.text
    assert f"pid {holder.pid} is not running" in warning and "crashed or was killed" in warning
    assert "--resume" in warning


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError), results_lock(tmp_path / "out"):
        raise RuntimeError("the sweep failed")
    with results_lock(tmp_path / "out") as previous:
        assert previous is None  # an error inside is not a crash: no stale record


def test_a_filesystem_without_flock_runs_with_a_warning(tmp_path, monkeypatch, caplog):
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock_module.fcntl, "flock", no_flock)
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        with results_lock(tmp_path / "out") as previous:
            assert previous is None
    assert "has no flock" in caplog.text


def test_an_unusable_results_directory_is_an_input_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SweeperInputError, match="cannot create the lock file"):
        with results_lock(blocker / "out"):
            pass
