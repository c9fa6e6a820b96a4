"""Search spaces: a validated sweep description and its expansion into trials and points.

Pure functions on plain mappings (what a YAML or JSON file parses to): no file or service
access here. ``validate_space`` reports every problem at once, each with its key path, the
bad value and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cells import CELLS
from .errors import SweeperInputError
from .measure import METRIC_FAMILIES
from .regions import RegionRules

AXES = ("recurrent_scale", "input_scale", "seed", "seq_len", "hidden_size")
VECTORIZABLE = ("recurrent_scale", "input_scale", "seed")
INTEGER_AXES = ("seed", "seq_len", "hidden_size")
GENERATORS = ("linspace", "logspace", "uniform")
TOP_KEYS = ("name", "task", "task_params", "cell", "hidden_size", "seq_len", "axes",
            "vectorize", "metrics", "resources", "regions", "map", "landscape")
#: Keys that change how results are read or where trials run, not what is measured: left out
#: of the sweep's identity.
UNMEASURED_KEYS = ("regions", "map", "resources")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


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
    landscape: dict[str, Any] = field(default_factory=dict)  # LandscapeConfig fields
    map: tuple[str, str] = ("recurrent_scale", "input_scale")

    @property
    def measured(self) -> dict[str, Any]:
        """The file's content without the unmeasured keys (what identifies the sweep)."""
        return {k: v for k, v in self.raw.items() if k not in UNMEASURED_KEYS}

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def trials(self) -> list[Trial]:
        """The trials in a stable order: the product of the non-vectorised axes."""
        outer = [a for a in self.axes if a not in self.vectorize]
        inner = {a: self.axes[a] for a in self.axes if a in self.vectorize}
        result = []
        for values in itertools.product(*(self.axes[a] for a in outer)):
            config = {"name": self.name, "task": self.task, "task_params": self.task_params,
                      "cell": self.cell, "metrics": list(self.metrics),
                      **dict(zip(outer, values, strict=True))}
            if self.landscape:  # a different protocol measures different numbers
                config["landscape"] = dict(self.landscape)
            result.append(Trial(stable_hash({**config, "vectorized": inner}), config, inner))
        return result


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
        self.items.append(f"{path}: got {value!r}; {allowed}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def _expand_axis(name: str, spec: Any, errors: _Errors, path: str | None = None
                 ) -> list | None:
    path = path or f"axes.{name}"
    integer = name in INTEGER_AXES
    if integer and isinstance(spec, Mapping):
        errors.add(path, dict(spec), f"{name} takes a list of integers, not a generator")
        return None
    if isinstance(spec, list):
        if not spec:
            errors.add(path, spec, "a list needs at least one value")
            return None
        values = spec
    elif isinstance(spec, Mapping):
        keys = set(spec)
        kind = [k for k in GENERATORS if k in keys]
        extra = sorted(keys - set(GENERATORS) - {"samples", "seed"})
        if len(kind) != 1 or extra:
            errors.add(path, dict(spec), f"expected a list or exactly one of {list(GENERATORS)}"
                       " (with 'samples' for uniform)")
            return None
        kind = kind[0]
        args = spec[kind]
        if kind in ("linspace", "logspace"):
            if not (isinstance(args, list) and len(args) == 3 and _number(args[0])
                    and _number(args[1]) and isinstance(args[2], int)
                    and not isinstance(args[2], bool) and args[2] >= 1):
                errors.add(f"{path}.{kind}", args, "expected [lo, hi, n] with n >= 1")
                return None
            if kind == "logspace" and (args[0] <= 0 or args[1] <= 0):
                errors.add(f"{path}.{kind}", args, "logspace needs lo > 0 and hi > 0")
                return None
            fn = np.linspace if kind == "linspace" else np.geomspace
            values = [float(v) for v in fn(args[0], args[1], args[2])]
        else:
            samples = spec.get("samples")
            if not (isinstance(args, list) and len(args) == 2 and all(map(_number, args))
                    and args[0] < args[1]):
                errors.add(f"{path}.uniform", args, "expected [lo, hi] with lo < hi")
                return None
            if not (isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1):
                errors.add(f"{path}.samples", samples, "uniform needs an integer samples >= 1")
                return None
            rng = np.random.default_rng(spec.get("seed", 0))
            values = sorted(float(v) for v in rng.uniform(args[0], args[1], samples))
    else:
        values = [spec]
    out = []
    for i, value in enumerate(values):
        where = f"{path}[{i}]" if isinstance(spec, list) and path.startswith("axes.") else path
        if integer:
            ok = isinstance(value, int) and not isinstance(value, bool) and (
                value >= 0 if name == "seed" else value >= 1)
            if not ok:
                low = "0" if name == "seed" else "1"
                errors.add(where, value, f"{name} values must be integers >= {low}")
                return None
        elif not (_number(value) and value >= 0):
            errors.add(where, value, f"{name} values must be finite numbers >= 0")
            return None
        out.append(value)
    if len(set(out)) != len(out):
        errors.add(path, spec, "values must be distinct (each point exactly once)")
        return None
    return out


def validate_space(raw: Any) -> SearchSpace:
    """Check a parsed search-space mapping and expand it.

    Raises:
        SweeperInputError: listing every problem, one per line, each with its key path.
    """
    from tasks import get_task

    errors = _Errors()
    if not isinstance(raw, Mapping):
        raise SweeperInputError(f"search space: got {type(raw).__name__}; expected a mapping "
                                f"with keys {list(TOP_KEYS)}")
    for key in sorted(set(raw) - set(TOP_KEYS), key=str):
        errors.add(str(key), raw[key], f"unknown key; allowed: {list(TOP_KEYS)}")
    name = raw.get("name")
    if not (isinstance(name, str) and NAME.match(name)):
        errors.add("name", name, "required: letters, digits, '_', '.', '-' (max 100)")
    cell = raw.get("cell")
    if cell not in CELLS:
        errors.add("cell", cell, f"allowed: {sorted(CELLS)}")
    task_name = raw.get("task", "noise")
    task_params = raw.get("task_params") or {}
    if not isinstance(task_params, Mapping):
        errors.add("task_params", task_params, "expected a mapping")
        task_params = {}
    task = None
    try:
        get_task(task_name)
    except SweeperInputError as exc:
        errors.add("task", task_name, str(exc))
    else:
        try:
            task = get_task(task_name, dict(task_params))
        except SweeperInputError as exc:
            errors.add("task_params", dict(task_params), str(exc))
    axes_raw = raw.get("axes") or {}
    if not isinstance(axes_raw, Mapping):
        errors.add("axes", axes_raw, "expected a mapping of axis name to values")
        axes_raw = {}
    axes: dict[str, list] = {}
    for axis in axes_raw:
        if axis not in AXES:
            errors.add(f"axes.{axis}", axes_raw[axis], f"unknown axis; allowed: {list(AXES)}")
            continue
        if axis in raw:
            errors.add(f"axes.{axis}", axes_raw[axis], f"{axis} is also a top-level key; "
                       "give it in one place")
            continue
        values = _expand_axis(axis, axes_raw[axis], errors)
        if values is not None:
            axes[axis] = values
    for scalar, default in (("hidden_size", None), ("seq_len", 200)):
        if scalar in axes_raw:
            continue
        value = raw.get(scalar, default)
        if value is None:
            errors.add(scalar, value, "required (top level or under axes)")
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
        errors.add("metrics", metrics, f"{supervised} need a supervised task; task "
                   f"{task_name!r} has no loss (e.g. task: teacher)")
    resources = raw.get("resources") or {"cpu": 1, "gpu": 0}
    clean_resources: dict[str, float] = {}
    if not isinstance(resources, Mapping):
        errors.add("resources", resources, "expected {cpu: n, gpu: n}")
    else:
        for key, value in resources.items():
            if key not in ("cpu", "gpu"):
                errors.add(f"resources.{key}", value, "allowed keys: ['cpu', 'gpu']")
            elif not (_number(value) and (value > 0 if key == "cpu" else value >= 0)):
                errors.add(f"resources.{key}", value,
                           "cpu must be > 0, gpu >= 0 (fractions allowed)")
            else:
                clean_resources[key] = float(value)
    landscape = raw.get("landscape") or {}
    if not isinstance(landscape, Mapping):
        errors.add("landscape", landscape, "expected a mapping of LandscapeConfig fields")
        landscape = {}
    else:
        from dataclasses import fields as dataclass_fields

        from .landscape_metrics import LandscapeConfig

        known = [f.name for f in dataclass_fields(LandscapeConfig)]
        unknown = sorted(set(landscape) - set(known), key=str)
        if unknown:
            errors.add("landscape", dict(landscape), f"unknown keys {unknown}; allowed: {known}")
        else:
            try:
                LandscapeConfig(**landscape)
            except (SweeperInputError, TypeError) as exc:
                errors.add("landscape", dict(landscape), str(exc))
    rules = RegionRules()
    regions_raw = raw.get("regions") or {}
    if not isinstance(regions_raw, Mapping):
        errors.add("regions", regions_raw, "expected {epsilon, min_attractors, "
                   "horizon_fraction}")
    else:
        try:
            rules = RegionRules.from_mapping(regions_raw)
        except (SweeperInputError, TypeError) as exc:
            errors.add("regions", dict(regions_raw), str(exc))
    ordered = {a: axes[a] for a in AXES if a in axes}
    map_raw = raw.get("map") or {}
    chosen = ("recurrent_scale", "input_scale")
    if not (isinstance(map_raw, Mapping) and set(map_raw) <= {"x", "y"}):
        errors.add("map", map_raw, "expected {x: axis, y: axis}")
    else:
        from .aggregate import map_axes

        try:
            chosen = map_axes(ordered, map_raw)
        except SweeperInputError as exc:
            errors.add("map", dict(map_raw), str(exc))
    if errors.items:
        raise SweeperInputError("invalid search space:\n  " + "\n  ".join(errors.items))
    return SearchSpace(name, task_name, dict(task_params), cell, ordered, tuple(vectorize),
                       tuple(metrics), clean_resources, dict(raw), rules=rules, map=chosen,
                       landscape=dict(landscape))
