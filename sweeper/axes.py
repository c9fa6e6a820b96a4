"""The two axes a region map is drawn over, chosen from a sweep's axes. Used when a search
space is validated (space.py) and when its points are aggregated (aggregate.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import SweeperInputError, invalid

#: Every axis a sweep can have, in their canonical order (a trial's config and an MLflow
#: run's params follow it).
AXES = ("recurrent_scale", "input_scale", "seed", "seq_len", "hidden_size")
#: The axes a map can be drawn over, in order of preference.
MAP_AXES = ("recurrent_scale", "input_scale", "seq_len", "hidden_size", "seed")


def map_axes(axes: Mapping[str, list], requested: Mapping[str, Any] | None = None
             ) -> tuple[str, str]:
    """The (x, y) axes of the map: the file's ``map`` if given, else the first two non-seed
    axes, preferring those the sweep actually varies.

    Args:
        axes: axis name -> its values (only the names in :data:`MAP_AXES` count).
        requested: the search space's ``map`` mapping, with optional ``x`` and ``y``.

    Returns:
        (x, y), two different axis names.

    Raises:
        SweeperInputError: an unknown axis, or x == y.

    Example:
        >>> map_axes({"recurrent_scale": [0.5, 1.0], "seed": [0]})
        ('recurrent_scale', 'seed')
    """
    requested = dict(requested or {})
    allowed = [a for a in MAP_AXES if a in axes]
    for key in ("x", "y"):
        if key in requested and requested[key] not in allowed:
            raise invalid(f"map.{key}", requested[key], f"one of {allowed}")
    varied = [a for a in allowed if a != "seed" and len(axes[a]) > 1]
    fixed = [a for a in allowed if a != "seed" and len(axes[a]) == 1]
    order = [a for a in varied + fixed + ["seed"] if a in allowed]
    x = requested.get("x") or next(a for a in order if a != requested.get("y"))
    y = requested.get("y") or next(a for a in order if a != x)
    if x == y:
        raise SweeperInputError(f"map: x and y are both {x!r}; choose two different axes")
    return x, y
