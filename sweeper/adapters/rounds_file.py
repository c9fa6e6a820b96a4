"""A refined sweep's rounds in ``<out>/rounds.json``: which trials each round proposed, so a
resume runs a killed round's trials again as they were and ``aggregate`` knows which trials
the sweep is made of. Written atomically (a temporary name, then a rename) before the
round's trials run."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write
from ..errors import SweeperInputError
from ..space import SearchSpace, Trial, stable_hash
from ..sweep import RoundLog
from .storage import location

ROUNDS_FILE = "rounds.json"


def sweep_key(space: SearchSpace) -> str:
    """What ties the rounds to one sweep: the hash of what its points measure (an edited
    axis or metric is another sweep; an edited budget or region rule is not)."""
    return stable_hash(space.measured)


class RoundsFile(RoundLog):
    """``{"sweep": key, "rounds": [[{trial_id, config, vectorized}, ...], ...]}``.

    Rounds recorded for another sweep (another key) read as none.
    """

    def __init__(self, out: str | Path, space: SearchSpace):
        self.path = location(out).resolve() / ROUNDS_FILE
        self.key = sweep_key(space)

    def rounds(self) -> list[list[Trial]]:
        try:
            stored = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SweeperInputError(f"{self.path} is not readable JSON ({exc}); it records "
                                    "a refined sweep's rounds: move it away to start the "
                                    "sweep over") from None
        if not isinstance(stored, dict) or stored.get("sweep") != self.key:
            return []
        try:
            return [[Trial.from_plain(t) for t in trials] for trials in stored["rounds"]]
        except (KeyError, TypeError) as exc:
            raise SweeperInputError(f"{self.path} does not hold rounds of trials ({exc!r}); "
                                    "move it away to start the sweep over") from None

    def record(self, index: int, trials: list[Trial]) -> None:
        kept = self.rounds()[:index]
        rounds = [[t.to_plain() for t in r] for r in [*kept, trials]]
        text = json.dumps({"sweep": self.key, "rounds": rounds}, default=str)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))


def sweep_trials(out: str | Path, space: SearchSpace) -> list[Trial]:
    """The trials a sweep is made of: the grid's, or a refined sweep's recorded rounds'."""
    if space.search.refine:
        return [t for trials in RoundsFile(out, space).rounds() for t in trials]
    return space.trials()
