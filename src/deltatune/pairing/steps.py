"""The pairing step's entry point, files in and files out: what the ``pair`` rule runs."""

from __future__ import annotations

import logging
from pathlib import Path

from ..data.groups import control_mask
from ..data.readers import read_cells
from ..settings import Columns
from .index import build_pairing_index

log = logging.getLogger(__name__)


def pair_file(data: str | Path, out: str | Path, *, columns: Columns, strategy: str) -> dict:
    """Build the pairing index of a preprocessed dataset under ``strategy``, with its control means,
    and write it to ``out`` (.npz); return its summary (groups, fallbacks). Only the controls'
    expression is read."""
    adata = read_cells(data, lambda obs: control_mask(obs, columns))
    index = build_pairing_index(adata.obs, columns, strategy).with_means(adata.X)
    log.info("pairing index: %s", index.summary())
    index.save(out, adata.obs_names)
    return index.summary()
