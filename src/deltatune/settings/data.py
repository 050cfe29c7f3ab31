"""Settings of the data step: obs columns, the simulated screen, preprocessing and the split."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SettingsError
from .base import Settings

TAHOE_CONTROL = "[('DMSO_TF', 0.0, 'uM')]"


@dataclass(frozen=True)
class Columns(Settings):
    """Names of the ``obs`` columns a screen is described by (config ``data.columns``).

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


@dataclass(frozen=True)
class ScreenSpec(Settings):
    """Size and effect sizes of a simulated screen, all effects on the natural-log scale
    (config ``data.simulate``; :mod:`deltatune.data.simulate`)."""

    seed: int = 0
    n_genes: int = 500
    # Layout: lines, plates, drugs at doses, wells.
    cell_lines: tuple[str, ...] = ("c12", "c25", "c37", "c48", "c51", "c63")
    plates_per_line: int = 6
    plate_skew: float = 1.0
    n_drugs: int = 30
    doses_um: tuple[float, ...] = (0.05, 0.5, 5.0)
    cells_per_well: int = 40
    controls_per_plate: int = 120
    # Sampling: sequencing depth and negative-binomial dispersion.
    depth: float = 4000.0
    depth_sd: float = 0.3
    dispersion: float = 8.0
    # Confounding: how unevenly drugs sit on plates, plate offsets, line baselines.
    plates_per_drug: tuple[int, int] = (1, 2)
    plate_effect_sd: float = 0.2
    plate_programs: int = 4
    line_effect_sd: float = 0.5
    # Drug effects: Hill-curve ranges shared by all drugs, effect size, responsive genes.
    ec50_range_um: tuple[float, float] = (0.05, 2.0)
    hill_range: tuple[float, float] = (0.8, 2.5)
    drug_effect_sd: float = 0.6
    drug_gene_fraction: float = 0.25
    line_specificity: float = 0.4

    def check(self) -> None:
        super().check()
        low, high = self.plates_per_drug
        if not 1 <= low <= high <= self.plates_per_line:
            raise SettingsError(
                f"plates_per_drug {self.plates_per_drug} must satisfy "
                f"1 <= low <= high <= plates_per_line ({self.plates_per_line})"
            )
        if len(set(self.cell_lines)) != len(self.cell_lines) or len(self.cell_lines) < 2:
            raise SettingsError(f"cell_lines must hold at least two distinct names: {self.cell_lines}")
        if self.n_genes < 10 or self.n_drugs < 3 or not self.doses_um:
            raise SettingsError("n_genes, n_drugs, doses_um: a screen needs at least 10 genes, 3 drugs and one dose")


@dataclass(frozen=True)
class SplitSettings(Settings):
    """Fractions of split units (drugs) held out for validation and test, and the seed.

    ``dose_holdout_fraction`` of the training drugs additionally lose one of their doses to the
    test split, so that the test set also asks for a seen drug at an unseen dose.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.3
    dose_holdout_fraction: float = 0.0
    seed: int = 0

    def check(self) -> None:
        super().check()
        if not 0 <= self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise SettingsError("val_fraction must be in [0, 1) and test_fraction in (0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise SettingsError("val_fraction + test_fraction must leave units to train on")
        if not 0 <= self.dose_holdout_fraction <= 1:
            raise SettingsError("dose_holdout_fraction must be in [0, 1]")


@dataclass(frozen=True)
class PreprocessSettings(Settings):
    """Settings of preprocessing: config section ``preprocess`` plus ``data.target_cell_line`` and
    ``data.var_names`` (:func:`deltatune.settings.workflow.preprocess_settings`).

    ``base_cell_lines`` are the lines kept for pretraining a base model and for the other-lines
    baseline: None keeps every line but the target, an empty list none. ``var_names`` names a
    var column to take gene names from; ``max_missing_genes`` is the fraction of a checkpoint's
    genes that may be absent from the data (:func:`deltatune.data.genes.match_genes`).
    """

    target_cell_line: str
    n_top_genes: int = 200
    split: SplitSettings = field(default_factory=SplitSettings)
    base_cell_lines: tuple[str, ...] | None = None
    var_names: str | None = None
    max_missing_genes: float = 0.05

    def check(self) -> None:
        super().check()
        if self.n_top_genes < 2:
            raise SettingsError("n_top_genes must be at least 2")
        if not 0 <= self.max_missing_genes < 1:
            raise SettingsError("max_missing_genes must be a fraction in [0, 1)")
