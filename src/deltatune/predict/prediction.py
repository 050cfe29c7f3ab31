"""The prediction file: predicted test cells followed by the real control cells, ready for cell-eval.

The predicted expression is held once, and never whole: a :class:`Prediction` takes the
predicted rows a chunk at a time, in the order the predicting step produces them, then copies
the real controls in chunks. Given a path it writes the rows straight into the ``.h5ad`` (then
renames it into place), so memory holds a chunk, not the test cells x genes matrix; without one
it builds the same AnnData in memory. ``X`` is what cell-eval reads; ``obs["predicted"]`` tells
the predicted cells from the real controls, which are copied unchanged so that predicted and
real control means agree.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from ..data.genes import measured_genes
from ..data.groups import control_mask
from ..data.readers import dense_rows
from ..errors import InputDataError
from ..files import atomic_path
from ..settings import Columns

CHUNK_ROWS = 20_000  # rows copied or computed at a time
INFO = "deltatune_inference"  # uns key: how the prediction was made
COMPRESSION = "gzip"  # of the file's X


class Prediction(contextlib.AbstractContextManager):
    """The prediction of ``cells`` (rows of ``target``, in the order their rows will be appended).

    Use as a context manager: :meth:`append` the predicted rows, then :meth:`finish`; leaving the
    block without finishing (an error) leaves no file behind.
    """

    def __init__(self, target: ad.AnnData, cells: np.ndarray, columns: Columns, path: str | Path | None = None):
        self.target = target
        self.controls = np.flatnonzero(control_mask(target.obs, columns))
        self.n_predicted = len(cells)
        obs = pd.concat([target.obs.iloc[cells], target.obs.iloc[self.controls]])
        obs["predicted"] = np.repeat([True, False], [len(cells), len(self.controls)])
        self.obs, self.var = obs, target.var.copy()
        self.path = path
        self.filled = 0
        self._stack = contextlib.ExitStack()
        self._file = None

    def __enter__(self) -> Prediction:
        shape = (len(self.obs), len(self.var))
        if self.path is None:
            self.X = np.empty(shape, dtype=np.float32)
            return self
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._file = self._stack.enter_context(h5py.File(tmp, "w"))
        self.X = self._file.create_dataset(
            "X",
            shape=shape,
            dtype="float32",
            chunks=(min(shape[0], 1024), shape[1]) if shape[0] else None,
            compression=COMPRESSION,
        )
        self.X.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)

    def append(self, rows: np.ndarray) -> None:
        """The next predicted rows (float32, genes in the target's order)."""
        self.X[self.filled : self.filled + len(rows)] = rows
        self.filled += len(rows)

    def finish(self, info: dict) -> ad.AnnData | None:
        """Copy the real controls in, record ``info``; the AnnData (in memory), or None (written)."""
        if self.filled != self.n_predicted:
            raise RuntimeError(f"{self.filled} of {self.n_predicted} predicted rows were given")
        for start in range(0, len(self.controls), CHUNK_ROWS):
            part = self.controls[start : start + CHUNK_ROWS]
            self.X[self.n_predicted + start : self.n_predicted + start + len(part)] = dense_rows(self.target.X[part])
        uns = {INFO: {**info, "n_predicted": self.n_predicted, "n_controls": len(self.controls)}}
        if self._file is None:
            return ad.AnnData(X=self.X, obs=self.obs, var=self.var, uns=uns)
        for key, value in (("obs", self.obs), ("var", self.var), ("uns", uns)):
            ad.io.write_elem(self._file, key, value)
        for empty in ("layers", "obsm", "obsp", "varm", "varp"):
            ad.io.write_elem(self._file, empty, {})
        self._file.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        return None


def as_prediction(adata: ad.AnnData, target: ad.AnnData, cells: np.ndarray, columns: Columns) -> ad.AnnData:
    """Someone else's prediction (``state tx infer`` output, say) in deltatune's form: the rows
    named like ``cells`` (rows of ``target``: the real cells predicted), genes in the target's
    order, followed by the target's real controls.

    Whatever ``adata`` predicts for control cells is dropped: a prediction is scored against the
    real controls (cell-eval issues 183 and 196). A test cell or a measured gene of the target
    that ``adata`` lacks, or cell names that repeat, are an :class:`~deltatune.errors.InputDataError`
    naming how many and a few of them; genes the target only holds as zeros for a checkpoint
    (``var["measured"]`` False: never scored) may be absent and are then zeros too.
    """
    if not adata.obs_names.is_unique:
        repeated = list(adata.obs_names[adata.obs_names.duplicated()][:3])
        raise InputDataError(f"the prediction's cell names are not unique (e.g. {repeated})")
    names = target.obs_names[cells]
    rows = adata.obs_names.get_indexer(names)
    genes = adata.var_names.get_indexer(target.var_names)
    scored = measured_genes(target).var_names
    for what, wanted, found in (("cell", names, rows), ("gene", scored, adata.var_names.get_indexer(scored))):
        if (found < 0).any():
            missing = list(wanted[found < 0][:3])
            raise InputDataError(
                f"the prediction lacks {int((found < 0).sum())} {what}(s) of the real data "
                f"(e.g. {missing}): it must name the real test cells it predicts, with their genes"
            )
    with Prediction(target, cells, columns) as prediction:
        for start in range(0, len(rows), CHUNK_ROWS):
            block = rows[start : start + CHUNK_ROWS]
            increasing = np.sort(block)  # a backed file reads rows in increasing order
            values = dense_rows(adata.X[increasing])[np.searchsorted(increasing, block)]
            prediction.append(np.where(genes >= 0, values[:, np.maximum(genes, 0)], np.float32(0.0)))
        return prediction.finish({"mode": "external"})
