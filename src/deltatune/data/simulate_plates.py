"""A screen in Tahoe-100M's layout: every cell line pooled on every plate, one file per plate.

Tahoe-100M pools its 50 cell lines in every well of 14 plates (96 wells each) and is shared as
one .h5ad per plate. With :attr:`~deltatune.settings.ScreenSpec.plate_files` set, plate
``plate{p}`` carries DMSO control wells and the drugs placed on it (each at every dose, each drug
on ``plates_per_drug`` plates, some plates busier than others), every line on the plate is in
every well, and the plate's offset is shared by all of them (they were handled together). A line
can be kept to the first plates only (``line_plates``) and made more or less abundant
(``line_abundance``). Expression follows :mod:`deltatune.data.simulate`'s model for each
(plate, well, line) group of cells:

``log mu[g] = base[g] + line[l, g] + plate[p, g] + hill(dose) * effect[d, l, g]``

and a cell of depth ``D`` (UMIs: ``depth * exp(N(0, depth_sd))``) counts gene ``g``
negative-binomially with mean ``D * softmax(log mu)[g]`` and shape ``dispersion``, every cell
and gene independently, as the single-file simulator draws them.

The counts are drawn sparsely, at a cost that follows a cell's UMIs rather than the number of
genes (at 20,000 genes, drawing every gene of a million cells is 2e10 draws). A negative
binomial of mean ``m`` and shape ``k`` is a Poisson number, of mean ``k log(1 + m / k)``, of
logarithmic-series clusters with parameter ``m / (k + m)``. So per cell: ``Poisson(D)``
candidate genes are drawn from the group's proportions (each gene a Poisson number of times,
mean ``m``), each kept with probability ``k log(1 + m / k) / m`` (thinning the Poisson number to
the clusters'), and each kept one adds a logarithmic-series count. That is exact, not an
approximation: the counts have the single-file simulator's distribution, drawn with other
random numbers. Candidates are drawn in sorted order within a cell (a cell's uniforms sorted,
then one binary search of the cumulative proportions), so a gene's clusters lie side by side and
CSR rows come out sorted. Chunks of cells are vectorized; only groups are looped over.

How many genes a cell detects depends on its depth and on how unequal expression is across
genes (``base``). ``detected_genes`` sets that spread (the sd of ``base``, 1.2 otherwise) so that
a cell of median depth in a control well detects that many genes on average. Tahoe-100M's
figures, from the first 100,000 cells of its obs metadata (plate10) in the Arc Virtual Cell
Atlas tutorial (github.com/ArcInstitute/arc-virtual-cell-atlas, ``tahoe-100M/tutorial-py.ipynb``,
``gene_count`` and ``tscp_count``): a median of 1,209 genes detected per cell (mean 1,382,
quartiles 896 and 1,661) and a median of 1,748 UMIs (mean 2,214); per-well means on its plates
run from about 1,200 to 2,230 genes. :data:`TAHOE_CELLS` holds settings for these.

Plate ``p``'s counts come from a random stream of its own (the seed and ``p``), and everything
else is drawn before any count, so a plate file is the same whichever other plates are written:
the first two of eight plate files are a two-plate screen whose extra six plates are missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import SettingsError
from ..settings import Columns, ScreenSpec
from ..settings.data import TAHOE_CONTROL
from .simulate import CONTROL_DRUG, _drug_effects, _plate_offsets, hill, perturbation_label, spec_record, write_counts

CHUNK_UMIS = 2_000_000  # candidate genes drawn at a time (about 150 MB of working arrays)
# gzip level 1 after HDF5's byte shuffle: about 3 times faster than level 4 alone, and smaller
# (counts are mostly 1); any HDF5 reader has both filters.
COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
BASE_SD = 1.2  # sd of the genes' baseline log expression without detected_genes (the single-file layout's)

# Tahoe-100M's cells (module docstring): median UMIs, their spread (a log-normal with Tahoe's
# median and mean, 1,748 and 2,214) and the median of genes detected.
TAHOE_CELLS = {"depth": 1750.0, "depth_sd": 0.69, "detected_genes": 1200}


def plate_names(spec: ScreenSpec) -> list[str]:
    """Names of the plates, in order, as Tahoe-100M names them (``plate1`` ...); each is a file."""
    _require_plates(spec)
    return [f"plate{p + 1}" for p in range(spec.plate_files)]


def expected_detected(log_mu: np.ndarray, depth: float, dispersion: float) -> np.ndarray:
    """Expected number of genes with a non-zero count, per row of log expression ``log_mu``
    (genes last), for a cell of ``depth`` UMIs and negative-binomial shape ``dispersion``."""
    p = np.exp(log_mu - log_mu.max(axis=-1, keepdims=True))
    m = depth * p / p.sum(axis=-1, keepdims=True)
    return -np.expm1(-dispersion * np.log1p(m / dispersion)).sum(axis=-1)


def _base_sd(spec: ScreenSpec, z: np.ndarray, line_shift: np.ndarray) -> float:
    """The sd of the genes' baseline log expression (``base = sd * z``) at which a cell of median
    depth detects ``detected_genes`` genes on average over the lines' baselines (plate and drug
    effects left out); by bisection: the more unequal expression, the fewer genes detected."""
    if spec.detected_genes is None:
        return BASE_SD

    def detected(sd: float) -> float:
        return float(expected_detected(sd * z + line_shift, spec.depth, spec.dispersion).mean())

    low, high = 0.0, 20.0
    if not detected(high) < spec.detected_genes < detected(low):
        raise SettingsError(
            f"data.simulate.detected_genes ({spec.detected_genes}) is out of reach at depth {spec.depth:g}: "
            f"a cell detects between {detected(high):.0f} and {detected(low):.0f} genes"
        )
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if detected(mid) > spec.detected_genes else (low, mid)
    return (low + high) / 2


def _groups(spec: ScreenSpec, rng: np.random.Generator) -> pd.DataFrame:
    """One row per (plate, well, line): the well's drug (-1: control) and dose, and the number of
    the line's cells in it. A plate's rows: its control well first, then its drugs by number."""
    n_plates, n_lines = spec.plate_files, len(spec.cell_lines)
    weights = rng.dirichlet(np.full(n_plates, spec.plate_skew))
    low, high = spec.plates_per_drug
    n_on = rng.integers(low, high + 1, size=spec.n_drugs)
    layout = np.zeros((n_plates, spec.n_drugs), dtype=bool)
    for drug in range(spec.n_drugs):
        layout[rng.choice(n_plates, size=n_on[drug], replace=False, p=weights), drug] = True
    plate_idx, drug_idx = np.nonzero(layout)
    doses = np.asarray(spec.doses_um, dtype=float)
    wells = pd.concat(
        [
            pd.DataFrame({"plate": np.arange(n_plates), "drug": -1, "dose": 0.0}),
            pd.DataFrame(
                {
                    "plate": np.repeat(plate_idx, len(doses)),
                    "drug": np.repeat(drug_idx, len(doses)),
                    "dose": np.tile(doses, len(plate_idx)),
                }
            ),
        ],
        ignore_index=True,
    ).sort_values(["plate", "drug", "dose"], kind="stable", ignore_index=True)
    lines = pd.DataFrame(
        {
            "line": np.arange(n_lines),
            "on_plates": [(spec.line_plates or {}).get(name, n_plates) for name in spec.cell_lines],
            "abundance": [(spec.line_abundance or {}).get(name, 1.0) for name in spec.cell_lines],
        }
    )
    groups = wells.merge(lines, how="cross")
    groups = groups[groups["plate"] < groups["on_plates"]].reset_index(drop=True)
    control = groups["drug"].to_numpy() < 0
    mean = np.where(control, spec.controls_per_plate, spec.cells_per_well) * groups["abundance"].to_numpy()
    groups["n_cells"] = rng.poisson(mean).clip(min=np.where(control, 10, 3))
    return groups.drop(columns=["on_plates", "abundance"])


@dataclass
class PlateScreen:
    """A simulated plate-file screen before its counts are drawn: its groups of cells, what their
    expression is made of, genes, and the spec's record."""

    spec: ScreenSpec
    groups: pd.DataFrame  # one row per (plate, well, line): plate, drug, dose, line, n_cells
    base: np.ndarray  # (genes,)
    line_shift: np.ndarray  # (lines, genes)
    plate_shift: np.ndarray  # (plates, genes)
    effect: np.ndarray  # (drugs, lines, genes) maximal drug effects
    response: np.ndarray  # per group: the Hill response to its dose (0 for controls)
    var: pd.DataFrame
    uns: dict

    def proportions(self, group: int) -> np.ndarray:
        """Expected expression fractions (genes,) of the cells of ``group``."""
        row = self.groups.iloc[group]
        line, plate, drug = int(row["line"]), int(row["plate"]), max(int(row["drug"]), 0)
        log_mu = (
            self.base + self.line_shift[line] + self.plate_shift[plate] + self.response[group] * self.effect[drug, line]
        )
        p = np.exp(log_mu - log_mu.max())
        return p / p.sum()

    def _cells(self, plate: int) -> np.ndarray:
        """The group of each cell of ``plate`` (0-based), in the file's order."""
        on_plate = np.flatnonzero(self.groups["plate"].to_numpy() == plate)
        return np.repeat(on_plate, self.groups["n_cells"].to_numpy()[on_plate])

    def obs(self, plate: int) -> pd.DataFrame:
        """obs of ``plate``'s cells, with Tahoe-100M's columns; cell names carry the plate's."""
        columns, spec = Columns(), self.spec
        group = self._cells(plate)
        drug, dose = self.groups["drug"].to_numpy(), self.groups["dose"].to_numpy()
        drug_name = np.where(drug < 0, CONTROL_DRUG, [f"drug{d:02d}" for d in drug])
        label = np.array(
            [
                TAHOE_CONTROL if d < 0 else perturbation_label(n, c)
                for d, n, c in zip(drug, drug_name, dose, strict=True)
            ]
        )
        name = f"plate{plate + 1}"
        return pd.DataFrame(
            {
                columns.perturbation: pd.Categorical(label[group]),
                columns.drug: pd.Categorical(drug_name[group]),
                columns.dose: dose[group],
                columns.cell_type: pd.Categorical(np.asarray(spec.cell_lines)[self.groups["line"].to_numpy()[group]]),
                columns.batch: pd.Categorical(np.full(len(group), name)),
            },
            index=pd.Index([f"{name}_{i:07d}" for i in range(len(group))], name="cell"),
        )

    def count_chunks(self, plate: int) -> Iterator[sp.csr_matrix]:
        """Raw counts of ``plate``'s cells (obs order) as CSR float32 blocks of about
        :data:`CHUNK_UMIS` UMIs, from the plate's own random stream (module docstring)."""
        rng = np.random.default_rng(np.random.SeedSequence(self.spec.seed, spawn_key=(plate,)))
        group = self._cells(plate)
        depth = self.spec.depth * np.exp(rng.normal(0.0, self.spec.depth_sd, size=len(group)))
        rows = max(1, int(CHUNK_UMIS / depth.mean()))
        for start in range(0, len(group), rows):
            cells = slice(start, start + rows)
            yield self._draw_counts(group[cells], depth[cells], rng)

    def _draw_counts(self, group: np.ndarray, depth: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
        """Negative-binomial counts of cells of ``depth`` UMIs in ``group``s, drawn as thinned
        candidates with logarithmic-series sizes (module docstring), as CSR with sorted rows."""
        n_rows, n_genes, k = len(group), self.spec.n_genes, self.spec.dispersion
        n = rng.poisson(depth)
        cell = np.repeat(np.arange(n_rows), n)
        u = np.sort(cell + rng.random(cell.size)) - cell  # each cell's uniforms, sorted (to about 2**-40)
        gene = np.empty(cell.size, dtype=np.int64)
        mean = np.empty(cell.size)
        first_cell = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])  # the groups' cells lie together
        bounds = np.r_[0, np.cumsum(n)][np.r_[first_cell, n_rows]]
        for g, lo, hi in zip(group[first_cell], bounds[:-1], bounds[1:], strict=True):
            p = self.proportions(int(g))
            cdf = np.cumsum(p)
            gene[lo:hi] = np.searchsorted(cdf, u[lo:hi] * cdf[-1], side="right").clip(max=n_genes - 1)
            mean[lo:hi] = p[gene[lo:hi]]
        mean *= depth[cell]
        kept = rng.random(cell.size) * mean < k * np.log1p(mean / k)
        cell, gene, mean = cell[kept], gene[kept], mean[kept]
        size = logseries(mean / (k + mean), rng)
        first = np.flatnonzero(np.r_[True, (gene[1:] != gene[:-1]) | (cell[1:] != cell[:-1])]) if cell.size else cell
        data = np.add.reduceat(size, first) if first.size else size
        indptr = np.r_[0, np.cumsum(np.bincount(cell[first], minlength=n_rows))]
        return sp.csr_matrix((data, gene[first].astype(np.int32), indptr), shape=(n_rows, n_genes))


def logseries(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logarithmic-series draws (float32), one per parameter in ``p``: the algorithm of numpy's
    ``Generator.logseries`` (Kemp's), vectorized, at a fraction of its cost with an array of
    ``p``. A draw is 1 when its first uniform is at least ``p``; only the few others (``p`` is
    small for most genes) need a second uniform."""
    out = np.ones(p.size, dtype=np.float32)
    v = rng.random(p.size)
    rest = np.flatnonzero(v < p)
    v, p = v[rest], p[rest]
    q = -np.expm1(np.log1p(-p) * rng.random(rest.size))
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0): draws of probability 2**-53, kept at 1
        x = np.floor(1 + np.log(v) / np.log(q))
    out[rest] = np.where(v <= q * q, np.maximum(x, 1), np.where(v >= q, 1, 2))
    return out


def _require_plates(spec: ScreenSpec) -> None:
    if spec.plate_files is None:
        raise SettingsError("data.simulate.plate_files is not set: the screen is a single file (write_screen)")


def draw_plates(spec: ScreenSpec) -> PlateScreen:
    """Everything of a seeded plate-file screen but its counts: groups, effects, genes."""
    spec.check()
    _require_plates(spec)
    rng = np.random.default_rng(spec.seed)
    n_genes, n_lines = spec.n_genes, len(spec.cell_lines)
    z = rng.normal(0.0, 1.0, size=n_genes)
    line_shift = rng.normal(0.0, spec.line_effect_sd, size=(n_lines, n_genes))
    plate_shift = _plate_offsets(spec, rng, shape=(spec.plate_files,))
    effect, ec50, slope = _drug_effects(spec, rng)
    groups = _groups(spec, rng)
    drug = groups["drug"].to_numpy()
    response = np.where(
        drug >= 0, hill(groups["dose"].to_numpy(), ec50[drug.clip(min=0)], slope[drug.clip(min=0)]), 0.0
    )
    base = _base_sd(spec, z, line_shift) * z
    var = pd.DataFrame(index=pd.Index([f"gene{g:04d}" for g in range(n_genes)], name="gene"))
    uns = {"deltatune_simulation": spec_record(spec)}
    return PlateScreen(spec, groups, base, line_shift, plate_shift, effect, response, var, uns)


def write_plates(spec: ScreenSpec, out_dir: str | Path, plates: Sequence[int] | None = None) -> list[Path]:
    """Simulate ``spec`` (``plate_files`` set) into ``out_dir/plate{p}.h5ad``, one file per plate
    (each written atomically, a chunk of cells at a time); ``plates`` (numbered from 1) writes
    only those, the same files as when all are written. Returns the files' paths."""
    screen = draw_plates(spec)
    numbers = range(1, spec.plate_files + 1) if plates is None else list(plates)
    bad = sorted(set(numbers) - set(range(1, spec.plate_files + 1)))
    if bad:
        raise SettingsError(f"plates {bad} do not exist: data.simulate.plate_files is {spec.plate_files}")
    paths = []
    for number in numbers:
        path = Path(out_dir) / f"plate{number}.h5ad"
        obs = screen.obs(number - 1)
        chunks = screen.count_chunks(number - 1)
        write_counts(path, chunks, obs, screen.var, screen.uns, desc=f"plate{number}", compression=COMPRESSION)
        paths.append(path)
    return paths
