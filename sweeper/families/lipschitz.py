"""The lipschitz family: the cell's sound bound and the local ||J_t||_2 along the pass."""

from __future__ import annotations

from ..cells import BoundContext
from ..dynamics import PassNeeds
from ..lipschitz import cost_growth_log10
from ..schema import FAMILY_COLUMNS
from ..status import DIVERGED
from ._base import Batch, Family, Outcome

_FAMILY = "lipschitz"


class Lipschitz(Family):
    name = _FAMILY
    needs = PassNeeds(tangents=False, jacobian_samples=True)
    failure = DIVERGED
    kept_on_divergence = ("lipschitz_bound", "cost_growth_log10")
    columns = FAMILY_COLUMNS[_FAMILY]

    def compute(self, batch: Batch) -> Outcome:
        result = batch.dynamics
        steps = batch.inputs.shape[-2]
        bound = batch.cell.lipschitz_bound(batch.params, BoundContext(
            seq_len=steps, drive_max=result.drive_max))
        columns = {
            "lipschitz_bound": bound,
            "lipschitz_local_max": result.lipschitz_local_max,
            "lipschitz_local_mean": result.lipschitz_local_mean,
            "cost_growth_log10": cost_growth_log10(bound, batch.seq_len),
            "cost_growth_log10_local": cost_growth_log10(result.lipschitz_local_max,
                                                         batch.seq_len),
        }
        return Outcome({k: batch.flat(v) for k, v in columns.items()},
                       ~batch.flat(result.finite))
