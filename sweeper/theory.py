"""Mean-field theory of the random tanh network, to set beside the measured lambda_1.

Network (the rnn_tanh and orthogonal cells with the `noise` task)::

    x_i(t+1) = tanh(h_i(t)),   h_i(t) = g sum_j W_ij x_j(t) + a sum_c U_ic u_c(t)

with W_ij ~ N(0, 1/H) (orthogonal cell: W Haar-orthogonal, whose entries also have variance
1/H and which keeps |W x| = |x|, so the recursions below are the same), U_ic ~ N(0, 1/I) drawn
once per unit, u_c(t) ~ N(0, input_std^2) i.i.d. over time and channels, g =
recurrent_scale, a = input_scale, I = input_size. Define the drive strength
sigma = a * input_std: each unit's input term a (U u(t))_i has variance sigma^2 on average
over units and time.

Derivation (large H; W treated as independent of the states it multiplies). Given the
inputs up to t, the recurrent field g (W x)_i is Gaussian over units with variance g^2 q_t,
q_t = |x(t)|^2 / H; the input field a (U u(t))_i is, given u(t), Gaussian over units with
variance a^2 |u(t)|^2 / I and independent of the recurrent field (U is independent of W).
So h_i(t) ~ N(0, Q_t) over units, and with F(Q) = E_z[tanh^2(sqrt(Q) z)], z ~ N(0, 1),

    Q_{t+1} = g^2 F(Q_t) + sigma^2 xi_{t+1},   xi = |u|^2 / (I input_std^2) ~ chi^2_I / I.

A tangent vector obeys v(t+1) = diag(sech^2(h(t))) g W v(t); (W v)_i is Gaussian with variance
|v|^2 / H, independent of h_i, so |v(t+1)|^2 / |v(t)|^2 -> g^2 G(Q_t), G(Q) =
E_z[sech^4(sqrt(Q) z)], and lambda_1 is the time average of 1/2 log(g^2 G(Q_t)).

* Independent noise per unit (Molgedey, Schuchhardt & Schuster 1992): each unit has its own
  noise, so xi is replaced by its mean 1: Q is the fixed point of Q = g^2 F(Q) + sigma^2 and
  lambda_1 = 1/2 log(g^2 G(Q)). This is also the I -> infinity limit of the shared case.
* Shared input (Massar & Massar 2013; what the `noise` task does): all units see the same
  u(t), so xi_t fluctuates in time (for I = 1 it is z^2, often near 0) and Q_t is a Markov
  chain driven by the input sequence. By ergodicity lambda_1 = E_pi[1/2 log(g^2 G(Q))] under
  its stationary law pi. With per-unit Gaussian U the shared input does not shift the mean of
  h over units (the mean of U_i over units vanishes as H grows); it modulates the variance.
  Steps with little input power leave the network nearly autonomous (more expanding), so
  the edge g_c(sigma) moves less than with independent noise of the same mean power.

Numerics: F and G by Gauss-Hermite quadrature (81 nodes, probabilists' weights) where the
integrand is smooth on the node spacing (Q <= 1/2), and by the trapezoidal rule in
y = sqrt(Q) z otherwise (the sech factors decay like exp(-2|y|), so that rule converges
geometrically; Gauss-Hermite in z would miss the narrow peak of sech^4(sqrt(Q) z)). The
independent fixed point is found by bisection (Q -> g^2 F(Q) + sigma^2 - Q is concave, >= 0 at
0). The stationary law pi is carried by N equal-weight atoms: each step maps every atom through
the recursion for every quadrature node of xi (generalised Gauss-Laguerre, Golub-Welsch) and
keeps the N mid-quantiles of the result; this is deterministic, unlike a simulation of the chain.
Both quadratures are symmetric and every integrand even, so only the nodes >= 0 are evaluated.
The chain evaluates F and G at every atom of every step, so they are tabulated once, against
u = log Q on 1e-10 <= Q <= 1e6 (a knot every 1/128 in u), and interpolated by the cubic through
the four nearest knots: F ~ Q at small Q and 1 - F, G ~ 1/sqrt(Q) at large Q are smooth in u,
so the interpolation error is uniform in relative terms (below 1e-10 of F, 1 - F and G;
tests/test_theory.py checks 1e-9). Outside that range the quadratures are evaluated directly.
Each (g, sigma) of a batch runs the chain until its own atoms settle, and the edge g_c is
found by the Illinois method, each sigma to its own tolerance, so a batched result is the
result computed alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["MeanFieldDrive", "edge_of_chaos", "mean_field_drive", "mean_field_lyapunov",
           "stationary_variance"]

#: Cells whose recurrent weights have i.i.d.-like entries of variance 1/H and tanh units.
MEAN_FIELD_CELLS = ("rnn_tanh", "orthogonal")
#: Defaults of the noise task (tasks/noise.py; tests/test_theory.py checks they agree).
NOISE_DEFAULTS = {"input_size": 1, "input_std": 1.0}

_Z, _W = np.polynomial.hermite_e.hermegauss(81)
_W = _W / math.sqrt(2 * math.pi)
_Y = np.linspace(-20.0, 20.0, 401)  # step 0.1; sech^2(20) ~ 2e-17
_DY = _Y[1] - _Y[0]
_GH_MAX_Q = 0.5
#: Rows of the trapezoid branch done at once (a (rows, 201) block stays in the L2 cache).
_CHUNK = 256
#: Rows of a step of the chain done at once: each temporary, (rows, 24 * 200) numbers, stays
#: in the cache and is reused by the allocator, where a whole batch's were fresh pages.
_QUANTILE_ROWS = 32
#: The table of F and G: knots every _LOG_Q_STEP in log Q from _LOG_Q_MIN to _LOG_Q_MAX.
_LOG_Q_MIN, _LOG_Q_MAX, _LOG_Q_STEP = math.log(1e-10), math.log(1e6), 1.0 / 128


@dataclasses.dataclass(frozen=True)
class MeanFieldDrive:
    """What the theory needs from a sweep: the input statistics and how units share them.

    A drive remembers every lambda_1 and g_c it has computed (each costs a run of the chain),
    so the region map and the metrics plot of one `aggregate`, which ask for the same
    (recurrent_scale, input_scale) pairs, pay for each pair once. The memory is not part of
    the drive's value: equal drives compare equal whatever they have computed.

    Attributes:
        input_std: standard deviation of each input channel (sigma = input_scale * input_std).
        input_size: number of input channels I.
        shared: True when all units see the same input through fixed weights (the noise
            task); False for independent noise per unit.
    """

    input_std: float
    input_size: int = 1
    shared: bool = True
    _known: dict = dataclasses.field(default_factory=dict, init=False, repr=False,
                                     compare=False, hash=False)

    def sigma(self, input_scale):
        """sigma of the drive for ``input_scale`` (array-like)."""
        return np.asarray(input_scale, dtype=float) * self.input_std

    def lyapunov(self, recurrent_scale, input_scale) -> np.ndarray:
        """Mean-field lambda_1 at the sweep's (recurrent_scale, input_scale), broadcast;
        the pairs not computed before in one batch."""
        gains, scales = np.broadcast_arrays(np.asarray(recurrent_scale, float),
                                            np.asarray(input_scale, float))

        def compute(pairs: np.ndarray) -> np.ndarray:
            return mean_field_lyapunov(pairs[:, 0], self.sigma(pairs[:, 1]),
                                       shared=self.shared, input_size=self.input_size)

        pairs = np.stack([gains.ravel(), scales.ravel()], axis=1)
        return self._remembered("lyapunov", pairs, compute).reshape(gains.shape)

    def edge(self, input_scale) -> np.ndarray:
        """Mean-field edge of chaos (a recurrent_scale) at ``input_scale``."""
        scales = np.asarray(input_scale, dtype=float)

        def compute(keys: np.ndarray) -> np.ndarray:
            return edge_of_chaos(self.sigma(keys[:, 0]), shared=self.shared,
                                 input_size=self.input_size)

        return self._remembered("edge", scales.reshape(-1, 1), compute).reshape(scales.shape)

    def _remembered(self, kind: str, keys: np.ndarray, compute) -> np.ndarray:
        """``compute`` (a function of (M, D) keys) at each row of ``keys``, reusing the rows
        this drive has computed before; new rows are computed together, each once."""
        known = self._known.setdefault(kind, {})
        keys = np.ascontiguousarray(keys, dtype=float)
        rows = [row.tobytes() for row in keys]  # bytes, so a NaN key finds itself
        new = {row: i for i, row in enumerate(rows) if row not in known}
        if new:
            known.update(zip(new, compute(keys[list(new.values())]).tolist(), strict=True))
        return np.array([known[row] for row in rows], dtype=float)


def mean_field_drive(cell: str, task: str, task_params: Mapping[str, Any] | None = None
                     ) -> MeanFieldDrive | None:
    """The drive of a sweep if the theory applies to it (tanh cells under the noise task).

    Returns:
        A :class:`MeanFieldDrive` (shared input) or None ("no theory").
    """
    if cell not in MEAN_FIELD_CELLS or task != "noise":
        return None
    params = {**NOISE_DEFAULTS, **dict(task_params or {})}
    return MeanFieldDrive(float(params["input_std"]), int(params["input_size"]), shared=True)


def _sech(x: np.ndarray) -> np.ndarray:
    e = np.exp(-2.0 * np.abs(x))
    return 2.0 * np.sqrt(e) / (1.0 + e)


def _folded(nodes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nodes >= 0 of a rule symmetric about 0, and weights doubled off 0, for even
    integrands: half the evaluations, the same sum up to rounding."""
    middle = len(nodes) // 2
    folded = weights[middle:].copy()
    folded[1:] *= 2.0
    return np.abs(nodes[middle:]), folded


# Both rules are symmetric and every integrand even, so each is evaluated on y >= 0 only.
_Z_HALF, _W_HALF = _folded(_Z, _W)
_Y_HALF, _Y_WEIGHT = _folded(_Y, np.full(len(_Y), _DY / math.sqrt(2 * math.pi)))
_Y2_HALF = _Y_HALF**2
_SECH2_Y = _sech(_Y_HALF) ** 2 * _Y_WEIGHT  # the trapezoid's integrands do not depend on Q
_SECH4_Y = _sech(_Y_HALF) ** 4 * _Y_WEIGHT


def _expectations(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F(Q) = E[tanh^2(sqrt(Q) z)] and G(Q) = E[sech^4(sqrt(Q) z)], elementwise (Q >= 0):
    interpolated in the table (:func:`_table`) where Q lies in it, else by quadrature
    (:func:`_quadrature`)."""
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        position = (np.log(q) - _LOG_Q_MIN) / _LOG_Q_STEP
    inside = (position >= 0) & (position < _table().shape[-1])  # False for 0 and NaN
    if inside.all():
        return _interpolated(position)
    f, g = np.empty(q.shape), np.empty(q.shape)
    if inside.any():
        f[inside], g[inside] = _interpolated(position[inside])
    outside = ~inside
    if outside.any():
        f[outside], g[outside] = _quadrature(q[outside])
    return f, g


@functools.cache
def _table() -> np.ndarray:
    """(2, 4, knots - 1): for F and G, the coefficients in t of the cubic on each interval
    [u_i, u_i + _LOG_Q_STEP] of u = log Q (t = (u - u_i) / _LOG_Q_STEP), the one through
    the values at u_{i-1} .. u_{i+2} (Lagrange on four equally spaced knots)."""
    count = math.ceil((_LOG_Q_MAX - _LOG_Q_MIN) / _LOG_Q_STEP)
    knots = _LOG_Q_MIN + _LOG_Q_STEP * np.arange(-1, count + 2)
    values = np.stack(_quadrature(np.exp(knots)))
    before, at, after, beyond = (values[:, i:values.shape[1] - 3 + i] for i in range(4))
    return np.stack([at,
                     -before / 3 - at / 2 + after - beyond / 6,
                     before / 2 - at + after / 2,
                     -before / 6 + at / 2 - after / 2 + beyond / 6], axis=1)


def _interpolated(position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F and G at ``position`` = (log Q - _LOG_Q_MIN) / _LOG_Q_STEP, 0 <= position < knots - 1."""
    table = _table()
    interval = position.astype(np.intp)  # floor: position >= 0
    t = position - interval
    f, g = (((c[3][interval] * t + c[2][interval]) * t + c[1][interval]) * t + c[0][interval]
            for c in table)
    return f, g


def _quadrature(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F(Q) and G(Q) by quadrature, elementwise (Q >= 0).

    Gauss-Hermite in z for Q <= _GH_MAX_Q; for larger Q the integral in y = sqrt(Q) z by the
    trapezoid rule, where sech^2(y) is fixed and only the Gaussian density
    exp(-y^2 / 2Q) / sqrt(Q) moves with Q (its 1 / sqrt(Q) applied to the sums). Each
    element is computed by its own branch only.
    """
    q = np.asarray(q, dtype=float)
    f, g = np.empty(q.shape), np.empty(q.shape)
    use_gh = q <= _GH_MAX_Q
    if use_gh.any():
        y = np.sqrt(np.maximum(q[use_gh], 0.0))[:, None] * _Z_HALF
        # tanh^2 itself, not 1 - sech^2, which keeps only ~1e-16 / Q of F's digits at small Q.
        f[use_gh] = np.tanh(y) ** 2 @ _W_HALF
        g[use_gh] = (_sech(y) ** 2) ** 2 @ _W_HALF
    wide_q = ~use_gh
    if wide_q.any():
        wide = q[wide_q]
        exponent = -0.5 / wide
        tails, fourth = np.empty(len(wide)), np.empty(len(wide))
        block = np.empty((min(_CHUNK, len(wide)), len(_Y_HALF)))
        for start in range(0, len(wide), _CHUNK):
            stop = min(start + _CHUNK, len(wide))
            density = block[:stop - start]
            np.exp(np.multiply(exponent[start:stop, None], _Y2_HALF, out=density),
                   out=density)
            tails[start:stop] = density @ _SECH2_Y
            fourth[start:stop] = density @ _SECH4_Y
        root = np.sqrt(wide)
        f[wide_q] = 1.0 - tails / root
        g[wide_q] = fourth / root
    return f, g


def stationary_variance(g, sigma) -> np.ndarray:
    """Independent-noise fixed point Q* of Q = g^2 F(Q) + sigma^2 (the largest root; 0 for
    g <= 1, sigma = 0), by 80 bisection steps on [0, g^2 + sigma^2]."""
    g2, s2 = np.broadcast_arrays(np.asarray(g, float) ** 2, np.asarray(sigma, float) ** 2)
    lo, hi = np.zeros_like(g2), g2 + s2 + 1e-300
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = g2 * _expectations(mid)[0] + s2 - mid >= 0
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return lo


def _input_power_nodes(input_size: int, nodes: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature for xi ~ chi^2_I / I = (2 / I) Gamma(I / 2): Gauss-Laguerre with weight
    x^(I/2 - 1) e^(-x) by Golub-Welsch (numpy has only alpha = 0)."""
    alpha = input_size / 2 - 1
    k = np.arange(nodes)
    off = np.sqrt(np.arange(1, nodes) * (np.arange(1, nodes) + alpha))
    jacobi = np.diag(2 * k + alpha + 1.0) + np.diag(off, 1) + np.diag(off, -1)
    x, vectors = np.linalg.eigh(jacobi)
    return x * (2.0 / input_size), vectors[0] ** 2


def _shared_lyapunov(g2: np.ndarray, s2: np.ndarray, input_size: int, atoms: int = 200,
                     steps: int = 60, tol: float = 1e-10) -> np.ndarray:
    """E_pi[1/2 log(g^2 G(Q))] for the chain Q' = g^2 F(Q) + sigma^2 xi; g2, s2: (K,).

    Each row stops once a step moves none of its atoms by ``tol`` or more (most settle in
    10-30 of the ``steps``; slowly mixing ones near g = 1 use them all), so a row's steps do
    not depend on the rest of the batch.
    """
    xi, weight = _input_power_nodes(input_size)
    q = np.repeat(stationary_variance(np.sqrt(g2), np.sqrt(s2))[:, None], atoms, axis=1)
    cell_weight = np.repeat(weight / atoms, atoms)  # candidates laid out (xi node, atom)
    moving = np.arange(len(g2))
    for _ in range(steps):
        if not len(moving):
            break
        new = _quantile_step(q[moving], g2[moving], s2[moving], xi, cell_weight)
        change = np.max(np.abs(new - q[moving]), axis=1) if atoms else np.zeros(len(moving))
        q[moving] = new
        moving = moving[change >= tol]
    with np.errstate(divide="ignore"):
        return np.mean(0.5 * np.log(g2[:, None] * _expectations(q)[1]), axis=1)


def _quantile_step(q: np.ndarray, g2: np.ndarray, s2: np.ndarray, xi: np.ndarray,
                   cell_weight: np.ndarray) -> np.ndarray:
    """One step of the chain on (K, N) atoms: every atom through every node of xi, then the N
    mid-quantiles of the (K, len(xi) * N) weighted candidates, _QUANTILE_ROWS rows at a time.

    The atoms are sorted (they are quantiles) and Q -> g^2 F(Q) is increasing, so each row's
    candidates are len(xi) ascending runs of N, one per node; the stable sort (timsort)
    merges such runs in a fraction of the time a sort of unordered values takes."""
    mapped = g2[:, None] * _expectations(q)[0]
    return np.concatenate([
        _quantiles(mapped[start:start + _QUANTILE_ROWS], s2[start:start + _QUANTILE_ROWS],
                   xi, cell_weight) for start in range(0, len(q), _QUANTILE_ROWS)]
        or [np.empty(q.shape)])


def _quantiles(mapped: np.ndarray, s2: np.ndarray, xi: np.ndarray,
               cell_weight: np.ndarray) -> np.ndarray:
    """The N mid-quantiles of each row's candidates mapped + s2 xi (mapped: (K, N))."""
    k, atoms = mapped.shape
    candidates = (mapped[:, None, :] + s2[:, None, None] * xi[:, None]).reshape(k, -1)
    order = np.argsort(candidates, axis=1, kind="stable")
    cum = np.cumsum(cell_weight[order], axis=1)
    np.divide(cum, cum[:, -1:], out=cum)
    cum += np.arange(k)[:, None]  # row offset k: one searchsorted for all rows
    levels = (np.arange(atoms) + 0.5) / atoms + np.arange(k)[:, None]
    index = np.searchsorted(cum.ravel(), levels.ravel()).reshape(k, atoms)
    index = np.minimum(index - np.arange(k)[:, None] * candidates.shape[1],
                       candidates.shape[1] - 1)
    # Only the chosen candidates are gathered, not the whole sorted row.
    return np.take_along_axis(candidates, np.take_along_axis(order, index, axis=1), axis=1)


def mean_field_lyapunov(g, sigma=0.0, *, shared: bool = False, input_size: int = 1
                        ) -> np.ndarray:
    """Mean-field largest Lyapunov exponent (nats/step) of the driven random tanh network.

    Args:
        g: recurrent gain(s) >= 0 (array-like; broadcast with ``sigma``).
        sigma: drive strength(s) >= 0 (input_scale * input_std).
        shared: False: independent noise per unit (Molgedey et al. 1992); True: one input of
            ``input_size`` channels shared by all units through fixed Gaussian weights.
        input_size: I, channels of the shared input (ignored when not shared).

    Returns:
        lambda_1 with the broadcast shape of (g, sigma); -inf at g = 0.

    Raises:
        ValueError: negative g or sigma, or input_size < 1.

    Example:
        >>> float(mean_field_lyapunov(0.5))  # log 0.5
        -0.6931...
    """
    g, sigma = np.broadcast_arrays(np.asarray(g, float), np.asarray(sigma, float))
    if np.any(g < 0) or np.any(sigma < 0):
        raise ValueError(f"mean_field_lyapunov requires g >= 0 and sigma >= 0, got g={g!r}, "
                         f"sigma={sigma!r}")
    if input_size < 1:
        raise ValueError(f"mean_field_lyapunov requires input_size >= 1, got {input_size!r}")
    g2, s2 = g.ravel() ** 2, sigma.ravel() ** 2
    if shared:
        result = _shared_lyapunov(g2, s2, int(input_size))
    else:
        with np.errstate(divide="ignore"):
            result = 0.5 * np.log(g2 * _expectations(stationary_variance(g.ravel(),
                                                                          sigma.ravel()))[1])
    return result.reshape(g.shape)


def edge_of_chaos(sigma, *, shared: bool = False, input_size: int = 1,
                  tol: float = 1e-6) -> np.ndarray:
    """The gain g_c(sigma) where the mean-field lambda_1 crosses 0 (Illinois method in g).

    g_c(0) = 1 exactly: with no drive Q* = 0 for g <= 1, so lambda_1 = log g. For sigma > 0
    lambda_1 < log g, so g_c > 1; the bracket [1, 2] doubles until lambda_1 > 0 at its top.

    Args:
        sigma: drive strength(s) >= 0 (array-like). shared, input_size: as in
            :func:`mean_field_lyapunov`. tol: absolute tolerance on g_c.

    Returns:
        g_c with the shape of ``sigma``.
    """
    sigma = np.asarray(sigma, dtype=float)
    flat = sigma.ravel()
    found = np.ones_like(flat)
    todo = flat > 0
    if todo.any():
        s = flat[todo]

        def rate(g, sigma):
            return mean_field_lyapunov(g, sigma, shared=shared, input_size=input_size)

        lo, hi = np.ones_like(s), np.full_like(s, 2.0)
        f_lo, f_hi = rate(lo, s), rate(hi, s)
        while len(grow := np.flatnonzero(f_hi <= 0)):
            lo[grow], f_lo[grow] = hi[grow], f_hi[grow]
            hi[grow] *= 2
            f_hi[grow] = rate(hi[grow], s[grow])
        # Illinois (regula falsi that halves the value kept twice in a row): lambda_1 is
        # smooth in g, so this needs a handful of chain evaluations where bisection needs 20.
        # Each sigma stops at its own tolerance; only the open ones are evaluated again.
        last = np.zeros_like(s)
        open_ = np.arange(len(s))
        for _ in range(100):
            open_ = open_[hi[open_] - lo[open_] > tol]
            if not len(open_):
                break
            i = open_
            mid = np.clip(hi[i] - f_hi[i] * (hi[i] - lo[i]) / (f_hi[i] - f_lo[i]), lo[i], hi[i])
            f_mid = rate(mid, s[i])
            chaotic = f_mid > 0
            # The end kept for the second step running has its value halved (halving the
            # end about to be replaced, as before, left plain regula falsi: 20 steps).
            f_lo[i] = np.where(chaotic & (last[i] == 1), 0.5 * f_lo[i], f_lo[i])
            f_hi[i] = np.where(~chaotic & (last[i] == -1), 0.5 * f_hi[i], f_hi[i])
            lo[i], f_lo[i] = np.where(chaotic, lo[i], mid), np.where(chaotic, f_lo[i], f_mid)
            hi[i], f_hi[i] = np.where(chaotic, mid, hi[i]), np.where(chaotic, f_mid, f_hi[i])
            last[i] = np.where(chaotic, 1, -1)
            done = np.abs(f_mid) < 1e-10
            lo[i], hi[i] = np.where(done, mid, lo[i]), np.where(done, mid, hi[i])
        found[todo] = 0.5 * (lo + hi)
    return found.reshape(sigma.shape)
