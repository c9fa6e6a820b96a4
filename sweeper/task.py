"""Tasks: the contract (:class:`Task`, :class:`TaskBatch`) and how a name becomes a task.

The built-in tasks live in the separate package ``rnn_sweeper_tasks``; like any user's tasks,
they register under the entry-point group ``rnn_sweeper.tasks`` (see pyproject.toml), so
sweeper never imports them by module. A task can also be named by a dotted path
``"package.module:ClassName"``.

No torch at import: building a task (checking its parameters, asking its sizes) is what a
search space's validation does, and a task imports torch only where it makes tensors.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import SweeperInputError
from .plugins import load_class, registered

LOSS_KINDS = ("mse", "cross_entropy")
SPLITS = ("train", "val")
#: The entry-point group a package registers its tasks under (name = task name,
#: value = "package.module:ClassName").
ENTRY_POINT_GROUP = "rnn_sweeper.tasks"

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class TaskBatch:
    """One batch of a supervised task (float64 / int64, on the CPU).

    Attributes:
        inputs: (B, T, I).
        targets: (B, T, O) float for ``mse``; (B, T) int64 class indices for
            ``cross_entropy``; None when the targets are the output of the same network at
            the task's ``reference_scale`` (teacher-style tasks).
        mask: (B, T) bool, the steps whose outputs enter the loss.
    """

    inputs: torch.Tensor
    targets: torch.Tensor | None
    mask: torch.Tensor


@dataclasses.dataclass(frozen=True)
class Task(ABC):
    """A frozen, self-validating description of what drives the network.

    Subclasses are dataclasses whose fields are the task's parameters (``task_params``); they
    check them in ``__post_init__`` and raise :class:`SweeperInputError` naming the bad value
    as ``task_params.<name>``. A task that imports torch only in the methods that make
    tensors (the built-in ones do) is built without it, so ``sweeper validate`` checks a file
    that uses it without loading torch.

    Invariants: ``inputs`` is a pure function of (seed, n_trajectories, steps) - the same
    arguments give the same float64 CPU tensor in any process, so results do not depend on
    the device or on how points are batched.
    """

    name: ClassVar[str]
    #: "mse" or "cross_entropy"; only meaningful when ``output_size`` > 0.
    loss_kind: ClassVar[str] = "mse"
    #: Whether `sweeper aggregate` draws an orbit (bifurcation) diagram for this task: its
    #: constant input and initial state make one trajectory per scaling meaningful.
    orbit_diagram: ClassVar[bool] = False
    #: Sequence length used when the caller gives none.
    default_seq_len: ClassVar[int] = 200
    #: "linear": y = W_out h + b_out (trainable); "identity": y = the first O entries of h.
    readout: ClassVar[str] = "linear"

    @property
    @abstractmethod
    def input_size(self) -> int:
        """Number of input channels I."""

    @property
    def output_size(self) -> int:
        """Number of outputs O (classes for cross_entropy); 0 for tasks without a loss."""
        return 0

    @property
    def reference_scale(self) -> float | None:
        """For teacher-style tasks: the recurrent scale whose outputs are the targets."""
        return None

    def batch(self, seed: int, split: str, batch_size: int, seq_len: int) -> TaskBatch:
        """A deterministic batch of ``split`` ("train" or "val", independent streams).
        Supervised tasks override it; the default serves ``inputs`` with no loss."""
        raise SweeperInputError(f"task {self.name!r} has no targets; it only drives the "
                                "network (use a supervised task for landscape or training)")

    def check_seq_len(self, seq_len: int) -> None:
        """Raise SweeperInputError when ``seq_len`` is too short for this task."""
        return None

    def chance(self) -> float | None:
        """Accuracy of guessing (cross_entropy tasks), for reference; None otherwise."""
        return 1.0 / self.output_size if self.loss_kind == "cross_entropy" else None

    @abstractmethod
    def inputs(self, seed: int, n_trajectories: int, steps: int) -> torch.Tensor:
        """Input sequences (B, T, I), float64 on the CPU, drawn from ``seed``."""

    def anchor(self, cell: str, hidden_size: int) -> dict[str, torch.Tensor] | None:
        """Fixed base parameters theta* (float64, PyTorch names) that replace the seeded draw,
        so that recurrent_scale s gives theta(s) = s * theta*; None (default) for none.
        Raise SweeperInputError when the task cannot serve this cell or size."""
        return None

    def initial_state(self, state_size: int) -> torch.Tensor | None:
        """A fixed initial state (D,) for every trajectory; None (default) draws them."""
        return None

    def constant_input(self) -> torch.Tensor:
        """The input held fixed while counting attractors (I,); zero unless a task says so."""
        import torch

        return torch.zeros(self.input_size, dtype=torch.float64)

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> Task:
        """Build from a ``task_params`` mapping; unknown keys are an error listing known ones."""
        params = dict(params or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise SweeperInputError(
                f"task {cls.name!r} got unknown task_params {unknown}; known: {known}")
        return cls(**params)


def task_names() -> list[str]:
    """The names of the installed tasks (entry-point group ``rnn_sweeper.tasks``), sorted."""
    return sorted(registered(ENTRY_POINT_GROUP))


def get_task(name: str | Task, params: dict[str, Any] | None = None) -> Task:
    """Resolve a task and build it from ``params`` (its ``task_params``).

    Args:
        name: a registered task name (:func:`task_names`), a ``"package.module:ClassName"``
            path to a :class:`Task` subclass, or a Task object (then ``params`` must be empty).
        params: the task's dataclass fields; None or {} for the defaults.

    Returns:
        The task object.

    Raises:
        SweeperInputError: unknown name (the message lists the known ones), unimportable
            path, a class that is not a Task, or invalid task_params.

    Example:
        >>> get_task("noise", {"input_std": 0.5}).input_std
        0.5
    """
    if isinstance(name, Task):
        if params:
            raise SweeperInputError("task_params must be empty when task is already a Task object")
        return name
    if not isinstance(name, str):
        raise SweeperInputError(f"task must be a name or 'module:Class', got {name!r}")
    cls = load_class("task", ENTRY_POINT_GROUP, name, Task, "sweeper.task.Task")
    return cls.from_params(params)
