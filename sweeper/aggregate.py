"""From points to the region map: one row per cell of two map axes, aggregated over seeds and
every other axis; and the steps of ``sweeper aggregate`` around it (the points labelled with
the current rules, the sweep's map, the plots it draws, its summary in words). Pure pandas;
reading and writing the results directory is the adapters' job (sweeper.adapters.results)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import SweeperInputError
from .figures import plot_metrics, plot_orbits, plot_region_map
from .refine import fill_map
from .regions import REGIONS, UNCLASSIFIED, RegionRules, classify
from .schema import SCHEMA_VERSION, metric_names, numeric_metrics
from .space import SearchSpace, protocol_configs
from .status import OK
from .theory import MEAN_FIELD_CELLS, MeanFieldDrive

__all__ = ["MAP_METRICS", "SCHEMA_VERSION", "Aggregated", "chance_scores", "measured_only",
           "metric_caps", "region_map", "relabel", "summary_text", "sweep_map", "sweep_plots",
           "sweep_setting", "zero_crossing"]
#: Metric columns averaged in the map (those with one number per point, from the schema).
MAP_METRICS = tuple(numeric_metrics())
#: Metrics whose NaN means "not decided by what was measured" (a truncated Lyapunov spectrum,
#: sweeper.spectrum), not "not measured": a cell's mean over its decided points alone would
#: pass for the cell's (at lyapunov_k = 1, the contracting seeds' entropy 0 for a cell whose
#: other seeds are chaotic), so a cell with one undecided point has NaN.
UNDECIDED_IS_NAN = ("lyapunov_dimension", "entropy_rate", "n_positive_exponents")
#: Tie-break of the majority vote: the more cautious label wins.
_PRIORITY = ("chaotic", "memory", "forgetful", UNCLASSIFIED)


def zero_crossing(x: np.ndarray, mean_lyapunov: np.ndarray) -> float:
    """The first x where ``mean_lyapunov`` goes from <= 0 to > 0, linearly interpolated.

    Args:
        x: (P,) increasing axis values; mean_lyapunov: (P,) values (NaN entries skipped).

    Returns:
        The crossing, or NaN if the curve never crosses upward.
    """
    keep = ~np.isnan(mean_lyapunov)
    x, m = np.asarray(x, float)[keep], np.asarray(mean_lyapunov, float)[keep]
    for i in range(len(x) - 1):
        if m[i] <= 0 < m[i + 1]:
            if not np.isfinite(m[i]):
                return float(x[i])
            if not np.isfinite(m[i + 1]):
                return float(x[i + 1])
            return float(x[i] + (0.0 - m[i]) * (x[i + 1] - x[i]) / (m[i + 1] - m[i]))
    return float("nan")


def region_map(points: pd.DataFrame, x: str, y: str,
               rules: RegionRules | None = None, *, drive: MeanFieldDrive | None = None
               ) -> pd.DataFrame:
    """Aggregate classified points per (x, y) cell.

    Args:
        points: sweep rows (config columns and metrics); a ``region`` column is computed
            with ``rules`` when absent.

    Returns:
        One row per cell, sorted by (y, x): ``x``/``y`` values under their axis names,
        ``n``, ``region`` (majority; a tie goes to the label of the cell's seed-mean point
        when it is among the tied ones, else to chaotic, then memory), ``region_share``,
        ``n_<region>`` counts, ``n_not_ok`` (points whose status is not ``ok``),
        ``<metric>_mean`` and ``<metric>_std`` (sample std, NaN for one point) over the
        cell's non-NaN values (a diverged point's metrics are NaN and left out; it counts in
        ``n_not_ok``) for every metric column present, ``lyapunov_zero_crossing`` (see
        :func:`zero_crossing`; per y row, NaN unless x is recurrent_scale) and its seed
        interval ``lyapunov_zero_crossing_lo`` / ``_hi`` (see :func:`crossing_interval`).
        With ``drive`` (see :func:`sweeper.theory.mean_field_drive`; None: no theory), also
        ``lyapunov_mean_field`` (the mean-field lambda_1 averaged over the cell's points) and
        ``edge_of_chaos_mean_field`` (per y row: g_c at the row's input_scale; NaN unless x is
        recurrent_scale and the row has one input_scale).
    """
    for axis in (x, y):
        if axis not in points:
            raise SweeperInputError(f"map axis {axis!r} is not a column of the points; "
                                    f"columns: {sorted(points.columns)}")
    if points.empty:
        raise SweeperInputError("no points to aggregate: the sweep wrote no rows yet")
    if "region" not in points:
        points = points.assign(region=classify(points, rules or RegionRules()))
    metrics = [c for c in MAP_METRICS if c in points]
    values = points[metrics].apply(pd.to_numeric, errors="coerce").astype(float)
    frame = pd.concat([points[[x, y, "region"]], values], axis=1)
    if "status" in points:
        frame["not_ok"] = (points["status"] != OK).astype(int)
    else:
        frame["not_ok"] = 0
    labels = [*REGIONS, UNCLASSIFIED]
    # One vectorised pass per statistic (a Python loop over cells took seconds at 1,000 points).
    groups = frame.groupby([y, x], sort=True)
    counts = (groups["region"].value_counts().unstack(fill_value=0)
              .reindex(columns=list(_PRIORITY), fill_value=0).astype(np.int64))
    n = groups.size()
    best = counts.idxmax(axis=1)  # first maximum in _PRIORITY order: the tie-break
    result = pd.DataFrame({"n": n})
    result["region"] = best
    result["region_share"] = counts.max(axis=1) / n
    for label in labels:
        result[f"n_{label}"] = counts[label]
    result["n_not_ok"] = groups["not_ok"].sum().astype(np.int64)
    if metrics:
        with np.errstate(invalid="ignore"):
            stats = groups[metrics].agg(["mean", "std"])  # std: ddof 1, NaN for one point
        for metric in metrics:
            mean, std = (stats[(metric, stat)].astype(float) for stat in ("mean", "std"))
            if metric in UNDECIDED_IS_NAN:  # one undecided point leaves the cell undecided
                decided = groups[metric].count() == n
                mean, std = mean.where(decided), std.where(decided)
            result[f"{metric}_mean"], result[f"{metric}_std"] = mean, std
        result["region"] = _break_ties(result, counts, metrics, rules)
    result = result.reset_index()
    result = result[[x, y, *[c for c in result.columns if c not in (x, y)]]]
    crossing = pd.Series(np.nan, index=result.index)
    if x == "recurrent_scale" and "lyapunov_max_mean" in result:
        for _, row_index in result.groupby(y, sort=False).groups.items():
            line = result.loc[row_index].sort_values(x)
            crossing[row_index] = zero_crossing(line[x].to_numpy(),
                                                line["lyapunov_max_mean"].to_numpy())
    result["lyapunov_zero_crossing"] = crossing.to_numpy()
    low, high = crossing_interval(points, x, y, result)
    result["lyapunov_zero_crossing_lo"] = low
    result["lyapunov_zero_crossing_hi"] = high
    if drive is not None and _theory_applies(points):
        result = _with_mean_field(result, points, x, y, drive)
    return result.reset_index(drop=True)


def _break_ties(result: pd.DataFrame, counts: pd.DataFrame, metrics: list[str],
                rules: RegionRules | None) -> pd.Series:
    """The majority label, a tie between labels going to the label of the cell's seed-mean
    point (its mean metrics classified by the same rules) when that is one of the tied
    labels, else to the more cautious one (_PRIORITY)."""
    top = counts.eq(counts.max(axis=1), axis=0)
    tied = top.sum(axis=1) > 1
    region = result["region"].copy()
    if not tied.any():
        return region
    at = tied[tied].index
    means = pd.DataFrame({m: result.loc[at, f"{m}_mean"].to_numpy() for m in metrics},
                         index=at)
    for index, label in classify(means, rules or RegionRules()).items():
        if label in top.columns and top.at[index, label]:
            region.at[index] = label
    return region


def crossing_interval(points: pd.DataFrame, x: str, y: str, result: pd.DataFrame
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per map row, the lowest and highest lambda_1 = 0 crossing over the seeds.

    Each seed's curve (its lambda_1 against x, averaged over the other axes within the seed)
    is crossed like the seed mean (:func:`zero_crossing`); the interval is min..max over the
    seeds whose curve crosses. Min/max rather than a bootstrap: sweeps have a few seeds, a
    bootstrap of 3 would be random and optimistic, and when every seed's curve crosses once
    the seed-mean crossing lies inside this range. One seed gives a zero-width interval.

    Returns:
        (lo, hi), aligned with ``result``'s rows; NaN where x is not recurrent_scale, there is
        no lyapunov_max or seed column, or no seed crosses.
    """
    low = np.full(len(result), np.nan)
    high = np.full(len(result), np.nan)
    if x != "recurrent_scale" or "lyapunov_max" not in points or "seed" not in points:
        return low, high
    values = pd.to_numeric(points["lyapunov_max"], errors="coerce").astype(float)
    curves = (pd.DataFrame({x: points[x], y: points[y], "seed": points["seed"],
                            "value": values})
              .groupby([y, "seed", x], sort=True)["value"].mean())
    rows, seeds, along = (curves.index.get_level_values(level).to_numpy() for level in range(3))
    means = curves.to_numpy(dtype=float)
    # Each (row, seed) curve is a run of the sorted index: sliced, not grouped again (a
    # pandas group per curve costs far more than the crossing itself).
    first = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (seeds[1:] != seeds[:-1])])
    per_row: dict[Any, list[float]] = {}
    for start, stop in zip(first, np.r_[first[1:], len(means)], strict=True):
        at = zero_crossing(along[start:stop], means[start:stop])
        per_row.setdefault(rows[start], []).append(at)
    for i, row in enumerate(result[y].to_numpy()):
        found = np.asarray(per_row.get(row, []), float)
        found = found[~np.isnan(found)]
        if len(found):
            low[i], high[i] = found.min(), found.max()
    return low, high


def _theory_applies(points: pd.DataFrame) -> bool:
    """The mean-field columns need both scalings and a tanh cell with Gaussian-like W."""
    if "recurrent_scale" not in points or "input_scale" not in points:
        return False
    return "cell" not in points or bool(points["cell"].isin(MEAN_FIELD_CELLS).all())


def _with_mean_field(result: pd.DataFrame, points: pd.DataFrame, x: str, y: str,
                     drive: MeanFieldDrive) -> pd.DataFrame:
    """Add ``lyapunov_mean_field`` and ``edge_of_chaos_mean_field`` (see region_map)."""
    scales = points[["recurrent_scale", "input_scale"]].astype(float)
    pairs = scales.drop_duplicates()
    theory = pd.Series(drive.lyapunov(pairs["recurrent_scale"].to_numpy(),
                                      pairs["input_scale"].to_numpy()),
                       index=pd.MultiIndex.from_frame(pairs))
    per_point = theory.reindex(pd.MultiIndex.from_frame(scales)).to_numpy()
    mean = (pd.DataFrame({x: points[x].to_numpy(), y: points[y].to_numpy(),
                          "theory": per_point})
            .groupby([y, x], sort=True)["theory"].mean())
    result["lyapunov_mean_field"] = mean.reindex(
        pd.MultiIndex.from_frame(result[[y, x]])).to_numpy()
    edge = np.full(len(result), np.nan)
    if x == "recurrent_scale":
        row_scales = scales.groupby(points[y].to_numpy())["input_scale"].unique()
        single = {row: v[0] for row, v in row_scales.items() if len(v) == 1}
        if single:
            rows = list(single)
            edges = dict(zip(rows, drive.edge(np.array([single[r] for r in rows])),
                             strict=True))
            edge = np.array([edges.get(row, np.nan) for row in result[y]], float)
    result["edge_of_chaos_mean_field"] = edge
    return result


# The steps of `sweeper aggregate`, over plain data: the adapter reads the points, calls these,
# and writes what they return.


def relabel(points: pd.DataFrame, rules: RegionRules) -> tuple[pd.DataFrame, set[str]]:
    """``points`` with the region the ``rules`` give each row (a ``region`` column after
    ``status`` if it had none), and the trials whose stored labels differ (every trial when
    there was no ``region`` column)."""
    region = classify(points, rules).astype("str")  # the dtype a read of the labels gives
    if "region" in points:
        differs = points["region"].astype(str).to_numpy() != region.to_numpy()
        changed = set(points["trial_id"][differs])
        if changed:
            points = points.assign(region=region)
    else:
        changed = set(points["trial_id"])
        points = points.copy()
        points.insert(points.columns.get_loc("status") + 1, "region", region)
    return points, changed


def measured_only(points: pd.DataFrame, space: SearchSpace) -> pd.DataFrame:
    """``points`` without the metric columns of the families the sweep does not measure
    (all NaN: the region map would carry a mean and std of nothing for each)."""
    measured = {name for family in space.metrics for name in metric_names(family)}
    unmeasured = [c for c in metric_names() if c in points and c not in measured]
    return points.drop(columns=unmeasured)


def sweep_map(points: pd.DataFrame, space: SearchSpace,
              drive: MeanFieldDrive | None = None) -> pd.DataFrame:
    """The region map of a sweep's labelled points over its map axes (:func:`region_map` of
    the measured metrics, with the mean-field columns when ``drive`` is given); a refined
    sweep's covers the whole grid, unevaluated cells filled in (see
    :func:`sweeper.refine.fill_map`)."""
    x, y = space.map
    frame = region_map(measured_only(points, space), x, y, space.rules, drive=drive)
    if space.search.refine:
        frame = fill_map(frame, x, y, space.axes[x], space.axes[y])
    return frame


#: A plot to draw: called with the PNG's path, it writes it and returns the path.
Draw = Callable[[Path], Path]


def sweep_plots(points: pd.DataFrame, frame: pd.DataFrame, space: SearchSpace,
                drive: MeanFieldDrive | None = None, *, device: str = "cpu") -> dict[str, Draw]:
    """The plots of a sweep, by file name, in the order they are drawn: the region map; each
    metric against recurrent_scale when the sweep varies it, else against the map's x; and,
    for a task that defines one, the orbit diagram along recurrent_scale (computed here, on
    ``device``). The map's and the metrics' titles name the sweep's setting
    (:func:`sweep_setting`).

    Args:
        points: the labelled points; frame: their map (:func:`sweep_map`); drive: as given
            to :func:`sweep_map` (its mean-field values are remembered, not computed again).
    """
    from .task import get_task

    x, y = space.map
    setting = sweep_setting(space)
    metric_axis = "recurrent_scale" if len(space.axes["recurrent_scale"]) > 1 else x
    attractor_input = None
    if any("attractor_count" in metric_names(family) for family in space.metrics):
        from .orbits import input_words  # the task's constant input is a tensor (torch)

        attractor_input = input_words(get_task(space.task, dict(space.task_params)))
    group = y if y != metric_axis else x
    shown, held = held_fixed(points, space, (metric_axis, group))
    plots: dict[str, Draw] = {
        "region_map.png": functools.partial(
            plot_region_map, frame, x, y, title=f"{space.name}: regions\n{setting}",
            epsilon=space.rules.epsilon),
        f"metrics_vs_{metric_axis}.png": functools.partial(
            plot_metrics, shown, metric_axis, group,
            title=f"{space.name}: metrics against {metric_axis}\n{setting}{held}",
            drive=drive, caps=metric_caps(space), chance=chance_scores(space),
            attractor_input=attractor_input)}
    orbits = orbit_plot(space, device)
    if orbits is not None:
        plots["orbits.png"] = orbits
    return plots


def held_fixed(points: pd.DataFrame, space: SearchSpace, drawn: Sequence[str]
               ) -> tuple[pd.DataFrame, str]:
    """The points a metrics plot draws, whose lines average over seeds only: every varied
    axis besides ``drawn`` (x and the lines' axis) and the seed is held at its first value,
    and the title's last line says so (empty when none is). Pooling those axes would draw
    their spread as the seeds' band."""
    held = {a: sorted(v)[0] for a, v in space.axes.items()
            if len(v) > 1 and a not in (*drawn, "seed") and a in points}
    if not held:
        return points, ""
    keep = np.ones(len(points), dtype=bool)
    for axis, value in held.items():
        keep &= points[axis].to_numpy() == value
    text = ", ".join(f"{a} = {v:g} (first of {len(space.axes[a])})" for a, v in held.items())
    return points[keep], f"\nat {text}; sweeper plot --where draws the others"


def sweep_setting(space: SearchSpace) -> str:
    """The line of a plot's title that says what was swept: the cell (and the checkpoint a
    trained one came from), H, seq_len, the task and the number of seeds, e.g. "rnn_tanh,
    H = 64, seq_len = 200, task noise, 3 seeds"."""
    seeds = len(space.axes["seed"])
    cell = (f"{space.cell} from {Path(space.weights['checkpoint']).name}" if space.weights
            else space.cell)
    return (f"{cell}, H = {_values(space.axes['hidden_size'])}, "
            f"seq_len = {_values(space.axes['seq_len'])}, task {space.task}, "
            f"{seeds} seed{'s' if seeds != 1 else ''}")


def _values(values: Sequence) -> str:
    """An axis's values for a title: the value, a short list, or the range and the count."""
    shown = sorted(values)
    if len(shown) <= 3:
        return ", ".join(f"{v:g}" for v in shown)
    return f"{shown[0]:g}-{shown[-1]:g} ({len(shown)} values)"


def metric_caps(space: SearchSpace) -> dict[str, float]:
    """The most some metrics can reach in this sweep: the attractor count is at most the
    initial states tried, the memory horizon at most the sequence length (one seq_len)."""
    caps = {"attractor_count": float(protocol_configs(space)["memory"].attractor_inits)}
    if len(space.axes["seq_len"]) == 1:
        caps["memory_horizon"] = float(space.axes["seq_len"][0])
    return caps


def chance_scores(space: SearchSpace) -> dict[str, float]:
    """What guessing scores: 1 / classes of validation accuracy for a classification task."""
    from .task import get_task  # the task is a torch module

    task = get_task(space.task, dict(space.task_params))
    if task.loss_kind == "cross_entropy" and task.output_size > 1:
        return {"val_accuracy": 1.0 / task.output_size}
    return {}


def orbit_plot(space: SearchSpace, device: str = "cpu") -> Draw | None:
    """The orbit (bifurcation) diagram along recurrent_scale of the first hidden size and
    seed, computed on ``device``; None for a task that defines none (or one scale)."""
    from .task import get_task

    if not get_task(space.task, dict(space.task_params)).orbit_diagram \
            or len(space.axes["recurrent_scale"]) < 2:
        return None  # known before importing the numerics, which import torch
    from .orbits import input_words, sweep_orbits

    seed, hidden = space.axes["seed"][0], space.axes["hidden_size"][0]
    found = sweep_orbits(space.cell, hidden, space.task, space.task_params,
                         space.axes["recurrent_scale"], seed=seed, device=device)
    if found is None:
        return None
    words = input_words(get_task(space.task, dict(space.task_params)))
    return functools.partial(plot_orbits, found["scale"], found["orbit"],
                             title=f"{space.name}: orbit diagram ({space.cell}, H = {hidden}, "
                                   f"{words}, seed {seed})")


@dataclass
class Aggregated:
    """What `aggregate` produced: the map, where it and the plots were written, how many
    trials were relabelled, and how many of the sweep's trials the map holds."""

    space: SearchSpace
    region_map: pd.DataFrame
    map_path: Path
    plots: list[Path] = field(default_factory=list)
    relabelled_parts: int = 0
    trials_measured: int = 0
    trials_expected: int = 0

    @property
    def incomplete(self) -> str | None:
        """What the map lacks, in words, or None when it holds every trial of the sweep."""
        missing = self.trials_expected - self.trials_measured
        if missing <= 0:
            return None
        return (f"the map holds {self.trials_measured} of the sweep's {self.trials_expected} "
                f"trials: {missing} failed or have not run, and their cells lack those points")


def no_crossing(frame: pd.DataFrame, x: str) -> str:
    """The sentence that says no map row's seed-mean lambda_1 crosses 0 along ``x``, and
    on which side it stays."""
    values = frame["lyapunov_max_mean"].astype(float)
    side = "below" if values.max() < 0 else "above" if values.min() > 0 else "on both sides of"
    if x != "recurrent_scale":
        return (f"Not computed: the crossing is taken along recurrent_scale, and this map's x "
                f"is {x}. Seed-mean lambda_1 ranges from {values.min():.3g} to "
                f"{values.max():.3g}.")
    return (f"No map row crosses lambda_1 = 0: the seed-mean lambda_1 stays {side} 0 over "
            f"{x} {frame[x].min():g} .. {frame[x].max():g} (from {values.min():.3g} to "
            f"{values.max():.3g} nats per step). Widen {x} to find the edge.")


def supervised_rows(frame: pd.DataFrame, space: SearchSpace, y: str) -> list[str]:
    """Markdown lines: per map row, the range over the row's cells of each measured landscape
    and training metric's cell mean (nothing when neither family was measured)."""
    from .schema import metric_names

    names = [m for family in ("landscape", "training") if family in space.metrics
             for m in metric_names(family)
             if f"{m}_mean" in frame and frame[f"{m}_mean"].notna().any()
             and pd.api.types.is_numeric_dtype(frame[f"{m}_mean"])]
    if not names:
        return []
    lines = ["", f"## Landscape and training, per {y} (lowest .. highest cell mean)", "",
             f"| {y} | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for value, row in frame.groupby(y, sort=True):
        cells = [f"{row[f'{m}_mean'].min():.3g} .. {row[f'{m}_mean'].max():.3g}"
                 if row[f"{m}_mean"].notna().any() else "-" for m in names]
        lines.append(f"| {value:g} | " + " | ".join(cells) + " |")
    return lines


def overview_metrics(region_map: pd.DataFrame, y: str) -> dict[str, float]:
    """The answer in numbers, for a tracker's overview of the sweep: the cells of each region
    (``cells/<region>``) and, per map row, the lambda_1 = 0 crossing with the seeds' range
    (``lyapunov_zero_crossing/<y>_<value>``, ``..._lo``, ``..._hi``) where there is one."""
    found: dict[str, float] = {}
    for region in ("forgetful", "memory", "chaotic", "unclassified"):
        found[f"cells/{region}"] = float((region_map["region"] == region).sum())
    if "lyapunov_zero_crossing" not in region_map or y not in region_map:
        return found
    rows = region_map.groupby(y, sort=True)[["lyapunov_zero_crossing",
                                             "lyapunov_zero_crossing_lo",
                                             "lyapunov_zero_crossing_hi"]].first()
    for value, row in rows.iterrows():
        if not np.isfinite(row["lyapunov_zero_crossing"]):
            continue
        key = f"lyapunov_zero_crossing/{y}_{value:g}"
        found[key] = float(row["lyapunov_zero_crossing"])
        for end in ("lo", "hi"):
            if np.isfinite(row[f"lyapunov_zero_crossing_{end}"]):
                found[f"{key}_{end}"] = float(row[f"lyapunov_zero_crossing_{end}"])
    return found


def _figure(row: pd.Series, column: str) -> str:
    number = row.get(column, float("nan"))
    return "-" if pd.isna(number) else f"{number:.4g}"


def summary_text(result: Aggregated, out: str | Path,
                 files: Sequence[tuple[str, Path]]) -> str:
    """What the sweep found, in Markdown: the model, the points, the cells per region (a
    refined map's unevaluated cells not counted), what an incomplete map lacks, the
    lambda_1 = 0 crossing of each map row with the seeds' range and the mean-field edge, and
    ``files`` (what, where) with a query to start from.

    Args:
        out: the results directory as the commands it names should take it.
    """
    space, frame = result.space, result.region_map
    x, y = space.map
    evaluated = frame["evaluated"] if "evaluated" in frame else pd.Series(True, frame.index)
    counts = frame.loc[evaluated.astype(bool), "region"].value_counts()
    lines = [f"# Sweep {space.name}", "",
             f"{space.cell}, hidden_size {', '.join(map(str, space.axes['hidden_size']))}, "
             f"task {space.task}" + (f" {space.task_params}" if space.task_params else "")
             + f"; metrics {', '.join(space.metrics)}.", "",
             f"{int(frame['n'].sum())} points in {int(evaluated.sum())} map cells "
             f"({x} x {y})" + (f" of {len(frame)} (refined: the others take the nearest "
                               "evaluated cell's region)" if not evaluated.all() else "")
             + ". Cells by majority region: "
             + ", ".join(f"{label} {counts.get(label, 0)}"
                         for label in ("forgetful", "memory", "chaotic", "unclassified")) + "."]
    if result.incomplete:
        lines += ["", f"**Incomplete:** {result.incomplete}. Finish the sweep with `sweeper run "
                      f"FILE --out {out} --resume`."]
    if "lyapunov_zero_crossing" in frame and frame["lyapunov_zero_crossing"].isna().all() \
            and "lyapunov_max_mean" in frame and frame["lyapunov_max_mean"].notna().any():
        lines += ["", f"## Edge of chaos: lambda_1 = 0 along {x}", "", no_crossing(frame, x)]
    if "lyapunov_zero_crossing" in frame and frame["lyapunov_zero_crossing"].notna().any():
        lines += ["", f"## Edge of chaos: lambda_1 = 0 along {x}", "",
                  f"| {y} | crossing (seed mean) | seeds' range | mean field |",
                  "|---|---|---|---|"]
        for value, row in frame.groupby(y, sort=True):
            first = row.iloc[0]
            lines.append(f"| {value:g} | {_figure(first, 'lyapunov_zero_crossing')} | "
                         f"{_figure(first, 'lyapunov_zero_crossing_lo')} .. "
                         f"{_figure(first, 'lyapunov_zero_crossing_hi')} | "
                         f"{_figure(first, 'edge_of_chaos_mean_field')} |")
    lines += supervised_rows(frame, space, y)
    lines += ["", "## Files", "", *[f"- {what}: `{path}`" for what, path in files], "",
              f"Query: `sweeper query \"select region, count(*) from points group by region\" "
              f"--results {out}`", ""]
    return "\n".join(lines)
