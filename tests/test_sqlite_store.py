"""A sqlite tracking store (sweeper.adapters.sqlite_store): a new store is a copy equal to the
one MLflow builds, a prepared store is in write-ahead-log mode with commits synced at
checkpoints, and a store that cannot take a sweep's runs is refused before anything starts."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from sweeper.adapters import sqlite_store
from sweeper.adapters.sqlite_store import (
    absolute_tracking_uri,
    check_writable,
    create_store,
    prepare,
    sqlite_file,
)
from sweeper.errors import SweeperInputError


def test_a_new_store_is_a_copy_equal_to_the_one_mlflow_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    built = MlflowClient(f"sqlite:///{here / 'built.db'}")  # MLflow's own migrations
    default = built.get_experiment("0")
    for name in ("first.db", "second.db"):  # the first builds the cached store, both copy it
        create_store(f"sqlite:///{here / name}")
        copied = MlflowClient(f"sqlite:///{here / name}").get_experiment("0")
        assert (copied.name, copied.artifact_location) == (default.name,
                                                           default.artifact_location)

    def schema(path):
        # Each table's DDL line by line, unordered: MLflow's own migrations emit a table's
        # constraints in an order that changes from one build to the next (a set's order).
        with sqlite3.connect(path) as con:
            tables = sorted((kind, name, sorted(line.strip(" ,") for line in
                                                (sql or "").splitlines()))
                            for kind, name, sql in con.execute(
                                "select type, name, sql from sqlite_master"))
            version = con.execute("select version_num from alembic_version").fetchall()
        return tables, version

    assert schema(here / "second.db") == schema(here / "built.db")
    existing = (here / "second.db").stat().st_mtime_ns
    create_store(f"sqlite:///{here / 'second.db'}")  # an existing store is left alone
    assert (here / "second.db").stat().st_mtime_ns == existing


def _synchronous(uri: str) -> int:
    """``PRAGMA synchronous`` of a new SQLAlchemy connection (1 NORMAL, 2 FULL)."""
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        engine.dispose()


def test_a_prepared_store_logs_ahead_and_syncs_at_checkpoints(tmp_path, monkeypatch):
    # The sync setting is applied by a listener on every engine of the process; removed
    # first, so that this test sees prepare() install it whatever ran before.
    if event.contains(Engine, "connect", sqlite_store._sync_at_checkpoints):
        event.remove(Engine, "connect", sqlite_store._sync_at_checkpoints)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    prepare(uri)
    with sqlite3.connect(tmp_path / "runs" / "mlflow.db") as con:  # kept in the file
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert _synchronous(uri) == 1
    assert _synchronous(f"sqlite:///{plain}") == 2  # a store in another mode keeps FULL
    MlflowClient(uri).search_experiments()  # and MLflow opens it as usual


def test_other_stores_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for uri in ("http://127.0.0.1:1", "postgresql://user@host/db", "sqlite://"):
        assert sqlite_file(uri) is None
        assert absolute_tracking_uri(uri) == uri
        prepare(uri)
        check_writable(uri)
    assert not list(tmp_path.iterdir())


def test_a_relative_store_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri("sqlite:///runs/mlflow.db") == (
        f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    assert sqlite_file("sqlite:////abs/mlflow.db").as_posix() == "/abs/mlflow.db"


@pytest.mark.parametrize(("content", "says"), [
    (None, "is not a file"),
    (b"not a database at all, but long enough to fill a header" * 20, "is damaged"),
], ids=["directory", "not-sqlite"])
def test_a_store_that_cannot_take_runs_is_refused(tmp_path, content, says):
    path = tmp_path / "mlflow.db"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(SweeperInputError, match=says):
        check_writable(f"sqlite:///{path}")


def test_a_new_or_healthy_store_is_accepted(tmp_path):
    check_writable(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")
    assert not (tmp_path / "new" / "mlflow.db").exists()  # checked, not created
    sqlite3.connect(tmp_path / "old.db").close()
    check_writable(f"sqlite:///{tmp_path / 'old.db'}")
