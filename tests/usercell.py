"""User-defined cells, loaded by dotted path in the tests ("usercell:Softsign")."""

from __future__ import annotations

import math

import torch

from sweeper.cells import Cell, recurrent_product


class Softsign(Cell):
    """x' = softsign(s W x + a U u + b): a plug-in with only the two required methods."""

    name = "softsign"

    def init_weights(self, hidden_size, input_size, generator):
        w_hh = torch.randn(hidden_size, hidden_size, generator=generator,
                           dtype=torch.float64) / math.sqrt(hidden_size)
        w_ih = torch.randn(hidden_size, input_size, generator=generator, dtype=torch.float64)
        zeros = torch.zeros(hidden_size, dtype=torch.float64)
        return {"weight_hh": w_hh, "weight_ih": w_ih, "bias_ih": zeros, "bias_hh": zeros}

    def step(self, params, x, drive):
        pre = recurrent_product(params, x) + drive + params.weights["bias_hh"][:, None, None, :]
        return pre / (1 + pre.abs()), {}


class BoundedSoftsign(Softsign):
    """Softsign with its bound: softsign' = 1 / (1 + |p|)^2 <= 1, so ||J|| <= s ||W||_2."""

    def lipschitz_bound(self, params, context):
        norm = torch.linalg.matrix_norm(params.weights["weight_hh"].double(), ord=2)
        return params.recurrent_scale.double() * norm[:, None]


class WrongTangent(Softsign):
    """A hand-written tangent map that forgets the slope: what check-cell must catch."""

    def jvp(self, params, cache, v):
        return recurrent_product(params, v)


class TooLowBound(Softsign):
    """A bound that is not one (half the true one)."""

    def lipschitz_bound(self, params, context):
        norm = torch.linalg.matrix_norm(params.weights["weight_hh"].double(), ord=2)
        return 0.5 * params.recurrent_scale.double() * norm[:, None]


class NotACell:
    """Not a subclass of sweeper.cells.Cell."""


class Unbuildable(Softsign):
    def __init__(self):
        raise RuntimeError("needs a config file")

