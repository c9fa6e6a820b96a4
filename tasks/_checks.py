"""Validation helpers shared by the task dataclasses: the rules of sweeper.errors, with each
parameter named as the user writes it (``task_params.<name>``)."""

from __future__ import annotations

from sweeper import errors, protocols
from sweeper.task import SPLITS


def positive_int(task: str, name: str, value: object, minimum: int = 1) -> None:
    """``task_params.<name>`` must be an integer from minimum to
    :data:`sweeper.protocols.MAX_INTEGER` (``task`` kept for callers)."""
    protocols.integer(minimum)(f"task_params.{name}", value)


def finite_number(task: str, name: str, value: object, minimum: float | None = None,
                  strict: bool = False) -> None:
    """``task_params.<name>`` must be a finite number (above ``minimum``, or at least it)."""
    bounds = {} if minimum is None else {"above" if strict else "at_least": minimum}
    errors.number(f"task_params.{name}", value, **bounds)


def flag(task: str, name: str, value: object) -> None:
    """``task_params.<name>`` must be true or false."""
    protocols.flag(f"task_params.{name}", value)


def split_purpose(split: str) -> str:
    errors.choice("split", split, SPLITS)
    return f"task-{split}"
