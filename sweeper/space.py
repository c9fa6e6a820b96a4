"""Search spaces: a validated sweep description, its expansion into trials and points, and
how big it is before anything runs.

Pure functions on plain mappings (what a YAML or JSON file parses to): no file, service or
machine access here. ``validate_space`` reports every problem at once, each with its key path,
the bad value and what is allowed; ``check_size`` refuses sweeps too large for the memory its
caller reports.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .axes import map_axes
from .errors import SweeperInputError, is_finite_number, is_integer
from .protocols import DynamicsConfig, LandscapeConfig, MemoryConfig, TrainingConfig
from .refine import Grid, SearchConfig, parse_search
from .regions import RegionRules
from .schema import METRIC_FAMILIES

AXES = ("recurrent_scale", "input_scale", "seed", "seq_len", "hidden_size")
VECTORIZABLE = ("recurrent_scale", "input_scale", "seed")
INTEGER_AXES = ("seed", "seq_len", "hidden_size")
GENERATORS = ("linspace", "logspace", "uniform")
TOP_KEYS = ("name", "task", "task_params", "cell", "hidden_size", "seq_len", "axes",
            "vectorize", "metrics", "resources", "regions", "map", "landscape", "training",
            "dynamics", "memory", "search")
#: Keys that set a metric family's protocol: their fields, validated, join each trial's
#: config (another protocol measures other numbers: other trial ids).
PROTOCOLS = {"dynamics": DynamicsConfig, "memory": MemoryConfig, "landscape": LandscapeConfig,
             "training": TrainingConfig}
#: Keys that change how results are read, where trials run or which points are chosen, not
#: what a point measures: left out of the sweep's identity (a refined sweep's points are the
#: grid sweep's points, ids included).
UNMEASURED_KEYS = ("regions", "map", "resources", "search")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# Hard limits, checked by validate_space: past them a value is a typo or a hostile file, never
# a sweep this code could finish, and it would crash or hang long before saying so.
MAX_HIDDEN_SIZE = 65_536  # one LSTM draw alone is then 4 H^2 float32 = 64 GiB
MAX_SEQ_LEN = 1_000_000
MAX_SEED = 2**32 - 1  # seeding.generator keeps seed mod 2^32: larger seeds repeat draws
MAX_AXIS_VALUES = 100_000  # per axis; checked before a generator expands
MAX_POINTS = 10**9
MAX_TRIALS = 10**6  # trials() holds them all in memory
INTEGER_RANGES = {"seed": (0, MAX_SEED), "seq_len": (1, MAX_SEQ_LEN),
                  "hidden_size": (1, MAX_HIDDEN_SIZE)}
# Soft limits, checked by check_size: larger sweeps run only with --allow-large.
LARGE_POINTS = 1_000_000
LARGE_TRIALS = 10_000  # each trial is a tracked run and a Parquet part


@dataclass(frozen=True)
class Trial:
    """One unit of scheduled work: fixed values of the non-vectorised axes and value lists of
    the vectorised ones, evaluated as one batch. ``trial_id`` hashes the whole config."""

    trial_id: str
    config: dict[str, Any]
    vectorized: dict[str, list]

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for v in self.vectorized.values()) if self.vectorized else 1

    def to_plain(self) -> dict[str, Any]:
        """The trial as plain JSON-able data (what a rounds file and a Tune config carry)."""
        return {"trial_id": self.trial_id, "config": self.config, "vectorized": self.vectorized}

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> Trial:
        """The trial that :meth:`to_plain` wrote. Raises KeyError or TypeError on other data."""
        return cls(data["trial_id"], dict(data["config"]), dict(data["vectorized"]))


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see :func:`validate_space`)."""

    name: str
    task: str
    task_params: dict[str, Any]
    cell: str
    axes: dict[str, list]  # every axis, values expanded (scalars become one-element lists)
    vectorize: tuple[str, ...]
    metrics: tuple[str, ...]
    resources: dict[str, float]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    rules: RegionRules = field(default_factory=RegionRules)
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> its fields
    map: tuple[str, str] = ("recurrent_scale", "input_scale")
    search: SearchConfig = field(default_factory=SearchConfig)

    @property
    def measured(self) -> dict[str, Any]:
        """The file's content without the unmeasured keys (what identifies the sweep)."""
        return measured_part(self.raw)

    @property
    def n_points(self) -> int:
        """Points of the whole grid (what a grid search evaluates)."""
        return math.prod(len(v) for v in self.axes.values())

    @property
    def planned_points(self) -> int:
        """The most points the sweep evaluates: the grid's, or a refinement's budget."""
        if self.search.refine and self.search.budget is not None:
            return min(self.n_points, self.search.budget)
        return self.n_points

    @property
    def grid(self) -> Grid:
        """The map-axis grid refinement chooses cells from (see :mod:`sweeper.refine`)."""
        return Grid.of(self.axes, self.map)

    def trials(self) -> list[Trial]:
        """The grid's trials in a stable order: the product of the non-vectorised axes."""
        outer = [a for a in self.axes if a not in self.vectorize]
        inner = {a: self.axes[a] for a in self.axes if a in self.vectorize}
        return [self.make_trial(dict(zip(outer, values, strict=True)), inner)
                for values in itertools.product(*(self.axes[a] for a in outer))]

    def make_trial(self, outer: Mapping[str, Any], inner: Mapping[str, list]) -> Trial:
        """The trial of these values of the non-vectorised axes (``outer``) and value lists
        of the vectorised ones (``inner``). A point's id depends on ``outer`` and its own
        values only, so the same point has the same id in every trial that holds it."""
        config = {"name": self.name, "task": self.task, "task_params": self.task_params,
                  "cell": self.cell, "metrics": list(self.metrics), **outer}
        for key in PROTOCOLS:  # a different protocol measures different numbers
            if self.protocols.get(key):
                config[key] = dict(self.protocols[key])
        inner = {a: list(v) for a, v in inner.items()}
        return Trial(stable_hash({**config, "vectorized": inner}), config, inner)

    def cell_trials(self, cells: Sequence[tuple[int, int, int]]) -> list[Trial]:
        """Trials that evaluate these grid cells (layer, i, j), each cell for every seed,
        batched as the space vectorises: a trial's points are a product of its value lists,
        so cells are grouped by everything but the first vectorised map axis."""
        grid = self.grid
        x, y = self.map
        varied = next((a for a in (x, y) if a in self.vectorize), None)
        groups: dict[tuple, list] = {}
        for cell in sorted(cells):
            values = grid.values(cell)
            key = tuple(sorted((a, v) for a, v in values.items() if a != varied))
            groups.setdefault(key, []).append(values.get(varied))
        result = []
        # An unmapped seed that is not vectorised is an outer axis: a trial per seed value.
        free = [a for a in grid.within if a not in self.vectorize]
        for key, varied_values in groups.items():
            fixed = dict(key)
            outer = {a: fixed[a] for a in self.axes
                     if a not in self.vectorize and a not in grid.within}
            inner = {}
            for axis in self.axes:
                if axis not in self.vectorize:
                    continue
                if axis == varied:
                    order = {v: k for k, v in enumerate(self.axes[axis])}
                    inner[axis] = sorted(set(varied_values), key=order.__getitem__)
                elif axis in grid.within:
                    inner[axis] = list(grid.within[axis])
                else:
                    inner[axis] = [fixed[axis]]
            for values in itertools.product(*(grid.within[a] for a in free)):
                result.append(self.make_trial({**outer, **dict(zip(free, values,
                                                                   strict=True))}, inner))
        return result


def measured_part(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A search-space mapping without its unmeasured keys: what identifies the sweep."""
    return {k: v for k, v in raw.items() if k not in UNMEASURED_KEYS}


def stable_hash(config: Mapping[str, Any], length: int = 16) -> str:
    """A hash of a JSON-able config that is the same in every process and Python version."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def point_id(trial: Trial, point: Mapping[str, Any]) -> str:
    """Hash of one point's full config (the trial's fixed values plus its own)."""
    return stable_hash({**trial.config, **point})


class _Errors:
    def __init__(self):
        self.items: list[str] = []

    def add(self, path: str, value: Any, allowed: str) -> None:
        """A value that breaks a rule, in the one shape of sweeper.errors."""
        self.items.append(f"{path} must be {allowed}, got {path}={_shown(value)}")

    def add_text(self, path: str, message: str) -> None:
        """A problem whose figure is not a value of the file (a count, a size)."""
        self.items.append(f"{path}: {message}")


def _shown(value: Any, limit: int = 200) -> str:
    """repr cut to ``limit`` characters: a hostile file's megabyte-long value would otherwise
    bury the other errors."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _generated(path: str, spec: Mapping, errors: _Errors) -> list | None:
    """Expand a {linspace | logspace | uniform: ...} axis, its size checked first."""
    keys = set(spec)
    kinds = [k for k in GENERATORS if k in keys]
    extra = sorted(keys - set(GENERATORS) - {"samples", "seed"}, key=str)
    if len(kinds) != 1 or extra:
        errors.add(path, dict(spec), f"a list or exactly one of {list(GENERATORS)}"
                   " (with 'samples' for uniform)")
        return None
    kind = kinds[0]
    args = spec[kind]
    if kind in ("linspace", "logspace"):
        if not (isinstance(args, list) and len(args) == 3 and is_finite_number(args[0])
                and is_finite_number(args[1]) and is_integer(args[2]) and args[2] >= 1):
            errors.add(f"{path}.{kind}", args, "[lo, hi, n] with an integer n >= 1")
            return None
        if args[2] > MAX_AXIS_VALUES:
            errors.add(f"{path}.{kind}", args, f"[lo, hi, n] with n <= {MAX_AXIS_VALUES} (an "
                       "axis has at most that many values)")
            return None
        if kind == "logspace" and (args[0] <= 0 or args[1] <= 0):
            errors.add(f"{path}.{kind}", args, "[lo, hi, n] with lo > 0 and hi > 0 (logspace)")
            return None
        fn = np.linspace if kind == "linspace" else np.geomspace
        # lo and hi near the float limit overflow to inf or nan, rejected below
        with np.errstate(over="ignore", invalid="ignore"):
            return [float(v) for v in fn(args[0], args[1], args[2])]
    samples, seed = spec.get("samples"), spec.get("seed", 0)
    if not (isinstance(args, list) and len(args) == 2 and all(map(is_finite_number, args))
            and args[0] < args[1]):
        errors.add(f"{path}.uniform", args, "[lo, hi] with lo < hi")
        return None
    if not (is_integer(samples) and 1 <= samples <= MAX_AXIS_VALUES):
        errors.add(f"{path}.samples", samples, f"an integer from 1 to {MAX_AXIS_VALUES}")
        return None
    if not (is_integer(seed) and seed >= 0):  # numpy would take None as "seed from the clock"
        errors.add(f"{path}.seed", seed, "an integer >= 0 (the draw of the uniform values)")
        return None
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore", invalid="ignore"):
        return sorted(float(v) for v in rng.uniform(args[0], args[1], samples))


def _expand_axis(name: str, spec: Any, errors: _Errors, path: str | None = None
                 ) -> list | None:
    path = path or f"axes.{name}"
    integer = name in INTEGER_AXES
    if integer and isinstance(spec, Mapping):
        errors.add(path, dict(spec), "a list of integers (not a generator)")
        return None
    if isinstance(spec, list):
        if not spec:
            errors.add(path, spec, "a non-empty list")
            return None
        if len(spec) > MAX_AXIS_VALUES:
            errors.add_text(path, f"a list of {len(spec)} values; an axis has at most "
                            f"{MAX_AXIS_VALUES}")
            return None
        values = spec
    elif isinstance(spec, Mapping):
        values = _generated(path, spec, errors)
        if values is None:
            return None
    else:
        values = [spec]
    out = []
    for i, value in enumerate(values):
        where = f"{path}[{i}]" if isinstance(spec, list) and path.startswith("axes.") else path
        if integer:
            low, high = INTEGER_RANGES[name]
            if not (is_integer(value) and low <= value <= high):
                why = " (the generator keeps seed mod 2^32)" if name == "seed" else ""
                errors.add(where, value, f"an integer from {low} to {high}{why}")
                return None
        elif not (is_finite_number(value) and value >= 0):
            errors.add(where, value, "a finite number >= 0")
            return None
        out.append(value)
    if len(set(out)) != len(out):
        errors.add(path, spec, "a list of distinct values (each point exactly once)")
        return None
    return out


def _protocol(key: str, raw: Any, errors: _Errors) -> dict[str, Any]:
    """A protocol key's fields (see PROTOCOLS), each checked against its field's kind (the
    type of its default: integer, finite number, flag, name, pair of numbers, or optional),
    then by the config class itself; {} when absent or invalid."""
    cls = PROTOCOLS[key]
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        errors.add(key, raw, f"a mapping of {cls.__name__} fields")
        return {}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known), key=str)
    if unknown:
        errors.add_text(key, f"unknown keys {unknown}; allowed: {list(known)}")
        return {}
    problems = len(errors.items)
    for name, value in raw.items():
        default, kind = known[name].default, str(known[name].type)
        if value is None and "None" in kind:
            continue
        if isinstance(default, bool):
            ok, allowed = isinstance(value, bool), "true or false"
        elif "int" in kind:  # bounded: a hostile 10**400 would pass the config classes
            ok, allowed = is_integer(value) and abs(value) <= 2**31, "an integer up to 2^31"
        elif isinstance(default, str):
            ok, allowed = isinstance(value, str), "a name"
        elif isinstance(default, tuple):
            ok = (isinstance(value, list | tuple) and len(value) == len(default)
                  and all(map(is_finite_number, value)))
            allowed = f"a list of {len(default)} finite numbers"
        else:
            ok, allowed = is_finite_number(value), "a finite number"
        if not ok:
            errors.add(f"{key}.{name}", value, allowed + (" or null" if "None" in kind
                                                            else ""))
    if len(errors.items) > problems:
        return {}
    try:
        _config(cls, raw)
    except (ValueError, TypeError, OverflowError) as exc:
        errors.add_text(key, str(exc))
        return {}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}


def protocol_configs(space: SearchSpace) -> dict[str, Any]:
    """The space's protocols as config objects, keyword arguments of
    :func:`sweeper.measure.measure` (``dynamics=``, ``memory=``, ``landscape=``,
    ``training=``; defaults where the file sets none)."""
    return {key: _config(cls, space.protocols.get(key, {})) for key, cls in PROTOCOLS.items()}


def _config(cls: type, values: Mapping[str, Any]) -> Any:
    """A protocol's config object from a file's fields (lists become the tuples it takes)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _check_counts(axes: Mapping[str, list], vectorize: list, errors: _Errors) -> None:
    """Points and trials from the axis lengths alone, before any trial is built."""
    points = math.prod(len(v) for v in axes.values())
    trials = points // math.prod(len(axes[a]) for a in vectorize if a in axes)
    if points > MAX_POINTS:
        errors.add_text("axes", f"{points} points (the product of the axis lengths); a sweep "
                        f"has at most {MAX_POINTS}")
    if trials > MAX_TRIALS:
        errors.add_text("vectorize", f"{trials} trials (the product of the lengths of the axes "
                        f"not vectorized); a sweep has at most {MAX_TRIALS}: vectorize more "
                        "axes or shorten them")


def from_record(raw: Any) -> SearchSpace:
    """The space of a sweep's record (``sweep.json``), which ``sweeper run`` wrote after
    validating it: checked without the cell registry or the task (see ``trusted`` in
    :func:`validate_space`)."""
    return validate_space(raw, trusted=True)


def _check_cell_and_task(cell: Any, task_name: Any, task_params: Mapping, errors) -> Any:
    """Check the cell against the registry and build the task (both import torch); the
    problems go to ``errors``. Returns the task, or None when it cannot be built."""
    from .cells import CELLS
    from .task import get_task

    if not (isinstance(cell, str) and cell in CELLS):
        errors.add("cell", cell, f"one of {sorted(CELLS)}")
    # A task rejects bad names and parameters with SweeperInputError (a ValueError); a value
    # of the wrong type may reach a comparison or an import first and raise the others.
    rejected = (ValueError, TypeError, OverflowError)
    try:
        get_task(task_name)
    except rejected as exc:
        errors.add_text("task", str(exc))
        return None
    try:
        return get_task(task_name, dict(task_params))
    except rejected as exc:
        message = str(exc)  # a parameter's rule names task_params.<name> itself
        if message.startswith("task_params."):
            errors.items.append(message)
        else:
            errors.add_text("task_params", message)
    return None


def validate_space(raw: Any, *, trusted: bool = False) -> SearchSpace:
    """Check a parsed search-space mapping and expand it.

    Args:
        raw: the mapping, as parsed from the file.
        trusted: a space this package validated and recorded itself (a sweep's
            ``sweep.json``): the cell and the task are taken as named, without loading the
            cell registry or building the task (torch, and a plug-in's module), so that the
            commands reading a finished sweep start at once. Everything else is checked as
            usual. See :func:`from_record`.

    Raises:
        SweeperInputError: listing every problem, one per line, each with its key path.
    """
    errors = _Errors()
    if not isinstance(raw, Mapping):
        raise SweeperInputError(f"search space: got {type(raw).__name__}; expected a mapping "
                                f"with keys {list(TOP_KEYS)}")
    for key in sorted(set(raw) - set(TOP_KEYS), key=str):
        errors.add_text(str(key), f"unknown key; allowed: {list(TOP_KEYS)}")
    name = raw.get("name")
    if not (isinstance(name, str) and NAME.match(name)):
        errors.add("name", name, "1 to 100 letters, digits, '_', '.' or '-'")
    cell = raw.get("cell")
    task_name = raw.get("task", "noise")
    task_params = raw.get("task_params") or {}
    if not isinstance(task_params, Mapping):
        errors.add("task_params", task_params, "a mapping")
        task_params = {}
    task = None
    if trusted:
        if not isinstance(cell, str):
            errors.add("cell", cell, "a cell name")
        if not isinstance(task_name, str):
            errors.add("task", task_name, "a task name or module.path:Class")
    else:
        task = _check_cell_and_task(cell, task_name, task_params, errors)
    axes_raw = raw.get("axes") or {}
    if not isinstance(axes_raw, Mapping):
        errors.add("axes", axes_raw, "a mapping of axis name to values")
        axes_raw = {}
    axes: dict[str, list] = {}
    for axis in axes_raw:
        if axis not in AXES:
            errors.add_text(f"axes.{axis}", f"unknown axis; allowed: {list(AXES)}")
            continue
        if axis in raw:
            errors.add_text(f"axes.{axis}", f"{axis} is also a top-level key; give it in "
                            "one place")
            continue
        values = _expand_axis(axis, axes_raw[axis], errors)
        if values is not None:
            axes[axis] = values
    for scalar, default in (("hidden_size", None), ("seq_len", 200)):
        if scalar in axes_raw:
            continue
        value = raw.get(scalar, default)
        if value is None:
            errors.add_text(scalar, "required (top level or under axes)")
            continue
        values = _expand_axis(scalar, [value], errors, path=scalar)
        if values is not None:
            axes[scalar] = values
    for axis, default in (("recurrent_scale", 1.0), ("input_scale", 1.0), ("seed", 0)):
        axes.setdefault(axis, [default])
    vectorize = raw.get("vectorize", [a for a in VECTORIZABLE if a in axes_raw])
    if not (isinstance(vectorize, list) and all(v in VECTORIZABLE for v in vectorize)
            and len(set(vectorize)) == len(vectorize)):
        errors.add("vectorize", vectorize, f"a list of distinct axes among {list(VECTORIZABLE)}")
        vectorize = []
    metrics = raw.get("metrics", ["lipschitz", "lyapunov", "memory"])
    if not (isinstance(metrics, list) and metrics and all(m in METRIC_FAMILIES
                                                          for m in metrics)):
        errors.add("metrics", metrics, f"a non-empty list among {list(METRIC_FAMILIES)}")
        metrics = []
    supervised = [m for m in metrics if m in ("landscape", "training")]
    if supervised and task is not None and task.output_size == 0:
        errors.add_text("metrics", f"{supervised} need a supervised task; task "
                        f"{task_name!r} has no loss (e.g. task: teacher)")
    resources = raw.get("resources") or {"cpu": 1, "gpu": 0}
    clean_resources: dict[str, float] = {}
    if not isinstance(resources, Mapping):
        errors.add("resources", resources, "a mapping {cpu: n, gpu: n}")
    else:
        for key, value in resources.items():
            if key not in ("cpu", "gpu"):
                errors.add_text(f"resources.{key}", "unknown key; allowed: ['cpu', 'gpu']")
            elif not (is_finite_number(value) and (value > 0 if key == "cpu" else value >= 0)):
                errors.add(f"resources.{key}", value, "a finite number " + (
                    "> 0" if key == "cpu" else ">= 0") + " (fractions allowed)")
            else:
                clean_resources[key] = float(value)
    protocols = {key: _protocol(key, raw.get(key), errors) for key in PROTOCOLS}
    rules = RegionRules()
    regions_raw = raw.get("regions") or {}
    if not isinstance(regions_raw, Mapping):
        errors.add("regions", regions_raw, "a mapping {epsilon, min_attractors, "
                   "horizon_fraction}")
    else:
        try:
            rules = RegionRules.from_mapping(regions_raw)
        except (ValueError, TypeError, OverflowError) as exc:
            errors.add_text("regions", str(exc))
    ordered = {a: axes[a] for a in AXES if a in axes}
    _check_counts(ordered, vectorize, errors)
    map_raw = raw.get("map") or {}
    chosen = ("recurrent_scale", "input_scale")
    if not (isinstance(map_raw, Mapping) and set(map_raw) <= {"x", "y"}):
        errors.add("map", map_raw, "a mapping {x: axis, y: axis}")
    else:
        try:
            chosen = map_axes(ordered, map_raw)
        except SweeperInputError as exc:
            errors.items.append(str(exc))  # it names map.x / map.y itself
    search, problems = parse_search(raw.get("search"))
    for path, value, allowed in problems:
        errors.add(path, value, allowed)
    if search.refine and metrics and "lyapunov" not in metrics:
        errors.add("search.method", "refine", f"grid when metrics lack 'lyapunov' (refinement "
                   f"follows lambda_1 and the regions it decides; metrics: {metrics})")
    if search.refine and search.budget is not None and len(ordered) == len(AXES):
        lattice = Grid.of(ordered, chosen).initial_points(search.initial)
        if search.budget < lattice:
            errors.add("search.budget", search.budget, f"an integer >= {lattice}, the points "
                       f"of the first round's lattice ({search.initial} values per map axis, "
                       "every seed; lower search.initial for a smaller one)")
    if errors.items:
        raise SweeperInputError("invalid search space:\n  " + "\n  ".join(errors.items))
    return SearchSpace(name, task_name, dict(task_params), cell, ordered, tuple(vectorize),
                       tuple(metrics), clean_resources, dict(raw), rules=rules, map=chosen,
                       search=search,
                       protocols={k: v for k, v in protocols.items() if v})


@dataclass(frozen=True)
class SizeEstimate:
    """How big a sweep is, from its validated space alone (nothing is run or built).

    Attributes:
        points, trials: totals over the sweep.
        points_per_trial: K, the points one trial measures as one batch.
        trial_bytes: estimated peak memory of the largest trial (see :func:`trial_bytes`).
    """

    points: int
    trials: int
    points_per_trial: int
    trial_bytes: int


#: Memory of a worker before it measures anything: the interpreter, torch, numpy and pandas.
PROCESS_BYTES = 2**29
#: Bytes per number where trials compute (measure's default dtype, float32); float64 is 8.
COMPUTE_BYTES = 4


def trial_bytes(cell: Any, task: Any, hidden_size: int, seq_len: int, points: int,
                seeds: int, metrics: Sequence[str], landscape: LandscapeConfig | None = None,
                *, dynamics: DynamicsConfig | None = None, memory: MemoryConfig | None = None,
                training: TrainingConfig | None = None) -> int:
    """Order-of-magnitude peak memory of one trial of ``points`` points over ``seeds`` base
    draws, measured in float32 with the default protocols (what a sweep's trials run).

    With K = points, G = seeds, D the state size, F = gates * H, I and O the task's input and
    output sizes, n = F (H + I + 2) + O (H + 1) parameters per point, T = burn_in + seq_len,
    b = 4 bytes (float32) and 8 for float64, the largest allocations are::

        base      = 512 MiB (process) + G n (b + 8) (draws; K n for cells that project each
                    point's weights) + G T I 8 (task inputs)
        dynamics  = T K k 8 (the log growth of every step) + 2 G T F b (input projections)
                    + seq_len K 9 (horizon) + (8 (1 + k) F + 2 lanczos_steps D) K b
        memory    = max(capacity, attractors), over a chunk of c points (MemoryConfig
                    .chunk_bytes of stored states) of a washout + train + test rollout:
                    capacity = c (2 L D b + 2 L (D+1) 8 + 2 (D+1)^2 8 + 2 (D+1) Kmax 8
                    + 4 test Kmax 8) + G (L Kmax 8 + (W + L) F b), L = train + test,
                    Kmax = 2 D delays; attractors = K inits^2 D 16 (pairwise distances)
        rollout   = B seq_len (F + 2 D + O) b per point: a loss keeps every step's input
                    projection, state (twice: the list and its stack) and output
        backprop  = B seq_len (6 F + 4 D) b per point: the same plus each step's saved
                    activations
        landscape = 4 K n b + max(gradient, slices): gradient = K backprop(B_l) (4 times
                    that through the Hessian's double backward) + its Lanczos basis
                    2 (h + 1) K n b; slices = K P (n b + rollout(B_l))
        training  = 5 K n b (Adam) + K backprop(32) + K rollout(256) (validation)

    and the families run one after another, so the peak is base + the largest family. It is
    meant to tell 100 MiB from 100 GiB, not to budget a machine to the last gigabyte.

    Args:
        cell: a Cell; task: a Task (its input and output sizes).
        hidden_size, seq_len, points, seeds: H, N, K, G (G <= K).
        metrics: the families measured. landscape, dynamics, memory, training: the
            families' protocols (defaults: their config classes' defaults).

    Returns:
        Bytes, an int.
    """
    b, f64 = COMPUTE_BYTES, 8
    k_points, groups = points, seeds
    state, gates = cell.state_size(hidden_size), cell.gates * hidden_size
    inputs, outputs = task.input_size, task.output_size
    per_point = gates * (hidden_size + inputs + 2) + outputs * (hidden_size + 1)
    dyn = dynamics or DynamicsConfig()
    steps = dyn.burn_in + seq_len
    from .cells import Cell

    projected = type(cell).prepare is not Cell.prepare  # one weight set per point
    base = (PROCESS_BYTES + (k_points if projected else groups) * per_point * (b + f64)
            + groups * steps * inputs * f64)

    def rollout(batch: int) -> int:
        return batch * seq_len * (gates + 2 * state + outputs) * b

    def backprop(batch: int) -> int:
        return batch * seq_len * (6 * gates + 4 * state) * b

    family = {}
    if {"lipschitz", "lyapunov", "memory"} & set(metrics):
        batch, k = dyn.n_trajectories, min(dyn.lyapunov_k, state)
        family["dynamics"] = batch * (
            steps * k_points * k * f64 + 2 * groups * steps * gates * b
            + seq_len * k_points * (f64 + 1)
            + (8 * (1 + k) * gates + 2 * dyn.lanczos_steps * state) * k_points * b)
    if "memory" in metrics:
        mem = memory or MemoryConfig()
        length, delays = mem.train + mem.test, mem.delays(state)
        chunk = min(k_points, max(1, mem.chunk_bytes // (length * (state + 1) * f64)))
        capacity = (chunk * (2 * length * state * b + 2 * length * (state + 1) * f64
                             + 2 * (state + 1) ** 2 * f64 + 2 * (state + 1) * delays * f64
                             + 4 * mem.test * delays * f64)
                    + min(groups, chunk) * (length * delays * f64
                                            + (mem.washout_steps(state) + length) * gates * b))
        attractors = k_points * mem.attractor_inits**2 * state * 2 * f64
        family["memory"] = max(capacity, attractors)
    if "landscape" in metrics:
        land = landscape or LandscapeConfig()
        gradient = k_points * backprop(land.batch_size)
        if land.hessian_steps:
            gradient = 4 * gradient + 2 * (land.hessian_steps + 1) * k_points * per_point * b
        slices = k_points * land.points * (per_point * b + rollout(land.batch_size))
        family["landscape"] = 4 * k_points * per_point * b + max(gradient, slices)
    if "training" in metrics:
        train = training or TrainingConfig()
        family["training"] = k_points * (5 * per_point * b + backprop(train.batch_size)
                                         + rollout(train.val_batch_size))
    return base + max(family.values(), default=0)


def estimate(space: SearchSpace) -> SizeEstimate:
    """Points, trials and the peak memory of the largest trial of ``space``, from its axis
    lengths (no trial is built; safe for any space validate_space accepted).

    Example:
        >>> size = estimate(validate_space({"name": "s", "cell": "rnn_tanh",
        ...                                 "hidden_size": 16, "axes": {"seed": [0, 1]}}))
        >>> (size.points, size.trials, size.points_per_trial)
        (2, 1, 2)
    """
    lengths = {axis: len(values) for axis, values in space.axes.items()}
    points = math.prod(lengths.values())
    per_trial = math.prod(lengths[a] for a in space.vectorize)
    seeds = lengths["seed"] if "seed" in space.vectorize else 1
    # Memory grows with H and N: the trial with the largest of each bounds every other.
    from .cells import CELLS
    from .task import get_task

    peak = trial_bytes(CELLS[space.cell], get_task(space.task, space.task_params),
                       max(space.axes["hidden_size"]), max(space.axes["seq_len"]), per_trial,
                       seeds, space.metrics, **protocol_configs(space))
    return SizeEstimate(space.planned_points, points // per_trial, per_trial, peak)


def _size_text(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def check_size(space: SearchSpace, memory_bytes: int, *, allow_large: bool = False
               ) -> SizeEstimate:
    """Refuse a sweep whose trials cannot fit in ``memory_bytes`` or that has more than
    LARGE_POINTS points or LARGE_TRIALS trials, unless ``allow_large``.

    Pure: the caller passes the memory a trial may use (the CLI: the machine's, from
    ``sweeper.adapters.space_file.machine_memory_bytes``). Trials running side by side each
    need their own; Ray schedules them by the space's ``resources``, not by memory.

    Returns:
        The :class:`SizeEstimate` (also when ``allow_large`` lets a large sweep through).

    Raises:
        SweeperInputError: naming each figure, its limit and ``--allow-large``.
    """
    if not (is_integer(memory_bytes) and memory_bytes >= 1):
        raise SweeperInputError("memory_bytes must be an integer >= 1, got "
                                f"memory_bytes={memory_bytes!r}")
    size = estimate(space)
    if allow_large:
        return size
    errors = _Errors()
    if size.points > LARGE_POINTS:
        errors.add_text("points", f"the sweep has {size.points} points; the limit is "
                        f"{LARGE_POINTS}")
    if size.trials > LARGE_TRIALS:
        errors.add_text("trials", f"the sweep has {size.trials} trials (each a tracked run "
                        f"and a Parquet part); the limit is {LARGE_TRIALS}")
    if size.trial_bytes > memory_bytes:
        smaller = (" (vectorize fewer axes for smaller trials)" if size.points_per_trial > 1
                   else "")
        points = f"{size.points_per_trial} point{'s' if size.points_per_trial > 1 else ''}"
        errors.add_text("memory", f"one trial ({points}, hidden_size "
                        f"{max(space.axes['hidden_size'])}, seq_len "
                        f"{max(space.axes['seq_len'])}) needs about "
                        f"{_size_text(size.trial_bytes)}; this machine has "
                        f"{_size_text(memory_bytes)}{smaller}")
    if errors.items:
        raise SweeperInputError("search space too large to start:\n  "
                                + "\n  ".join(errors.items)
                                + "\n  pass --allow-large to start it anyway")
    return size
