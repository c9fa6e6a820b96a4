"""The protocols of the metric families: plain frozen configurations that check themselves on
construction. No torch here, so a search-space file is validated, and a finished sweep read,
without loading the numerics (the families that run these protocols import them from here).

Each config class is the one source of its fields' rules: ``RULES`` maps every field to a
check in the words of :mod:`sweeper.errors`. Construction applies them (and the rules that
tie fields together, in ``__post_init__``); the search-space validator applies the same ones
to a file's ``dynamics:``, ``memory:``, ``landscape:`` and ``training:`` mappings through
:func:`mapping_problems`, naming each field by its key path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from . import errors
from .errors import SweeperInputError, is_finite_number, require

#: Learning-rate schedules of :class:`TrainingConfig`.
SCHEDULES = ("constant", "cosine")
#: The largest integer a protocol field (or a built-in task's parameter) takes: steps, sizes
#: and counts far below it already exhaust any machine, and a file's 10**400 would otherwise
#: reach the size estimate's floats.
MAX_INTEGER = 2**31

#: A field's rule: ``rule(name, value)`` raises SweeperInputError naming ``name`` when
#: ``value`` breaks it.
Rule = Callable[[str, Any], Any]


def integer(minimum: int = 1) -> Rule:
    """An integer from ``minimum`` to MAX_INTEGER (the message names the upper bound only
    when it is the one broken)."""
    def check(name: str, value: Any) -> None:
        errors.integer(name, value, minimum=minimum)
        errors.integer(name, value, minimum=minimum, maximum=MAX_INTEGER)
    return check


def number(**bounds: float) -> Rule:
    """A finite number within ``bounds`` (the keywords of :func:`sweeper.errors.number`)."""
    return functools.partial(errors.number, **bounds)


def optional_integer(minimum: int = 1) -> Rule:
    """None (the default applies), or an integer from ``minimum`` to MAX_INTEGER."""
    def check(name: str, value: Any) -> None:
        if errors.optional_integer(name, value, minimum=minimum) is not None:
            errors.integer(name, value, minimum=minimum, maximum=MAX_INTEGER)
    return check


def optional_number(**bounds: float) -> Rule:
    """None (the feature is off), or a finite number within ``bounds``."""
    def check(name: str, value: Any) -> None:
        if value is not None:
            errors.number(name, value, **bounds)
    return check


def choice(allowed: tuple[str, ...]) -> Rule:
    """One of ``allowed``."""
    return functools.partial(errors.choice, allowed=allowed)


def flag(name: str, value: Any) -> None:
    """True or false (not 0 or 1)."""
    if not isinstance(value, bool):
        raise errors.invalid(name, value, "true or false")


def pair(name: str, value: Any) -> None:
    """Two finite numbers (a list or a tuple)."""
    if not (isinstance(value, list | tuple) and len(value) == 2
            and all(map(is_finite_number, value))):
        raise errors.invalid(name, value, "a list of 2 finite numbers")


def field_problems(cls: type, values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The rules of ``cls.RULES`` that ``values`` (field name -> value) break, one message
    each, every field named ``prefix + field``."""
    problems = []
    for name, value in values.items():
        try:
            cls.RULES[name](f"{prefix}{name}", value)
        except SweeperInputError as exc:
            problems.append(str(exc))
    return problems


def _check_fields(config: Any) -> None:
    """Raise SweeperInputError listing every field of ``config`` that breaks its rule."""
    problems = field_problems(type(config), {f.name: getattr(config, f.name)
                                             for f in fields(config)})
    require(not problems, "; ".join(problems))


def mapping_problems(cls: type, raw: Any, key: str) -> list[str]:
    """What is wrong with a search-space file's ``key:`` mapping of ``cls`` fields: not a
    mapping, unknown keys, each field's rule (named ``key.field``), then the class's rules
    between fields. Empty when ``cls`` accepts it (lists standing for tuples)."""
    if not isinstance(raw, Mapping):
        return [str(errors.invalid(key, raw, f"a mapping of {cls.__name__} fields"))]
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(raw) - set(known), key=str)
    if unknown:
        return [f"{key}: unknown keys {unknown}; allowed: {known}"]
    problems = field_problems(cls, raw, prefix=f"{key}.")
    if problems:
        return problems
    try:
        from_fields(cls, raw)
    except SweeperInputError as exc:  # a rule between fields
        return [f"{key}: {exc}"]
    return []


def from_fields(cls: type, values: Mapping[str, Any]) -> Any:
    """A config object from a file's fields (lists become the tuples it takes)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class DynamicsConfig:
    """Protocol of the dynamics pass.

    Attributes:
        burn_in: steps discarded before averaging exponents and sampling Jacobians. The
            trajectory runs burn_in + seq_len steps.
        n_trajectories: B trajectories per point; exponents and Lipschitz statistics pool them.
        lyapunov_k: number of exponents (QR re-orthonormalisation when > 1).
        lipschitz_samples: post-burn-in steps (evenly spaced) at which ||J_t||_2 is evaluated.
        lanczos_steps: Krylov dimension for ||J_t||_2 (exact when >= D).
        horizon_tol: relative size below which a perturbation counts as forgotten.
        twin: also run the two-trajectory cross-check (float64).
    """

    burn_in: int = 100
    n_trajectories: int = 1
    lyapunov_k: int = 1
    lipschitz_samples: int = 32
    lanczos_steps: int = 24
    horizon_tol: float = 1e-3
    twin: bool = False

    RULES: ClassVar[dict[str, Rule]] = {
        "burn_in": integer(minimum=0), "n_trajectories": integer(), "lyapunov_k": integer(),
        "lipschitz_samples": integer(minimum=0), "lanczos_steps": integer(),
        "horizon_tol": number(above=0, below=1), "twin": flag}

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class MemoryConfig:
    """Protocols of the memory metrics.

    Attributes:
        washout: steps discarded before fitting; must be >= max_delay so lags never wrap.
            None = max(200, max_delay).
        train, test: lengths of the fitting and the held-out segments.
        max_delay: K_max, the largest delay k (delays run 1..K_max); None = 2 * D.
        ridge: Tikhonov factor, relative to the mean diagonal of X^T X.
        chunk_bytes: points are processed in chunks whose working memory for the capacity
            (float64 normal equations and one block of states and predictions) stays below
            this size (256 MiB by default), so large grids do not exhaust memory.
        attractor_inits: M random initial states, uniform in [-1, 1]^D.
        attractor_steps: transient steps under constant input before the end states.
        attractor_window: W further steps from each end state (its continued orbit), in which
            periods (up to W // 2), returns and links between runs are looked for.
        attractor_tol: max-abs distance within which two states count as the same.
        attractor_chaos: finite-time exponent over the window (nats per step) above which an
            aperiodic run counts as on a chaotic attractor rather than still moving.
        attractor_batches: the time averages of an aperiodic run are taken over the last
            ``attractor_steps // 2`` transient steps and the window, cut into this many equal
            batches; the spread of the batch means gives each average's standard error.
        attractor_se: two aperiodic runs share an attractor when their time averages differ
            by at most this many standard errors (see :func:`attractors`).
    """

    washout: int | None = None
    train: int = 2000
    test: int = 1000
    max_delay: int | None = None
    ridge: float = 1e-8
    chunk_bytes: int = 2**28
    attractor_inits: int = 16
    attractor_steps: int = 500
    attractor_window: int = 100
    attractor_tol: float = 1e-2
    attractor_chaos: float = 0.01
    attractor_batches: int = 8
    attractor_se: float = 4.0

    RULES: ClassVar[dict[str, Rule]] = {
        "washout": optional_integer(), "train": integer(), "test": integer(),
        "max_delay": optional_integer(), "ridge": number(at_least=0),
        "chunk_bytes": integer(), "attractor_inits": integer(),
        "attractor_steps": integer(), "attractor_window": integer(),
        "attractor_tol": number(above=0), "attractor_chaos": number(at_least=0),
        "attractor_batches": integer(minimum=2), "attractor_se": number(above=0)}

    def __post_init__(self):
        _check_fields(self)
        averaged = self.attractor_steps // 2 + self.attractor_window
        require(averaged >= self.attractor_batches,
                f"MemoryConfig requires attractor_steps // 2 + attractor_window >= "
                f"attractor_batches (each batch of the time averages holds a step); got "
                f"{averaged} steps for attractor_batches={self.attractor_batches}")

    def delays(self, state_size: int) -> int:
        return self.max_delay if self.max_delay is not None else 2 * state_size

    def washout_steps(self, state_size: int) -> int:
        return self.washout if self.washout is not None else max(200, self.delays(state_size))


@dataclass(frozen=True)
class LandscapeConfig:
    """Protocol of the landscape family.

    Attributes:
        points: P slice points per direction (odd keeps alpha = 0 on the grid).
        radius: half-width of the slice along recurrent_scale (absolute, s - r .. s + r).
        random_radius: half-width along the filter-normalised direction (in units of the
            weights' own row norms).
        batch_size: sequences in the fixed data batch of the loss.
        hessian_steps: 0 skips hessian_top_eig; otherwise the Lanczos steps used when a
            point has more than ``EXACT_HESSIAN_MAX_PARAMS`` (128) parameters. Points with
            fewer (the paper's 2-unit LSTM has 40) get the exact top eigenvalue of their dense
            Hessian whatever the value (see :func:`sweeper.landscape.hessian_top_eig`).
        data_seed: seed of the data batch and of the random directions.
    """

    points: int = 41
    radius: float = 0.1
    random_radius: float = 0.5
    batch_size: int = 16
    hessian_steps: int = 20
    data_seed: int = 0

    RULES: ClassVar[dict[str, Rule]] = {
        "points": integer(minimum=3), "radius": number(above=0),
        "random_radius": number(above=0), "batch_size": integer(),
        "hessian_steps": integer(minimum=0), "data_seed": integer(minimum=0)}

    def __post_init__(self):
        _check_fields(self)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser and protocol.

    Attributes:
        steps: Adam steps; batch_size: sequences per step (a fresh batch each step, the same
            for every point); val_batch_size: sequences of the validation batch.
        lr, betas, eps: Adam. schedule: "constant" or "cosine" (decay to 0 over ``steps``).
        clip: largest gradient norm per point (None: no clipping).
        threshold: train loss that counts as reached for ``steps_to_threshold`` (None: off).
        data_seed: seed of the data stream.
    """

    steps: int = 300
    batch_size: int = 32
    val_batch_size: int = 256
    lr: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "cosine"
    clip: float | None = 1.0
    threshold: float | None = None
    data_seed: int = 0

    RULES: ClassVar[dict[str, Rule]] = {
        "steps": integer(), "batch_size": integer(), "val_batch_size": integer(),
        "lr": number(above=0), "betas": pair, "eps": number(above=0),
        "schedule": choice(SCHEDULES), "clip": optional_number(above=0),
        "threshold": optional_number(), "data_seed": integer(minimum=0)}

    def __post_init__(self):
        _check_fields(self)
