"""Hypothesis profiles. CI (CI=true) runs derandomized: the same examples on every run, so a
red build is reproducible and not a draw of luck; locally the examples vary from run to run,
which is how new failures are found. HYPOTHESIS_PROFILE=ci forces the CI profile locally."""

from __future__ import annotations

import os

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
