"""Recurrent cells. ``CELLS`` maps each built-in name to a cell object; ``get_cell`` resolves
a name: built in, registered by an installed package under the entry-point group
``rnn_sweeper.cells``, or a ``"package.module:Class"`` path (the same rules as tasks)."""

from __future__ import annotations

import functools

from ..errors import SweeperInputError
from ..plugins import load_class, registered
from ._base import BoundContext, Cell, autodiff_version, recurrent_product, recurrent_product_t
from .antisymmetric_rnn import AntisymmetricRNN
from .cornn import CoRNN
from .gru import GRU
from .linear import Linear
from .lipschitz_rnn import LipschitzRNN
from .lru import LRU
from .lstm import LSTM
from .orthogonal import Orthogonal
from .rnn_tanh import RNNTanh
from .stable_lstm import StableLSTM

CELLS: dict[str, Cell] = {
    cell.name: cell
    for cell in (RNNTanh(), Linear(), Orthogonal(), GRU(), LSTM(), StableLSTM(), LRU(),
                 CoRNN(), LipschitzRNN(), AntisymmetricRNN())
}

#: The entry-point group a package registers its cells under (name = cell name,
#: value = "package.module:ClassName").
ENTRY_POINT_GROUP = "rnn_sweeper.cells"

__all__ = ["CELLS", "ENTRY_POINT_GROUP", "BoundContext", "Cell", "autodiff_version",
           "cell_names", "get_cell", "recurrent_product", "recurrent_product_t"]


def cell_names() -> list[str]:
    """The built-in cells and those installed packages register, sorted."""
    return sorted({*CELLS, *registered(ENTRY_POINT_GROUP)})


def get_cell(name: str | Cell) -> Cell:
    """The cell called ``name``: built in, registered under ``rnn_sweeper.cells``, or a
    ``"package.module:Class"`` path to a :class:`Cell` subclass (a Cell object passes through).

    A plug-in cell is built with no arguments, once per process; its ``name`` is the name it
    was asked for, so its rows say where it came from.

    Raises:
        SweeperInputError: an unknown name (listing the known ones), an import that fails, a
            class that is not a Cell, or one that cannot be built.
    """
    if isinstance(name, Cell):
        return name
    if not isinstance(name, str):
        raise SweeperInputError(f"cell must be a name or 'module:Class', got {name!r}")
    if name in CELLS:
        return CELLS[name]
    return _plugin(name)


@functools.cache
def _plugin(name: str) -> Cell:
    cls = load_class("cell", ENTRY_POINT_GROUP, name, Cell, "sweeper.cells.Cell", tuple(CELLS))
    try:
        cell = cls()
    except Exception as exc:  # an abstract method left out, or a raise in __init__
        raise SweeperInputError(f"cannot build cell {name!r} ({cls.__qualname__}()): "
                                f"{type(exc).__name__}: {exc}") from exc
    cell.name = name
    return cell
