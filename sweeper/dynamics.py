"""One pass along the trajectory that yields the state-map metrics of K points at once:
Lyapunov exponents (Benettin), local Lipschitz constants (Lanczos at sampled steps), the memory
horizon, and whether the state stayed finite."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .cells._base import Cell
from .lipschitz import top_singular_value
from .lyapunov import (
    ADAPTIVE,
    Reorthonormalisation,
    TangentBasis,
    lyapunov_twin,
    renormalise,
    renormalise_,
)
from .params import INPUT, CellParams
from .protocols import DynamicsConfig
from .seeding import generator

Tensor = torch.Tensor


@dataclass(frozen=True)
class PassNeeds:
    """What the metric families ask of the trajectory pass; it computes nothing else.

    Attributes:
        tangents: carry tangent vectors (Lyapunov exponents, memory horizon).
        jacobian_samples: ||J_t||_2 by Lanczos at the sampled steps (local Lipschitz).
    """

    tangents: bool = True
    jacobian_samples: bool = True

    def __or__(self, other: PassNeeds) -> PassNeeds:
        return PassNeeds(self.tangents or other.tangents,
                         self.jacobian_samples or other.jacobian_samples)


@dataclass(frozen=True)
class DynamicsResult:
    """Per-point results, each (G, M) float64 unless stated; NaN where the state diverged or
    where the pass was not asked for it (see :class:`PassNeeds`)."""

    finite: Tensor  # (G, M) bool
    lyapunov: Tensor  # (G, M, k), sorted descending
    lipschitz_local_max: Tensor
    lipschitz_local_mean: Tensor
    memory_horizon: Tensor
    memory_horizon_capped: Tensor  # (G, M) bool
    lyapunov_twin: Tensor | None
    drive_max: Tensor  # (G, M, F) bound on |drive|, for Lipschitz bounds


def input_projection(params: CellParams, inputs: Tensor) -> Tensor:
    """weight_ih @ u for all steps at once: inputs (G or 1, B, T, I) -> (G, B, T, F)."""
    w_ih = params.weights[INPUT]
    return torch.matmul(inputs.to(w_ih.dtype), w_ih.mT[:, None])


def drive_function(params: CellParams, projection: Tensor) -> Callable[[int], Tensor]:
    """t -> input_scale * (weight_ih u_t) + bias_ih, shaped (G, M, B, F)."""
    scale = params.input_scale[:, :, None, None]
    bias = params.weights["bias_ih"][:, None, None, :]

    def drive(t: int) -> Tensor:
        return scale * projection[:, None, :, t] + bias

    return drive


def drive_bound(params: CellParams, projection: Tensor) -> Tensor:
    """(G, M, F) upper bound of |drive| over all steps and trajectories."""
    peak = projection.double().abs().amax(dim=(1, 2))  # (G, F)
    bias = params.weights["bias_ih"].double().abs()
    return params.input_scale.double()[..., None] * peak[:, None] + bias[:, None]


def rollout(cell: Cell, params: CellParams, inputs: Tensor, x0: Tensor,
            keep_from: int = 0) -> Tensor:
    """States after each input, (G, M, B, T - keep_from, D); x_t is the state after u_t.

    Differentiable (training and the landscape run through it). The drive of step t is
    :func:`drive_function`'s, but taken from the projection by ``unbind``: the backward of T
    separate indexings would write T full-size zero gradients of the projection (quadratic
    in T, 40x the forward at T = 100), that of one unbind is one stack.
    """
    projection = input_projection(params, inputs)
    scale = params.input_scale[:, :, None, None]
    bias = params.weights["bias_ih"][:, None, None, :]
    x, states = x0, []
    for t, step_projection in enumerate(projection.unbind(-2)):
        x, _ = cell.step(params, x, scale * step_projection[:, None] + bias)
        if t >= keep_from:
            states.append(x)
    return torch.stack(states, dim=-2)


def sample_steps(burn_in: int, seq_len: int, count: int) -> list[int]:
    """``count`` evenly spaced steps in [burn_in, burn_in + seq_len)."""
    count = min(count, seq_len)
    if count == 0:
        return []
    return sorted({burn_in + round(i * (seq_len - 1) / max(count - 1, 1)) for i in range(count)})


def drive_blocks(params: CellParams, projection: Tensor, steps: int, block: int = 32):
    """The drives of :func:`drive_function` for t = 0 .. steps - 1, computed ``block`` steps
    at a time (two kernels per block instead of two per step); yields (G, M, B, F) views."""
    scale = params.input_scale[None, :, :, None, None]
    bias = params.weights["bias_ih"][None, :, None, None, :]
    for first in range(0, steps, block):
        # (G, B, C, F) -> (C, G, 1, B, F), then scaled per point.
        chunk = projection[:, :, first:first + block].permute(2, 0, 1, 3)[:, :, None]
        yield from torch.addcmul(bias, chunk, scale).unbind(0)


def _sampled_norms(cell: Cell, params: CellParams, caches: list[dict[str, Tensor]],
                   start: Tensor, steps: int, max_bytes: int) -> Tensor:
    """||J_t||_2 at every sampled step, (G, M, B, S): the S samples' Lanczos iterations run as
    one batch (their caches concatenated along the trajectory axis), in as few chunks as
    ``max_bytes`` allows."""
    batch, size = start.shape[-2], start.shape[-1]
    # Lanczos without full re-orthogonalisation keeps a few vectors per operator; with the
    # operator's temporaries, budget 16 state-sized vectors per sample.
    per_sample = start[..., 0, 0].numel() * batch * size * start.element_size() * 16
    width = max(1, max_bytes // max(per_sample, 1))
    norms = []
    for first in range(0, len(caches), width):
        chunk = caches[first:first + width]
        joined = {name: torch.cat([c[name] for c in chunk], dim=2) for name in chunk[0]}
        gram = cell.jacobian_gram(params, joined)
        begin = start.repeat(1, 1, len(chunk), 1)  # the same start vector for every sample
        sigma = top_singular_value(gram, begin, steps, full_reorthogonalisation=False)
        norms.append(sigma.unflatten(2, (len(chunk), batch)))
    return torch.cat(norms, dim=2).movedim(2, -1)


def run_dynamics(cell: Cell, params: CellParams, inputs: Tensor, x0: Tensor, seq_len: int,
                 config: DynamicsConfig, seeds: list[int],
                 needs: PassNeeds = PassNeeds(), lanczos_bytes: int = 2**28,
                 reorthonormalisation: Reorthonormalisation = ADAPTIVE
                 ) -> DynamicsResult:
    """Propagate states and tangents along the task's inputs.

    Args:
        cell: the cell; params: its (prepared) parameters for G x M points.
        inputs: (G or 1, B, burn_in + seq_len, I) task inputs.
        x0: (G, M, B, D) initial states.
        seq_len: N, the cap of the memory horizon and the averaging window.
        config: protocol; seeds: one seed per group (tangent start vectors).
        needs: what to compute besides the states; tangents and Lanczos samples cost most of
            the pass, so a caller that needs neither exponents nor ||J_t|| skips them.
        lanczos_bytes: memory allowed to the batched Lanczos of the sampled Jacobians.
        reorthonormalisation: when and how k > 1 tangents are re-orthonormalised (every tau
            steps by default, :data:`sweeper.lyapunov.ADAPTIVE`;
            :data:`sweeper.lyapunov.EVERY_STEP` is the every-step reference).

    Returns:
        A :class:`DynamicsResult`; one diverging point leaves the others untouched.

    The loop keeps only what each step must do: the step itself, the renormalisation of the
    tangents (their log growth written into a preallocated buffer; for k > 1 the first
    tangent every step and the block by a QR every tau steps, see :class:`TangentBasis`),
    and a running float64 sum of each state's entries, which turns non-finite once any
    entry is (inf and NaN never leave a sum); a state whose entries sum beyond the dtype's
    range (about 3e38 in float32) counts as diverged too. The sampled Jacobians are kept
    (their caches) and their norms computed after the loop, all samples in one batched
    Lanczos.
    """
    groups, members = params.recurrent_scale.shape
    batch, size = x0.shape[-2], x0.shape[-1]
    k = min(config.lyapunov_k, size)
    steps = inputs.shape[-2]
    dtype, device = x0.dtype, x0.device
    projection = input_projection(params, inputs)

    def start_vectors(purpose: str, rows: int) -> Tensor:
        draws = [torch.randn(batch, rows, size, generator=generator(s, purpose),
                             dtype=torch.float64) for s in seeds]
        return torch.stack(draws).to(device=device, dtype=dtype)[:, None].expand(
            groups, members, batch, rows, size)

    samples = (set(sample_steps(config.burn_in, seq_len, config.lipschitz_samples))
               if needs.jacobian_samples else set())
    shape = (groups, members, batch)
    state_sum = torch.zeros(shape, dtype=torch.float64, device=device)
    nan = torch.full((groups, members), math.nan, dtype=torch.float64, device=device)
    caches = []
    if needs.tangents:
        v, _ = renormalise(start_vectors("tangents", k))
        # Log growth of every step, kept and reduced (in float64) after the loop.
        if k == 1:
            logs = torch.empty(steps, *shape, k, dtype=dtype, device=device)
        else:  # zero between QRs
            logs = torch.zeros(steps, *shape, k, dtype=torch.float64, device=device)
            basis = TangentBasis(reorthonormalisation, math.prod(shape), k, dtype,
                                 config.burn_in, steps)
        z = torch.cat([x0[..., None, :], v], dim=-2)  # [x; v]: one product per step for both
    else:
        z = x0
    for t, drive in enumerate(drive_blocks(params, projection, steps)):
        if needs.tangents:
            z, cache = cell.step_stacked(params, z, drive)
            if k == 1:
                renormalise_(z[..., 1:, :], out=logs[t])
            else:
                basis.advance(t, z[..., 1:, :], logs[t])
            state_sum += z[..., 0, :].sum(-1)
        else:
            z, cache = cell.step(params, z, drive)
            state_sum += z.sum(-1)
        if t in samples:
            caches.append({name: value.clone() for name, value in cache.items()})
    finite = torch.isfinite(state_sum)
    sigmas = None
    if caches:
        sigmas = _sampled_norms(cell, params, caches, start_vectors("lanczos", 1)[..., 0, :],
                                config.lanczos_steps, lanczos_bytes)

    if needs.tangents:
        window = max(steps - config.burn_in, 1)
        lyapunov = (logs[config.burn_in:].sum(0, dtype=torch.float64) / window).mean(dim=2)
        lyapunov = torch.sort(lyapunov, dim=-1, descending=True).values
        # Memory horizon: first t with log |v_t| - log |v_0| < log tol, v_0 the first tangent.
        distance = torch.cumsum(logs[:seq_len, ..., 0], dim=0, dtype=torch.float64)
        below = distance < math.log(config.horizon_tol)
        forgotten = below.any(0)
        first = torch.argmax(below.to(torch.uint8), dim=0).double() + 1
        horizon = torch.where(forgotten, first, torch.full_like(first, float(seq_len)))
        horizon, forgotten_all = horizon.amax(dim=2), forgotten.all(dim=2)
    else:
        lyapunov = nan[..., None].expand(groups, members, k).clone()
        horizon, forgotten_all = nan, torch.ones_like(nan, dtype=torch.bool)
    if sigmas is not None:
        sig = sigmas  # (G, M, B, S)
        local_max = sig.amax(dim=(-1, -2))
        local_mean = torch.log(sig).mean(dim=(-1, -2)).exp()
    else:
        local_max = local_mean = nan
    twin = None
    if config.twin and needs.tangents:
        drive = drive_function(params, projection)
        twin = lyapunov_twin(cell, params, drive, x0, steps, config.burn_in).mean(dim=2)

    ok = finite.all(dim=2)

    def mask(value: Tensor) -> Tensor:
        bad = ~ok.reshape(ok.shape + (1,) * (value.dim() - 2))
        return torch.where(bad, torch.full_like(value, math.nan), value)

    return DynamicsResult(
        finite=ok,
        lyapunov=mask(lyapunov),
        lipschitz_local_max=mask(local_max),
        lipschitz_local_mean=mask(local_mean),
        memory_horizon=mask(horizon),
        memory_horizon_capped=~forgotten_all & ok,
        lyapunov_twin=None if twin is None else mask(twin),
        drive_max=drive_bound(params, projection),
    )
