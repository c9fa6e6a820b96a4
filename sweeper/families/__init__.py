"""The metric families, in the order their columns appear. Adding a family: one new module
with a :class:`Family` subclass, and one line here."""

from __future__ import annotations

from .. import schema
from ._base import Batch, Family, Outcome, Protocols
from .landscape import Landscape
from .lipschitz import Lipschitz
from .lyapunov import Lyapunov
from .memory import Memory
from .training import Training

FAMILIES: dict[str, Family] = {f.name: f for f in (Lipschitz(), Lyapunov(), Memory(),
                                                      Landscape(), Training())}
METRIC_FAMILIES = tuple(FAMILIES)
# The schema declares the families' columns (plain data, read without torch): the same
# families in the same order.
assert METRIC_FAMILIES == schema.METRIC_FAMILIES, (METRIC_FAMILIES, schema.METRIC_FAMILIES)

__all__ = ["FAMILIES", "METRIC_FAMILIES", "Batch", "Family", "Outcome", "Protocols"]
