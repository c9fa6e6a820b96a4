"""The linear network x' = s W x + a U u, W ~ N(0, 1/H): closed forms for every metric."""

from __future__ import annotations

from ._elman import ElmanCell


class Linear(ElmanCell):
    name = "linear"
    activation = "identity"
