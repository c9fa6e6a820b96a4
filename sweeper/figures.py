"""Pictures (matplotlib, imported only here)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def plot_chaotic_lstm(line: dict, path: str | Path, seq_len: int = 200) -> Path:
    """Three aligned panels over s: orbit diagram of h_1, loss, largest Lyapunov exponent.

    The PNG is written to a temporary file and renamed, so ``path`` is never half-written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = np.asarray(line["scale"])
    orbit = np.asarray(line["orbit"])
    fig, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True, constrained_layout=True)
    xs = np.repeat(scale, orbit.shape[1])
    axes[0].plot(xs, orbit.reshape(-1), ",", color="black", alpha=0.5)
    axes[0].set_ylabel("long-run $h_1$")
    axes[0].set_title("Chaotic LSTM along θ(s) = s·θ*  (Ribeiro et al. 2019)")
    axes[1].plot(scale, np.asarray(line["loss"]), lw=0.8)
    axes[1].set_ylabel(f"MSE vs s = 1 output (N = {seq_len})")
    lyap = np.asarray(line["lyapunov_max"])
    axes[2].plot(scale, lyap, lw=0.8)
    axes[2].axhline(0.0, color="grey", lw=0.6, ls="--")
    axes[2].fill_between(scale, lyap, 0, where=lyap > 0, color="tab:red", alpha=0.3,
                         label="chaotic (λ₁ > 0)")
    axes[2].set_ylabel("λ₁ (nats / step)")
    axes[2].set_xlabel("recurrent scale s")
    axes[2].legend(loc="lower right")
    return _save(fig, path)


def plot_orbits(scale, orbit, path: str | Path, title: str,
                xlabel: str = "recurrent scale s") -> Path:
    """Orbit (bifurcation) diagram: the long-run values of the first output against s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, orbit = np.asarray(scale), np.asarray(orbit)
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    ax.plot(np.repeat(scale, orbit.shape[1]), orbit.reshape(-1), ",", color="black", alpha=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("long-run first state entry")
    ax.set_title(title)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG through a temporary file and a rename (never half-written)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
