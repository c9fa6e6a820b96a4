"""Parts are verified, not trusted; a part that cannot be written fails its trial cleanly.

Damaged parts are made the ways they happen (cut short, emptied, copied over another
trial's, rows lost) and read by the real commands; a full disk is a real tmpfs of a few
pages (this suite runs as root, as CI does), else a real RLIMIT_FSIZE."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import SMOKE_SPACE, run_cli

from sweeper.adapters.parquet_sink import CORRUPT, ParquetSink, part_problem
from sweeper.space import validate_space

ROOT = Path(__file__).resolve().parents[1]
TINY = {"name": "tiny", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8, "seq_len": 30,
        "axes": {"recurrent_scale": {"linspace": [0.5, 2.5, 5]},
                 "input_scale": [0.5, 1.0, 1.5], "seed": [0, 1]},
        "vectorize": ["recurrent_scale", "seed"], "metrics": ["lyapunov"]}
N_TRIALS, N_POINTS = 3, 30  # one trial per input scale, 5 gains x 2 seeds each


def _sweep(base: Path, space: dict = TINY) -> tuple[Path, Path, str]:
    """Run ``space`` on the in-process executor into ``base/out``; returns (space file, out,
    tracking URI)."""
    path = base / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out, uri = base / "out", f"sqlite:///{base / 'mlflow.db'}"
    run_cli("run", path, "--executor", "local", "--out", out, "--tracking-uri", uri,
            process=True, check=True)
    return path, out, uri


def _parts(out: Path) -> list[Path]:
    return sorted((out / "points").glob("part-*.parquet"))


def _loosen(out: Path, space: dict = TINY) -> list[Path]:
    """The sweep as `run` leaves it before its `aggregate` compacts it: one part per trial,
    each copied out of the compacted file (``materialize``), which is then deleted."""
    sink = ParquetSink(out)
    for trial in validate_space(space).trials():
        sink.materialize(trial.trial_id)
    for compacted in (out / "points").glob("compact-*.parquet"):
        compacted.unlink()
    return _parts(out)


# --- one part at a time: what counts as damaged, and what `completed` does with it --------

def _write(sink: ParquetSink, trial_id: str, n: int) -> Path:
    frame = pd.DataFrame({"sweep": "s", "trial_id": trial_id,
                          "point_id": [f"{trial_id}-{i}" for i in range(n)],
                          "lyapunov_max": [0.1 * i for i in range(n)], "status": "ok"})
    return Path(sink.write(trial_id, frame))


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


DAMAGE = {  # how a part gets damaged -> what the check must say
    "empty": (lambda p, other: _cut(p, 0), "not a readable Parquet file"),
    "cut short": (lambda p, other: _cut(p, p.stat().st_size // 2),
                  "not a readable Parquet file"),
    "footer cut": (lambda p, other: _cut(p, p.stat().st_size - 5),
                   "not a readable Parquet file"),
    "not parquet": (lambda p, other: p.write_text("x" * 500), "not a readable Parquet file"),
    "another trial's": (lambda p, other: shutil.copy(other, p), "trial_id column holds"),
    "rows lost": (lambda p, other: pd.read_parquet(p).head(2).to_parquet(p),
                  "2 rows, but the trial has 4 points"),
    "no trial_id": (lambda p, other: pd.read_parquet(p).drop(columns="trial_id").to_parquet(p),
                    "no trial_id column"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_part_is_named_then_set_aside_and_not_done(tmp_path, kind, caplog):
    sink = ParquetSink(tmp_path)
    damaged, intact = _write(sink, "aaaa", 4), _write(sink, "bbbb", 4)
    expected = {"aaaa": 4, "bbbb": 4}
    assert sink.recover(expected) == {"aaaa", "bbbb"}
    damage, says = DAMAGE[kind]
    damage(damaged, intact)
    bad_bytes = damaged.read_bytes()
    assert says in part_problem(damaged, "aaaa", 4)
    # Checking touches nothing ...
    verified, found = sink.check(expected)
    assert verified == {"bbbb"} and list(found) == [damaged] and damaged.exists()
    # ... `completed` (what `run` calls) moves the part aside, says so, and it is not done.
    with caplog.at_level("WARNING", logger="sweeper"):
        assert sink.recover(expected) == {"bbbb"}
    assert not damaged.exists() and intact.exists()
    (kept,) = (tmp_path / "points" / CORRUPT).iterdir()
    assert kept.read_bytes() == bad_bytes
    assert str(damaged) in caplog.text and says in caplog.text and str(kept) in caplog.text
    # Readers of the points directory do not descend into the set-aside copies.
    assert set(pd.read_parquet(tmp_path / "points").trial_id) == {"bbbb"}


def test_set_aside_copies_never_overwrite_each_other(tmp_path):
    sink = ParquetSink(tmp_path)
    contents = []
    for attempt in range(3):  # the same trial's part, damaged three times in one second
        part = _write(sink, "aaaa", 3)
        contents.append(f"damaged {attempt}".encode())
        part.write_bytes(contents[-1])
        assert sink.recover({"aaaa": 3}) == set()
    kept = sorted((tmp_path / "points" / CORRUPT).iterdir())
    assert len(kept) == 3 and all(p.name.startswith("part-aaaa.parquet.") for p in kept)
    assert sorted(p.read_bytes() for p in kept) == sorted(contents)


def test_parts_of_trials_not_expected_are_neither_checked_nor_moved(tmp_path):
    sink = ParquetSink(tmp_path)
    stale = _write(sink, "0123456789abcdef", 2)
    stale.write_bytes(b"")  # damaged, but not one of this sweep's trials
    _write(sink, "aaaa", 2)
    assert sink.recover({"aaaa": 2, "missing": 2}) == {"aaaa"}
    assert stale.exists() and not (tmp_path / "points" / CORRUPT).exists()


# --- damaged parts through the commands ---------------------------------------------------

@pytest.mark.parametrize("layout", ["parts", "compacted"])
def test_read_only_commands_refuse_a_damaged_file_and_move_nothing(smoke_sweep, layout):
    out = smoke_sweep  # compacted by the `aggregate` that ends `run`
    smoke = yaml.safe_load(SMOKE_SPACE.read_text())
    part = _loosen(out, smoke)[0] if layout == "parts" else \
        next((out / "points").glob("compact-*.parquet"))
    intact = part.read_bytes()
    _cut(part, 100)
    before = {p: p.read_bytes() for p in (out / "points").iterdir()}
    for args in (("query", "select count(*) from points", "--results", out),
                 ("aggregate", out, "--no-plots")):
        result = run_cli(*args, process=False)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        assert str(part) in result.stderr and "not a readable Parquet file" in result.stderr
        assert f"sweeper run FILE --out {out} --resume" in result.stderr
    assert {p: p.read_bytes() for p in (out / "points").iterdir()} == before
    # `show` reads only the region map; a damaged map is refused the same way.
    part.write_bytes(intact)
    assert run_cli("show", out, process=False).returncode == 0
    _cut(out / "region_map.parquet", 50)
    for args in (("show", out), ("query", "select 1", "--results", out)):
        result = run_cli(*args, process=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, args
        assert "region_map.parquet" in result.stderr and f"sweeper aggregate {out}" in \
            result.stderr


def test_resume_sets_damaged_parts_aside_and_computes_them_again(tmp_path):
    path, out, uri = _sweep(tmp_path)
    first = pd.read_parquet(out / "points").set_index("point_id").sort_index()
    cut, overwritten, intact = _loosen(out)
    _cut(cut, cut.stat().st_size // 2)
    shutil.copy(intact, overwritten)  # a copy over another trial's part: readable, wrong ids
    resumed = run_cli("run", path, "--executor", "local", "--out", out, "--tracking-uri", uri,
                      "--resume", process=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "2 trials run, 1 already done, 0 failed" in resumed.stdout
    for part, why in ((cut, "not a readable Parquet file"),
                      (overwritten, "its trial_id column holds")):
        assert f"damaged part {part} ({why}" in resumed.stderr
    assert len(list((out / "points" / CORRUPT).iterdir())) == 2
    again = pd.read_parquet(out / "points").set_index("point_id").sort_index()
    assert len(again) == N_POINTS and again.index.is_unique
    pd.testing.assert_series_equal(again.lyapunov_max, first.lyapunov_max)  # same values
    query = run_cli("query", "select count(*) as n from points", "--results", out, "--json",
                    process=False)
    assert query.returncode == 0 and json.loads(query.stdout) == [{"n": N_POINTS}]


# --- a part that cannot be written --------------------------------------------------------

WRITE_OVER_LIMIT = """
import pickle, resource, sys
import pandas as pd
from sweeper.adapters.parquet_sink import ParquetSink
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
frame = pd.DataFrame({"trial_id": "aaaa", "lyapunov_max": [i / 7 for i in range(20000)]})
try:
    ParquetSink(sys.argv[1]).write("aaaa", frame)
except OSError as exc:
    print(type(exc).__name__, exc.errno, exc)
    print(pickle.loads(pickle.dumps(exc)))  # Ray ships a worker's exception by pickle
"""


def test_a_part_over_the_file_size_limit_names_it_and_leaves_nothing(tmp_path):
    # CPython ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process.
    result = subprocess.run([sys.executable, "-c", WRITE_OVER_LIMIT, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    message = f"cannot write {tmp_path / 'points' / 'part-aaaa.parquet'}: File too large"
    assert result.stdout.splitlines() == [f"WriteError 27 {message}", message]
    assert list((tmp_path / "points").iterdir()) == []  # no part, no temporary file


def _limit_file_size():  # preexec_fn of the fallback: no file of the run may exceed 16 KB
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))


@contextmanager
def _full_disk(base: Path):
    """Where parts cannot be written: ``base/out/points`` as a tmpfs of 16 KB (as root), else
    a 16 KB file-size limit on the run, with tracking in an MLflow server of its own (sqlite
    in the run's process would hit the limit before a part does). Only the parts are on the
    small disk, so what fails is a part, never the run-id file or the sweep record written
    meanwhile. Yields (out, tracking URI, the run's preexec_fn, the system's words for the
    failure, a function that makes room)."""
    out = base / "out"
    points = out / "points"
    points.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(points)],
                             capture_output=True).returncode == 0
    if mounted:
        def make_room():
            subprocess.run(["mount", "-o", "remount,size=8m", str(points)], check=True)

        try:
            yield (out, f"sqlite:///{base / 'mlflow.db'}", None, "No space left on device",
                   make_room)
        finally:
            subprocess.run(["umount", "-l", str(points)], check=True)
        return
    from sweeper.adapters.mlflow_ui import start_ui, stop_ui

    (base / "mlflow.db").touch()
    server, url = start_ui(f"sqlite:///{base / 'mlflow.db'}")
    try:
        # The limit is on the first run only: the resumed run has room without more ado.
        yield out, url, _limit_file_size, "File too large", lambda: None
    finally:
        stop_ui(server)


def test_full_disk_fails_the_trials_naming_each_part_and_resume_finishes(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(TINY))
    trials = validate_space(TINY).trials()
    with _full_disk(tmp_path) as (out, uri, limit, why, make_room):
        full = run_cli("run", path, "--executor", "local", "--out", out, "--tracking-uri",
                       uri, preexec_fn=limit, process=True)
        assert full.returncode == 1, full.stderr[-3000:]
        assert "Traceback" not in full.stderr
        for trial in trials:
            assert f"cannot write {ParquetSink(out).materialize(trial.trial_id)}: {why}" in \
                full.stderr
        assert f"0 trials run, 0 already done, {N_TRIALS} failed" in full.stdout
        assert list((out / "points").iterdir()) == []  # no partial part, no temporary file
        assert not list(out.rglob("*.tmp"))
        make_room()
        resumed = run_cli("run", path, "--executor", "local", "--out", out,
                          "--tracking-uri", uri, "--resume", process=True)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"{N_TRIALS} trials run, 0 already done, 0 failed" in resumed.stdout
        points = pd.read_parquet(out / "points")
        assert len(points) == N_POINTS and points.point_id.is_unique
        assert (out / "region_map.parquet").exists()


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_checking_a_thousand_parts_keeps_no_memory(tmp_path):
    # The scan checks each part's footer in reader threads. Looked at there, a footer's
    # schema object kept ~100 KB alive after its file was closed (the pyarrow of
    # constraints.txt): ~110 MB over these 1,000 parts of the declared columns, 500 MB over
    # a 5,000-trial sweep's. Allowed growth of the resident set: 30 MB (measured: < 5 MB).
    import os

    from sweeper.schema import part_columns

    def resident_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf(
            "SC_PAGE_SIZE") / 2**20

    sink = ParquetSink(tmp_path / "out")
    expected = {}
    for i in range(1000):
        trial_id = f"{i:016x}"
        frame = pd.DataFrame({c.name: [None] * 20 for c in part_columns()})
        frame["trial_id"] = trial_id
        frame["point_id"] = [f"{trial_id}-{k}" for k in range(20)]
        sink.write(trial_id, frame)
        expected[trial_id] = 20
    sink.scan(dict(list(expected.items())[:20]))  # imports and the first threads
    before = resident_mb()
    scan = sink.scan(expected)
    assert len(scan.sources) == 1000 and not scan.damaged
    assert resident_mb() - before < 30
