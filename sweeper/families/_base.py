"""The metric-family contract.

A family declares its columns (:class:`sweeper.columns.Column`) and what it needs from the
shared trajectory pass (:class:`sweeper.dynamics.PassNeeds`); ``measure`` runs that pass once
for the union of what the requested families need and hands every family the same
:class:`Batch`. A family returns its columns and the points it failed on; the failures of all
families merge into one status per point (:mod:`sweeper.status`).

Shapes: every tensor a family returns is indexed by point first, (K, ...) with K = G * M in
point order (k = g * M + m of the request), whatever layout ``Cell.prepare`` chose.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..cells import Cell
from ..columns import Column
from ..dynamics import DynamicsConfig, DynamicsResult, PassNeeds
from ..params import CellParams
from ..schema import SUPERVISED_FAMILIES

Tensor = torch.Tensor


@dataclass(frozen=True)
class Protocols:
    """The protocol settings of every family (each validates itself)."""

    dynamics: DynamicsConfig
    memory: Any  # MemoryConfig
    landscape: Any  # LandscapeConfig
    training: Any  # TrainingConfig


@dataclass
class Batch:
    """What every family sees: the request, its parameters and the shared pass.

    Attributes:
        cell, task, hidden_size, seq_len: the request.
        seeds: one per base draw of the request (G).
        base: the unprepared (G, M) parameters (supervised families rebuild their model).
        params: ``cell.prepare(base)``: the same K points, possibly one per group.
        inputs: (G', B, burn_in + seq_len, I) task inputs, one row per prepared group.
        protocols: family settings.
        dynamics: the trajectory pass, or None when no family needs it.
    """

    cell: Cell
    task: Any
    hidden_size: int
    seq_len: int
    seeds: list[int]
    base: CellParams
    params: CellParams
    inputs: Tensor
    protocols: Protocols
    dynamics: DynamicsResult | None = None
    _readout: Any = field(default=None, repr=False)

    @property
    def points(self) -> int:
        return self.params.groups * self.params.members

    @property
    def state_size(self) -> int:
        return self.cell.state_size(self.hidden_size)

    def flat(self, value: Tensor) -> Tensor:
        """(G', M', ...) -> (K, ...)."""
        return value.reshape(self.points, *value.shape[2:])

    def readout(self):
        """The seeded readout of every base draw (built once, on first use)."""
        if self._readout is None:
            from ..model import init_readout

            self._readout = init_readout(self.task.readout, self.task.output_size,
                                         self.hidden_size, self.seeds, self.params.dtype,
                                         self.params.device)
        return self._readout


@dataclass(frozen=True)
class Outcome:
    """A family's columns, each (K, ...), and the points it failed on (K,) bool."""

    columns: dict[str, Tensor]
    failed: Tensor


class Family(ABC):
    """One metric family.

    Class attributes:
        name: the name users pass in ``metrics``.
        columns: every column it fills (the schema reads them).
        needs: what it needs from the trajectory pass; None when it does not use the pass.
        supervised: needs a task with a loss (the families :data:`sweeper.schema.
            SUPERVISED_FAMILIES` names; set from there).
        failure: the status a point gets when this family fails on it.
        kept_on_divergence: columns that stay when the point's state diverged (analytic
            bounds that do not come from the trajectory); every other measured column turns
            NaN there.
    """

    name: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]]
    needs: ClassVar[PassNeeds | None] = None
    supervised: ClassVar[bool] = False
    failure: ClassVar[str]
    kept_on_divergence: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            cls.supervised = cls.name in SUPERVISED_FAMILIES

    @abstractmethod
    def compute(self, batch: Batch) -> Outcome:
        """The family's columns for every point of ``batch``."""
