"""Training step cost: one train() step against one forward + backward of the same batch.

rnn_tanh, K points (one group, recurrent_scale spread over [0.5, 2], one input scale, the
usual sweep layout), a batch of 32 sequences of 100 steps, float32, on tasks teacher (mse
against the s = reference outputs) and temporal_order (classification).

  step     = (train(steps=1 + N) - train(steps=1)) / N: setup and validation subtracted
  fwd+bwd  = Objective(theta).sum().backward() on one fixed batch
  ratio    = step / fwd+bwd (target <= 1.3)

"new" is sweeper.training.train; "old" is the loop as it was (kept inline below): the whole
objective rebuilt every step (parameters flattened again, one teacher forward per point) and
a forward whose backward indexes the input projection step by step (dynamics.rollout).

Run:  .venv/bin/python benchmarks/bench_training.py [--hidden 64 256] [--points 64]
      [--tasks teacher temporal_order] [--steps 4] [--repeats 3] [--old-repeats 1]
      [--threads 1]
With other processes on the cores, torch's OpenMP threads wait for each other (seen: 100x
slower elementwise ops with 2 threads on 2 busy cores); --threads 1 keeps timings meaningful.
"""

from __future__ import annotations

import argparse
import math

import torch
from _timing import median_time

from sweeper import CELLS
from sweeper.dynamics import rollout
from sweeper.measure import build_params
from sweeper.model import PointModel, init_readout
from sweeper.objective import Objective, build_objective
from sweeper.params import CellParams
from sweeper.task import get_task
from sweeper.training import TrainingConfig, train

SEQ_LEN, BATCH = 100, 32
TASKS = {"teacher": {"reference": 1.0},
         "temporal_order": {"t1_lo": 10, "t1_hi": 20, "t2_lo": 50, "t2_hi": 60}}


class OldPointModel(PointModel):
    """The forward as it was: dynamics.rollout, whose backward is O(T^2) in the projection."""

    def forward(self, theta, inputs, x0):
        params, readout = self.unflatten(theta)
        states = rollout(self.cell, self.cell.prepare(params), inputs, x0)
        return readout(states[..., : self.hidden_size])


def old_build_objective(cell, task, params, readout, hidden_size, seq_len, batch_size,
                        data_seed, split="train"):
    batch = task.batch(data_seed, split, batch_size, seq_len)
    model, theta = OldPointModel.from_params(cell, hidden_size, params, readout)
    inputs = batch.inputs.to(params.dtype)[None]
    x0 = torch.zeros(1, 1, batch_size, cell.state_size(hidden_size), dtype=params.dtype)
    targets = batch.targets
    if targets is None:
        reference = CellParams(params.weights, torch.full_like(params.recurrent_scale,
                                                                task.reference_scale),
                               params.input_scale, dict(params.meta))
        ref_model, ref_theta = OldPointModel.from_params(cell, hidden_size, reference, readout)
        with torch.no_grad():
            targets = ref_model.forward(ref_theta, inputs,
                                        x0.expand(ref_theta.shape[0], *x0.shape[1:]))
    elif task.loss_kind == "mse":
        targets = targets.to(params.dtype)[None, None]
    return Objective(model, task.loss_kind, inputs, targets, batch.mask, x0), theta


def old_train(cell, task, params, readout, hidden_size, seq_len, config):
    """The training loop before the objective was built once (CPU only)."""
    _, theta = old_build_objective(cell, task, params, readout, hidden_size, seq_len, 1,
                                   config.data_seed)
    theta = theta.detach().clone()
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    diverged = torch.zeros(theta.shape[0], dtype=torch.bool)
    beta1, beta2 = config.betas
    for step in range(config.steps):
        objective, _ = old_build_objective(cell, task, params, readout, hidden_size, seq_len,
                                           config.batch_size,
                                           config.data_seed * 1_000_003 + step)
        with torch.enable_grad():
            point = theta.detach().requires_grad_(True)
            loss = objective(point)
            total = torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss)).sum()
            (grad,) = torch.autograd.grad(total, point)
        norm = grad.double().norm(dim=-1)
        diverged |= ~torch.isfinite(loss) | ~torch.isfinite(norm)
        grad = torch.where(diverged[:, None], torch.zeros_like(grad), grad)
        factor = torch.clamp(config.clip / torch.clamp(norm, min=1e-300), max=1.0)
        grad = grad * torch.where(diverged, 1.0, factor)[:, None].to(grad.dtype)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad * grad
        m_hat = m / (1 - beta1 ** (step + 1))
        v_hat = v / (1 - beta2 ** (step + 1))
        lr = 0.5 * config.lr * (1 + math.cos(math.pi * step / config.steps))
        update = lr * m_hat / (v_hat.sqrt() + config.eps)
        theta = theta - torch.where(diverged[:, None], torch.zeros_like(update), update)
    val, _ = old_build_objective(cell, task, params, readout, hidden_size, seq_len,
                                 config.val_batch_size, config.data_seed, split="val")
    with torch.no_grad():
        val.evaluate(theta)
    return theta


def forward_backward(objective, theta) -> None:
    point = theta.detach().requires_grad_(True)
    objective(point).sum().backward()


def measure(version: str, cell, task, params, readout, hidden, steps, repeats) -> tuple:
    """(step seconds, fwd+bwd seconds), medians."""
    run = train if version == "new" else old_train
    build = build_objective if version == "new" else old_build_objective
    objective, theta = build(cell, task, params, readout, hidden, SEQ_LEN, batch_size=BATCH,
                             data_seed=0)
    fwd_bwd = median_time(lambda: forward_backward(objective, theta), repeats)

    def trained(n):
        config = TrainingConfig(steps=n, batch_size=BATCH, val_batch_size=BATCH)
        return lambda: run(cell, task, params, readout, hidden, SEQ_LEN, config)

    setup = median_time(trained(1), repeats)  # steps >= 1: one step counts as setup
    step = (median_time(trained(1 + steps), repeats) - setup) / steps
    return step, fwd_bwd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old-repeats", type=int, default=1,
                        help="the old loop is slow (0 skips it)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rnn_tanh, "
          f"K = {args.points}, B = {BATCH}, T = {SEQ_LEN}, float32, steps {args.steps}, "
          f"medians of {args.repeats} (old: {args.old_repeats})")
    cell = CELLS["rnn_tanh"]
    print(f"{'task':>15} {'H':>4} {'version':>7} {'step s':>9} {'fwd+bwd s':>10} "
          f"{'ratio':>6}")
    for name in args.tasks:
        task = get_task(name, TASKS[name])
        for hidden in args.hidden:
            scales = torch.linspace(0.5, 2.0, args.points, dtype=torch.float64)[None]
            params = build_params(cell, hidden, task.input_size, [0], scales,
                                  torch.ones_like(scales), torch.float32, torch.device("cpu"))
            readout = init_readout(task.readout, task.output_size, hidden, [0],
                                   torch.float32, torch.device("cpu"))
            for version, repeats in (("new", args.repeats), ("old", args.old_repeats)):
                if repeats == 0:
                    continue
                step, fwd_bwd = measure(version, cell, task, params, readout, hidden,
                                        args.steps, repeats)
                print(f"{name:>15} {hidden:>4} {version:>7} {step:9.3f} {fwd_bwd:10.3f} "
                      f"{step / fwd_bwd:6.2f}", flush=True)


if __name__ == "__main__":
    main()
