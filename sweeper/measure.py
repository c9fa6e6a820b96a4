"""``measure``: the notebook entry point. Validates once, builds the batch, runs the trajectory
pass once for what the requested families need, lets each family fill its columns, and returns
one DataFrame row per point (columns and types from :mod:`sweeper.schema`)."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import errors
from .cells import Cell, get_cell
from .checkpoint import Anchor, scaled_all
from .dynamics import DynamicsConfig, PassNeeds, run_dynamics
from .errors import SweeperInputError, require
from .families import FAMILIES, METRIC_FAMILIES, Batch, Family, Protocols
from .landscape_metrics import LandscapeConfig
from .memory import MemoryConfig
from .params import CellParams
from .regions import RegionRules, classify
from .schema import POINT_COLUMNS, metric_columns
from .seeding import generator
from .status import DIVERGED, merge
from .task import get_task
from .training import TrainingConfig

#: Metric columns of each family: all of them are in measure()'s frame by default, those of
#: the requested families with ``columns="requested"``.
METRIC_COLUMNS = {name: [c.name for c in metric_columns(name)] for name in METRIC_FAMILIES}

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: measure()'s choice of metric columns: every family's (NaN where not requested), or the
#: requested families' only.
COLUMN_CHOICES = ("all", "requested")
#: The families the region rules read: lyapunov_max, and attractor_count, chaotic_attractors
#: and memory_horizon (sweeper.regions.classify).
REGION_FAMILIES = ("lyapunov", "memory")


def _families(metrics: Any) -> list[Family]:
    allowed = f"a non-empty list among {list(METRIC_FAMILIES)}"
    names = [metrics] if isinstance(metrics, str) else metrics
    try:
        names = list(names)
    except TypeError:
        raise errors.invalid("metrics", metrics, allowed) from None
    if not names or any(not isinstance(m, str) or m not in FAMILIES for m in names):
        raise errors.invalid("metrics", metrics, allowed)
    return [FAMILIES[m] for m in METRIC_FAMILIES if m in names]


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


@dataclass(frozen=True)
class Request:
    """A validated measure() call: the points are seeds x (recurrent_scale, input_scale)."""

    cell: Cell
    hidden_size: int
    task: Any
    seeds: list[int]
    combos: list[tuple[float, float]]
    seq_len: int
    families: list[Family]
    device: torch.device
    dtype: torch.dtype
    protocols: Protocols
    anchor: Anchor | None = None  # trained weights (measure's ``weights``)
    columns: str = "all"  # one of COLUMN_CHOICES
    rules: RegionRules | None = None  # classify the points (measure's ``regions``)

    @property
    def needs(self) -> PassNeeds | None:
        """The union of what the families need from the trajectory pass."""
        found = [f.needs for f in self.families if f.needs is not None]
        if not found:
            return None
        union = PassNeeds(tangents=False, jacobian_samples=False)
        for needs in found:
            union = union | needs
        return union


def _region_rules(regions: Any, families: list[Family]) -> RegionRules | None:
    """The rules that ``regions`` asks for (None: no region column), once the families the
    rules read are among those requested."""
    if regions is False:
        return None
    if regions is not True and not isinstance(regions, RegionRules):
        raise errors.invalid("regions", regions, "True, False or a sweeper.regions.RegionRules")
    requested = [f.name for f in families]
    missing = [name for name in REGION_FAMILIES if name not in requested]
    require(not missing, f"regions needs the metric families {list(REGION_FAMILIES)} (the "
                         "region rules read lyapunov_max, attractor_count, chaotic_attractors "
                         f"and memory_horizon), got metrics={requested}: add {missing}")
    return RegionRules() if regions is True else regions


def validate(cell, hidden_size, task, task_params, recurrent_scale, input_scale, seed, seq_len,
             metrics, device, dtype, dynamics, memory, landscape, training,
             weights: Mapping | None = None, *, columns: str = "all",
             regions: bool | RegionRules = False) -> Request:
    """Every argument of measure() checked, with one message shape (sweeper.errors)."""
    cell_obj = get_cell(cell)
    hidden_size = errors.integer("hidden_size", hidden_size)
    seq_len = errors.integer("seq_len", seq_len)
    rs = errors.value_list("recurrent_scale", recurrent_scale)
    ins = errors.value_list("input_scale", input_scale)
    seeds = errors.value_list("seed", seed, integer=True)
    families = _families(metrics)
    errors.choice("dtype", dtype, list(DTYPES))
    errors.choice("columns", columns, COLUMN_CHOICES)
    rules = _region_rules(regions, families)
    task_obj = get_task(task, task_params)
    supervised = [f.name for f in families if f.supervised]
    require(not supervised or task_obj.output_size > 0,
            f"metrics {supervised} need a supervised task; task {task_obj.name!r} has no loss "
            "(try task='teacher')")
    if supervised:  # the dynamics metrics only drive the network; any length will do there
        task_obj.check_seq_len(seq_len)
    protocols = Protocols(dynamics or DynamicsConfig(), memory or MemoryConfig(),
                          landscape or LandscapeConfig(), training or TrainingConfig())
    anchor = None
    if weights is not None:
        from .checkpoint import load

        anchor = load(weights, cell_obj.name, hidden_size)
        require(anchor.input_size == task_obj.input_size,
                f"{anchor.source} takes {anchor.input_size} inputs (weight_ih), but task "
                f"{task_obj.name!r} gives {task_obj.input_size}")
        require(task_obj.anchor(cell_obj.name, hidden_size) is None,
                f"task {task_obj.name!r} brings its own weights theta*; weights= cannot "
                "replace them")
    return Request(cell_obj, hidden_size, task_obj, seeds, list(itertools.product(rs, ins)),
                   seq_len, families, resolve_device(device), DTYPES[dtype], protocols, anchor,
                   columns, rules)


def measure(cell: str | Cell, hidden_size: int, *, task: Any = "noise",
            task_params: dict | None = None, recurrent_scale: Sequence[float] = (1.0,),
            input_scale: Sequence[float] = (1.0,), seed: Sequence[int] = (0,),
            seq_len: int = 200, metrics: Sequence[str] = ("lipschitz", "lyapunov", "memory"),
            device: str | torch.device | None = None, dtype: str = "float32",
            dynamics: DynamicsConfig | None = None, memory: MemoryConfig | None = None,
            landscape: LandscapeConfig | None = None, training: TrainingConfig | None = None,
            weights: Mapping[str, Any] | None = None, columns: str = "all",
            regions: bool | RegionRules = False) -> pd.DataFrame:
    """Measure every point of the product seed x recurrent_scale x input_scale.

    Points of one seed share a base draw and run as one batch; all seeds run together.

    Args:
        cell: a name from ``sweeper.CELLS`` (or a Cell object).
        hidden_size: H > 0.
        task, task_params: a task name (``sweeper.task.task_names()``) or "module:Class",
            and its parameters.
        recurrent_scale, input_scale: non-negative factors on the recurrent / input weights.
        seed: base draws (non-negative integers).
        seq_len: N > 0, the sequence length (the trajectory runs burn_in + N steps).
        metrics: families among "lipschitz", "lyapunov", "memory", "landscape", "training"
            (the last two need a supervised task: teacher, sine_generator, ...).
        device: "cpu", "cuda", ... (None: CUDA when available). dtype: "float32" or "float64".
        dynamics, memory, landscape, training: protocol settings (DynamicsConfig,
            MemoryConfig, LandscapeConfig, TrainingConfig).
        weights: a trained network instead of random draws, ``{"checkpoint": PATH,
            "scale": "recurrent" | "all"}`` (:mod:`sweeper.checkpoint`): a torch.nn RNN/GRU/
            LSTM state_dict for cell rnn_tanh/gru/lstm; every seed then uses its weights.
        columns: "all" (default): every metric column of ``sweeper.schema``, NaN (None for
            bool and list columns) for the families not requested; "requested": only the
            requested families' columns.
        regions: True adds the column ``region`` after ``status`` (forgetful, memory, chaotic
            or unclassified, by the default :class:`sweeper.regions.RegionRules`); a
            RegionRules classifies by its thresholds. Needs the lyapunov and memory families.

    Returns:
        One row per point: cell, hidden_size, task, seed, recurrent_scale, input_scale,
        seq_len, status (``sweeper.status``), region (with ``regions``), and the metric
        columns that ``columns`` selects, then the optional columns computed
        (``lyapunov_2``, ... with ``DynamicsConfig(lyapunov_k=k)``).

    Raises:
        SweeperInputError: bad names or values; the message names the parameter. Also
            ``regions`` without the lyapunov or the memory family among ``metrics``.

    Example:
        >>> df = measure("rnn_tanh", 32, recurrent_scale=[0.5, 2.0], seq_len=50)
        >>> list(df.status)
        ['ok', 'ok']
        >>> df = measure("rnn_tanh", 32, recurrent_scale=[0.5, 3.0], seq_len=50,
        ...              metrics=("lyapunov", "memory"), columns="requested", regions=True)
        >>> list(df.region)
        ['forgetful', 'chaotic']
    """
    request = validate(cell, hidden_size, task, task_params, recurrent_scale, input_scale, seed,
                       seq_len, metrics, device, dtype, dynamics, memory, landscape, training,
                       weights, columns=columns, regions=regions)
    with flushing_subnormals():
        batch = _batch(request)
        with torch.no_grad():
            if request.needs is not None:
                batch.dynamics = _trajectory_pass(batch, request.needs)
            outcomes = {f.name: f.compute(batch) for f in request.families if not f.supervised}
        outcomes.update({f.name: f.compute(batch) for f in request.families if f.supervised})
    failures: dict[str, np.ndarray] = {}
    for family in request.families:
        failed = outcomes[family.name].failed.reshape(-1).cpu().numpy()
        failures[family.failure] = failures.get(family.failure, False) | failed
    status = merge(failures, batch.points)
    values = _mask_diverged(request.families, outcomes, status == DIVERGED)
    frame = _frame(request, status, values)
    if request.rules is not None:
        frame.insert(frame.columns.get_loc("status") + 1, "region",
                     classify(frame, request.rules))
    return frame


def subnormals_flushed() -> bool:
    """Whether this thread's CPU flushes subnormal floats to zero (a probe, as torch offers no
    getter for the flag)."""
    return torch.tensor(1e-39, dtype=torch.float32).mul(1.0).item() == 0.0


@contextlib.contextmanager
def flushing_subnormals():
    """Flush subnormal floats to zero on this thread's CPU for the duration, then restore.

    A state that settles on zero (a forgetful point, zero input) passes through subnormal
    values, on which x86 arithmetic runs 10-100x slower; flushed, they are exactly 0, which
    changes no metric (their size is below 1e-38). Only the calling thread's flag is set:
    torch's worker threads keep theirs, so one thread gains the most.
    """
    if subnormals_flushed() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _batch(request: Request) -> Batch:
    """The parameters of every point, prepared once, and the task's inputs."""
    groups = len(request.seeds)
    scale_r = torch.tensor([[c[0] for c in request.combos]] * groups, dtype=torch.float64)
    scale_i = torch.tensor([[c[1] for c in request.combos]] * groups, dtype=torch.float64)
    task, cell, trained = request.task, request.cell, request.anchor
    anchor = trained.weights if trained else task.anchor(cell.name, request.hidden_size)
    base = build_params(cell, request.hidden_size, task.input_size, request.seeds, scale_r,
                        scale_i, request.dtype, request.device, anchor=anchor)
    if trained is not None and trained.scale == "all":
        base = scaled_all(base)
    params = cell.prepare(base)
    steps = request.protocols.dynamics.burn_in + request.seq_len
    trajectories = request.protocols.dynamics.n_trajectories
    inputs = torch.stack([task.inputs(s, trajectories, steps)
                          for s in params.group_seeds]).to(request.device)
    return Batch(cell, task, request.hidden_size, request.seq_len, request.seeds, base, params,
                 inputs, request.protocols)


def _trajectory_pass(batch: Batch, needs: PassNeeds):
    params, config = batch.params, batch.protocols.dynamics
    x0 = _initial_states(params.group_seeds, params.members, config.n_trajectories,
                         batch.state_size, params, batch.task.initial_state(batch.state_size))
    return run_dynamics(batch.cell, params, batch.inputs, x0, batch.seq_len, config,
                        params.group_seeds, needs)


def _initial_states(seeds: list[int], members: int, batch: int, size: int,
                    params: CellParams, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """x_0 ~ U(-1, 1)^D per trajectory, shared by the points of a seed (or the task's own)."""
    if fixed is not None:
        return fixed.to(params.device, params.dtype).expand(len(seeds), members, batch, size)
    draws = torch.stack([torch.rand(batch, size, generator=generator(s, "initial-state"),
                                    dtype=torch.float64) * 2 - 1 for s in seeds])
    return draws[:, None].expand(len(seeds), members, batch, size).to(params.device, params.dtype)


def _mask_diverged(families: list[Family], outcomes: dict, diverged: np.ndarray
                   ) -> dict[str, torch.Tensor]:
    """A point whose state diverged gets NaN (False for booleans) in every measured column but
    the analytic ones its family keeps."""
    columns = {}
    for family in families:
        for name, value in outcomes[family.name].columns.items():
            if name not in family.kept_on_divergence and diverged.any():
                bad = torch.as_tensor(diverged, device=value.device)
                bad = bad.reshape(bad.shape + (1,) * (value.dim() - 1))
                fill = (torch.zeros_like(value) if value.dtype == torch.bool
                        else torch.full_like(value, math.nan))
                value = torch.where(bad, fill, value)
            columns[name] = value
    return columns


def _frame(request: Request, status: np.ndarray, columns: dict[str, torch.Tensor]
           ) -> pd.DataFrame:
    """One row per point: the point columns, then the metric columns of the schema (of every
    family, NaN or None where not computed, or of the requested ones), then the optional
    columns that were computed."""
    seeds, combos = request.seeds, request.combos
    n_points = len(seeds) * len(combos)
    identity = {
        "cell": [request.cell.name] * n_points,
        "hidden_size": [request.hidden_size] * n_points,
        "task": [request.task.name] * n_points,
        "seed": [s for s in seeds for _ in combos],
        "recurrent_scale": [c[0] for _ in seeds for c in combos],
        "input_scale": [c[1] for _ in seeds for c in combos],
        "seq_len": [request.seq_len] * n_points,
        "status": status.tolist(),
    }
    rows: dict[str, Any] = {c.name: identity[c.name] for c in POINT_COLUMNS}
    shown = (metric_columns() if request.columns == "all" else
             [c for f in request.families for c in metric_columns(f.name)])
    for c in shown:
        rows[c.name] = _values(c.dtype, columns.get(c.name), n_points)
    for name, value in columns.items():
        if name not in rows:
            rows[name] = _values("double", value, n_points)
    return pd.DataFrame(rows)


def _values(dtype: str, value: torch.Tensor | None, n_points: int):
    if dtype == "list<double>":
        if value is None:
            return [None] * n_points
        return [list(map(float, c)) for c in value.reshape(n_points, -1).cpu().numpy()]
    if dtype == "bool":
        return (np.full(n_points, None) if value is None
                else value.reshape(-1).cpu().numpy().astype(bool))
    return (np.full(n_points, np.nan) if value is None
            else value.reshape(-1).double().cpu().numpy())
