"""tanh network with a Haar-orthogonal W: every singular value of s W equals s."""

from __future__ import annotations

from ._elman import ElmanCell


class Orthogonal(ElmanCell):
    name = "orthogonal"
    activation = "tanh"
    orthogonal = True
