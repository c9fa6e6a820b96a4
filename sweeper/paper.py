"""The paper's chaotic-LSTM experiment: along theta(s) = s * theta* (Ribeiro et al. 2019,
section 6), the loss against the s = 1 output, the largest Lyapunov exponent, and the orbit
diagram of the first output - all scalings evaluated as one batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .cells import CELLS
from .dynamics import DynamicsConfig, rollout, run_dynamics
from .errors import require
from .orbits import orbits_for
from .params import CellParams
from .task import get_task

Tensor = torch.Tensor


def _setup(scales: Sequence[float], dtype: torch.dtype, device: torch.device):
    from .measure import build_params

    task = get_task("chaotic_lstm")
    cell = CELLS["lstm"]
    rs = torch.as_tensor(list(scales), dtype=torch.float64)[None]
    params = build_params(cell, 2, 1, [0], rs, torch.ones_like(rs), dtype, device,
                          anchor=task.anchor("lstm", 2))
    x0 = task.initial_state(4).to(device, dtype)
    return cell, params, x0


def line_loss(scales: Sequence[float], seq_len: int = 200, burn_in: int = 100,
              reference: float = 1.0, dtype: torch.dtype = torch.float64,
              device: torch.device | str = "cpu") -> Tensor:
    """MSE between the hidden state at each scaling and at ``reference``, over the seq_len
    steps that follow ``burn_in`` steps from h0 = c0 = 0.5 under zero input. (P,) float64."""
    require(seq_len >= 1 and burn_in >= 0,
            f"line_loss requires seq_len >= 1 and burn_in >= 0, got {seq_len}, {burn_in}")
    device = torch.device(device)
    cell, params, x0 = _setup([*scales, reference], dtype, device)
    members = params.members
    inputs = torch.zeros(1, 1, burn_in + seq_len, 1, dtype=dtype, device=device)
    states = rollout(cell, params, inputs, x0.expand(1, members, 1, 4), keep_from=burn_in)
    hidden = states[0, :, 0, :, :2].double()  # (P + 1, N, 2): the output is h
    return ((hidden[:-1] - hidden[-1]) ** 2).mean(dim=(-1, -2))


def anchor_loss(seq_len: int = 200, burn_in: int = 100, reference: float = 1.0,
                dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"):
    """V(theta) for the chaotic LSTM as a function of its recurrent weights.

    Returns a function mapping (K, 16) flattened weight_hh (8 x 2) to (K,) losses: the MSE of h
    over ``seq_len`` steps after ``burn_in``, against the output at ``reference`` * theta*.
    Points are independent, as :func:`sweeper.landscape.hessian_top_eig` requires.
    """
    device = torch.device(device)
    cell, params, x0 = _setup([reference], dtype, device)
    inputs = torch.zeros(1, 1, burn_in + seq_len, 1, dtype=dtype, device=device)
    target = rollout(cell, params, inputs, x0.expand(1, 1, 1, 4), keep_from=burn_in)
    target = target[0, 0, 0, :, :2]  # (N, 2)
    base = params.weights

    def loss(theta: Tensor) -> Tensor:
        points = theta.shape[0]
        weights = {k: v.expand(points, *v.shape[1:]) for k, v in base.items()}
        weights["weight_hh"] = theta.reshape(points, 8, 2)
        ones = torch.ones(points, 1, dtype=theta.dtype, device=theta.device)
        batch = CellParams(weights, ones, ones, {})
        drive = torch.zeros(points, 1, burn_in + seq_len, 1, dtype=theta.dtype,
                            device=theta.device)
        states = rollout(cell, batch, drive, x0.expand(points, 1, 1, 4), keep_from=burn_in)
        return ((states[:, 0, 0, :, :2] - target) ** 2).mean(dim=(-1, -2))

    return loss


def chaotic_lstm_line(scales: Sequence[float], seq_len: int = 200, burn_in: int = 100,
                      lyapunov_steps: int = 2000, orbit_steps: int = 1000, orbit_keep: int = 60,
                      orbit_inits: int = 6, dtype: torch.dtype = torch.float64,
                      device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Everything the paper's figure shows, for P scalings at once.

    Returns:
        ``scale`` (P,), ``loss`` (P,) as :func:`line_loss`, ``lyapunov_max`` (P,) averaged over
        ``lyapunov_steps`` after ``burn_in``, and ``orbit`` (P, orbit_inits * orbit_keep): the
        last values of h_1 from (h0, c0) = 0.5 and ``orbit_inits - 1`` random states.
    """
    device = torch.device(device)
    cell, params, x0 = _setup(scales, dtype, device)
    members = params.members
    loss = line_loss(scales, seq_len, burn_in, dtype=dtype, device=device)
    steps = burn_in + lyapunov_steps
    inputs = torch.zeros(1, 1, steps, 1, dtype=dtype, device=device)
    config = DynamicsConfig(burn_in=burn_in, lipschitz_samples=0)
    dyn = run_dynamics(cell, params, inputs, x0.expand(1, members, 1, 4), lyapunov_steps,
                       config, [0])
    orbit = orbits_for("lstm", 2, get_task("chaotic_lstm"), scales, steps=orbit_steps,
                       keep=orbit_keep, inits=orbit_inits, dtype=dtype, device=device)["orbit"]
    return {"scale": torch.as_tensor(list(scales), dtype=torch.float64), "loss": loss.cpu(),
            "lyapunov_max": dyn.lyapunov[0, :, 0].cpu(), "orbit": orbit}
