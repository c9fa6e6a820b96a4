"""What a result column is: name, type, unit, meaning and the family that fills it.

Only the declaration lives here; :mod:`sweeper.schema` gathers the identity columns and every
family's columns into the one schema that measure(), Parquet, MLflow, the region map, the CLI
and the README read.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The column types, named as in the README (Arrow: string, int64, double, bool, list<double>).
DTYPES = ("string", "int64", "double", "bool", "list<double>")


@dataclass(frozen=True)
class Column:
    """One result column.

    Attributes:
        name: the column name (for ``pattern`` columns, a template such as ``lyapunov_<i>``).
        dtype: one of :data:`DTYPES`.
        unit: physical unit or "" (dimensionless); shown in the README and the CLI.
        meaning: one line.
        family: the metric family that fills it, or "point" for the identity columns.
        optional: present only when asked for (``lyapunov_k > 1``, ``twin=True``); every
            other column is in every frame and part, NaN/None where not computed.
        pattern: the name is a template standing for several columns.
    """

    name: str
    dtype: str
    unit: str
    meaning: str
    family: str = "point"
    optional: bool = False
    pattern: bool = False

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"Column {self.name}: dtype must be one of {DTYPES}, "
                             f"got dtype={self.dtype!r}")

    @property
    def numeric(self) -> bool:
        """A number per point (what the region map averages and MLflow logs)."""
        return self.dtype in ("double", "int64")
