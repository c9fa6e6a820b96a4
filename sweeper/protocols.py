"""The protocols of the metric families: plain frozen configurations that check themselves on
construction. No torch here, so a search-space file is validated, and a finished sweep read,
without loading the numerics (the families that run these protocols import them from here)."""

from __future__ import annotations

from dataclasses import dataclass

from . import errors
from .errors import require

#: Learning-rate schedules of :class:`TrainingConfig`.
SCHEDULES = ("constant", "cosine")


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

    def __post_init__(self):
        for name in ("burn_in", "lipschitz_samples"):
            errors.integer(name, getattr(self, name), minimum=0)
        for name in ("n_trajectories", "lyapunov_k", "lanczos_steps"):
            errors.integer(name, getattr(self, name))
        errors.number("horizon_tol", self.horizon_tol, above=0, below=1)


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

    def __post_init__(self):
        errors.optional_integer("washout", self.washout)
        for name in ("train", "test", "attractor_inits", "attractor_steps", "attractor_window",
                     "chunk_bytes"):
            errors.integer(name, getattr(self, name))
        errors.optional_integer("max_delay", self.max_delay)
        errors.number("ridge", self.ridge, at_least=0)
        errors.number("attractor_chaos", self.attractor_chaos, at_least=0)
        errors.number("attractor_tol", self.attractor_tol, above=0)
        errors.integer("attractor_batches", self.attractor_batches, minimum=2)
        errors.number("attractor_se", self.attractor_se, above=0)
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

    def __post_init__(self):
        errors.integer("points", self.points, minimum=3)
        errors.number("radius", self.radius, above=0)
        errors.number("random_radius", self.random_radius, above=0)
        errors.integer("batch_size", self.batch_size)
        errors.integer("hessian_steps", self.hessian_steps, minimum=0)
        errors.integer("data_seed", self.data_seed, minimum=0)


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

    def __post_init__(self):
        for name in ("steps", "batch_size", "val_batch_size"):
            errors.integer(name, getattr(self, name))
        errors.number("lr", self.lr, above=0)
        errors.number("eps", self.eps, above=0)
        errors.choice("schedule", self.schedule, SCHEDULES)
        if self.clip is not None:
            errors.number("clip", self.clip, above=0)
        if self.threshold is not None:
            errors.number("threshold", self.threshold)
        errors.integer("data_seed", self.data_seed, minimum=0)
