"""The cell contract: one state update, its tangent map, and a sound Lipschitz bound.

A cell must say how it steps and how it draws its weights; the tangent map defaults to
autodiff of ``step`` (all tangent rows in one batched pass), and the bound may be absent
(then it is NaN). The built-in cells write both by hand.

Shapes: G base draws, M points per draw, B trajectories per point, D state size, k tangent
vectors stored as rows. States are (G, M, B, D); tangents (G, M, B, k, D); the input drive
``input_scale * (weight_ih @ u) + bias_ih`` is (G, M, B, F) with F = gates * hidden_size.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..params import RECURRENT, CellParams

Tensor = torch.Tensor
Cache = dict[str, Tensor]


@dataclass(frozen=True)
class BoundContext:
    """What a Lipschitz bound may assume about the reachable set.

    Attributes:
        seq_len: number of steps the bound must cover (cells whose state can grow use it).
        drive_max: (G, M, F) largest |drive| seen per point and pre-activation row, or None
            when the input is unbounded (then bounds that need it fall back to worst cases).
        state_max: bound on |x_0| entry-wise (initial states are drawn in [-1, 1]).
    """

    seq_len: int
    drive_max: Tensor | None = None
    state_max: float = 1.0


def recurrent_product(params: CellParams, y: Tensor) -> Tensor:
    """``recurrent_scale * (y @ weight_hh^T)`` for y of shape (G, M, ..., D_h) -> (G, M, ..., F).

    One batched matrix product per base draw covers all M points of that draw.
    """
    weight = params.weights[RECURRENT]
    groups, members = params.recurrent_scale.shape
    lead = y.shape[2:-1]
    out = torch.bmm(y.reshape(groups, -1, y.shape[-1]), weight.mT)
    out = out.reshape(groups, members, *lead, weight.shape[1])
    # In place: ``out`` is fresh, and bmm's backward does not need its output.
    return out.mul_(params.recurrent_scale.reshape(groups, members, *([1] * (len(lead) + 1))))


def recurrent_product_t(params: CellParams, y: Tensor) -> Tensor:
    """``recurrent_scale * (y @ weight_hh)`` for y of shape (G, M, ..., F) -> (G, M, ..., D_h)."""
    weight = params.weights[RECURRENT]
    groups, members = params.recurrent_scale.shape
    lead = y.shape[2:-1]
    out = torch.bmm(y.reshape(groups, -1, y.shape[-1]), weight)
    out = out.reshape(groups, members, *lead, weight.shape[2])
    return out.mul_(params.recurrent_scale.reshape(groups, members, *([1] * (len(lead) + 1))))


def spectral_norm(matrix: Tensor) -> Tensor:
    """Largest singular value of each matrix in a batch (..., R, C), in float64."""
    return torch.linalg.matrix_norm(matrix.double(), ord=2)


#: Cache keys the generic tangent map keeps: the step's input state and drive, and its output.
STATE_IN, DRIVE_IN, STATE_OUT = "x_in", "drive_in", "x_next"


def _with_inputs(step: Callable) -> Callable:
    """``step`` whose cache also holds its inputs and output, which the generic tangent map
    differentiates at."""
    @functools.wraps(step)
    def recorded(self, params, x, drive):
        x_next, cache = step(self, params, x, drive)
        return x_next, {**cache, STATE_IN: x, DRIVE_IN: drive, STATE_OUT: x_next}

    recorded.records_inputs = True
    return recorded


def _folded(x: Tensor, drive: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The state and drive repeated once per tangent row, and the rows, all with the k rows
    folded into the trajectory axis: (G, M, B * k, ...)."""
    k = rows.shape[-2]

    def repeat(t: Tensor) -> Tensor:
        return t.unsqueeze(-2).expand(*t.shape[:-1], k, t.shape[-1]).flatten(2, 3)

    return repeat(x), repeat(drive), rows.flatten(2, 3)


def _linearised(cell: Cell, params: CellParams, x: Tensor, drive: Tensor, v: Tensor
                ) -> tuple[Tensor, Tensor]:
    """``(f(x), J v)`` of the cell's step by autodiff, for tangent rows v (G, M, B, k, D).

    J v comes from reverse mode twice: g(u) = J^T u is linear in u, so the gradient of
    <g(u), v> with respect to u is J v. With the k rows folded into the trajectory axis it is
    one batched pass (no loop over rows), exact, and in this torch several times faster than
    forward mode (dual numbers), whose broadcasting arithmetic runs through Python."""
    at, repeated, rows = _folded(x, drive, v)
    with torch.enable_grad():
        state = at.detach().requires_grad_(True)
        out = cell.step(params, state, repeated)[0]
        probe = torch.zeros_like(out, requires_grad=True)
        (pulled,) = torch.autograd.grad(out, state, probe, create_graph=True, allow_unused=True)
        image = (None if pulled is None or not pulled.requires_grad
                 else torch.autograd.grad(pulled, probe, rows)[0])
    first = out.detach().unflatten(2, (x.shape[2], v.shape[-2]))[..., 0, :]
    return first, torch.zeros_like(v) if image is None else image.reshape(v.shape)


class Cell(ABC):
    """A recurrent cell x_{t+1} = f(x_t, u_t; theta) evaluated for K points at once.

    A cell implements ``init_weights`` and ``step``; everything else has a default. The
    weights follow torch.nn's names: ``recurrent_scale`` multiplies ``weight_hh`` and
    ``input_scale`` multiplies ``weight_ih`` (see :mod:`sweeper.params`).

    Invariants every implementation keeps:
      * ``step`` and ``jvp`` are batched over all leading dimensions; no Python loop over
        points or hidden units.
      * ``jvp(params, cache, v)`` equals ``J_t v`` with J_t = d x_{t+1} / d x_t at the state
        that produced ``cache`` (tested against torch.func.jacrev in float64). Without an
        override it is autodiff of ``step``; ``step``'s cache then also keeps the
        step's input state and drive.
      * ``lipschitz_bound`` is an upper bound of ||J||_2 over every state reachable under the
        given :class:`BoundContext` (tested: it is never below the measured local maximum),
        or NaN everywhere for a cell that has none (``has_bound`` is then False).
      * A non-finite state only makes that point's outputs non-finite.
    """

    name: ClassVar[str]
    gates: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and cls.jvp is Cell.jvp and not getattr(step, "records_inputs",
                                                                     False):
            cls.step = _with_inputs(step)

    @property
    def has_bound(self) -> bool:
        """Whether the cell gives a Lipschitz bound (else ``lipschitz_bound`` is NaN)."""
        return type(self).lipschitz_bound is not Cell.lipschitz_bound

    @property
    def generic_tangent(self) -> bool:
        """Whether the tangent map is autodiff of ``step`` (no hand-written ``jvp``)."""
        return type(self).jvp is Cell.jvp

    def state_size(self, hidden_size: int) -> int:
        """Dimension D of the state x (2 * hidden_size for the LSTM's (h, c))."""
        return hidden_size

    @abstractmethod
    def init_weights(self, hidden_size: int, input_size: int, generator: torch.Generator
                     ) -> dict[str, Tensor]:
        """One base draw (float64, CPU, no batch dimension): weight_hh, weight_ih, biases."""

    def prepare(self, params: CellParams) -> CellParams:
        """The parameters the cell really runs with, for the same K points in the same order.

        The default returns ``params`` unchanged, in its (G, M) layout. A cell that constrains
        each point's effective weights (stable_lstm) gives every point its own weights and
        returns ``params.expand()``'s layout (G * M, 1), with ``meta["seeds"]`` one per new
        group; callers therefore index results by point (k = g * M + m, flattened), take the
        seed of each group from ``params.group_seeds``, and never assume M is unchanged.
        ``measure`` calls it once per call; a PointModel calls it on each forward (theta
        moves during training and along slices).
        """
        return params

    @abstractmethod
    def step(self, params: CellParams, x: Tensor, drive: Tensor) -> tuple[Tensor, Cache]:
        """Advance (G, M, B, D) states by one step; returns the new state and what jvp needs."""

    def jvp(self, params: CellParams, cache: Cache, v: Tensor) -> Tensor:
        """J_t applied to tangent rows v (G, M, B, k, D) -> (G, M, B, k, D).

        The default differentiates ``step`` at the cached input state (see
        :func:`_linearised`): exact, and a few times the cost of a hand-written map.
        """
        return _linearised(self, params, cache[STATE_IN], cache[DRIVE_IN], v)[1]

    def step_tangent(self, params: CellParams, x: Tensor, drive: Tensor, v: Tensor
                     ) -> tuple[Tensor, Cache, Tensor]:
        """One step of the state and of its tangent vectors. Cells may fuse the two; the
        generic tangent map takes the state from the same pass as the tangents."""
        if self.generic_tangent:
            x_next, image = _linearised(self, params, x, drive, v)
            return x_next, {STATE_IN: x, DRIVE_IN: drive, STATE_OUT: x_next}, image
        x_next, cache = self.step(params, x, drive)
        return x_next, cache, self.jvp(params, cache, v)

    def step_stacked(self, params: CellParams, z: Tensor, drive: Tensor) -> tuple[Tensor, Cache]:
        """``step_tangent`` on the stacked layout z = [x; v], (G, M, B, 1 + k, D), that the
        dynamics pass keeps: row 0 is the state, rows 1.. the tangents. Cells whose state and
        tangent share a matrix product override it to skip the split and the copy."""
        x_next, cache, v_next = self.step_tangent(params, z[..., 0, :], drive, z[..., 1:, :])
        return torch.cat([x_next[..., None, :], v_next], dim=-2), cache

    def vjp(self, params: CellParams, cache: Cache, w: Tensor) -> Tensor:
        """J_t^T applied to rows w (G, M, B, k, D); by default through autograd on ``jvp``,
        which is exact because jvp is linear in v (for the generic tangent map: reverse-mode
        autodiff of ``step``)."""
        if self.generic_tangent:
            at, drive, rows = _folded(cache[STATE_IN], cache[DRIVE_IN], w)
            with torch.enable_grad():
                state = at.detach().requires_grad_(True)
                out = self.step(params, state, drive)[0]
                (pulled,) = torch.autograd.grad(out, state, rows, allow_unused=True)
            return torch.zeros_like(w) if pulled is None else pulled.reshape(w.shape)
        with torch.enable_grad():
            v = torch.zeros_like(w, requires_grad=True)
            out = self.jvp(params, cache, v)
            (grad,) = torch.autograd.grad(out, v, grad_outputs=w)
        return grad

    def jacobian_gram(self, params: CellParams, cache: Cache) -> Callable[[Tensor], Tensor]:
        """A symmetric operator whose largest eigenvalue is ||J_t||_2^2, for Lanczos.

        Maps vectors (G, M, B, D) to J^T J v (by default through ``jvp`` then ``vjp``: two
        products per application). Cells may return J J^T instead, which has the same nonzero
        eigenvalues and is sometimes one product (Elman cells).
        """
        def apply(v: Tensor) -> Tensor:
            rows = v[..., None, :]
            return self.vjp(params, cache, self.jvp(params, cache, rows))[..., 0, :]

        return apply

    def jacobian(self, params: CellParams, cache: Cache) -> Tensor:
        """Explicit J_t, (G, M, B, D, D); for tests and small problems."""
        ref = next(iter(cache.values()))
        size = self.state_dim_from_cache(cache)
        eye = torch.eye(size, dtype=ref.dtype, device=ref.device)
        rows = eye.expand(*ref.shape[:3], size, size)
        # Row j of jvp(e_j) is column j of J.
        return self.jvp(params, cache, rows).mT

    def state_dim_from_cache(self, cache: Cache) -> int:
        return cache[STATE_OUT].shape[-1]

    def lipschitz_bound(self, params: CellParams, context: BoundContext) -> Tensor:
        """(G, M) upper bound of sup ||d f / d x||_2 over the reachable set, float64; NaN
        for a cell without one (then ``cost_growth_log10`` is NaN too)."""
        return torch.full(tuple(params.recurrent_scale.shape), math.nan, dtype=torch.float64,
                          device=params.device)



def autodiff_version(cell: Cell) -> Cell:
    """The same cell (its update, draw and bound) with every hand-written tangent path taken
    away, so its tangents come from autodiff of ``step`` as a plug-in's do: what the generic
    path is checked and benchmarked against."""
    base = type(cell)
    generic = {name: getattr(Cell, name) for name in
               ("jvp", "vjp", "jacobian_gram", "step_tangent", "step_stacked")}
    cls = type(f"Autodiff{base.__name__}", (base,),
               {**generic, "step": base.step, "name": f"autodiff_{cell.name}"})
    return cls()
