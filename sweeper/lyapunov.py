"""Lyapunov exponents: Benettin's tangent method (with QR for the top-k spectrum) and the
two-trajectory cross-check."""

from __future__ import annotations

import math

import torch

from .cells._base import Cell
from .params import CellParams

Tensor = torch.Tensor


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
