"""The control input of each test cell: its plate's control mean, or a control cell of its plate.

Only control expression is read: a perturbed cell's own expression never reaches a prediction.
"""

from __future__ import annotations

import numpy as np

from ..data.readers import dense_rows
from ..errors import InputDataError
from ..pairing.index import PairingIndex


def _test_rows(index: PairingIndex, cells: np.ndarray) -> tuple[PairingIndex, np.ndarray]:
    """``index`` restricted to ``cells``, and the position of each cell in its ``perturbed``."""
    restricted = index.restrict(cells)
    if not np.array_equal(restricted.perturbed, np.sort(cells)):
        raise InputDataError("some cells to predict are not perturbed cells of the pairing index")
    return restricted, np.searchsorted(restricted.perturbed, cells)


def control_mean_inputs(index: PairingIndex, cells: np.ndarray) -> tuple[np.ndarray, int]:
    """Control-mean input of each of ``cells`` (its group's mean), and how many fell back.

    ``index`` groups cells by plate (strategy ``batch``), or is a single group (``random``) when
    the data has no plate column; only control expression went into its means.
    """
    restricted, order = _test_rows(index, cells)
    return index.mean_table()[restricted.mean_rows()[order]], int(restricted.fallback_cells.sum())


def matched_control_inputs(
    index: PairingIndex, cells: np.ndarray, X, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """One control cell of its own group for each of ``cells`` (rows of ``X``), and fallbacks.

    Only the drawn control rows of ``X`` are read.
    """
    restricted, order = _test_rows(index, cells)
    drawn = restricted.draw(rng)[order]
    return dense_rows(X[drawn]), int(restricted.fallback_cells.sum())
