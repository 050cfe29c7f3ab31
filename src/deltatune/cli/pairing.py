"""The command of the pairing rule (``workflow/rules/pairing.smk``): ``pair``."""

from __future__ import annotations

import argparse
import json
import logging

from . import _args

log = logging.getLogger("deltatune")


def _pair_arguments(p: argparse.ArgumentParser) -> None:
    _args.data_arguments(p, split=False)
    p.add_argument("--strategy", required=True, help="random | batch | celltype | batch_celltype")
    p.add_argument("--out", required=True, help="index file (.npz)")


def run_pair(args: argparse.Namespace) -> None:
    from ..data.readers import read_h5ad
    from ..pairing.index import build_pairing_index

    adata = read_h5ad(args.data)
    index = build_pairing_index(adata.obs, _args.columns(args), args.strategy).with_means(adata.X)
    log.info("pairing index: %s", json.dumps(index.summary()))
    index.save(args.out, adata.obs_names)


def register(sub) -> None:
    _args.add_command(sub, "pair", "build the pairing index and control means of a dataset", _pair_arguments, run_pair)
