"""Checks that the ``obs`` columns a screen is described by (:class:`~deltatune.settings.Columns`) are usable."""

from __future__ import annotations

import pandas as pd

from ..errors import InputDataError
from ..settings import Columns


def check_obs(obs: pd.DataFrame, columns: Columns, source: str) -> None:
    """Raise :class:`InputDataError` naming the first unusable column of ``obs``.

    Checks that every configured column exists, that grouping columns hold no missing values,
    and that the control label occurs in the perturbation column.
    """
    for name in columns.required():
        if name not in obs.columns:
            available = ", ".join(map(str, obs.columns[:20]))
            raise InputDataError(
                f"{source}: column '{name}' is not in obs (columns: {available}); "
                "set data.columns in the config to the names your file uses"
            )
    for name in [columns.perturbation, columns.cell_type, columns.batch]:
        if name is not None and obs[name].isna().any():
            n = int(obs[name].isna().sum())
            raise InputDataError(f"{source}: column '{name}' has {n} missing value(s)")
    labels = obs[columns.perturbation].astype(str)
    if not (labels == columns.control).any():
        examples = ", ".join(repr(v) for v in labels.value_counts().index[:5])
        raise InputDataError(
            f"{source}: control label {columns.control!r} does not occur in column "
            f"'{columns.perturbation}' (most common labels: {examples})"
        )
