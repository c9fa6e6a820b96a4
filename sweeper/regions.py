"""The three regions of the paper, decided per point from its measured metrics.

- ``chaotic``: lyapunov_max > epsilon (positive largest exponent: rough cost, many minima);
- ``memory``: not chaotic, and the dynamics keep information: at least ``min_attractors``
  stable attractors under the task's constant input (attractor_count - chaotic_attractors), or
  lyapunov_max >= -epsilon (at the edge of chaos), or a memory horizon of at least
  ``horizon_fraction`` x seq_len;
- ``forgetful``: everything else (contracting, smooth, short memory).

Why chaotic attractors do not count: the attractors are found under the task's constant input
(zero for ``noise``), lambda_1 under its driven input. The paper's long-term memory is a state
that settles where its past put it and stays there: on one of several fixed points, periodic
or quasi-periodic orbits. On a chaotic attractor the state keeps moving and nearby states part
exponentially (under that input the network is in the paper's chaotic regime, whatever its
exponent under the drive), so a chaotic attractor is not counted, even one of a mirrored pair
that does keep which of the two the state is on (attractor_count still counts it). Results
written before ``chaotic_attractors`` existed count every attractor, as they did.

A point whose state diverged to inf/NaN (``status == "diverged"``, every measured metric NaN)
or whose lyapunov_max is +inf is ``chaotic``: its perturbations grow without bound. A point
whose lyapunov_max was not measured is ``unclassified``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from . import errors
from .errors import SweeperInputError

REGIONS = ("forgetful", "memory", "chaotic")
UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class RegionRules:
    """Thresholds of the classification (search-space key ``regions``).

    Attributes:
        epsilon: margin around lambda_1 = 0, in nats per step (> 0).
        min_attractors: number of stable (non-chaotic) attractors that marks multistability
            as memory (>= 2).
        horizon_fraction: memory horizon, as a fraction of seq_len, that counts as long
            memory (in (0, 1]).
    """

    epsilon: float = 0.01
    min_attractors: int = 2
    horizon_fraction: float = 0.5

    def __post_init__(self):
        problems = []
        for check in (lambda: errors.number("regions.epsilon", self.epsilon, above=0),
                      lambda: errors.integer("regions.min_attractors", self.min_attractors,
                                             minimum=2),
                      lambda: errors.number("regions.horizon_fraction", self.horizon_fraction,
                                            above=0, at_most=1)):
            try:
                check()
            except SweeperInputError as exc:
                problems.append(str(exc))
        if problems:
            raise SweeperInputError("; ".join(problems))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> RegionRules:
        """Build from the file's ``regions`` mapping; unknown keys are an error."""
        raw = dict(raw or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known), key=str)
        if unknown:
            raise SweeperInputError(f"regions: unknown keys {unknown}; allowed: {known}")
        return cls(**raw)


def _column(points: pd.DataFrame, name: str) -> np.ndarray:
    if name not in points:
        return np.full(len(points), np.nan)
    return pd.to_numeric(points[name], errors="coerce").to_numpy(dtype=float)


def classify(points: pd.DataFrame, rules: RegionRules | None = None) -> pd.Series:
    """The region of every row of ``points`` (a measure() or sweep frame).

    Uses status, lyapunov_max, attractor_count, chaotic_attractors, memory_horizon and
    seq_len; a missing column counts as not measured (a missing chaotic_attractors as 0).
    Returns a string Series aligned with ``points``.
    """
    rules = rules or RegionRules()
    lyap = _column(points, "lyapunov_max")
    chaotic_attractors = np.nan_to_num(_column(points, "chaotic_attractors"), nan=0.0)
    attractors = _column(points, "attractor_count") - chaotic_attractors
    horizon = _column(points, "memory_horizon")
    seq_len = _column(points, "seq_len")
    with np.errstate(invalid="ignore"):
        chaotic = lyap > rules.epsilon
        memory = ~chaotic & ((attractors >= rules.min_attractors) | (lyap >= -rules.epsilon)
                             | (horizon >= rules.horizon_fraction * seq_len))
    region = np.where(chaotic, "chaotic", np.where(memory, "memory", "forgetful"))
    region = np.where(np.isnan(lyap), UNCLASSIFIED, region)
    if "status" in points:
        region = np.where((points["status"] == "diverged").to_numpy(), "chaotic", region)
    return pd.Series(region, index=points.index, name="region", dtype=object)
