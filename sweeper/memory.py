"""Memory metrics: Jaeger's memory capacity, and the attractors reached under constant input
(their count, the period of the main one, and the asymptotic states a readout could tell apart).
(The memory horizon comes out of the dynamics pass, see :mod:`sweeper.dynamics`.)"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import errors
from .cells._base import Cell
from .dynamics import drive_function, input_projection, rollout
from .errors import require
from .lyapunov import renormalise_
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
        attractor_steps: transient steps under constant input before the end states.
        attractor_window: W further steps from each end state (its continued orbit), in which
            periods (up to W // 2), returns and links between runs are looked for.
        attractor_tol: max-abs distance within which two states count as the same.
        attractor_chaos: finite-time exponent over the window (nats per step) above which an
            aperiodic run counts as on a chaotic attractor rather than still moving.
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

    def __post_init__(self):
        errors.optional_integer("washout", self.washout)
        for name in ("train", "test", "attractor_inits", "attractor_steps", "attractor_window",
                     "chunk_bytes"):
            errors.integer(name, getattr(self, name))
        errors.optional_integer("max_delay", self.max_delay)
        errors.number("ridge", self.ridge, at_least=0)
        errors.number("attractor_chaos", self.attractor_chaos, at_least=0)
        errors.number("attractor_tol", self.attractor_tol, above=0)

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


@dataclass(frozen=True)
class Attractors:
    """Where the runs from M random initial states settle, per point; all (G, M).

    Attributes:
        count: attractor_count, the number of distinct attractors (float64).
        period: orbit_period of the attractor reached from the most initial states: 1 for a
            fixed point, p for a period-p orbit, 0 when no period <= window / 2 (float64).
        states: asymptotic_states, end states a readout could tell apart: p for each period-p
            attractor plus the tol-distinct end states on each aperiodic one (float64).
        finite: bool, every run stayed finite; the three counts are NaN where it is False.
    """

    count: Tensor
    period: Tensor
    states: Tensor
    finite: Tensor


def attractor_count(cell: Cell, params: CellParams, constant_input: Tensor, state_size: int,
                    seeds: list[int], config: MemoryConfig) -> Attractors:
    """:func:`attractors` from ``attractor_inits`` initial states drawn uniformly in [-1, 1]^D
    per seed (the points of a seed share them), under ``constant_input`` (I,)."""
    groups, members = params.recurrent_scale.shape
    inits = config.attractor_inits
    x0 = torch.stack([torch.rand(inits, state_size, generator=generator(s, "attractor-states"),
                                 dtype=torch.float64) * 2 - 1 for s in seeds])
    x0 = x0[:, None].expand(groups, members, inits, state_size).to(params.device, params.dtype)
    return attractors(cell, params, constant_input, x0, config)


def attractors(cell: Cell, params: CellParams, constant_input: Tensor, x0: Tensor,
               config: MemoryConfig) -> Attractors:
    """Count the attractors reached from the initial states x0 (G, M, B, D), input held at
    ``constant_input`` (I,).

    Each run makes ``attractor_steps`` transient steps to its end state e_i, then W =
    ``attractor_window`` more steps (its continued orbit). Closeness is max-abs distance
    <= ``attractor_tol``, compared in float64. Per run i:

    - period p_i: the smallest p <= W // 2 such that the orbit is back within tol of e_i at
      every multiple of p in the window, and e_i is within tol of the orbit's limit, judged
      from the drift over the window and the contraction rate (see :func:`_periods`): a slow
      drift is no fixed point; 0 if none;
    - recurrent: aperiodic, but the orbit leaves the tol-ball around e_i and comes back
      (quasi-periodic, or a period longer than W / 2);
    - chaotic: aperiodic, and the finite-time exponent of a tangent vector over the window
      exceeds ``attractor_chaos`` (nats per step);
    - on an attractor when periodic, recurrent or chaotic. Any other run is still moving
      (converging slowly, or a transient longer than the protocol) and is left out: it
      never adds an attractor.

    Runs i and j share an attractor when both are on one and the continued orbit of either
    comes within tol of the other's end state; the attractors are the connected components
    of that relation, so the p phases of a periodic orbit are one attractor. When no run is on
    an attractor, count is 1 (nothing settled, and nothing tells the runs apart as
    multistable), period 0, and states the tol-distinct end states.

    A high-dimensional chaotic attractor is seldom revisited within tol in W steps, so its
    runs may count as several attractors; such points are chaotic (region II) by lambda_1
    anyway.

    Example:
        x' = tanh(w x) with w < -1 has the period-2 orbit {x*, -x*}: count 1, period 2,
        states 2; with w > 1 the fixed points +-x*: count 2, period 1, states 2.
    """
    groups, members, inits, size = x0.shape
    window, tol = config.attractor_window, config.attractor_tol
    device = params.device
    inputs = constant_input.reshape(1, 1, 1, -1).expand(1, inits, 1, -1).to(device)
    drive = drive_function(params, input_projection(params, inputs))(0)
    x = x0.to(device, params.dtype)
    for _ in range(config.attractor_steps):
        x, _ = cell.step(params, x, drive)
    end = x.double()
    end_sq = (end**2).sum(-1)
    finite = torch.isfinite(end).all(-1)
    # A fixed, generic start direction for the tangent (the exponent forgets it).
    v = torch.linspace(1.0, 2.0, size, dtype=params.dtype, device=device)
    v = (v / v.norm()).expand(groups, members, inits, 1, size).clone()
    growth = torch.zeros(groups, members, inits, dtype=torch.float64, device=device)
    away = torch.empty(window, groups, members, inits, dtype=torch.float64, device=device)
    linked = torch.zeros(groups, members, inits, inits, dtype=torch.bool, device=device)
    for w in range(window):
        x, _, v = cell.step_tangent(params, x, drive, v)
        growth += renormalise_(v)[..., 0].double()
        state = x.double()
        finite &= torch.isfinite(state).all(-1)
        away[w] = (state - end).abs().amax(-1)
        # max-abs <= tol implies squared distance <= D tol^2: a cheap screen by one product,
        # so the exact check runs only for the few pairs that pass it and are not yet linked.
        state_sq = (state**2).sum(-1)
        square = state_sq[..., :, None] + end_sq[..., None, :] - 2 * state @ end.mT
        slack = 1e-9 * (state_sq[..., :, None] + end_sq[..., None, :])
        screen = (square <= size * tol**2 + slack) & ~linked
        rows = screen.any(-1).nonzero(as_tuple=True)
        if rows[0].numel():
            near = (state[rows][:, None, :] - end[rows[:2]]).abs().amax(-1) <= tol
            linked[rows] |= near
    return _settle(away, linked, growth / window, end, finite, config)


def _periods(away: Tensor, exponent: Tensor, tol: float) -> Tensor:
    """Smallest p <= W // 2 at whose every multiple the run is back within tol of its end
    state (``away`` (W, ...) is the distance to it) and whose end state is within tol of its
    limit; 0 if none.

    The second test judges convergence: with k = W // p, the drift d = away[k p - 1] over k
    periods and the contraction q = exp(min(exponent, 0) k p) over them, the end state lies
    about d / (1 - q) from the limit. A neutral orbit (q = 1) must repeat to rounding.
    """
    window = away.shape[0]
    period = torch.zeros(away.shape[1:], dtype=torch.long, device=away.device)
    for p in range(window // 2, 0, -1):
        span = window // p * p
        shrink = torch.exp(exponent.clamp(max=0) * span)
        converged = away[span - 1] <= tol * (1 - shrink).clamp(min=1e-6)
        period = torch.where((away[p - 1::p] <= tol).all(0) & converged, p, period)
    return period


def _settle(away: Tensor, linked: Tensor, exponent: Tensor, end: Tensor, finite: Tensor,
            config: MemoryConfig) -> Attractors:
    """Attractors as connected components of ``linked`` (..., B, B) among settled runs."""
    inits = end.shape[-2]
    period = _periods(away, exponent, config.attractor_tol)
    back = away <= config.attractor_tol
    left = (~back).to(torch.uint8).cummax(0).values.bool()  # has left the tol-ball by w
    returned = (back[1:] & left[:-1]).any(0)
    aperiodic = period == 0
    settled = ~aperiodic | returned | (exponent > config.attractor_chaos)
    settled &= torch.isfinite(end).all(-1)
    pair = settled[..., :, None] & settled[..., None, :]
    eye = torch.eye(inits, dtype=torch.bool, device=end.device)
    reach = (linked | linked.mT | eye) & pair
    for _ in range(max(1, math.ceil(math.log2(inits)))):
        reach = reach | ((reach.double() @ reach.double()) > 0)
    earlier = torch.ones(inits, inits, dtype=torch.bool, device=end.device).tril(-1)
    first = settled & ~(reach & earlier).any(-1)  # the first run of each attractor
    count = first.sum(-1)
    period_of = (reach * period[..., None, :]).amax(-1)  # the period of each run's attractor
    size_of = reach.sum(-1)
    rank = torch.arange(inits, 0, -1, device=end.device)
    score = torch.where(first, size_of * (inits + 1) + rank, torch.zeros_like(size_of))
    largest = score.argmax(-1, keepdim=True)
    point_period = torch.where(count > 0, period_of.gather(-1, largest)[..., 0], 0)
    # Aperiodic attractors show as many end states as are tol-distinct; with nothing settled,
    # all runs form the one unconfirmed attractor.
    none = (count == 0)[..., None]
    member = torch.where(none, torch.ones_like(settled), settled & (period_of == 0))
    same = torch.where(none[..., None], torch.ones_like(reach), reach)
    close = (end[..., :, None, :] - end[..., None, :, :]).abs().amax(-1) <= config.attractor_tol
    leader = torch.zeros_like(settled)
    for j in range(inits):
        covered = (close[..., j, :j] & same[..., j, :j] & leader[..., :j]).any(-1)
        leader[..., j] = member[..., j] & ~covered
    phases = torch.where(first, period_of, 0).sum(-1) + leader.sum(-1)
    ok = finite.all(-1)
    nan = torch.full(ok.shape, math.nan, dtype=torch.float64, device=end.device)

    def masked(value: Tensor) -> Tensor:
        return torch.where(ok, value.double(), nan)

    return Attractors(masked(count.clamp(min=1)), masked(point_period), masked(phases), ok)
