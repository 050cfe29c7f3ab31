"""Which ``obs`` columns of a screen mean what, and the checks that they are usable."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .errors import InputDataError

TAHOE_CONTROL = "[('DMSO_TF', 0.0, 'uM')]"


@dataclass(frozen=True)
class Columns:
    """Names of the ``obs`` columns a screen is described by.

    ``batch`` (plate) and ``drug`` / ``dose`` are optional: a screen without plates pairs
    controls at random or by cell type only, and a screen without a drug column splits by
    perturbation label.
    """

    perturbation: str = "drugname_drugconc"
    control: str = TAHOE_CONTROL
    cell_type: str = "cell_line"
    batch: str | None = "plate"
    drug: str | None = "drug"
    dose: str | None = "concentration"

    def required(self) -> list[str]:
        """The obs columns that must exist, in the order they are checked."""
        names = [self.perturbation, self.cell_type, self.batch, self.drug, self.dose]
        return [n for n in names if n is not None]

    def split_unit(self) -> str:
        """Column whose values are held out together (all doses of a drug)."""
        return self.drug or self.perturbation


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
