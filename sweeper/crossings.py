"""The edge of chaos of a set of points: where lambda_1, averaged over everything but one
axis, crosses zero along that axis. Pure pandas, like :mod:`sweeper.aggregate`, whose
:func:`~sweeper.aggregate.zero_crossing` does the crossing."""

from __future__ import annotations

import pandas as pd

from .aggregate import zero_crossing

__all__ = ["mean_zero_crossing"]


def mean_zero_crossing(points: pd.DataFrame, x: str = "recurrent_scale") -> float:
    """The lambda_1 = 0 crossing of the points' mean curve along ``x``.

    The curve is ``lyapunov_max`` averaged, at each value of ``x``, over every other column
    (the seeds, the other axes); non-numeric entries count as NaN and are skipped, as
    :func:`~sweeper.aggregate.zero_crossing` skips them.

    Args:
        points: rows with an ``x`` column and a ``lyapunov_max`` column (P rows).

    Returns:
        The first ``x`` where the mean curve goes from <= 0 to > 0, linearly interpolated;
        NaN when a column is missing, ``x`` takes fewer than two values, or the curve never
        crosses upward.

    Example:
        >>> points = pd.DataFrame({"recurrent_scale": [0.5, 0.5, 1.5, 1.5],
        ...                        "lyapunov_max": [-0.6, -0.4, 0.4, 0.6]})
        >>> mean_zero_crossing(points)
        1.0
    """
    if x not in points or "lyapunov_max" not in points:
        return float("nan")
    curve = (pd.to_numeric(points["lyapunov_max"], errors="coerce")
             .groupby(points[x]).mean().sort_index())
    return zero_crossing(curve.index.to_numpy(float), curve.to_numpy(float))
