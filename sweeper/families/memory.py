"""The memory family: Jaeger's capacity, the memory horizon of the pass, and the attractors
reached under the task's constant input."""

from __future__ import annotations

from ..dynamics import PassNeeds
from ..memory import attractor_count, memory_capacity
from ..schema import FAMILY_COLUMNS
from ..status import DIVERGED
from ._base import Batch, Family, Outcome

_FAMILY = "memory"


class Memory(Family):
    name = _FAMILY
    needs = PassNeeds(tangents=True, jacobian_samples=False)
    failure = DIVERGED
    columns = FAMILY_COLUMNS[_FAMILY]

    def compute(self, batch: Batch) -> Outcome:
        config = batch.protocols.memory
        params, seeds = batch.params, batch.params.group_seeds
        capacity, curve, ok_capacity = memory_capacity(
            batch.cell, params, batch.task.input_size, batch.state_size, seeds, config)
        reached = attractor_count(batch.cell, params, batch.task.constant_input(),
                                  batch.state_size, seeds, config)
        result = batch.dynamics
        columns = {
            "memory_capacity": capacity,
            "memory_curve": curve,
            "memory_horizon": result.memory_horizon,
            "memory_horizon_capped": result.memory_horizon_capped,
            "attractor_count": reached.count,
            "chaotic_attractors": reached.chaotic,
            "orbit_period": reached.period,
            "asymptotic_states": reached.states,
        }
        ok = result.finite & ok_capacity & reached.finite
        return Outcome({k: batch.flat(v) for k, v in columns.items()}, ~batch.flat(ok))
