"""``run_cli`` (tests/helpers.py) in this process says what a process of its own says: the
same exit status, stdout and stderr for a success, an argparse refusal and an input error; an
uncaught exception shows as a process shows it; and the test process is left as it was."""

from __future__ import annotations

import logging
import os
import sys

import pytest
from helpers import ROOT, SMOKE_SPACE, run_cli

import sweeper.cli


@pytest.mark.parametrize(("args", "status", "says"), [
    (("validate", SMOKE_SPACE), 0, "valid. sweep 'smoke'"),
    (("measure", "--cell", "gru", "--hidden-size", "eight"), 2, "invalid int value"),
    (("show", ROOT / "search_spaces"), 2, "sweeper: error:"),  # no sweep there
], ids=["validate", "argparse", "input-error"])
def test_in_process_and_a_process_say_the_same(args, status, says):
    here = run_cli(*args, process=False)
    there = run_cli(*args, process=True)
    assert (here.returncode, here.stdout, here.stderr) == (
        there.returncode, there.stdout, there.stderr)
    assert here.returncode == status and says in here.stdout + here.stderr


def test_an_uncaught_exception_is_exit_1_with_its_traceback(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug in the command")

    monkeypatch.setitem(sweeper.cli.COMMANDS, "show", broken)
    result = run_cli("show", "anywhere", process=False)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: a bug in the command" in result.stderr


def test_the_test_process_is_left_as_it_was(tmp_path, monkeypatch):
    def meddling(args):
        os.chdir("/")
        os.environ["SWEEPER_MEDDLED"] = "1"
        logging.getLogger("sweeper").setLevel(logging.DEBUG)
        print("out")
        print("err", file=sys.stderr)
        return 3

    monkeypatch.setitem(sweeper.cli.COMMANDS, "show", meddling)
    before = (os.getcwd(), list(sys.argv), logging.getLogger("sweeper").level,
              list(logging.getLogger("sweeper").handlers))
    result = run_cli("show", "x", cwd=tmp_path, process=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert "SWEEPER_MEDDLED" not in os.environ
    assert (os.getcwd(), sys.argv, logging.getLogger("sweeper").level,
            logging.getLogger("sweeper").handlers) == before


@pytest.mark.parametrize("command", ["run", "ui", "submit"])
def test_commands_that_start_services_refuse_this_process(command):
    with pytest.raises(TypeError, match="process=True"):
        run_cli(command, "x", process=False)
