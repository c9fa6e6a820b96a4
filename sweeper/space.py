"""Search spaces: a validated sweep description, its expansion into trials and points, and
how big it is before anything runs.

Pure functions on plain mappings (what a YAML or JSON file parses to): no file, service or
machine access here. ``validate_space`` reports every problem at once, each with its key path,
the bad value and what is allowed; ``check_size`` refuses sweeps too large for the memory its
caller reports.

Each section of a file has a validator that returns what it read and its problems; the rules
themselves live with what they describe: a protocol's fields with its config class
(:mod:`sweeper.protocols`), a task's parameters with the task, a cell's name and sizes in
:mod:`sweeper.cell_shapes`, the region thresholds with :class:`~sweeper.regions.RegionRules`
and ``search:`` in :func:`sweeper.refine.parse_search`. None of them needs torch for the
built-in cells and tasks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .axes import AXES, map_axes
from .cell_shapes import CELL_SHAPES, CellShape, cell_shape
from .errors import SweeperInputError, invalid, is_finite_number, is_integer
from .protocols import (
    DynamicsConfig,
    LandscapeConfig,
    MemoryConfig,
    TrainingConfig,
    from_fields,
    mapping_problems,
)
from .refine import Grid, SearchConfig, parse_search
from .regions import RegionRules
from .schema import METRIC_FAMILIES, SUPERVISED_FAMILIES
from .task import Task, get_task

VECTORIZABLE = ("recurrent_scale", "input_scale", "seed")
#: The axes a file may give as a top-level key instead of under ``axes``, with their value
#: when it gives neither (None: required).
SCALAR_AXES = {"hidden_size": None, "seq_len": 200}
#: The value of each other axis when the file does not give it.
AXIS_DEFAULTS = {"recurrent_scale": 1.0, "input_scale": 1.0, "seed": 0}
DEFAULT_METRICS = ("lipschitz", "lyapunov", "memory")
DEFAULT_RESOURCES = {"cpu": 1, "gpu": 0}
GENERATORS = ("linspace", "logspace", "uniform")
TOP_KEYS = ("name", "task", "task_params", "cell", "weights", "hidden_size", "seq_len", "axes",
            "vectorize", "metrics", "resources", "regions", "map", "landscape", "training",
            "dynamics", "memory", "search")
#: Keys that set a metric family's protocol: their fields, validated by the config class,
#: join each trial's config (another protocol measures other numbers: other trial ids).
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
#: The axes whose values are integers, and their range.
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
    #: A trained network instead of random draws: {checkpoint (absolute), scale, sha256}.
    weights: dict[str, str] | None = None

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
        if self.weights:  # the file's content, not where it lies, identifies the points
            config["weights"] = {"scale": self.weights["scale"],
                                 "sha256": self.weights["sha256"]}
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


def _invalid(path: str, value: Any, allowed: str) -> str:
    """The problem of a value that breaks a rule, in the one shape of sweeper.errors."""
    return str(invalid(path, value, allowed))


def _cut(problem: str, limit: int = 400) -> str:
    """A problem cut to ``limit`` characters: a hostile file's megabyte-long value would
    otherwise bury the other problems."""
    return problem if len(problem) <= limit else (f"{problem[:limit]}... ({len(problem)} "
                                                  "characters)")


def _generated(path: str, spec: Mapping) -> tuple[list | None, list[str]]:
    """Expand a {linspace | logspace | uniform: ...} axis, its size checked first."""
    keys = set(spec)
    kinds = [k for k in GENERATORS if k in keys]
    extra = sorted(keys - set(GENERATORS) - {"samples", "seed"}, key=str)
    if len(kinds) != 1 or extra:
        return None, [_invalid(path, dict(spec), f"a list or exactly one of {list(GENERATORS)}"
                               " (with 'samples' for uniform)")]
    kind = kinds[0]
    args = spec[kind]
    if kind in ("linspace", "logspace"):
        if not (isinstance(args, list) and len(args) == 3 and is_finite_number(args[0])
                and is_finite_number(args[1]) and is_integer(args[2]) and args[2] >= 1):
            return None, [_invalid(f"{path}.{kind}", args, "[lo, hi, n] with an integer n >= 1")]
        if args[2] > MAX_AXIS_VALUES:
            return None, [_invalid(f"{path}.{kind}", args, f"[lo, hi, n] with n <= "
                                   f"{MAX_AXIS_VALUES} (an axis has at most that many values)")]
        if kind == "logspace" and (args[0] <= 0 or args[1] <= 0):
            return None, [_invalid(f"{path}.{kind}", args, "[lo, hi, n] with lo > 0 and hi > 0 "
                                   "(logspace)")]
        fn = np.linspace if kind == "linspace" else np.geomspace
        # lo and hi near the float limit overflow to inf or nan, rejected by the caller
        with np.errstate(over="ignore", invalid="ignore"):
            return [float(v) for v in fn(args[0], args[1], args[2])], []
    samples, seed = spec.get("samples"), spec.get("seed", 0)
    if not (isinstance(args, list) and len(args) == 2 and all(map(is_finite_number, args))
            and args[0] < args[1]):
        return None, [_invalid(f"{path}.uniform", args, "[lo, hi] with lo < hi")]
    if not (is_integer(samples) and 1 <= samples <= MAX_AXIS_VALUES):
        return None, [_invalid(f"{path}.samples", samples, f"an integer from 1 to "
                               f"{MAX_AXIS_VALUES}")]
    if not (is_integer(seed) and seed >= 0):  # numpy would take None as "seed from the clock"
        return None, [_invalid(f"{path}.seed", seed, "an integer >= 0 (the draw of the uniform "
                               "values)")]
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore", invalid="ignore"):
        return sorted(float(v) for v in rng.uniform(args[0], args[1], samples)), []


def _axis_values(name: str, spec: Any, path: str) -> tuple[list | None, list[str]]:
    """One axis's values (a list, a generator or a scalar), each checked against the axis's
    rule; (None, its problem) at the first one broken."""
    integer = name in INTEGER_RANGES
    if integer and isinstance(spec, Mapping):
        return None, [_invalid(path, dict(spec), "a list of integers (not a generator)")]
    if isinstance(spec, list):
        if not spec:
            return None, [_invalid(path, spec, "a non-empty list")]
        if len(spec) > MAX_AXIS_VALUES:
            return None, [f"{path}: a list of {len(spec)} values; an axis has at most "
                          f"{MAX_AXIS_VALUES}"]
        values = spec
    elif isinstance(spec, Mapping):
        values, problems = _generated(path, spec)
        if values is None:
            return None, problems
    else:
        values = [spec]
    for i, value in enumerate(values):
        where = f"{path}[{i}]" if isinstance(spec, list) and path.startswith("axes.") else path
        if integer:
            low, high = INTEGER_RANGES[name]
            if not (is_integer(value) and low <= value <= high):
                why = " (the generator keeps seed mod 2^32)" if name == "seed" else ""
                return None, [_invalid(where, value, f"an integer from {low} to {high}{why}")]
        elif not (is_finite_number(value) and value >= 0):
            return None, [_invalid(where, value, "a finite number >= 0")]
    if len(set(values)) != len(values):
        return None, [_invalid(path, spec, "a list of distinct values (each point exactly "
                               "once)")]
    return list(values), []


def _axes(raw: Mapping) -> tuple[dict[str, list], list[str]]:
    """Every axis's values, in the order of AXES: from ``axes:``, from the top-level key of an
    axis that may have one (SCALAR_AXES), or the axis's default. An axis whose values are
    invalid is left out (a scalar axis) or takes its default (the others), so that the
    checks that need the axes still run."""
    given = raw.get("axes") or {}
    problems = []
    if not isinstance(given, Mapping):
        problems.append(_invalid("axes", given, "a mapping of axis name to values"))
        given = {}
    axes: dict[str, list] = {}
    for axis, spec in given.items():
        if axis not in AXES:
            problems.append(f"axes.{axis}: unknown axis; allowed: {list(AXES)}")
        elif axis in raw:
            problems.append(f"axes.{axis}: {axis} is also a top-level key; give it in one place")
        else:
            values, found = _axis_values(axis, spec, f"axes.{axis}")
            problems += found
            if values is not None:
                axes[axis] = values
    for axis, default in SCALAR_AXES.items():
        if axis in given:
            continue
        value = raw.get(axis, default)
        if value is None:
            problems.append(f"{axis}: required (top level or under axes)")
            continue
        values, found = _axis_values(axis, [value], axis)
        problems += found
        if values is not None:
            axes[axis] = values
    for axis, default in AXIS_DEFAULTS.items():
        axes.setdefault(axis, [default])
    return {a: axes[a] for a in AXES if a in axes}, problems


def _cell(cell: Any, *, trusted: bool) -> list[str]:
    """The cell's name, checked to name a cell (not in a ``trusted`` space): a built-in one
    without torch, a plug-in by loading it."""
    if not isinstance(cell, str):
        return [_invalid("cell", cell, f"one of {sorted(CELL_SHAPES)}, a plug-in cell's name "
                         "or module.path:Class")]
    if trusted:
        return []
    try:
        cell_shape(cell)
    except (ValueError, TypeError) as exc:  # an unknown name lists the known ones
        return [f"cell: {exc}"]
    return []


def _weights(raw: Mapping, task: Task | None, axes: Mapping[str, list], *, trusted: bool,
             root: Path | None) -> tuple[dict[str, str] | None, list[str]]:
    """A trained network (``weights``), or None. The file (relative to ``root``, else to the
    working directory) is read (torch) to check that it fits the cell, the hidden size and the
    task's inputs, and its absolute path and SHA-256 recorded; in a ``trusted`` space (a
    record) the recorded mapping is taken as it is."""
    from .checkpoint import check_spec

    if raw.get("weights") is None:
        return None, []
    try:
        spec = check_spec(raw["weights"])
    except SweeperInputError as exc:
        return None, [str(exc)]
    if trusted:
        if "sha256" not in spec:
            return None, [_invalid("weights.sha256", None, "the file's SHA-256 (recorded)")]
        return spec, []
    if task is None:
        return None, []  # the task's own problem is reported; nothing to check against
    from .checkpoint import load

    spec["checkpoint"] = str((root or Path.cwd()) / Path(spec["checkpoint"]).expanduser())
    spec["checkpoint"] = str(Path(spec["checkpoint"]).resolve())
    sizes = axes.get("hidden_size") or [None]
    try:
        anchor = load(spec, raw.get("cell"), sizes[0] if len(sizes) == 1 else None)
    except SweeperInputError as exc:
        return None, [f"weights: {exc}"]
    problems = []
    if len(sizes) > 1:
        problems.append(_invalid("hidden_size", sizes, f"{anchor.hidden_size} alone (the "
                                 "checkpoint's hidden size)"))
    if anchor.input_size != task.input_size:
        problems.append(f"weights: {anchor.source} takes {anchor.input_size} inputs "
                        f"(weight_ih), but task {task.name!r} gives {task.input_size}")
    return {**spec, "sha256": anchor.sha256}, problems


def _task(name: Any, params: Any, *, trusted: bool) -> tuple[Task | None, list[str]]:
    """The task, built from its parameters (so checked by the task's own rules; the built-in
    tasks need no torch for that), or None; a ``trusted`` space's task is not built."""
    problems = []
    if not isinstance(params, Mapping):
        problems.append(_invalid("task_params", params, "a mapping"))
        params = {}
    if trusted:
        if not isinstance(name, str):
            problems.append(_invalid("task", name, "a task name or module.path:Class"))
        return None, problems
    # A task rejects bad names and parameters with SweeperInputError (a ValueError); a value
    # of the wrong type may reach a comparison or an import first and raise the others.
    rejected = (ValueError, TypeError, OverflowError)
    try:
        get_task(name)
    except rejected as exc:
        return None, [*problems, f"task: {exc}"]
    try:
        return get_task(name, dict(params)), problems
    except rejected as exc:
        message = str(exc)  # a parameter's rule names task_params.<name> itself
        return None, [*problems, message if message.startswith("task_params.")
                      else f"task_params: {message}"]


#: Axes batched inside a trial when the file does not say: the gain and the seed share one
#: matrix product per base draw; every other axis splits the sweep into trials, which run in
#: parallel.
DEFAULT_VECTORIZE = ("recurrent_scale", "seed")


def _vectorize(raw: Mapping) -> tuple[list[str], list[str]]:
    """The vectorised axes (default: those of :data:`DEFAULT_VECTORIZE` the file lists under
    ``axes``)."""
    given = raw.get("axes") or {}
    default = [a for a in DEFAULT_VECTORIZE if isinstance(given, Mapping) and a in given]
    vectorize = raw.get("vectorize", default)
    if (isinstance(vectorize, list) and all(v in VECTORIZABLE for v in vectorize)
            and len(set(vectorize)) == len(vectorize)):
        return vectorize, []
    return [], [_invalid("vectorize", vectorize, f"a list of distinct axes among "
                         f"{list(VECTORIZABLE)}")]


def _metrics(raw: Mapping, task: Task | None) -> tuple[list[str], list[str]]:
    """The metric families; those that need a loss, only with a task that has one."""
    metrics = raw.get("metrics", list(DEFAULT_METRICS))
    if not (isinstance(metrics, list) and metrics
            and all(m in METRIC_FAMILIES for m in metrics)):
        return [], [_invalid("metrics", metrics, f"a non-empty list among "
                             f"{list(METRIC_FAMILIES)}")]
    supervised = [m for m in metrics if m in SUPERVISED_FAMILIES]
    if supervised and task is not None and task.output_size == 0:
        return metrics, [f"metrics: {supervised} need a supervised task; task "
                         f"{raw.get('task', 'noise')!r} has no loss (e.g. task: teacher)"]
    return metrics, []


def _resources(resources: Any) -> tuple[dict[str, float], list[str]]:
    """What one trial asks Ray for: {cpu: n > 0, gpu: n >= 0}, fractions allowed."""
    if not isinstance(resources, Mapping):
        return {}, [_invalid("resources", resources, "a mapping {cpu: n, gpu: n}")]
    clean, problems = {}, []
    for key, value in resources.items():
        if key not in ("cpu", "gpu"):
            problems.append(f"resources.{key}: unknown key; allowed: ['cpu', 'gpu']")
        elif not (is_finite_number(value) and (value > 0 if key == "cpu" else value >= 0)):
            problems.append(_invalid(f"resources.{key}", value, "a finite number " + (
                "> 0" if key == "cpu" else ">= 0") + " (fractions allowed)"))
        else:
            clean[key] = float(value)
    return clean, problems


def _protocols(raw: Mapping) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The protocol keys the file sets (see PROTOCOLS), each checked by its config class;
    their fields as the file gives them, for the trials' configs."""
    given, problems = {}, []
    for key, cls in PROTOCOLS.items():
        if raw.get(key) is None:
            continue
        found = mapping_problems(cls, raw[key], key)
        problems += found
        if not found and raw[key]:
            given[key] = {k: list(v) if isinstance(v, tuple) else v for k, v in raw[key].items()}
    return given, problems


def _regions(regions: Any) -> tuple[RegionRules, list[str]]:
    if not isinstance(regions, Mapping):
        return RegionRules(), [_invalid("regions", regions, "a mapping {epsilon, "
                                        "min_attractors, horizon_fraction}")]
    try:
        return RegionRules.from_mapping(regions), []
    except (ValueError, TypeError, OverflowError) as exc:
        return RegionRules(), [f"regions: {exc}"]


def _counts(axes: Mapping[str, list], vectorize: list) -> list[str]:
    """Points and trials from the axis lengths alone, before any trial is built."""
    points = math.prod(len(v) for v in axes.values())
    trials = points // math.prod(len(axes[a]) for a in vectorize if a in axes)
    problems = []
    if points > MAX_POINTS:
        problems.append(f"axes: {points} points (the product of the axis lengths); a sweep has "
                        f"at most {MAX_POINTS}")
    if trials > MAX_TRIALS:
        problems.append(f"vectorize: {trials} trials (the product of the lengths of the axes "
                        f"not vectorized); a sweep has at most {MAX_TRIALS}: vectorize more "
                        "axes or shorten them")
    return problems


def _map(requested: Any, axes: Mapping[str, list]) -> tuple[tuple[str, str], list[str]]:
    """The two axes of the region map (see :func:`sweeper.axes.map_axes`)."""
    default = ("recurrent_scale", "input_scale")
    if not (isinstance(requested, Mapping) and set(requested) <= {"x", "y"}):
        return default, [_invalid("map", requested, "a mapping {x: axis, y: axis}")]
    try:
        return map_axes(axes, requested), []
    except SweeperInputError as exc:
        return default, [str(exc)]  # it names map.x / map.y itself


def _search(raw: Any, metrics: list[str], axes: Mapping[str, list], chosen: tuple[str, str]
            ) -> tuple[SearchConfig, list[str]]:
    """How the points are chosen (see :func:`sweeper.refine.parse_search`); a refinement
    needs lambda_1 and a budget no smaller than its first round."""
    search, problems = parse_search(raw)
    if search.refine and metrics and "lyapunov" not in metrics:
        problems.append(_invalid("search.method", "refine", f"grid when metrics lack "
                                 f"'lyapunov' (refinement follows lambda_1 and the regions it "
                                 f"decides; metrics: {metrics})"))
    if search.refine and search.budget is not None and len(axes) == len(AXES):
        lattice = Grid.of(axes, chosen).initial_points(search.initial)
        if search.budget < lattice:
            problems.append(_invalid("search.budget", search.budget, f"an integer >= {lattice}, "
                                     f"the points of the first round's lattice "
                                     f"({search.initial} values per map axis, every seed; "
                                     "lower search.initial for a smaller one)"))
    return search, problems


def protocol_configs(space: SearchSpace) -> dict[str, Any]:
    """The space's protocols as config objects, keyword arguments of
    :func:`sweeper.measure.measure` (``dynamics=``, ``memory=``, ``landscape=``,
    ``training=``; defaults where the file sets none)."""
    return {key: from_fields(cls, space.protocols.get(key, {}))
            for key, cls in PROTOCOLS.items()}


def from_record(raw: Any) -> SearchSpace:
    """The space of a sweep's record (``sweep.json``), which ``sweeper run`` wrote after
    validating it: checked without the cell's name or building the task (see ``trusted`` in
    :func:`validate_space`)."""
    return validate_space(raw, trusted=True)


def validate_space(raw: Any, *, trusted: bool = False, root: Path | None = None
                   ) -> SearchSpace:
    """Check a parsed search-space mapping and expand it.

    Each section is checked on its own and says what is wrong with it; every problem of the
    file is reported at once.

    Args:
        raw: the mapping, as parsed from the file.
        trusted: a space this package validated and recorded itself (a sweep's
            ``sweep.json``): the cell and the task are taken as named, without checking the
            cell's name or building the task (a plug-in's module, maybe torch), so that the
            commands reading a finished sweep start at once. Everything else is checked as
            usual. See :func:`from_record`.
        root: the directory relative paths in the file (``weights.checkpoint``) start from:
            the file's own (None: the working directory).

    Raises:
        SweeperInputError: listing every problem, one per line, each with its key path.
    """
    if not isinstance(raw, Mapping):
        raise SweeperInputError(f"search space: got {type(raw).__name__}; expected a mapping "
                                f"with keys {list(TOP_KEYS)}")
    problems = [f"{key}: unknown key; allowed: {list(TOP_KEYS)}"
                for key in sorted(set(raw) - set(TOP_KEYS), key=str)]
    name = raw.get("name")
    if not (isinstance(name, str) and NAME.match(name)):
        problems.append(_invalid("name", name, "1 to 100 letters, digits, '_', '.' or '-'"))
    problems += _cell(raw.get("cell"), trusted=trusted)
    task_name, task_params = raw.get("task", "noise"), raw.get("task_params") or {}
    task, task_problems = _task(task_name, task_params, trusted=trusted)
    axes, axis_problems = _axes(raw)
    vectorize, vectorize_problems = _vectorize(raw)
    metrics, metric_problems = _metrics(raw, task)
    resources, resource_problems = _resources(raw.get("resources") or DEFAULT_RESOURCES)
    protocols, protocol_problems = _protocols(raw)
    rules, region_problems = _regions(raw.get("regions") or {})
    chosen, map_problems = _map(raw.get("map") or {}, axes)
    search, search_problems = _search(raw.get("search"), metrics, axes, chosen)
    weights, weight_problems = (_weights(raw, task, axes, trusted=trusted, root=root)
                                if not problems else (None, []))
    problems += [*task_problems, *axis_problems, *vectorize_problems, *metric_problems,
                 *resource_problems, *protocol_problems, *region_problems,
                 *_counts(axes, vectorize), *map_problems, *search_problems, *weight_problems]
    if problems:
        raise SweeperInputError("invalid search space:\n  " + "\n  ".join(map(_cut, problems)))
    recorded = dict(raw)
    if weights is not None:  # the record keeps where the file is and what it held
        recorded["weights"] = dict(weights)
    return SearchSpace(name, task_name, dict(task_params), raw.get("cell"), axes,
                       tuple(vectorize), tuple(metrics), resources, recorded, rules=rules,
                       map=chosen, search=search, protocols=protocols, weights=weights)


def parallelism_note(space: SearchSpace, cores: int) -> str | None:
    """A note when the sweep has fewer trials than the ``cores`` it could use at once (one
    trial per ``resources.cpu`` cores), with the fix; None when it fills them."""
    slots = max(1, int(cores // max(space.resources.get("cpu", 1.0), 1e-9)))
    trials = len(space.trials()) if not space.search.refine else None
    if trials is None or trials >= slots:
        return None
    batched = [a for a in space.vectorize if len(space.axes[a]) > 1]
    fix = (f"batch fewer axes (vectorize: {[a for a in space.vectorize if a != batched[0]]}) "
           f"to split {batched[0]} into trials" if batched else "add values to an axis")
    return (f"{trials} trial(s) for {slots} worker slots ({cores} cores, "
            f"{space.resources.get('cpu', 1.0):g} per trial): only {trials} will run at once; "
            f"{fix}")


def axis_values(space: SearchSpace, shown: int = 6) -> list[str]:
    """Each axis and its expanded values, a long list abbreviated to its first and last."""
    from .lines import value_text

    rows = []
    for axis, values in space.axes.items():
        text = value_text(values)
        written = [text[float(v)] for v in values]
        if len(written) > shown:
            written = [*written[:shown // 2], "...", *written[-(shown // 2):]]
        rows.append(f"{axis} ({len(values)}): {', '.join(written)}")
    return rows


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


def trial_bytes(cell: CellShape, task: Task, hidden_size: int, seq_len: int, points: int,
                seeds: int, metrics: Sequence[str], landscape: LandscapeConfig | None = None,
                *, dynamics: DynamicsConfig | None = None, memory: MemoryConfig | None = None,
                training: TrainingConfig | None = None) -> int:
    """Order-of-magnitude peak memory of one trial of ``points`` points over ``seeds`` base
    draws, measured in float32 with the default protocols (what a sweep's trials run).

    The peak is the base (the process, the base draws, the task's inputs) plus the largest
    family's own allocations, as the families run one after another; each term below is one
    large allocation, in bytes (b per float32 number, 8 per float64). It is meant to tell
    100 MiB from 100 GiB, not to budget a machine to the last gigabyte.

    Args:
        cell: the cell's shape (:func:`sweeper.cell_shapes.cell_shape`); task: a Task (its
            input and output sizes).
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
    base = (PROCESS_BYTES + (k_points if cell.per_point_weights else groups) * per_point * (b + f64)
            + groups * steps * inputs * f64)

    def rollout(batch: int) -> int:  # every step's projection, state (twice) and output
        return batch * seq_len * (gates + 2 * state + outputs) * b

    def backprop(batch: int) -> int:  # the same, and each step's saved activations
        return batch * seq_len * (6 * gates + 4 * state) * b

    family = {}
    if {"lipschitz", "lyapunov", "memory"} & set(metrics):
        batch, k = dyn.n_trajectories, min(dyn.lyapunov_k, state)
        # Each step's log growth, the input projections, the horizon, the stacked tangents and
        # the Lanczos basis.
        family["dynamics"] = batch * (
            steps * k_points * k * f64 + 2 * groups * steps * gates * b
            + seq_len * k_points * (f64 + 1)
            + (8 * (1 + k) * gates + 2 * dyn.lanczos_steps * state) * k_points * b)
    if "memory" in metrics:
        mem = memory or MemoryConfig()
        length, delays = mem.train + mem.test, mem.delays(state)
        chunk = min(k_points, max(1, mem.chunk_bytes // (length * (state + 1) * f64)))
        # A chunk's rollout and ridge systems (Kmax = 2 D delays), or the attractor runs'
        # pairwise distances, whichever is larger.
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
        if land.hessian_steps:  # the double backward, and the Lanczos basis
            gradient = 4 * gradient + 2 * (land.hessian_steps + 1) * k_points * per_point * b
        slices = k_points * land.points * (per_point * b + rollout(land.batch_size))
        family["landscape"] = 4 * k_points * per_point * b + max(gradient, slices)
    if "training" in metrics:
        train = training or TrainingConfig()
        # Adam's state, a training batch's backprop, the validation rollout.
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
    peak = trial_bytes(cell_shape(space.cell), get_task(space.task, space.task_params),
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
    problems = []
    if size.points > LARGE_POINTS:
        problems.append(f"points: the sweep has {size.points} points; the limit is "
                        f"{LARGE_POINTS}")
    if size.trials > LARGE_TRIALS:
        problems.append(f"trials: the sweep has {size.trials} trials (each a tracked run and a "
                        f"Parquet part); the limit is {LARGE_TRIALS}")
    if size.trial_bytes > memory_bytes:
        smaller = (" (vectorize fewer axes for smaller trials)" if size.points_per_trial > 1
                   else "")
        points = f"{size.points_per_trial} point{'s' if size.points_per_trial > 1 else ''}"
        problems.append(f"memory: one trial ({points}, hidden_size "
                        f"{max(space.axes['hidden_size'])}, seq_len "
                        f"{max(space.axes['seq_len'])}) needs about "
                        f"{_size_text(size.trial_bytes)}; this machine has "
                        f"{_size_text(memory_bytes)}{smaller}")
    if problems:
        raise SweeperInputError("search space too large to start:\n  "
                                + "\n  ".join(problems)
                                + "\n  pass --allow-large to start it anyway")
    return size
