"""The linear recurrent unit (Orvieto et al. 2023, "Resurrecting recurrent neural networks for
long sequences"): h' = diag(lambda) h + gamma * (B u), complex, with lambda on a ring.

The complex state h in C^H is kept real, x = (Re h, Im h), D = 2H, so the update is the real
linear map x' = s W x + drive with W = [[diag(a), -diag(b)], [diag(b), diag(a)]],
lambda = a + i b. ``recurrent_scale`` s multiplies every modulus |lambda_j|, and the drive is
gamma * (B u) with the paper's normalisation gamma_j = sqrt(1 - |lambda_j|^2). The exponents
are known exactly: log(s |lambda_j|), each twice in the real layout (lambda_j and its
conjugate), for every input; and ||J||_2 = s max_j |lambda_j|, so the bound is exact.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ._elman import ElmanCell


def ring_eigenvalues(hidden_size: int, generator: torch.Generator, r_min: float, r_max: float,
                     max_phase: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(modulus, phase) of H eigenvalues drawn uniformly on the ring r_min <= |lambda| <= r_max
    (uniform in area, as the paper's initialisation) with phases uniform in [0, max_phase]."""
    u1 = torch.rand(hidden_size, generator=generator, dtype=torch.float64)
    u2 = torch.rand(hidden_size, generator=generator, dtype=torch.float64)
    modulus = torch.sqrt(u1 * (r_max**2 - r_min**2) + r_min**2)
    return modulus, max_phase * u2


class LRU(ElmanCell):
    """The LRU's recurrence; ``r_min``, ``r_max`` and ``max_phase`` set the ring (a subclass
    may change them)."""

    name = "lru"
    activation = "identity"
    gates = 2  # the drive has 2H rows: the real and imaginary parts of gamma * (B u)
    # The ring is this package's choice (the paper tunes it per task): moduli from 0.4, so
    # that s = 1 forgets some directions quickly, to 0.99, so that s > 1.01 is unstable.
    r_min: ClassVar[float] = 0.4
    r_max: ClassVar[float] = 0.99
    max_phase: ClassVar[float] = 2 * math.pi

    def state_size(self, hidden_size: int) -> int:
        return 2 * hidden_size

    def init_weights(self, hidden_size, input_size, generator):
        modulus, phase = ring_eigenvalues(hidden_size, generator, self.r_min, self.r_max,
                                          self.max_phase)
        a, b = torch.diag(modulus * torch.cos(phase)), torch.diag(modulus * torch.sin(phase))
        w_hh = torch.cat([torch.cat([a, -b], 1), torch.cat([b, a], 1)], 0)
        # B = (N + i N) / sqrt(2 I), each row scaled by gamma_j = sqrt(1 - |lambda_j|^2).
        gamma = torch.sqrt(1 - modulus**2)[:, None]
        b_re = torch.randn(hidden_size, input_size, generator=generator, dtype=torch.float64)
        b_im = torch.randn(hidden_size, input_size, generator=generator, dtype=torch.float64)
        scale = gamma / math.sqrt(2 * input_size)
        w_ih = torch.cat([b_re * scale, b_im * scale], 0)
        zeros = torch.zeros(2 * hidden_size, dtype=torch.float64)
        return {"weight_hh": w_hh, "weight_ih": w_ih, "bias_ih": zeros, "bias_hh": zeros.clone()}

    def moduli(self, weight_hh: torch.Tensor) -> torch.Tensor:
        """|lambda_j| of each base draw, (..., H), read back from the real layout."""
        half = weight_hh.shape[-1] // 2
        a = torch.diagonal(weight_hh[..., half:, half:], dim1=-2, dim2=-1)
        b = torch.diagonal(weight_hh[..., half:, :half], dim1=-2, dim2=-1)
        return torch.hypot(a, b)
