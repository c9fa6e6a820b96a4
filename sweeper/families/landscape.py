"""The landscape family: the loss, its gradient and curvature at each point, and the
roughness of 1-D slices through it (SCIENCE.md section 4)."""

from __future__ import annotations

import torch

from ..columns import Column
from ..landscape_metrics import landscape_metrics
from ..status import LOSS_NONFINITE
from ._base import Batch, Family, Outcome

_FAMILY = "landscape"
_SLICES = {
    "n_local_minima": ("", "interior local minima of the loss along the slice"),
    "roughness_tv": ("", "total variation over range: 1 monotone, 2 one valley"),
    "loss_lipschitz": ("", "max |dV/d alpha| by first differences along the slice"),
    "loss_curvature": ("", "max |d2V/d alpha2| by second differences along the slice"),
}


def _slice_columns() -> tuple[Column, ...]:
    along = [Column(name, "double", unit, f"{meaning}, along recurrent_scale (s +- 0.1, 41 "
                    "points by default)", _FAMILY)
             for name, (unit, meaning) in _SLICES.items()]
    random = [Column(f"{name}_random", "double", unit, f"{meaning}, along a filter-normalised "
                     "random direction (Li et al. 2018)", _FAMILY)
              for name, (unit, meaning) in _SLICES.items()]
    return (*along, *random)


class Landscape(Family):
    name = _FAMILY
    supervised = True
    failure = LOSS_NONFINITE
    columns = (
        Column("loss", "double", "task loss", "the task's loss on a fixed batch of a supervised "
               "task", _FAMILY),
        Column("grad_norm", "double", "", "||grad V|| by backpropagation through time", _FAMILY),
        Column("hessian_top_eig", "double", "", "top eigenvalue of the Hessian: exact (dense "
               "Hessian) up to 128 parameters per point, else Lanczos on Hessian-vector "
               "products; NaN with hessian_steps 0", _FAMILY),
        *_slice_columns(),
    )

    def compute(self, batch: Batch) -> Outcome:
        found = landscape_metrics(batch.cell, batch.task, batch.base, batch.readout(),
                                  batch.hidden_size, batch.seq_len, batch.protocols.landscape)
        failed = ~(torch.isfinite(found["loss"]) & torch.isfinite(found["grad_norm"]))
        return Outcome(found, failed)
