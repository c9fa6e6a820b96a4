"""Orbit (bifurcation) diagrams: the long-run values of one output for each scaling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .cells._base import Cell
from .dynamics import rollout
from .params import CellParams
from .task import Task, get_task

Tensor = torch.Tensor


def orbit_diagram(cell: Cell, params: CellParams, inputs: Tensor, x0: Tensor, keep: int,
                  output_index: int = 0) -> Tensor:
    """The last ``keep`` values of state entry ``output_index`` along each trajectory.

    Args:
        inputs: (G or 1, B, T, I) with T > keep; the first T - keep steps are transient.
        x0: (G, M, B, D) initial states (B of them per point: several basins show up).

    Returns:
        (G, M, B * keep): a fixed point gives one value, a period-p orbit p values, chaos a
        spread; non-finite where the state diverged.
    """
    steps = inputs.shape[-2]
    states = rollout(cell, params, inputs, x0, keep_from=steps - keep)
    values = states[..., output_index]  # (G, M, B, keep)
    return values.reshape(*values.shape[:2], -1)


def orbits_for(cell: str, hidden_size: int, task: Task, scales: Sequence[float], *, seed: int = 0,
               steps: int = 1000, keep: int = 60, inits: int = 6,
               dtype: torch.dtype = torch.float64,
               device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Orbit diagram along recurrent_scale for one base draw, under the task's constant input.

    Initial states: the task's own (if it has one) then random ones in [-1, 1]^D, ``inits`` in
    all. Returns ``scale`` (P,) and ``orbit`` (P, inits * keep), float64 on the CPU.
    """
    from .cells import get_cell
    from .measure import build_params
    from .seeding import generator

    cell_obj = get_cell(cell)
    device = torch.device(device)
    rs = torch.as_tensor(list(scales), dtype=torch.float64)[None]
    params = build_params(cell_obj, hidden_size, task.input_size, [seed], rs,
                          torch.ones_like(rs), dtype, device,
                          anchor=task.anchor(cell_obj.name, hidden_size))
    params = cell_obj.prepare(params)
    size = cell_obj.state_size(hidden_size)
    starts = torch.rand(inits, size, generator=generator(seed, "attractor-states"),
                        dtype=torch.float64) * 2 - 1
    fixed = task.initial_state(size)
    if fixed is not None:
        starts[0] = fixed
    groups, members = params.recurrent_scale.shape
    x0 = starts.to(device, dtype).expand(groups, members, inits, size)
    constant = task.constant_input().to(device, dtype)
    inputs = constant.reshape(1, 1, 1, -1).expand(1, inits, steps, -1)
    orbit = orbit_diagram(cell_obj, params, inputs, x0, keep)
    return {"scale": rs[0], "orbit": orbit.reshape(-1, orbit.shape[-1]).double().cpu()}


def sweep_orbits(cell: str, hidden_size: int, task: str, task_params: Mapping[str, Any],
                 scales: Sequence[float], *, seed: int = 0, steps: int = 1000,
                 keep: int = 60, inits: int = 6,
                 device: torch.device | str = "cpu") -> dict[str, Tensor] | None:
    """The orbit diagram of a sweep along its recurrent_scale axis, from plain sweep values.

    Args:
        cell, hidden_size: the network; task, task_params: as in a search space.
        scales: the sweep's recurrent_scale values (P of them).
        seed, steps, keep, inits: as in :func:`orbits_for`.

    Returns:
        As :func:`orbits_for`; None when the task draws no orbit diagram
        (``Task.orbit_diagram`` is False) or P < 2.

    Raises:
        SweeperInputError: an unknown task or invalid task_params.
    """
    resolved = get_task(task, dict(task_params))
    if not resolved.orbit_diagram or len(scales) < 2:
        return None
    return orbits_for(cell, hidden_size, resolved, scales, seed=seed, steps=steps, keep=keep,
                      inits=inits, device=device)


def input_words(task: Task) -> str:
    """How an orbit diagram's title names its input: "zero input" when the task's constant
    input is 0 (an autonomous map), else "constant input u = ..."."""
    constant = task.constant_input().double().flatten()
    if not bool((constant != 0).any()):
        return "zero input"
    shown = ", ".join(f"{float(v):.3g}" for v in constant[:4])
    return f"constant input u = ({shown}{', ...' if len(constant) > 4 else ''})"
