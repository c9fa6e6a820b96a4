"""The one result schema: every column of a point, in order, with its type, unit and meaning.

measure() builds its frame from it, the Parquet parts take their types from it, MLflow logs
its numeric metrics, the region map averages them, the CLI prints them, and the README's
tables are generated from it: ``write_readme("README.md")`` rewrites them, and
tests/test_schema.py compares.
"""

from __future__ import annotations

from .columns import Column

#: The landscape family's slice statistics (unit, meaning), each along recurrent_scale and
#: along a random direction.
_SLICES = {
    "n_local_minima": ("", "interior local minima of the loss along the slice"),
    "roughness_tv": ("", "total variation over range: 1 monotone, 2 one valley"),
    "loss_lipschitz": ("", "max |dV/d alpha| by first differences along the slice"),
    "loss_curvature": ("", "max |d2V/d alpha2| by second differences along the slice"),
}


def _slice_columns() -> tuple[Column, ...]:
    along = [Column(name, "double", unit, f"{meaning}, along recurrent_scale (s +- 0.1, 41 "
                    "points by default)", "landscape")
             for name, (unit, meaning) in _SLICES.items()]
    random = [Column(f"{name}_random", "double", unit, f"{meaning}, along a filter-normalised "
                     "random direction (Li et al. 2018)", "landscape")
              for name, (unit, meaning) in _SLICES.items()]
    return (*along, *random)


#: The metric columns of each family, in the order their columns appear; the families in
#: :mod:`sweeper.families` compute them. Plain data: reading results needs no torch.
FAMILY_COLUMNS: dict[str, tuple[Column, ...]] = {
    "lipschitz": (
        Column("lipschitz_bound", "double", "", "sound analytic bound of sup ||df/dx||_2 over "
               "the reachable set (derivation in each cell's docstring); NaN for a plug-in "
               "cell that gives none", "lipschitz"),
        Column("lipschitz_local_max", "double", "", "largest ||J_t||_2 at 32 evenly "
               "spaced post-burn-in steps (Lanczos)", "lipschitz"),
        Column("lipschitz_local_mean", "double", "", "geometric mean of ||J_t||_2 at the "
               "sampled steps", "lipschitz"),
        Column("cost_growth_log10", "double", "log10", "log10 of sum_{k<N} L^k with L the "
               "bound: the paper's growth of the cost's Lipschitz constant (NaN without a "
               "bound)", "lipschitz"),
        Column("cost_growth_log10_local", "double", "log10", "the same with L the local "
               "maximum", "lipschitz"),
    ),
    "lyapunov": (
        Column("lyapunov_max", "double", "nats/step", "largest Lyapunov exponent (Benettin's "
               "tangent method, averaged after the burn-in)", "lyapunov"),
        Column("lyapunov_<i>", "double", "nats/step", "the i-th exponent, i = 2..k, with "
               "DynamicsConfig(lyapunov_k=k) (QR re-orthonormalisation)", "lyapunov",
               optional=True, pattern=True),
        Column("lyapunov_dimension", "double", "", "Kaplan-Yorke dimension j + (l_1 + ... + "
               "l_j)/|l_{j+1}| of the measured exponents, j the largest index whose partial "
               "sum is >= 0: 0 when l_1 < 0; NaN when all k measured exponents still sum to "
               ">= 0 (raise lyapunov_k), so with k = 1 it is 0 or NaN; k when k = D and they "
               "do", "lyapunov"),
        Column("entropy_rate", "double", "nats/step", "sum of the positive exponents "
               "(Pesin's upper bound on the Kolmogorov-Sinai entropy); NaN when the k-th "
               "exponent is still positive and k < D (positive exponents may be missing)",
               "lyapunov"),
        Column("n_positive_exponents", "double", "", "number of positive exponents (unstable "
               "directions); NaN when entropy_rate is", "lyapunov"),
        Column("lyapunov_max_twin", "double", "nats/step", "the largest exponent from two "
               "nearby float64 trajectories, with DynamicsConfig(twin=True)", "lyapunov",
               optional=True),
    ),
    "memory": (
        Column("memory_capacity", "double", "", "Jaeger's memory capacity: sum of held-out r^2 "
               "of ridge readouts of u_{t-k}, k = 1..2D", "memory"),
        Column("memory_horizon", "double", "steps", "steps until an initial perturbation "
               "shrinks below horizon_tol (1e-3), capped at N", "memory"),
        Column("memory_horizon_capped", "bool", "", "the perturbation was still above "
               "horizon_tol after N steps", "memory"),
        Column("attractor_count", "double", "", "attractors reached from 16 random initial "
               "states under the task's constant input, each counted once as a set: periodic "
               "runs are one attractor when one's orbit passes within 0.01 of the other's end "
               "state (the phases of one orbit); aperiodic runs (chaotic, quasi-periodic) when "
               "their per-unit time means and second moments over 350 steps agree within 4 "
               "standard errors (batch means); a run still moving after the transient adds "
               "none", "memory"),
        Column("chaotic_attractors", "double", "", "how many of those attractors are chaotic: "
               "the mean finite-time Lyapunov exponent of their runs over the 100-step window "
               "exceeds 0.01 nats/step (they do not count as memory, see regions)", "memory"),
        Column("orbit_period", "double", "steps", "period of the attractor reached most often: "
               "1 fixed point, p a period-p orbit, 0 no period up to W/2 = 50 steps: "
               "quasi-periodic or chaotic", "memory"),
        Column("asymptotic_states", "double", "", "end states a readout could tell apart, "
               "phases of periodic orbits included", "memory"),
        Column("memory_curve", "list<double>", "", "r^2 of the readout of u_{t-k} for each "
               "delay k = 1..2D", "memory"),
    ),
    "landscape": (
        Column("loss", "double", "task loss", "the task's loss on a fixed batch of a supervised "
               "task", "landscape"),
        Column("grad_norm", "double", "", "||grad V|| by backpropagation through time",
               "landscape"),
        Column("hessian_top_eig", "double", "", "top eigenvalue of the Hessian: exact (dense "
               "Hessian) up to 128 parameters per point, else Lanczos on Hessian-vector "
               "products; NaN with hessian_steps 0", "landscape"),
        *_slice_columns(),
    ),
    "training": (
        Column("train_loss", "double", "task loss", "loss on the last training batch (every "
               "point trained at once: Adam, per-point gradient clipping, cosine schedule, 300 "
               "steps by default)", "training"),
        Column("val_loss", "double", "task loss", "loss on the validation batch", "training"),
        Column("val_accuracy", "double", "", "validation accuracy (classification tasks; NaN "
               "for mse)", "training"),
        Column("diverged", "bool", "", "the point's loss or gradient became non-finite during "
               "training", "training"),
        Column("steps_to_threshold", "double", "steps", "first step whose train loss is below "
               "TrainingConfig.threshold (NaN if never or no threshold)", "training"),
    ),
}
#: The metric families, in column order.
METRIC_FAMILIES = tuple(FAMILY_COLUMNS)
#: The families that need a task with a loss (a search space refuses them for any other).
SUPERVISED_FAMILIES = ("landscape", "training")

#: Bumped whenever a column, a type or a status value changes meaning (written into the
#: region map's metadata). 2: orbit_period, asymptotic_states, crossing interval, mean field;
#: 3: one status merged across families (adds loss_nonfinite and training_diverged);
#: 4: aperiodic runs joined by their time averages (attractor_count), chaotic_attractors, and
#: the memory region counting stable attractors only; 5: the spectrum's lyapunov_dimension,
#: entropy_rate and n_positive_exponents.
SCHEMA_VERSION = "5"

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
    families = [family] if family else METRIC_FAMILIES
    return tuple(c for f in families for c in FAMILY_COLUMNS[f] if optional or not c.optional)


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


