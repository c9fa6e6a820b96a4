"""What a search space needs to know of a cell without building it: that the name exists,
and the sizes that set a trial's memory. Declared for the built-in cells as plain data, no
torch, so that ``sweeper validate`` checks a file's ``cell`` and estimates its trials without
loading the numerics; a plug-in cell's shape is read off the cell itself.

The built-in cells are :data:`sweeper.cells.CELLS` (they import torch); every one has an
entry here that describes it (tests/test_space.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Names of the weights every cell uses, following torch.nn.RNN/GRU/LSTM.
RECURRENT = "weight_hh"  # scaled by recurrent_scale
INPUT = "weight_ih"  # scaled by input_scale
BIASES = ("bias_ih", "bias_hh")  # never scaled (but by a checkpoint's scale "all")


@dataclass(frozen=True)
class CellShape:
    """The sizes of one cell, as functions of the hidden size H.

    Attributes:
        gates: F / H, the rows of ``weight_hh`` per hidden unit (F = gates * H).
        states_per_unit: D / H, the state's size per hidden unit (2 for the LSTM's (h, c)).
        per_point_weights: the cell's ``prepare`` gives every point weights of its own (K
            weight sets instead of one per base draw).
    """

    gates: int = 1
    states_per_unit: int = 1
    per_point_weights: bool = False

    def state_size(self, hidden_size: int) -> int:
        """D, the dimension of the state."""
        return self.states_per_unit * hidden_size

    @classmethod
    def of(cls, cell: Any) -> CellShape:
        """The shape of a :class:`sweeper.cells.Cell` object."""
        from .cells import Cell

        return cls(cell.gates, cell.state_size(1), type(cell).prepare is not Cell.prepare)


#: Every registered cell's shape, by name (the names of ``sweeper.cells.CELLS``).
CELL_SHAPES: dict[str, CellShape] = {
    "rnn_tanh": CellShape(),
    "linear": CellShape(),
    "orthogonal": CellShape(),
    "gru": CellShape(gates=3),
    "lstm": CellShape(gates=4, states_per_unit=2),
    "stable_lstm": CellShape(gates=4, states_per_unit=2, per_point_weights=True),
    "lru": CellShape(gates=2, states_per_unit=2),
    "cornn": CellShape(states_per_unit=2),
    "lipschitz_rnn": CellShape(gates=2),
    "antisymmetric_rnn": CellShape(),
}


def cell_shape(name: str) -> CellShape:
    """The shape of the cell called ``name``: declared for a built-in cell (no torch), read
    off the cell for any other (:func:`sweeper.cells.get_cell`: a plug-in is imported, and
    torch with it).

    Raises:
        SweeperInputError: the cell's own (an unknown name lists the known ones).
    """
    if name in CELL_SHAPES:
        return CELL_SHAPES[name]
    from .cells import get_cell

    return CellShape.of(get_cell(name))
