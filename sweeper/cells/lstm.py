"""LSTM in PyTorch's convention (gates i, f, g, o); the state is x = (h, c), D = 2H:

    i, f, o = sigma(.), g = tanh(.)   with pre-activations W_i* u + b_i* + W_h* h + b_h*
    c' = f * c + i * g
    h' = o * tanh(c')
"""

from __future__ import annotations

import torch

from ..params import CellParams
from ._base import BoundContext, Cell, recurrent_product, spectral_norm
from ._gated import blocks, row_abs_sum, uniform_init


class LSTM(Cell):
    name = "lstm"
    gates = 4

    def state_size(self, hidden_size):
        return 2 * hidden_size

    def init_weights(self, hidden_size, input_size, generator):
        return uniform_init(hidden_size, input_size, self.gates, generator)

    def step(self, params, x, drive):
        h, c = x.chunk(2, dim=-1)
        pre = recurrent_product(params, h) + drive + params.weights["bias_hh"][:, None, None, :]
        p_i, p_f, p_g, p_o = pre.chunk(4, dim=-1)
        i, f, o = torch.sigmoid(p_i), torch.sigmoid(p_f), torch.sigmoid(p_o)
        g = torch.tanh(p_g)
        c_next = f * c + i * g
        tc = torch.tanh(c_next)
        x_next = torch.cat([o * tc, c_next], dim=-1)
        return x_next, {"x_next": x_next, "c": c, "i": i, "f": f, "g": g, "o": o, "tc": tc}

    def jvp(self, params, cache, v):
        v_h, v_c = v.chunk(2, dim=-1)
        p_i, p_f, p_g, p_o = recurrent_product(params, v_h).chunk(4, dim=-1)
        k = {name: t[..., None, :] for name, t in cache.items() if name != "x_next"}
        i, f, g, o, tc = k["i"], k["f"], k["g"], k["o"], k["tc"]
        dc = k["c"] * f * (1 - f) * p_f + g * i * (1 - i) * p_i + i * (1 - g**2) * p_g + f * v_c
        dh = tc * o * (1 - o) * p_o + o * (1 - tc**2) * dc
        return torch.cat([dh, dc], dim=-1)

    def lipschitz_bound(self, params: CellParams, context: BoundContext):
        """Norm of the 2x2 matrix of block-norm bounds of J = d(h', c') / d(h, c).

        Derivation. With sigma' <= 1/4, |tanh| <= 1, gates in (0, 1):
            dc'/dh = diag(c f(1-f)) s W_hf + diag(g i(1-i)) s W_hi + diag(i(1-g^2)) s W_hg
                ||.|| <= s (C/4 ||W_hf|| + 1/4 ||W_hi|| + ||W_hg||) =: A
            dc'/dc = diag(f)                                  ||.|| <= 1
            dh'/dh = diag(tanh(c') o(1-o)) s W_ho + diag(o(1-tanh^2 c')) dc'/dh
                ||.|| <= s/4 ||W_ho|| + A
            dh'/dc = diag(o(1-tanh^2 c') f)                   ||.|| <= 1
        and ||[[J11, J12], [J21, J22]]||_2 <= ||[[|J11|, |J12|], [|J21|, |J22|]]||_2.
        C bounds |c| on the reachable set: |h| <= 1 always, and |c'| <= f |c| + 1, so from
        |c_0| <= 1 we get |c_t| <= 1 + t, and |c| <= 1/(1 - f_max) whenever the forget gate
        stays below f_max = sigma(P_f) with P_f = s ||W_hf||_inf + max|drive_f| + |b_hf|.
        Without a bound on the drive only 1 + seq_len remains.
        """
        s = params.recurrent_scale.double()
        w_i, w_f, w_g, w_o = blocks(params, "weight_hh", 4)
        norms = {n: spectral_norm(w)[:, None]
                 for n, w in zip("ifgo", (w_i, w_f, w_g, w_o), strict=True)}
        c_max = self.cell_state_bound(params, context)
        a = s * (c_max * norms["f"] / 4 + norms["i"] / 4 + norms["g"])
        top = s * norms["o"] / 4 + a
        ones = torch.ones_like(a)
        block = torch.stack([torch.stack([top, ones], -1), torch.stack([a, ones], -1)], -2)
        return torch.linalg.matrix_norm(block, ord=2)

    def cell_state_bound(self, params: CellParams, context: BoundContext):
        """(G, M) bound on max |c| over the reachable set (see ``lipschitz_bound``)."""
        s = params.recurrent_scale.double()
        grow = torch.full_like(s, context.state_max + context.seq_len)
        if context.drive_max is None:
            return grow
        hidden = params.weights["weight_hh"].shape[2]
        f_rows = slice(hidden, 2 * hidden)
        w_f = params.weights["weight_hh"][:, f_rows]
        b_f = params.weights["bias_hh"][:, f_rows].double().abs()
        pre_f = (s[..., None] * row_abs_sum(w_f)[:, None] * context.state_max
                 + context.drive_max[..., f_rows].double() + b_f[:, None])
        f_max = torch.sigmoid(pre_f.amax(-1))
        settle = torch.clamp(1.0 / (1.0 - f_max), min=context.state_max)
        return torch.minimum(grow, settle)
