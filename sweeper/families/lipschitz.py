"""The lipschitz family: the cell's sound bound and the local ||J_t||_2 along the pass."""

from __future__ import annotations

from ..cells import BoundContext
from ..columns import Column
from ..dynamics import PassNeeds
from ..lipschitz import cost_growth_log10
from ..status import DIVERGED
from ._base import Batch, Family, Outcome

_FAMILY = "lipschitz"


class Lipschitz(Family):
    name = _FAMILY
    needs = PassNeeds(tangents=False, jacobian_samples=True)
    failure = DIVERGED
    kept_on_divergence = ("lipschitz_bound", "cost_growth_log10")
    columns = (
        Column("lipschitz_bound", "double", "", "sound analytic bound of sup ||df/dx||_2 over "
               "the reachable set (derivation in each cell's docstring)", _FAMILY),
        Column("lipschitz_local_max", "double", "", "largest ||J_t||_2 at 32 evenly "
               "spaced post-burn-in steps (Lanczos)", _FAMILY),
        Column("lipschitz_local_mean", "double", "", "geometric mean of ||J_t||_2 at the "
               "sampled steps", _FAMILY),
        Column("cost_growth_log10", "double", "log10", "log10 of sum_{k<N} L^k with L the "
               "bound: the paper's growth of the cost's Lipschitz constant", _FAMILY),
        Column("cost_growth_log10_local", "double", "log10", "the same with L the local "
               "maximum", _FAMILY),
    )

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
