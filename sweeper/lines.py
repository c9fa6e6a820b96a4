"""The lines of ``sweeper plot``: which points go into each, as plain data (no drawing).

A line joins points that differ in seed alone: one line per value of ``by`` (and per sweep),
its value at each x the mean over seeds, its band the seeds' range. An axis that varies and is
neither x, ``by`` nor the seed would be averaged into the line under a label that does not
say so: that is refused, naming the axis and how to choose (``--by`` or ``--where``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .axes import AXES
from .errors import SweeperInputError

#: Lines drawn for one sweep at most, unless the values of ``by`` are named.
MAX_LINES = 8


@dataclass(frozen=True)
class Line:
    """One drawn line: the value of ``by`` it stands for (None: the only line), its x values,
    the seed mean and the seeds' lowest and highest value at each, and the points in it."""

    value: float | None
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    point_ids: tuple[str, ...]


def value_text(values: Sequence[float]) -> dict[float, str]:
    """Each value written with the fewest decimals (up to 6) that move no value by more than
    a tenth of the smallest gap between two of them: 0.25, 0.34, 0.43 for a linspace rather
    than 0.338710; 0.05, 0.20, 0.50 rather than 0.1 for 0.05."""
    distinct = sorted({float(v) for v in values})
    if len(distinct) < 2:
        return {v: f"{v:g}" for v in distinct}
    gap = min(b - a for a, b in itertools.pairwise(distinct))
    for decimals in range(7):
        if all(abs(round(v, decimals) - v) <= gap / 10 for v in distinct):
            break
    return {v: (f"{v:.{decimals}f}" if decimals else f"{v:g}") for v in distinct}


def log_spaced(values: Sequence[float]) -> bool:
    """Whether three or more positive values are evenly spaced in log, not linearly."""
    distinct = np.unique(np.asarray(values, dtype=float))
    if len(distinct) < 3 or distinct[0] <= 0:
        return False
    steps = np.diff(np.log(distinct))
    linear = np.diff(distinct)
    return bool(np.allclose(steps, steps[0], rtol=1e-6)
                and not np.allclose(linear, linear[0], rtol=1e-6))


def select(points: pd.DataFrame, where: Mapping[str, float], source: str) -> pd.DataFrame:
    """The points whose axes equal ``where`` (floats compared to 1e-9 relative)."""
    for axis, value in where.items():
        if axis not in AXES:
            raise SweeperInputError(f"--where axis must be one of {list(AXES)}, got {axis!r}")
        held = np.isclose(points[axis].astype(float), float(value), rtol=1e-9, atol=0)
        if not held.any():
            text = value_text(points[axis].unique())
            raise SweeperInputError(f"--where {axis}={value:g} matches no point in {source}; "
                                    f"{axis} takes {list(text.values())}")
        points = points[held]
    return points


def pooled_axes(points: pd.DataFrame, x: str, by: str | None) -> dict[str, list]:
    """The axes besides x, ``by`` and the seed that take several values in ``points``."""
    return {a: sorted(points[a].unique()) for a in AXES
            if a not in (x, by, "seed") and a in points and points[a].nunique() > 1}


def refuse_pooling(points: pd.DataFrame, x: str, by: str | None, source: str) -> None:
    """Raise when a line would average over an axis it does not name."""
    pooled = pooled_axes(points, x, by)
    if not pooled:
        return
    axis, values = next(iter(pooled.items()))
    text = value_text(values)
    listed = ", ".join(f"{a} ({len(v)} values)" for a, v in pooled.items())
    raise SweeperInputError(
        f"in {source}, a line of {x} by {by or 'none'} would average over {listed}; name the "
        f"axis with --by {axis}, or choose its value with --where {axis}={text[values[0]]} "
        f"({axis} takes {', '.join(text[v] for v in values)})")


def lines(points: pd.DataFrame, metric: str, x: str, by: str | None,
          values: Sequence[float] | None = None) -> list[Line]:
    """The lines of ``metric`` against ``x``, one per value of ``by`` (all of ``values`` when
    given; else every value, at most :data:`MAX_LINES` evenly spaced). A boolean metric is
    drawn as the fraction of seeds where it holds. ``points`` must not need pooling (see
    :func:`refuse_pooling`)."""
    chosen = [None] if by is None else (list(values) if values is not None
                                        else spaced(sorted(points[by].unique())))
    result = []
    for value in chosen:
        part = points if value is None else points[np.isclose(points[by].astype(float),
                                                              float(value), rtol=1e-9, atol=0)]
        if part.empty:
            raise SweeperInputError(f"--by-values: {by}={value:g} is not a value of the sweep; "
                                    f"{by} takes {list(value_text(points[by].unique()).values())}")
        numbers = part[list(dict.fromkeys([x, "seed"]))].copy()
        numbers["value"] = part[metric].astype(float).replace([np.inf, -np.inf], np.nan)
        if x == "seed":  # each x is a seed: the line is the seeds' own values
            stats = numbers.groupby(x)["value"].agg(["mean", "min", "max"]).sort_index()
        else:
            per_seed = numbers.groupby([x, "seed"])["value"].mean().unstack("seed").sort_index()
            stats = pd.DataFrame({"mean": per_seed.mean(axis=1), "min": per_seed.min(axis=1),
                                  "max": per_seed.max(axis=1)})
        result.append(Line(None if value is None else float(value),
                           stats.index.to_numpy(float), stats["mean"].to_numpy(float),
                           stats["min"].to_numpy(float), stats["max"].to_numpy(float),
                           tuple(sorted(part["point_id"])) if "point_id" in part else ()))
    return result


def spaced(values: list, most: int = MAX_LINES) -> list:
    """``values`` (sorted) if there are at most ``most``, else ``most`` of them evenly spaced
    from the first to the last."""
    if len(values) <= most:
        return list(values)
    picked = np.unique(np.round(np.linspace(0, len(values) - 1, most)).astype(int))
    return [values[i] for i in picked]


def is_flag(series: pd.Series) -> bool:
    """A yes/no column (drawn as a fraction of seeds)."""
    return pd.api.types.is_bool_dtype(series) or (
        series.dtype == object and series.dropna().map(type).eq(bool).all()
        and not series.dropna().empty)


def finite_number(text: str) -> float:
    """A --where / --by-values value."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value
