"""Putting a screen's genes in a base model's order, by name.

A checkpoint fixes the genes and their order; a user's file has its own. Preprocessing reorders
the data to the model's list once, so every later step can insist on an exact match. A few
model genes may be absent from the data (annotation versions differ): up to
``max_missing_fraction`` of them enter as zero columns marked ``var["measured"] = False``, which
the model reads as unexpressed and evaluation leaves out (a gene absent from any one input file
is marked). More than that is an error with
counts and examples, because a model fed mostly zeros predicts nothing worth scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class GeneSpace:
    """The genes of the preprocessed data and, per input, the column of each (-1: absent, a zero
    column marked ``measured = False``)."""

    names: list[str]
    positions: list[np.ndarray]

    @property
    def measured(self) -> np.ndarray:
        """Genes present in every input; evaluation leaves the others out."""
        return np.logical_and.reduce([p >= 0 for p in self.positions])

    def subset(self, keep: np.ndarray) -> GeneSpace:
        """The genes of mask ``keep``, in their order."""
        return GeneSpace([n for n, k in zip(self.names, keep, strict=True) if k], [p[keep] for p in self.positions])

    def var(self) -> pd.DataFrame:
        """The var table of the preprocessed data: ``measured`` where a gene may be absent."""
        return pd.DataFrame({MEASURED: self.measured}, index=pd.Index(self.names))


def shared_genes(genes: list[pd.Index], sources: list[str]) -> GeneSpace:
    """The first input's genes, which every other input must hold too (in any order): inputs are
    matched by name, and an input lacking some of them is an error naming it and how many."""
    names = genes[0]
    positions = []
    for own, source in zip(genes, sources, strict=True):
        position = own.get_indexer(names)
        lacking = names[position < 0]
        extra = own.difference(names)
        if len(lacking) or len(extra):
            raise InputDataError(
                f"{source} lacks {len(lacking)} of the {len(names)} genes of {sources[0]} and has {len(extra)} "
                f"it lacks (e.g. {list(lacking[:3]) + list(extra[:3])}): every input file must measure the "
                "same genes (matched by name; data.var_names picks a var column of names)"
            )
        positions.append(position)
    return GeneSpace(list(names.astype(str)), positions)


def model_genes(genes: list[pd.Index], sources: list[str], model: list[str], max_missing_fraction: float) -> GeneSpace:
    """A base model's genes, in its order, found by name in each input; up to
    ``max_missing_fraction`` of them may be absent from an input (zero columns)."""
    positions = []
    for own, source in zip(genes, sources, strict=True):
        position = own.get_indexer(model)
        missing = [g for g, p in zip(model, position, strict=True) if p < 0]
        if len(missing) > max_missing_fraction * len(model):
            raise CheckpointError(
                f"{source}: {len(missing)} of the base model's {len(model)} genes are not in the data "
                f"(e.g. {missing[:5]}; the data's genes look like {list(own[:5])}); at most "
                f"{max_missing_fraction:.0%} may be missing (preprocess.max_missing_genes). Check that "
                "both use the same gene naming (symbols vs IDs: data.var_names picks a var column)"
            )
        positions.append(position)
    return GeneSpace(list(model), positions)


def take_genes(X: sp.csr_matrix, position: np.ndarray) -> sp.csr_matrix:
    """Columns ``position`` of ``X`` in that order, a zero column where the position is -1."""
    if len(position) == X.shape[1] and np.array_equal(position, np.arange(X.shape[1])):
        return X
    if (position < 0).any():
        X = sp.hstack([X, sp.csr_matrix((X.shape[0], 1), dtype=X.dtype)], format="csr")
        position = np.where(position < 0, X.shape[1] - 1, position)
    return X[:, position]


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
    """``adata`` (a view) without the genes that were filled in as zeros (see :func:`model_genes`)."""
    if MEASURED not in adata.var.columns:
        return adata
    return adata[:, adata.var[MEASURED].to_numpy(dtype=bool)]
