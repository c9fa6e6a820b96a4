"""The core imports no orchestration, tracking or storage packages (house rule)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_core_pulls_in_no_service_packages():
    code = ("import sys, sweeper, sweeper.training, sweeper.landscape_metrics, tasks; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('ray', 'mlflow', 'yaml', 'pyarrow', 'duckdb', 'matplotlib')); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
