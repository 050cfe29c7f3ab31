"""The split a search trial sees: validation perturbations scored, test perturbations unseen.

Every step reads cells by split name: training reads ``train`` cells and controls, inference
predicts ``test`` cells from controls, evaluation scores ``test`` cells, and no step reads
``val``. In the view the two swap names: the validation perturbations become ``test`` and the
real test perturbations ``val``, so a trial never reads a test cell's expression (a test replaces
it with noise and gets identical trials).
"""

from __future__ import annotations

import pandas as pd

from ..errors import InputDataError


def validation_view(split: pd.DataFrame) -> pd.DataFrame:
    """``split`` with the names ``val`` and ``test`` swapped."""
    if not split["split"].eq("val").any():
        raise InputDataError(
            "the search scores trials on validation perturbations, but the split has none: "
            "set preprocess.split.val_fraction above 0"
        )
    return split.assign(split=split["split"].map({"val": "test", "test": "val"}).fillna(split["split"]))
