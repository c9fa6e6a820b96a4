"""Pictures (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .lines import MAX_LINES  # most lines per panel; more values are thinned evenly
from .theory import MeanFieldDrive


def plot_chaotic_lstm(line: dict, path: str | Path, seq_len: int = 200) -> Path:
    """Three aligned panels over s: orbit diagram of h_1, loss, largest Lyapunov exponent.

    The PNG is written to a temporary file and renamed, so ``path`` is never half-written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = np.asarray(line["scale"])
    orbit = np.asarray(line["orbit"])
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True, constrained_layout=True)
    xs = np.repeat(scale, orbit.shape[1])
    axes[0].plot(xs, orbit.reshape(-1), ",", color="black", alpha=0.5)
    axes[0].set_ylabel("long-run $h_1$")
    axes[0].set_title("Chaotic LSTM along θ(s) = s·θ*  (Ribeiro et al. 2019)")
    axes[1].plot(scale, np.asarray(line["loss"]), lw=0.8)
    axes[1].set_ylabel(f"MSE vs s = 1 output (N = {seq_len})")
    lyap = np.asarray(line["lyapunov_max"])
    axes[2].plot(scale, lyap, lw=0.8)
    axes[2].axhline(0.0, color="grey", lw=0.6, ls="--")
    axes[2].fill_between(scale, lyap, 0, where=lyap > 0, color="tab:red", alpha=0.3,
                         label="chaotic (λ₁ > 0)")
    axes[2].set_ylabel("λ₁ (nats / step)")
    axes[2].set_xlabel("recurrent scale s")
    axes[2].legend(loc="lower right")
    return _save(fig, path)


def plot_orbits(scale, orbit, path: str | Path, title: str,
                xlabel: str = "recurrent scale s") -> Path:
    """Orbit (bifurcation) diagram: the long-run values of the first output against s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, orbit = np.asarray(scale), np.asarray(orbit)
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    ax.plot(np.repeat(scale, orbit.shape[1]), orbit.reshape(-1), ",", color="black", alpha=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("long-run first state entry")
    ax.set_title(title)
    return _save(fig, path)


REGION_COLOURS = {"forgetful": "#4c72b0", "memory": "#55a868", "chaotic": "#c44e52",
                  "unclassified": "#bbbbbb"}
AXIS_LABELS = {"recurrent_scale": "recurrent scale (x initial recurrent weights)",
               "input_scale": "input scale (x initial input weights)",
               "seq_len": "sequence length N (steps)", "hidden_size": "hidden size H (units)",
               "seed": "seed"}
METRIC_LABELS = {"lyapunov_max": "λ₁ (nats / step)",
                 "lipschitz_local_max": "local Lipschitz max ‖J‖₂",
                 "lipschitz_bound": "Lipschitz bound",
                 "memory_capacity": "memory capacity (Σ r²_k)",
                 "memory_horizon": "memory horizon (steps)",
                 "attractor_count": "attractors (count)",
                 "roughness_tv": "roughness (total variation / range)",
                 "n_local_minima": "local minima on the slice (count)",
                 "loss": "loss at the point", "val_loss": "validation loss after training",
                 "val_accuracy": "validation accuracy after training"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_region_map(frame, x: str, y: str, path: str | Path, title: str, *,
                    epsilon: float = 0.0) -> Path:
    """Heatmap of the majority region per (x, y) cell (shaded by its share), the
    lyapunov_max = 0 contour of the seed mean, the interpolated zero crossings with the range
    of the seeds' own crossings, and (when the map has it and y is input_scale) the
    mean-field edge g_c(sigma) as a dashed line through the rows. A refined sweep's map
    (an ``evaluated`` column) marks its evaluated cells with dots and has no contour. The
    contour is drawn at lambda_1 = ``epsilon``, the rules' chaos threshold (pass
    ``RegionRules.epsilon``), so that it runs along the chaotic cells' edge."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = _plt()
    names = list(REGION_COLOURS)
    xs = np.sort(frame[x].unique())
    ys = np.sort(frame[y].unique())
    codes = np.full((len(ys), len(xs)), np.nan)
    share = np.ones_like(codes)
    lyap = np.full_like(codes, np.nan)
    r, c = np.searchsorted(ys, frame[y].to_numpy()), np.searchsorted(xs, frame[x].to_numpy())
    codes[r, c] = frame["region"].map({n: i for i, n in enumerate(names)}).to_numpy(float)
    share[r, c] = frame["region_share"].to_numpy(float)
    if "lyapunov_max_mean" in frame:
        lyap[r, c] = frame["lyapunov_max_mean"].to_numpy(float)
    strip = len(ys) == 1  # a 1-D sweep: one row, no y axis to invent
    fig, ax = plt.subplots(figsize=(8, 2.6 if strip else 4.5), constrained_layout=True)
    log_y = len(ys) > 2 and np.all(ys > 0) and ys.max() / ys.min() > 20

    def edges(v, log=False):
        """Cell edges halfway between values (in log space on a log axis)."""
        v = np.log(v.astype(float)) if log else v.astype(float)
        if len(v) == 1:
            out = np.array([v[0] - 0.5, v[0] + 0.5])
        else:
            mid = (v[1:] + v[:-1]) / 2
            out = np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
        return np.exp(out) if log else out

    cmap = ListedColormap([REGION_COLOURS[n] for n in names])
    x_edges, y_edges = edges(xs), edges(ys, log_y)
    ax.pcolormesh(x_edges, y_edges, codes, cmap=cmap,
                  vmin=-0.5, vmax=len(names) - 0.5, shading="flat")
    # A split vote lightens the cell: a white veil whose opacity grows as the share falls.
    veil = ax.pcolormesh(x_edges, y_edges, np.zeros_like(share),
                         cmap=ListedColormap(["white"]), shading="flat")
    veil.set_alpha(np.clip((1 - share) * 0.8, 0, 1).ravel())
    finite = np.isfinite(lyap)
    refined = "evaluated" in frame and not frame["evaluated"].all()
    if refined:  # a refined sweep: which cells were measured (the others are filled in)
        done = frame[frame["evaluated"].astype(bool)]
        ax.plot(done[x].to_numpy(float), done[y].to_numpy(float), "o", ms=2.2, mfc="black",
                mec="white", mew=0.3, ls="none",
                label=f"evaluated ({len(done)} of {len(frame)} cells)")
    # The contour needs lambda_1 on every cell: a refined map has it on the evaluated ones only.
    if (not refined and len(xs) > 1 and len(ys) > 1 and finite.any()
            and np.nanmin(lyap) < epsilon < np.nanmax(lyap)):
        contour = ax.contour(xs.astype(float), ys.astype(float),
                             np.where(finite, lyap, np.nanmax(lyap[finite])),
                             levels=[epsilon], colors="black", linewidths=1.2)
        ax.clabel(contour, fmt={epsilon: f"λ₁ = {epsilon:g}" if epsilon else "λ₁ = 0"},
                  fontsize=8)
    if "lyapunov_zero_crossing" in frame:
        rows = frame.groupby(y).first()
        cross = rows["lyapunov_zero_crossing"].dropna()
        if len(cross):
            at = cross.to_numpy(float)
            if "lyapunov_zero_crossing_lo" in rows:
                spread = np.vstack([at - rows.loc[cross.index, "lyapunov_zero_crossing_lo"],
                                    rows.loc[cross.index, "lyapunov_zero_crossing_hi"] - at])
                spread = np.nan_to_num(np.clip(spread.astype(float), 0, None))
            else:
                spread = None
            ax.errorbar(at, cross.index.to_numpy(float), xerr=spread, fmt="k^", ms=5,
                        capsize=3, lw=1, label="λ₁ = 0 (seed mean; bar: seeds' range)")
        elif "lyapunov_max_mean" in frame and frame["lyapunov_max_mean"].notna().any():
            ax.text(0.5, 0.02, "no λ₁ = 0 crossing in this range", transform=ax.transAxes,
                    ha="center", va="bottom", fontsize=8,
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        if "edge_of_chaos_mean_field" in rows and y == "input_scale" and x == "recurrent_scale":
            edge = rows["edge_of_chaos_mean_field"].dropna()
            if len(edge):
                ax.plot(edge.to_numpy(float), edge.index.to_numpy(float), "k--", lw=1.2,
                        label="mean-field edge g_c(σ)")
    ax.set_xlabel(AXIS_LABELS.get(x, x))
    ax.set_ylabel(AXIS_LABELS.get(y, y))
    if log_y:
        ax.set_yscale("log")
    if strip:
        ax.set_yticks([float(ys[0])], [f"{y} = {ys[0]:g}"])
        ax.set_ylabel("")
    elif len(ys) <= 12:  # ticks at the sampled values, not at a log axis's decades
        ax.set_yticks(ys.astype(float), [f"{v:g}" for v in ys])
        ax.minorticks_off()
    ax.set_title(title)
    present = [n for n in names if (frame["region"] == n).any()]
    handles = [Patch(color=REGION_COLOURS[n], label=n) for n in present]
    if ax.get_legend_handles_labels()[0]:
        handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
              title="majority region\n(paler: seeds split)", title_fontsize=8)
    return _save(fig, path)



def plot_metrics(points, x: str, group: str, path: str | Path, title: str, *,
                 drive: MeanFieldDrive | None = None, caps: dict | None = None,
                 chance: dict | None = None) -> Path:
    """Each measured metric against ``x``: one line per value of ``group`` (seed mean), with a
    band from the lowest to the highest seed. With more than :data:`MAX_LINES` values of
    ``group``, that many evenly spaced ones (first and last included) are drawn. With
    ``drive`` (see :func:`sweeper.theory.mean_field_drive`) and x = recurrent_scale, the
    mean-field lambda_1 is drawn dashed beside each measured lambda_1 line, at the line's own
    x values (the pairs the region map computed, which the drive remembers). A metric whose
    lines coincide for every value of ``group`` (it does not depend on it, like the
    Lipschitz bound on the input scale) is drawn once, in black. ``caps`` (metric -> value)
    draws the most a metric can reach as a dotted line (attractors: the initial states tried;
    memory horizon: the sequence length); ``chance`` (metric -> value) a dashed line at what
    guessing scores (validation accuracy: 1 / classes)."""
    plt = _plt()
    metrics = [m for m in METRIC_LABELS if m in points and points[m].notna().any()]
    if not metrics:
        metrics = ["lipschitz_bound"] if "lipschitz_bound" in points else []
    cols = 2 if len(metrics) > 1 else 1
    rows = max(1, -(-len(metrics) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols + (3.0 if cols == 1 else 0.0),
                                                  3.2 * rows),
                             squeeze=False, sharex=True, constrained_layout=True)
    # One panel: the legend goes beside it (inside, MAX_LINES lines and their mean-field
    # curves cover the data); several: inside the first, as a wide one would split the grid.
    beside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1)} if cols == 1 else {}
    every = sorted(points[group].unique()) if group in points else [None]
    groups = drawn_groups(every)
    parts = ({None: points} if groups == [None] else
             dict(iter(points[points[group].isin(groups)].groupby(group, sort=True))))
    for ax, metric in zip(axes.ravel(), metrics, strict=False):
        lines = {}
        for value in groups:
            values = parts[value][[x, metric]].astype(float).replace([np.inf, -np.inf],
                                                                      np.nan)
            lines[value] = values.groupby(x)[metric].agg(["mean", "min", "max"]).sort_index()
        first = next(iter(lines.values()))
        same = len(lines) > 1 and all(
            other.shape == first.shape and np.allclose(other.to_numpy(), first.to_numpy(),
                                                       rtol=1e-9, atol=1e-12, equal_nan=True)
            for other in lines.values())
        for value, stats in lines.items():
            label = None if value is None else f"{group} = {value:g}"
            if same:
                label = f"every {group} (the same)"
            line, = ax.plot(stats.index, stats["mean"], lw=1.2, label=label,
                            **({"color": "black"} if same else {}))
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(),
                            alpha=0.2, lw=0)
            if metric == "lyapunov_max" and drive is not None:
                _draw_mean_field(ax, parts[value], x, group, value, drive, line.get_color())
            if same:
                ax.legend(fontsize=7)
                break
        if chance and metric in chance:
            ax.axhline(chance[metric], color="grey", lw=0.8, ls="--")
            ax.annotate(f"chance {chance[metric]:.3g}", (0.01, chance[metric]),
                        xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
        if caps and metric in caps:
            ax.axhline(caps[metric], color="black", lw=0.8, ls=":")
            ax.annotate(f"cap {caps[metric]:g}", (0.01, caps[metric]),
                        xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
        if metric == "lyapunov_max":
            ax.axhline(0.0, color="grey", lw=0.7, ls=":")
            if drive is not None:
                ax.legend(fontsize=7, **beside)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_xlabel(AXIS_LABELS.get(x, x))
    for ax in axes.ravel()[len(metrics):]:
        ax.set_visible(False)
    if len(groups) > 1:
        shown = "" if len(groups) == len(every) else f"; {len(groups)} of {len(every)} {group}s"
        axes.ravel()[0].legend(fontsize=7, title=f"line: seed mean; band: seed min-max{shown}",
                               title_fontsize=7, **beside)
    fig.suptitle(title)
    return _save(fig, path)


def plot_metric(sweeps: list[tuple[str, list]], metric: str, x: str, by: str | None,
                path: str | Path, title: str, *, flag: bool = False) -> Path:
    """One metric against one axis for one or several sweeps (``(name, lines)`` each, the
    lines of :func:`sweeper.lines.lines`): each line the seed mean, its band the seeds'
    range; sweeps told apart by line style, values of ``by`` by colour, written with the
    axis's own precision. A log-spaced x is drawn on a log axis and says so; a yes/no
    ``flag`` metric is the fraction of seeds where it holds. The file's format follows its
    suffix (png, svg or pdf)."""
    from .lines import log_spaced, value_text

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.5), constrained_layout=True)
    styles = ["-", "--", ":", "-."]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    every_x = [v for _, drawn in sweeps for line in drawn for v in line.x]
    texts = value_text([line.value for _, drawn in sweeps for line in drawn
                        if line.value is not None])
    for k, (name, drawn) in enumerate(sweeps):
        for j, line in enumerate(drawn):
            label = name if line.value is None else f"{name}: {by} = {texts[line.value]}"
            if len(sweeps) == 1 and line.value is not None:
                label = f"{by} = {texts[line.value]}"
            colour = colours[j % len(colours)]
            ax.plot(line.x, line.mean, lw=1.3, color=colour, ls=styles[k % len(styles)],
                    label=label, marker="." if len(line.x) < 12 else None)
            if not np.allclose(line.low, line.high, equal_nan=True):
                ax.fill_between(line.x, line.low, line.high, color=colour, alpha=0.15, lw=0)
    if metric == "lyapunov_max":
        ax.axhline(0.0, color="grey", lw=0.7, ls=":")
    xlabel = AXIS_LABELS.get(x, x)
    if log_spaced(every_x):
        ax.set_xscale("log")
        xlabel += " (log scale)"
    ax.set_xlabel(xlabel)
    ylabel = METRIC_LABELS.get(metric, metric)
    ax.set_ylabel(f"fraction of seeds: {metric}" if flag else ylabel)
    ax.set_title(title, fontsize=10)
    legend = ("line: the seed" if by == "seed" or x == "seed"
              else "line: seed mean; band: seed min-max")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title=legend,
              title_fontsize=7)
    return _save(fig, path)


def drawn_groups(values: list, most: int = MAX_LINES) -> list:
    """``values`` (sorted) if there are at most ``most``, else ``most`` of them evenly spaced
    from the first to the last (:func:`sweeper.lines.spaced`)."""
    from .lines import spaced

    return spaced(values, most)


def _draw_mean_field(ax, part, x: str, group: str, value, drive: MeanFieldDrive,
                     colour) -> None:
    """The mean-field lambda_1 along x = recurrent_scale at the line's input_scale (dashed),
    at the line's own recurrent_scale values; nothing when x is another axis or the line
    mixes several input scales."""
    if x != "recurrent_scale" or "input_scale" not in part:
        return
    scales = part["input_scale"].astype(float).unique()
    if len(scales) != 1:
        return
    gains = np.sort(part[x].astype(float).unique())
    label = "mean field" if value is None else f"mean field, {group} = {value:g}"
    ax.plot(gains, drive.lyapunov(gains, scales[0]), ls="--", lw=1.0, color=colour,
            label=label)


#: The file formats a figure is written in, by suffix.
FORMATS = ("png", "svg", "pdf")


def _save(fig, path: str | Path) -> Path:
    """Write ``fig`` in the format its suffix names (PNG when none of :data:`FORMATS`)
    through a temporary file and a rename (never half-written)."""
    import matplotlib.pyplot as plt

    from .atomic import atomic_write

    suffix = Path(path).suffix.lstrip(".").lower()
    kind = suffix if suffix in FORMATS else "png"
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=kind))
    finally:
        plt.close(fig)
