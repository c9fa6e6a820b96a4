"""Pictures (matplotlib, imported only here)."""

from __future__ import annotations

from dataclasses import dataclass, field
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


#: The regions' colours: Okabe & Ito's (2008) blue, yellow and vermillion. They stay apart
#: under simulated deuteranopia and protanopia (tests/test_figures_layout.py), where the
#: usual blue / green / red loses the difference between memory and chaos.
REGION_COLOURS = {"forgetful": "#0072B2", "memory": "#F0E442", "chaotic": "#D55E00",
                  "unclassified": "#bbbbbb"}
#: Line colours, one per line up to MAX_LINES: Okabe & Ito's seven colours (black is kept for
#: a metric drawn once) and Tol's wine; yellow, faint on white, comes last.
LINE_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#882255",
                "#F0E442")
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


def axis_label(axis: str, *, log: bool = False) -> str:
    """An axis's label, saying so when the axis is drawn on a log scale."""
    label = AXIS_LABELS.get(axis, axis)
    return f"{label}, log scale" if log else label


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_region_map(frame, x: str, y: str, path: str | Path, title: str, *,
                    epsilon: float = 0.0) -> Path:
    """Write :func:`region_map_figure` to ``path``."""
    return _save(region_map_figure(frame, x, y, title, epsilon=epsilon), path)


def region_map_figure(frame, x: str, y: str, title: str, *, epsilon: float = 0.0):
    """Heatmap of the majority region per (x, y) cell (shaded by its share), the
    lyapunov_max = 0 contour of the seed mean, the interpolated zero crossings with the range
    of the seeds' own crossings, and (when the map has it and y is input_scale) the
    mean-field edge g_c(sigma) as a dashed line through the rows. A refined sweep's map
    (an ``evaluated`` column) marks its evaluated cells with dots and has no contour. The
    contour is drawn at lambda_1 = ``epsilon``, the rules' chaos threshold (pass
    ``RegionRules.epsilon``), so that it runs along the chaotic cells' edge. A log y axis
    says so in its label. Returns the matplotlib Figure."""
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
    ax.set_ylabel(axis_label(y, log=log_y))
    if log_y:
        ax.set_yscale("log")
    if strip:
        ax.set_yticks([float(ys[0])], [f"{y} = {ys[0]:g}"])
        ax.set_ylabel("")
    elif len(ys) <= 12:  # ticks at the sampled values, not at a log axis's decades
        ax.set_yticks(ys.astype(float), [f"{v:g}" for v in ys])
        ax.minorticks_off()
    ax.set_title(title, fontsize=10)
    present = [n for n in names if (frame["region"] == n).any()]
    handles = [Patch(color=REGION_COLOURS[n], label=n) for n in present]
    if ax.get_legend_handles_labels()[0]:
        handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
              title="majority region\n(paler: seeds split)", title_fontsize=8)
    return fig


#: Lines of one metrics panel that get the seeds' min-max band. Neighbouring lines' bands
#: overlap into one smear, so with more lines only the first, middle and last (evenly spaced,
#: :func:`sweeper.lines.spaced`) get one; every line keeps its seed mean.
MAX_BANDS = 3
#: The metric whose panel marks each line's peak. Jaeger's memory capacity peaks inside the
#: forgetful region, not in the paper's memory region (information kept for ever): the
#: markers let a reader see where.
PEAKED = "memory_capacity"


@dataclass(frozen=True)
class MetricPanel:
    """What one panel of :func:`plot_metrics` draws, as plain data.

    Attributes:
        metric: the column drawn.
        lines: per drawn value of the group axis (None when there is no group axis), a frame
            indexed by the sorted x values with the columns mean, min and max over its rows.
        same: the lines coincide (the metric does not depend on the group axis); only the
            first is kept, drawn in black.
        banded: the values whose band is drawn (at most :data:`MAX_BANDS`).
        peaks: per value, (x, seed mean) at the largest seed mean; :data:`PEAKED` only.
    """

    metric: str
    lines: dict
    same: bool
    banded: tuple
    peaks: dict = field(default_factory=dict)


def measured_metrics(points) -> list[str]:
    """The metrics of :data:`METRIC_LABELS` that ``points`` has a value of (the Lipschitz
    bound, which needs no measurement, when none)."""
    metrics = [m for m in METRIC_LABELS if m in points and points[m].notna().any()]
    if not metrics and "lipschitz_bound" in points:
        metrics = ["lipschitz_bound"]
    return metrics


def group_values(points, group: str) -> list:
    """The sorted values of the group axis; [None] when ``points`` has no such column."""
    return sorted(points[group].unique()) if group in points else [None]


def metric_panels(points, x: str, group: str) -> list[MetricPanel]:
    """The panels of :func:`plot_metrics`, one per measured metric: a line per drawn value of
    ``group`` (:func:`drawn_groups`), its mean, min and max over the rows at each x."""
    groups = drawn_groups(group_values(points, group))
    parts = ({None: points} if groups == [None] else
             dict(iter(points[points[group].isin(groups)].groupby(group, sort=True))))
    return [_panel(metric, {value: seed_stats(parts[value], x, metric) for value in groups})
            for metric in measured_metrics(points)]


def seed_stats(part, x: str, metric: str):
    """Mean, min and max of ``metric`` over the rows at each value of ``x`` (sorted), an
    infinite value counted as missing."""
    values = part[[x, metric]].astype(float).replace([np.inf, -np.inf], np.nan)
    return values.groupby(x)[metric].agg(["mean", "min", "max"]).sort_index()


def _panel(metric: str, lines: dict) -> MetricPanel:
    first = next(iter(lines.values()))
    same = len(lines) > 1 and all(
        other.shape == first.shape and np.allclose(other.to_numpy(), first.to_numpy(),
                                                   rtol=1e-9, atol=1e-12, equal_nan=True)
        for other in lines.values())
    if same:
        lines = dict([next(iter(lines.items()))])
    peaks = capacity_peaks(lines) if metric == PEAKED else {}
    return MetricPanel(metric, lines, same, tuple(drawn_groups(list(lines), MAX_BANDS)), peaks)


def capacity_peaks(lines: dict) -> dict:
    """Per line (value -> stats frame as in :class:`MetricPanel`), the x and the seed mean
    where the seed mean is largest (the smallest such x on a tie); none for a line without a
    finite mean."""
    peaks = {}
    for value, stats in lines.items():
        mean = stats["mean"].dropna()
        if len(mean):
            at = mean.idxmax()
            peaks[value] = (float(at), float(mean[at]))
    return peaks


def plot_metrics(points, x: str, group: str, path: str | Path, title: str, *,
                 drive: MeanFieldDrive | None = None, caps: dict | None = None,
                 chance: dict | None = None, attractor_input: str | None = None) -> Path:
    """Write :func:`metrics_figure` to ``path``."""
    return _save(metrics_figure(points, x, group, title, drive=drive, caps=caps, chance=chance,
                                attractor_input=attractor_input), path)


def metrics_figure(points, x: str, group: str, title: str, *,
                   drive: MeanFieldDrive | None = None, caps: dict | None = None,
                   chance: dict | None = None, attractor_input: str | None = None):
    """Each measured metric against ``x`` in a grid of panels (:func:`metric_panels`): one
    line per value of ``group`` (seed mean), at most :data:`MAX_LINES` evenly spaced ones
    (first and last included). The seeds' min-max band is drawn for at most
    :data:`MAX_BANDS` lines (more overlap unreadably): all of them when there are that few,
    else the first, middle and last. The memory capacity panel marks each line's peak (▲).

    With ``drive`` (see :func:`sweeper.theory.mean_field_drive`) and x = recurrent_scale,
    the mean-field lambda_1 is drawn dashed beside each measured lambda_1 line, at the
    line's own x values (the pairs the region map computed, which the drive remembers). A
    metric whose lines coincide for every value of ``group`` (it does not depend on it, like
    the Lipschitz bound on the input scale) is drawn once, in black. ``caps`` (metric ->
    value) draws the most a metric can reach as a dotted line (attractors: the initial
    states tried; memory horizon: the sequence length); ``chance`` (metric -> value) a
    dashed line at what guessing scores (validation accuracy: 1 / classes).
    ``attractor_input`` names the input the attractors were counted under (the attractor
    panel's title). One legend, beside the grid; the lowest panel of each column carries
    the x ticks and label. Returns the matplotlib Figure."""
    plt = _plt()
    panels = metric_panels(points, x, group)
    every = group_values(points, group)
    colours = {value: LINE_COLOURS[k % len(LINE_COLOURS)]
               for k, value in enumerate(drawn_groups(every))}
    cols = 2 if len(panels) > 1 else 1
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols + 2.4, 3.0 * rows + 0.6),
                             squeeze=False, sharex=True, layout="constrained")
    for ax, panel in zip(axes.ravel(), panels, strict=False):
        part = {value: points if value is None else points[points[group] == value]
                for value in panel.lines}
        _draw_panel(ax, panel, part, x, colours, drive=drive,
                    cap=(caps or {}).get(panel.metric), chance=(chance or {}).get(panel.metric))
        if panel.metric == "attractor_count":
            ax.set_title(f"attractors under {attractor_input or 'the task’s constant input'}",
                         fontsize=8)
    _label_bottom_panels(fig, axes, len(panels), AXIS_LABELS.get(x, x))
    handles = _legend_handles(panels, group, colours,
                              mean_field=drive is not None and x == "recurrent_scale")
    if handles:
        thinned = ("" if len(colours) == len(every)
                   else f"\n{len(colours)} of {len(every)} values of {group}")
        fig.legend(handles=handles, loc="outside right upper", fontsize=7,
                   title=f"line: seed mean{thinned}", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def _draw_panel(ax, panel: MetricPanel, parts: dict, x: str, colours: dict, *,
                drive: MeanFieldDrive | None, cap: float | None, chance: float | None) -> None:
    """One metric's lines, bands, peak markers and reference lines on ``ax``."""
    for value, stats in panel.lines.items():
        colour = "black" if panel.same else colours[value]
        ax.plot(stats.index, stats["mean"], lw=1.2, color=colour)
        if value in panel.banded:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=0.2,
                            lw=0)
        if panel.metric == "lyapunov_max" and drive is not None:
            _draw_mean_field(ax, parts[value], x, drive, colour)
        if value in panel.peaks:
            ax.plot(*panel.peaks[value], marker="^", ms=7, mfc=colour, mec="black", mew=0.8,
                    ls="none", zorder=3)
    if panel.peaks:
        ax.set_title("▲ each line's peak (largest seed mean)", fontsize=8)
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls="--")
        ax.annotate(f"chance {chance:.3g}", (0.01, chance),
                    xycoords=("axes fraction", "data"), fontsize=7, va="bottom")
    if cap is not None:
        ax.axhline(cap, color="black", lw=0.8, ls=":")
        ax.annotate(f"cap {cap:g}", (0.01, cap), xycoords=("axes fraction", "data"),
                    fontsize=7, va="bottom")
    if panel.metric == "lyapunov_max":
        ax.axhline(0.0, color="grey", lw=0.7, ls=":")
    ax.set_ylabel(METRIC_LABELS[panel.metric])


def _label_bottom_panels(fig, axes, used: int, xlabel: str) -> None:
    """Delete the grid's empty slots; the lowest panel of each column shows the x tick
    labels and the x label (with a shared x the panels above it need neither, and the one
    above an empty slot would otherwise have none)."""
    rows, cols = axes.shape
    for ax in axes.ravel()[used:]:
        fig.delaxes(ax)
    for col in range(cols):
        filled = [row for row in range(rows) if row * cols + col < used]
        for row in filled:
            bottom = row == filled[-1]
            axes[row, col].xaxis.set_tick_params(labelbottom=bottom)
            axes[row, col].set_xlabel(xlabel if bottom else "")


def _legend_handles(panels: list[MetricPanel], group: str, colours: dict, *,
                    mean_field: bool) -> list:
    """The figure legend's entries: a line per value of ``group``, the band, the black line
    of a metric drawn once, the dashed mean field and the peak marker, each when drawn."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .lines import value_text

    grouped = [p for p in panels if not p.same]
    handles = []
    if grouped and list(colours) != [None]:
        texts = value_text(list(colours))
        handles += [Line2D([], [], color=c, lw=1.2, label=f"{group} = {texts[v]}")
                    for v, c in colours.items()]
        if len(grouped[0].banded) < len(colours):
            shown = ", ".join(texts[v] for v in grouped[0].banded)
            handles.append(Patch(color="grey", alpha=0.3, lw=0,
                                 label=f"seeds' min-max\n(band on {group} = {shown})"))
        else:
            handles.append(Patch(color="grey", alpha=0.3, lw=0, label="seeds' min-max"))
    elif panels:
        handles.append(Patch(color="grey", alpha=0.3, lw=0, label="seeds' min-max"))
    if any(p.same for p in panels):
        handles.append(Line2D([], [], color="black", lw=1.2, label=f"the same for every {group}"))
    if mean_field and any(p.metric == "lyapunov_max" for p in panels):
        handles.append(Line2D([], [], color="grey", lw=1.0, ls="--",
                              label="mean-field λ₁ (dashed,\nin its line's colour)"))
    if any(p.peaks for p in panels):
        handles.append(Line2D([], [], marker="^", ms=7, mfc="white", mec="black", ls="none",
                              label="memory capacity peak\n(largest seed mean)"))
    return handles


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
    colours = LINE_COLOURS
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
    log_x = log_spaced(every_x)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(axis_label(x, log=log_x))
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


def _draw_mean_field(ax, part, x: str, drive: MeanFieldDrive, colour) -> None:
    """The mean-field lambda_1 along x = recurrent_scale at the line's input_scale (dashed),
    at the line's own recurrent_scale values; nothing when x is another axis or the line
    mixes several input scales."""
    if x != "recurrent_scale" or "input_scale" not in part:
        return
    scales = part["input_scale"].astype(float).unique()
    if len(scales) != 1:
        return
    gains = np.sort(part[x].astype(float).unique())
    ax.plot(gains, drive.lyapunov(gains, scales[0]), ls="--", lw=1.0, color=colour)


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
