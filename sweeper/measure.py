"""``measure``: the notebook entry point. Validates once, builds the batch, calls the core,
returns one DataFrame row per point."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .cells import BoundContext, Cell, get_cell
from .dynamics import DynamicsConfig, drive_bound, input_projection, run_dynamics
from .errors import SweeperInputError, require
from .landscape_metrics import LandscapeConfig, landscape_metrics
from .lipschitz import cost_growth_log10
from .memory import MemoryConfig, attractor_count, memory_capacity
from .model import init_readout
from .params import CellParams
from .seeding import generator
from .training import TrainingConfig, train

METRIC_FAMILIES = ("lipschitz", "lyapunov", "memory", "landscape", "training")

METRIC_COLUMNS = {
    "lipschitz": ["lipschitz_bound", "lipschitz_local_max", "lipschitz_local_mean",
                  "cost_growth_log10", "cost_growth_log10_local"],
    "lyapunov": ["lyapunov_max"],
    "landscape": ["loss", "grad_norm", "hessian_top_eig", "n_local_minima", "roughness_tv",
                  "loss_lipschitz", "loss_curvature", "n_local_minima_random",
                  "roughness_tv_random", "loss_lipschitz_random", "loss_curvature_random"],
    "training": ["train_loss", "val_loss", "val_accuracy", "diverged", "steps_to_threshold"],
    "memory": ["memory_capacity", "memory_horizon", "memory_horizon_capped", "attractor_count",
               "orbit_period", "asymptotic_states", "memory_curve"],
}

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _value_list(name: str, values: Any, *, integer: bool = False) -> list:
    if isinstance(values, (int, float, np.integer, np.floating)) and not isinstance(values, bool):
        values = [values]
    try:
        values = list(values)
    except TypeError:
        raise SweeperInputError(f"{name} must be a list of numbers, got {values!r}") from None
    require(len(values) > 0, f"{name} must contain at least one value, got an empty list")
    out = []
    for v in values:
        ok_type = isinstance(v, (int, np.integer)) if integer else isinstance(
            v, (int, float, np.integer, np.floating))
        if isinstance(v, bool) or not ok_type:
            kind = "integers" if integer else "numbers"
            raise SweeperInputError(f"{name} must contain {kind}, got {v!r}")
        if not integer and not math.isfinite(float(v)):
            raise SweeperInputError(f"{name} must be finite, got {name}={v!r}")
        if float(v) < 0:
            raise SweeperInputError(f"{name} must be >= 0, got {name}={v!r}")
        out.append(int(v) if integer else float(v))
    return out


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SweeperInputError(f"{name} must be a positive integer, got {name}={value!r}")
    return int(value)


def _families(metrics: Any) -> list[str]:
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    require(len(metrics) > 0, f"metrics must name at least one of {list(METRIC_FAMILIES)}")
    bad = [m for m in metrics if m not in METRIC_FAMILIES]
    require(not bad, f"unknown metrics {bad}; known: {list(METRIC_FAMILIES)}")
    return metrics


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SweeperInputError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SweeperInputError(f"device={device!r} requested but CUDA is not available; "
                                "use 'cpu' or leave device unset")
    return dev


def build_params(cell: Cell, hidden_size: int, input_size: int, seeds: Sequence[int],
                 recurrent_scale: torch.Tensor, input_scale: torch.Tensor,
                 dtype: torch.dtype, device: torch.device,
                 anchor: dict[str, torch.Tensor] | None = None) -> CellParams:
    """Base draws for ``seeds`` (float64 on the CPU, then moved), with (G, M) scalings.

    With ``anchor`` (a task's theta*), every group uses those weights instead of a draw.
    """
    if anchor is not None:
        draws = [anchor for _ in seeds]
    else:
        draws = [cell.init_weights(hidden_size, input_size, generator(s, "weights"))
                 for s in seeds]
    weights = {k: torch.stack([d[k] for d in draws]).to(device=device, dtype=dtype)
               for k in draws[0]}
    return CellParams(weights, recurrent_scale.to(device=device, dtype=dtype),
                      input_scale.to(device=device, dtype=dtype), {"seeds": list(seeds)})


def measure(cell: str | Cell, hidden_size: int, *, task: Any = "noise",
            task_params: dict | None = None, recurrent_scale: Sequence[float] = (1.0,),
            input_scale: Sequence[float] = (1.0,), seed: Sequence[int] = (0,),
            seq_len: int = 200, metrics: Sequence[str] = ("lipschitz", "lyapunov", "memory"),
            device: str | torch.device | None = None, dtype: str = "float32",
            dynamics: DynamicsConfig | None = None, memory: MemoryConfig | None = None,
            landscape: LandscapeConfig | None = None, training: TrainingConfig | None = None
            ) -> pd.DataFrame:
    """Measure every point of the product seed x recurrent_scale x input_scale.

    Points of one seed share a base draw and run as one batch; all seeds run together.

    Args:
        cell: a name from ``sweeper.CELLS`` (or a Cell object).
        hidden_size: H > 0.
        task, task_params: a name from ``tasks.TASKS`` or "module:Class", and its parameters.
        recurrent_scale, input_scale: non-negative factors on the recurrent / input weights.
        seed: base draws (non-negative integers).
        seq_len: N > 0, the sequence length (the trajectory runs burn_in + N steps).
        metrics: families among "lipschitz", "lyapunov", "memory", "landscape", "training"
            (the last two need a supervised task: teacher, sine_generator, ...).
        device: "cpu", "cuda", ... (None: CUDA when available). dtype: "float32" or "float64".
        dynamics, memory, landscape, training: protocol settings (DynamicsConfig,
            MemoryConfig, LandscapeConfig, TrainingConfig).

    Returns:
        One row per point: cell, hidden_size, task, seed, recurrent_scale, input_scale,
        seq_len, status ("ok" or "diverged"), and every metric column (NaN where not computed).

    Raises:
        SweeperInputError: bad names or values; the message names the parameter.

    Example:
        >>> df = measure("rnn_tanh", 32, recurrent_scale=[0.5, 2.0], seq_len=50)
        >>> list(df.status)
        ['ok', 'ok']
    """
    from tasks import get_task

    cell_obj = get_cell(cell)
    hidden_size = _positive_int("hidden_size", hidden_size)
    seq_len = _positive_int("seq_len", seq_len)
    rs = _value_list("recurrent_scale", recurrent_scale)
    ins = _value_list("input_scale", input_scale)
    seeds = _value_list("seed", seed, integer=True)
    families = _families(metrics)
    require(dtype in DTYPES, f"dtype must be one of {list(DTYPES)}, got dtype={dtype!r}")
    task_obj = get_task(task, task_params)
    dev = resolve_device(device)
    dyn = dynamics or DynamicsConfig()
    mem = memory or MemoryConfig()
    supervised = [f for f in families if f in ("landscape", "training")]
    require(not supervised or task_obj.output_size > 0,
            f"metrics {supervised} need a supervised task; task {task_obj.name!r} has no loss "
            "(try task='teacher')")
    if supervised:  # the dynamics metrics only drive the network; any length will do there
        task_obj.check_seq_len(seq_len)

    combos = list(itertools.product(rs, ins))
    scale_r = torch.tensor([[c[0] for c in combos]] * len(seeds), dtype=torch.float64)
    scale_i = torch.tensor([[c[1] for c in combos]] * len(seeds), dtype=torch.float64)
    input_size = task_obj.input_size
    base = build_params(cell_obj, hidden_size, input_size, seeds, scale_r, scale_i,
                        DTYPES[dtype], dev, anchor=task_obj.anchor(cell_obj.name, hidden_size))
    params = cell_obj.prepare(base)
    group_seeds = _group_seeds(params, seeds)
    state_size = cell_obj.state_size(hidden_size)
    groups, members = params.recurrent_scale.shape
    columns: dict[str, torch.Tensor] = {}
    finite = torch.ones(groups, members, dtype=torch.bool, device=dev)

    with torch.no_grad():
        steps = dyn.burn_in + seq_len
        inputs = torch.stack([task_obj.inputs(s, dyn.n_trajectories, steps)
                              for s in group_seeds]).to(dev)
        need_dynamics = bool(set(families) & {"lipschitz", "lyapunov", "memory"})
        if need_dynamics:
            x0 = _initial_states(group_seeds, members, dyn.n_trajectories, state_size, params,
                                 task_obj.initial_state(state_size))
            result = run_dynamics(cell_obj, params, inputs, x0, seq_len, dyn, group_seeds)
            finite &= result.finite
        if "lipschitz" in families:
            context = BoundContext(seq_len=steps,
                                   drive_max=drive_bound(params, input_projection(params, inputs)))
            bound = cell_obj.lipschitz_bound(params, context)
            columns["lipschitz_bound"] = bound
            columns["lipschitz_local_max"] = result.lipschitz_local_max
            columns["lipschitz_local_mean"] = result.lipschitz_local_mean
            columns["cost_growth_log10"] = cost_growth_log10(bound, seq_len)
            columns["cost_growth_log10_local"] = cost_growth_log10(result.lipschitz_local_max,
                                                                   seq_len)
        if "lyapunov" in families:
            columns["lyapunov_max"] = result.lyapunov[..., 0]
            for j in range(1, result.lyapunov.shape[-1]):
                columns[f"lyapunov_{j + 1}"] = result.lyapunov[..., j]
            if result.lyapunov_twin is not None:
                columns["lyapunov_max_twin"] = result.lyapunov_twin
        if "memory" in families:
            capacity, curve, ok_mc = memory_capacity(cell_obj, params, input_size, state_size,
                                                     group_seeds, mem)
            reached = attractor_count(cell_obj, params, task_obj.constant_input(), state_size,
                                    group_seeds, mem)
            finite &= ok_mc & reached.finite
            columns["memory_capacity"] = capacity
            columns["memory_curve"] = curve
            columns["memory_horizon"] = result.memory_horizon
            columns["memory_horizon_capped"] = result.memory_horizon_capped
            columns["attractor_count"] = reached.count
            columns["orbit_period"] = reached.period
            columns["asymptotic_states"] = reached.states

    if supervised:
        readout = init_readout(task_obj.readout, task_obj.output_size, hidden_size, seeds,
                               DTYPES[dtype], dev)
        if "landscape" in families:
            found = landscape_metrics(cell_obj, task_obj, base, readout, hidden_size, seq_len,
                                      landscape or LandscapeConfig())
            columns.update({k: v.reshape(finite.shape) for k, v in found.items()})
        if "training" in families:
            result_t = train(cell_obj, task_obj, base, readout, hidden_size, seq_len,
                             training or TrainingConfig())
            for name in METRIC_COLUMNS["training"]:
                columns[name] = getattr(result_t, name).reshape(finite.shape)

    # A point whose state became non-finite in any run gets NaN for every measured metric;
    # only the analytic bound (and the growth factor computed from it) stays.
    for name, value in columns.items():
        if name in ("lipschitz_bound", "cost_growth_log10"):
            continue
        bad = ~finite.reshape(finite.shape + (1,) * (value.dim() - 2))
        fill = torch.zeros_like(value) if value.dtype == torch.bool else torch.full_like(
            value, math.nan)
        columns[name] = torch.where(bad, fill, value)
    return _frame(cell_obj, hidden_size, task_obj, seeds, combos, seq_len, finite, columns)


def _group_seeds(params: CellParams, seeds: list[int]) -> list[int]:
    """Seed of each parameter group (cells that expand points to M = 1 repeat them)."""
    per_group = params.groups // len(seeds)
    return [s for s in seeds for _ in range(per_group)]


def _initial_states(seeds: list[int], members: int, batch: int, size: int,
                    params: CellParams, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """x_0 ~ U(-1, 1)^D per trajectory, shared by the points of a seed (or the task's own)."""
    if fixed is not None:
        return fixed.to(params.device, params.dtype).expand(len(seeds), members, batch, size)
    draws = torch.stack([torch.rand(batch, size, generator=generator(s, "initial-state"),
                                    dtype=torch.float64) * 2 - 1 for s in seeds])
    return draws[:, None].expand(len(seeds), members, batch, size).to(params.device, params.dtype)


def _frame(cell: Cell, hidden_size: int, task, seeds, combos, seq_len, finite, columns
           ) -> pd.DataFrame:
    n_points = len(seeds) * len(combos)
    rows: dict[str, Any] = {
        "cell": [cell.name] * n_points,
        "hidden_size": [hidden_size] * n_points,
        "task": [task.name] * n_points,
        "seed": [s for s in seeds for _ in combos],
        "recurrent_scale": [c[0] for _ in seeds for c in combos],
        "input_scale": [c[1] for _ in seeds for c in combos],
        "seq_len": [seq_len] * n_points,
        "status": np.where(finite.reshape(-1).cpu().numpy(), "ok", "diverged").tolist(),
    }
    for family in METRIC_FAMILIES:
        for name in METRIC_COLUMNS[family]:
            if name == "memory_curve":
                if name in columns:
                    curve = columns[name].reshape(n_points, -1).cpu().numpy()
                    rows[name] = [list(map(float, c)) for c in curve]
                else:
                    rows[name] = [None] * n_points
            elif name in ("memory_horizon_capped", "diverged"):
                value = columns.get(name)
                rows[name] = (value.reshape(-1).cpu().numpy().astype(bool) if value is not None
                              else np.full(n_points, None))
            else:
                value = columns.get(name)
                rows[name] = (value.reshape(-1).double().cpu().numpy() if value is not None
                              else np.full(n_points, np.nan))
    for name, value in columns.items():
        if name not in rows:
            rows[name] = value.reshape(-1).double().cpu().numpy()
    return pd.DataFrame(rows)
