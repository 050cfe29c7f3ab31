"""Putting a screen's genes in a base model's order, by name.

A checkpoint fixes the genes and their order; a user's file has its own. Preprocessing reorders
the data to the model's list once, so every later step can insist on an exact match. A few
model genes may be absent from the data (annotation versions differ): up to
``max_missing_fraction`` of them enter as zero columns marked ``var["measured"] = False``, which
the model reads as unexpressed and evaluation leaves out. More than that is an error with
counts and examples, because a model fed mostly zeros predicts nothing worth scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import CheckpointError, InputDataError
from .readers import read_cells

MEASURED = "measured"


def read_gene_list(path: str | Path) -> list[str]:
    """A gene list file: one name per line (what ``deltatune genes`` writes)."""
    with open(path) as handle:
        return [line.strip() for line in handle if line.strip()]


def use_var_column(adata: ad.AnnData, column: str | None, source: str) -> ad.AnnData:
    """``adata`` with gene names taken from ``var[column]`` (e.g. symbols when var_names are IDs);
    with no column, its own names, which must then be unique."""
    if column is None:
        duplicated = adata.var_names[adata.var_names.duplicated()].unique()
        if len(duplicated):
            raise InputDataError(
                f"{source}: gene names are not unique ({len(duplicated)} repeated, e.g. {list(duplicated[:5])}); "
                "make them unique (anndata's var_names_make_unique) or set data.var_names to a var column of "
                "unique names"
            )
        return adata
    if column not in adata.var.columns:
        raise InputDataError(
            f"{source}: var column '{column}' (data.var_names) is not in var (columns: {list(adata.var.columns[:20])})"
        )
    names = adata.var[column].astype(str)
    duplicated = names[names.duplicated()].unique()
    if len(duplicated):
        raise InputDataError(
            f"{source}: var column '{column}' names {len(duplicated)} gene(s) more than once "
            f"(e.g. {list(duplicated[:5])}); choose a column of unique names"
        )
    adata.var_names = pd.Index(names.to_numpy(), name=None)
    return adata


def match_genes(adata: ad.AnnData, genes: list[str], max_missing_fraction: float, source: str) -> ad.AnnData:
    """``adata`` with exactly ``genes`` as columns, in that order; absent ones as zero columns."""
    names = pd.Index(adata.var_names.astype(str))
    if names.has_duplicates:
        raise InputDataError(f"{source}: gene names are not unique (e.g. {list(names[names.duplicated()][:5])})")
    position = names.get_indexer(genes)
    missing = [g for g, p in zip(genes, position, strict=True) if p < 0]
    if len(missing) > max_missing_fraction * len(genes):
        raise CheckpointError(
            f"{source}: {len(missing)} of the base model's {len(genes)} genes are not in the data "
            f"(e.g. {missing[:5]}; the data's genes look like {list(names[:5])}); at most "
            f"{max_missing_fraction:.0%} may be missing (preprocess.max_missing_genes). Check that "
            "both use the same gene naming (symbols vs IDs: data.var_names picks a var column)"
        )
    X = sp.csr_matrix(adata.X)
    if missing:
        X = sp.hstack([X, sp.csr_matrix((adata.n_obs, 1), dtype=X.dtype)], format="csr")
        position = np.where(position < 0, X.shape[1] - 1, position)
    var = pd.DataFrame({MEASURED: position < names.size if missing else True}, index=pd.Index(genes))
    return ad.AnnData(X=X[:, position], obs=adata.obs, var=var, uns=adata.uns)


def check_model_genes(adata: ad.AnnData, genes: list[str], data_source: str, model_source: str) -> None:
    """Stop unless ``adata``'s genes are the model's, in its order (as preprocessing leaves them)."""
    names = list(adata.var_names.astype(str))
    if names == list(genes):
        return
    if len(names) != len(genes):
        raise CheckpointError(
            f"{data_source} has {len(names)} genes but the base model {model_source} takes "
            f"{len(genes)} (input_dim): the data was preprocessed for another model; rerun "
            "preprocessing with this base model"
        )
    first = next(i for i, (a, b) in enumerate(zip(names, genes, strict=True)) if a != b)
    raise CheckpointError(
        f"{data_source} and the base model {model_source} both have {len(genes)} genes but differ "
        f"from position {first} ('{names[first]}' vs '{genes[first]}'): rerun preprocessing with this base model"
    )


def read_for_model(
    path: str | Path, genes: list[str], select: Callable[[pd.DataFrame], np.ndarray], model_source: str | Path
) -> ad.AnnData:
    """A preprocessed line with expression for the cells ``select(obs)`` marks only
    (:func:`~deltatune.data.readers.read_cells`), checked to hold exactly the model's ``genes``."""
    adata = read_cells(path, select)
    check_model_genes(adata, genes, str(path), str(model_source))
    return adata


def measured_genes(adata: ad.AnnData) -> ad.AnnData:
    """``adata`` (a view) without the genes that were filled in as zeros (see :func:`match_genes`)."""
    if MEASURED not in adata.var.columns:
        return adata
    return adata[:, adata.var[MEASURED].to_numpy(dtype=bool)]
