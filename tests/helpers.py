"""Builders shared by the tests: explicit parameters and direct calls into the core."""

from __future__ import annotations

import numpy as np
import torch

from sweeper import CELLS, CellParams, DynamicsConfig, run_dynamics, theory
from sweeper.measure import build_params

F64 = torch.float64


def params_from(weight_hh, weight_ih=None, bias_ih=None, bias_hh=None, recurrent_scale=1.0,
                input_scale=1.0) -> CellParams:
    """One group (G = 1) of explicit weights; scalings may be lists (the M points)."""
    w_hh = torch.as_tensor(weight_hh, dtype=F64)
    rows, _hidden = w_hh.shape
    w_ih = torch.zeros(rows, 1, dtype=F64) if weight_ih is None else torch.as_tensor(
        weight_ih, dtype=F64)
    zeros = torch.zeros(rows, dtype=F64)
    weights = {
        "weight_hh": w_hh[None],
        "weight_ih": w_ih[None],
        "bias_ih": (zeros if bias_ih is None else torch.as_tensor(bias_ih, dtype=F64))[None],
        "bias_hh": (zeros if bias_hh is None else torch.as_tensor(bias_hh, dtype=F64))[None],
    }
    rs = torch.as_tensor(np.atleast_1d(recurrent_scale), dtype=F64)[None]
    ins = torch.as_tensor(np.atleast_1d(input_scale), dtype=F64).expand_as(rs).clone()
    return CellParams(weights, rs, ins, {"seeds": [0]})


def random_params(cell: str, hidden: int, seeds, scales, input_scales=None, input_size=1,
                  dtype=F64) -> CellParams:
    """Seeded base draws with the given (G, M) scalings."""
    scales = torch.as_tensor(scales, dtype=F64).reshape(len(seeds), -1)
    ins = (torch.ones_like(scales) if input_scales is None
           else torch.as_tensor(input_scales, dtype=F64).reshape(scales.shape))
    return build_params(CELLS[cell], hidden, input_size, list(seeds), scales, ins, dtype,
                        torch.device("cpu"))


def dynamics(cell: str, params: CellParams, steps: int, seq_len: int, *, x0=None,
             inputs=None, **config):
    """Run the dynamics pass on explicit params (zero input and random x0 by default)."""
    cell_obj = CELLS[cell]
    params = cell_obj.prepare(params)
    groups, members = params.recurrent_scale.shape
    size = cell_obj.state_size(params.weights["weight_hh"].shape[2])
    cfg = DynamicsConfig(**config)
    batch = cfg.n_trajectories
    if inputs is None:
        inputs = torch.zeros(groups, batch, steps, params.weights["weight_ih"].shape[2],
                             dtype=params.dtype)
    if x0 is None:
        gen = torch.Generator().manual_seed(1234)
        x0 = (torch.rand(groups, 1, batch, size, generator=gen, dtype=F64) * 2 - 1)
        x0 = x0.expand(groups, members, batch, size).to(params.dtype)
    seeds = list(range(groups))
    return run_dynamics(cell_obj, params, inputs, x0, seq_len, cfg, seeds)


def mean_field_lyapunov(gain: float, sigma: float = 0.0) -> float:
    """lambda_1 of x' = tanh(g J x + sigma xi) in the large-H limit (independent noise per
    unit; see sweeper.theory)."""
    return float(theory.mean_field_lyapunov(gain, sigma))
