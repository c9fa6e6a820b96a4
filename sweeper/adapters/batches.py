"""How a round's sweep trials are dealt into Tune trials (batches). Plain Python: the
packing is checked without Ray."""

from __future__ import annotations

from ..space import Trial

#: Tune trials per worker slot in a round: enough to even out trials of unequal cost and to
#: bound what a dead worker's batch sends round again, few enough to spread Tune's cost thin.
BATCHES_PER_SLOT = 4


def pack(trials: list[Trial], slots: int) -> list[list[Trial]]:
    """The trials dealt into at most ``slots * BATCHES_PER_SLOT`` batches, round robin, so
    trials of one region of the grid (of similar cost) spread over the batches."""
    n = max(1, min(len(trials), max(1, slots) * BATCHES_PER_SLOT))
    return [trials[i::n] for i in range(n)]
