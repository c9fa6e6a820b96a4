"""The training family: every point trained at once from where it starts."""

from __future__ import annotations

from ..schema import FAMILY_COLUMNS
from ..status import TRAINING_DIVERGED
from ..training import train
from ._base import Batch, Family, Outcome

_FAMILY = "training"


class Training(Family):
    name = _FAMILY
    failure = TRAINING_DIVERGED
    columns = FAMILY_COLUMNS[_FAMILY]

    def compute(self, batch: Batch) -> Outcome:
        result = train(batch.cell, batch.task, batch.base, batch.readout(), batch.hidden_size,
                       batch.seq_len, batch.protocols.training)
        columns = {c.name: getattr(result, c.name) for c in self.columns}
        return Outcome(columns, result.diverged.bool())
