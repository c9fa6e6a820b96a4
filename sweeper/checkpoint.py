"""A trained network as the anchor θ*: a PyTorch ``state_dict`` of ``torch.nn.RNN`` (tanh),
``GRU``, ``LSTM`` or their ``*Cell`` variants, mapped onto the built-in cell of that name.

The built-in cells follow torch.nn's names and gate orders (rnn_tanh: W_ih, W_hh; gru: r, z, n;
lstm: i, f, g, o), so a state_dict maps over one-to-one: ``weight_hh_l0`` (or ``weight_hh`` of a
``*Cell``) becomes ``weight_hh``, and so on; a missing bias is a zero bias (``bias=False``).

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, no
arbitrary objects are unpickled. The file's SHA-256 identifies it (a sweep's trial ids hash it:
another file, other trials).

Scalings. ``scale="recurrent"`` (the default): ``recurrent_scale`` multiplies ``weight_hh`` and
``input_scale`` multiplies ``weight_ih``, as for a random draw. ``scale="all"``: the paper's
θ(s) = s·θ*, every weight and bias multiplied by ``recurrent_scale`` (``input_scale`` still
multiplies ``weight_ih`` on top).
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cell_shapes import BIASES, CELL_SHAPES, INPUT, RECURRENT
from .errors import SweeperInputError

if TYPE_CHECKING:
    import torch

    from .params import CellParams

#: The cells a state_dict maps onto (their gate counts: sweeper.cell_shapes).
CHECKPOINT_CELLS = ("rnn_tanh", "gru", "lstm")
SCALES = ("recurrent", "all")
KEYS = ("checkpoint", "scale", "sha256")
#: Wrappers a training script commonly saves around the state_dict.
WRAPPERS = ("state_dict", "model", "model_state_dict", "net")
_NAME = re.compile(r"^(?P<prefix>.*?)(?P<name>weight_hh|weight_ih|bias_hh|bias_ih|weight_hr)"
                   r"(?P<layer>_l\d+)?(?P<reverse>_reverse)?$")


@dataclass(frozen=True)
class Anchor:
    """Trained weights for one cell: its base draw (float64, CPU, torch.nn's layout), the
    scaling rule, and where it came from."""

    cell: str
    hidden_size: int
    input_size: int
    weights: dict[str, torch.Tensor]
    scale: str = "recurrent"
    sha256: str = ""
    source: str = ""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_spec(spec: Any) -> dict[str, str]:
    """The ``weights`` mapping of a search space or of measure(), checked: ``checkpoint`` (a
    path), an optional ``scale`` in :data:`SCALES` and an optional ``sha256`` the file must
    have (a sweep records it, so a file changed since cannot mix into its results). Plain
    Python: no file is read. Raises SweeperInputError."""
    if not isinstance(spec, Mapping):
        raise SweeperInputError(f"weights must be a mapping with keys {list(KEYS)}, got "
                                f"{spec!r}")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise SweeperInputError(f"weights has unknown keys {unknown}; allowed: {list(KEYS)}")
    path = spec.get("checkpoint")
    if not isinstance(path, str | Path) or not str(path):
        raise SweeperInputError(f"weights.checkpoint must be a file path, got {path!r}")
    scale = spec.get("scale", "recurrent")
    if scale not in SCALES:
        raise SweeperInputError(f"weights.scale={scale!r} is not allowed; use one of "
                                f"{list(SCALES)}")
    checked = {"checkpoint": str(path), "scale": scale}
    if "sha256" in spec:
        digest = spec["sha256"]
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise SweeperInputError(f"weights.sha256 must be 64 hex digits, got {digest!r}")
        checked["sha256"] = digest
    return checked


def load(spec: Mapping[str, Any], cell: str, hidden_size: int | None = None) -> Anchor:
    """The anchor a ``weights`` mapping names, for ``cell`` (and ``hidden_size`` when given).

    Raises:
        SweeperInputError: a bad mapping, a missing or unreadable file, a pickle that is not
            plain tensors, or a state_dict that does not fit (see :func:`from_state_dict`).
    """
    import torch

    spec = check_spec(spec)
    path = Path(spec["checkpoint"])
    if not path.is_file():
        raise SweeperInputError(f"weights.checkpoint {str(path)!r} is not a file")
    digest = file_sha256(path)
    if spec.get("sha256", digest) != digest:
        raise SweeperInputError(f"weights.checkpoint {str(path)!r} has changed since the "
                                f"sweep recorded it (SHA-256 {digest[:12]}..., recorded "
                                f"{spec['sha256'][:12]}...); restore it, or start another "
                                "sweep")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SweeperInputError(
            f"weights.checkpoint {str(path)!r} holds more than tensors; only a state_dict "
            f"saved with torch.save(module.state_dict(), path) is read (weights_only=True "
            f"refused it: {first})") from None
    except Exception as exc:  # not a torch file at all, truncated, ...
        raise SweeperInputError(f"weights.checkpoint {str(path)!r} is not a readable torch "
                                f"file: {type(exc).__name__}: {exc}") from None
    anchor = from_state_dict(stored, cell, hidden_size, source=str(path))
    return Anchor(anchor.cell, anchor.hidden_size, anchor.input_size, anchor.weights,
                  spec["scale"], digest, str(path))


def _unwrapped(stored: Any) -> Mapping[str, Any]:
    import torch

    while isinstance(stored, Mapping) and not any(isinstance(v, torch.Tensor)
                                                  for v in stored.values()):
        inner = [stored[k] for k in WRAPPERS if k in stored]
        if not inner:
            break
        stored = inner[0]
    if not isinstance(stored, Mapping):
        raise SweeperInputError(f"the checkpoint holds a {type(stored).__name__}, not a "
                                "state_dict (a mapping of names to tensors)")
    return stored


def from_state_dict(stored: Any, cell: str, hidden_size: int | None = None,
                    source: str = "the checkpoint") -> Anchor:
    """Map a torch.nn recurrent module's state_dict onto ``cell``'s weights.

    Prefixes (``module.``, ``_orig_mod.``, the parent modules' names) are stripped; a
    ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped. The state_dict must hold
    exactly one recurrent module with one layer, one direction and no projection.

    Raises:
        SweeperInputError: naming what does not fit: another cell's gate count, several layers
            or modules, bidirectional weights, proj_size, a shape mismatch, or a hidden size
            other than ``hidden_size``.
    """
    import torch

    if cell not in CHECKPOINT_CELLS:
        raise SweeperInputError(f"weights.checkpoint maps onto cells {list(CHECKPOINT_CELLS)}, "
                                f"not cell={cell!r}")
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in _unwrapped(stored).items():
        match = _NAME.match(str(key))
        if not match or not isinstance(value, torch.Tensor):
            continue
        if match["reverse"]:
            raise SweeperInputError(f"{source}: {key!r} is a bidirectional module's weight; "
                                    "only one direction can be swept")
        if match["name"] == "weight_hr":
            raise SweeperInputError(f"{source}: {key!r} is an LSTM projection (proj_size > 0), "
                                    "which the lstm cell does not have")
        if match["layer"] not in (None, "_l0"):
            raise SweeperInputError(f"{source}: {key!r} belongs to layer "
                                    f"{match['layer'][2:]}; only single-layer modules are "
                                    "supported")
        found.setdefault(match["prefix"], {})[match["name"]] = value.detach().to(
            "cpu", torch.float64)
    if len(found) != 1:
        what = "no recurrent weights (weight_hh...)" if not found else \
            f"several recurrent modules ({sorted(p.rstrip('.') or '<root>' for p in found)})"
        raise SweeperInputError(f"{source} holds {what}; it must hold one torch.nn.RNN, GRU "
                                "or LSTM (or *Cell)")
    weights = next(iter(found.values()))
    for name in (RECURRENT, INPUT):
        if name not in weights:
            raise SweeperInputError(f"{source} has no {name}")
    w_hh, w_ih = weights[RECURRENT], weights[INPUT]
    if w_hh.dim() != 2 or w_ih.dim() != 2:
        raise SweeperInputError(f"{source}: weight_hh and weight_ih must be matrices, got "
                                f"shapes {tuple(w_hh.shape)} and {tuple(w_ih.shape)}")
    rows, hidden = w_hh.shape
    gates = CELL_SHAPES[cell].gates
    if rows != gates * hidden:
        kinds = {CELL_SHAPES[c].gates * hidden: c for c in CHECKPOINT_CELLS}
        other = f" (the rows of {kinds[rows]!r})" if rows in kinds else ""
        raise SweeperInputError(f"{source}: weight_hh is {rows} x {hidden}{other}; cell "
                                f"{cell!r} needs {gates * hidden} x {hidden}")
    if hidden_size is not None and hidden != hidden_size:
        raise SweeperInputError(f"{source} has hidden size {hidden} (from weight_hh), but "
                                f"hidden_size={hidden_size}")
    if w_ih.shape[0] != rows:
        raise SweeperInputError(f"{source}: weight_ih has {w_ih.shape[0]} rows, weight_hh "
                                f"{rows}")
    for name in BIASES:
        bias = weights.get(name, torch.zeros(rows, dtype=torch.float64))
        if tuple(bias.shape) != (rows,):
            raise SweeperInputError(f"{source}: {name} has shape {tuple(bias.shape)}, want "
                                    f"({rows},)")
        weights[name] = bias
    return Anchor(cell, hidden, int(w_ih.shape[1]),
                  {name: weights[name] for name in (RECURRENT, INPUT, *BIASES)},
                  source=source)


def scaled_all(params: CellParams) -> CellParams:
    """θ(s) = s·θ*: each point's own weights (layout (G·M, 1), as :meth:`CellParams.expand`)
    with every weight and bias multiplied by its recurrent_scale and weight_ih also by its
    input_scale; the scalings left in the result are 1."""
    from .params import CellParams

    s = params.recurrent_scale.reshape(-1)
    expanded = params.expand()  # weight_hh * s and weight_ih * a folded in, biases copied
    weights = dict(expanded.weights)
    weights[INPUT] = weights[INPUT] * s[:, None, None]
    for name in BIASES:
        weights[name] = weights[name] * s[:, None]
    return CellParams(weights, expanded.recurrent_scale, expanded.input_scale, expanded.meta)
