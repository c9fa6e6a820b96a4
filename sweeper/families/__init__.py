"""The metric families, in the order their columns appear. Adding a family: one new module
with a :class:`Family` subclass, and one line here."""

from __future__ import annotations

from ._base import Batch, Family, Outcome, Protocols
from .landscape import Landscape
from .lipschitz import Lipschitz
from .lyapunov import Lyapunov
from .memory import Memory
from .training import Training

FAMILIES: dict[str, Family] = {f.name: f for f in (Lipschitz(), Lyapunov(), Memory(),
                                                      Landscape(), Training())}
METRIC_FAMILIES = tuple(FAMILIES)

__all__ = ["FAMILIES", "METRIC_FAMILIES", "Batch", "Family", "Outcome", "Protocols"]
