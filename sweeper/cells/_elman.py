"""Elman cells x' = phi(s W x + a U u + b): tanh or identity, Gaussian or orthogonal W."""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..params import CellParams
from ._base import (
    BoundContext,
    Cache,
    Cell,
    Tensor,
    recurrent_product,
    recurrent_product_t,
    spectral_norm,
)


def haar_orthogonal(size: int, generator: torch.Generator) -> Tensor:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian with the sign of diag(R) fixed)."""
    q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


class ElmanCell(Cell):
    """Base of rnn_tanh, linear and orthogonal; subclasses set ``activation`` and ``init``."""

    activation: ClassVar[str] = "tanh"  # "tanh" or "identity"
    orthogonal: ClassVar[bool] = False

    def init_weights(self, hidden_size, input_size, generator):
        if self.orthogonal:
            w_hh = haar_orthogonal(hidden_size, generator)
        else:
            # N(0, 1/H): recurrent_scale is then the classic gain g (spectral radius ~ g).
            w_hh = torch.randn(hidden_size, hidden_size, generator=generator,
                               dtype=torch.float64) / math.sqrt(hidden_size)
        w_ih = torch.randn(hidden_size, input_size, generator=generator,
                           dtype=torch.float64) / math.sqrt(input_size)
        zeros = torch.zeros(hidden_size, dtype=torch.float64)
        return {"weight_hh": w_hh, "weight_ih": w_ih, "bias_ih": zeros, "bias_hh": zeros.clone()}

    def _phi(self, pre: Tensor) -> Tensor:
        return torch.tanh(pre) if self.activation == "tanh" else pre

    def _bias(self, params: CellParams) -> Tensor:
        return params.weights["bias_hh"][:, None, None, :]

    def step(self, params, x, drive):
        x_next = self._phi(recurrent_product(params, x) + drive + self._bias(params))
        return x_next, {"x_next": x_next}

    def _slope(self, cache: Cache) -> Tensor | None:
        # phi'(pre) written through the output: tanh' = 1 - tanh^2.
        if self.activation == "identity":
            return None
        return 1.0 - cache["x_next"] ** 2

    def jvp(self, params, cache, v):
        out = recurrent_product(params, v)
        slope = self._slope(cache)
        return out if slope is None else out * slope[..., None, :]

    def vjp(self, params, cache, w):
        slope = self._slope(cache)
        return recurrent_product_t(params, w if slope is None else w * slope[..., None, :])

    def jacobian_gram(self, params, cache):
        """J J^T = s^2 diag(phi') W W^T diag(phi'): one product per application with W W^T
        formed once per base draw (J^T J would need W and W^T in turn)."""
        weight = params.weights["weight_hh"]
        gram = weight @ weight.mT  # (G, H, H), symmetric
        groups, members = params.recurrent_scale.shape
        scale2 = (params.recurrent_scale**2).reshape(groups, members, 1, 1)
        slope = self._slope(cache)
        after = scale2 if slope is None else scale2 * slope  # s^2 diag(phi'), formed once

        def apply(v: Tensor) -> Tensor:
            u = v if slope is None else v * slope
            out = torch.bmm(u.reshape(groups, -1, u.shape[-1]), gram).reshape(u.shape)
            return out.mul_(after)

        return apply

    def step_tangent(self, params, x, drive, v):
        z_next, cache = self.step_stacked(params, torch.cat([x[..., None, :], v], dim=-2), drive)
        return cache["x_next"], cache, z_next[..., 1:, :]

    def step_stacked(self, params, z, drive):
        # State and tangents share the matrix W: one product over [x; v], then everything in
        # place on that fresh product (no copies: this loop is the hot path of every sweep).
        product = recurrent_product(params, z)
        pre = product[..., 0, :]
        pre.add_(drive).add_(self._bias(params))
        if self.activation == "tanh":
            pre.tanh_()
            # v' = tanh' * (s W v) = p - p * tanh^2 with p = s W v: one fused update in place.
            tangent = product[..., 1:, :]
            tangent.addcmul_(tangent, (pre * pre)[..., None, :], value=-1)
        return product, {"x_next": pre}

    def lipschitz_bound(self, params: CellParams, context: BoundContext) -> Tensor:
        """s * ||W||_2.

        J = diag(phi'(pre)) s W with 0 < tanh' <= 1 (identity: phi' = 1), so
        ||J||_2 <= s ||W||_2 for every state and input. The bound is tight: tanh'(0) = 1, and
        for the linear cell it is exact. ||W||_2 is computed once per base draw.
        """
        return params.recurrent_scale.double() * spectral_norm(params.weights["weight_hh"])[:, None]
