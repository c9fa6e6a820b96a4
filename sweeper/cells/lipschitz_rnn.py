"""The Lipschitz RNN (Erichson, Azencot, Queiruga, Hodgkinson & Mahoney 2021, "Lipschitz
recurrent neural networks"), forward-Euler form:

    h' = h + eps (s A h + tanh(s W h + drive + b))
    A = (1 - beta)(M_A + M_A^T) + beta (M_A - M_A^T) - gamma_A I, W likewise from M_W, gamma_W

weight_hh stacks [W; A] (2H x H) so that one product gives both; ``recurrent_scale`` s
multiplies A and W, and only W's rows get the drive (the lower half of weight_ih is zero).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..params import CellParams
from ._base import BoundContext, Cell, recurrent_product, spectral_norm


def hybrid(m: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """(1 - beta)(M + M^T) + beta (M - M^T) - gamma I: the paper's symmetric-antisymmetric
    mixture."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype)
    return (1 - beta) * (m + m.mT) + beta * (m - m.mT) - gamma * eye


class LipschitzRNN(Cell):
    """Constants as class defaults: beta = 0.75, gamma = 0.001, eps = 0.03 (the paper's
    settings for its pixel tasks)."""

    name = "lipschitz_rnn"
    gates = 2
    eps: ClassVar[float] = 0.03
    beta: ClassVar[float] = 0.75
    gamma: ClassVar[float] = 0.001

    def init_weights(self, hidden_size, input_size, generator):
        def draw() -> torch.Tensor:
            return torch.randn(hidden_size, hidden_size, generator=generator,
                               dtype=torch.float64) / math.sqrt(hidden_size)

        w, a = hybrid(draw(), self.beta, self.gamma), hybrid(draw(), self.beta, self.gamma)
        u = torch.randn(hidden_size, input_size, generator=generator,
                        dtype=torch.float64) / math.sqrt(input_size)
        w_ih = torch.cat([u, torch.zeros_like(u)], 0)
        zeros = torch.zeros(2 * hidden_size, dtype=torch.float64)
        return {"weight_hh": torch.cat([w, a], 0), "weight_ih": w_ih, "bias_ih": zeros,
                "bias_hh": zeros.clone()}

    def step(self, params, x, drive):
        pre = recurrent_product(params, x) + drive + params.weights["bias_hh"][:, None, None, :]
        inner, linear = pre.chunk(2, dim=-1)
        act = torch.tanh(inner)
        x_next = x + self.eps * (linear + act)
        return x_next, {"x_next": x_next, "slope": 1 - act**2}

    def jvp(self, params, cache, v):
        inner, linear = recurrent_product(params, v).chunk(2, dim=-1)
        return v + self.eps * (linear + cache["slope"][..., None, :] * inner)

    def lipschitz_bound(self, params: CellParams, context: BoundContext):
        """||I + eps s A||_2 + eps s ||W||_2: J = (I + eps s A) + eps diag(tanh') s W with
        0 < tanh' <= 1. At most the paper's 1 + eps s (||A|| + ||W||)."""
        s = params.recurrent_scale.double()
        weight = params.weights["weight_hh"].double()
        half = weight.shape[-2] // 2
        w, a = weight[..., :half, :], weight[..., half:, :]
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        scaled = eye + self.eps * s[..., None, None] * a[:, None]
        return (torch.linalg.matrix_norm(scaled, ord=2)
                + self.eps * s * spectral_norm(w)[:, None])
