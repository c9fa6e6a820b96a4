"""Adaptive refinement: which cells of a sweep's grid to evaluate next, so the points go to
where the regions meet instead of filling the whole grid.

The grid is the search space's own: the map axes (x, y) span it, every other axis but an
unmapped seed splits it into layers, and a cell is evaluated for every seed at once (its
label is the seeds' vote, as in the region map). Pure functions: the sweep driver
(:mod:`sweeper.sweep`) calls :func:`propose` between rounds with the points measured so far.

The method is a quadtree (a binary tree on a 1-D map) over grid indices:

1. Round 0 evaluates a coarse lattice, ``initial`` evenly spaced indices per map axis (both
   ends included), which cuts the grid into blocks.
2. A block whose evaluated cells disagree is split in two along each axis it spans by more
   than one index; the corners of its children not yet evaluated are the next round's
   proposals. Two cells disagree when their regions differ or their lambda_1 means lie on
   different sides of 0 (a diverged cell, lambda_1 NaN, is a class of its own).
3. A block whose cells agree is still split when an edge of it may hide a lambda_1 = 0
   crossing: with the edge's end values f_a, f_b of one sign and its length w (in indices),
   a curve of slope at most L crosses between them when (|f_a| + |f_b|) < L w. L is
   ``slope_factor`` times the median |slope| between neighbouring evaluated cells along that
   axis in the layer (a robust guess; chaotic stretches jump, the median does not), so a
   narrow chaotic window between two non-chaotic points near 0 is looked for, while a
   smooth curve far from 0 is not (a straight line never triggers it with factor 1).
4. A block one index wide along an axis (neighbouring rows, or columns) is taken as its two
   lines, each refined on its own: nothing lies between them, and a block would drag the
   other line along.
5. Each round proposes the missing corners of every block to be split: blocks split for
   lambda_1 (a sign change, then a possibly hidden crossing) before those split for region
   labels alone, then the largest first, as long as the point budget lasts; the sweep ends
   when nothing is left to split or the budget is spent.

A boundary that enters and leaves a block through the same edge between two lattice points,
with lambda_1 far from 0 at both, is not seen; a finer ``initial`` lattice finds it.
Everything derives from the evaluated cells alone, so a resumed sweep proposes exactly what
is still missing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import SweeperInputError, invalid, is_finite_number, is_integer
from .regions import REGIONS, UNCLASSIFIED

METHODS = ("grid", "refine")
#: Keys of ``search:`` for each method.
KEYS = {"grid": ("method",), "refine": ("method", "budget", "initial", "slope_factor")}
_LABELS = (*REGIONS, UNCLASSIFIED)
#: Why a block is split, in order of priority: lambda_1 on both sides of 0 inside it, a
#: lambda_1 = 0 crossing possibly hidden along an edge, region labels that differ.
SIDES, HIDDEN, LABELS = 0, 1, 2
#: Code of a cell whose trial failed: not evaluated, not proposed again.
FAILED = -2


@dataclass(frozen=True)
class SearchConfig:
    """How a sweep chooses its points: ``grid`` (every point) or ``refine`` (see module).

    Attributes:
        method: "grid" or "refine".
        budget: refine: the most points evaluated (seeds and layers included).
        initial: refine: values per map axis in the first round's lattice (at most the axis's
            length; both ends included).
        slope_factor: refine: L over the median neighbour slope in the hidden-crossing test
            (0 turns the test off: only disagreeing blocks are split).
    """

    method: str = "grid"
    budget: int | None = None
    initial: int = 9
    slope_factor: float = 2.0

    @property
    def refine(self) -> bool:
        return self.method == "refine"


def parse_search(raw: Any) -> tuple[SearchConfig, list[str]]:
    """The ``search:`` mapping of a search-space file, checked.

    Returns:
        The config (defaults where a value was bad) and the problems, one message each in the
        words of :mod:`sweeper.errors` (key path, bad value, what is allowed), for the caller
        to report with the file's other problems.
    """
    if raw is None:
        return SearchConfig(), []
    if not isinstance(raw, Mapping):
        return SearchConfig(), [_invalid("search", raw, "a mapping {method: grid} or {method: "
                                         "refine, budget: N, initial: n, slope_factor: f}")]
    method = raw.get("method", "grid")
    if method not in METHODS:
        return SearchConfig(), [_invalid("search.method", method, f"one of {list(METHODS)}")]
    problems = [_invalid(f"search.{key}", raw[key], f"absent: method {method} takes only "
                         f"{list(KEYS[method])}")
                for key in sorted(set(raw) - set(KEYS[method]), key=str)]
    if method == "grid":
        return SearchConfig(), problems
    budget, initial = raw.get("budget"), raw.get("initial", 9)
    factor = raw.get("slope_factor", 2.0)
    if not (is_integer(budget) and budget >= 1):
        problems.append(_invalid("search.budget", budget, "an integer >= 1 (the most points "
                                 "evaluated)"))
        budget = None
    if not (is_integer(initial) and 2 <= initial <= 10_000):
        problems.append(_invalid("search.initial", initial, "an integer from 2 to 10000 "
                                 "(values per map axis in the first round)"))
        initial = 9
    if not (is_finite_number(factor) and 0 <= factor <= 100):
        problems.append(_invalid("search.slope_factor", factor, "a number from 0 to 100"))
        factor = 2.0
    return SearchConfig("refine", budget, int(initial), float(factor)), problems


def _invalid(path: str, value: Any, allowed: str) -> str:
    return str(invalid(path, value, allowed))


@dataclass(frozen=True)
class Grid:
    """The cells refinement chooses among.

    Attributes:
        x, y: the map axes; ``xs``, ``ys`` their values (``ys`` may have one value: a 1-D map).
        layers: one mapping per combination of the other axes' values (an unmapped seed
            excepted), in the space's order.
        within: the axes every cell is evaluated over (the seed, when it is not mapped).
    """

    x: str
    y: str
    xs: tuple
    ys: tuple
    layers: tuple[dict[str, Any], ...]
    within: dict[str, list]

    @classmethod
    def of(cls, axes: Mapping[str, list], map_axes: tuple[str, str]) -> Grid:
        x, y = map_axes
        within = {a: list(v) for a, v in axes.items() if a == "seed" and a not in map_axes}
        other = [a for a in axes if a not in map_axes and a not in within]
        layers = tuple(dict(zip(other, values, strict=True))
                       for values in itertools.product(*(axes[a] for a in other)))
        return cls(x, y, tuple(axes[x]), tuple(axes[y]), layers, within)

    @property
    def points_per_cell(self) -> int:
        return math.prod(len(v) for v in self.within.values())

    def lattice(self, initial: int) -> tuple[list[int], list[int]]:
        """The first round's indices along x and y."""
        return _spread(len(self.xs), initial), _spread(len(self.ys), initial)

    def initial_points(self, initial: int) -> int:
        ix, iy = self.lattice(initial)
        return len(ix) * len(iy) * len(self.layers) * self.points_per_cell

    def values(self, cell: tuple[int, int, int]) -> dict[str, Any]:
        """The axis values of a cell (layer, i, j), within-cell axes left out."""
        layer, i, j = cell
        return {**self.layers[layer], self.x: self.xs[i], self.y: self.ys[j]}


def _spread(n: int, count: int) -> list[int]:
    """``count`` evenly spaced indices of 0..n-1, both ends included (all of them if fewer)."""
    if n <= count:
        return list(range(n))
    return sorted({round(v) for v in np.linspace(0, n - 1, count)})


@dataclass(frozen=True)
class Evaluated:
    """Per layer, the evaluated cells' classes and lambda_1 means on the (x, y) index grid:
    ``codes[layer][i, j]`` is -1 where unevaluated, else a class (region and side of 0)."""

    codes: tuple[np.ndarray, ...]
    lyapunov: tuple[np.ndarray, ...]


def _index(values: Sequence, column: pd.Series) -> np.ndarray:
    """Each value of ``column`` as its index in ``values`` (-1 when it is not one of them)."""
    lookup = {v: k for k, v in enumerate(values)}
    if all(isinstance(v, float) for v in values):
        lookup = {float(v): k for v, k in lookup.items()}
        return np.array([lookup.get(float(v), -1) for v in column], dtype=np.int64)
    return np.array([lookup.get(v, -1) for v in column], dtype=np.int64)


def evaluated(grid: Grid, cells: pd.DataFrame) -> Evaluated:
    """Place per-cell summaries on the grid.

    Args:
        cells: one row per evaluated (layer axes, x, y) cell: the axis columns, ``region``
            (the cell's majority label) and ``lyapunov_max_mean`` (NaN when diverged; the
            column may be absent when lambda_1 is not measured), as
            :func:`sweeper.aggregate.region_map` gives them per layer.
    """
    shape = (len(grid.xs), len(grid.ys))
    codes = [np.full(shape, -1, dtype=np.int64) for _ in grid.layers]
    lyap = [np.full(shape, np.nan) for _ in grid.layers]
    if len(cells):
        layer_of = {tuple(sorted(layer.items())): k for k, layer in enumerate(grid.layers)}
        names = list(grid.layers[0])
        keys = (list(zip(*(cells[a] for a in names), strict=True)) if names
                else [()] * len(cells))
        layer_index = np.array([layer_of.get(tuple(sorted(zip(names, key, strict=True))), -1)
                                for key in keys])
        i = _index(grid.xs, cells[grid.x])
        j = _index(grid.ys, cells[grid.y])
        lam = (cells["lyapunov_max_mean"].to_numpy(float) if "lyapunov_max_mean" in cells
               else np.full(len(cells), np.nan))
        side = np.where(np.isnan(lam), 2, (lam > 0).astype(int))
        if "lyapunov_max_mean" not in cells:
            side[:] = 3
        region = np.array([_LABELS.index(r) if r in _LABELS else len(_LABELS)
                           for r in cells["region"]])
        code = region * 4 + side
        for k in range(len(grid.layers)):
            here = (layer_index == k) & (i >= 0) & (j >= 0)
            codes[k][i[here], j[here]] = code[here]
            lyap[k][i[here], j[here]] = lam[here]
    return Evaluated(tuple(codes), tuple(lyap))


@dataclass(frozen=True)
class _Block:
    i0: int
    i1: int
    j0: int
    j1: int

    def corners(self) -> list[tuple[int, int]]:
        return sorted({(i, j) for i in (self.i0, self.i1) for j in (self.j0, self.j1)})

    @property
    def size(self) -> int:
        return max(self.i1 - self.i0, self.j1 - self.j0)

    def children(self) -> list[_Block]:
        def halves(lo: int, hi: int) -> list[tuple[int, int]]:
            if hi - lo < 2:
                return [(lo, hi)]
            mid = (lo + hi) // 2
            return [(lo, mid), (mid, hi)]

        return [_Block(a, b, c, d) for a, b in halves(self.i0, self.i1)
                for c, d in halves(self.j0, self.j1)]

    def lines(self) -> list[_Block]:
        """A block one index wide along an axis as its two lines along the other axis."""
        if self.j1 - self.j0 == 1:
            return [_Block(self.i0, self.i1, j, j) for j in (self.j0, self.j1)]
        return [_Block(i, i, self.j0, self.j1) for i in (self.i0, self.i1)]

    def edges(self) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
        """(one end, the other end, axis) of the block's edges that span an index or more."""
        found = []
        if self.i1 > self.i0:
            found += [((self.i0, j), (self.i1, j), 0) for j in sorted({self.j0, self.j1})]
        if self.j1 > self.j0:
            found += [((i, self.j0), (i, self.j1), 1) for i in sorted({self.i0, self.i1})]
        return found


def _median_slopes(codes: np.ndarray, lyap: np.ndarray) -> tuple[float, float]:
    """Median |d lambda_1 / d index| between neighbouring evaluated cells, along x and y."""
    slopes: list[list[float]] = [[], []]
    for axis in (0, 1):
        grid = codes if axis == 0 else codes.T
        values = lyap if axis == 0 else lyap.T
        for line, lam in zip(grid.T, values.T, strict=True):
            idx = np.flatnonzero(line >= 0)
            lam_here = lam[idx]
            ok = ~np.isnan(lam_here)
            idx, lam_here = idx[ok], lam_here[ok]
            if len(idx) > 1:
                slopes[axis] += list(np.abs(np.diff(lam_here)) / np.diff(idx))
    return tuple(float(np.median(s)) if s else math.inf for s in slopes)  # type: ignore


def _hides_crossing(block: _Block, lyap: np.ndarray, slopes: tuple[float, float],
                    factor: float) -> bool:
    for a, b, axis in block.edges():
        fa, fb = lyap[a], lyap[b]
        if np.isnan(fa) or np.isnan(fb) or (fa > 0) != (fb > 0):
            continue  # a sign change is a disagreement already; NaN: nothing to bound
        length = (b[axis] - a[axis])
        if length >= 2 and abs(fa) + abs(fb) < factor * slopes[axis] * length:
            return True
    return False


def _frontier(grid: Grid, state: Evaluated, config: SearchConfig
              ) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
    """Blocks to split next: (size, why its parent was split, its unevaluated corners)."""
    ix, iy = grid.lattice(config.initial)
    found = []
    for layer, (codes, lyap) in enumerate(zip(state.codes, state.lyapunov, strict=True)):
        slopes = _median_slopes(codes, lyap)
        xs = list(itertools.pairwise(ix)) or [(ix[0], ix[0])]
        ys = list(itertools.pairwise(iy)) or [(iy[0], iy[0])]
        stack = [(_Block(i0, i1, j0, j1), SIDES) for i0, i1 in xs for j0, j1 in ys]
        while stack:
            block, kind = stack.pop()
            corners = block.corners()
            if any(codes[c] == FAILED for c in corners):
                continue  # a failed corner: the block cannot be judged
            missing = [(layer, i, j) for i, j in corners if codes[i, j] < 0]
            if missing:
                found.append((block.size, kind, missing))
                continue
            if block.size < 2:
                continue  # neighbouring cells: nothing lies between them
            if block.i1 - block.i0 == 1 or block.j1 - block.j0 == 1:
                # Neighbouring rows (or columns): nothing lies between them, so each line is
                # refined on its own; a block would drag its other line along.
                stack += [(line, kind) for line in block.lines()]
                continue
            inside = codes[block.i0:block.i1 + 1, block.j0:block.j1 + 1]
            classes = np.unique(inside[inside >= 0])
            if len(np.unique(classes % 4)) > 1:
                reason = SIDES
            elif config.slope_factor > 0 and _hides_crossing(block, lyap, slopes,
                                                             config.slope_factor):
                reason = HIDDEN
            elif len(classes) > 1:
                reason = LABELS
            else:
                continue
            stack += [(child, reason) for child in block.children()]
    return found


def propose(grid: Grid, state: Evaluated, config: SearchConfig, points_left: int
            ) -> list[tuple[int, int, int]]:
    """The next round's cells (layer, i, j), at most ``points_left`` points' worth: the
    missing corners of the blocks to split; blocks split for lambda_1 (a sign change or a
    possibly hidden crossing) before those split for region labels alone, then the largest
    first, then in grid order. Empty when refinement is done or the budget is spent."""
    per_cell = grid.points_per_cell
    chosen: dict[tuple[int, int, int], None] = {}
    left = points_left // per_cell
    order = sorted(_frontier(grid, state, config),
                   key=lambda item: (item[1] == LABELS, -item[0], item[1], item[2]))
    for _size, _reason, missing in order:
        new = [c for c in missing if c not in chosen]
        if len(new) <= left:
            chosen.update(dict.fromkeys(new))
            left -= len(new)
    return sorted(chosen)


def fill_nearest(evaluated_mask: np.ndarray) -> np.ndarray:
    """For each cell of a 2-D grid, the flat index of the nearest evaluated cell (Euclidean
    distance in index units; ties go to the lowest flat index).

    Raises:
        SweeperInputError: no cell is evaluated.
    """
    known = np.flatnonzero(evaluated_mask.ravel())
    if not len(known):
        raise SweeperInputError("no evaluated cell to fill the region map from")
    ni, nj = evaluated_mask.shape
    ki, kj = np.divmod(known, nj)
    nearest = np.empty(ni * nj, dtype=np.int64)
    flat = np.arange(ni * nj)
    for start in range(0, len(flat), 4096):
        ci, cj = np.divmod(flat[start:start + 4096], nj)
        d = (ci[:, None] - ki[None, :]) ** 2 + (cj[:, None] - kj[None, :]) ** 2
        nearest[start:start + 4096] = known[np.argmin(d, axis=1)]
    return nearest.reshape(ni, nj)


def summarise(grid: Grid, points: pd.DataFrame, rules: Any = None) -> pd.DataFrame:
    """Per-cell summaries of measured points (one row per evaluated cell), the input of
    :func:`evaluated`: the region map's own vote and lambda_1 mean, per layer."""
    from .aggregate import region_map

    names = list(grid.layers[0]) if grid.layers else []
    if points.empty:
        return pd.DataFrame(columns=[*names, grid.x, grid.y, "region", "lyapunov_max_mean"])
    keep = [c for c in ("region", "status", "lyapunov_max") if c in points]
    frames = []
    groups = points.groupby(names, sort=True) if names else [((), points)]
    for key, part in groups:
        cells = region_map(part[[grid.x, grid.y, *keep]], grid.x, grid.y, rules)
        key = key if isinstance(key, tuple) else (key,)
        for name, value in zip(names, key, strict=True):
            cells[name] = value
        frames.append(cells)
    return pd.concat(frames, ignore_index=True)


def cells_of(grid: Grid, config: Mapping[str, Any], vectorized: Mapping[str, list]
             ) -> set[tuple[int, int, int]]:
    """The grid cells (layer, i, j) a trial's points lie in."""
    names = list(grid.layers[0]) if grid.layers else []
    layer_of = {tuple(layer[a] for a in names): k for k, layer in enumerate(grid.layers)}
    axes = [*names, grid.x, grid.y]
    lists = [vectorized[a] if a in vectorized else [config[a]] for a in axes]
    xi = {v: k for k, v in enumerate(grid.xs)}
    yi = {v: k for k, v in enumerate(grid.ys)}
    found = set()
    for values in itertools.product(*lists):
        *layer, x, y = values
        found.add((layer_of[tuple(layer)], xi[x], yi[y]))
    return found


def next_cells(grid: Grid, points: pd.DataFrame, config: SearchConfig, points_left: int,
               failed: set[tuple[int, int, int]] = frozenset(), rules: Any = None
               ) -> list[tuple[int, int, int]]:
    """The next round's cells from the points measured so far (see :func:`propose`); cells
    whose trial failed are never proposed again and stop the refinement of their blocks."""
    state = evaluated(grid, summarise(grid, points, rules))
    for layer, i, j in failed:
        if state.codes[layer][i, j] < 0:
            state.codes[layer][i, j] = FAILED
    return propose(grid, state, config, points_left)


#: Region-map columns that hold one value per map row (copied to a row's unevaluated cells).
ROW_COLUMNS = ("lyapunov_zero_crossing", "lyapunov_zero_crossing_lo",
               "lyapunov_zero_crossing_hi", "edge_of_chaos_mean_field")


def fill_map(frame: pd.DataFrame, x: str, y: str, xs: Sequence, ys: Sequence
             ) -> pd.DataFrame:
    """A region map of evaluated cells (``frame``, one row per cell) on the whole grid
    ``xs`` x ``ys``, sorted by (y, x), with a boolean ``evaluated`` column.

    An unevaluated cell takes ``region`` and ``region_share`` from the nearest evaluated
    cell (Euclidean distance counted in grid steps of each axis; ties to the lower y, then
    the lower x); the per-row columns (:data:`ROW_COLUMNS`) from its row, which the
    evaluated cells of that row determine; every other column is NaN (0 for the counts):
    no metric is invented for a point that was not measured.
    """
    xi = {v: k for k, v in enumerate(xs)}
    yi = {v: k for k, v in enumerate(ys)}
    shape = (len(ys), len(xs))
    where = np.full(shape, -1, dtype=np.int64)
    where[[yi[v] for v in frame[y]], [xi[v] for v in frame[x]]] = np.arange(len(frame))
    mask = where >= 0
    nearest = where.ravel()[fill_nearest(mask).ravel()]
    gy, gx = np.divmod(np.arange(mask.size), len(xs))
    full = pd.DataFrame({x: pd.Series(np.asarray(xs)[gx]).astype(frame[x].dtype),
                         y: pd.Series(np.asarray(ys)[gy]).astype(frame[y].dtype)})
    for column in frame.columns:
        if column in (x, y):
            continue
        values = frame[column].to_numpy()
        if column in ("region", "region_share"):
            full[column] = values[nearest]
        elif column == "n" or column.startswith("n_"):
            full[column] = np.where(mask.ravel(), values[np.maximum(where.ravel(), 0)], 0)
        else:
            filled = pd.Series(values[np.maximum(where.ravel(), 0)])
            full[column] = filled.where(mask.ravel())
    for column in ROW_COLUMNS:
        if column in frame:
            per_row = frame.groupby(y)[column].first()
            full[column] = full[y].map(per_row).astype(float)
    full["evaluated"] = mask.ravel()
    return full
