"""The landscape family: the loss, its gradient and curvature at each point, and the
roughness of 1-D slices through it (SCIENCE.md section 4)."""

from __future__ import annotations

import torch

from ..landscape_metrics import landscape_metrics
from ..schema import FAMILY_COLUMNS
from ..status import LOSS_NONFINITE
from ._base import Batch, Family, Outcome

_FAMILY = "landscape"


class Landscape(Family):
    name = _FAMILY
    failure = LOSS_NONFINITE
    columns = FAMILY_COLUMNS[_FAMILY]

    def compute(self, batch: Batch) -> Outcome:
        found = landscape_metrics(batch.cell, batch.task, batch.base, batch.readout(),
                                  batch.hidden_size, batch.seq_len, batch.protocols.landscape)
        failed = ~(torch.isfinite(found["loss"]) & torch.isfinite(found["grad_norm"]))
        return Outcome(found, failed)
