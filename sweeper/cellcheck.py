"""A cell checked against the cell contract (:class:`sweeper.cells.Cell`), in float64 on a small
network: what ``sweeper check-cell`` runs and ``sweeper validate`` runs for plug-in cells.

Each check is a pure function of the cell and a small batch of points (2 draws x 3 scalings x
3 trajectories, gains 0.5 to 3 so that saturated and chaotic states are both seen) and returns
a :class:`Check`; :func:`check_cell` runs them all. A check that raises is a failed check whose
detail is the exception: a broken cell never stops the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .cells import Cell
from .params import BIASES, INPUT, RECURRENT, CellParams
from .seeding import generator

#: Agreement asked of two float64 computations of the same quantity (relative to its size).
TOLERANCE = 1e-8
#: The bound may sit below the Lanczos estimate of ||J_t||_2 by this relative margin.
BOUND_SLACK = 1e-6
GAINS = (0.5, 1.5, 3.0)
SEEDS = (0, 1)
TRAJECTORIES = 3
INPUTS = 2


@dataclass(frozen=True)
class Check:
    """One check's outcome: its name, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Probe:
    """The small batch every check runs on: parameters, states and drives, float64."""

    params: CellParams
    x: torch.Tensor  # (G, M, B, D)
    drive: torch.Tensor  # (G, M, B, F)


def probe(cell: Cell, hidden_size: int, device: str = "cpu") -> Probe:
    """States in [-2, 2] and drives of unit size for the points SEEDS x GAINS."""
    from .measure import build_params

    scales = torch.tensor([list(GAINS)] * len(SEEDS), dtype=torch.float64)
    params = cell.prepare(build_params(cell, hidden_size, INPUTS, SEEDS, scales,
                                       torch.ones_like(scales), torch.float64,
                                       torch.device(device)))
    rows = params.weights[RECURRENT].shape[1]
    size = cell.state_size(hidden_size)
    shape = (params.groups, params.members, TRAJECTORIES)
    g = generator(7, "check-cell")
    x = (torch.rand(*shape, size, generator=g, dtype=torch.float64) * 4 - 2).to(device)
    drive = torch.randn(*shape, rows, generator=g, dtype=torch.float64).to(device)
    return Probe(params, x, drive)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1.0))


def shapes(cell: Cell, hidden_size: int, device: str = "cpu") -> Check:
    """init_weights gives torch.nn's names and shapes; step keeps the state's shape, dtype
    and device; jvp keeps the tangents' shape."""
    draw = cell.init_weights(hidden_size, INPUTS, generator(0, "weights"))
    missing = [n for n in (RECURRENT, INPUT, *BIASES) if n not in draw]
    if missing:
        return Check(f"shapes ({device})", False, f"init_weights lacks {missing}")
    rows = draw[RECURRENT].shape[0]
    expected = {INPUT: (rows, INPUTS), BIASES[0]: (rows,), BIASES[1]: (rows,)}
    wrong = {n: tuple(draw[n].shape) for n, s in expected.items() if tuple(draw[n].shape) != s}
    if wrong or draw[RECURRENT].dim() != 2:
        return Check(f"shapes ({device})", False, f"weights {wrong or 'weight_hh'} do not match "
                     f"weight_hh's {rows} rows: want weight_ih ({rows}, input), biases ({rows},)")
    not64 = [n for n, w in draw.items() if w.dtype != torch.float64]
    if not64:
        return Check(f"shapes ({device})", False, f"init_weights must return float64, got "
                     f"{ {n: str(draw[n].dtype) for n in not64} }")
    p = probe(cell, hidden_size, device)
    x_next, cache = cell.step(p.params, p.x, p.drive)
    v = torch.ones(*p.x.shape[:-1], 2, p.x.shape[-1], dtype=p.x.dtype, device=p.x.device)
    image = cell.jvp(p.params, cache, v)
    seen = (tuple(x_next.shape), x_next.dtype, x_next.device.type, tuple(image.shape))
    want = (tuple(p.x.shape), p.x.dtype, p.x.device.type, tuple(v.shape))
    if seen != want:
        return Check(f"shapes ({device})", False, f"step/jvp give {seen}, want {want} "
                     "(state shape, dtype, device, tangent shape)")
    return Check(f"shapes ({device})", True, f"state {tuple(p.x.shape)}, {rows} "
                 "pre-activation rows")


def tangent_map(cell: Cell, hidden_size: int) -> Check:
    """jvp against the autograd Jacobian (torch.func.jacrev) of step, point by point, and
    vjp as its transpose."""
    p = probe(cell, hidden_size)
    _, cache = cell.step(p.params, p.x, p.drive)
    size = p.x.shape[-1]
    eye = torch.eye(size, dtype=torch.float64).expand(*p.x.shape[:-1], size, size)
    ours = cell.jvp(p.params, cache, eye).mT  # row j of jvp(e_j) is column j of J
    worst = 0.0
    for g in range(p.params.groups):
        for m in range(p.params.members):
            one = p.params.subset(slice(g, g + 1), slice(m, m + 1))
            drive = p.drive[g:g + 1, m:m + 1]
            for b in range(p.x.shape[2]):
                def f(state: torch.Tensor, one=one, drive=drive, b=b) -> torch.Tensor:
                    return cell.step(one, state[None, None, None], drive[:, :, b:b + 1])[0][
                        0, 0, 0]
                truth = torch.func.jacrev(f)(p.x[g, m, b])
                worst = max(worst, _relative(ours[g, m, b], truth))
    w = torch.randn(*p.x.shape[:-1], 2, size, dtype=torch.float64,
                    generator=generator(3, "check-cell"))
    adjoint = _relative(cell.vjp(p.params, cache, w), w @ ours)
    ok = worst <= TOLERANCE and adjoint <= TOLERANCE
    return Check("tangent map = jacrev", ok, f"largest relative difference {worst:.1e} (jvp), "
                 f"{adjoint:.1e} (vjp = J^T); tolerance {TOLERANCE:.0e}")


def batched_equals_looped(cell: Cell, hidden_size: int) -> Check:
    """step on the whole batch equals step on each point alone."""
    p = probe(cell, hidden_size)
    whole = cell.step(p.params, p.x, p.drive)[0]
    worst = 0.0
    for g in range(p.params.groups):
        for m in range(p.params.members):
            alone = cell.step(p.params.subset(slice(g, g + 1), slice(m, m + 1)),
                              p.x[g:g + 1, m:m + 1], p.drive[g:g + 1, m:m + 1])[0]
            worst = max(worst, _relative(whole[g:g + 1, m:m + 1], alone))
    return Check("batched = looped", worst <= TOLERANCE,
                 f"largest relative difference {worst:.1e}; tolerance {TOLERANCE:.0e}")


def bound_holds(cell: Cell, hidden_size: int, measure_fn: Callable | None = None) -> Check:
    """lipschitz_bound is never below the measured largest ||J_t||_2 (Lanczos, float64)."""
    if not cell.has_bound:
        return Check("bound >= local max", True, "no bound given: lipschitz_bound and "
                     "cost_growth_log10 will be NaN")
    from .measure import measure

    frame = (measure_fn or measure)(cell, hidden_size, recurrent_scale=list(GAINS),
                                    seed=list(SEEDS), seq_len=50, metrics=["lipschitz"],
                                    dtype="float64", device="cpu")
    bound, local = frame["lipschitz_bound"], frame["lipschitz_local_max"]
    below = frame[bound < local * (1 - BOUND_SLACK)]
    if len(below):
        row = below.iloc[0]
        return Check("bound >= local max", False, f"bound {row.lipschitz_bound:.6g} < measured "
                     f"{row.lipschitz_local_max:.6g} at recurrent_scale "
                     f"{row.recurrent_scale:g}, seed {row.seed}")
    ratio = float((bound / local).min())
    return Check("bound >= local max", True, f"smallest bound / local max {ratio:.3g} over "
                 f"{len(frame)} points")


def nonfinite_stays(cell: Cell, hidden_size: int) -> Check:
    """A NaN or inf state changes only its own point's next state and tangents."""
    p = probe(cell, hidden_size)
    clean, clean_cache = cell.step(p.params, p.x, p.drive)
    v = torch.ones(*p.x.shape[:-1], 1, p.x.shape[-1], dtype=torch.float64)
    clean_image = cell.jvp(p.params, clean_cache, v)
    x = p.x.clone()
    x[0, 0, 0, 0] = math.nan
    x[-1, -1, -1] = math.inf
    dirty, cache = cell.step(p.params, x, p.drive)
    image = cell.jvp(p.params, cache, v)
    keep = torch.ones(p.x.shape[:3], dtype=torch.bool)
    keep[0, 0, 0] = keep[-1, -1, -1] = False
    spread = [name for name, a, b in (("state", dirty, clean), ("tangent", image, clean_image))
              if not torch.equal(a[keep], b[keep])]
    if spread:
        return Check("non-finite stays in its point", False,
                     f"a NaN/inf state changed other points' {' and '.join(spread)}")
    return Check("non-finite stays in its point", True, "other points' states and tangents "
                 "unchanged")


def check_cell(cell: Cell, hidden_size: int = 8) -> list[Check]:
    """Every check, on the CPU and (where present) on CUDA, in order; a check that raises
    fails with the exception as its detail."""
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("shapes (cpu)", lambda: shapes(cell, hidden_size)),
    ]
    if torch.cuda.is_available():
        checks.append(("shapes (cuda)", lambda: shapes(cell, hidden_size, "cuda")))
    checks += [
        ("tangent map = jacrev", lambda: tangent_map(cell, hidden_size)),
        ("batched = looped", lambda: batched_equals_looped(cell, hidden_size)),
        ("bound >= local max", lambda: bound_holds(cell, hidden_size)),
        ("non-finite stays in its point", lambda: nonfinite_stays(cell, hidden_size)),
    ]
    results = []
    for name, run in checks:
        try:
            results.append(run())
        except Exception as exc:  # the cell's own failure is the check's outcome
            results.append(Check(name, False, f"raised {type(exc).__name__}: {exc}"))
    return results
