"""A task whose inputs fail for one seed: drives the failure paths of a sweep in tests."""

from __future__ import annotations

import dataclasses

from tasks import Noise


@dataclasses.dataclass(frozen=True)
class FailOnSeed(Noise):
    name = "fail_on_seed"
    bad_seed: int = 1

    def inputs(self, seed, n_trajectories, steps):
        if seed == self.bad_seed:
            raise RuntimeError(f"planted failure for seed {seed}")
        return super().inputs(seed, n_trajectories, steps)
