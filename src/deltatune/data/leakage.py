"""Whether a checkpoint trained on what this run scores it on: its recorded split against ours.

A released checkpoint may have seen the target line, or the target line's test perturbations,
during its own training; its scores on them then measure recall, not prediction, and a paper
must say so. ``state tx train`` records the split it trained with as a cell-load TOML
(``data.kwargs.toml_config_path`` in the run's ``config.yaml``; Arc's releases keep the file
beside their runs, e.g. ``fewshot/generalization.toml``). Read with cell-load's own parser, its
sections say what the run held out: ``[zeroshot]`` whole cell types, ``[fewshot]`` listed
perturbations of a cell type; every other cell of its ``[training]`` datasets was trained on.

The TOML is found by :func:`deltatune.model.release.recorded_split`. The outcome is a record for
``preprocess.json`` and a warning in the report's header, never an error: fine-tuning a
checkpoint that saw the line is a valid experiment if it is reported.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .splits import line_entries, read_split_toml


def leakage(toml: str | Path, cell_line: str, split: pd.DataFrame) -> dict:
    """What the checkpoint's split (``toml``) held out of ``cell_line``, and which of this run's
    test perturbations (``split``: :func:`~deltatune.data.splits.split_perturbations`' table) it
    may have trained on.

    ``target_line`` is ``zeroshot`` (the whole line held out: nothing seen), ``fewshot`` (the line
    trained on except the listed perturbations: a test perturbation is seen unless its label or
    its unit is listed) or ``not held out`` (seen, if the line was in its training datasets,
    which the TOML names only by folder: every test perturbation is counted).
    """
    config = read_split_toml(toml)
    test = split[split["split"] == "test"]
    record = {"split_file": str(toml), "n_test_perturbations": len(test)}
    if line_entries(config, cell_line, "zeroshot"):
        return record | {"target_line": "zeroshot", "test_perturbations_seen": []}
    fewshot = line_entries(config, cell_line, "fewshot")
    if fewshot:
        held = {name for entry in fewshot.values() for names in entry.values() for name in names}
        seen = test[~(test["perturbation"].isin(held) | test["unit"].isin(held))]
        return record | {"target_line": "fewshot", "test_perturbations_seen": sorted(seen["perturbation"])}
    return record | {"target_line": "not held out", "test_perturbations_seen": sorted(test["perturbation"])}
