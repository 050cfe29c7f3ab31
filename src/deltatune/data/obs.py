"""Checks of a screen's ``obs``: the configured columns (:class:`~deltatune.settings.Columns`) and the cell lines.

A screen may be several files (Tahoe-100M: a file per plate, every line on every plate). The
columns are checked file by file, each message naming its file; what only the whole screen can
say (the control label occurs, the target line is there with controls of its own, the base
lines exist) is checked on a :class:`Census` of all files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..settings import Columns, PreprocessSettings


def _listing(obs: pd.DataFrame) -> str:
    """The first columns of ``obs``, for a message about one it lacks."""
    return ", ".join(map(str, obs.columns[:20]))


def check_columns(obs: pd.DataFrame, columns: Columns, source: str) -> None:
    """Raise :class:`InputDataError` naming the first unusable column of ``obs`` (of file ``source``):
    every configured column must exist, grouping columns without missing values, cell names unique."""
    for name in columns.required():
        if name not in obs.columns:
            raise InputDataError(
                f"{source}: column '{name}' is not in obs (columns: {_listing(obs)}); "
                "set data.columns in the config to the names your file uses"
            )
    for name in [columns.perturbation, columns.cell_type, columns.batch]:
        if name is not None and obs[name].isna().any():
            n = int(obs[name].isna().sum())
            raise InputDataError(f"{source}: column '{name}' has {n} missing value(s)")
    if not obs.index.is_unique:
        dupes = obs.index[obs.index.duplicated()][:3].tolist()
        raise InputDataError(f"{source}: cell names are not unique (e.g. {dupes})")


def kept_cells(obs: pd.DataFrame, keep: dict[str, tuple[str, ...]] | None, source: str) -> np.ndarray:
    """Mask of the cells of ``obs`` (of file ``source``) that ``preprocess.keep_cells`` keeps:
    each named column holds one of its listed values (compared as text)."""
    mask = np.ones(len(obs), dtype=bool)
    for name, values in (keep or {}).items():
        if name not in obs.columns:
            raise InputDataError(
                f"{source}: preprocess.keep_cells names column '{name}', which is not in obs (columns: {_listing(obs)})"
            )
        mask &= obs[name].astype(str).isin(values).to_numpy()
    return mask


@dataclass
class Census:
    """What the whole screen holds, gathered file by file: cell lines, control and target counts."""

    lines: set[str] = field(default_factory=set)
    labels: Counter = field(default_factory=Counter)
    n_controls: int = 0
    n_target: int = 0
    n_target_controls: int = 0
    n_base: int = 0
    n_kept: int = 0
    n_left_out: int = 0

    def add(self, obs: pd.DataFrame, roles: tuple[np.ndarray, np.ndarray], columns: Columns, kept: np.ndarray) -> None:
        """Count the cells of one file's ``obs`` that ``keep_cells`` keeps (``kept``) with their
        roles (:func:`cell_roles`); the others count only in ``n_left_out``."""
        in_target, in_base = roles
        obs = obs[kept]
        is_control = control_labels(obs, columns)
        self.lines |= set(obs[columns.cell_type].astype(str).unique())
        self.labels.update(obs[columns.perturbation].astype(str).value_counts().head(5).to_dict())
        self.n_controls += int(is_control.sum())
        self.n_target += int(in_target.sum())
        self.n_target_controls += int((in_target[kept] & is_control).sum())
        self.n_base += int(in_base.sum())
        self.n_kept += int(kept.sum())
        self.n_left_out += int((~kept).sum())

    def check(self, columns: Columns, settings: PreprocessSettings, source: str) -> None:
        """Raise :class:`InputDataError` unless the screen can be preprocessed: controls exist, the
        target line is there with controls of its own, and ``settings.base_cell_lines`` exist."""
        if not self.n_kept and self.n_left_out:
            raise InputDataError(
                f"{source}: preprocess.keep_cells {settings.keep_cells} leaves out every cell ({self.n_left_out})"
            )
        if not self.n_controls:
            examples = ", ".join(repr(v) for v, _ in self.labels.most_common(5))
            raise InputDataError(
                f"{source}: control label {columns.control!r} does not occur in column "
                f"'{columns.perturbation}' (most common labels: {examples})"
            )
        # what keep_cells left out is not there to be found: say so where it may be the reason
        filtered = f", of the cells preprocess.keep_cells {settings.keep_cells} keeps" if self.n_left_out else ""
        if not self.n_target:
            raise InputDataError(
                f"{source}: target cell line '{settings.target_cell_line}' not found in column "
                f"'{columns.cell_type}'{filtered} (values: {sorted(self.lines)[:10]})"
            )
        if not self.n_target_controls:
            raise InputDataError(
                f"{source}: cell line '{settings.target_cell_line}' has no control cells "
                f"({columns.perturbation} == {columns.control!r}){filtered}: nothing to predict from"
            )
        if settings.base_cell_lines is None:
            return
        unknown = sorted(set(settings.base_cell_lines) - self.lines)
        if unknown or settings.target_cell_line in settings.base_cell_lines:
            raise InputDataError(
                f"{source}: base_cell_lines must be lines of column '{columns.cell_type}' other than the "
                f"target; not usable: {unknown or [settings.target_cell_line]}"
            )


def control_labels(obs: pd.DataFrame, columns: Columns) -> np.ndarray:
    """Mask of the control cells of ``obs``."""
    return (obs[columns.perturbation].astype(str) == columns.control).to_numpy()


def cell_roles(
    obs: pd.DataFrame, columns: Columns, settings: PreprocessSettings, kept: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The masks of the target line's cells and of the base lines' cells (``settings.base_cell_lines``,
    or every other line), of the cells ``kept`` (:func:`kept_cells`) only."""
    lines = obs[columns.cell_type].astype(str)
    in_target = (lines == settings.target_cell_line).to_numpy() & kept
    if settings.base_cell_lines is None:
        return in_target, ~in_target & kept
    return in_target, lines.isin(settings.base_cell_lines).to_numpy() & kept
