"""The region map as text: one character per cell, coloured by region where the terminal
shows colour."""

from __future__ import annotations

import numpy as np
import pandas as pd

SYMBOLS = {"forgetful": ("F", "34"), "memory": ("M", "32"), "chaotic": ("C", "31"),
           "unclassified": ("?", "90")}


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)


def render_map(frame: pd.DataFrame, x: str, y: str, *, colour: bool = False) -> str:
    """Rows are ``y`` values (largest on top), columns ``x`` values (smallest on the left).

    Returns a multi-line string: the grid, the x range, a legend with counts, and, where the
    map has them, the interpolated lambda_1 = 0 crossings per row with the range of the
    seeds' own crossings and the mean-field edge g_c.
    """
    xs = sorted(frame[x].unique())
    ys = sorted(frame[y].unique(), reverse=True)
    cells = {(r[y], r[x]): r["region"] for _, r in frame.iterrows()}
    width = max(len(_fmt(v)) for v in ys)
    lines = [f"{y} (rows) x {x} (columns)"]
    for value in ys:
        chars = []
        for column in xs:
            symbol, code = SYMBOLS.get(cells.get((value, column), "unclassified"),
                                       ("?", "90"))
            chars.append(f"\x1b[{code}m{symbol}\x1b[0m" if colour else symbol)
        lines.append(f"{_fmt(value):>{width}} |{''.join(chars)}|")
    lines.append(f"{'':>{width}}  {x}: {_fmt(xs[0])} ... {_fmt(xs[-1])} ({len(xs)} values)")
    counts = frame["region"].value_counts()
    legend = []
    for name, (symbol, code) in SYMBOLS.items():
        shown = f"\x1b[{code}m{symbol}\x1b[0m" if colour else symbol
        legend.append(f"{shown} {name} ({int(counts.get(name, 0))} cells)")
    lines.append("  ".join(legend))
    if "lyapunov_zero_crossing" in frame:
        rows = frame.groupby(y).first()
        for value, row in rows.sort_index(ascending=False).iterrows():
            at = row["lyapunov_zero_crossing"]
            if np.isnan(at):
                continue
            text = f"lambda_1 = 0 at {x} = {at:.4g}"
            low, high = row.get("lyapunov_zero_crossing_lo"), row.get("lyapunov_zero_crossing_hi")
            if low is not None and np.isfinite(low):
                text += f" (seeds {low:.3g} .. {high:.3g})"
            edge = row.get("edge_of_chaos_mean_field")
            if edge is not None and np.isfinite(edge):
                text += f", mean field {edge:.3g}"
            lines.append(f"{text} for {y} = {_fmt(value)}")
    return "\n".join(lines)
