"""Every metric family through the public ``measure()``, on realistic shapes, against sgemm and a
naive per-point baseline (issue 13).

Rows (each one ``sweeper.measure.measure`` call, float32, one seed, written as a user writes it):

  lyapunov            rnn_tanh H=256, K=128 scalings linspace(0.5, 2.5), seq_len 1000 (+ burn_in
                      100), zero input (task "noise", input_std 0). Target >= 50 % of sgemm.
  lipschitz_lyapunov  the same with metrics [lipschitz, lyapunov]. Target <= 1.5 x lyapunov.
  lipschitz           the same with metrics [lipschitz] (reference).
  memory              the same with metrics [memory]. Target >= 30 % of sgemm.
  lyapunov_h64        lyapunov at H=64. Target >= 30 % of sgemm.
  landscape_lstm      the paper's chaotic LSTM (search_spaces/paper_chaotic_lstm.yaml): lstm,
                      H=2, task chaotic_lstm {initial 0.5, burn_in 100}, seq_len 200, K=200
                      scalings linspace(0.5, 2.0), metrics [landscape].
  landscape_teacher   rnn_tanh H=64 on task "teacher", seq_len 200, K=8 scalings, [landscape].
  training            rnn_tanh H=64 on "teacher", seq_len 200, K=64,
                      TrainingConfig(steps=20, val_batch_size=64).
  lyapunov_h512       (CUDA only) lyapunov at H=512 with K=1024 scalings.

Minimal FLOPs (multiply-add = 2 FLOP; elementwise work, input projections with I=1 and Lanczos
re-orthogonalisation ignored). F = gates * H (rnn_tanh 1, gru 3, lstm 4), D = state size (H; 2H
for lstm), B = n_trajectories, S = burn_in + seq_len, K points:

  lyapunov   K B S 2FH (1 + k), k = lyapunov_k tangents carried with the state.
  lipschitz  K B [S 2FH + n_s m 2FH], n_s = min(lipschitz_samples, seq_len) sampled steps,
             m = min(lanczos_steps, D) Lanczos steps of one product with J J^T each (for the
             Elman cells of these rows J J^T = s^2 diag(phi') W W^T diag(phi'), one H x H
             product, W W^T formed once per draw; J^T J would take two); with
             lyapunov the state is counted once: lyapunov + K B n_s m 2 2FH.
  memory     K [B S 2FH 2                             tangent pass (memory horizon)
               + (washout + train + test) 2FH          capacity rollout
               + 2 train (D+1)^2 + 2 train (D+1) Kmax  ridge: gram, X^T Y   (Kmax = 2D)
               + 2 test (D+1) Kmax                     prediction
               + inits (steps 2FH + window 2 2FH)]     attractors (state, then state+tangent)
             the ridge part runs in float64, so % of the float32 sgemm understates it.
  landscape  with f = batch_size T (2FH + 2HO) one forward on the loss batch (T = the task's
             sequence: burn_in + seq_len for chaotic_lstm; O outputs, linear readout; identity
             readout: 0): K f [1 target + 1 loss + 3 grad + 3 + 4 hessian_steps + 2 points],
             (targets of the same net at s = 1, the loss, the gradient by BPTT, the graph for
             Hessian-vector products and ~4 forwards per product, two slices of P points).
  training   K [steps (1 target + 3) f(batch_size) + (1 target + 1) f(val_batch_size)].

Naive baselines, per point in a Python loop, clearly not batched (same work, same steps; when
the whole sweep would take more than a few seconds, a subset of points is timed and the time
scaled to K, labelled "extrapolated from n points"):

  lyapunov   torch.nn.RNN for the states, then a torch.mv loop for the tangent (bench_core.py).
  lipschitz  torch.nn.RNN for the states, then at each sampled step the explicit Jacobian
             diag(1 - x^2) s W and torch.linalg.matrix_norm(J, 2).
  memory     the lyapunov loop, a torch.nn.RNN rollout of the capacity input and one
             torch.linalg.lstsq per delay (float64; a subset of delays timed and scaled to Kmax,
             labelled), then the attractor runs (torch.nn.RNN over the inits, torch.mv tangents).
  landscape  torch.nn.RNN / LSTM + readout as a function of a flat theta (torch.func), targets,
             loss, gradient, power iteration with torch.autograd.functional.hvp (hessian_steps
             products) and 2 P slice losses, one forward each.
  training   torch.optim.Adam on a torch.nn.RNN + Linear, fresh batch and teacher targets per
             step, clipping, then the validation batch.
Their weights are their own N(0, 1/H) draws (the cost does not depend on the values).

Run:
  .venv/bin/python benchmarks/bench_workloads.py [--quick] [--rows lyapunov,memory,...]
      [--device cuda] [--threads N] [--json OUT.json] [--compare OLD.json [--new NEW.json]]
``--compare OLD.json`` prints OLD and this run side by side; with ``--new NEW.json`` it compares
two saved runs without running anything.

Timing: each row is called once (warm-up, timed); then up to ``repeats`` more calls if they fit
in the row's time budget, the median of those is reported (else the single cold call, marked
"cold"). The sgemm peak (torch.mm 2048 x 2048 float32, median) is measured before and after the
rows and the larger is used. On a small shared CPU box the load average (printed) matters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from _timing import median_time, sync

import sweeper
from sweeper.dynamics import DynamicsConfig
from sweeper.landscape_metrics import LandscapeConfig
from sweeper.measure import measure
from sweeper.memory import MemoryConfig
from sweeper.training import TrainingConfig

GATES = {"rnn_tanh": 1, "gru": 3, "lstm": 4}
ZERO_INPUT = {"input_std": 0.0}  # task "noise" with input_std 0: u_t = 0 (autonomous)
TEACHER = {"reference": 1.0, "input_std": 1.0}
CHAOTIC = {"initial": 0.5, "burn_in": 100}


@dataclass(frozen=True)
class Settings:
    """How hard to measure: repeats after the warm-up, seconds a row may spend on them, seconds
    one naive repeat may take before a subset of points is used."""

    repeats: int
    row_budget_s: float
    naive_budget_s: float
    naive_repeats: int


FULL = Settings(repeats=5, row_budget_s=120.0, naive_budget_s=5.0, naive_repeats=3)
QUICK = Settings(repeats=1, row_budget_s=20.0, naive_budget_s=2.0, naive_repeats=1)


@dataclass
class Workload:
    """One row: the measure() call, its minimal FLOPs and its naive per-point baseline.

    ``naive(points)`` runs the baseline for those point indices and returns the seconds the
    whole subset stands for (it may itself time a subset of delays and scale, see ``note``).
    """

    name: str
    shape: str
    points: int
    call: Callable[[], object]
    flops: float
    naive: Callable[[list[int]], float] | None
    naive_note: str = ""
    target: tuple = ()  # ("sgemm", 0.5) or ("ratio", "lyapunov", 1.5)
    results: dict = field(default_factory=dict)


def forward_flops(cell: str, hidden: int, outputs: int) -> float:
    """FLOPs of one step of one sequence: recurrent product + linear readout."""
    return 2 * GATES[cell] * hidden * hidden + 2 * hidden * outputs


# ---------------------------------------------------------------------------------------------
# Naive per-point baselines (rnn_tanh unless stated; own weights, zero bias).


def _rnn(hidden: int, weight: torch.Tensor, scale: float, device) -> torch.nn.RNN:
    rnn = torch.nn.RNN(1, hidden, nonlinearity="tanh", bias=False).to(device)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(scale * weight)
    return rnn


def _draw(hidden: int, device, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(hidden, hidden, generator=gen) / math.sqrt(hidden)).to(device)


def _states(rnn: torch.nn.RNN, inputs: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    out, _ = rnn(inputs, x0)
    return out[:, 0]  # (T, H)


def naive_dynamics(hidden: int, scales: np.ndarray, steps: int, burn_in: int, device,
                   tangents: bool, samples: list[int]) -> Callable[[list[int]], float]:
    """Lyapunov (tangent mv loop) and / or Lipschitz (explicit Jacobian norms) per point."""
    weight = _draw(hidden, device)
    zeros = torch.zeros(steps, 1, 1, device=device)

    def run(points: list[int]) -> float:
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            for k in points:
                scaled = float(scales[k]) * weight
                rnn = _rnn(hidden, weight, float(scales[k]), device)
                x = _states(rnn, zeros, torch.rand(1, 1, hidden, device=device) * 2 - 1)
                if tangents:
                    v = torch.randn(hidden, device=device)
                    v = v / v.norm()
                    total = torch.zeros((), device=device)
                    for t in range(steps):
                        v = (1 - x[t] ** 2) * torch.mv(scaled, v)
                        norm = v.norm()
                        if t >= burn_in:
                            total = total + norm.log()
                        v = v / norm
                for t in samples:
                    jacobian = (1 - x[t] ** 2)[:, None] * scaled
                    torch.linalg.matrix_norm(jacobian, 2)
        sync(device)
        return time.perf_counter() - start

    return run


def naive_memory(hidden: int, scales: np.ndarray, steps: int, burn_in: int, config: MemoryConfig,
                 device, delays_timed: int) -> tuple[Callable[[list[int]], float], str]:
    """Tangent pass, capacity (rollout + lstsq per delay, a subset timed), attractors."""
    tangent_pass = naive_dynamics(hidden, scales, steps, burn_in, device, True, [])
    weight = _draw(hidden, device)
    w_in = torch.randn(hidden, 1, generator=torch.Generator().manual_seed(1)).to(device)
    delays = config.delays(hidden)
    washout = config.washout_steps(hidden)
    total = washout + config.train + config.test
    u = (torch.rand(total, generator=torch.Generator().manual_seed(2)) * 2 - 1).to(device)
    chosen = np.linspace(1, delays, min(delays_timed, delays)).round().astype(int)
    inits = config.attractor_inits
    window = config.attractor_window

    def run(points: list[int]) -> float:
        seconds = tangent_pass(points)
        with torch.no_grad():
            for k in points:
                sync(device)
                start = time.perf_counter()
                rnn = _rnn(hidden, weight, float(scales[k]), device)
                with torch.no_grad():
                    rnn.weight_ih_l0.copy_(w_in)
                x = _states(rnn, u.reshape(total, 1, 1), torch.zeros(1, 1, hidden, device=device))
                design = torch.cat([x[washout:].double(),
                                    torch.ones(total - washout, 1, dtype=torch.float64,
                                               device=device)], dim=1)
                fit, held = design[:config.train], design[config.train:]
                sync(device)
                rollout = time.perf_counter() - start
                start = time.perf_counter()
                for delay in chosen:
                    target = u[washout - delay:total - delay].double()[:, None]
                    coef = torch.linalg.lstsq(fit, target[:config.train]).solution
                    pred = (held @ coef)[:, 0]
                    torch.corrcoef(torch.stack([pred, target[config.train:, 0]]))
                sync(device)
                ridge = (time.perf_counter() - start) * delays / len(chosen)
                start = time.perf_counter()
                scaled = float(scales[k]) * weight
                x0 = torch.rand(1, inits, hidden, device=device) * 2 - 1
                zeros = torch.zeros(config.attractor_steps + window, inits, 1, device=device)
                rnn = _rnn(hidden, weight, float(scales[k]), device)
                orbit, _ = rnn(zeros, x0)  # (steps + window, inits, H)
                for i in range(inits):
                    v = torch.ones(hidden, device=device) / math.sqrt(hidden)
                    for t in range(config.attractor_steps, config.attractor_steps + window):
                        v = (1 - orbit[t, i] ** 2) * torch.mv(scaled, v)
                        v = v / v.norm()
                sync(device)
                seconds += rollout + ridge + time.perf_counter() - start
        return seconds

    return run, f"{len(chosen)} of {delays} delays' lstsq timed"


def _flat_model(cell: str, hidden: int, outputs: int, readout: bool, device):
    """A torch.nn RNN/LSTM (+ Linear readout) and f(theta, inputs, h0) for a flat theta."""
    if cell == "lstm":
        net = torch.nn.LSTM(1, hidden).to(device)
    else:
        net = torch.nn.RNN(1, hidden, nonlinearity="tanh").to(device)
    head = torch.nn.Linear(hidden, outputs).to(device) if readout else None
    modules = {"net": net} | ({"head": head} if head is not None else {})
    names, shapes, tensors = [], [], []
    for prefix, module in modules.items():
        for name, p in module.named_parameters():
            names.append((prefix, name))
            shapes.append(p.shape)
            tensors.append(p.detach().reshape(-1))
    theta0 = torch.cat(tensors)

    def forward(theta: torch.Tensor, inputs: torch.Tensor, state) -> torch.Tensor:
        parts, start = {"net": {}, "head": {}}, 0
        for (prefix, name), shape in zip(names, shapes, strict=True):
            size = math.prod(shape)
            parts[prefix][name] = theta[start:start + size].reshape(shape)
            start += size
        out, _ = torch.func.functional_call(net, parts["net"], (inputs, state))
        if head is not None:
            out = torch.func.functional_call(head, parts["head"], (out,))
        return out

    return forward, theta0, names, shapes


def naive_landscape(cell: str, hidden: int, scales: np.ndarray, seq: int, loss_from: int,
                    batch: int, config: LandscapeConfig, outputs: int, readout: bool,
                    initial: float | None, device) -> Callable[[list[int]], float]:
    """Per point: targets at s = 1, loss, gradient, power iteration on hvp, two slices."""
    forward, theta0, names, shapes = _flat_model(cell, hidden, outputs, readout, device)
    recurrent = torch.zeros_like(theta0)
    start = 0
    for (_, name), shape in zip(names, shapes, strict=True):
        if name == "weight_hh_l0":
            recurrent[start:start + math.prod(shape)] = 1
        start += math.prod(shape)
    gen = torch.Generator().manual_seed(0)
    if initial is None:
        inputs = torch.randn(seq, batch, 1, generator=gen).to(device)
        h0 = torch.zeros(1, batch, hidden, device=device)
    else:
        inputs = torch.zeros(seq, batch, 1, device=device)
        h0 = torch.full((1, batch, hidden), initial, device=device)
    state = (h0, h0.clone()) if cell == "lstm" else h0
    random_dir = torch.randn(theta0.shape, generator=gen).to(device)
    alphas = torch.linspace(-config.radius, config.radius, config.points).tolist()

    def theta_at(s: float) -> torch.Tensor:
        return theta0 * (1 + (s - 1) * recurrent)

    def run(points: list[int]) -> float:
        sync(device)
        start = time.perf_counter()
        for k in points:
            with torch.no_grad():
                target = forward(theta_at(1.0), inputs, state)[loss_from:]
            theta = theta_at(float(scales[k]))

            def loss(t: torch.Tensor, target=target) -> torch.Tensor:
                out = forward(t, inputs, state)[loss_from:]
                return ((out[..., :outputs] - target[..., :outputs]) ** 2).mean()

            with torch.no_grad():
                loss(theta)
            torch.autograd.functional.vjp(loss, theta)  # the gradient
            v = torch.randn(theta.shape, device=device)
            for _ in range(config.hessian_steps):
                _, v = torch.autograd.functional.hvp(loss, theta, v / v.norm())
            with torch.no_grad():
                along = theta0 * recurrent
                for direction in (along, random_dir):
                    for a in alphas:
                        loss(theta + a * direction)
        sync(device)
        return time.perf_counter() - start

    return run


def naive_training(hidden: int, scales: np.ndarray, seq: int, config: TrainingConfig,
                   device) -> Callable[[list[int]], float]:
    """Per point: torch.optim.Adam over a torch.nn.RNN + Linear on fresh teacher batches."""

    def run(points: list[int]) -> float:
        sync(device)
        start = time.perf_counter()
        for k in points:
            torch.manual_seed(k)
            net = torch.nn.RNN(1, hidden, nonlinearity="tanh", batch_first=True).to(device)
            head = torch.nn.Linear(hidden, 1).to(device)
            teacher_net = torch.nn.RNN(1, hidden, nonlinearity="tanh", batch_first=True).to(device)
            teacher_net.load_state_dict(net.state_dict())
            with torch.no_grad():
                net.weight_hh_l0.mul_(float(scales[k]))
            params = [*net.parameters(), *head.parameters()]
            optimiser = torch.optim.Adam(params, lr=config.lr, betas=config.betas,
                                         eps=config.eps)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
            for _ in range(config.steps):
                inputs = torch.randn(config.batch_size, seq, 1, device=device)
                with torch.no_grad():
                    target = head(teacher_net(inputs)[0])
                loss = ((head(net(inputs)[0]) - target) ** 2).mean()
                optimiser.zero_grad()
                loss.backward()
                if config.clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.clip)
                optimiser.step()
                schedule.step()
            with torch.no_grad():
                inputs = torch.randn(config.val_batch_size, seq, 1, device=device)
                ((head(net(inputs)[0]) - head(teacher_net(inputs)[0])) ** 2).mean()
        sync(device)
        return time.perf_counter() - start

    return run


# ---------------------------------------------------------------------------------------------
# The rows.


def dynamics_rows(hidden: int, points: int, device: str, suffix: str = "",
                  families: tuple[str, ...] = ("lyapunov", "lipschitz_lyapunov", "lipschitz",
                                               "memory")) -> list[Workload]:
    seq_len, dynamics, memory = 1000, DynamicsConfig(), MemoryConfig()
    scales = np.linspace(0.5, 2.5, points)
    steps = dynamics.burn_in + seq_len
    per_step = 2 * GATES["rnn_tanh"] * hidden * hidden  # 2FH
    trajectories = dynamics.n_trajectories
    lyapunov = points * trajectories * steps * per_step * (1 + dynamics.lyapunov_k)
    n_samples = min(dynamics.lipschitz_samples, seq_len)
    lanczos = points * trajectories * n_samples * min(dynamics.lanczos_steps, hidden) * per_step
    state = points * trajectories * steps * per_step
    samples = sorted({dynamics.burn_in + round(i * (seq_len - 1) / max(n_samples - 1, 1))
                      for i in range(n_samples)})
    shape = f"rnn_tanh H={hidden} K={points} T={seq_len}+{dynamics.burn_in} zero input"

    def call(metrics: list[str]) -> Callable[[], object]:
        return lambda: measure("rnn_tanh", hidden, task="noise", task_params=ZERO_INPUT,
                               recurrent_scale=scales.tolist(), seq_len=seq_len,
                               metrics=metrics, device=device, dynamics=dynamics,
                               memory=memory)

    def naive(tangents: bool, sampled: list[int]):
        return naive_dynamics(hidden, scales, steps, dynamics.burn_in, device, tangents, sampled)

    rows = []
    if "lyapunov" in families:
        rows.append(Workload(f"lyapunov{suffix}", shape, points, call(["lyapunov"]), lyapunov,
                             naive(True, []), target=("sgemm", 0.5 if hidden >= 256 else 0.3)))
    if "lipschitz_lyapunov" in families:
        rows.append(Workload("lipschitz_lyapunov", shape, points,
                             call(["lipschitz", "lyapunov"]), lyapunov + lanczos,
                             naive(True, samples), target=("ratio", "lyapunov", 1.5)))
    if "lipschitz" in families:
        rows.append(Workload("lipschitz", shape, points, call(["lipschitz"]), state + lanczos,
                             naive(False, samples)))
    if "memory" in families:
        size, delays = hidden, memory.delays(hidden)
        rollout = memory.washout_steps(hidden) + memory.train + memory.test
        ridge = (2 * memory.train * (size + 1) ** 2 + 2 * memory.train * (size + 1) * delays
                 + 2 * memory.test * (size + 1) * delays)
        attractors = memory.attractor_inits * (memory.attractor_steps * per_step
                                               + memory.attractor_window * 2 * per_step)
        flops = points * (trajectories * steps * per_step * 2 + rollout * per_step + ridge
                          + attractors)
        run, note = naive_memory(hidden, scales, steps, dynamics.burn_in, memory, device, 32)
        rows.append(Workload("memory", shape, points, call(["memory"]), flops, run, note,
                             target=("sgemm", 0.3)))
    return rows


def landscape_lstm_row(device: str) -> Workload:
    points, seq_len, config = 200, 200, LandscapeConfig()
    scales = np.linspace(0.5, 2.0, points)
    seq = CHAOTIC["burn_in"] + seq_len
    f = config.batch_size * seq * forward_flops("lstm", 2, 0)  # identity readout
    flops = points * f * (1 + 1 + 3 + 3 + 4 * config.hessian_steps + 2 * config.points)
    return Workload(
        "landscape_lstm", f"lstm H=2 chaotic_lstm K={points} T={seq_len}+{CHAOTIC['burn_in']}",
        points,
        lambda: measure("lstm", 2, task="chaotic_lstm", task_params=CHAOTIC,
                        recurrent_scale=scales.tolist(), seq_len=seq_len, metrics=["landscape"],
                        device=device, landscape=config),
        flops,
        naive_landscape("lstm", 2, scales, seq, CHAOTIC["burn_in"], config.batch_size, config,
                        2, False, CHAOTIC["initial"], device))


def landscape_teacher_row(device: str) -> Workload:
    points, hidden, seq_len, config = 8, 64, 200, LandscapeConfig()
    scales = np.linspace(0.5, 2.5, points)
    f = config.batch_size * seq_len * forward_flops("rnn_tanh", hidden, 1)
    flops = points * f * (1 + 1 + 3 + 3 + 4 * config.hessian_steps + 2 * config.points)
    return Workload(
        "landscape_teacher", f"rnn_tanh H={hidden} teacher K={points} T={seq_len}", points,
        lambda: measure("rnn_tanh", hidden, task="teacher", task_params=TEACHER,
                        recurrent_scale=scales.tolist(), seq_len=seq_len, metrics=["landscape"],
                        device=device, landscape=config),
        flops,
        naive_landscape("rnn_tanh", hidden, scales, seq_len, 0, config.batch_size, config, 1,
                        True, None, device))


def training_row(device: str) -> Workload:
    points, hidden, seq_len = 64, 64, 200
    config = TrainingConfig(steps=20, val_batch_size=64)
    scales = np.linspace(0.5, 2.5, points)
    per_step = forward_flops("rnn_tanh", hidden, 1) * seq_len
    flops = points * per_step * (config.steps * 4 * config.batch_size
                                 + 2 * config.val_batch_size)
    return Workload(
        "training", f"rnn_tanh H={hidden} teacher K={points} T={seq_len} steps={config.steps}",
        points,
        lambda: measure("rnn_tanh", hidden, task="teacher", task_params=TEACHER,
                        recurrent_scale=scales.tolist(), seq_len=seq_len, metrics=["training"],
                        device=device, training=config),
        flops, naive_training(hidden, scales, seq_len, config, device))


def build_rows(device: str) -> dict[str, Callable[[], list[Workload]]]:
    """Row name -> builder (built lazily, only for the selected rows)."""
    rows: dict[str, Callable[[], list[Workload]]] = {
        name: (lambda name=name: dynamics_rows(256, 128, device, families=(name,)))
        for name in ("lyapunov", "lipschitz_lyapunov", "lipschitz", "memory")
    }
    rows["lyapunov_h64"] = lambda: dynamics_rows(64, 128, device, "_h64", ("lyapunov",))
    rows["landscape_lstm"] = lambda: [landscape_lstm_row(device)]
    rows["landscape_teacher"] = lambda: [landscape_teacher_row(device)]
    rows["training"] = lambda: [training_row(device)]
    if torch.device(device).type == "cuda":
        rows["lyapunov_h512"] = lambda: dynamics_rows(512, 1024, device, "_h512", ("lyapunov",))
    return rows


# ---------------------------------------------------------------------------------------------
# Measuring and printing.


def sgemm_gflops(device: str, repeats: int) -> float:
    big = torch.randn(2048, 2048, device=device)
    seconds = median_time(lambda: torch.mm(big, big), repeats, device)
    return 2 * 2048**3 / seconds / 1e9


def time_row(fn: Callable[[], object], settings: Settings, device: str) -> tuple[float, str]:
    """The first call is the warm-up (timed); more calls while the budget allows."""
    first = median_time(fn, 1, device, warm_up=False)
    repeats = min(settings.repeats, int(settings.row_budget_s // max(first, 1e-9)))
    if repeats == 0:
        return first, "cold x1"
    return median_time(fn, repeats, device, warm_up=False), f"x{repeats}"


def time_naive(row: Workload, settings: Settings) -> tuple[float, int]:
    """Seconds the naive loop would take over all K points, and how many were timed."""
    per_point = row.naive([0])
    count = max(1, min(row.points, int(settings.naive_budget_s // max(per_point, 1e-9))))
    if count == 1:
        return per_point * row.points, 1
    subset = np.linspace(0, row.points - 1, count).round().astype(int).tolist()
    times = sorted(row.naive(subset) for _ in range(settings.naive_repeats))
    return times[len(times) // 2] * row.points / count, count


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


HEADER = (f"{'row':<20} {'wall s':>9} {'runs':>7} {'GFLOP':>9} {'GFLOP/s':>8} {'%sgemm':>7} "
          f"{'naive s':>9} {'speed-up':>8}  target / note")


def run_rows(rows: list[Workload], settings: Settings, device: str, naive: bool,
             checkpoint: Callable[[], None]) -> None:
    """Time every row; a row that raises is reported and skipped (its error kept)."""
    for row in rows:
        try:
            seconds, runs = time_row(row.call, settings, device)
        except Exception as exc:  # one broken row must not lose the others
            row.results = {"shape": row.shape, "error": f"{type(exc).__name__}: {exc}"}
            print(f"  FAILED {row.name}: {row.results['error']}", flush=True)
            continue
        row.results = {"shape": row.shape, "seconds": seconds, "runs": runs,
                       "gflop": row.flops / 1e9, "gflops": row.flops / seconds / 1e9,
                       "load_after": load()}
        print(f"  {row.name}: {seconds:.2f} s ({runs}), load {load()}", flush=True)
        if naive and row.naive is not None:
            try:
                naive_s, count = time_naive(row, settings)
            except Exception as exc:
                row.results["naive_note"] = f"failed: {type(exc).__name__}: {exc}"
                print(f"  naive {row.name} FAILED: {exc}", flush=True)
            else:
                note = (f"extrapolated from {count} of {row.points} points"
                        if count < row.points else "all points")
                if row.naive_note:
                    note += f"; {row.naive_note}"
                row.results.update(naive_seconds=naive_s, naive_note=note,
                                   speedup=naive_s / seconds)
                print(f"  naive {row.name}: {naive_s:.1f} s ({note})", flush=True)
        checkpoint()


def finish(rows: list[Workload], peak: float) -> None:
    by_name = {r.name: r for r in rows if "seconds" in r.results}
    for row in by_name.values():
        res = row.results
        res["pct_sgemm"] = res["gflops"] / peak
        if row.target and row.target[0] == "sgemm":
            res["target"] = f">= {row.target[1]:.0%} sgemm"
            res["met"] = res["pct_sgemm"] >= row.target[1]
        elif row.target and row.target[1] in by_name:
            ratio = res["seconds"] / by_name[row.target[1]].results["seconds"]
            res["ratio"] = ratio
            res["target"] = f"{ratio:.2f}x {row.target[1]} (<= {row.target[2]}x)"
            res["met"] = ratio <= row.target[2]


def print_table(rows: dict[str, dict]) -> None:
    print(HEADER)
    for name, res in rows.items():
        if "error" in res:
            print(f"{name:<20} FAILED: {res['error']}")
            continue
        naive = res.get("naive_seconds")
        naive_s = f"{naive:9.1f}" if naive is not None else f"{'-':>9}"
        speed = f"{res['speedup']:7.1f}x" if naive is not None else f"{'-':>8}"
        note = res.get("target", "")
        if "met" in res:
            note += " MET" if res["met"] else " not met"
        print(f"{name:<20} {res['seconds']:9.3f} {res['runs']:>7} {res['gflop']:9.2f} "
              f"{res['gflops']:8.2f} {res['pct_sgemm']:7.1%} {naive_s} {speed}  {note}")
    print("shapes and baselines:")
    for name, res in rows.items():
        print(f"  {name:<20} {res['shape']}; naive: {res.get('naive_note', 'not run')}")


def compare(old: dict, new: dict) -> None:
    """Old and new figures side by side; ratio > 1 means the new run is faster."""
    labels = old["meta"].get("label", "?"), new["meta"].get("label", "?")
    print(f"\ncompare: old = {labels[0]}, new = {labels[1]}")
    for key in ("torch", "threads", "device", "sgemm_gflops", "load_start"):
        print(f"  {key:<13} old {old['meta'].get(key)!s:<24} new {new['meta'].get(key)!s}")
    print(f"{'row':<20} {'old s':>9} {'new s':>9} {'old/new':>8} {'old %sg':>8} {'new %sg':>8} "
          f"{'old x':>7} {'new x':>7}")
    for name in [n for n in new["rows"] if n in old["rows"]]:
        if "seconds" not in old["rows"][name] or "seconds" not in new["rows"][name]:
            print(f"{name:<20} (failed in one run)")
            continue
        a, b = old["rows"][name], new["rows"][name]
        sp_a, sp_b = a.get("speedup", math.nan), b.get("speedup", math.nan)
        pct_a, pct_b = a.get("pct_sgemm", math.nan), b.get("pct_sgemm", math.nan)
        def times(value: float) -> str:  # a speed-up, or "-" where the naive run was skipped
            return f"{'-':>7}" if math.isnan(value) else f"{value:6.1f}x"

        print(f"{name:<20} {a['seconds']:9.3f} {b['seconds']:9.3f} "
              f"{a['seconds'] / b['seconds']:7.2f}x {pct_a:8.1%} {pct_b:8.1%} "
              f"{times(sp_a)} {times(sp_b)}")
    missing = sorted(set(old["rows"]) ^ set(new["rows"]))
    if missing:
        print(f"  rows in only one run: {missing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 repeat after the warm-up, slow rows timed once, small naive "
                        "subsets")
    parser.add_argument("--rows", help="comma-separated row names (default: all)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baselines")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--compare", metavar="OLD.json", help="print OLD and new side by side")
    parser.add_argument("--new", metavar="NEW.json",
                        help="with --compare: compare to this saved run instead of running")
    parser.add_argument("--label", help="a name for this run in --compare (default: time)")
    args = parser.parse_args()
    if args.new:
        if not args.compare:
            parser.error("--new needs --compare OLD.json")
        with open(args.compare) as old, open(args.new) as new:
            compare(json.load(old), json.load(new))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available")
    builders = build_rows(device)
    names = list(builders) if not args.rows else args.rows.split(",")
    unknown = [n for n in names if n not in builders]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {list(builders)}")
    settings = QUICK if args.quick else FULL
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, "
          f"sweeper from {os.path.dirname(sweeper.__file__)}")
    load_start = load()
    print(f"load average at start {load_start}; {'quick' if args.quick else 'full'}: "
          f"{settings}", flush=True)
    started = time.perf_counter()
    peaks = [sgemm_gflops(device, 5)]
    print(f"sgemm 2048^3 float32: {peaks[0]:.1f} GFLOP/s", flush=True)
    rows = [w for name in names for w in builders[name]()]
    meta = {"label": args.label or time.strftime("%Y-%m-%d %H:%M:%S"),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": device,
            "quick": args.quick, "sgemm_gflops": peaks[0], "load_start": load_start,
            "sweeper": os.path.dirname(sweeper.__file__)}

    def figures() -> dict:
        return {"meta": meta | {"total_s": time.perf_counter() - started},
                "rows": {r.name: r.results for r in rows if r.results}}

    def checkpoint() -> None:  # partial figures survive an interrupted run
        finish(rows, max(peaks))
        if args.json:
            with open(args.json, "w") as out:
                json.dump(figures(), out, indent=1)

    run_rows(rows, settings, device, not args.no_naive, checkpoint)
    peaks.append(sgemm_gflops(device, 5))
    peak = max(peaks)
    meta["sgemm_gflops"] = peak
    finish(rows, peak)
    print(f"\nsgemm peak {peak:.1f} GFLOP/s (start {peaks[0]:.1f}, end {peaks[1]:.1f}); "
          f"load average at end {load()}; total {time.perf_counter() - started:.0f} s")
    print_table({r.name: r.results for r in rows})
    checkpoint()
    if args.compare:
        with open(args.compare) as old:
            compare(json.load(old), figures())


if __name__ == "__main__":
    main()
