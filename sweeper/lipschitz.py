"""Lipschitz constants: the largest singular value of J_t along a trajectory, and the growth
factor G(N) = sum_{k<N} L^k of the paper's bound on the cost's Lipschitz constant."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Tensor = torch.Tensor


def lanczos_ritz(matvec: Callable[[Tensor], Tensor], start: Tensor, steps: int,
                 full_reorthogonalisation: bool = True) -> Tensor:
    """Ritz values (ascending) of a batch of symmetric operators, by Lanczos.

    Args:
        matvec: v -> A v for vectors (..., D), batched; A symmetric (may be indefinite).
        start: (..., D) starting vectors (any nonzero; normalised here).
        steps: Krylov dimension m; with m >= D the extreme values are exact up to rounding.
        full_reorthogonalisation: orthogonalise each new vector against the whole basis
            (twice), which keeps every Ritz value accurate. Without it only the three-term
            recurrence is kept (plus one pass against the two previous vectors): the extreme
            Ritz values still converge to the extreme eigenvalues and stay inside the spectrum
            up to rounding (Paige 1980); lost orthogonality only repeats converged values.
            The basis then costs O(D) memory traffic per step instead of O(m D), which is what
            a large batch of small operators is bound by.

    Returns:
        (..., m) float64. Every Ritz value lies inside [lambda_min, lambda_max], so the largest
        never exceeds the true largest eigenvalue; full re-orthogonalisation keeps it accurate.
        Batch elements with non-finite entries give NaN without affecting the others.
    """
    size = start.shape[-1]
    steps = max(1, min(steps, size))
    q = start / start.norm(dim=-1, keepdim=True)
    # The basis as rows of one preallocated (..., m, D) tensor: no re-stacking per step.
    basis = q.new_zeros(*start.shape[:-1], steps, size) if full_reorthogonalisation else None
    previous = None
    alphas, betas, lives = [], [], []
    scale = None
    alive = torch.ones(start.shape[:-1], dtype=torch.bool, device=start.device)
    factor = None
    for j in range(steps):
        if basis is not None:
            basis[..., j, :] = q
        w = matvec(q)
        if factor is None:
            factor = _unit_scale(w)
        # Scaled to size ~1 (by a power of two: exact), so that the squares of the residuals
        # of a tiny operator (a scaling s ~ 1e-75) do not fall below the normal floats.
        w = w * factor
        alpha = torch.linalg.vecdot(w, q)
        alphas.append(alpha)
        lives.append(alive)
        # Size of the operator seen so far, for a relative breakdown test.
        scale = alpha.abs() if scale is None else torch.maximum(scale, alpha.abs())
        if basis is not None:
            seen = basis[..., : j + 1, :]  # (..., j+1, D)
            for _ in range(2):  # twice is enough (Kahan-Parlett)
                w = w - ((seen @ w[..., None]).mT @ seen)[..., 0, :]
        else:
            # The three-term recurrence, then one more pass against the same two vectors;
            # fused multiply-adds on w in place (w is the operator's fresh output).
            w.addcmul_(q, alpha[..., None], value=-1)
            neighbours = (q,) if previous is None else (q, previous)
            if previous is not None:
                w.addcmul_(previous, betas[-1][..., None], value=-1)
            for other in neighbours:
                w.addcmul_(other, torch.linalg.vecdot(w, other)[..., None], value=-1)
        if j == steps - 1:
            break
        beta = torch.linalg.vector_norm(w, dim=-1)
        # A beta at rounding level means the Krylov space is exhausted (A = c I gives that
        # after one step); normalising the rounding noise would invent directions.
        alive = alive & (beta > 1e-8 * scale)
        beta = torch.where(alive, beta, torch.zeros_like(beta))
        betas.append(beta)
        inverse = torch.where(alive, 1 / torch.where(alive, beta, torch.ones_like(beta)),
                              torch.zeros_like(beta))
        previous = q
        q = w.mul_(inverse[..., None])
    diag = torch.stack(alphas, -1).double()
    # Steps after a breakdown get the first Rayleigh quotient, a value inside the spectrum's
    # range: the tridiagonal splits there, so they cannot move the extreme Ritz values.
    diag = torch.where(torch.stack(lives, -1), diag, diag[..., :1].expand_as(diag))
    tri = torch.diag_embed(diag)
    if betas:
        off = torch.stack(betas, -1).double()
        tri = tri + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    bad = ~torch.isfinite(tri).all(-1).all(-1)
    tri = torch.where(bad[..., None, None], torch.zeros_like(tri), tri)
    ritz = torch.linalg.eigvalsh(tri) / factor.double()
    return torch.where(bad[..., None], torch.full_like(ritz, math.nan), ritz)


def _unit_scale(w: Tensor) -> Tensor:
    """(..., 1) powers of two that bring each vector's norm into [0.5, 1); 1 for a zero or
    non-finite one."""
    norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
    usable = torch.isfinite(norm) & (norm > 0)
    _, exponent = torch.frexp(torch.where(usable, norm, torch.ones_like(norm)))
    return torch.ldexp(torch.ones_like(norm), -exponent)


def top_singular_value(jtj: Callable[[Tensor], Tensor], start: Tensor, steps: int,
                       full_reorthogonalisation: bool = True) -> Tensor:
    """Largest singular value of J for a batch of operators: Lanczos on J^T J (or J J^T,
    which has the same nonzero eigenvalues).

    ``jtj`` maps v (..., D) to J^T J v. Returns (...,) float64, never above the true ||J||_2
    up to rounding (see :func:`lanczos_ritz`); NaN for batch elements with non-finite entries.
    """
    ritz = lanczos_ritz(jtj, start, steps, full_reorthogonalisation)
    return ritz[..., -1].clamp(min=0).sqrt()


def cost_growth_log10(lipschitz: Tensor, seq_len: int) -> Tensor:
    """log10 G(N), G(N) = sum_{k=0}^{N-1} L^k, stable for every L >= 0.

    G is bounded by 1/(1-L) for L < 1, equals N at L = 1 and grows like L^N for L > 1. With
    a = log L: G = expm1(N a) / expm1(a), evaluated in logs so that L^N never overflows.
    Non-finite or negative L give NaN.
    """
    lip = lipschitz.double()
    a = torch.log(lip)
    n = float(seq_len)
    with torch.no_grad():
        tiny = a.abs() < 1e-12
        a_safe = torch.where(tiny, torch.ones_like(a), a)
        below = torch.log(-torch.expm1(n * a_safe)) - torch.log(-torch.expm1(a_safe))
        above = n * a_safe + torch.log(-torch.expm1(-n * a_safe)) - torch.log(torch.expm1(a_safe))
        log_g = torch.where(a_safe < 0, below, above)
        log_g = torch.where(tiny, torch.full_like(a, math.log(n)), log_g)
        log_g = torch.where(lip == 0, torch.zeros_like(a), log_g)  # G = L^0 = 1
        log_g = torch.where(torch.isfinite(lip) & (lip >= 0), log_g, torch.full_like(a, math.nan))
    return log_g / math.log(10.0)
