"""Lyapunov exponents: Benettin's tangent method (with QR for the top-k spectrum) and the
two-trajectory cross-check.

The k > 1 spectrum re-orthonormalises the tangent block every tau steps, not every step
(:class:`Reorthonormalisation`, :class:`TangentBasis`), by a Cholesky-QR that falls back to
Householder where the block is too ill-conditioned for it (:func:`orthonormalise`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from . import errors
from .cells._base import Cell
from .params import CellParams

Tensor = torch.Tensor

#: B, the bits of precision a tangent column may lose between two QRs, per dtype: B = p - K
#: keeps K of the p mantissa bits of each diagonal entry of R that Householder QR computes
#: (K = 20 in float64, 1e-6 relative per QR; K = 12 in float32, 2e-4). Cholesky-QR loses
#: twice the bits, so it gets half of B.
BUDGET_BITS = {torch.float64: 33.0, torch.float32: 12.0}
#: m: Cholesky-QR intervals are planned this many bits short of its check, so that the loss's
#: fluctuation from one interval to the next seldom wastes a factorisation on a fall-back.
MARGIN_BITS = 2.0


@dataclass(frozen=True)
class Reorthonormalisation:
    """When and how the tangent block (k > 1) is re-orthonormalised.

    A QR every tau steps gives the exponents of a QR every step in exact arithmetic: the
    product of the tau steps' triangular factors is the triangular factor of the tau-step
    product (Benettin et al. 1980), so the log-diagonal accumulated over the longer intervals
    sums to the same exponents. In floating point, column j of the block grows like
    exp(lambda_1 tau) while only its part orthogonal to the earlier columns, exp(lambda_j
    tau), carries lambda_j: it loses about (lambda_1 - lambda_j) tau / ln 2 bits. Householder
    QR computes R_jj to that many bits fewer than the dtype's mantissa holds, Cholesky-QR to
    twice as many fewer (:func:`orthonormalise`). The rule, per tangent block (each point
    and trajectory has its own schedule), with B = ``budget_bits`` and m = MARGIN_BITS:

        tau_H = clamp(floor(min((B - e) ln 2 / spread, L / size)), 1, tau_max)
        tau_C = clamp(floor(min((B / 2 - m - e) ln 2 / spread, L / size)), 0, tau_max)

    spread = lambda_max - lambda_min and size = max |lambda| of the block's running
    exponents (its log growth over all steps so far); L = ln(largest float) / 4 (22 nats in
    float32, 177 in float64), so that no column grows or shrinks out of range between two
    QRs. e is the block's excess: the bits its QRs lost beyond spread tau / ln 2 (measured
    at each QR, :func:`orthonormalise`), averaged with weights halving at each QR. A
    non-normal map loses log2 of its Lyapunov vectors' conditioning on top of the spread
    (the loss grows like e + spread tau / ln 2, not in proportion to tau), and a change of
    regime shows there before the running means follow. The next QR is a Cholesky-QR after
    tau_C steps when tau_C >= 1 and 2 tau_C >= tau_H (one costs about half a Householder
    QR for square blocks, and about as much for thin ones, where both intervals reach
    tau_max), else a Householder QR after tau_H steps. Non-finite estimates (a vanished or
    diverged column) give a Householder QR every step.
    The first ``warm_up`` steps run at tau = 1 (Cholesky-QR where its check passes).

    Overflow guard: the first tangent column is normalised every step (the memory horizon
    needs its growth per step), and a block whose first column has grown or shrunk by more
    than L since its last QR is re-orthonormalised at once; the first column follows the
    fastest growth, which the other columns' norms follow up to a transient factor, and
    the threshold leaves them e^(3L) of headroom. All blocks are re-orthonormalised at the
    last burn-in step (the averaging window starts from an orthonormal basis) and at the last
    step (no interval is left open).

    Attributes:
        tau_max: the longest interval between two QRs; 1 = every step.
        warm_up: steps at tau = 1 before the spread is first estimated.
        budget_bits: B, the bits a column may lose between two Householder QRs (half of it
            for Cholesky-QR); None = :data:`BUDGET_BITS` for the pass's dtype.
        cholesky: Cholesky-QR where the rule picks it and its check passes (False:
            Householder always).
    """

    tau_max: int = 16
    warm_up: int = 16
    budget_bits: float | None = None
    cholesky: bool = True

    def __post_init__(self):
        errors.integer("tau_max", self.tau_max)
        errors.integer("warm_up", self.warm_up, minimum=0)
        if self.budget_bits is not None:
            errors.number("budget_bits", self.budget_bits, above=0)


#: The default rule.
ADAPTIVE = Reorthonormalisation()
#: The reference: a Householder QR every step (Benettin's method as first written).
EVERY_STEP = Reorthonormalisation(tau_max=1, cholesky=False)


def renormalise(v: Tensor) -> tuple[Tensor, Tensor]:
    """Orthonormalise tangent rows v (..., k, D); return them and the log growth (..., k).

    For k = 1 this is a division by the norm; for k > 1 a QR step, whose |diag(R)| are the
    growth factors of the nested subspaces (Benettin et al. 1980). A vector that vanishes stays
    zero and contributes log 0 = -inf, the exact exponent of a zero Jacobian.
    """
    if v.shape[-2] == 1:
        norm = v.norm(dim=-1)
        safe = torch.where(norm > 0, norm, torch.ones_like(norm))
        return v / safe[..., None], torch.log(norm.double())
    q, r = torch.linalg.qr(v.mT)
    diag = torch.diagonal(r, dim1=-2, dim2=-1)
    # Fix the signs so that the basis evolves continuously.
    sign = torch.where(diag < 0, -torch.ones_like(diag), torch.ones_like(diag))
    return (q * sign[..., None, :]).mT, torch.log(diag.abs().double())


def renormalise_(v: Tensor, out: Tensor | None = None) -> Tensor:
    """In-place :func:`renormalise` (v may be a view into the stacked state).

    Returns the log growth (..., k) in v's dtype (the caller accumulates in float64), written
    into ``out`` when given (the dynamics pass hands it a row of its log buffer).
    """
    if v.shape[-2] == 1:
        norm = torch.linalg.vector_norm(v, dim=-1)  # (..., 1)
        logs = torch.log(norm, out=out) if out is not None else torch.log(norm)
        # Dividing by the smallest subnormal leaves a zero vector zero and divides every
        # nonzero one by its true norm: one kernel instead of a test and a select.
        finfo = torch.finfo(v.dtype)
        v.div_(norm.clamp_min_(finfo.tiny * finfo.eps)[..., None])
        return logs
    normed, logs = renormalise(v)
    v.copy_(normed)
    if out is not None:
        out.copy_(logs)
        return out
    return logs


class Factorisation(NamedTuple):
    """What :func:`orthonormalise` returns for n tangent blocks."""

    rows: Tensor  # (n, k, D) orthonormal
    logs: Tensor  # (n, k) float64: log |diag R|, -inf for a column that vanished
    lost: Tensor  # (n,) float64: the most bits any column had lost, log2(||v_j|| / R_jj)
    householder: Tensor  # (n,) bool: factorised by Householder QR


def orthonormalise(v: Tensor, budget_bits: float, cholesky: bool = True) -> Factorisation:
    """QR of a batch of tangent blocks, rows v (n, k, D), k <= D: Cholesky-QR where it is
    accurate, Householder elsewhere.

    Cholesky-QR: L = cholesky(v v^T) (lower, = R^T), rows Q = L^-1 v by a triangular solve;
    three BLAS-3 calls on the whole batch. Column j has lost log2(||v_j|| / R_jj) bits (its
    norm over that of its part orthogonal to the earlier columns; unlike the ratio of
    diag(R)'s extremes this ignores the columns' scales, to which both QRs are indifferent).
    Householder QR computes R_jj to that many bits fewer than the dtype holds; Cholesky-QR
    to twice as many fewer, since the Gram matrix squares the conditioning. So Cholesky-QR
    is kept only where every column lost at most ``budget_bits / 2``. A failed
    factorisation (a singular or non-finite block), a non-finite factor or a larger loss
    falls back to Householder QR (LAPACK geqrf) for those blocks only. One pass suffices:
    Benettin's method needs Q orthonormal only to the precision kept, since a slightly
    skewed basis changes the next log-diagonal by as much (CholeskyQR2's second pass would
    double the cost).

    Args:
        v: tangent rows (n, k, D).
        budget_bits: B, the bits a column may lose to Householder (Cholesky gets B / 2).
        cholesky: try Cholesky-QR first (False: Householder for all).

    Returns:
        A :class:`Factorisation`.

    Example:
        >>> v = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]], dtype=torch.float64)
        >>> done = orthonormalise(v, 33.0)
        >>> done.logs.exp(), done.householder
        (tensor([[5.0000, 0.8000]], dtype=torch.float64), tensor([False]))
    """
    householder = torch.ones(v.shape[0], dtype=torch.bool, device=v.device)
    if cholesky:
        gram = v @ v.mT
        factor, info = torch.linalg.cholesky_ex(gram)
        diag = torch.diagonal(factor, dim1=-2, dim2=-1)
        # NaN (a non-finite block) fails the test below.
        lost = (0.5 * torch.log2(torch.diagonal(gram, dim1=-2, dim2=-1))
                - torch.log2(diag)).amax(dim=-1).double()
        householder = (info != 0) | ~(lost <= budget_bits / 2)
    bad = torch.nonzero(householder).flatten()
    if bad.numel() == v.shape[0]:
        return _householder(v)
    rows = torch.linalg.solve_triangular(factor, v, upper=False)
    logs = torch.log(diag.double())
    if bad.numel():
        exact = _householder(v.index_select(0, bad))
        rows.index_copy_(0, bad, exact.rows)
        logs.index_copy_(0, bad, exact.logs)
        lost.index_copy_(0, bad, exact.lost)
    return Factorisation(rows, logs, lost, householder)


def _householder(v: Tensor) -> Factorisation:
    """LAPACK's Householder QR (geqrf, then the explicit Q) as a :class:`Factorisation`.

    R stays in geqrf's packed output, of which only the diagonal is read, and the signs of
    Q's columns are left as they come: the exponents take |R_jj|, and a column's sign does
    not change the span of the first j.
    """
    norms = torch.log2(torch.linalg.vector_norm(v, dim=-1).double())
    packed, scales = torch.geqrf(v.mT)
    logs = torch.log(torch.diagonal(packed, dim1=-2, dim2=-1).abs().double())
    rows = torch.linalg.householder_product(packed, scales).mT
    lost = (norms - logs / math.log(2)).amax(dim=-1)
    return Factorisation(rows, logs, lost, torch.ones_like(lost, dtype=torch.bool))


class TangentBasis:
    """The tangent blocks' re-orthonormalisation over one dynamics pass, by the rule of
    :class:`Reorthonormalisation`: per block, the step of its next QR, the method, and the
    float64 growth it has accumulated.

    The bookkeeping lives on the host in numpy (a few numbers per block, read once per step
    and once per QR), so that the loop adds only the first column's normalisation and one
    small read to the step when no QR is due.

    Args:
        policy: the rule. blocks: P, the number of tangent blocks (points x trajectories).
        k: tangent vectors per block (> 1). dtype: that of the tangents.
        burn_in, steps: the pass's protocol (QRs forced at burn_in - 1 and steps - 1).

    Attributes:
        factorisations: QRs of one block done so far; householder: how many of them went
            straight to Householder; fallbacks: how many fell back to it after a Cholesky
            that failed its check (diagnostics for the benchmark and the tests).
    """

    def __init__(self, policy: Reorthonormalisation, blocks: int, k: int, dtype: torch.dtype,
                 burn_in: int, steps: int):
        self.policy = policy
        budget = BUDGET_BITS[dtype] if policy.budget_bits is None else policy.budget_bits
        self.budget_bits = budget
        self.limit = math.log(torch.finfo(dtype).max) / 4
        self.forced = {burn_in - 1, steps - 1}
        self.next_qr = np.zeros(blocks, dtype=np.int64)
        self.soonest = 0  # next_qr.min()
        self.last_qr = np.full(blocks, -1, dtype=np.int64)
        self.since = np.zeros(blocks)  # the first column's log growth since its last QR
        self.total = np.zeros((blocks, k))  # each column's log growth since the start
        self.excess = np.zeros(blocks)  # bits lost beyond the spread's share, averaged
        self.cholesky = np.full(blocks, policy.cholesky)
        self.factorisations = self.fallbacks = self.householder = 0

    def advance(self, t: int, v: Tensor, logs: Tensor) -> None:
        """After step t: normalise the first tangent, and re-orthonormalise the blocks due.

        Args:
            t: the step just taken.
            v: tangent rows (..., k, D), a view into the stacked state, rewritten in place.
            logs: (..., k) float64, zero on entry: receives step t's log growth (the first
                column's every step, all columns' at a QR).
        """
        rows, growth = v.view(-1, *v.shape[-2:]), logs.view(-1, logs.shape[-1])
        renormalise_(rows[:, :1], out=growth[:, :1])
        with np.errstate(invalid="ignore"):  # a diverged block: NaN, which raises no alarm
            self.since += growth[:, 0].cpu().numpy()
            alarm = np.abs(self.since) > self.limit
        if t < self.soonest and t not in self.forced and not alarm.any():
            return
        picked = np.flatnonzero((self.next_qr <= t) | alarm | (t in self.forced))
        self.factorisations += picked.size
        # The rule picked each block's method when it set its interval.
        done = [self._factorise(subset, rows, growth, cholesky)
                for subset, cholesky in ((picked[self.cholesky[picked]], True),
                                         (picked[~self.cholesky[picked]], False))
                if subset.size]
        self._schedule(t, *(np.concatenate(part) for part in zip(*done, strict=True)))

    def _factorise(self, picked: np.ndarray, rows: Tensor, growth: Tensor, cholesky: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """QR of the picked blocks (rows (P, k, D), growth (P, k)), in place; returns the
        picked blocks, their log |diag R| and the bits they lost, on the host."""
        whole = picked.size == rows.shape[0]
        index = None if whole else torch.as_tensor(picked, device=rows.device)
        done = orthonormalise(rows if whole else rows.index_select(0, index),
                              self.budget_bits, cholesky)
        if whole:
            rows.copy_(done.rows)
            growth += done.logs
        else:
            rows.index_copy_(0, index, done.rows)
            growth.index_add_(0, index, done.logs)
        if cholesky:
            self.fallbacks += int(done.householder.sum())
        else:
            self.householder += picked.size
        return picked, done.logs.cpu().numpy(), done.lost.cpu().numpy()

    def _schedule(self, t: int, picked: np.ndarray, logs: np.ndarray, lost: np.ndarray
                  ) -> None:
        """Book the intervals that end at step t (logs (n, k), lost (n,) of the picked
        blocks) and set the picked blocks' next QR and its method."""
        # A vanished column (-inf) or a diverged block (NaN) is no error here: the rule sends
        # it to a Householder QR every step, and the pass masks a diverged point.
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            logs[:, 0] += self.since[picked]
            self.since[picked] = 0.0
            total = self.total[picked] + logs
            self.total[picked] = total
            running = total / (t + 1)
            spread = running.max(axis=-1) - running.min(axis=-1)
            beyond = lost - spread * (t - self.last_qr[picked]) / math.log(2)
            excess = (self.excess[picked] + np.maximum(beyond, 0.0)) / 2
            self.excess[picked] = excess
            cap = self.limit / np.abs(running).max(axis=-1)
            per_bit = math.log(2) / spread
            householder = (self.budget_bits - excess) * per_bit
            householder = self._interval(np.minimum(householder, cap), 1)
            cholesky = (self.budget_bits / 2 - MARGIN_BITS - excess) * per_bit
            cholesky = self._interval(np.minimum(cholesky, cap), 0)
        tau = np.ones(picked.size, dtype=np.int64)
        if t + 1 >= self.policy.warm_up and self.policy.tau_max > 1:
            chosen = self.policy.cholesky & (cholesky >= 1) & (2 * cholesky >= householder)
            tau = np.where(chosen, cholesky, householder)
            self.cholesky[picked] = chosen
        self.next_qr[picked] = t + tau
        self.last_qr[picked] = t
        self.soonest = self.next_qr.min()

    def _interval(self, bound: np.ndarray, least: int) -> np.ndarray:
        """floor(bound) within [least, tau_max]; NaN (a vanished or diverged column: inf -
        inf) gives ``least``."""
        bound = np.clip(np.where(np.isnan(bound), least, bound), least, self.policy.tau_max)
        return np.floor(bound).astype(np.int64)


def lyapunov_twin(cell: Cell, params: CellParams, drive_fn, x0: Tensor, steps: int,
                  burn_in: int, delta: float = 1e-8) -> Tensor:
    """Largest exponent from two nearby trajectories, (G, M, B) float64.

    The second trajectory starts ``delta`` away along a fixed direction; after each step their
    separation d is measured and rescaled back to ``delta`` along d. Runs in float64 (a 1e-8
    separation is below float32's resolution).
    """
    params = params.to(dtype=torch.float64)
    x = x0.double()
    direction = torch.ones_like(x) / math.sqrt(x.shape[-1])
    y = x + delta * direction
    total = torch.zeros(x.shape[:-1], dtype=torch.float64, device=x.device)
    for t in range(steps):
        drive = drive_fn(t).double()
        x, _ = cell.step(params, x, drive)
        y, _ = cell.step(params, y, drive)
        d = y - x
        dist = d.norm(dim=-1)
        if t >= burn_in:
            total = total + torch.log(dist / delta)
        safe = torch.where(dist > 0, dist, torch.ones_like(dist))
        y = x + d * (delta / safe)[..., None]
    return total / max(steps - burn_in, 1)
