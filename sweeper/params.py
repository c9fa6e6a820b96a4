"""Batched cell parameters: G base draws, each shared by M points that differ only in scalings.

Why this layout: points that share a base draw (same seed) and differ only in `recurrent_scale`
and `input_scale` need one matrix product with the base matrix for all of them,
``s * (W @ x)`` equals ``(s W) @ x``. A point is the pair (g, m); K = G * M points in all.
Parameters that differ per point (projected, perturbed or trained weights) use M = 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cell_shapes import BIASES, INPUT, RECURRENT  # the weights' names, shared with the files

Tensor = torch.Tensor


@dataclass(frozen=True)
class CellParams:
    """Parameters of K = G * M points.

    Attributes:
        weights: ``weight_hh`` (G, F, D_h), ``weight_ih`` (G, F, I), ``bias_ih`` (G, F),
            ``bias_hh`` (G, F); F = gates * hidden_size. Read-only by convention.
        recurrent_scale: (G, M) factor on ``weight_hh`` for each point.
        input_scale: (G, M) factor on ``weight_ih`` for each point.
    """

    weights: dict[str, Tensor]
    recurrent_scale: Tensor
    input_scale: Tensor
    meta: dict = field(default_factory=dict)

    @property
    def groups(self) -> int:
        return self.recurrent_scale.shape[0]

    @property
    def members(self) -> int:
        return self.recurrent_scale.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[RECURRENT].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[RECURRENT].device

    @property
    def group_seeds(self) -> list[int]:
        """The seed of each group's base draw (``meta["seeds"]``, one per group)."""
        return list(self.meta["seeds"])

    def to(self, device=None, dtype=None) -> CellParams:
        """A copy on ``device`` and/or in ``dtype``."""
        return CellParams(
            {k: v.to(device=device, dtype=dtype) for k, v in self.weights.items()},
            self.recurrent_scale.to(device=device, dtype=dtype),
            self.input_scale.to(device=device, dtype=dtype),
            dict(self.meta),
        )

    def subset(self, groups: slice = slice(None), members: slice = slice(None)) -> CellParams:
        """The points (groups, members) of this batch; weights are shared, not copied."""
        return CellParams({k: v[groups] for k, v in self.weights.items()},
                          self.recurrent_scale[groups, members], self.input_scale[groups, members],
                          dict(self.meta))

    def effective(self) -> dict[str, Tensor]:
        """Each point's own weights, (G, M, ...): the scalings multiplied in."""
        s = self.recurrent_scale[..., None, None]
        a = self.input_scale[..., None, None]
        out = {
            RECURRENT: s * self.weights[RECURRENT][:, None],
            INPUT: a * self.weights[INPUT][:, None],
        }
        for name in BIASES:
            out[name] = self.weights[name][:, None].expand(-1, self.members, -1)
        return out

    def expand(self) -> CellParams:
        """The same K points, in the same order, with one parameter set each (G' = K, M' = 1),
        scalings folded in; ``meta["seeds"]`` (when present) follows, one seed per new group."""
        eff = self.effective()
        weights = {k: v.reshape(-1, *v.shape[2:]).contiguous() for k, v in eff.items()}
        ones = torch.ones(self.groups * self.members, 1, dtype=self.dtype, device=self.device)
        meta = dict(self.meta)
        if "seeds" in meta and len(meta["seeds"]) == self.groups:
            meta["seeds"] = [s for s in meta["seeds"] for _ in range(self.members)]
        return CellParams(weights, ones, ones.clone(), meta)
