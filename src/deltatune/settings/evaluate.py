"""Settings of evaluation: the cell-eval profile and the noise ceiling."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Settings, setting

PROFILES = ("anndata", "full", "minimal", "vcc", "de", "pds")
PROFILES_WITHOUT_DE = ("anndata",)


@dataclass(frozen=True)
class EvaluateSettings(Settings):
    """Which cell-eval profile to compute: ``anndata`` (fast, no DE) or ``full`` (with DE)
    (config ``evaluation``).

    ``ceiling_splits`` is how many random split-halves of the real cells estimate the noise
    ceiling. The mean-based metrics use every test cell; the cell-level ones (energy distance, clustering,
    the DE metrics; of these the ceiling computes only DE) use at most ``cell_cap`` cells of each
    perturbation and ``control_cap`` controls, drawn with ``seed`` (:mod:`deltatune.evaluate.pairs`).
    """

    ceiling_splits: int = setting(3, minimum=1)
    cell_cap: int = setting(500, minimum=2)  # cell-level metrics compare cells
    control_cap: int = setting(5000, minimum=2)
    seed: int = 0
    profile: str = setting("anndata", choices=PROFILES)
