"""The lyapunov family: Benettin's exponents from the tangents of the pass."""

from __future__ import annotations

from ..dynamics import PassNeeds
from ..schema import FAMILY_COLUMNS
from ..status import DIVERGED
from ._base import Batch, Family, Outcome

_FAMILY = "lyapunov"


class Lyapunov(Family):
    name = _FAMILY
    needs = PassNeeds(tangents=True, jacobian_samples=False)
    failure = DIVERGED
    columns = FAMILY_COLUMNS[_FAMILY]

    def compute(self, batch: Batch) -> Outcome:
        result = batch.dynamics
        columns = {"lyapunov_max": result.lyapunov[..., 0]}
        for j in range(1, result.lyapunov.shape[-1]):
            columns[f"lyapunov_{j + 1}"] = result.lyapunov[..., j]
        if result.lyapunov_twin is not None:
            columns["lyapunov_max_twin"] = result.lyapunov_twin
        return Outcome({k: batch.flat(v) for k, v in columns.items()},
                       ~batch.flat(result.finite))
