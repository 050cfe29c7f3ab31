"""The control input of each test cell: its plate's control mean, or a control cell of its plate.

Only control expression is read: a perturbed cell's own expression never reaches a prediction.
Inputs are gathered on demand, a chunk of test cells at a time, so a million test cells never
need a dense cells x genes copy of their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..data.readers import dense_rows
from ..errors import InputDataError
from ..pairing.index import PairingIndex


@dataclass(frozen=True)
class ControlInputs:
    """Each test cell's control input as a row of ``source``: the control-mean table (groups + 1,
    genes) or the expression matrix (its control rows). ``rows`` has one entry per test cell, in
    the order the cells were given; ``fallback_cells`` counts cells whose plate had no control."""

    source: np.ndarray | sp.csr_matrix
    rows: np.ndarray
    fallback_cells: int

    def __getitem__(self, positions) -> np.ndarray:
        """Dense float32 inputs of the test cells at ``positions`` (a slice or an index array)."""
        return dense_rows(self.source[self.rows[positions]])


def _test_rows(index: PairingIndex, cells: np.ndarray) -> tuple[PairingIndex, np.ndarray]:
    """``index`` restricted to ``cells``, and the position of each cell in its ``perturbed``."""
    restricted = index.restrict(cells)
    if not np.array_equal(restricted.perturbed, np.sort(cells)):
        raise InputDataError("some cells to predict are not perturbed cells of the pairing index")
    return restricted, np.searchsorted(restricted.perturbed, cells)


def control_mean_inputs(index: PairingIndex, cells: np.ndarray) -> ControlInputs:
    """Each of ``cells`` represented by its group's control mean.

    ``index`` groups cells by plate (strategy ``batch``), or is a single group (``random``) when
    the data has no plate column; only control expression went into its means.
    """
    restricted, order = _test_rows(index, cells)
    return ControlInputs(index.mean_table(), restricted.mean_rows()[order], int(restricted.fallback_cells.sum()))


def matched_control_inputs(index: PairingIndex, cells: np.ndarray, X, rng: np.random.Generator) -> ControlInputs:
    """Each of ``cells`` represented by one control cell of its own group (a row of ``X``)."""
    restricted, order = _test_rows(index, cells)
    return ControlInputs(X, restricted.draw(rng)[order], int(restricted.fallback_cells.sum()))
