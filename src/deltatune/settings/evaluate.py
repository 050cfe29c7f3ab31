"""Settings of evaluation: the cell-eval profile and the noise ceiling."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError
from .base import Settings, choice

PROFILES = ("anndata", "full", "minimal", "vcc", "de", "pds")


@dataclass(frozen=True)
class EvaluateSettings(Settings):
    """Which cell-eval profile to compute: ``anndata`` (fast, no DE) or ``full`` (with DE)
    (config ``evaluation``).

    ``ceiling_splits`` is how many random split-halves of the real cells estimate the noise
    ceiling. The mean-based metrics use every test cell; the cell-level ones (energy distance, clustering,
    the DE metrics) use at most ``cell_cap`` cells of each perturbation and ``control_cap``
    controls, drawn with ``seed`` (:mod:`deltatune.evaluate.pairs`).
    """

    ceiling_splits: int = 3
    cell_cap: int = 500
    control_cap: int = 5000
    seed: int = 0
    profile: str = choice("anndata", PROFILES)

    def check(self) -> None:
        super().check()
        if self.ceiling_splits < 1:
            raise SettingsError("ceiling_splits must be at least 1")
        if self.cell_cap < 2 or self.control_cap < 2:
            raise SettingsError("cell_cap and control_cap must be at least 2 (cell-level metrics compare cells)")
