"""An LSTM kept inside Miller & Hardt's (2019) sufficient conditions for stability.

With PyTorch's blocks W_i, W_f, W_g (their W_z), W_o acting on h, U_f on the input, forget
biases b_f = b_ih,f + b_hh,f, ||.|| the induced infinity norm (largest absolute ROW sum) and
inputs bounded by ||u||_inf <= u_max, the forget gate never exceeds
    f_inf = sigma(max_j (||W_f,j||_1 + u_max ||U_f,j||_1 + |b_f,j|)),
and the LSTM is stable in the infinity norm on (c, h) when
    ||W_f|| < (1 - f_inf)^2,  ||W_i|| <= 1 - f_inf,  ||W_g|| <= (1 - f_inf) / 4,
    ||W_o|| <= 1 - f_inf.
(Row sums: the paper's companion code normalises column sums, which bounds the 1-norm instead.)

``prepare`` enforces the conditions for f_inf = ``forget_max`` by a row-wise projection of
each point's own (already scaled) weights: a row whose absolute sum exceeds its budget is
scaled down onto the budget, other rows are left unchanged. Budgets carry a factor 0.99 to make
the strict inequality strict. The guarantee assumes |u| <= ``input_bound`` (1, as in the paper);
:func:`stability_condition` checks it for any bound.
"""

from __future__ import annotations

import math

import torch

from ..params import CellParams
from ._base import Tensor
from .lstm import LSTM

FORGET_MAX = 0.6
INPUT_BOUND = 1.0
STRICT = 0.99


def _row_budget(rows: Tensor, budget: float | Tensor) -> Tensor:
    """Factor (..., R, 1) that brings each row's absolute sum down to ``budget`` if above it."""
    sums = rows.abs().sum(-1, keepdim=True)
    return torch.clamp(budget / torch.clamp(sums, min=1e-300), max=1.0)


def budgets(forget_max: float = FORGET_MAX) -> dict[str, float]:
    """Row-sum budgets of the recurrent blocks for a forget-gate ceiling ``forget_max``."""
    gap = 1.0 - forget_max
    return {"i": STRICT * gap, "f": STRICT * gap**2, "g": STRICT * gap / 4, "o": STRICT * gap}


def project(params: CellParams, forget_max: float = FORGET_MAX,
            input_bound: float = INPUT_BOUND) -> CellParams:
    """Row-wise projection of every point's weights onto the stable set (see module doc)."""
    params = params.expand()  # fold the scalings in: the condition is on effective weights
    limits = budgets(forget_max)
    w_hh = params.weights["weight_hh"]
    blocks = list(w_hh.chunk(4, dim=1))
    for index, gate in enumerate("ifgo"):
        blocks[index] = blocks[index] * _row_budget(blocks[index], limits[gate])
    hidden = w_hh.shape[2]
    f_rows = slice(hidden, 2 * hidden)
    # What is left of the forget gate's pre-activation budget after W_f goes to U_f and b_f.
    logit = math.log(forget_max / (1 - forget_max))
    w_f_sums = blocks[1].abs().sum(-1)
    left = torch.clamp(logit - w_f_sums, min=0.0)[..., None]
    w_ih, b_ih, b_hh = (params.weights[k] for k in ("weight_ih", "bias_ih", "bias_hh"))
    u_f, bias_f = w_ih[:, f_rows], b_ih[:, f_rows] + b_hh[:, f_rows]
    need = input_bound * u_f.abs().sum(-1, keepdim=True) + bias_f.abs()[..., None]
    shrink = torch.clamp(left / torch.clamp(need, min=1e-300), max=1.0)

    def forget_rows_scaled(m: Tensor, factor: Tensor) -> Tensor:
        # Out of place: autograd (landscape, training) differentiates through the projection.
        return torch.cat([m[:, :hidden], m[:, f_rows] * factor, m[:, 2 * hidden:]], dim=1)

    w_ih = forget_rows_scaled(w_ih, shrink)
    b_ih = forget_rows_scaled(b_ih, shrink[..., 0])
    b_hh = forget_rows_scaled(b_hh, shrink[..., 0])
    weights = {"weight_hh": torch.cat(blocks, dim=1), "weight_ih": w_ih,
               "bias_ih": b_ih, "bias_hh": b_hh}
    return CellParams(weights, params.recurrent_scale, params.input_scale, dict(params.meta))


def stability_condition(params: CellParams, input_bound: float = INPUT_BOUND) -> Tensor:
    """(G, M) bool: Miller & Hardt's conditions hold for each point's effective weights."""
    eff = params.effective()
    w_i, w_f, w_g, w_o = eff["weight_hh"].double().chunk(4, dim=2)
    hidden = w_i.shape[2]
    f_rows = slice(hidden, 2 * hidden)
    u_f = eff["weight_ih"][:, :, f_rows].double()
    b_f = (eff["bias_ih"][:, :, f_rows] + eff["bias_hh"][:, :, f_rows]).double()

    def norm(m):
        return m.abs().sum(-1).amax(-1)

    f_inf = torch.sigmoid((w_f.abs().sum(-1) + input_bound * u_f.abs().sum(-1) + b_f.abs())
                          .amax(-1))
    gap = 1 - f_inf
    return ((norm(w_f) < gap**2) & (norm(w_i) <= gap) & (norm(w_g) <= gap / 4)
            & (norm(w_o) <= gap))


class StableLSTM(LSTM):
    name = "stable_lstm"

    def prepare(self, params: CellParams) -> CellParams:
        return project(params)
