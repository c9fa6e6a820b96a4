"""rnn-sweeper: where in parameter space a recurrent network forgets, remembers, or turns
chaotic. The core is batched over K points and imports only torch, numpy and pandas."""
# Core stays free of Ray, MLflow, YAML and Parquet (tests/test_layering.py checks it).

from __future__ import annotations

from . import theory
from .cells import CELLS, BoundContext, Cell, get_cell
from .dynamics import DynamicsConfig, DynamicsResult, run_dynamics
from .errors import SweeperInputError
from .landscape_metrics import LandscapeConfig
from .lipschitz import cost_growth_log10, top_singular_value
from .measure import METRIC_COLUMNS, build_params, measure
from .memory import MemoryConfig, attractor_count, memory_capacity
from .params import CellParams
from .training import TrainingConfig

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
    "SweeperInputError",
    "TrainingConfig",
    "attractor_count",
    "build_params",
    "cost_growth_log10",
    "get_cell",
    "measure",
    "memory_capacity",
    "run_dynamics",
    "theory",
    "top_singular_value",
]
__version__ = "0.1.0"
