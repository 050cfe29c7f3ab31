"""Writing an .h5ad a block of rows at a time: outputs larger than memory (a preprocessed
million-cell line, a simulated screen) never exist whole in memory."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import anndata as ad
import h5py
import pandas as pd
import scipy.sparse as sp

from ..files import atomic_path


class H5adRows:
    """An .h5ad written a block of rows at a time, atomically: X (CSR) grows block by block and
    obs, var and uns are written by :meth:`finish`, so memory holds one block of expression
    rather than the whole matrix. X and obs are compressed with ``compression`` (h5py dataset
    options; gzip at its default level unless given). Use as a context manager; leaving it with
    an error leaves nothing under ``path``.
    """

    def __init__(self, path: str | os.PathLike, compression: dict | None = None) -> None:
        self.path = Path(path)
        self.compression = {"compression": "gzip"} if compression is None else compression
        self.n_obs = 0

    def __enter__(self) -> H5adRows:
        self._stack = ExitStack()  # the file is closed before the temporary is renamed into place
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._file = self._stack.enter_context(h5py.File(tmp, "w"))
        return self

    def append(self, X: sp.csr_matrix) -> None:
        """Add the rows of CSR block ``X``."""
        if "X" not in self._file:
            ad.io.write_elem(self._file, "X", X, dataset_kwargs=self.compression)
            self._X = ad.io.sparse_dataset(self._file["X"])
        elif X.shape[0]:
            self._X.append(X)
        self.n_obs += X.shape[0]

    def finish(self, obs: pd.DataFrame, var: pd.DataFrame, uns: dict | None = None) -> None:
        """Write the annotations of the rows appended, which must be all of ``obs``'s."""
        if "X" not in self._file:
            self.append(sp.csr_matrix((0, len(var)), dtype="float32"))
        if len(obs) != self.n_obs:
            raise ValueError(f"{self.path}: {self.n_obs} rows written for {len(obs)} obs rows")
        ad.io.write_elem(self._file, "obs", obs, dataset_kwargs=self.compression)
        ad.io.write_elem(self._file, "var", var)
        ad.io.write_elem(self._file, "uns", uns or {})
        for empty in ("layers", "obsm", "obsp", "varm", "varp"):
            ad.io.write_elem(self._file, empty, {})
        self._file.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})

    def __exit__(self, *error) -> bool:
        return self._stack.__exit__(*error)
