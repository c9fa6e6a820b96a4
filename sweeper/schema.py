"""The one result schema: every column of a point, in order, with its type, unit and meaning.

measure() builds its frame from it, the Parquet parts take their types from it, MLflow logs
its numeric metrics, the region map averages them, the CLI prints them, and the README's
tables are generated from it: ``write_readme("README.md")`` rewrites them, and
tests/test_schema.py compares.
"""

from __future__ import annotations

from .columns import Column
from .families import FAMILIES

#: Bumped whenever a column, a type or a status value changes meaning (written into the
#: region map's metadata). 2: orbit_period, asymptotic_states, crossing interval, mean field;
#: 3: one status merged across families (adds loss_nonfinite and training_diverged);
#: 4: aperiodic runs joined by their time averages (attractor_count), chaotic_attractors, and
#: the memory region counting stable attractors only.
SCHEMA_VERSION = "4"

#: The columns ``sweeper run`` adds in front of measure()'s (one trial's part).
SWEEP_COLUMNS = (
    Column("sweep", "string", "", "the sweep's name"),
    Column("trial_id", "string", "", "the trial that measured the point"),
    Column("point_id", "string", "", "hash of the point's configuration"),
    Column("mlflow_run_id", "string", "", "the trial's MLflow run"),
)

#: The columns that say which point a row is (measure() returns them first).
POINT_COLUMNS = (
    Column("cell", "string", "", "cell name"),
    Column("hidden_size", "int64", "units", "H"),
    Column("task", "string", "", "task name"),
    Column("seed", "int64", "", "base draw of the weights and of every random input"),
    Column("recurrent_scale", "double", "", "factor s on the recurrent weights"),
    Column("input_scale", "double", "", "factor on the input weights"),
    Column("seq_len", "int64", "steps", "N, the sequence length"),
    Column("status", "string", "", "ok, or the most fundamental failure: diverged (the state "
           "became inf/NaN; measured metrics NaN), loss_nonfinite, training_diverged "
           "(sweeper.status)"),
)

#: Added by ``sweeper run`` after ``status``.
REGION_COLUMN = Column("region", "string", "", "forgetful, memory, chaotic or unclassified")


def metric_columns(family: str | None = None, *, optional: bool = False) -> tuple[Column, ...]:
    """The metric columns (of one family, or all in family order); ``optional`` adds the
    columns present only when asked for (pattern columns stay templates)."""
    families = [FAMILIES[family]] if family else FAMILIES.values()
    return tuple(c for f in families for c in f.columns if optional or not c.optional)


def metric_names(family: str | None = None) -> list[str]:
    """Names of the always-present metric columns."""
    return [c.name for c in metric_columns(family)]


def numeric_metrics() -> list[str]:
    """Metric columns with one number per point (the region map's ``<metric>_mean``)."""
    return [c.name for c in metric_columns() if c.dtype != "list<double>"]


def column(name: str) -> Column | None:
    """The declaration of ``name`` (pattern columns match lyapunov_2, lyapunov_3, ...)."""
    everything = (*SWEEP_COLUMNS, *POINT_COLUMNS, REGION_COLUMN,
                  *metric_columns(optional=True))
    for c in everything:
        if c.name == name:
            return c
    for c in everything:
        if c.pattern:
            stem = c.name.split("<")[0]
            if name.startswith(stem) and name[len(stem):].isdigit():
                return c
    return None


def part_columns() -> list[Column]:
    """Every always-present column of a Parquet part, in order."""
    point = list(POINT_COLUMNS)
    point.insert(point.index(POINT_COLUMNS[-1]) + 1, REGION_COLUMN)
    return [*SWEEP_COLUMNS, *point, *metric_columns()]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the table cell


def point_table() -> str:
    """The README's table of a part's identity columns."""
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    for c in (*SWEEP_COLUMNS, *POINT_COLUMNS, REGION_COLUMN):
        lines.append(f"| `{c.name}` | {c.dtype} | {c.unit} | {_cell(c.meaning)} |")
    return "\n".join(lines) + "\n"


def metric_table() -> str:
    """The README's table of every metric column, family by family."""
    lines = ["| family | column | type | unit | meaning |", "|---|---|---|---|---|"]
    for c in metric_columns(optional=True):
        extra = " (only when asked for)" if c.optional else ""
        lines.append(f"| `{c.family}` | `{c.name}` | {c.dtype} | {c.unit} | "
                     f"{_cell(c.meaning)}{extra} |")
    return "\n".join(lines) + "\n"


#: The README's generated blocks: marker name -> table.
README_BLOCKS = {"points": point_table, "metrics": metric_table}


def readme_blocks(text: str) -> dict[str, str]:
    """The generated blocks found in a README's text (marker name -> content)."""
    found = {}
    for name in README_BLOCKS:
        begin, end = f"<!-- schema:{name} -->\n", f"<!-- /schema:{name} -->"
        if begin in text and end in text:
            found[name] = text.split(begin, 1)[1].split(end, 1)[0]
    return found


def write_readme(path: str) -> None:
    """Regenerate the schema blocks of the README at ``path`` in place."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for name, table in README_BLOCKS.items():
        begin, end = f"<!-- schema:{name} -->\n", f"<!-- /schema:{name} -->"
        head, rest = text.split(begin, 1)
        text = head + begin + table() + end + rest.split(end, 1)[1]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


