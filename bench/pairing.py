"""Pairing index and control means at Tahoe scale, against the seed's per-cell loop.

    python bench/pairing.py [--cells 1000000]

One synthetic screen: 1,000,000 cells x 2,000 genes (CSR, 10% non-zero), 50 plates, 5 cell lines,
400 perturbations plus DMSO controls. Measured in one process, one run:

* ``build_draw_s``: ``build_pairing_index`` (batch strategy) plus one draw of a control for
  every perturbed cell;
* ``means_vs_product``: control means per plate (``PairingIndex.with_means``) over the time of
  one bare ``indicator.T @ X`` product with a one-hot plate indicator of the control rows (and,
  for reference, ``means_vs_csr_product`` against the same product with the indicator already
  transposed to CSR, the fastest form of that product in scipy);
* ``rss_vs_csr``: the process's peak resident memory over the CSR matrix's size;
* ``speedup_vs_seed``: the seed's approach (a dict of control indices built cell by cell, then
  ``np.random.choice`` per perturbed cell with a per-cell group lookup) timed on a 20,000-cell
  slice and scaled to all cells, over ``build_draw_s``.

Writes bench/results/pairing.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from machine import describe

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from deltatune.pairing.index import build_pairing_index
from deltatune.settings import Columns

N_GENES, DENSITY, N_PLATES, N_LINES, N_PERTS, CONTROL_FRACTION = 2000, 0.10, 50, 5, 400, 0.10
SEED_SLICE = 20_000
CHUNK = 50_000


def make_screen(n_cells: int, rng: np.random.Generator) -> tuple[pd.DataFrame, sp.csr_matrix]:
    """obs and a CSR matrix with exactly DENSITY * N_GENES stored values per row, built in chunks."""
    columns = Columns()
    per_row = int(DENSITY * N_GENES)
    indices = np.empty(n_cells * per_row, dtype=np.int32)
    data = np.empty(n_cells * per_row, dtype=np.float32)
    for start in range(0, n_cells, CHUNK):
        stop = min(start + CHUNK, n_cells)
        lo, hi = start * per_row, stop * per_row
        indices[lo:hi] = rng.integers(0, N_GENES, size=hi - lo, dtype=np.int32)
        data[lo:hi] = rng.random(hi - lo, dtype=np.float32) * 3
    indptr = np.arange(0, (n_cells + 1) * per_row, per_row, dtype=np.int64)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_cells, N_GENES))
    perts = np.array([f"[('drug{i:03d}', 1.0, 'uM')]" for i in range(N_PERTS)] + [columns.control])
    is_control = rng.random(n_cells) < CONTROL_FRACTION
    obs = pd.DataFrame(
        {
            columns.perturbation: pd.Categorical(
                np.where(is_control, N_PERTS, rng.integers(0, N_PERTS, n_cells))
            ).rename_categories(perts[: N_PERTS + 1]),
            columns.batch: pd.Categorical(rng.integers(0, N_PLATES, n_cells)).rename_categories(
                [f"plate{i}" for i in range(N_PLATES)]
            ),
            columns.cell_type: pd.Categorical(rng.integers(0, N_LINES, n_cells)).rename_categories(
                [f"line{i}" for i in range(N_LINES)]
            ),
        },
        index=pd.RangeIndex(n_cells).astype(str),
    )
    return obs, X


class SeedDataset:
    """The seed's AnnDataPerturbationDatasetV2 pairing, kept as written (design.md 2.1)."""

    def __init__(self, obs: pd.DataFrame, columns: Columns):
        self.obs, self.columns = obs, columns
        labels = obs[columns.perturbation].to_numpy()
        self.ctrl_indices = np.where(labels == columns.control)[0]
        self.pert_indices = np.where(labels != columns.control)[0]
        self.ctrl_groups: dict[tuple, list | np.ndarray] = {}
        for idx in self.ctrl_indices:
            self.ctrl_groups.setdefault(self._get_group_key(idx), []).append(idx)
        for key in self.ctrl_groups:
            self.ctrl_groups[key] = np.array(self.ctrl_groups[key])

    def _get_group_key(self, idx: int) -> tuple:
        return (str(self.obs[self.columns.batch].iloc[idx]),)

    def paired_ctrl_idx(self, pert_idx: int) -> int:
        key = self._get_group_key(pert_idx)
        if key in self.ctrl_groups and len(self.ctrl_groups[key]) > 0:
            return np.random.choice(self.ctrl_groups[key])
        return np.random.choice(self.ctrl_indices)


def seed_seconds(obs: pd.DataFrame, columns: Columns) -> float:
    """The seed's index build plus one draw per perturbed cell, on ``obs``."""
    started = time.perf_counter()
    dataset = SeedDataset(obs, columns)
    for idx in dataset.pert_indices:
        dataset.paired_ctrl_idx(idx)
    return time.perf_counter() - started


def best_of(repeats: int, func) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pairing.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    columns = Columns()
    obs, X = make_screen(args.cells, rng)
    csr_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes

    def build_and_draw():
        index = build_pairing_index(obs, columns, "batch")
        return index, index.draw(np.random.default_rng(1))

    build_draw_s, (index, paired) = best_of(5, build_and_draw)
    plate = obs[columns.batch].cat.codes.to_numpy().astype(np.int64)
    assert (plate[paired] == plate[index.perturbed]).all()
    means_s, with_means = best_of(3, lambda: index.with_means(X))
    # Peak memory of the deltatune path, before the reference product allocates its own copies.
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    rows = index.controls
    indicator = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, plate[rows])), shape=(args.cells, N_PLATES))
    product_s, product = best_of(3, lambda: indicator.T @ X)
    transposed = indicator.T.tocsr()
    csr_product_s, _ = best_of(3, lambda: transposed @ X)
    reference = np.asarray(product.todense()) / index.count[:, None]
    assert np.allclose(with_means.means, reference, atol=1e-4)

    seed_s = seed_seconds(obs.iloc[:SEED_SLICE], columns) * args.cells / SEED_SLICE
    result = {
        "build_draw_s": round(build_draw_s, 3),
        "speedup_vs_seed": round(seed_s / build_draw_s, 1),
        "means_vs_product": round(means_s / product_s, 3),
        "means_vs_csr_product": round(means_s / csr_product_s, 3),
        "rss_vs_csr": round(peak_rss / csr_bytes, 3),
        "seed_scaled_s": round(seed_s, 1),
        "means_s": round(means_s, 3),
        "product_s": round(product_s, 3),
        "csr_product_s": round(csr_product_s, 3),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "csr_mb": round(csr_bytes / 2**20, 1),
        "n_cells": args.cells,
        "n_genes": N_GENES,
        "nnz": int(X.nnz),
        "pairing": index.summary(),
        "machine": describe(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
