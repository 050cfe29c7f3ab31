"""A synthetic drug screen shaped like Tahoe-100M, with the confounding real screens have.

Each cell line sits on plates of its own; every plate carries DMSO control wells and a subset of
the drugs, each drug at several concentrations. Every cell on a plate shares the plate's offset
(controls and treated alike), and drugs are spread unevenly over plates, so a drug's effect
measured against pooled controls contains its plates' offsets: the confounding that makes random
control pairing learn plate effects as drug effects (design.md section 5).

Expression is simulated on the log scale and sampled as negative-binomial counts:

``log mu[c, g] = base[g] + line[l, g] + plate[p, g] + hill(dose) * effect[d, l, g]``

The two knobs of design.md section 5 are :attr:`~deltatune.settings.ScreenSpec.plate_effect_sd` (plate offsets relative
to drug effects) together with :attr:`~deltatune.settings.ScreenSpec.plates_per_drug` (how unevenly drugs are spread),
and :attr:`~deltatune.settings.ScreenSpec.line_effect_sd` (how far a new cell line's baseline is from the others).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from ..settings import Columns, ScreenSpec
from ..settings.data import TAHOE_CONTROL
from .writers import H5adRows

CONTROL_DRUG = "DMSO_TF"
CHUNK_VALUES = 10_000_000  # counts drawn at a time


def perturbation_label(drug: str, dose_um: float) -> str:
    """Tahoe's ``drugname_drugconc`` label, e.g. ``[('drug07', 0.5, 'uM')]``."""
    return f"[('{drug}', {float(dose_um)}, 'uM')]"


def hill(dose: np.ndarray, ec50: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Fraction of the maximal response at ``dose`` (0 at dose 0, 1 at saturation)."""
    ratio = np.power(np.asarray(dose, dtype=float) / ec50, slope)
    return ratio / (1.0 + ratio)


def _plate_layout(spec: ScreenSpec, rng: np.random.Generator) -> np.ndarray:
    """Boolean (lines, drugs, plates): which plates of each line carry each drug.

    Plate popularity is drawn from a Dirichlet, so some plates carry many drugs and others few,
    as on real plate maps; ``plate_skew`` lower means more uneven.
    """
    n_lines, n_plates = len(spec.cell_lines), spec.plates_per_line
    low, high = spec.plates_per_drug
    layout = np.zeros((n_lines, spec.n_drugs, n_plates), dtype=bool)
    for line in range(n_lines):
        weights = rng.dirichlet(np.full(n_plates, spec.plate_skew))
        n_on = rng.integers(low, high + 1, size=spec.n_drugs)
        for drug in range(spec.n_drugs):
            chosen = rng.choice(n_plates, size=n_on[drug], replace=False, p=weights)
            layout[line, drug, chosen] = True
    return layout


def _plate_offsets(spec: ScreenSpec, rng: np.random.Generator, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Per-gene offsets (``*shape``, genes) with per-gene sd ``plate_effect_sd``; ``shape`` is
    that of the plates, (lines, plates_per_line) unless given.

    Real plate effects are mostly technical programs shared by all plates (capture efficiency,
    ambient RNA, handling stress) in different amounts: offsets are mixtures of
    ``plate_programs`` shared gene loadings. With 0 programs every gene's offset is independent.
    """
    shape = (len(spec.cell_lines), spec.plates_per_line) if shape is None else shape
    if spec.plate_programs == 0:
        return rng.normal(0.0, spec.plate_effect_sd, size=(*shape, spec.n_genes))
    loadings = rng.normal(0.0, 1.0 / np.sqrt(spec.plate_programs), size=(spec.plate_programs, spec.n_genes))
    amounts = rng.normal(0.0, 1.0, size=(*shape, spec.plate_programs))
    return spec.plate_effect_sd * amounts @ loadings


def _wells(spec: ScreenSpec, layout: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One row per well: line, plate, drug (or control), dose and its cell count."""
    line_idx, drug_idx, plate_idx = np.nonzero(layout)
    n_doses = len(spec.doses_um)
    treated = pd.DataFrame(
        {
            "line": np.repeat(line_idx, n_doses),
            "plate": np.repeat(plate_idx, n_doses),
            "drug": np.repeat(drug_idx, n_doses),
            "dose": np.tile(np.asarray(spec.doses_um, dtype=float), len(line_idx)),
        }
    )
    treated["n_cells"] = rng.poisson(spec.cells_per_well, size=len(treated)).clip(min=3)
    lines, plates = np.meshgrid(np.arange(len(spec.cell_lines)), np.arange(spec.plates_per_line), indexing="ij")
    controls = pd.DataFrame({"line": lines.ravel(), "plate": plates.ravel(), "drug": -1, "dose": 0.0})
    controls["n_cells"] = rng.poisson(spec.controls_per_plate, size=len(controls)).clip(min=10)
    return pd.concat([controls, treated], ignore_index=True)


def _drug_effects(spec: ScreenSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each drug's maximal effect (drugs, lines, genes) and its Hill curve's EC50 and slope.

    A drug moves a fraction ``drug_gene_fraction`` of the genes, by a part shared by every line
    and a part of each line's own (``line_specificity``).
    """
    n_genes, n_lines = spec.n_genes, len(spec.cell_lines)
    responsive = rng.random((spec.n_drugs, n_genes)) < spec.drug_gene_fraction
    shared = rng.normal(0.0, 1.0, size=(spec.n_drugs, 1, n_genes))
    specific = rng.normal(0.0, 1.0, size=(spec.n_drugs, n_lines, n_genes))
    s = spec.line_specificity
    effect = spec.drug_effect_sd * responsive[:, None, :] * (np.sqrt(1 - s**2) * shared + s * specific)
    ec50 = np.exp(rng.uniform(*np.log(spec.ec50_range_um), size=spec.n_drugs))
    slope = rng.uniform(*spec.hill_range, size=spec.n_drugs)
    return effect, ec50, slope


@dataclass
class Screen:
    """A simulated screen before its counts are drawn: cells' obs, genes, and what the counts need."""

    obs: pd.DataFrame
    var: pd.DataFrame
    uns: dict
    proportions: np.ndarray  # (wells, genes) expected expression fractions
    well_of_cell: np.ndarray
    depth: np.ndarray  # per cell
    dispersion: float
    rng: np.random.Generator

    def count_chunks(self, chunk_rows: int) -> Iterator[sp.csr_matrix]:
        """Negative-binomial counts (a gamma-Poisson mixture, dispersion = gamma shape) as CSR
        float32 blocks of ``chunk_rows`` cells, the same numbers as drawing every cell at once.

        Drawn at once, one generator gives every cell's gamma rate, then every cell's Poisson
        count. In chunks the Poisson draws must start where all the gamma draws end: a first
        pass draws (and drops) the rates chunk by chunk, keeping the generator's state at each
        chunk's start; the second pass redraws each chunk's rates from its state, then its counts.
        """
        starts = range(0, len(self.well_of_cell), chunk_rows)
        states = []
        for start in starts:
            states.append(self.rng.bit_generator.state)
            self.rng.gamma(self.dispersion, self._mean(start, chunk_rows) / self.dispersion)
        rates = np.random.Generator(type(self.rng.bit_generator)())
        for start, state in zip(starts, states, strict=True):
            rates.bit_generator.state = state
            rate = rates.gamma(self.dispersion, self._mean(start, chunk_rows) / self.dispersion)
            yield sp.csr_matrix(self.rng.poisson(rate).astype(np.float32))

    def _mean(self, start: int, rows: int) -> np.ndarray:
        cells = slice(start, start + rows)
        return self.proportions[self.well_of_cell[cells]] * self.depth[cells, None]


def draw_screen(spec: ScreenSpec) -> Screen:
    """Everything of a seeded screen but its counts: layout, effects, cells and their obs."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    n_genes, n_lines = spec.n_genes, len(spec.cell_lines)

    base = rng.normal(0.0, 1.2, size=n_genes)
    line_shift = rng.normal(0.0, spec.line_effect_sd, size=(n_lines, n_genes))
    plate_shift = _plate_offsets(spec, rng)
    effect, ec50, slope = _drug_effects(spec, rng)

    wells = _wells(spec, _plate_layout(spec, rng), rng)
    is_treated = wells["drug"].to_numpy() >= 0
    drug = wells["drug"].to_numpy().clip(min=0)
    line, plate = wells["line"].to_numpy(), wells["plate"].to_numpy()
    response = np.where(is_treated, hill(wells["dose"].to_numpy(), ec50[drug], slope[drug]), 0.0)
    log_mu = base[None, :] + line_shift[line] + plate_shift[line, plate] + response[:, None] * effect[drug, line]
    proportions = np.exp(log_mu - log_mu.max(axis=1, keepdims=True))
    proportions /= proportions.sum(axis=1, keepdims=True)

    well_of_cell = np.repeat(np.arange(len(wells)), wells["n_cells"].to_numpy())
    n_cells = len(well_of_cell)
    depth = spec.depth * np.exp(rng.normal(0.0, spec.depth_sd, size=n_cells))

    columns = Columns()
    drug_names = np.array([f"drug{d:02d}" for d in range(spec.n_drugs)])
    well_drug = np.where(is_treated, drug_names[drug], CONTROL_DRUG)
    well_label = np.array(
        [
            perturbation_label(d, c) if t else TAHOE_CONTROL
            for d, c, t in zip(well_drug, wells["dose"], is_treated, strict=True)
        ]
    )
    line_names = np.asarray(spec.cell_lines)
    well_plate = np.array([f"{line_names[ln]}_plate{p + 1}" for ln, p in zip(line, plate, strict=True)])
    cell_names = "cell" + pd.Series(np.arange(n_cells)).astype(str).str.zfill(7)
    obs = pd.DataFrame(
        {
            columns.perturbation: pd.Categorical(well_label[well_of_cell]),
            columns.drug: pd.Categorical(well_drug[well_of_cell]),
            columns.dose: wells["dose"].to_numpy()[well_of_cell],
            columns.cell_type: pd.Categorical(line_names[line[well_of_cell]]),
            columns.batch: pd.Categorical(well_plate[well_of_cell]),
        },
        index=pd.Index(cell_names, name="cell"),
    )
    var = pd.DataFrame(index=pd.Index([f"gene{g:04d}" for g in range(n_genes)], name="gene"))
    uns = {"deltatune_simulation": spec_record(spec)}
    return Screen(obs, var, uns, proportions, well_of_cell, depth, spec.dispersion, rng)


def spec_record(spec: ScreenSpec) -> dict:
    """The spec as ``uns['deltatune_simulation']`` stores it: lists for tuples; settings left unset
    (None, as Tahoe's layout's in the single-file layout) are left out, which HDF5 cannot store."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items() if v is not None}


def chunk_rows(n_genes: int) -> int:
    """Cells per chunk: about :data:`CHUNK_VALUES` values (a few float64 arrays of 80 MB)."""
    return max(1, CHUNK_VALUES // n_genes)


def simulate_screen(spec: ScreenSpec) -> ad.AnnData:
    """Simulate a seeded, deterministic screen as raw counts (CSR, float32), in memory.

    obs holds ``drugname_drugconc``, ``drug``, ``concentration``, ``cell_line`` and ``plate``
    (Tahoe-100M names); ``uns['deltatune_simulation']`` records the spec.
    """
    screen = draw_screen(spec)
    X = sp.vstack(list(screen.count_chunks(chunk_rows(spec.n_genes))), format="csr")
    return ad.AnnData(X=X, obs=screen.obs, var=screen.var, uns=screen.uns)


def write_screen(spec: ScreenSpec, path: str | Path) -> int:
    """Simulate ``spec`` straight into an .h5ad at ``path`` (atomically), a chunk of cells at a
    time: memory holds obs and one chunk, never the whole count matrix. Returns the cell count.

    The file is the one :func:`simulate_screen`'s AnnData writes, gzip-compressed.
    """
    screen = draw_screen(spec)
    write_counts(path, screen.count_chunks(chunk_rows(spec.n_genes)), screen.obs, screen.var, screen.uns)
    return len(screen.obs)


def write_counts(
    path: str | Path,
    chunks: Iterator[sp.csr_matrix],
    obs: pd.DataFrame,
    var: pd.DataFrame,
    uns: dict,
    desc: str = "simulate",
    compression: dict | None = None,
) -> None:
    """Write an .h5ad at ``path`` (atomically) whose X is the CSR ``chunks`` stacked, appended one
    at a time (memory holds one chunk, never X); X and obs are compressed with ``compression``
    (h5py dataset options; gzip at its default level unless given)."""
    with H5adRows(path, compression, in_memory=False) as out:  # a screen may be larger than memory
        for block in tqdm(chunks, desc=desc, file=sys.stderr, mininterval=30.0):
            out.append(block)
        out.finish(obs, var, uns)
