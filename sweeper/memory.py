"""Memory metrics: Jaeger's memory capacity and the count of attractors under constant input.
(The memory horizon comes out of the dynamics pass, see :mod:`sweeper.dynamics`.)"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .cells._base import Cell
from .dynamics import rollout
from .errors import require
from .params import CellParams
from .seeding import generator

Tensor = torch.Tensor


@dataclass(frozen=True)
class MemoryConfig:
    """Protocols of the memory metrics.

    Attributes:
        washout: steps discarded before fitting; must be >= max_delay so lags never wrap.
            None = max(200, max_delay).
        train, test: lengths of the fitting and the held-out segments.
        max_delay: K_max, the largest delay k (delays run 1..K_max); None = 2 * D.
        ridge: Tikhonov factor, relative to the mean diagonal of X^T X.
        chunk_bytes: points are processed in chunks whose stored float64 states stay below
            this size (256 MiB by default), so large grids do not exhaust memory.
        attractor_inits: M random initial states, uniform in [-1, 1]^D.
        attractor_steps: steps under constant input before end states are compared.
        attractor_tol: two end states are one attractor when their max-abs distance is <= tol.
    """

    washout: int | None = None
    train: int = 2000
    test: int = 1000
    max_delay: int | None = None
    ridge: float = 1e-8
    chunk_bytes: int = 2**28
    attractor_inits: int = 16
    attractor_steps: int = 500
    attractor_tol: float = 1e-2

    def __post_init__(self):
        require(self.washout is None or (isinstance(self.washout, int) and self.washout >= 1),
                f"MemoryConfig requires washout >= 1 or None, got washout={self.washout!r}")
        for name in ("train", "test", "attractor_inits", "attractor_steps"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                    f"MemoryConfig requires an integer {name} >= 1, got {name}={value!r}")
        require(self.max_delay is None or (isinstance(self.max_delay, int) and self.max_delay >= 1),
                f"MemoryConfig requires max_delay >= 1 or None, got max_delay={self.max_delay!r}")
        require(self.ridge >= 0, f"MemoryConfig requires ridge >= 0, got ridge={self.ridge!r}")
        require(self.attractor_tol > 0,
                "MemoryConfig requires attractor_tol > 0, "
                f"got attractor_tol={self.attractor_tol!r}")

    def delays(self, state_size: int) -> int:
        return self.max_delay if self.max_delay is not None else 2 * state_size

    def washout_steps(self, state_size: int) -> int:
        return self.washout if self.washout is not None else max(200, self.delays(state_size))


def memory_capacity(cell: Cell, params: CellParams, input_size: int, state_size: int,
                    seeds: list[int], config: MemoryConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Jaeger's (2001) short-term memory capacity of every point.

    Protocol: u_t ~ U(-1, 1) i.i.d. drives input channel 0 (others zero) through the input
    weights, x_0 = 0. After ``washout`` steps a ridge readout [x_t, 1] -> u_{t-k} is fitted on
    ``train`` steps for each k = 1..K_max, and r_k^2 (squared correlation) is measured on the
    next ``test`` steps. x_t is the state after u_t, so k = 0 (excluded) is the current input
    and a full-rank linear network scores about D - 1.

    Returns:
        capacity (G, M), curve (G, M, K_max) of r_k^2, finite (G, M) - all float64 on the
        params' device; NaN for points whose state diverged.
    """
    delays = config.delays(state_size)
    washout = config.washout_steps(state_size)
    require(washout >= delays,
            f"MemoryConfig requires washout >= max_delay so lags never wrap; got washout="
            f"{washout}, max_delay={delays}")
    groups, members = params.recurrent_scale.shape
    steps = washout + config.train + config.test
    u = torch.stack([torch.rand(steps, generator=generator(s, "memory-inputs"),
                                dtype=torch.float64) * 2 - 1 for s in seeds])  # (G, T)
    per_point = (config.train + config.test) * (state_size + 1) * 8
    chunk = max(1, config.chunk_bytes // per_point)
    # Chunk along the points of a base draw when there are several, else along the draws;
    # every output has groups on axis 0 and members on axis 1.
    parts = []
    if members > 1:
        width, axis = max(1, chunk // groups), 1
        for start in range(0, members, width):
            sub = params.subset(members=slice(start, start + width))
            parts.append(_capacity(cell, sub, u, input_size, state_size, config, delays))
    else:
        axis = 0
        for start in range(0, groups, chunk):
            sub = params.subset(groups=slice(start, start + chunk))
            parts.append(_capacity(cell, sub, u[start:start + chunk], input_size, state_size,
                                   config, delays))
    capacity, curve, finite = (torch.cat(tensors, dim=axis) for tensors in zip(*parts, strict=True))
    return capacity, curve, finite


def _capacity(cell: Cell, params: CellParams, u: Tensor, input_size: int, state_size: int,
              config: MemoryConfig, delays: int) -> tuple[Tensor, Tensor, Tensor]:
    """memory_capacity for one chunk of points; u is (G, T) for this chunk's groups."""
    washout = config.washout_steps(state_size)
    groups, members = params.recurrent_scale.shape
    steps = u.shape[-1]
    inputs = torch.zeros(groups, 1, steps, input_size, dtype=torch.float64)
    inputs[..., 0] = u[:, None]
    device, dtype = params.device, params.dtype
    x0 = torch.zeros(groups, members, 1, state_size, dtype=dtype, device=device)
    states = rollout(cell, params, inputs.to(device), x0, keep_from=washout)[:, :, 0]
    finite = torch.isfinite(states).all(-1).all(-1)
    states = torch.where(finite[..., None, None], states, torch.zeros_like(states)).double()
    ones = torch.ones(*states.shape[:-1], 1, dtype=torch.float64, device=device)
    design = torch.cat([states, ones], dim=-1)  # (G, M, T', D + 1)

    times = torch.arange(washout, steps)
    lags = times[:, None] - torch.arange(1, delays + 1)[None, :]
    targets = u[:, lags].to(device)[:, None]  # (G, 1, T', K)

    fit, held = slice(0, config.train), slice(config.train, None)
    x_fit, y_fit = design[..., fit, :], targets[..., fit, :]
    gram = x_fit.mT @ x_fit
    size = gram.shape[-1]
    scale = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1).clamp(min=1e-300)
    gram = gram + config.ridge * scale[..., None, None] * torch.eye(size, dtype=gram.dtype,
                                                                    device=device)
    weights = torch.linalg.solve(gram, x_fit.mT @ y_fit)
    pred = design[..., held, :] @ weights
    y = targets[..., held, :].expand_as(pred)
    pred_c = pred - pred.mean(-2, keepdim=True)
    y_c = y - y.mean(-2, keepdim=True)
    cov = (pred_c * y_c).sum(-2)
    var = (pred_c**2).sum(-2) * (y_c**2).sum(-2)
    curve = torch.where(var > 0, cov**2 / torch.where(var > 0, var, torch.ones_like(var)),
                        torch.zeros_like(var))
    nan = torch.full_like(curve, math.nan)
    curve = torch.where(finite[..., None], curve, nan)
    return curve.sum(-1), curve, finite


def count_clusters(points: Tensor, tol: float) -> Tensor:
    """Number of clusters among M points (..., M, D): greedy leaders within max-abs ``tol``.

    A point starts a new cluster unless it lies within ``tol`` of an earlier leader. Batches
    with any non-finite point give NaN.
    """
    finite = torch.isfinite(points).all(-1).all(-1)
    clean = torch.where(finite[..., None, None], points, torch.zeros_like(points))
    close = (clean[..., :, None, :] - clean[..., None, :, :]).abs().amax(-1) <= tol
    count = clean.shape[-2]
    leader = torch.zeros(clean.shape[:-1], dtype=torch.bool, device=clean.device)
    for j in range(count):
        covered = (close[..., j, :j] & leader[..., :j]).any(-1)
        leader[..., j] = ~covered
    result = leader.sum(-1).double()
    return torch.where(finite, result, torch.full_like(result, math.nan))


def attractor_count(cell: Cell, params: CellParams, constant_input: Tensor, state_size: int,
                    seeds: list[int], config: MemoryConfig) -> tuple[Tensor, Tensor]:
    """Distinct end states from ``attractor_inits`` random initial states, (G, M) float64.

    The input is held at ``constant_input`` (I,) for ``attractor_steps`` steps; end states
    closer than ``attractor_tol`` (max-abs) count as one. Several attractors mean memory through
    multistability; a chaotic attractor shows up as many distinct end states. Returns
    (count, finite).
    """
    groups, members = params.recurrent_scale.shape
    inits = config.attractor_inits
    x0 = torch.stack([torch.rand(inits, state_size, generator=generator(s, "attractor-states"),
                                 dtype=torch.float64) * 2 - 1 for s in seeds])
    x0 = x0[:, None].expand(groups, members, inits, state_size).to(params.device, params.dtype)
    inputs = constant_input.reshape(1, 1, 1, -1).expand(1, inits, config.attractor_steps, -1)
    end = rollout(cell, params, inputs.to(params.device), x0,
                  keep_from=config.attractor_steps - 1)[..., 0, :]
    finite = torch.isfinite(end).all(-1).all(-1)
    return count_clusters(end.double(), config.attractor_tol), finite
