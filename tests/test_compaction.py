"""Compaction gathers a sweep's parts into one file, and every point stays read exactly once:
after compaction, after a crash at each point of it (the files a crash leaves are made by
putting back what compaction deleted), after a trial is written again, after relabelling,
and through every reader (`labelled_points`, `query`, `recover`, `read(materialize(...))`).

Real sweeps of a tiny space (its real parts, written by the sink the sweep uses, without
Ray or MLflow), real Parquet files, real DuckDB."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from sweeper.adapters.parquet_sink import CORRUPT, ParquetSink, read_rows
from sweeper.adapters.query import query
from sweeper.adapters.results import (
    aggregate,
    labelled_points,
    read_record,
    sweep_sources,
    write_record,
)
from sweeper.errors import SweeperInputError
from sweeper.regions import RegionRules, classify
from sweeper.space import validate_space
from sweeper.sweep import trial_frame

TINY = {"name": "tiny", "task": "noise", "cell": "rnn_tanh", "hidden_size": 8, "seq_len": 30,
        "axes": {"recurrent_scale": {"linspace": [0.5, 2.5, 5]},
                 "input_scale": [0.5, 1.0, 1.5, 2.0], "seed": [0, 1]},
        "vectorize": ["recurrent_scale", "seed"], "metrics": ["lyapunov"]}
N_TRIALS, N_POINTS = 4, 40  # one trial per input scale, 5 gains x 2 seeds each
STALE = "0123456789abcdef"  # a trial of an earlier version of the search-space file
COUNT = "select count(*) as n, count(distinct point_id) as ids from points"


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    """A finished sweep, not compacted: one part per trial and the sweep record."""
    out = tmp_path_factory.mktemp("parts") / "out"
    space = validate_space(TINY)
    sink = ParquetSink(out)
    for trial in space.trials():
        frame = trial_frame(space, trial, "cpu")
        frame.insert(3, "mlflow_run_id", pd.Series([f"run-{trial.trial_id}"] * len(frame),
                                                   dtype="str"))
        sink.write(trial.trial_id, frame)
    write_record(out, space, "sqlite:///unused.db")
    return out


@pytest.fixture
def out(parts, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(parts, copy)
    return copy


def _space(out: Path):
    return validate_space(read_record(out)["space"])


def _expected(out: Path) -> dict[str, int]:
    return {t.trial_id: t.n_points for t in _space(out).trials()}


def _files(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "points").iterdir() if not p.name.startswith("."))


def _by_point(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("point_id").reset_index(drop=True)


def _parts_frame(out: Path) -> pd.DataFrame:
    return _by_point(pd.concat([pd.read_parquet(p) for p in
                                sorted((out / "points").glob("part-*.parquet"))]))


def _once_everywhere(out: Path, reference: pd.DataFrame) -> None:
    """Every reader sees each point of ``reference`` once, with its values."""
    points, _ = labelled_points(out, _space(out))
    pd.testing.assert_frame_equal(points, reference)
    assert query(out, COUNT).to_dict("records") == [{"n": N_POINTS, "ids": N_POINTS}]
    lazy = query(out, "select point_id, lyapunov_max, mlflow_run_id from points "
                 "order by point_id", allow_files=True)
    pd.testing.assert_frame_equal(lazy, reference[lazy.columns.tolist()],
                                  check_dtype=False)
    assert ParquetSink(out).recover(_expected(out)) == set(_expected(out))


def _compact(out: Path) -> None:
    """What `aggregate` does to the points (the map and plots are tested elsewhere)."""
    labelled_points(out, _space(out), compact=True)


def test_compaction_keeps_every_row_once_in_one_file(out):
    before = _parts_frame(out)
    assert len(_files(out)) == N_TRIALS
    result = aggregate(out, plots=False)
    assert _files(out) == ["compact-000001.parquet"]
    assert result.relabelled_parts == 0 and result.region_map.n.sum() == N_POINTS
    after = _by_point(pd.read_parquet(out / "points" / "compact-000001.parquet"))
    pd.testing.assert_frame_equal(after, before)  # every row, every value, every dtype
    _once_everywhere(out, before)
    assert set(sweep_sources(out, _space(out)).values()) == {
        (out / "points" / "compact-000001.parquet").resolve()}
    # Compacting a compacted sweep changes nothing: no new generation.
    _compact(out)
    assert _files(out) == ["compact-000001.parquet"]


def test_a_compacted_trial_reads_back_from_its_location(out):
    before = _parts_frame(out)
    _compact(out)
    sink = ParquetSink(out)
    trial_id = sorted(_expected(out))[1]
    location = sink.materialize(trial_id)
    rows = sink.read(location)
    pd.testing.assert_frame_equal(_by_point(rows), before[before.trial_id == trial_id]
                                  .reset_index(drop=True))
    assert Path(location).name == f"part-{trial_id}.parquet"  # one trial's file, for a tracker
    _once_everywhere(out, before)  # the copy out of the compacted file counts once


def test_a_part_written_after_compaction_wins(out):
    before = _parts_frame(out)
    _compact(out)
    sink = ParquetSink(out)
    trial_id = sorted(_expected(out))[2]
    # What the driver does when it logs a trial whose rows lack its run id.
    rows = sink.read(sink.materialize(trial_id)).assign(mlflow_run_id="run-new")
    sink.write(trial_id, rows)
    newer = before.assign(mlflow_run_id=before.mlflow_run_id.where(
        before.trial_id != trial_id, "run-new"))
    _once_everywhere(out, newer)
    _compact(out)
    assert _files(out) == ["compact-000002.parquet"]
    _once_everywhere(out, newer)


def _crash_states():
    """Which files a crash put back: the names compaction deleted that are still there."""
    return {"after writing, before deleting": ("part", "compacted"),
            "parts deleted, older generation not": ("compacted",),
            "older generation deleted, parts not": ("part",)}


@pytest.mark.parametrize("state", _crash_states())
def test_a_crash_during_compaction_reads_each_point_once(out, state, tmp_path):
    before = _parts_frame(out)
    _compact(out)  # generation 1
    sink = ParquetSink(out)
    changed = sorted(_expected(out))[:2]
    for trial_id in changed:  # two trials written again since (run ids stamped)
        sink.write(trial_id, sink.read(sink.materialize(trial_id)).assign(mlflow_run_id="run-2"))
    newer = before.assign(mlflow_run_id=before.mlflow_run_id.where(
        ~before.trial_id.isin(changed), "run-2"))
    saved = tmp_path / "saved"
    shutil.copytree(out / "points", saved)
    _compact(out)  # generation 2 holds everything; parts and generation 1 are gone
    assert _files(out) == ["compact-000002.parquet"]
    kinds = _crash_states()[state]
    for path in saved.iterdir():
        kind = "part" if path.name.startswith("part-") else "compacted"
        if kind in kinds and path.suffix == ".parquet":
            shutil.copy(path, out / "points" / path.name)
    assert len(_files(out)) > 1
    _once_everywhere(out, newer)
    _compact(out)  # the next compaction tidies up
    assert _files(out) == ["compact-000003.parquet"]
    _once_everywhere(out, newer)


def test_a_crash_before_the_first_compaction_deletes_anything(out, tmp_path):
    before = _parts_frame(out)
    saved = tmp_path / "saved"
    shutil.copytree(out / "points", saved)
    _compact(out)
    for part in saved.glob("part-*.parquet"):
        shutil.copy(part, out / "points" / part.name)
    assert len(_files(out)) == N_TRIALS + 1
    _once_everywhere(out, before)


def test_relabelling_a_compacted_sweep(out):
    _compact(out)
    before = labelled_points(out, _space(out))[0]
    assert (before.region == "chaotic").any()
    raw = dict(read_record(out)["space"], regions={"epsilon": 10.0})  # nothing is chaotic
    write_record(out, validate_space(raw), "sqlite:///unused.db")
    result = aggregate(out, plots=False)
    differs = classify(before, RegionRules(epsilon=10.0)).to_numpy() != before.region
    assert result.relabelled_parts == len(set(before.trial_id[differs])) > 0
    assert _files(out) == ["compact-000002.parquet"]
    stored = _by_point(pd.read_parquet(out / "points"))
    assert stored.region.tolist() == classify(stored, RegionRules(epsilon=10.0)).tolist()
    assert not (stored.region == "chaotic").any()
    pd.testing.assert_frame_equal(stored.drop(columns="region"),
                                  before.drop(columns="region"))  # nothing else changed
    assert aggregate(out, plots=False).relabelled_parts == 0


def test_relabelling_without_compacting_writes_parts_that_win(out):
    _compact(out)
    raw = dict(read_record(out)["space"], regions={"epsilon": 10.0})
    write_record(out, validate_space(raw), "sqlite:///unused.db")
    points, relabelled = labelled_points(out, _space(out))
    assert relabelled > 0 and len(_files(out)) == relabelled + 1
    again, none = labelled_points(out, _space(out))
    assert none == 0
    pd.testing.assert_frame_equal(again, points)
    assert query(out, COUNT).to_dict("records") == [{"n": N_POINTS, "ids": N_POINTS}]
    assert query(out, "select count(*) as n from points where region = 'chaotic'").n[0] == 0


def test_compacting_with_rows_replaced_writes_them_once_in_their_stead(out):
    before = _parts_frame(out)
    sink = ParquetSink(out)
    trial_id = sorted(_expected(out))[1]
    read = read_rows(sweep_sources(out, _space(out)))
    replaced = before[before.trial_id == trial_id].assign(mlflow_run_id="run-replaced")
    assert sink.compact(read, replacing={trial_id: replaced}).name == "compact-000001.parquet"
    assert _files(out) == ["compact-000001.parquet"]  # the trial's old part went with the rest
    _once_everywhere(out, before.assign(mlflow_run_id=before.mlflow_run_id.where(
        before.trial_id != trial_id, "run-replaced")))


def test_compacting_refuses_to_replace_a_trial_it_was_not_given(out):
    # Without the rows as read, which part the replacement supersedes is unknown: a newer
    # part written since must survive, so there is nothing compaction could safely delete.
    trial_id = sorted(_expected(out))[0]
    frame = _parts_frame(out).query("trial_id == @trial_id")
    with pytest.raises(ValueError, match=trial_id):
        ParquetSink(out).compact(replacing={trial_id: frame})
    assert len(_files(out)) == N_TRIALS


def test_an_unreadable_compacted_file_is_refused_then_set_aside(out, caplog):
    _compact(out)
    compacted = out / "points" / "compact-000001.parquet"
    compacted.write_bytes(compacted.read_bytes()[:200])
    damaged = compacted.read_bytes()
    for read in (lambda: query(out, COUNT), lambda: labelled_points(out, _space(out)),
                 lambda: aggregate(out, plots=False)):
        with pytest.raises(SweeperInputError) as refused:
            read()
        message = str(refused.value)
        assert str(compacted) in message and "not a readable Parquet file" in message
        assert f"sweeper run FILE --out {out} --resume" in message
    assert compacted.read_bytes() == damaged  # the read-only commands moved nothing
    sink = ParquetSink(out)
    with caplog.at_level("WARNING", logger="sweeper"):
        assert sink.recover(_expected(out)) == set()  # every trial is computed again
    (kept,) = (out / "points" / CORRUPT).iterdir()
    assert kept.read_bytes() == damaged and not compacted.exists()
    assert str(compacted) in caplog.text and str(kept) in caplog.text


def test_a_damaged_part_uncovers_the_compacted_copy_behind_it(out, caplog):
    before = _parts_frame(out)
    _compact(out)
    sink = ParquetSink(out)
    trial_id = sorted(_expected(out))[0]
    part = Path(sink.materialize(trial_id))  # a part again, in front of the compacted rows
    part.write_bytes(b"")
    assert trial_id not in sink.check(_expected(out))[0]
    with caplog.at_level("WARNING", logger="sweeper"):
        assert sink.recover(_expected(out)) == set(_expected(out))
    assert f"damaged part {part}" in caplog.text and not part.exists()
    _once_everywhere(out, before)


def test_a_compacted_trial_with_missing_rows_is_not_completed(out):
    before = _parts_frame(out)
    _compact(out)
    sink = ParquetSink(out)
    trial_id = sorted(_expected(out))[3]
    table = pq.read_table(out / "points" / "compact-000001.parquet")
    short = table.slice(0, table.num_rows - 1)  # sorted by trial: the last trial loses a row
    assert short.column("trial_id")[-1].as_py() == trial_id
    pq.write_table(short, out / "points" / "compact-000002.parquet")
    assert sink.check(_expected(out)) == (set(_expected(out)) - {trial_id}, {})
    assert query(out, COUNT).n[0] == N_POINTS - N_POINTS // N_TRIALS  # not read as finished
    # `run --resume` computes it again; its new part wins over the short copy.
    sink.write(trial_id, before[before.trial_id == trial_id])
    _once_everywhere(out, before)


def test_rows_of_trials_not_in_the_space_survive_but_are_not_the_sweeps(out):
    sweep = _parts_frame(out)
    stale = sweep.head(3).assign(trial_id=STALE)
    ParquetSink(out).write(STALE, stale)
    everything = _parts_frame(out)
    _compact(out)
    assert _files(out) == ["compact-000001.parquet"]
    pd.testing.assert_frame_equal(_by_point(pd.read_parquet(out / "points")), everything)
    _once_everywhere(out, sweep)  # kept, but not read as the sweep's
    # A trial written again, then compacted again: the stale rows are carried along.
    trial_id = sorted(_expected(out))[0]
    ParquetSink(out).write(trial_id, sweep[sweep.trial_id == trial_id])
    _compact(out)
    assert _files(out) == ["compact-000002.parquet"]
    pd.testing.assert_frame_equal(_by_point(pd.read_parquet(out / "points")), everything)
    _once_everywhere(out, sweep)


def test_aggregate_can_leave_the_parts_alone(out):
    aggregate(out, plots=False, compact=False)
    assert len(_files(out)) == N_TRIALS and all(f.startswith("part-") for f in _files(out))


def test_a_compaction_killed_while_writing_leaves_a_temporary_that_a_later_one_removes(out):
    # A real leftover: a process killed (SIGKILL) half-way through writing the next compacted
    # file through atomic_write, as a killed `aggregate` leaves it. An hour later the next
    # compaction removes it; a young one (maybe a live write) stays.
    import os
    import subprocess
    import sys
    import time

    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys\n"
        "from sweeper.atomic import atomic_write\n"
        "def half(tmp):\n"
        "    open(tmp, 'wb').write(b'PAR1' + bytes(4096))\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_write({str(out / 'points' / 'compact-000009.parquet')!r}, half)\n")],
        capture_output=True, timeout=120)
    assert killed.returncode == -9
    (left,) = (out / "points").glob(".compact-000009.parquet.*.tmp")
    young = out / "points" / ".part-young.parquet.abc.tmp"
    young.write_bytes(b"being written")
    hour_ago = time.time() - 3700
    os.utime(left, (hour_ago, hour_ago))
    aggregate(out, plots=False)
    assert not left.exists() and young.exists()
    assert query(out, COUNT).iloc[0].tolist() == [N_POINTS, N_POINTS]


def _aggregate_process(out: Path):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "sweeper.cli", "aggregate", str(out),
                             "--no-plots"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_a_query_and_a_compaction_at_once_never_fail_the_query(out, monkeypatch):
    # The race, made deterministic: the query stops right after listing its files (a hook on
    # its loader), a real `sweeper aggregate` starts and would delete them while it waits.
    # Before, the query then failed ("Cannot open file part-...", or a false "damaged file").
    import threading
    import time

    from sweeper.adapters import query as sql

    listed, go_on = threading.Event(), threading.Event()
    load = sql._load_points

    def load_after_compaction_started(con, sources, *args, **kwargs):
        listed.set()
        assert go_on.wait(120)
        return load(con, sources, *args, **kwargs)

    monkeypatch.setattr(sql, "_load_points", load_after_compaction_started)
    answer = {}
    reader = threading.Thread(target=lambda: answer.setdefault("rows", query(out, COUNT)))
    reader.start()
    assert listed.wait(60)
    parts = sorted((out / "points").glob("part-*.parquet"))
    compaction = _aggregate_process(out)
    time.sleep(3)  # time enough to compact these 40 points, were it not waiting
    assert all(p.exists() for p in parts) and compaction.poll() is None
    go_on.set()
    reader.join(120)
    assert answer["rows"].iloc[0].tolist() == [N_POINTS, N_POINTS]
    _stdout, stderr = compaction.communicate(timeout=300)
    assert compaction.returncode == 0, stderr
    assert not any(p.exists() for p in parts)  # compacted once the query was done
    assert query(out, COUNT).iloc[0].tolist() == [N_POINTS, N_POINTS]


def test_writers_under_one_results_directory_take_turns(out):
    # While one command holds OUT/.sweeper.lock (here: this test, as a sweep or an aggregate
    # would), a `sweeper aggregate` waits with a message naming the holder and finishes once
    # it is free; a `sweeper run --resume` exits 2 naming it. Before, aggregate took no lock:
    # a resume or a second aggregate raced it into FileNotFoundError, leaving an empty file
    # in points/.corrupt/.
    import subprocess
    import sys
    import time

    from sweeper.adapters.lock import results_lock

    (out / "space.yaml").write_text(yaml.safe_dump(TINY))
    with results_lock(out, command="the test, holding the lock"):
        waiting = _aggregate_process(out)
        resumed = subprocess.run([sys.executable, "-m", "sweeper.cli", "run",
                                  str(out / "space.yaml"), "--out", str(out), "--resume",
                                  "--executor", "local", "--tracking-uri",
                                  f"sqlite:///{out / 'runs.db'}"],
                                 capture_output=True, text=True, timeout=300)
        time.sleep(2)
        assert waiting.poll() is None
    assert resumed.returncode == 2
    assert "is in use by" in resumed.stderr and "the test, holding the lock" in resumed.stderr
    _stdout, stderr = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, stderr
    assert "waiting up to 120 s" in stderr and "the test, holding the lock" in stderr
    assert not (out / "points" / CORRUPT).exists()
    assert query(out, COUNT).iloc[0].tolist() == [N_POINTS, N_POINTS]


def test_reading_in_batches_gives_the_rows_of_one_read(out, monkeypatch):
    # read_rows merges READ_BATCH files at a time (5,000 tables held at once were the driver's
    # peak): batches of one and of three files give, row for row, the table that one batch
    # of every file gives, and the same files as read; from parts alone, and from a
    # compacted file with a part written since.
    from sweeper.adapters import parquet_sink

    def batches_agree() -> None:
        sources = sweep_sources(out, _space(out))
        monkeypatch.setattr(parquet_sink, "READ_BATCH", 10_000)
        whole = read_rows(sources)
        assert whole.table.num_rows == N_POINTS
        for batch in (1, 3):
            monkeypatch.setattr(parquet_sink, "READ_BATCH", batch)
            batched = read_rows(sources)
            assert batched.table.equals(whole.table) and batched.files == whole.files

    batches_agree()
    _compact(out)
    ParquetSink(out).materialize(sorted(_expected(out))[1])
    assert len(_files(out)) == 2
    batches_agree()
