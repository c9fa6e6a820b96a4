"""Roughness of a loss: along 1-D slices V(alpha), and at a point (gradient norm, top Hessian
eigenvalue).

Slice functions take a grid ``alpha`` (P,) in increasing order and losses (..., P) and return
(...,) float64; a slice with any non-finite loss gives NaN (divergence is data).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .lipschitz import lanczos_ritz

Tensor = torch.Tensor


def _finite_or_nan(loss: Tensor, value: Tensor) -> Tensor:
    ok = torch.isfinite(loss).all(-1)
    return torch.where(ok, value, torch.full_like(value, math.nan))


def n_local_minima(loss: Tensor) -> Tensor:
    """Interior local minima of each slice: places where the loss stops falling and starts
    rising, flat stretches (equal neighbours) skipped. End points are not counted."""
    loss = loss.double()
    step = torch.sign(torch.diff(loss, dim=-1))  # (..., P-1) in {-1, 0, 1}
    # Carry the last nonzero slope over flat stretches.
    index = torch.arange(step.shape[-1], device=step.device).expand_as(step)
    last = torch.cummax(torch.where(step != 0, index, torch.zeros_like(index)), dim=-1).values
    carried = torch.gather(step, -1, last)
    carried = torch.where((step == 0) & (last == 0) & (step[..., :1] == 0), 0.0, carried)
    turns = (carried[..., :-1] < 0) & (step[..., 1:] > 0)
    return _finite_or_nan(loss, turns.sum(-1).double())


def roughness_tv(loss: Tensor) -> Tensor:
    """Total variation over range: sum |dV| / (max V - min V). 1 for a monotone slice, 2 for
    one valley, large for a rugged one; a constant slice counts as monotone (1)."""
    loss = loss.double()
    tv = torch.diff(loss, dim=-1).abs().sum(-1)
    span = loss.amax(-1) - loss.amin(-1)
    value = torch.where(span > 0, tv / torch.where(span > 0, span, torch.ones_like(span)),
                        torch.ones_like(span))
    return _finite_or_nan(loss, value)


def loss_lipschitz(alpha: Tensor, loss: Tensor) -> Tensor:
    """max |dV / d alpha| by first differences on the grid."""
    loss = loss.double()
    slope = torch.diff(loss, dim=-1) / torch.diff(alpha.double().to(loss.device))
    return _finite_or_nan(loss, slope.abs().amax(-1))


def loss_curvature(alpha: Tensor, loss: Tensor) -> Tensor:
    """max |d2V / d alpha2| by second divided differences (exact for quadratics on any grid)."""
    loss = loss.double()
    a = alpha.double().to(loss.device)
    slope = torch.diff(loss, dim=-1) / torch.diff(a)
    curvature = 2 * torch.diff(slope, dim=-1) / (a[2:] - a[:-2])
    return _finite_or_nan(loss, curvature.abs().amax(-1))


def slice_metrics(alpha: Tensor, loss: Tensor) -> dict[str, Tensor]:
    """All slice metrics of SCIENCE.md section 4 that need only the loss values."""
    return {
        "n_local_minima": n_local_minima(loss),
        "roughness_tv": roughness_tv(loss),
        "loss_lipschitz": loss_lipschitz(alpha, loss),
        "loss_curvature": loss_curvature(alpha, loss),
    }


def grad_norm(loss_fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """||grad V(theta)|| for K points at once, by backpropagation through time.

    Args:
        loss_fn: (K, n) -> (K,), where point k's loss depends on theta[k] alone.
        theta: (K, n) parameters.
    """
    with torch.enable_grad():
        point = theta.detach().requires_grad_(True)
        loss = loss_fn(point)
        (grad,) = torch.autograd.grad(loss.sum(), point)
    return _finite_or_nan(loss[:, None], grad.double().norm(dim=-1))


#: Points with at most this many parameters get their exact Hessian (see hessian_top_eig).
EXACT_HESSIAN_MAX_PARAMS = 128
#: Memory allowed for the tangents of one chunk of the exact Hessian's basis.
EXACT_HESSIAN_MEMORY = 2 * 1024**3


def hessian_top_eig(loss_fn: Callable[[Tensor], Tensor], theta: Tensor, steps: int = 20,
                    seed: int = 0, exact_max_params: int = EXACT_HESSIAN_MAX_PARAMS) -> Tensor:
    """Largest eigenvalue of the Hessian of V at each of K points, (K,) float64.

    Because loss_fn's points are independent, the Hessian of sum_k V_k is block-diagonal, so
    one product with a (K, n) matrix of directions serves all K points.

    * n <= exact_max_params: every point's dense Hessian (:func:`point_hessians`, one
      forward-over-reverse pass over a basis), then its top eigenvalue; exact up to rounding.
    * otherwise: Lanczos with ``steps`` Hessian-vector products (double backward); never above
      the truth, exact once steps >= n.

    NaN where the loss or the Hessian is not finite; the other points are unaffected.

    Args:
        loss_fn: (K, n) -> (K,), where point k's loss depends on theta[k] alone.
        theta: (K, n) parameters.
        steps: Lanczos steps (ignored on the exact path).
        seed: seed of the Lanczos start vector.
        exact_max_params: largest n that takes the exact path (0: always Lanczos).
    """
    if theta.shape[1] <= exact_max_params:
        hessian = point_hessians(loss_fn, theta)
        ok = torch.isfinite(hessian).all(-1).all(-1)
        # A non-finite block would make eigvalsh fail for the whole batch: zero it, then NaN.
        hessian = torch.where(ok[:, None, None], hessian, torch.zeros_like(hessian)).double()
        top = torch.linalg.eigvalsh(0.5 * (hessian + hessian.mT))[:, -1]
        return torch.where(ok, top, torch.full_like(top, math.nan))
    return _lanczos_top_eig(loss_fn, theta, steps, seed)


def point_hessians(loss_fn: Callable[[Tensor], Tensor], theta: Tensor,
                   memory: int = EXACT_HESSIAN_MEMORY) -> Tensor:
    """The Hessian of each point's loss, (K, n, n) in theta's dtype, by forward-over-reverse.

    Column j of every point's Hessian is the derivative of grad sum_k V_k along e_j (the same
    basis vector for all K points); vmap runs a chunk of the n columns in one pass, so the
    graph of tiny per-step ops is walked n / chunk times instead of once per product. The
    chunk keeps the tangents' saved activations under ``memory`` bytes. Points whose loss is
    not finite get a NaN block; the others are unaffected.
    """
    points, size = theta.shape
    theta = theta.detach()
    loss, saved = _loss_and_saved_bytes(loss_fn, theta)
    chunk = max(1, min(size, memory // max(1, saved)))
    gradient = torch.func.grad(lambda t: loss_fn(t).sum())

    def column(direction: Tensor) -> Tensor:
        return torch.func.jvp(gradient, (theta,), (direction,))[1]

    basis = torch.eye(size, dtype=theta.dtype, device=theta.device)
    columns = [torch.func.vmap(column)(basis[start:start + chunk, None, :].expand(-1, points, size))
               for start in range(0, size, chunk)]
    hessian = torch.cat(columns).permute(1, 2, 0)  # (n, K, n) -> (K, n, n), H symmetric
    finite = torch.isfinite(loss)[:, None, None]
    return torch.where(finite, hessian, torch.full_like(hessian, math.nan))


def _loss_and_saved_bytes(loss_fn: Callable[[Tensor], Tensor], theta: Tensor
                          ) -> tuple[Tensor, int]:
    """V(theta) (K,) and the bytes autograd saves for its backward (an upper estimate: a
    tensor saved by several ops counts each time)."""
    total = 0

    def pack(saved: Tensor) -> Tensor:
        nonlocal total
        total += saved.numel() * saved.element_size()
        return saved

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(theta.detach().requires_grad_(True))
    return loss.detach(), total


def _lanczos_top_eig(loss_fn: Callable[[Tensor], Tensor], theta: Tensor, steps: int,
                     seed: int) -> Tensor:
    """Top Ritz value of each point's Hessian by Lanczos on double-backward products (the
    project's own cells allow double backward; cuDNN's RNNs would not)."""
    with torch.enable_grad():
        point = theta.detach().requires_grad_(True)
        loss = loss_fn(point)
        (grad,) = torch.autograd.grad(loss.sum(), point, create_graph=True)

        def hvp(v: Tensor) -> Tensor:
            (out,) = torch.autograd.grad((grad * v).sum(), point, retain_graph=True)
            return out.detach()

        gen = torch.Generator().manual_seed(seed)
        start = torch.randn(theta.shape, generator=gen, dtype=torch.float64).to(theta)
        top = lanczos_ritz(hvp, start, steps)[..., -1]
    return _finite_or_nan(loss.detach()[:, None], top)


def slice_losses(loss_fn: Callable[[Tensor], Tensor], theta: Tensor, direction: Tensor,
                 alphas: Tensor) -> Tensor:
    """V(theta_k + alpha_p d_k) for K points x P offsets, evaluated as one batch of K * P.

    ``loss_fn`` receives the K * P rows point-major (row k * P + p); objectives with per-point
    targets provide that layout through ``Objective.repeat_rows(P)``. Returns (K, P).
    """
    points, offsets = theta.shape[0], alphas.shape[0]
    grid = theta[:, None, :] + alphas.to(theta)[None, :, None] * direction[:, None, :]
    return loss_fn(grid.reshape(points * offsets, -1)).reshape(points, offsets)


def plane_losses(loss_fn: Callable[[Tensor], Tensor], theta: Tensor, first: Tensor,
                 second: Tensor, alphas: Tensor, betas: Tensor) -> Tensor:
    """V(theta + a d1 + b d2) on the grid alphas x betas, (K, P1, P2)."""
    combos = torch.cartesian_prod(alphas.to(theta), betas.to(theta))  # (P1 * P2, 2)
    grid = (theta[:, None, :] + combos[None, :, :1] * first[:, None, :]
            + combos[None, :, 1:] * second[:, None, :])
    losses = loss_fn(grid.reshape(-1, theta.shape[1]))
    return losses.reshape(theta.shape[0], alphas.shape[0], betas.shape[0])


def segment_losses(loss_fn: Callable[[Tensor], Tensor], start: Tensor, end: Tensor,
                   alphas: Tensor) -> Tensor:
    """V((1 - a) start + a end) for a in ``alphas`` (0 = start, 1 = end), (K, P)."""
    return slice_losses(loss_fn, start, end - start, alphas)


def filter_normalised_direction(shapes: dict[str, tuple[int, ...]], theta: Tensor,
                                generator: torch.Generator) -> Tensor:
    """A random direction with each filter (row of each weight matrix) rescaled to the norm of
    the same row of theta (Li et al. 2018), biases left at zero. (K, n), one draw per point."""
    direction = torch.randn(theta.shape, generator=generator, dtype=torch.float64).to(theta)
    start = 0
    for shape in shapes.values():
        size = math.prod(shape)
        block = slice(start, start + size)
        if len(shape) < 2:  # biases
            direction[:, block] = 0
        else:
            rows = direction[:, block].reshape(theta.shape[0], shape[0], -1)
            ref = theta[:, block].reshape(theta.shape[0], shape[0], -1)
            scale = ref.norm(dim=-1, keepdim=True) / rows.norm(dim=-1, keepdim=True)
            direction[:, block] = (rows * scale).reshape(theta.shape[0], -1)
        start += size
    return direction
