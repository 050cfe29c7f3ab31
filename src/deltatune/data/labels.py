"""Doses written inside perturbation labels, as Tahoe-100M writes them.

Tahoe-100M's ``drugname_drugconc`` holds each condition as a Python literal: a list of
``(drug, concentration, unit)`` tuples, e.g. ``[('Bortezomib', 0.05, 'uM')]``, the vehicle
``[('DMSO_TF', 0.0, 'uM')]``; its obs has no numeric dose column. Labels are parsed once per
distinct label (a few thousand), never per cell.
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd

from ..errors import InputDataError

UNITS_TO_UM = {"nM": 1e-3, "uM": 1.0, "µM": 1.0, "mM": 1e3}


def _dose_um(label: str) -> float:
    """The concentration in µM of one label; NaN where it holds none, or several (a combination)."""
    try:
        parts = ast.literal_eval(label)
    except (ValueError, SyntaxError):
        return np.nan
    if not (isinstance(parts, list) and len(parts) == 1 and isinstance(parts[0], tuple) and len(parts[0]) == 3):
        return np.nan
    _, value, unit = parts[0]
    if unit not in UNITS_TO_UM:
        raise InputDataError(f"label {label!r}: unit {unit!r} is not one of {sorted(UNITS_TO_UM)}")
    return float(value) * UNITS_TO_UM[unit]


def doses_from_labels(labels: pd.Series) -> pd.Series:
    """The dose in µM of every cell's label (``labels``: the perturbation column), NaN where a
    label carries none. Stops when no label parses: the column is not in Tahoe's form."""
    values = labels.astype("category")
    per_label = pd.Series([_dose_um(str(c)) for c in values.cat.categories], index=values.cat.categories)
    if per_label.notna().sum() == 0:
        examples = [str(c) for c in values.cat.categories[:3]]
        raise InputDataError(
            f"data.columns.dose_from_label: no label of column '{labels.name}' holds a dose in the form "
            f"[('drug', 0.05, 'uM')] (labels: {examples}); name a numeric dose column instead"
        )
    codes = values.cat.codes.to_numpy()
    doses = np.where(codes >= 0, per_label.to_numpy()[codes], np.nan)
    return pd.Series(doses, index=labels.index, name="dose_um")
