"""The antisymmetric RNN (Chang, Chen, Haber & Chi 2019, "AntisymmetricRNN: a dynamical
system view on recurrent neural networks"):

    h' = h + eps tanh((s M - gamma I) h + drive + b),   M = W - W^T antisymmetric

The ODE it discretises has a Jacobian whose eigenvalues have real parts -gamma tanh' <= 0:
neither exploding nor (for small gamma) vanishing. ``recurrent_scale`` s multiplies M; the
diffusion gamma stays fixed. Forward Euler adds at most eps^2 s^2 ||M||^2 / 2 per step to the
growth of a mode, so lambda_1 stays within O(eps gamma + eps^2) of 0.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..params import CellParams
from ._base import BoundContext, Cell, recurrent_product, spectral_norm


class AntisymmetricRNN(Cell):
    """Step size ``eps`` and diffusion ``gamma`` are class defaults (within the paper's grid)."""

    name = "antisymmetric_rnn"
    eps: ClassVar[float] = 0.1
    gamma: ClassVar[float] = 0.01

    def init_weights(self, hidden_size, input_size, generator):
        w = torch.randn(hidden_size, hidden_size, generator=generator,
                        dtype=torch.float64) / math.sqrt(hidden_size)
        w_ih = torch.randn(hidden_size, input_size, generator=generator,
                           dtype=torch.float64) / math.sqrt(input_size)
        zeros = torch.zeros(hidden_size, dtype=torch.float64)
        return {"weight_hh": w - w.T, "weight_ih": w_ih, "bias_ih": zeros,
                "bias_hh": zeros.clone()}

    def step(self, params, x, drive):
        pre = (recurrent_product(params, x) - self.gamma * x + drive
               + params.weights["bias_hh"][:, None, None, :])
        act = torch.tanh(pre)
        x_next = x + self.eps * act
        return x_next, {"x_next": x_next, "slope": 1 - act**2}

    def jvp(self, params, cache, v):
        inner = recurrent_product(params, v) - self.gamma * v
        return v + self.eps * cache["slope"][..., None, :] * inner

    def lipschitz_bound(self, params: CellParams, context: BoundContext):
        """1 + eps ||s M - gamma I||_2 = 1 + eps sqrt(s^2 ||M||^2 + gamma^2), the paper's
        bound: J = I + eps diag(tanh') (s M - gamma I) with 0 < tanh' <= 1, and s M - gamma I
        is normal (M antisymmetric), its norm sqrt(s^2 ||M||^2 + gamma^2)."""
        s = params.recurrent_scale.double()
        norm = spectral_norm(params.weights["weight_hh"])[:, None]
        return 1 + self.eps * torch.sqrt((s * norm) ** 2 + self.gamma**2)
