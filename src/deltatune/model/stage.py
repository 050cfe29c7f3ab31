"""A trained stage replicate's folder: its names, written in one place and read in one place.

``models/<stage>/rep<r>/`` holds what fine-tuning leaves, and everything that reads it (inference,
the search, the report) goes through here:

* ``adapter/``: peft's ``save_pretrained`` output, or, fully fine-tuned, ``weights.pt`` (the whole
  state dict of the base model);
* ``history.tsv``: every loss component per optimizer step;
* ``summary.json``: the stage's effective settings, parameter counts, pairing counts, steps,
  time, device and final loss.

The summary and history read without torch (the report needs no model); torch and peft are
imported only to save or load weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import CheckpointError
from ..files import atomic_path, write_json

if TYPE_CHECKING:
    import torch

ADAPTER = "adapter"  # peft's adapter folder
FULL_WEIGHTS = "weights.pt"  # a fully fine-tuned model's state dict
HISTORY = "history.tsv"
SUMMARY = "summary.json"


def save_stage(out_dir: str | Path, model: torch.nn.Module, history: pd.DataFrame, summary: dict) -> None:
    """Write a stage replicate's folder atomically: it appears complete or not at all.

    ``model`` is a peft model (its adapter is saved) or a fully fine-tuned base (its weights).
    """
    import torch
    from peft import PeftModel

    with atomic_path(out_dir, directory=True) as tmp:
        if isinstance(model, PeftModel):
            model.save_pretrained(tmp / ADAPTER)
        else:
            torch.save(model.state_dict(), tmp / FULL_WEIGHTS)
        history.to_csv(tmp / HISTORY, sep="\t", index=False)
        write_json(tmp / SUMMARY, summary)


def load_stage(model: torch.nn.Module, stage_dir: str | Path) -> torch.nn.Module:
    """``model`` (the base, widened for the screen's labels) with a stage replicate's training
    applied: its adapter attached, or its full weights loaded in place.

    A stage trained on another base model (other sizes) or an unreadable stage file is a
    :class:`CheckpointError` naming the folder.
    """
    import torch
    from safetensors import SafetensorError

    from .lora import load_adapter

    weights = Path(stage_dir) / FULL_WEIGHTS
    try:
        if weights.exists():
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return model
        return load_adapter(model, str(Path(stage_dir) / ADAPTER))
    except RuntimeError as err:
        if "size mismatch" not in str(err) and "Missing key" not in str(err) and "Unexpected key" not in str(err):
            raise
        lines = str(err).splitlines()
        detail = next((line.strip() for line in lines if "size mismatch" in line), lines[0])
        raise CheckpointError(
            f"the stage in {stage_dir} does not fit the base model: it was trained on another one ({detail})"
        ) from None
    except (OSError, EOFError, ValueError, SafetensorError) as err:
        raise CheckpointError(
            f"cannot read the stage in {stage_dir} ({err}): it may be truncated; train it again "
            "(delete the folder and rerun)"
        ) from None


def read_summary(stage_dir: str | Path) -> dict:
    """A stage replicate's ``summary.json``."""
    return json.loads((Path(stage_dir) / SUMMARY).read_text())


def read_history(stage_dir: str | Path) -> pd.DataFrame:
    """A stage replicate's per-step loss history."""
    return pd.read_csv(Path(stage_dir) / HISTORY, sep="\t")
