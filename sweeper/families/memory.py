"""The memory family: Jaeger's capacity, the memory horizon of the pass, and the attractors
reached under the task's constant input."""

from __future__ import annotations

from ..columns import Column
from ..dynamics import PassNeeds
from ..memory import attractor_count, memory_capacity
from ..status import DIVERGED
from ._base import Batch, Family, Outcome

_FAMILY = "memory"


class Memory(Family):
    name = _FAMILY
    needs = PassNeeds(tangents=True, jacobian_samples=False)
    failure = DIVERGED
    columns = (
        Column("memory_capacity", "double", "", "Jaeger's memory capacity: sum of held-out r^2 "
               "of ridge readouts of u_{t-k}, k = 1..2D", _FAMILY),
        Column("memory_horizon", "double", "steps", "steps until an initial perturbation "
               "shrinks below horizon_tol (1e-3), capped at N", _FAMILY),
        Column("memory_horizon_capped", "bool", "", "the perturbation was still above "
               "horizon_tol after N steps", _FAMILY),
        Column("attractor_count", "double", "", "attractors reached from 16 random initial "
               "states under the task's constant input, each counted once as a set: periodic "
               "runs are one attractor when one's orbit passes within 0.01 of the other's end "
               "state (the phases of one orbit); aperiodic runs (chaotic, quasi-periodic) when "
               "their per-unit time means and second moments over 350 steps agree within 4 "
               "standard errors (batch means); a run still moving after the transient adds "
               "none", _FAMILY),
        Column("chaotic_attractors", "double", "", "how many of those attractors are chaotic: "
               "the mean finite-time Lyapunov exponent of their runs over the 100-step window "
               "exceeds 0.01 nats/step (they do not count as memory, see regions)", _FAMILY),
        Column("orbit_period", "double", "steps", "period of the attractor reached most often: "
               "1 fixed point, p a period-p orbit, 0 no period up to W/2 = 50 steps: "
               "quasi-periodic or chaotic", _FAMILY),
        Column("asymptotic_states", "double", "", "end states a readout could tell apart, "
               "phases of periodic orbits included", _FAMILY),
        Column("memory_curve", "list<double>", "", "r^2 of the readout of u_{t-k} for each "
               "delay k = 1..2D", _FAMILY),
    )

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
