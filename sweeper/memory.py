"""Memory metrics: Jaeger's memory capacity, and the attractors reached under constant input
(their count, the period of the main one, and the asymptotic states a readout could tell apart).
(The memory horizon comes out of the dynamics pass, see :mod:`sweeper.dynamics`.)"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .cells._base import Cell
from .dynamics import drive_function, input_projection
from .errors import require
from .lyapunov import renormalise_
from .params import CellParams
from .protocols import MemoryConfig
from .seeding import generator

Tensor = torch.Tensor


def memory_capacity(cell: Cell, params: CellParams, input_size: int, state_size: int,
                    seeds: list[int], config: MemoryConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Jaeger's (2001) short-term memory capacity of every point.

    Protocol: u_t ~ U(-1, 1) i.i.d. drives input channel 0 (others zero) through the input
    weights, x_0 = 0. After ``washout`` steps a ridge readout [x_t, 1] -> u_{t-k} is fitted on
    ``train`` steps for each k = 1..K_max, and r_k^2 (squared correlation) is measured on the
    next ``test`` steps. x_t is the state after u_t, so k = 0 (excluded) is the current input
    and a full-rank linear network scores about D - 1.

    The states are never stored whole: every block of ``_BLOCK`` steps is folded into the
    float64 normal equations (X^T X and, for all delays at once, X^T Y, Y being the Hankel
    matrix of the one input sequence a base draw's points share), and on the held-out segment
    into the sums that give each r_k^2. The numbers equal the plain fit (stack the states,
    solve, predict, correlate) up to float64 rounding.

    Returns:
        capacity (G, M), curve (G, M, K_max) of r_k^2, finite (G, M) - all float64 on the
        params' device; NaN for points whose state diverged.

    Raises:
        SweeperInputError: ``washout`` < ``max_delay``.
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
    chunk = max(1, config.chunk_bytes // _bytes_per_point(state_size, delays, params.dtype))
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


#: Steps of states one block holds before they are folded into the sums: long enough for
#: efficient matrix products, short enough that the block stays small next to the sums.
_BLOCK = 128


def _bytes_per_point(state_size: int, delays: int, dtype: torch.dtype) -> int:
    """Working memory of one point in :func:`_capacity`: the float64 normal equations
    (D + 1) x (D + 1 + K) and one block of states (kept, float64, transposed) and
    predictions."""
    size = state_size + 1
    itemsize = torch.finfo(dtype).bits // 8
    return 8 * size * (size + delays) + _BLOCK * (state_size * (itemsize + 16) + 16 * delays)


def _advance(cell: Cell, params: CellParams, drive, x: Tensor, start: int, stop: int,
             buffer: Tensor | None = None) -> Tensor:
    """Steps start..stop-1 from x (G, M, 1, D); the states go to buffer[:, i] (G, n, M, D),
    time before points, so that a draw's block is one (n, M D) matrix."""
    for i, t in enumerate(range(start, stop)):
        x = cell.step(params, x, drive(t))[0]
        if buffer is not None:
            buffer[:, i] = x[:, :, 0]
    return x


def _hankel(u: Tensor, start: int, stop: int, delays: int) -> Tensor:
    """Targets y[t, k] = u[t - k] for t in [start, stop), k = 1..K: (G, n, K)."""
    times = torch.arange(start, stop, device=u.device)
    return u[:, times[:, None] - torch.arange(1, delays + 1, device=u.device)[None, :]]


def _capacity(cell: Cell, params: CellParams, u: Tensor, input_size: int, state_size: int,
              config: MemoryConfig, delays: int) -> tuple[Tensor, Tensor, Tensor]:
    """memory_capacity for one chunk of points; u is (G, T) for this chunk's groups."""
    washout = config.washout_steps(state_size)
    groups, members = params.recurrent_scale.shape
    size, steps = state_size, u.shape[-1]
    device, dtype, f64 = params.device, params.dtype, torch.float64
    inputs = torch.zeros(groups, 1, steps, input_size, dtype=f64)
    inputs[..., 0] = u[:, None]
    drive = drive_function(params, input_projection(params, inputs.to(device)))
    u = u.to(device)
    x = _advance(cell, params, drive, torch.zeros(groups, members, 1, size, dtype=dtype,
                                                  device=device), 0, washout)
    buffer = torch.empty(groups, _BLOCK, members, size, dtype=dtype, device=device)

    # Normal equations of the fit, [X 1]^T [X 1] and [X 1]^T Y, accumulated block by block.
    # X^T Y of one draw's points is one product (M D x n) @ (n x K): Y is shared.
    fit_end = washout + config.train
    gram = torch.zeros(groups, members, size, size, dtype=f64, device=device)
    total = torch.zeros(groups, members, size, dtype=f64, device=device)
    cross = torch.zeros(groups, members * size, delays, dtype=f64, device=device)
    target_total = torch.zeros(groups, delays, dtype=f64, device=device)
    for start in range(washout, fit_end, _BLOCK):
        stop = min(start + _BLOCK, fit_end)
        x = _advance(cell, params, drive, x, start, stop, buffer)
        block = buffer[:, :stop - start].double()  # (G, n, M, D)
        targets = _hankel(u, start, stop, delays)
        for g in range(groups):
            gram[g].baddbmm_(block[g].permute(1, 2, 0), block[g].transpose(0, 1))
        total += block.sum(1)
        cross.baddbmm_(block.reshape(groups, stop - start, -1).mT, targets)
        target_total += targets.sum(-2)
    # A non-finite state makes its point's sum of states non-finite (float64 sums of
    # float32 states cannot overflow), so the sums stand for an isfinite pass over the states.
    finite = torch.isfinite(total).all(-1)
    weights, shift = _ridge_solve(gram, total, cross, target_total, finite, config)

    # Held-out r_k^2 from running sums of q = prediction - shift (shift ~ its mean, so the
    # sums do not cancel) and of the targets y.
    sums = {name: torch.zeros(groups, members, delays, dtype=f64, device=device)
            for name in ("q", "qq", "qy")}
    held_total = torch.zeros(groups, members, size, dtype=f64, device=device)
    y_sum = torch.zeros(groups, 1, delays, dtype=f64, device=device)
    y_sq = torch.zeros_like(y_sum)
    slope, offset = weights[..., :size, :], weights[..., size:, :] - shift[..., None, :]
    for start in range(fit_end, steps, _BLOCK):
        stop = min(start + _BLOCK, steps)
        x = _advance(cell, params, drive, x, start, stop, buffer)
        block = buffer[:, :stop - start].double()
        held_total += block.sum(1)
        y = _hankel(u, start, stop, delays)
        for g in range(groups):
            q = torch.baddbmm(offset[g], block[g].transpose(0, 1), slope[g])  # (M, n, K)
            sums["q"][g] += q.sum(-2)
            sums["qq"][g] += q.square().sum(-2)
            sums["qy"][g] += q.mul_(y[g]).sum(-2)
        y_sum += y.sum(-2)[:, None]
        y_sq += y.square().sum(-2)[:, None]
    finite &= torch.isfinite(held_total).all(-1)
    held = steps - fit_end
    cov = sums["qy"] - sums["q"] * y_sum / held
    var = (sums["qq"] - sums["q"] ** 2 / held) * (y_sq - y_sum**2 / held)
    curve = torch.where(var > 0, cov**2 / torch.where(var > 0, var, torch.ones_like(var)),
                        torch.zeros_like(var))
    curve = torch.where(finite[..., None], curve, torch.full_like(curve, math.nan))
    return curve.sum(-1), curve, finite


def _ridge_solve(gram: Tensor, total: Tensor, cross: Tensor, target_total: Tensor,
                 finite: Tensor, config: MemoryConfig) -> tuple[Tensor, Tensor]:
    """Ridge weights (G, M, D + 1, K) of [x, 1] -> y from X^T X (G, M, D, D), X^T 1 (G, M, D),
    X^T Y (G, M D, K) and 1^T Y (G, K) over ``config.train`` steps; and the mean training
    prediction (G, M, K). A diverged point is fitted on zero states (its curve is NaN
    anyway), so that its non-finite sums reach no solve."""
    groups, members, size, _ = gram.shape
    delays = target_total.shape[-1]
    count = float(config.train)
    ok = finite[..., None, None]
    design = torch.zeros(groups, members, size + 1, size + 1, dtype=gram.dtype,
                         device=gram.device)
    design[..., :size, :size] = torch.where(ok, gram, 0.0)
    column = torch.where(finite[..., None], total, 0.0)
    design[..., :size, size] = column
    design[..., size, :size] = column
    design[..., size, size] = count
    rhs = torch.empty(groups, members, size + 1, delays, dtype=gram.dtype, device=gram.device)
    rhs[..., :size, :] = torch.where(ok, cross.reshape(groups, members, size, delays), 0.0)
    rhs[..., size, :] = target_total[:, None]
    scale = torch.diagonal(design, dim1=-2, dim2=-1).mean(-1).clamp(min=1e-300)
    design.diagonal(dim1=-2, dim2=-1).add_(config.ridge * scale[..., None])
    weights = torch.linalg.solve(design, rhs)
    mean = column / count
    shift = (mean[..., None, :] @ weights[..., :size, :])[..., 0, :] + weights[..., size, :]
    return weights, shift


@dataclass(frozen=True)
class Attractors:
    """Where the runs from M random initial states settle, per point; all (G, M).

    Attributes:
        count: attractor_count, the number of distinct attractors (float64).
        chaotic: chaotic_attractors, how many of them are chaotic: the mean finite-time
            exponent of their runs over the window exceeds ``attractor_chaos`` (float64).
        period: orbit_period of the attractor reached from the most initial states: 1 for a
            fixed point, p for a period-p orbit, 0 when no period <= window / 2 was found
            (quasi-periodic or chaotic) (float64).
        states: asymptotic_states, end states a readout could tell apart: p for each period-p
            attractor plus the tol-distinct end states on each aperiodic one (float64).
        finite: bool, every run stayed finite; the counts are NaN where it is False.
    """

    count: Tensor
    chaotic: Tensor
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


class TimeAverages:
    """Batch means of each run's per-unit mean and second moment over its last ``span`` steps.

    The span is cut into ``batches`` equal batches (its earliest ``span % batches`` steps are
    left out); the mean of the batch means is the time average, and their spread gives its
    standard error, which accounts for the correlation between steps as long as a batch is
    longer than the correlation time (Flyvbjerg & Petersen 1989). Sums run in float64.
    """

    def __init__(self, shape: tuple[int, ...], span: int, batches: int, device: torch.device):
        self.batches = batches
        self.length = span // batches
        self.skip = span - self.length * batches
        self.seen = 0
        zeros = torch.zeros(2, *shape, dtype=torch.float64, device=device)
        self.batch, self.total, self.square = zeros, zeros.clone(), zeros.clone()

    def add(self, x: Tensor) -> None:
        """Take the next step's states x (..., D)."""
        self.seen += 1
        if self.seen <= self.skip:
            return
        state = x.double()
        self.batch[0] += state
        self.batch[1].addcmul_(state, state)
        if (self.seen - self.skip) % self.length == 0:
            mean = self.batch.div_(self.length)
            self.total += mean
            self.square.addcmul_(mean, mean)
            self.batch.zero_()

    def alike(self, se: float, tol: float) -> Tensor:
        """(..., B, B) bool: runs i and j whose averages agree within ``se`` standard errors.

        Block by block (the means, then the second moments), with d = a_i - a_j the difference
        of the two runs' averages over the D units and e_i^2 the sum over units of the squared
        standard errors of a_i: ||d||^2 <= se^2 2 min(e_i^2, e_j^2) + D tol^2. For runs on one
        attractor E||d||^2 = e_i^2 + e_j^2, and e_i ~ e_j. The smaller of the two errors keeps
        a run whose averages are still drifting (a long transient: a large spread between
        its batches) from joining runs of two different attractors. The last term keeps runs
        whose averages agree to ``tol`` per unit alike even when their spread vanishes (a
        slow quasi-periodic orbit).
        """
        n = self.batches
        mean = self.total / n  # (2, ..., B, D)
        spread = (self.square - n * mean * mean).clamp_(min=0) / (n - 1)
        error = spread.sum(-1) / n  # (2, ..., B): sum over units of squared standard errors
        size, inits = mean.shape[-1], mean.shape[-2]
        flat = mean.reshape(-1, inits, size)
        norm = (flat * flat).sum(-1)
        distance = (norm[:, :, None] + norm[:, None, :]
                    - 2 * torch.bmm(flat, flat.mT)).clamp_(min=0)
        allowed = se**2 * 2 * torch.minimum(error[..., :, None], error[..., None, :]) \
            + size * tol**2
        return (distance.reshape(allowed.shape) <= allowed).all(0)


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

    Two runs on attractors share one when

    - the continued orbit of either comes within tol of the other's end state (exact: the
      p phases of a periodic orbit, the returns of a low-dimensional orbit), or
    - both are aperiodic and their time averages agree: the per-unit mean and second moment
      over the last ``attractor_steps // 2`` transient steps and the window, by
      :meth:`TimeAverages.alike` with ``attractor_se`` standard errors. An aperiodic
      attractor is an invariant set whose time averages do not depend on the start (it is
      ergodic), while a high-dimensional chaotic orbit is seldom back within tol of a given
      state in W steps, so the exact rule alone counts one chaotic attractor once per run.
      Mirror images (x -> -x, an odd cell at zero input) have opposite means and stay two.

    The attractors are the connected components of that relation. Periodic runs are joined
    by the exact rule only. When no run is on an attractor, count is 1 (nothing settled, and
    nothing tells the runs apart as multistable), period 0, and states the tol-distinct end
    states.

    Example:
        x' = tanh(w x) with w < -1 has the period-2 orbit {x*, -x*}: count 1, period 2,
        states 2; with w > 1 the fixed points +-x*: count 2, period 1, states 2.
    """
    groups, members, inits, size = x0.shape
    window, tol, steps = config.attractor_window, config.attractor_tol, config.attractor_steps
    device = params.device
    inputs = constant_input.reshape(1, 1, 1, -1).expand(1, inits, 1, -1).to(device)
    drive = drive_function(params, input_projection(params, inputs))(0)
    x = x0.to(device, params.dtype)
    averages = TimeAverages(x.shape, steps // 2 + window, config.attractor_batches, device)
    for t in range(steps):
        x, _ = cell.step(params, x, drive)
        if t >= steps - steps // 2:
            averages.add(x)
    end = x.double()
    finite = torch.isfinite(end).all(-1)
    # A fixed, generic start direction for the tangent (the exponent forgets it).
    v = torch.linspace(1.0, 2.0, size, dtype=params.dtype, device=device)
    v = (v / v.norm()).expand(groups, members, inits, 1, size).clone()
    growth = torch.zeros(groups, members, inits, dtype=torch.float64, device=device)
    away = torch.empty(window, groups, members, inits, dtype=torch.float64, device=device)
    linked = torch.zeros(groups, members, inits, inits, dtype=torch.bool, device=device)
    # The screen runs in the state's dtype: its rounding, at most ~2 D eps of |a|^2 + |b|^2,
    # is covered by the slack, so it never drops a pair the exact check would link.
    end_low = end.to(params.dtype)
    end_low_sq = (end_low**2).sum(-1)
    rounding = 4 * size * torch.finfo(params.dtype).eps + 1e-9
    for w in range(window):
        x, _, v = cell.step_tangent(params, x, drive, v)
        growth += renormalise_(v)[..., 0].double()
        state = x.double()
        averages.add(state)
        # NaN and inf reach the distance to the (finite) end state: no separate isfinite pass.
        away[w] = (state - end).abs_().amax(-1)
        # max-abs <= tol implies squared distance <= D tol^2: a cheap screen by one product,
        # so the exact check runs only for the few pairs that pass it and are not yet linked.
        state_sq = (x * x).sum(-1)[..., :, None] + end_low_sq[..., None, :]
        square = torch.baddbmm(state_sq.reshape(-1, inits, inits), x.reshape(-1, inits, size),
                               end_low.reshape(-1, inits, size).mT, alpha=-2)
        screen = (square.reshape(linked.shape) <= size * tol**2 + rounding * state_sq) & ~linked
        rows = screen.any(-1).nonzero(as_tuple=True)
        if rows[0].numel():
            near = (state[rows][:, None, :] - end[rows[:2]]).abs().amax(-1) <= tol
            linked[rows] |= near
    finite &= torch.isfinite(away).all(0)
    alike = averages.alike(config.attractor_se, tol)
    return _settle(away, linked, alike, growth / window, end, finite, config)


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


def _settle(away: Tensor, linked: Tensor, alike: Tensor, exponent: Tensor, end: Tensor,
            finite: Tensor, config: MemoryConfig) -> Attractors:
    """Attractors as connected components among settled runs of ``linked`` (..., B, B), and of
    ``alike`` between aperiodic runs."""
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
    both_aperiodic = aperiodic[..., :, None] & aperiodic[..., None, :]
    reach = (linked | linked.mT | (alike & both_aperiodic) | eye) & pair
    for _ in range(max(1, math.ceil(math.log2(inits)))):
        reach = reach | ((reach.double() @ reach.double()) > 0)
    earlier = torch.ones(inits, inits, dtype=torch.bool, device=end.device).tril(-1)
    first = settled & ~(reach & earlier).any(-1)  # the first run of each attractor
    count = first.sum(-1)
    period_of = (reach * period[..., None, :]).amax(-1)  # the period of each run's attractor
    size_of = reach.sum(-1)
    # The mean finite-time exponent of each run's attractor (where, not a product: a zero
    # Jacobian's exponent is -inf, and 0 * -inf would be NaN).
    summed = torch.where(reach, exponent[..., None, :], 0.0).sum(-1)
    chaotic = (first & (summed / size_of.clamp(min=1) > config.attractor_chaos)).sum(-1)
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

    return Attractors(masked(count.clamp(min=1)), masked(chaotic), masked(point_period),
                      masked(phases), ok)
