"""A task whose inputs fail for one seed: drives the failure paths of a sweep in tests."""

from __future__ import annotations

import dataclasses

from rnn_sweeper_tasks import Noise


@dataclasses.dataclass(frozen=True)
class FailOnSeed(Noise):
    name = "fail_on_seed"
    bad_seed: int = 1

    def inputs(self, seed, n_trajectories, steps):
        if seed == self.bad_seed:
            raise RuntimeError(f"planted failure for seed {seed}")
        return super().inputs(seed, n_trajectories, steps)


@dataclasses.dataclass(frozen=True)
class KillWorkerOnce(Noise):
    """SIGKILLs the process that draws the inputs, once per seed: the first attempt of a
    trial dies like a crashed worker. Markers live in $SWEEPER_TEST_MARKERS. Ray only."""

    name = "kill_worker_once"

    def inputs(self, seed, n_trajectories, steps):
        import os
        import signal
        from pathlib import Path

        marker = Path(os.environ["SWEEPER_TEST_MARKERS"]) / f"seed-{seed}"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().inputs(seed, n_trajectories, steps)


@dataclasses.dataclass(frozen=True)
class KillWorkerAlways(Noise):
    """SIGKILLs the process that draws the inputs of ``bad_seed`` every time, counting the
    deaths in $SWEEPER_TEST_MARKERS/deaths-<seed>: a trial that kills its own worker (as one
    running out of memory would). Ray only."""

    name = "kill_worker_always"
    bad_seed: int = 1

    def inputs(self, seed, n_trajectories, steps):
        import os
        import signal
        from pathlib import Path

        if seed == self.bad_seed:
            marker = Path(os.environ["SWEEPER_TEST_MARKERS"]) / f"deaths-{seed}"
            with marker.open("a") as deaths:
                deaths.write(f"{os.getpid()}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().inputs(seed, n_trajectories, steps)


@dataclasses.dataclass(frozen=True)
class Slow(Noise):
    """Noise whose inputs take ``delay`` seconds to draw: trials long enough to lose a node or
    a cluster in the middle of a sweep."""

    name = "slow"
    delay: float = 1.0

    def inputs(self, seed, n_trajectories, steps):
        import time

        time.sleep(self.delay)
        return super().inputs(seed, n_trajectories, steps)
