"""Loss-slice throughput: slice points evaluated as one batch vs one point at a time.

1. The paper's slice: the chaotic 2-unit LSTM along theta(s) = s * theta*, s in [0.5, 2],
   loss = MSE of h over N = 200 steps after a burn-in of 100 against the s = 1 output.
   (a) batched: ``sweeper.paper.line_loss(scales)``, all P points in one rollout;
   (b) per point with the same code: ``line_loss([s])`` for each s;
   (c) per point with torch.nn.LSTM (weights copied in for every point), the naive design.
2. The landscape family's slice: rnn_tanh, H = 64, task teacher, K = 8 points x 41 offsets
   along a filter-normalised direction, a batch of 16 sequences of 50 steps, float32:
   (d) ``slice_losses`` on all K x 41 parameter sets at once; (e) one parameter set at a time
   through the same objective.

3. The top Hessian eigenvalue of the landscape family on the chaotic LSTM, K = --hessian-points
   scalings, float32: (f) the old path, 20 Lanczos steps on double-backward products over the
   16-sequence batch (kept inline below as the baseline); (g) ``hessian_top_eig`` on the
   objective after ``distinct_sequences`` (one sequence; exact dense Hessian, n = 40).

Run:  .venv/bin/python benchmarks/bench_landscape.py [--points 1000] [--repeats 5]
Prints medians (this machine is noisy) and the speed-up ratios; (b) and (c) time a subset of
points and are extrapolated, as labelled.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import median_time

from rnn_sweeper_tasks.chaotic_lstm import THETA_STAR
from sweeper.paper import line_loss

SEQ_LEN, BURN_IN = 200, 100


def naive(scales, reference: float = 1.0) -> list[float]:
    lstm = torch.nn.LSTM(1, 2, bias=False).double()
    theta = torch.tensor(THETA_STAR, dtype=torch.float64)
    zeros = torch.zeros(BURN_IN + SEQ_LEN, 1, 1, dtype=torch.float64)
    state = (torch.full((1, 1, 2), 0.5, dtype=torch.float64),) * 2

    def output(s: float) -> torch.Tensor:
        with torch.no_grad():
            lstm.weight_hh_l0.copy_(s * theta)
            lstm.weight_ih_l0.zero_()
            out, _ = lstm(zeros, state)
        return out[BURN_IN:, 0, :]

    target = output(reference)
    return [((output(s) - target) ** 2).mean().item() for s in scales]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--subset", type=int, default=50, help="points timed for (b) and (c)")
    parser.add_argument("--hessian-points", type=int, default=20, help="K for (f) and (g)")
    args = parser.parse_args()
    scales = np.linspace(0.5, 2.0, args.points).tolist()
    subset = scales[:: max(1, args.points // args.subset)][: args.subset]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, P = {args.points}, "
          f"N = {SEQ_LEN}, burn-in {BURN_IN}, float64, median of {args.repeats}")
    with torch.no_grad():
        t_a = median_time(lambda: line_loss(scales, SEQ_LEN, BURN_IN), args.repeats)
        t_b = median_time(lambda: [line_loss([s], SEQ_LEN, BURN_IN) for s in subset],
                          args.repeats) * args.points / len(subset)
        t_c = median_time(lambda: naive(subset), args.repeats) * args.points / len(subset)
        # Same numbers where the dynamics settle (s < 0.7, reference 0.6). With the chaotic
        # s = 1 reference the two implementations' rounding differences grow like e^(lambda t).
        calm = [s for s in subset if s < 0.7]
        check = np.max(np.abs(line_loss(calm, SEQ_LEN, BURN_IN, reference=0.6).numpy()
                              - np.array(naive(calm, reference=0.6))))
    rate = lambda t: args.points / t  # noqa: E731
    print(f"  (a) batched line_loss           {t_a:8.3f} s  {rate(t_a):10.0f} points/s")
    print(f"  (b) per point, same code        {t_b:8.3f} s  {rate(t_b):10.0f} points/s "
          f"(extrapolated from {len(subset)} points)")
    print(f"  (c) per point, torch.nn.LSTM    {t_c:8.3f} s  {rate(t_c):10.0f} points/s "
          f"(extrapolated from {len(subset)} points)")
    print(f"  ratios: (a) vs (b) {t_b / t_a:6.1f}x   (a) vs (c) {t_c / t_a:6.1f}x")
    print(f"  check: max |loss_a - loss_c| for s < 0.7 against s = 0.6 = {check:.1e}")
    generic(args.repeats)
    hessian(args.hessian_points, args.repeats)


def lanczos_baseline(loss_fn, theta: torch.Tensor, steps: int = 20) -> torch.Tensor:
    """The landscape family's Hessian before the exact path: Lanczos on double backward."""
    from sweeper.lipschitz import lanczos_ritz

    with torch.enable_grad():
        point = theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(point).sum(), point, create_graph=True)

        def hvp(v: torch.Tensor) -> torch.Tensor:
            (out,) = torch.autograd.grad((grad * v).sum(), point, retain_graph=True)
            return out.detach()

        start = torch.randn(theta.shape, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64).to(theta)
        return lanczos_ritz(hvp, start, steps)[..., -1]


def hessian(points: int, repeats: int) -> None:
    from sweeper import CELLS
    from sweeper.landscape import hessian_top_eig
    from sweeper.landscape_metrics import distinct_sequences
    from sweeper.measure import build_params
    from sweeper.model import init_readout
    from sweeper.objective import build_objective
    from sweeper.task import get_task

    task = get_task("chaotic_lstm", {"burn_in": BURN_IN})
    cell, cpu = CELLS["lstm"], torch.device("cpu")
    rs = torch.linspace(0.5, 2.0, points, dtype=torch.float64)[None]
    params = build_params(cell, 2, 1, [0], rs, torch.ones_like(rs), torch.float32, cpu,
                          anchor=task.anchor("lstm", 2))
    readout = init_readout(task.readout, 2, 2, [0], torch.float32, cpu)
    full, theta = build_objective(cell, task, params, readout, 2, SEQ_LEN, batch_size=16)
    single = distinct_sequences(full)
    t_f = median_time(lambda: lanczos_baseline(full, theta), max(1, repeats // 2))
    t_g = median_time(lambda: hessian_top_eig(single, theta), repeats)
    old, new = lanczos_baseline(single, theta), hessian_top_eig(single, theta)
    both = torch.isfinite(old) & torch.isfinite(new)
    gap = ((old - new).abs() / new.abs().clamp(min=1e-12))[both & (new.abs() < 1e6)].max()
    print(f"\nhessian_top_eig, chaotic LSTM, K = {points}, n = {theta.shape[1]}, "
          f"N = {SEQ_LEN} + burn-in {BURN_IN}, float32")
    print(f"  (f) Lanczos 20, double backward, 16 sequences {t_f:8.3f} s")
    print(f"  (g) exact dense Hessian, 1 sequence           {t_g:8.3f} s")
    print(f"  ratio: (g) vs (f) {t_f / t_g:6.1f}x   max rel gap (finite, |top| < 1e6) "
          f"{gap.item():.1e}")


def generic(repeats: int) -> None:
    from sweeper import CELLS
    from sweeper.landscape import filter_normalised_direction, slice_losses
    from sweeper.measure import build_params
    from sweeper.model import init_readout
    from sweeper.objective import build_objective
    from sweeper.task import get_task

    cell, task, hidden, offsets = CELLS["rnn_tanh"], get_task("teacher"), 64, 41
    rs = torch.linspace(0.5, 2.0, 8, dtype=torch.float64)[None]
    cpu = torch.device("cpu")
    params = build_params(cell, hidden, 1, [0], rs, torch.ones_like(rs), torch.float32, cpu)
    readout = init_readout("linear", 1, hidden, [0], torch.float32, cpu)
    objective, theta = build_objective(cell, task, params, readout, hidden, 50, batch_size=16)
    direction = filter_normalised_direction(objective.model.shapes, theta,
                                            torch.Generator().manual_seed(0))
    alphas = torch.linspace(-0.5, 0.5, offsets, dtype=torch.float64)
    along = objective.repeat_rows(offsets)
    total = theta.shape[0] * offsets
    with torch.no_grad():
        t_d = median_time(lambda: slice_losses(along, theta, direction, alphas), repeats)

        def one_by_one():
            for k in range(theta.shape[0]):
                single = objective.subset(slice(k, k + 1))
                for a in alphas:
                    single(theta[k:k + 1] + a.item() * direction[k:k + 1])

        t_e = median_time(one_by_one, max(1, repeats // 2))
    print(f"\nlandscape slice, rnn_tanh H = {hidden}, K = {theta.shape[0]} x {offsets} offsets, "
          f"teacher, batch 16 x 50 steps, float32")
    print(f"  (d) batched slice_losses        {t_d:8.3f} s  {total / t_d:10.0f} points/s")
    print(f"  (e) one parameter set at a time {t_e:8.3f} s  {total / t_e:10.0f} points/s")
    print(f"  ratio: (d) vs (e) {t_e / t_d:6.1f}x")


if __name__ == "__main__":
    main()
