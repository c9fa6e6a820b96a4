"""GRU in PyTorch's convention (gates r, z, n):

    r = sigma(W_ir u + b_ir + W_hr h + b_hr)
    z = sigma(W_iz u + b_iz + W_hz h + b_hz)
    n = tanh(W_in u + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
"""

from __future__ import annotations

import torch

from ._base import BoundContext, Cell, recurrent_product, spectral_norm
from ._gated import blocks, row_abs_sum, uniform_init


class GRU(Cell):
    name = "gru"
    gates = 3

    def init_weights(self, hidden_size, input_size, generator):
        return uniform_init(hidden_size, input_size, self.gates, generator)

    def step(self, params, h, drive):
        hidden = recurrent_product(params, h) + params.weights["bias_hh"][:, None, None, :]
        d_r, d_z, d_n = drive.chunk(3, dim=-1)
        h_r, h_z, q = hidden.chunk(3, dim=-1)
        r = torch.sigmoid(d_r + h_r)
        z = torch.sigmoid(d_z + h_z)
        n = torch.tanh(d_n + r * q)
        h_next = (1 - z) * n + z * h
        return h_next, {"x_next": h_next, "h": h, "r": r, "z": z, "n": n, "q": q}

    def jvp(self, params, cache, v):
        p_r, p_z, p_n = recurrent_product(params, v).chunk(3, dim=-1)
        c = {k: t[..., None, :] for k, t in cache.items()}
        r, z, n = c["r"], c["z"], c["n"]
        dn = (1 - n**2) * (r * p_n + c["q"] * r * (1 - r) * p_r)
        return z * v + (1 - z) * dn + (c["h"] - n) * z * (1 - z) * p_z

    def lipschitz_bound(self, params, context: BoundContext):
        """1 + s||W_hn|| + (Q/4) s||W_hr|| + (1/2) s||W_hz||  (2-norms).

        Derivation. With q = s W_hn h + b_hn,
            J = diag(z) + diag((1-z)(1-n^2) r) s W_hn + diag((1-z)(1-n^2) q r(1-r)) s W_hr
                + diag((h-n) z(1-z)) s W_hz.
        h' is a convex combination of n in (-1, 1) and h, so |h| <= 1 stays true from any
        |h_0| <= 1, whatever the input. Hence |q_i| <= s max_i sum_j |W_hn,ij| + max|b_hn| = Q,
        |h - n| < 2, and sigma' <= 1/4, tanh' <= 1, gates in (0, 1). The triangle inequality
        over the four terms gives the bound. It never uses the input, so it holds for
        unbounded input too; it is >= 1 because z -> 1 makes the GRU an identity map.
        """
        s = params.recurrent_scale.double()
        w_r, w_z, w_n = blocks(params, "weight_hh", 3)
        b_n = params.weights["bias_hh"].chunk(3, dim=1)[2].double().abs().amax(-1)
        q_max = s * row_abs_sum(w_n).amax(-1)[:, None] + b_n[:, None]
        norm_r, norm_z, norm_n = (spectral_norm(w)[:, None] for w in (w_r, w_z, w_n))
        return 1.0 + s * norm_n + 0.25 * q_max * s * norm_r + 0.5 * s * norm_z
