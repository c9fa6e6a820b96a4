"""The MLflow UI over a real sweep: `sweeper run` writes a sqlite store, the adapter starts
`mlflow server` over it, headless Chromium (Debian's, driven by Playwright) opens the
experiment page and must show the sweep's parent run and, once expanded, its trial runs;
each trial run names where its rows are (tags ``sweeper.results``, ``sweeper.points``)
instead of holding a copy of its Parquet part, is named by its input scale, and previews its
points as a table; the parent run's Overview shows the summary as its description and each
input scale's lambda_1 = 0 crossing as a metric, and its summary gives the edge of chaos of
each input scale with the seeds' range. The screenshots (runs table, the parent's Overview,
summary, a trial's points) are kept in test-artifacts/. The test stops exactly what it
started."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweeper.adapters.mlflow_ui import experiment_url, resolve_store_uri, start_ui, stop_ui
from sweeper.errors import SweeperInputError

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright cannot download its own browser here; Debian's chromium needs these to run
# headless as root in a container, and must not reach out to the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _require_chromium() -> None:
    if Path(CHROMIUM).is_file():
        return
    message = (f"Chromium not found at {CHROMIUM}: install Debian's package "
               f"(apt-get install -y --no-install-recommends chromium; .ci/run does)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _ours(marker: str) -> list[int]:
    """Pids of the processes whose command line names ``marker`` (a path of this test)."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if int(p) != os.getpid()]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_relative_sqlite_uri_is_resolved_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "mlflow.db").touch()
    monkeypatch.chdir(tmp_path)
    database = tmp_path.resolve() / "mlflow.db"
    assert resolve_store_uri("sqlite:///mlflow.db") == f"sqlite:///{database}"
    assert resolve_store_uri(f"sqlite:///{database}?timeout=5") == (
        f"sqlite:///{database}?timeout=5")
    assert resolve_store_uri("postgresql://u@db/mlflow") == "postgresql://u@db/mlflow"


@pytest.mark.parametrize(("uri", "says"), [("sqlite:///missing.db", "no MLflow store"),
                                           ("sqlite://", "in-memory"),
                                           ("http://127.0.0.1:5000", "already an MLflow server")])
def test_stores_a_ui_cannot_open_are_refused_before_anything_starts(tmp_path, monkeypatch, uri,
                                                                    says):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SweeperInputError, match=says):
        start_ui(uri)


def test_experiment_page_lists_the_sweep_and_its_trial_runs(tmp_path, monkeypatch):
    _require_chromium()
    from playwright.sync_api import sync_playwright

    result = subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "run", str(ROOT / "search_spaces" / "smoke.yaml"),
         "--executor", "local", "--out", str(tmp_path / "out"), "--tracking-uri",
         f"sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    monkeypatch.chdir(tmp_path)  # the UI gets the relative URI a user would type here
    server, url = start_ui("sqlite:///mlflow.db")
    profile = tmp_path / "chromium-profile"  # a new, empty user-data-dir
    try:
        client = MlflowClient(url)  # over HTTP: the server opened the sweep's store
        experiment = client.get_experiment_by_name("smoke")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
        trials = [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]
        assert len(trials) == 2
        # A trial's run says where its rows are (tags the UI shows) instead of holding a
        # copy: the results directory, and the query that selects them there (its part has
        # since been gathered into a compacted file by the run's `aggregate`).
        points = pd.read_parquet(tmp_path / "out" / "points")
        for trial in trials:
            tags = trial.data.tags
            assert Path(tags["sweeper.results"]) == (tmp_path / "out").resolve()
            assert f"trial_id = '{tags['sweeper.trial_id']}'" in tags["sweeper.points"]
            rows = points[points.trial_id == tags["sweeper.trial_id"]]
            assert len(rows) and set(rows.mlflow_run_id) == {trial.info.run_id}
        listed = _artifacts(url, trials[0].info.run_id)
        assert not any(f.endswith(".parquet") for f in listed), listed
        # What a user reads in the UI: the trial's own points as a table it previews, a
        # param per axis, its lambda_1 = 0 crossing and region counts as metrics; the parent
        # run's summary with the crossing of each input scale and the seeds' range.
        assert "points.csv" in listed
        low = next(t for t in trials if float(t.data.params["input_scale"]) == 0.5)
        assert json.loads(low.data.params["recurrent_scale"]) == [0.5, 1.0, 2.0]
        assert 1.0 < low.data.metrics["lyapunov_zero_crossing"] < 2.0
        assert sum(low.data.metrics[f"n_{r}"] for r in ("forgetful", "memory", "chaotic",
                                                        "unclassified")) == 6
        assert "summary/summary.md" in _artifacts(url, parent.info.run_id, "summary")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1600, "height": 900})
            try:
                page = browser.new_page()
                page.goto(experiment_url(url, experiment.experiment_id))
                try:
                    _check_runs_table(page, parent, trials)
                finally:  # the screenshot also shows what went wrong when a check fails
                    _shoot(page, ARTIFACTS / "mlflow_ui_experiment.png", tmp_path)
                run_page = f"{url}/#/experiments/{experiment.experiment_id}/runs"
                page.goto(f"{run_page}/{parent.info.run_id}")
                try:
                    _check_overview(page, parent)
                finally:
                    _shoot(page, ARTIFACTS / "mlflow_ui_overview.png", tmp_path)
                page.goto(f"{run_page}/{parent.info.run_id}/artifacts/summary/summary.md")
                try:
                    page.get_by_text("Edge of chaos").first.wait_for(timeout=60_000)
                    page.get_by_text("1.695 .. ", exact=False).first.wait_for(timeout=10_000)
                finally:
                    _shoot(page, ARTIFACTS / "mlflow_ui_summary.png", tmp_path)
                page.goto(f"{run_page}/{low.info.run_id}/artifacts/points.csv")
                try:
                    page.get_by_text("Previewing").first.wait_for(timeout=60_000)
                    page.get_by_text("recurrent_scale").first.wait_for(timeout=10_000)
                finally:
                    _shoot(page, ARTIFACTS / "mlflow_ui_points.png", tmp_path)
            finally:
                browser.close()
    finally:
        stop_ui(server)
    assert not _group_alive(server.pid), "mlflow server workers outlived stop_ui"
    assert not _ours(str(tmp_path)), "a process started by this test is still running"


def _artifacts(url: str, run_id: str, path: str = "") -> list[str]:
    """The paths the tracking server lists under a run's artifact folder."""
    query = f"run_id={run_id}" + (f"&path={path}" if path else "")
    with urllib.request.urlopen(f"{url}/ajax-api/2.0/mlflow/artifacts/list?{query}",
                                timeout=30) as response:
        return [f["path"] for f in json.load(response).get("files", [])]


def _shoot(page, path: Path, tmp_path: Path) -> None:
    """A full-page screenshot kept in test-artifacts/ (and in the test's directory)."""
    page.wait_for_timeout(500)
    page.screenshot(path=tmp_path / path.name, full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(tmp_path / path.name, path)


def _check_runs_table(page, parent, trials) -> None:
    """The parent run's row renders; its trial runs appear by name once it is expanded."""
    link = 'a[href$="/runs/{}"]'
    page.locator(link.format(parent.info.run_id)).wait_for(timeout=90_000)
    assert page.locator(link.format(parent.info.run_id)).inner_text() == "smoke"
    children = [page.locator(link.format(t.info.run_id)) for t in trials]
    # MLflow 3 nests child runs under a collapsed parent row: press its expand button.
    if not any(child.count() for child in children):
        page.locator(f'div[role="gridcell"]:has({link.format(parent.info.run_id)}) button'
                     ).first.click()
    for child, trial in zip(children, trials, strict=True):
        child.wait_for(timeout=30_000)
        # Named by the axis value that tells the trials apart, not by a hash.
        scale = float(trial.data.params["input_scale"])
        assert child.inner_text() == f"input_scale={scale:g}" == trial.info.run_name
    page.wait_for_timeout(500)  # let the expanded rows finish painting before the screenshot


def _check_overview(page, parent) -> None:
    """The parent run's Overview answers without an artifact: the summary as its description
    (the model line, the edge-of-chaos table) and each input scale's lambda_1 = 0 crossing
    of the seed mean as a metric, with the seeds' range."""
    assert "rnn_tanh, hidden_size 16" in parent.data.tags["mlflow.note.content"]
    page.get_by_text("rnn_tanh, hidden_size 16", exact=False).first.wait_for(timeout=60_000)
    more = page.get_by_text("Show more", exact=True)  # MLflow 3 folds a long description
    if more.count():
        more.first.click()
    page.get_by_text("Edge of chaos", exact=False).first.wait_for(timeout=10_000)
    page.get_by_role("cell", name="1.695 .. 1.906", exact=True).first.wait_for(timeout=10_000)
    for key in ("lyapunov_zero_crossing/input_scale_0.5",
                "lyapunov_zero_crossing/input_scale_0.5_lo",
                "lyapunov_zero_crossing/input_scale_0.5_hi"):
        assert key in parent.data.metrics
        page.get_by_text(key, exact=True).first.wait_for(timeout=10_000)


def test_a_server_that_cannot_start_reports_its_log_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "mlflow.db").write_text("not a database")
    monkeypatch.chdir(tmp_path)
    with pytest.raises((RuntimeError, TimeoutError), match="log") as failed:
        start_ui("sqlite:///mlflow.db", timeout_s=60)
    assert not _ours(str(tmp_path)), failed.value


def test_stop_ui_ends_the_whole_process_group(tmp_path):
    # A stand-in server that spawns a worker of its own, as uvicorn does.
    server = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', "
         f"'{tmp_path}']); time.sleep(600)"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(_ours(str(tmp_path))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_ours(str(tmp_path))) == 2, "the stand-in worker did not start"
    finally:
        stop_ui(server, grace_s=5)
    assert not _group_alive(server.pid) and not _ours(str(tmp_path))
    stop_ui(server)  # a second call signals nothing
