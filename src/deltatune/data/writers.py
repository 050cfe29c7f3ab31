"""Writing an .h5ad a block of rows at a time: outputs larger than memory (a preprocessed
million-cell line, a simulated screen) never exist whole in memory as a matrix."""

from __future__ import annotations

import os
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

    With ``in_memory`` (the default) the file is built in memory (HDF5's core driver: the
    compressed file, not the matrix) and written to disk in one plain write at the end. HDF5
    writing to a full disk can crash the process from inside its own clean-up, before any error
    reaches the caller; a plain write fails with an error that names the file. A writer whose
    output is larger than memory (the simulated screen) writes to disk as it goes.
    """

    def __init__(self, path: str | os.PathLike, compression: dict | None = None, in_memory: bool = True) -> None:
        self.path = Path(path)
        self.compression = {"compression": "gzip"} if compression is None else compression
        self.in_memory = in_memory
        self.n_obs = 0
        self._X = None

    def __enter__(self) -> H5adRows:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        where = {"driver": "core", "backing_store": False} if self.in_memory else {}
        self._file = h5py.File(self._tmp, "w", **where)
        return self

    def append(self, X: sp.csr_matrix) -> None:
        """Add the rows of CSR block ``X``."""
        if self._X is None:
            ad.io.write_elem(self._file, "X", X, dataset_kwargs=self.compression)
            self._X = ad.io.sparse_dataset(self._file["X"])
        elif X.shape[0]:
            self._X.append(X)
        self.n_obs += X.shape[0]

    def finish(self, obs: pd.DataFrame, var: pd.DataFrame, uns: dict | None = None) -> None:
        """Write the annotations of the rows appended, which must be all of ``obs``'s."""
        if self._X is None:
            self.append(sp.csr_matrix((0, len(var)), dtype="float32"))
        if len(obs) != self.n_obs:
            raise ValueError(f"{self.path}: {self.n_obs} rows written for {len(obs)} obs rows")
        ad.io.write_elem(self._file, "obs", obs, dataset_kwargs=self.compression)
        ad.io.write_elem(self._file, "var", var)
        ad.io.write_elem(self._file, "uns", uns or {})
        for empty in ("layers", "obsm", "obsp", "varm", "varp"):
            ad.io.write_elem(self._file, empty, {})
        self._file.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})

    def __exit__(self, kind, error, trace) -> bool:
        self._X = None
        try:
            if error is None and self.in_memory:
                self._file.flush()
                image = self._file.id.get_file_image()
                self._file.close()
                self._tmp.write_bytes(image)
        except OSError as failed:
            kind, error, trace = type(failed), failed, failed.__traceback__
        finally:
            if self._file:
                self._file.close()
            self._file = None
        return self._atomic.__exit__(kind, error, trace)
