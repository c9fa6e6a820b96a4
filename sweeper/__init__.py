"""rnn-sweeper: where in parameter space a recurrent network forgets, remembers, or turns
chaotic. The core is batched over K points and imports only torch, numpy and pandas.

The names below are loaded on first use (PEP 562), so ``import sweeper`` and the commands
that only read results (``sweeper query``, ``show``, ``--help``) do not import torch."""
# Core stays free of Ray, MLflow, YAML and Parquet (tests/test_layering.py checks it).

from __future__ import annotations

import importlib
import sys
import types

#: Public name -> the module that defines it.
_PUBLIC = {
    "CELLS": ".cells", "BoundContext": ".cells", "Cell": ".cells", "get_cell": ".cells",
    "DynamicsConfig": ".protocols", "LandscapeConfig": ".protocols",
    "MemoryConfig": ".protocols", "TrainingConfig": ".protocols",
    "DynamicsResult": ".dynamics", "run_dynamics": ".dynamics",
    "SweeperInputError": ".errors",
    "cost_growth_log10": ".lipschitz", "top_singular_value": ".lipschitz",
    "METRIC_COLUMNS": ".measure", "build_params": ".measure", "measure": ".measure",
    "attractor_count": ".memory", "memory_capacity": ".memory",
    "CellParams": ".params",
    "RegionRules": ".regions",
    "load": ".adapters.results", "Results": ".adapters.results",
}

__all__ = [
    "CELLS",
    "METRIC_COLUMNS",
    "BoundContext",
    "Cell",
    "CellParams",
    "DynamicsConfig",
    "DynamicsResult",
    "LandscapeConfig",
    "MemoryConfig",
    "RegionRules",
    "Results",
    "SweeperInputError",
    "TrainingConfig",
    "attractor_count",
    "build_params",
    "cost_growth_log10",
    "get_cell",
    "load",
    "measure",
    "memory_capacity",
    "run_dynamics",
    "theory",
    "top_singular_value",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "theory":
        return importlib.import_module(".theory", __name__)
    if name not in _PUBLIC:
        raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``sweeper.measure`` binds it as the
    package's attribute ``measure``; the public name is the function ``measure()`` (as when
    the names were imported eagerly), so the function is bound instead. ``from
    sweeper.measure import ...`` reads the submodule from ``sys.modules`` and is unaffected."""

    def __setattr__(self, name: str, value) -> None:
        if name == "measure" and isinstance(value, types.ModuleType):
            value = value.measure
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
