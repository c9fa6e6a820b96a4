"""How long a sweep computes, roughly, and where ``sweeper run --executor auto`` runs it.

A small sweep is done in-process sooner than an embedded Ray starts (5-10 s on a 2-core
machine, and more under load); a sweep of many trials, or of a few long ones, is worth the
start-up for running trials side by side. :func:`compute_seconds` estimates the compute
from the validated space alone, with a cost model of the families' sequential steps and
arithmetic (:func:`trial_seconds`); :func:`choose_executor` applies the rule. Pure: no torch,
nothing is built or run; ``benchmarks/bench_sweep.py --case auto`` sets the estimate beside
measured times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .cell_shapes import CellShape, cell_shape
from .protocols import DynamicsConfig, LandscapeConfig, MemoryConfig, TrainingConfig
from .space import SearchSpace, protocol_configs
from .task import get_task

#: Seconds per sequential step of a batched recurrence (the few small tensor operations a
#: step launches, whatever the batch), and float operations per second of its arithmetic at
#: H = 64 (float32 on one CPU core; larger matrices run faster, :func:`flops`). Fitted, with
#: the constants below, to measure() on this project's 2-core machine when quiet; the rule
#: only has to tell seconds from minutes (``bench_sweep.py --case auto`` prints the ratio).
STEP_SECONDS = 1e-4
FLOPS = 1.5e10
#: Seconds a point's memory measurement costs beside its steps (the attractor count's
#: bookkeeping), and a trial beside its points (its base draws, its inputs, its frame).
POINT_SECONDS = 1.5e-3
TRIAL_SECONDS = 0.02
#: Seconds per step of the memory family's long rollouts (fewer operations per step).
MEMORY_STEP_SECONDS = 5e-5
#: Per trial, the memory fits' set-up (the delayed inputs, each delay's solves), times D^2.
MEMORY_SETUP_SECONDS = 2e-6
#: Seconds per sequential step of a forward and backward pass through the sequence (autograd
#: records and replays each step's operations): the landscape's passes and training's steps.
GRADIENT_STEP_SECONDS = 2.5e-4
#: ``--executor auto`` runs a sweep in-process when its estimated compute is under this.
AUTO_LOCAL_SECONDS = 10.0


def flops(hidden_size: int) -> float:
    """Float operations per second of a step's arithmetic at hidden size H."""
    return FLOPS * max(1.0, hidden_size / 64)


def _steps(steps: int, batch: int, flops_per_item: float, rate: float,
           step_seconds: float) -> float:
    """Seconds of ``steps`` sequential steps over a batch of ``batch`` items."""
    return steps * (step_seconds + batch * flops_per_item / rate)


def trial_seconds(cell: CellShape, input_size: int, hidden_size: int, seq_len: int,
                  points: int, metrics: Sequence[str], *,
                  dynamics: DynamicsConfig | None = None, memory: MemoryConfig | None = None,
                  landscape: LandscapeConfig | None = None,
                  training: TrainingConfig | None = None) -> float:
    """Order-of-magnitude compute seconds of one trial of ``points`` points (K) on one CPU
    core in float32, with the families' protocols (defaults: their config classes').

    Each family is a few batched recurrences: sequential steps, each costing a launch
    overhead plus its arithmetic, 2 F (H + I) float operations per item for the
    state update (F = gates x H rows, I inputs); the memory family adds its ridge fits, the
    landscape family its loss slices and Hessian products, training its optimiser steps.
    """
    state, rows = cell.state_size(hidden_size), cell.gates * hidden_size
    step, rate = 2.0 * rows * (hidden_size + input_size), flops(hidden_size)
    # A gated cell launches more operations per step (its gates, its cell state).
    ops = 1.0 + (cell.gates - 1) / 3

    def _recurrence(steps: int, batch: int, flops_per_item: float, rate: float,
                    step_seconds: float = STEP_SECONDS) -> float:
        return _steps(steps, batch, flops_per_item, rate, ops * step_seconds)

    seconds = TRIAL_SECONDS
    dyn = dynamics or DynamicsConfig()
    if {"lipschitz", "lyapunov", "memory"} & set(metrics):
        tangents = 1 + min(dyn.lyapunov_k, state)
        seconds += _recurrence(dyn.burn_in + seq_len, points * dyn.n_trajectories,
                               step * (1 + 2 * tangents), rate)
    if "memory" in metrics:
        mem = memory or MemoryConfig()
        length, delays = mem.train + mem.test, mem.delays(state)
        # Per trial, the fits' set-up (the delayed inputs, each delay's solves): fitted, it
        # grows about as D squared.
        seconds += points * POINT_SECONDS + MEMORY_SETUP_SECONDS * state**2
        seconds += _recurrence(mem.washout_steps(state) + length, points, step, rate,
                               MEMORY_STEP_SECONDS)
        # Each point's ridge fit: the Gram matrices of the states against themselves and the
        # delayed inputs, over the fitting window.
        seconds += points * 2.0 * length * (state + 1) * (state + 1 + delays) / rate
        seconds += _recurrence(mem.attractor_steps + mem.attractor_window,
                               points * mem.attractor_inits, step, rate, MEMORY_STEP_SECONDS)
    if "landscape" in metrics:
        land = landscape or LandscapeConfig()
        # Forward and backward passes over the loss's sequence: the slices' points, the
        # gradient and the Hessian-vector products (each about four passes).
        passes = land.points + 4 * (1 + land.hessian_steps)
        seconds += passes * _recurrence(seq_len, points * land.batch_size, 3 * step, rate,
                                        GRADIENT_STEP_SECONDS)
    if "training" in metrics:
        train = training or TrainingConfig()
        seconds += train.steps * _recurrence(seq_len, points * train.batch_size, 3 * step,
                                             rate, GRADIENT_STEP_SECONDS)
        seconds += _recurrence(seq_len, points * train.val_batch_size, step, rate)
    return seconds


def compute_seconds(space: SearchSpace) -> float:
    """Estimated compute seconds of the whole sweep in one process: every trial's
    :func:`trial_seconds` (a refined sweep: its planned points, in trials of the vectorised
    axes' size)."""
    task = get_task(space.task, space.task_params)
    shape = cell_shape(space.cell)
    protocols = {k: v for k, v in protocol_configs(space).items()
                 if k in ("dynamics", "memory", "landscape", "training")}
    per_trial = 1
    for axis in space.vectorize:
        per_trial *= len(space.axes[axis])
    trials = max(1, -(-space.planned_points // per_trial))
    # Every trial is costed at the largest hidden size and sequence length: an upper bound.
    seconds = trial_seconds(shape, task.input_size, max(space.axes["hidden_size"]),
                            max(space.axes["seq_len"]), per_trial, space.metrics, **protocols)
    return trials * seconds


@dataclass(frozen=True)
class ExecutorChoice:
    """Where ``sweeper run`` computes: ``name`` is ``local`` (in-process) or ``ray``;
    ``reason`` says why, in words for the console."""

    name: str
    reason: str


def choose_executor(requested: str, address: str | None, trials: int | None,
                    seconds: float) -> ExecutorChoice:
    """The executor of a sweep: ``requested`` (``ray`` or ``local``) as given; ``auto``
    (the default) runs in-process a sweep of one trial (``trials``; None for a refined
    sweep, whose rounds are not known in advance) or of under :data:`AUTO_LOCAL_SECONDS`
    estimated compute (``seconds``, :func:`compute_seconds`), and any other on Ray. A
    cluster ``address`` always means Ray."""
    if requested not in ("auto", "ray", "local"):
        raise ValueError(f"executor must be auto, ray or local, got {requested!r}")
    if requested != "auto":
        return ExecutorChoice(requested, f"--executor {requested}")
    if address is not None:
        return ExecutorChoice("ray", f"--address {address}")
    if trials == 1:
        return ExecutorChoice("local", "one trial: nothing to run side by side")
    if seconds < AUTO_LOCAL_SECONDS:
        return ExecutorChoice("local", f"about {_duration(seconds)} of compute, under "
                                       f"{AUTO_LOCAL_SECONDS:.0f} s: sooner than Ray starts")
    count = "a refined sweep" if trials is None else f"{trials} trials"
    return ExecutorChoice("ray", f"{count}, about {_duration(seconds)} of compute, run side "
                                 "by side")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
