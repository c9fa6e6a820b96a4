"""The task contract: seeded input sequences (and, for later tasks, targets and a loss)."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from sweeper.errors import SweeperInputError


@dataclasses.dataclass(frozen=True)
class Task(ABC):
    """A frozen, self-validating description of what drives the network.

    Subclasses are dataclasses whose fields are the task's parameters (``task_params``); they
    check them in ``__post_init__`` and raise :class:`SweeperInputError` naming the bad value.

    Invariants: ``inputs`` is a pure function of (seed, n_trajectories, steps) - the same
    arguments give the same float64 CPU tensor in any process, so results do not depend on
    the device or on how points are batched.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def input_size(self) -> int:
        """Number of input channels I."""

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

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, **dataclasses.asdict(self)}
