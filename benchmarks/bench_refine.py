"""Adaptive refinement against the full grid, through `sweeper run` (embedded Ray, sqlite
MLflow, Parquet, region map and plots), the same space run both ways side by side.

Cases (issue 15):

  (a) quickstart   the quickstart map at 4x its gain resolution: rnn_tanh H = 64, 128 gains x
                   5 input scales x 3 seeds = 1,920 points (search_spaces/quickstart_refine
                   .yaml, budget 384);
  (b) lstm         the paper's chaotic LSTM, s in [0.5, 2] at 301 points, zero input (chaos
                   in narrow windows between ~0.89 and ~1.46), lyapunov + landscape; budget 60;
  (c) gated        a GRU, H = 32: 64 gains in [0.5, 8] x 16 input scales in [0.05, 4] x 2 seeds
                   = 2,048 points; budget 409.

For each: points evaluated and wall time of both commands; every lambda_1 = 0 crossing
of the grid (a sign change of the seed-mean lambda_1 between neighbouring cells of a row)
against the refined sweep's (the same, between neighbouring evaluated cells), matched within
one grid spacing (b: the outer edges of the chaotic band within two); the region-map column
`lyapunov_zero_crossing` (each row's first upward crossing) of both; and the share of cells
the refined map labels as the grid labels them (unevaluated cells filled from the nearest
evaluated one). Targets: >= 5x fewer points, every crossing matched on (a) and (c), the
outer edges in (b).

Run:  .venv/bin/python benchmarks/bench_refine.py [--case a b c] [--executor ray|local]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _case_spaces() -> dict[str, dict]:
    quick = yaml.safe_load((ROOT / "search_spaces" / "quickstart_refine.yaml").read_text())
    lstm = yaml.safe_load((ROOT / "search_spaces" / "paper_chaotic_lstm.yaml").read_text())
    lstm["name"] = "bench-refine-lstm"
    lstm["axes"]["recurrent_scale"] = {"linspace": [0.5, 2.0, 301]}
    lstm["search"] = {"method": "refine", "budget": 60, "initial": 17}
    gated = {"name": "bench-refine-gru", "task": "noise", "task_params": {"input_std": 1.0},
             "cell": "gru", "hidden_size": 32, "seq_len": 200,
             "axes": {"recurrent_scale": {"linspace": [0.5, 8.0, 64]},
                      "input_scale": {"logspace": [0.05, 4.0, 16]}, "seed": [0, 1]},
             "vectorize": ["recurrent_scale", "seed"],
             "metrics": ["lipschitz", "lyapunov", "memory"],
             "map": {"x": "recurrent_scale", "y": "input_scale"},
             "search": {"method": "refine", "budget": 409, "initial": 9}}
    return {"a": quick, "b": lstm, "c": gated}


def run(space: dict, workdir: Path, label: str, executor: str) -> tuple[float, Path]:
    """Wall time of `sweeper run` in a fresh process, fresh output and tracking store."""
    path = workdir / f"{label}.yaml"
    path.write_text(yaml.safe_dump(space))
    out = workdir / label
    command = [sys.executable, "-m", "sweeper.cli", "run", str(path), "--out", str(out),
               "--tracking-uri", f"sqlite:///{workdir / label}.db", "--executor", executor]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{label}: sweeper run exited {done.returncode}:\n"
                           f"{done.stderr[-3000:]}")
    return wall, out


def sign_changes(x: np.ndarray, lam: np.ndarray) -> list[float]:
    """Midpoints of the sign changes of lam (NaN skipped) along increasing x."""
    keep = ~np.isnan(lam)
    x, side = x[keep], lam[keep] > 0
    return [float((x[k] + x[k + 1]) / 2) for k in range(len(x) - 1) if side[k] != side[k + 1]]


def compare(grid: pd.DataFrame, refined: pd.DataFrame, x: str, y: str, spacing: float,
            outer_only: bool) -> dict:
    """Crossings row by row, first-crossing columns, label agreement."""
    rows, matched, total = [], 0, 0
    tolerance = (2 if outer_only else 1) * spacing * (1 + 1e-9)
    for value, line in grid.groupby(y, sort=True):
        line = line.sort_values(x)
        found_line = refined[(refined[y] == value) & refined["evaluated"]].sort_values(x)
        want = sign_changes(line[x].to_numpy(float), line["lyapunov_max_mean"].to_numpy(float))
        got = sign_changes(found_line[x].to_numpy(float),
                           found_line["lyapunov_max_mean"].to_numpy(float))
        if outer_only:
            want = [want[0], want[-1]] if len(want) > 1 else want
            got = [got[0], got[-1]] if len(got) > 1 else got
        hits = [bool(got) and min(abs(w - g) for g in got) <= tolerance for w in want]
        matched += sum(hits)
        total += len(want)
        first_grid = line["lyapunov_zero_crossing"].iloc[0]
        first_ref = refined.loc[refined[y] == value, "lyapunov_zero_crossing"].iloc[0]
        rows.append((value, want, got, hits, first_grid, first_ref))
    merged = grid[[x, y, "region"]].merge(refined[[x, y, "region"]], on=[x, y],
                                          suffixes=("_grid", "_refined"))
    share = float((merged["region_grid"] == merged["region_refined"]).mean())
    return {"rows": rows, "matched": matched, "total": total, "share": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"])
    parser.add_argument("--executor", choices=["ray", "local"], default="ray")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the outputs here (default: a temporary directory)")
    args = parser.parse_args()
    spaces = _case_spaces()
    summary = []
    with tempfile.TemporaryDirectory(prefix="bench-refine-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for case in args.case:
            refine_space = spaces[case]
            grid_space = copy.deepcopy(refine_space)
            grid_space.pop("search")
            grid_space["name"] = refine_space["name"] + "-grid"
            grid_wall, grid_out = run(grid_space, workdir, f"{case}-grid", args.executor)
            refine_wall, refine_out = run(refine_space, workdir, f"{case}-refine",
                                          args.executor)
            grid = pd.read_parquet(grid_out / "region_map.parquet")
            refined = pd.read_parquet(refine_out / "region_map.parquet")
            x, y = "recurrent_scale", "input_scale"
            spacing = float(np.diff(np.sort(grid[x].unique()))[0])
            seeds = len(refine_space["axes"].get("seed", [0]))
            grid_points = int(grid["n"].sum())
            refined_points = int(refined["n"].sum())
            result = compare(grid, refined, x, y, spacing, outer_only=case == "b")
            print(f"\n== case ({case}) {refine_space['name']}: {refine_space['cell']} "
                  f"H = {refine_space['hidden_size']}, {seeds} seed(s) per cell ==")
            print(f"points evaluated: grid {grid_points}, refined {refined_points} "
                  f"({grid_points / refined_points:.1f}x fewer); wall: grid {grid_wall:.1f} s, "
                  f"refined {refine_wall:.1f} s ({grid_wall / refine_wall:.2f}x)")
            what = "outer edges of the chaotic band" if case == "b" else "crossings"
            print(f"lambda_1 = 0 {what} matched within {2 if case == 'b' else 1} spacing(s) "
                  f"({spacing:.4g}): {result['matched']} of {result['total']}")
            for value, want, got, hits, first_grid, first_ref in result["rows"]:
                marks = " ".join(f"{w:.3f}{'' if h else '(!)'}" for w, h in
                                 zip(want, hits, strict=True))
                print(f"  {y} = {value:.3g}: grid [{marks}]  refined "
                      f"[{' '.join(f'{g:.3f}' for g in got)}]  first upward: grid "
                      f"{first_grid:.3f}, refined {first_ref:.3f}")
            print(f"cells labelled as the grid labels them: {result['share']:.1%}")
            summary.append((case, grid_points, refined_points, grid_wall, refine_wall,
                            result["matched"], result["total"], result["share"]))
    print("\ncase | grid points | refined | fewer | grid s | refined s | crossings | labels")
    for case, gp, rp, gw, rw, m, t, share in summary:
        print(f"({case}) | {gp} | {rp} | {gp / rp:.1f}x | {gw:.1f} | {rw:.1f} | {m}/{t} | "
              f"{share:.1%}")


if __name__ == "__main__":
    main()
