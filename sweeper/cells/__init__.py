"""Recurrent cells. ``CELLS`` maps each name to a cell object; ``get_cell`` resolves names."""

from __future__ import annotations

from ..errors import unknown_name
from ._base import BoundContext, Cell, recurrent_product, recurrent_product_t
from .gru import GRU
from .linear import Linear
from .lstm import LSTM
from .orthogonal import Orthogonal
from .rnn_tanh import RNNTanh
from .stable_lstm import StableLSTM

CELLS: dict[str, Cell] = {
    cell.name: cell
    for cell in (RNNTanh(), Linear(), Orthogonal(), GRU(), LSTM(), StableLSTM())
}

__all__ = ["CELLS", "BoundContext", "Cell", "get_cell", "recurrent_product",
           "recurrent_product_t"]


def get_cell(name: str | Cell) -> Cell:
    """The registered cell called ``name`` (a Cell object passes through).

    Raises:
        SweeperInputError: for an unknown name, listing the known ones.
    """
    if isinstance(name, Cell):
        return name
    if name not in CELLS:
        raise unknown_name("cell", name, list(CELLS))
    return CELLS[name]
