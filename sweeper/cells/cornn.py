"""The coupled oscillatory RNN (Rusch & Mishra 2021, "Coupled oscillatory recurrent neural
network (coRNN)"): y'' = tanh(W y + Wz y' + V u + b) - gamma y - eps y', discretised with the
paper's implicit-explicit scheme,

    z' = z + dt (tanh(s (W y + Wz z) + drive + b) - gamma y - eps z)
    y' = y + dt z'

State x = (y, z), D = 2H; ``recurrent_scale`` s multiplies W and Wz together (weight_hh is
[W Wz], H x 2H), ``input_scale`` multiplies V.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ..params import CellParams
from ._base import BoundContext, Cell, recurrent_product, spectral_norm


class CoRNN(Cell):
    """coRNN with the paper's sequential-MNIST constants (dt, gamma, eps) as class defaults."""

    name = "cornn"
    dt: ClassVar[float] = 0.042
    gamma: ClassVar[float] = 2.7
    eps: ClassVar[float] = 4.7

    def state_size(self, hidden_size: int) -> int:
        return 2 * hidden_size

    def init_weights(self, hidden_size, input_size, generator):
        # N(0, 1/H) for W and Wz: s is then a gain, as for the Elman cells.
        w_hh = torch.randn(hidden_size, 2 * hidden_size, generator=generator,
                           dtype=torch.float64) / math.sqrt(hidden_size)
        w_ih = torch.randn(hidden_size, input_size, generator=generator,
                           dtype=torch.float64) / math.sqrt(input_size)
        zeros = torch.zeros(hidden_size, dtype=torch.float64)
        return {"weight_hh": w_hh, "weight_ih": w_ih, "bias_ih": zeros, "bias_hh": zeros.clone()}

    def step(self, params, x, drive):
        y, z = x.chunk(2, dim=-1)
        pre = recurrent_product(params, x) + drive + params.weights["bias_hh"][:, None, None, :]
        act = torch.tanh(pre)
        z_next = z + self.dt * (act - self.gamma * y - self.eps * z)
        x_next = torch.cat([y + self.dt * z_next, z_next], dim=-1)
        return x_next, {"x_next": x_next, "slope": 1 - act**2}

    def jvp(self, params, cache, v):
        v_y, v_z = v.chunk(2, dim=-1)
        product = recurrent_product(params, v) * cache["slope"][..., None, :]
        dz = v_z + self.dt * (product - self.gamma * v_y - self.eps * v_z)
        return torch.cat([v_y + self.dt * dz, dz], dim=-1)

    def lipschitz_bound(self, params: CellParams, context: BoundContext):
        """Norm of the 2x2 matrix of block-norm bounds of J = d(y', z') / d(y, z).

        With 0 < tanh' <= 1 and W, Wz the halves of weight_hh:
            dz'/dy = dt (diag(tanh') s W - gamma I)        ||.|| <= dt (s ||W|| + gamma) =: A
            dz'/dz = (1 - dt eps) I + dt diag(tanh') s Wz  ||.|| <= |1 - dt eps| + dt s ||Wz||
                                                                 =: C
            dy'/dy = I + dt dz'/dy                         ||.|| <= 1 + dt A
            dy'/dz = dt dz'/dz                             ||.|| <= dt C
        and ||[[J11, J12], [J21, J22]]||_2 <= ||[[|J11|, |J12|], [|J21|, |J22|]]||_2 for block
        norms. It holds for every state and input.
        """
        s = params.recurrent_scale.double()
        w = params.weights["weight_hh"].double()
        half = w.shape[-1] // 2
        norm_w = spectral_norm(w[..., :half])[:, None]
        norm_wz = spectral_norm(w[..., half:])[:, None]
        a = self.dt * (s * norm_w + self.gamma)
        c = abs(1 - self.dt * self.eps) + self.dt * s * norm_wz
        block = torch.stack([torch.stack([1 + self.dt * a, self.dt * c], -1),
                             torch.stack([a, c], -1)], -2)
        return torch.linalg.matrix_norm(block, ord=2)
