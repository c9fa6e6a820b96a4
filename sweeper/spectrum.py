"""What a measured Lyapunov spectrum says about the attractor: its Kaplan-Yorke dimension, the
entropy rate, and the number of unstable directions.

Every function takes the k largest exponents of many points at once, (..., k) in nats per
step, sorted descending (as :func:`sweeper.dynamics.run_dynamics` returns them), and returns
(...,) float64. A truncated spectrum (k smaller than the state size) can leave a quantity
undetermined; ``complete=True`` says that the k exponents are the whole spectrum, so nothing
is missing. An undetermined value is NaN, never a guess.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def kaplan_yorke_dimension(exponents: Tensor, complete: bool = False) -> Tensor:
    """Kaplan-Yorke (Lyapunov) dimension D = j + (l_1 + ... + l_j) / |l_{j+1}|, (...,).

    j is the largest index whose partial sum l_1 + ... + l_j is >= 0. D = 0 when l_1 < 0 (a
    stable fixed point or orbit). When all k partial sums are >= 0 the bracketing exponent
    l_{j+1} was not measured: D is NaN, or k when ``complete`` (the attractor fills the
    state space, e.g. a volume-preserving map). D is continuous in the exponents, and a
    -inf exponent (a zero Jacobian direction) gives D = j.

    Example:
        >>> kaplan_yorke_dimension(torch.tensor([0.5, -0.2, -1.0], dtype=torch.float64)).item()
        2.3
    """
    spectrum = exponents.double()
    k = spectrum.shape[-1]
    partial = torch.cumsum(spectrum, dim=-1)
    # Partial sums fall once the exponents turn negative, so "largest j with S_j >= 0" is
    # the count of non-negative sums; NaN exponents (a diverged point) give NaN below.
    j = (partial >= 0).sum(dim=-1)
    inside = (j > 0) & (j < k)
    index = j.clamp(1, max(k - 1, 1))[..., None]
    bracketed = k > 1
    if bracketed:
        s_j = torch.gather(partial, -1, index - 1)[..., 0]
        next_exponent = torch.gather(spectrum, -1, index)[..., 0]
        fraction = j.double() + s_j / next_exponent.abs()
    else:
        fraction = torch.full(spectrum.shape[:-1], math.nan, dtype=torch.float64,
                              device=spectrum.device)
    result = torch.where(inside, fraction, torch.full_like(fraction, math.nan))
    result = torch.where(j == 0, torch.zeros_like(result), result)
    if complete:
        result = torch.where(j == k, torch.full_like(result, float(k)), result)
    return _nan_where_unmeasured(result, spectrum)


def entropy_rate(exponents: Tensor, complete: bool = False) -> Tensor:
    """Sum of the positive exponents, nats per step, (...,): Pesin's upper bound on the
    Kolmogorov-Sinai entropy (equal to it for an SRB measure).

    NaN when the smallest measured exponent l_k is still positive and the spectrum is not
    ``complete``: positive exponents beyond the k-th may be missing from the sum.

    Example:
        >>> entropy_rate(torch.tensor([0.5, 0.1, -1.0], dtype=torch.float64)).item()
        0.6
    """
    spectrum = exponents.double()
    total = spectrum.clamp_min(0).sum(dim=-1)
    return _nan_where_unmeasured(_nan_where_truncated(total, spectrum, complete), spectrum)


def positive_count(exponents: Tensor, complete: bool = False) -> Tensor:
    """How many exponents are positive (unstable directions), as float64 so that an
    undetermined count is NaN (the same rule as :func:`entropy_rate`), (...,)."""
    spectrum = exponents.double()
    count = (spectrum > 0).sum(dim=-1).double()
    return _nan_where_unmeasured(_nan_where_truncated(count, spectrum, complete), spectrum)


def _nan_where_truncated(value: Tensor, spectrum: Tensor, complete: bool) -> Tensor:
    if complete:
        return value
    return torch.where(spectrum[..., -1] > 0, torch.full_like(value, math.nan), value)


def _nan_where_unmeasured(value: Tensor, spectrum: Tensor) -> Tensor:
    """NaN wherever an exponent is NaN (not measured, or a diverged point)."""
    return torch.where(spectrum.isnan().any(dim=-1), torch.full_like(value, math.nan), value)
