"""The lyapunov family: Benettin's exponents from the tangents of the pass, and what the
measured spectrum says (:mod:`sweeper.spectrum`)."""

from __future__ import annotations

from ..dynamics import PassNeeds
from ..schema import FAMILY_COLUMNS
from ..spectrum import entropy_rate, kaplan_yorke_dimension, positive_count
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
        # k = D exponents are the whole spectrum: nothing beyond them can be missing.
        complete = result.lyapunov.shape[-1] == batch.state_size
        columns["lyapunov_dimension"] = kaplan_yorke_dimension(result.lyapunov, complete)
        columns["entropy_rate"] = entropy_rate(result.lyapunov, complete)
        columns["n_positive_exponents"] = positive_count(result.lyapunov, complete)
        if result.lyapunov_twin is not None:
            columns["lyapunov_max_twin"] = result.lyapunov_twin
        return Outcome({k: batch.flat(v) for k, v in columns.items()},
                       ~batch.flat(result.finite))
