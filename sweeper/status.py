"""One status per point, merged across the metric families (in the spirit of diffrax's result
codes): ``ok``, or the failure of the first family, by precedence, that failed on it.

- ``diverged``: the state itself became non-finite in the trajectory, memory or attractor runs;
  every measured metric of the point is NaN (the analytic bound stays) and the point counts
  as chaotic in the region map.
- ``loss_nonfinite``: the loss or its gradient at the point is not finite (landscape family);
  the dynamics metrics stand.
- ``training_diverged``: training from the point blew up (training family).

Every status other than ``ok`` counts in the region map's ``n_not_ok``.
"""

from __future__ import annotations

import numpy as np

OK = "ok"
DIVERGED = "diverged"
LOSS_NONFINITE = "loss_nonfinite"
TRAINING_DIVERGED = "training_diverged"

#: Every status, the more fundamental failure first (it wins when several hold).
STATUSES = (OK, DIVERGED, LOSS_NONFINITE, TRAINING_DIVERGED)


def merge(failures: dict[str, np.ndarray], points: int) -> np.ndarray:
    """Per point, the most fundamental status among ``failures`` (status -> (K,) bool)."""
    status = np.full(points, OK, dtype=object)
    for code in reversed(STATUSES[1:]):
        if code in failures:
            status = np.where(failures[code], code, status)
    return status
