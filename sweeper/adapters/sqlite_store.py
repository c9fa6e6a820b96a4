"""A sqlite MLflow tracking store (``sqlite:///file.db``): its file, the checks before a sweep
writes to it, and the preparation that makes it ready for the sweep's driver.

:func:`prepare` does two things to a store, and nothing to any other URI:

- a store that does not exist yet is created as a copy of an empty store kept in the user's
  cache (:func:`create_store`), instead of by MLflow's schema migrations;
- the store is put in write-ahead-log mode, with commits synced at checkpoints only
  (:func:`use_write_ahead_log`).

MLflow and SQLAlchemy are imported only by :func:`prepare`; the file checks need neither.

Example::

    check_writable("sqlite:///mlflow.db")  # before the sweep: SweeperInputError if it cannot
    prepare("sqlite:///mlflow.db")         # before the first MlflowClient on it
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from ..errors import SweeperInputError

__all__ = ["SQLITE", "absolute_tracking_uri", "check_writable", "create_store", "prepare",
           "sqlite_file", "use_write_ahead_log"]

log = logging.getLogger("sweeper")
#: The prefix of a sqlite store's URI; what follows is the database file.
SQLITE = "sqlite:///"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    return Path(uri[len(SQLITE):]) if uri.startswith(SQLITE) else None


def absolute_tracking_uri(uri: str) -> str:
    """A relative ``sqlite:///file.db`` made absolute: the driver changes directory while
    Tune runs, and later commands must find the same file. Other URIs are returned as they
    are."""
    path = sqlite_file(uri)
    if path is not None and not path.is_absolute():
        return SQLITE + str(path.resolve())
    return uri


def check_writable(tracking_uri: str) -> None:
    """Refuse, before a sweep starts, a sqlite store that cannot take its runs: a path that is
    a directory, a folder where no file can be created, a read-only file, or a damaged
    database (a truncated file, or one that is not sqlite). Other stores are left to their
    client (an HTTP server: :func:`sweeper.adapters.mlflow_tracker.check_reachable`).

    Raises:
        SweeperInputError: naming the store and what to do; for a damaged one, how to go on
            without losing anything (the parts are the record of the sweep).
    """
    path = sqlite_file(absolute_tracking_uri(tracking_uri))
    if path is None:
        return
    where = f"--tracking-uri {tracking_uri}"
    if path.exists() and not path.is_file():
        raise SweeperInputError(f"{where}: {path} is not a file (a sqlite database file is "
                                "needed, e.g. sqlite:///mlflow.db)")
    if not path.exists():
        try:  # a real file in the folder: permissions alone miss /proc and read-only mounts
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".sweeper-probe-", dir=path.parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise SweeperInputError(f"{where}: cannot create {path}: {exc.strerror or exc}; "
                                    "choose a folder this user can write") from None
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True,
                                                timeout=30)) as con:
            (verdict,) = con.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed ({verdict})")
            con.execute("BEGIN IMMEDIATE")  # the write lock: a read-only file fails here
            con.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "malformed" in text or "not a database" in text:
            raise SweeperInputError(
                f"{where}: the tracking store {path} is damaged ({text}). The points are "
                f"safe in the results directory: move the store aside (mv {path} "
                f"{path}.damaged) and run the same command with --resume, which logs the "
                "finished trials' runs again from their parts without computing them") from None
        raise SweeperInputError(f"{where}: cannot write {path}: {text}") from None
    except OSError as exc:
        raise SweeperInputError(f"{where}: cannot open {path}: {exc}") from None


def prepare(tracking_uri: str) -> None:
    """Make a sqlite store ready for a sweep's driver, before the first MLflow client opens
    it: created if missing (:func:`create_store`), then in write-ahead-log mode
    (:func:`use_write_ahead_log`). Other URIs are left alone."""
    create_store(tracking_uri)
    use_write_ahead_log(tracking_uri)


def create_store(tracking_uri: str) -> None:
    """Create a sqlite store that does not exist yet as a copy of an empty one.

    MLflow builds a new store by running every schema migration since its first version, a
    cost paid on the driver's critical path at the start of a first sweep. Instead the empty
    store is built that way once per MLflow and SQLAlchemy version, kept in the user's cache
    (``$XDG_CACHE_HOME/rnn-sweeper``, else ``~/.cache/rnn-sweeper``), and copied; only the
    path of MLflow's "Default" experiment is rewritten, to what MLflow would have given it
    here. The copy equals the store MLflow builds. Nothing happens for other URIs, for an
    existing file, or when the cache or the target cannot be written (MLflow then builds the
    store itself).
    """
    target = sqlite_file(tracking_uri)
    if target is None or target.exists():
        return
    try:
        template, built_in = _empty_store()
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_new(template, target, built_in)
    except OSError as exc:  # a read-only cache or target: MLflow builds the store itself
        log.debug("no copy of an empty MLflow store (%s)", exc)


def _empty_store() -> tuple[Path, str]:
    """The cached empty store for this MLflow (built on first use) and the directory it was
    built in (its Default experiment's path starts there)."""
    import mlflow
    import sqlalchemy

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnn-sweeper"
    stem = f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}"
    template, origin = cache / f"{stem}.db", cache / f"{stem}.origin"
    if not (template.exists() and origin.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        built = cache / f".{stem}.{os.getpid()}.db"
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"{SQLITE}{built}")
        client.search_experiments(max_results=1)  # the store exists, migrated, once this answers
        # MLflow keeps the store (and its connection pool) per URI; no public call closes it,
        # and the file is about to be renamed.
        client._tracking_client.store.engine.dispose()
        origin.write_text(str(Path.cwd()))
        os.replace(built, template)
    return template, origin.read_text()


def _copy_new(template: Path, target: Path, built_in: str) -> None:
    """Copy ``template`` to ``target`` unless ``target`` appeared meanwhile (another driver
    made it): copied to a hidden name, then linked into place, which fails if it exists."""
    hidden = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(template, hidden)
        with contextlib.closing(sqlite3.connect(hidden)) as con, con:
            (location,) = con.execute("SELECT artifact_location FROM experiments "
                                      "WHERE experiment_id = 0").fetchone()
            if location.startswith(built_in):
                con.execute("UPDATE experiments SET artifact_location = ? "
                            "WHERE experiment_id = 0",
                            (str(Path.cwd()) + location[len(built_in):],))
        try:
            os.link(hidden, target)
        except FileExistsError:
            pass
    finally:
        hidden.unlink(missing_ok=True)


def use_write_ahead_log(tracking_uri: str) -> None:
    """Put a sqlite store in write-ahead-log mode, with commits synced at checkpoints only.

    Each trial is a few small transactions. In sqlite's default mode every commit rewrites a
    rollback journal and syncs twice, and a reader (``sweeper ui`` during a sweep) blocks the
    writer; with the log a commit appends, and a reader sees the last commit without
    blocking. The mode is kept in the file, for every later opener; the sync setting belongs
    to each connection, so every SQLAlchemy engine of this process applies it to the sqlite
    connections it opens in WAL mode (:func:`_sync_at_checkpoints`). A machine that loses
    power may lose the last commits, never the store; the parts stay the record, and
    ``--resume`` logs what is missing. Other URIs are left alone.
    """
    path = sqlite_file(tracking_uri)
    if path is None:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("PRAGMA journal_mode=WAL")
    if not event.contains(Engine, "connect", _sync_at_checkpoints):
        event.listen(Engine, "connect", _sync_at_checkpoints)


def _sync_at_checkpoints(dbapi_connection, _record) -> None:
    """On each new sqlite connection in WAL mode: sync at checkpoints, not at each commit."""
    if type(dbapi_connection).__module__.split(".")[0] not in ("sqlite3", "pysqlite2"):
        return
    cursor = dbapi_connection.cursor()
    try:
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
