"""Where a sweep's trials come from, round after round. A grid search knows all its trials
from the start and proposes nothing; a refined search (``search: {method: refine}``,
:mod:`sweeper.refine`) proposes each round from the points measured before it. The driver
runs both the same way: the known trials not yet done, then every proposed round."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import pandas as pd

from ..refine import cells_of, next_cells
from ..space import SearchSpace, Trial
from .contracts import ResultSink, RoundLog


class Round(NamedTuple):
    """A proposed round: its index (0: the first) and its trials."""

    index: int
    trials: list[Trial]


class TrialSource(ABC):
    """A sweep's trials as the driver runs them: ``known`` (every trial recorded so far) first,
    then each round ``propose`` returns, until it returns None. ``resume``, ``take`` and
    ``fail`` tell the source how trials ended (finished by an earlier driver, finished,
    failed), which a source may propose from."""

    #: Whether ``propose`` may return a round (the driver then starts the executor even
    #: when every known trial is done).
    proposes: bool = False

    @property
    @abstractmethod
    def known(self) -> list[Trial]:
        """Every trial recorded so far, in order."""

    @abstractmethod
    def propose(self) -> Round | None:
        """The next round, recorded before it is returned; None when the sweep is done."""

    def resume(self, finished: list[Trial]) -> None:  # noqa: B027  (optional)
        """These known trials were finished by an earlier driver."""

    def take(self, trial: Trial, location: str) -> None:  # noqa: B027  (optional)
        """``trial`` finished; its rows are at ``location``."""

    def fail(self, trial: Trial) -> None:  # noqa: B027  (optional)
        """``trial`` failed."""


class GridTrials(TrialSource):
    """A grid search: the space's trials, known from the start, proposing nothing."""

    def __init__(self, space: SearchSpace):
        self._trials = space.trials()

    @property
    def known(self) -> list[Trial]:
        return self._trials

    def propose(self) -> Round | None:
        return None


class Refinement(TrialSource):
    """A refined sweep's rounds (see :mod:`sweeper.refine`): each proposed from the points
    measured before it, recorded in the round log before it runs. A resume takes the
    recorded rounds as they are (the driver runs what they left undone), then goes on
    proposing."""

    proposes = True

    def __init__(self, space: SearchSpace, sink: ResultSink, log: RoundLog, resume: bool):
        self.space, self.sink, self.log = space, sink, log
        self.grid = space.grid
        self.recorded = log.rounds() if resume else []
        self.columns = [*space.axes, "region", "status", "lyapunov_max"]
        self.rows: list[pd.DataFrame] = []
        self.failed: set[tuple[int, int, int]] = set()

    @property
    def known(self) -> list[Trial]:
        return [t for trials in self.recorded for t in trials]

    def resume(self, finished: list[Trial]) -> None:
        for trial in finished:
            self.take(trial, self.sink.materialize(trial.trial_id))

    def take(self, trial: Trial, location: str) -> None:
        """A finished trial's points join what the next round is proposed from."""
        frame = self.sink.read(location)
        self.rows.append(frame[[c for c in self.columns if c in frame]])

    def fail(self, trial: Trial) -> None:
        self.failed |= cells_of(self.grid, trial.config, trial.vectorized)

    def propose(self) -> Round | None:
        spent = sum(t.n_points for t in self.known)
        points = pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame(
            columns=self.columns)
        cells = next_cells(self.grid, points, self.space.search, self.space.planned_points
                           - spent, self.failed, self.space.rules)
        if not cells:
            return None
        trials = self.space.cell_trials(cells)
        self.log.record(len(self.recorded), trials)
        self.recorded.append(trials)
        return Round(len(self.recorded) - 1, trials)


def trial_source(space: SearchSpace, sink: ResultSink, log: RoundLog,
                 resume: bool) -> TrialSource:
    """The source of ``space``'s trials: its grid, or its refinement (rounds recorded in
    ``log``; taken as recorded when ``resume``)."""
    if space.search.refine:
        return Refinement(space, sink, log, resume)
    return GridTrials(space)
