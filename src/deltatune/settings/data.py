"""Settings of the data step: obs columns, the simulated screen, preprocessing and the split."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field, fields, replace

from ..errors import InputDataError, SettingsError
from .base import Settings, setting

TAHOE_CONTROL = "[('DMSO_TF', 0.0, 'uM')]"


def screen_files(path: str | list[str] | None) -> list[str] | None:
    """The files ``data.path`` names, in order: one file, a list, or glob patterns (``*``, ``?``,
    ``[...]``: Tahoe-100M's ``plate*_filt_Vevo_Tahoe100M_*.h5ad``), each pattern's matches
    sorted; None (simulate the screen) stays None. A pattern that matches nothing, or a file
    named twice, stops the run here; a plain path is checked where it is read."""
    if path is None:
        return None
    files: list[str] = []
    for entry in [path] if isinstance(path, str) else path:
        matches = sorted(glob.glob(entry)) if glob.has_magic(entry) else [entry]
        if not matches:
            raise InputDataError(
                f"data.path pattern {entry!r} matches no file (a relative path starts in the working directory)"
            )
        files += matches
    if not files:
        raise InputDataError("data.path is an empty list: name at least one .h5ad file, or null to simulate one")
    repeated = sorted({f for f in files if files.count(f) > 1})
    if repeated:
        raise InputDataError(f"data.path names {repeated[0]} more than once")
    return files


@dataclass(frozen=True)
class Columns(Settings):
    """Names of the ``obs`` columns a screen is described by (config ``data.columns``).

    ``batch`` (plate) and ``drug`` / ``dose`` are optional: a screen without plates pairs
    controls at random or by cell type only, and a screen without a drug column splits by
    perturbation label. ``dose_from_label`` derives the dose instead of reading it: Tahoe-100M
    keeps it only inside its labels (``[('Bortezomib', 0.05, 'uM')]``), and preprocessing writes
    the parsed number as column ``dose`` (:func:`deltatune.data.labels.doses_from_labels`). The
    workflow passes each rule only the columns it reads, the others as None
    (:meth:`deltatune.settings.workflow.WorkflowSettings.columns_for`), so that renaming a column
    reruns only the rules that read it.
    """

    perturbation: str = "drugname_drugconc"
    control: str = TAHOE_CONTROL
    cell_type: str | None = "cell_line"
    batch: str | None = "plate"
    drug: str | None = "drug"
    dose: str | None = "concentration"
    dose_from_label: bool = False

    def check(self) -> None:
        super().check()
        if self.dose_from_label and self.dose is None:
            raise SettingsError("dose_from_label needs data.columns.dose: the name of the column to write")

    def required(self) -> list[str]:
        """The obs columns a screen file must have, in the order they are checked (a dose parsed
        from the labels is written by preprocessing, not read)."""
        names = [self.perturbation, self.cell_type, self.batch, self.drug, None if self.dose_from_label else self.dose]
        return [n for n in names if n is not None]

    def only(self, names: tuple[str, ...]) -> Columns:
        """These columns with every field not in ``names`` set to None (perturbation and control
        are always kept: every step tells controls from perturbed cells)."""
        kept = {"perturbation", "control", *names}
        unread = {f.name: None for f in fields(self) if f.name not in kept and f.name != "dose_from_label"}
        return replace(self, **unread, dose_from_label=self.dose_from_label and "dose" in kept)

    def split_unit(self) -> str:
        """Column whose values are held out together (all doses of a drug)."""
        return self.drug or self.perturbation


@dataclass(frozen=True)
class ScreenSpec(Settings):
    """Size and effect sizes of a simulated screen, all effects on the natural-log scale
    (config ``data.simulate``; :mod:`deltatune.data.simulate`).

    ``plate_files`` switches to Tahoe-100M's layout (:mod:`deltatune.data.simulate_plates`):
    every line pooled on each of that many plates, one .h5ad per plate, counts drawn sparsely;
    ``plates_per_line`` is then unused. Only there: ``detected_genes`` sets how many genes a
    cell of median depth detects, ``line_plates`` puts a line on the first n plates only, and
    ``line_abundance`` scales a line's cells per well (1 for lines not named).
    """

    seed: int = 0
    n_genes: int = setting(500, minimum=10)
    # Layout: lines, plates, drugs at doses, wells.
    cell_lines: tuple[str, ...] = setting(("c12", "c25", "c37", "c48", "c51", "c63"), minItems=2)
    plates_per_line: int = setting(6, minimum=1)
    plate_skew: float = setting(1.0, exclusiveMinimum=0)
    n_drugs: int = setting(30, minimum=3)
    doses_um: tuple[float, ...] = setting((0.05, 0.5, 5.0), exclusiveMinimum=0, minItems=1)
    cells_per_well: int = setting(40, minimum=1)
    controls_per_plate: int = setting(120, minimum=1)
    # Sampling: sequencing depth and negative-binomial dispersion.
    depth: float = setting(4000.0, exclusiveMinimum=0)
    depth_sd: float = setting(0.3, minimum=0)
    dispersion: float = setting(8.0, exclusiveMinimum=0)
    # Confounding: how unevenly drugs sit on plates, plate offsets, line baselines.
    plates_per_drug: tuple[int, int] = setting((1, 2), minimum=1)
    plate_effect_sd: float = setting(0.2, minimum=0)
    plate_programs: int = setting(4, minimum=0)
    line_effect_sd: float = setting(0.5, minimum=0)
    # Drug effects: Hill-curve ranges shared by all drugs, effect size, responsive genes.
    ec50_range_um: tuple[float, float] = setting((0.05, 2.0), exclusiveMinimum=0)
    hill_range: tuple[float, float] = setting((0.8, 2.5), exclusiveMinimum=0)
    drug_effect_sd: float = setting(0.6, minimum=0)
    drug_gene_fraction: float = setting(0.25, minimum=0, maximum=1)
    line_specificity: float = setting(0.4, minimum=0, maximum=1)
    # Tahoe's layout: plates are files, every line on every plate (None: the layout above).
    plate_files: int | None = setting(None, minimum=1)
    detected_genes: int | None = setting(None, minimum=1)
    line_plates: dict[str, int] | None = setting(None, minimum=1)
    line_abundance: dict[str, float] | None = setting(None, exclusiveMinimum=0)

    def check(self) -> None:
        super().check()
        low, high = self.plates_per_drug
        name = "plates_per_line" if self.plate_files is None else "plate_files"
        n_plates = getattr(self, name)
        if not 1 <= low <= high <= n_plates:
            raise SettingsError(
                f"plates_per_drug {self.plates_per_drug} must satisfy 1 <= low <= high <= {name} ({n_plates})"
            )
        if len(set(self.cell_lines)) != len(self.cell_lines):
            raise SettingsError(f"cell_lines must be distinct names: {self.cell_lines}")
        self._check_plate_files()

    def _check_plate_files(self) -> None:
        """The settings of Tahoe's layout need it, and name lines and plates that exist."""
        extras = {k: getattr(self, k) for k in ("detected_genes", "line_plates", "line_abundance")}
        if self.plate_files is None:
            given = [k for k, v in extras.items() if v is not None]
            if given:
                raise SettingsError(f"{given[0]} needs plate_files (Tahoe's layout, a file per plate)")
            return
        for key in ("line_plates", "line_abundance"):
            unknown = sorted(set(extras[key] or {}) - set(self.cell_lines))
            if unknown:
                raise SettingsError(f"{key} names lines not in cell_lines: {unknown}")
        on = {line: (self.line_plates or {}).get(line, self.plate_files) for line in self.cell_lines}
        if max(on.values()) > self.plate_files:
            raise SettingsError(f"line_plates puts a line on more plates than plate_files ({self.plate_files})")
        if max(on.values()) < self.plate_files:
            raise SettingsError(f"line_plates leaves plate{max(on.values()) + 1} without a line")
        if self.detected_genes is not None and self.detected_genes >= self.n_genes:
            raise SettingsError(f"detected_genes ({self.detected_genes}) must be below n_genes ({self.n_genes})")


@dataclass(frozen=True)
class SplitSettings(Settings):
    """Which of the target line's perturbations are held out for validation and test.

    By default a seeded random draw of split units (drugs): ``val_fraction`` and ``test_fraction``
    of them, and ``dose_holdout_fraction`` of the training drugs lose one dose to the test split
    (a seen drug at an unseen dose). A published comparison often needs a fixed split instead:
    ``test`` and ``val`` list the held-out names (drugs, or single perturbation labels), or
    ``toml`` names an arc-state / cell-load split file whose ``[fewshot]`` entry for the target
    line gives them (the split a released checkpoint was trained with, so that its held-out
    perturbations stay held out). A fixed split ignores the fractions and the seed.
    """

    val_fraction: float = setting(0.15, minimum=0, exclusiveMaximum=1)
    test_fraction: float = setting(0.3, exclusiveMinimum=0, exclusiveMaximum=1)
    dose_holdout_fraction: float = setting(0.0, minimum=0, maximum=1)
    seed: int = 0
    test: tuple[str, ...] | None = setting(None, minItems=1)
    val: tuple[str, ...] | None = None
    toml: str | None = None

    def check(self) -> None:
        super().check()
        if self.val_fraction + self.test_fraction >= 1:
            raise SettingsError("val_fraction + test_fraction must leave units to train on")
        if self.toml is not None and (self.test is not None or self.val is not None):
            raise SettingsError("split.toml and split.test / split.val both fix the split: give one of them")
        if self.val is not None and self.test is None:
            raise SettingsError("split.val needs split.test: a fixed split names its test perturbations")
        both = sorted(set(self.test or ()) & set(self.val or ()))
        if both:
            raise SettingsError(f"split.test and split.val both name {both[:5]}")

    @property
    def fixed(self) -> bool:
        """Whether the split is given (lists or a TOML) rather than drawn."""
        return self.test is not None or self.toml is not None


@dataclass(frozen=True)
class PreprocessSettings(Settings):
    """Settings of preprocessing: config section ``preprocess`` plus ``data.target_cell_line`` and
    ``data.var_names`` (:class:`deltatune.settings.workflow.WorkflowSettings` puts them together).

    ``base_cell_lines`` are the lines kept for pretraining a base model and for the other-lines
    baseline: None keeps every line but the target, an empty list none; of them at most
    ``base_cells_per_group`` cells of each (line, perturbation, plate) group are kept, a sample
    seeded by ``split.seed`` (None: every cell). ``keep_cells`` keeps only the cells whose obs
    columns hold one of the listed values (Tahoe-100M: ``{pass_filter: [full]}``), every line's
    alike, before anything else is decided; None keeps every cell. ``var_names`` names a
    var column to take gene names from; ``max_missing_genes`` is the fraction of a checkpoint's
    genes that may be absent from the data (:func:`deltatune.data.genes.model_genes`).
    """

    target_cell_line: str
    n_top_genes: int = setting(200, minimum=2)
    split: SplitSettings = field(default_factory=SplitSettings)
    base_cell_lines: tuple[str, ...] | None = None
    base_cells_per_group: int | None = setting(None, minimum=1)
    var_names: str | None = None
    max_missing_genes: float = setting(0.05, minimum=0, exclusiveMaximum=1)
    keep_cells: dict[str, tuple[str, ...]] | None = None

    def check(self) -> None:
        super().check()
        empty = sorted(name for name, values in (self.keep_cells or {}).items() if not values)
        if empty:
            raise SettingsError(f"keep_cells.{empty[0]} lists no value: it would keep no cell")
