"""The classic random tanh network x' = tanh(s W x + a U u), W ~ N(0, 1/H)."""

from __future__ import annotations

from ._elman import ElmanCell


class RNNTanh(ElmanCell):
    name = "rnn_tanh"
    activation = "tanh"
