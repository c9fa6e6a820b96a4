"""Trials on Ray Tune: batches of sweep trials as Tune trials, on an embedded local Ray by
default or on a cluster (``address``). Workers write their Parquet parts themselves (results
storage must be a path every node sees); the driver's callback hands each finished part to
the tracker.

This module starts, joins and stops Ray; Tune's trainable and callback are in
:mod:`.tune_trials`, imported only when there is work."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SweeperInputError
from ..space import Trial
from ..sweep import Executor, TrialWork
from .storage import URI

log = logging.getLogger("sweeper")
TOKEN_HINT = ("if the cluster uses token authentication, export RAY_AUTH_MODE=token (the token "
              "is read from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (SweeperInputError) when nothing listens at a cluster address: Ray itself
    retries for minutes before it gives up. ``auto`` is left to Ray."""
    if address == "auto":
        return
    target = address.split("://", 1)[1] if "://" in address else address
    host, colon, port = target.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise SweeperInputError(f"--address: got {address!r}; expected HOST:PORT of the "
                                "cluster's head (e.g. 10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SweeperInputError(f"no Ray cluster answers at {address} ({exc}); start one with "
                                "`ray start --head` or correct --address") from None


def ray_address_file() -> Path:
    """Where ``ray start`` records the address of the Ray it leaves running on this machine
    (as Ray 2.x's ``get_ray_address_file``, without importing Ray)."""
    if "RAY_TMPDIR" in os.environ:
        temp = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        temp = os.environ["TMPDIR"]
    else:
        temp = "/tmp"
    return Path(temp) / "ray" / "ray_current_cluster"


def running_local_ray(timeout_s: float = 1.0) -> str | None:
    """The GCS address of a Ray that ``ray start`` left running on this machine when it
    answers, else None (none recorded, or a record left by a Ray that has stopped)."""
    try:
        address = ray_address_file().read_text().strip()
    except OSError:
        return None
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError:
        return None
    return address


#: Ray's logger that announces, on every start of a local Ray (and every join of one found
#: here), that token authentication is on.
TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"


class _TokenBanner(logging.Filter):
    """Drops Ray's "token authentication is enabled" notice, only that: authentication
    stays on, and Ray's warning that it is off still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for")


def quiet_token_banner() -> None:
    """Leave Ray's token-authentication notice out of the console (once per process)."""
    logger = logging.getLogger(TOKEN_LOGGER)
    if not any(isinstance(f, _TokenBanner) for f in logger.filters):
        logger.addFilter(_TokenBanner())


class ClusterWatch:
    """Watches, from a thread of the driver, that the Ray cluster's head still answers: a TCP
    connection to its GCS (``gcs``) every ``every_s`` seconds. After ``misses`` failures in a
    row the cluster is lost: ``lost`` names it (``name``, the address the user gave) and the
    main thread gets a KeyboardInterrupt, so the sweep winds down as after Ctrl-C (finished
    parts logged FINISHED, the other runs KILLED). Ray's own core worker gives up on the GCS
    only after 60 s, and then aborts the process with no clean-up; until then the main thread
    may be stuck in a call to the dead cluster and never see the interrupt. So when the
    interrupt has not come through ``grace_s`` later, ``on_stuck(name)`` is called from this
    thread: it cleans up what it can and ends the process."""

    def __init__(self, gcs: str, name: str | None = None, every_s: float = 1.0,
                 misses: int = 5, grace_s: float = 10.0,
                 on_stuck: Callable[[str], None] | None = None):
        self.gcs, self.name = gcs, name or gcs
        self.every_s, self.misses, self.grace_s = every_s, misses, grace_s
        self.on_stuck = on_stuck
        self.lost: str | None = None
        self.seen = threading.Event()  # set once the main thread has the interrupt
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _answers(self) -> bool:
        host, _, port = self.gcs.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=self.every_s).close()
            return True
        except (OSError, ValueError):
            return False

    def _watch(self) -> None:
        import _thread

        missed = 0
        while not self._stop.wait(self.every_s):
            missed = 0 if self._answers() else missed + 1
            if missed >= self.misses:
                self.lost = self.name
                log.warning("the Ray cluster at %s stopped answering (%d checks in %g s); "
                            "stopping the sweep", self.name, missed, missed * self.every_s)
                _thread.interrupt_main()
                if not self.seen.wait(self.grace_s) and self.on_stuck is not None:
                    self.on_stuck(self.name)
                return

    def __enter__(self) -> ClusterWatch:
        self._thread = threading.Thread(target=self._watch, name="sweeper-cluster-watch",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.seen.set()
        self._stop.set()


class RayTuneExecutor(Executor):
    """Trials as Ray Tune trials; behaves as :class:`~sweeper.sweep.LocalExecutor` does
    (the invariants of :class:`~sweeper.sweep.Executor`), with the trials in parallel.

    ``stop`` shuts down only a Ray this executor started (never one it found running, such
    as a notebook's); ``run`` starts Ray if ``start`` was not called.
    """

    def __init__(self, address: str | None = None, storage_path: str | Path | None = None,
                 resources: dict[str, float] | None = None, device: str | None = None):
        if address is not None:
            check_address(address)
        self.address = address
        # Tune's experiment state: a local directory (absolute), or the same object store as
        # the results (a URI, which Tune opens with pyarrow from the environment).
        self.storage_path = (None if storage_path is None else str(storage_path)
                             if URI.match(str(storage_path))
                             else str(Path(storage_path).resolve()))
        self.resources = resources or {"cpu": 1.0, "gpu": 0.0}
        self.device = device
        self._started = False
        #: A Ray left running on this machine by ``ray start``, joined instead of starting
        #: one (``address`` None and no ``RAY_ADDRESS``); None when there is none.
        self.local = (running_local_ray() if address is None
                      and not os.environ.get("RAY_ADDRESS") else None)
        if address is not None:
            self.starting = f"joining the Ray cluster at {address}"
        elif self.local is not None:
            self.starting = (f"joining the Ray running on this machine at {self.local} "
                             "(`ray start`; it stays up after the sweep)")
        else:
            self.starting = "starting Ray"
        #: The address of a cluster that stopped answering during ``run``, else None.
        self.lost: str | None = None
        #: Called from the watch's thread when the main thread stays stuck in Ray after the
        #: cluster was lost (see :class:`ClusterWatch`); it should end the process.
        self.on_stuck: Callable[[str], None] | None = None

    def start(self) -> None:
        """Start an embedded Ray, or join the cluster at ``address`` (once)."""
        import ray

        if ray.is_initialized():
            return
        address = self.address
        embedded = self.address is None and not os.environ.get("RAY_ADDRESS")
        if embedded and self.local is None:
            # An embedded Ray runs only Tune's trial actors, and Ray never hands its
            # prestarted task workers to actors: starting them spends CPU during start-up
            # for nothing (the user's own setting wins).
            os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
            address = "local"  # a new one, even where a stopped Ray left its address file
        # (With None, Ray itself joins the Ray that ``self.local`` found, taking its token.)
        quiet_token_banner()
        # Ray's core worker installs C++ handlers for SIGTERM (print a stack, abort); the
        # driver's own handlers (sweeper.interrupt) are put back so it can clean up.
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT,
                                                                   signal.SIGTERM)}
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            if address == "local":
                raise
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            where = self.address or address or os.environ.get("RAY_ADDRESS")
            raise SweeperInputError(f"cannot join the Ray cluster at {where}: {reason}; "
                                    f"{TOKEN_HINT}") from None
        finally:
            if threading.current_thread() is threading.main_thread():
                for signum, handler in handlers.items():
                    if handler is not None:
                        signal.signal(signum, handler)
        self._started = True

    def stop(self) -> None:
        """Shut down the Ray this executor started (never one it found running). After the
        cluster was lost there is nothing to shut down: Ray's shutdown would wait for it."""
        if self._started:
            import ray

            if self.lost is None:
                ray.shutdown()
            self._started = False

    @contextmanager
    def _watched(self) -> Iterator[None]:
        """Run the block under a :class:`ClusterWatch` of the cluster's GCS."""
        import ray

        try:
            address = ray.get_runtime_context().gcs_address
        except Exception:  # no address to watch: Ray's own failure handling applies
            yield
            return
        with ClusterWatch(address, self.address, on_stuck=self.on_stuck) as watch:
            try:
                yield
            finally:
                self.lost = watch.lost

    def run(self, work: TrialWork, trials: list[Trial],
            on_done: Callable[[Trial, str], None], on_error: Callable[[Trial, str], None],
            max_failures: int) -> None:
        if not trials:
            return
        self.start()
        from .tune_trials import fit  # Tune is slow to import: paid only when there is work

        with self._watched(), _working_directory(self._workdir()):
            fit(work, trials, on_done, on_error, max_failures=max_failures, device=self.device,
                resources=self.resources, storage_path=self.storage_path,
                slots=self.slots())

    def run_rounds(self, work: TrialWork, next_round: Callable[[], list[Trial]],
                   on_done: Callable[[Trial, str], None],
                   on_error: Callable[[Trial, str], None], max_failures: int) -> None:
        """All rounds in one Tuner (its workers stay up between rounds)."""
        self.start()
        from .tune_trials import fit_rounds

        with self._watched(), _working_directory(self._workdir()):
            fit_rounds(work, next_round, on_done, on_error, max_failures=max_failures,
                       device=self.device, resources=self.resources,
                       storage_path=self.storage_path, slots=self.slots())

    def _workdir(self) -> str | None:
        """Where the driver runs Tune from: its storage path, or with results on an object
        store, this machine's temporary directory (a directory that stays)."""
        if self.storage_path is not None and URI.match(self.storage_path):
            import tempfile

            return tempfile.gettempdir()
        return self.storage_path

    def slots(self) -> int:
        """How many trials the cluster runs at once with the trials' resources (at least 1)."""
        import ray

        total = ray.cluster_resources()
        fits = [total.get(key.upper(), 0.0) / need
                for key, need in self.resources.items() if need > 0]
        return max(1, int(min(fits, default=total.get("CPU", 1.0))))


@contextmanager
def _working_directory(path: str | None) -> Iterator[None]:
    """Run from ``path`` (made if missing), then go back. Tune resolves paths against the
    working directory at the end of fit(), and a Ray job's unpacked working_dir can be gone
    by then, so the executor runs Tune from its (absolute) storage path; the way back is
    skipped when the directory it came from is gone."""
    try:
        here = os.getcwd()
    except OSError:
        here = None
    if path is not None:
        os.makedirs(path, exist_ok=True)
        os.chdir(path)
    try:
        yield
    finally:
        if here is not None:
            try:
                os.chdir(here)
            except OSError:
                pass
