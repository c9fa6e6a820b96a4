"""The training family: every point trained at once from where it starts."""

from __future__ import annotations

from ..columns import Column
from ..status import TRAINING_DIVERGED
from ..training import train
from ._base import Batch, Family, Outcome

_FAMILY = "training"


class Training(Family):
    name = _FAMILY
    supervised = True
    failure = TRAINING_DIVERGED
    columns = (
        Column("train_loss", "double", "task loss", "loss on the last training batch (every "
               "point trained at once: Adam, per-point gradient clipping, cosine schedule, 300 "
               "steps by default)", _FAMILY),
        Column("val_loss", "double", "task loss", "loss on the validation batch", _FAMILY),
        Column("val_accuracy", "double", "", "validation accuracy (classification tasks; NaN "
               "for mse)", _FAMILY),
        Column("diverged", "bool", "", "the point's loss or gradient became non-finite during "
               "training", _FAMILY),
        Column("steps_to_threshold", "double", "steps", "first step whose train loss is below "
               "TrainingConfig.threshold (NaN if never or no threshold)", _FAMILY),
    )

    def compute(self, batch: Batch) -> Outcome:
        result = train(batch.cell, batch.task, batch.base, batch.readout(), batch.hidden_size,
                       batch.seq_len, batch.protocols.training)
        columns = {c.name: getattr(result, c.name) for c in self.columns}
        return Outcome(columns, result.diverged.bool())
