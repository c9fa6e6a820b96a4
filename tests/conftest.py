"""Hypothesis profiles, and the finished smoke sweep the command tests read.

Hypothesis: CI (CI=true) runs derandomized: the same examples on every run, so a red build is
reproducible and not a draw of luck; locally the examples vary from run to run, which is how
new failures are found. HYPOTHESIS_PROFILE=ci forces the CI profile locally."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# No deadline: examples call the CLI and torch, whose first call in a process is slow. Both
# start from Hypothesis's own defaults: recent versions already switch to a derandomized
# profile when they see CI, older ones (the test extra allows >= 6.100) do not.
BASE = settings.get_profile("default")
settings.register_profile("ci", BASE, derandomize=True, database=None, deadline=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", BASE, derandomize=False, deadline=None, print_blob=True)


def _profile() -> str:
    chosen = os.environ.get("HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    ci = os.environ.get("CI", "").strip().lower()
    return "ci" if ci not in ("", "0", "false", "no") else "dev"


settings.load_profile(_profile())


@pytest.fixture(scope="session")
def smoke_sweep_built(tmp_path_factory) -> tuple[Path, Path]:
    """search_spaces/smoke.yaml, run once per session by ``sweeper run --executor local`` in
    a process of its own into ``sweep/`` (``out/``, the results; ``mlflow.db`` and
    ``mlartifacts/``, its sqlite MLflow store), and a copy of it never touched, ``pristine/``.
    Returns (sweep, pristine); tests use ``smoke_sweep``."""
    from helpers import SMOKE_SPACE, run_cli  # torch and the package: only when needed

    home = tmp_path_factory.mktemp("smoke-sweep")
    sweep, pristine = home / "sweep", home / "pristine"
    sweep.mkdir()
    run_cli("run", SMOKE_SPACE, "--executor", "local", "--out", sweep / "out",
            "--tracking-uri", f"sqlite:///{sweep / 'mlflow.db'}", cwd=sweep, process=True,
            check=True)
    shutil.copytree(sweep, pristine, symlinks=True)
    return sweep, pristine


@pytest.fixture
def smoke_sweep(smoke_sweep_built: tuple[Path, Path]) -> Path:
    """A finished sweep of search_spaces/smoke.yaml (2 trials, 12 points) that this test may
    change: a fresh copy of the session's, put back where the sweep ran, since its absolute
    path is part of what it is (the sweep record names its store, the store its artifact
    location, and its runs are found by the results directory). Returns the results
    directory; its MLflow store is ``mlflow.db`` beside it."""
    sweep, pristine = smoke_sweep_built
    shutil.rmtree(sweep)
    shutil.copytree(pristine, sweep, symlinks=True)
    _forget_stores_under(sweep)
    return sweep / "out"


def _forget_stores_under(folder: Path) -> None:
    """Drop what MLflow keeps in this process of the sqlite stores under ``folder``: an
    engine per URI, whose pool holds connections to a file (and, in WAL mode, its
    shared-memory index) that was just replaced, and a store object per URI. Else the
    connections of an earlier test would read the replaced file. MLflow's private names:
    should they change, this fails loudly."""
    if "mlflow" not in sys.modules:  # nothing of it in this process yet
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    for uri in [u for u in SqlAlchemyStore._engine_map if str(folder) in u]:
        SqlAlchemyStore._engine_map.pop(uri).dispose()
    _tracking_store_registry._get_store_with_resolved_uri.cache_clear()


@pytest.fixture
def entry_points(monkeypatch):
    """The installed plug-in entry points plus the ones a test adds, as another package would:
    ``entry_points[group][name] = EntryPoint(...)``. Tasks and cells read them through the
    one loader (sweeper.plugins); its caches are cleared afterwards."""
    import collections

    import sweeper.cells
    import sweeper.plugins
    import sweeper.task

    added = collections.defaultdict(dict)
    installed = sweeper.plugins.registered

    def registered(group: str) -> dict:
        return {**installed(group), **added[group]}

    for module in (sweeper.plugins, sweeper.task, sweeper.cells):
        monkeypatch.setattr(module, "registered", registered)
    yield added
    sweeper.plugins._registered.cache_clear()
    sweeper.cells._plugin.cache_clear()
