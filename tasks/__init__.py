"""Tasks: what drives the network. ``TASKS`` maps names to classes; ``get_task`` also accepts a
user task as ``"package.module:ClassName"`` (a :class:`tasks.Task` subclass)."""

from __future__ import annotations

import importlib
from typing import Any

from sweeper.errors import SweeperInputError, unknown_name

from ._base import Task, TaskBatch
from .adding import Adding
from .chaotic_lstm import ChaoticLSTM
from .char_lm import CharLM
from .copy_memory import CopyMemory
from .noise import Noise
from .sine_generator import SineGenerator
from .teacher import Teacher
from .temporal_order import TemporalOrder

TASKS: dict[str, type[Task]] = {
    "noise": Noise,
    "chaotic_lstm": ChaoticLSTM,
    "teacher": Teacher,
    "sine_generator": SineGenerator,
    "temporal_order": TemporalOrder,
    "copy_memory": CopyMemory,
    "adding": Adding,
    "char_lm": CharLM,
}

__all__ = ["TASKS", "Adding", "ChaoticLSTM", "CharLM", "CopyMemory", "Noise", "SineGenerator",
           "Task", "TaskBatch", "Teacher", "TemporalOrder", "get_task"]


def get_task(name: str | Task, params: dict[str, Any] | None = None) -> Task:
    """Resolve a task name (or ``module.path:Class``) and build it from ``params``.

    Raises:
        SweeperInputError: unknown name, unimportable path, or invalid task_params.
    """
    if isinstance(name, Task):
        if params:
            raise SweeperInputError("task_params must be empty when task is already a Task object")
        return name
    if not isinstance(name, str):
        raise SweeperInputError(f"task must be a name or 'module:Class', got {name!r}")
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise SweeperInputError(f"cannot load task {name!r}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise SweeperInputError(f"task {name!r} is not a subclass of tasks.Task")
    elif name in TASKS:
        cls = TASKS[name]
    else:
        raise unknown_name("task", name, [*list(TASKS), "module.path:Class"])
    return cls.from_params(params)
