"""Checks of a screen's ``obs``: the configured columns (:class:`~deltatune.settings.Columns`) and the cell lines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..settings import Columns, PreprocessSettings


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


def screen_cells(
    obs: pd.DataFrame, columns: Columns, settings: PreprocessSettings, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """The masks of the target line's cells and of the base lines' cells (``settings.base_cell_lines``,
    or every other line), after checking ``obs`` (:func:`check_obs`): unique cell names, the
    target line present with controls of its own, base lines that exist."""
    check_obs(obs, columns, source)
    if not obs.index.is_unique:
        dupes = obs.index[obs.index.duplicated()][:3].tolist()
        raise InputDataError(f"{source}: cell names are not unique (e.g. {dupes})")
    lines = obs[columns.cell_type].astype(str)
    in_target = (lines == settings.target_cell_line).to_numpy()
    if not in_target.any():
        raise InputDataError(
            f"{source}: target cell line '{settings.target_cell_line}' not found in column "
            f"'{columns.cell_type}' (values: {sorted(lines.unique())[:10]})"
        )
    is_control = (obs[columns.perturbation].astype(str) == columns.control).to_numpy()
    if not (in_target & is_control).any():
        raise InputDataError(
            f"{source}: cell line '{settings.target_cell_line}' has no control cells "
            f"({columns.perturbation} == {columns.control!r}): nothing to predict from"
        )
    if settings.base_cell_lines is None:
        return in_target, ~in_target
    unknown = sorted(set(settings.base_cell_lines) - set(lines))
    if unknown or settings.target_cell_line in settings.base_cell_lines:
        raise InputDataError(
            f"{source}: base_cell_lines must be lines of column '{columns.cell_type}' other than the "
            f"target; not usable: {unknown or [settings.target_cell_line]}"
        )
    return in_target, lines.isin(settings.base_cell_lines).to_numpy()
