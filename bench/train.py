"""Training throughput of a deltatune stage against a bare loop over the same model.

    python bench/train.py [--steps 400]

Both sides train the same LoRA-wrapped ST model (the demo's architecture, a base built from the
demo's simulated screen) with the same loss and optimizer, one after the other in one process:

* ``cells_per_s``: :class:`deltatune.training.Trainer` on a stage (cell sets drawn, controls
  paired, batches gathered from the expression matrix, checks and checkpoints included);
* ``bare_cells_per_s``: a plain loop of forward, loss, backward and optimizer step over batches
  pre-built as tensors of the same shapes, nothing else;
* ``ratio_vs_bare``: the first over the second (1.0 means the data path costs nothing);
* ``peak_rss_mb``: the process's peak resident memory.

Writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from deltatune.batches import CellSetBatches
from deltatune.columns import Columns
from deltatune.finetune import StageSettings
from deltatune.lora import LoraSettings, apply_lora
from deltatune.losses import DeltaAwareLoss, LossWeights
from deltatune.model import Architecture, BaseModel, build_st_model
from deltatune.pairing import build_pairing_index
from deltatune.preprocess import PreprocessSettings, preprocess
from deltatune.simulate import ScreenSpec, simulate_screen
from deltatune.splits import cells_of_split
from deltatune.training import Trainer

ARCH = Architecture()  # the demo's base model
BATCH_CELLS = 128
REPEATS = 3


def stage_data(columns: Columns):
    """The demo's target line, its train cells' pairing index, and a fresh LoRA model factory."""
    screen = simulate_screen(ScreenSpec(plate_programs=4))
    data = preprocess(screen, columns, PreprocessSettings(target_cell_line="c37"))
    target = data.target
    genes = list(target.var_names)
    vocab = sorted(set(data.base.obs[columns.perturbation].astype(str)))
    train = np.flatnonzero(cells_of_split(target.obs, columns, data.split, "train"))
    index = build_pairing_index(target.obs, columns, "batch").with_means(target.X).restrict(train)

    def model() -> tuple[BaseModel, torch.nn.Module]:
        torch.manual_seed(0)
        base = BaseModel(build_st_model(ARCH, genes, vocab, columns.control), genes, vocab)
        return base, apply_lora(base.model, LoraSettings())

    codes = np.full(target.n_obs, -1, dtype=np.int64)
    labels = target.obs[columns.perturbation].astype(str).to_numpy()
    return target, index, codes, labels, train, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    columns = Columns()
    target, index, codes, labels, train, new_model = stage_data(columns)

    base, _ = new_model()
    codes[train], table = base.vocabulary(labels[train], columns.control).encode(labels[train])
    data = CellSetBatches(target, columns, codes, table, index, "cells", ARCH.cell_set_len)
    sets_per_step = BATCH_CELLS // ARCH.cell_set_len
    epochs = max(1, -(-args.steps // data.n_steps(sets_per_step)))
    settings = StageSettings(epochs=epochs, batch_size=BATCH_CELLS, lr=1e-3, pairing="batch",
                             loss=LossWeights(delta_mse=0.5, delta_pearson=0.3))
    steps = epochs * data.n_steps(sets_per_step)
    batches = [
        {k: v.clone() for k, v in batch.items()}
        for batch in data.batches(data.plan(0, 0), sets_per_step)
    ]
    batches = (batches * (steps // len(batches) + 1))[:steps]
    cells = sum(len(b["pert_cell_emb"]) for b in batches)

    def deltatune_run() -> float:
        base, model = new_model()
        loss = DeltaAwareLoss(base.model.loss_fn, settings.loss)
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            Trainer(settings, work, "bench", accelerator="cpu").fit(model, data, loss, desc="bench")
            return time.perf_counter() - started

    def bare_run() -> float:
        base, model = new_model()
        loss = DeltaAwareLoss(base.model.loss_fn, settings.loss)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
        model.train()
        shape = (-1, ARCH.cell_set_len, len(base.genes))
        started = time.perf_counter()
        for batch in batches:
            pred = model(batch, padded=True).reshape(shape)
            parts = loss(pred, batch["pert_cell_emb"].reshape(shape), batch["ctrl_cell_emb"].reshape(shape))
            optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            optimizer.step()
        return time.perf_counter() - started

    # Alternate the two so that drifts in machine load hit both alike; keep each one's best.
    deltatune_s, bare_s = float("inf"), float("inf")
    for _ in range(REPEATS):
        deltatune_s = min(deltatune_s, deltatune_run())
        bare_s = min(bare_s, bare_run())
    result = {
        "cells_per_s": round(cells / deltatune_s, 1),
        "bare_cells_per_s": round(cells / bare_s, 1),
        "ratio_vs_bare": round(bare_s / deltatune_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "steps": steps,
        "cells_per_step": BATCH_CELLS,
        "threads": args.threads,
        "architecture": ARCH.__dict__,
        "machine": describe(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
