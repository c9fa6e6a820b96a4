"""Validation helpers shared by the task dataclasses (messages name the task and value)."""

from __future__ import annotations

import math

from sweeper.errors import SweeperInputError


def positive_int(task: str, name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SweeperInputError(f"task {task!r} requires an integer {name} >= {minimum}, "
                                f"got {name}={value!r}")


def finite_number(task: str, name: str, value: object, minimum: float | None = None,
                  strict: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
        raise SweeperInputError(f"task {task!r} requires a finite {name}{bound}, "
                                f"got {name}={value!r}")


def split_purpose(split: str) -> str:
    if split not in ("train", "val"):
        raise SweeperInputError(f"split must be 'train' or 'val', got split={split!r}")
    return f"task-{split}"
