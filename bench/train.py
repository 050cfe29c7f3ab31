"""Training throughput of a deltatune stage against a bare loop over the same model.

    python bench/train.py [--steps 400]

Both sides train the same LoRA-wrapped ST model (the demo's architecture, a base built from the
demo's simulated screen) with the same loss and optimizer, one after the other in one process:

* ``cells_per_s``: :class:`deltatune.train.loop.Trainer` on a stage (cell sets drawn, controls
  paired, batches gathered from the expression matrix, checks and checkpoints included);
* ``bare_cells_per_s``: a plain loop of forward, loss, backward and optimizer step over batches
  pre-built as tensors of the same shapes, nothing else;
* ``ratio_vs_bare``: the first over the second (1.0 means the data path costs nothing);
* ``peak_gpu_bytes``: on a GPU, the most memory torch allocated during a stage's training
  (``torch.cuda.max_memory_allocated``);
* ``peak_rss_mb``: the process's peak resident memory.

Both LoRA adapters (``adaptation="lora"``, a stage's default) and full fine-tuning (``"full"``)
can be measured.

Writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from machine import commit, describe

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from deltatune.data.preprocess import preprocess
from deltatune.data.simulate import simulate_screen
from deltatune.data.splits import cells_of_split
from deltatune.model.lora import apply_lora
from deltatune.model.st import BaseModel, build_st_model
from deltatune.pairing.index import build_pairing_index
from deltatune.settings import (
    Architecture,
    Columns,
    LoraSettings,
    LossWeights,
    PreprocessSettings,
    ScreenSpec,
    StageSettings,
    to_dict,
)
from deltatune.train.batches import CellSetBatches
from deltatune.train.loop import Trainer
from deltatune.train.losses import DeltaAwareLoss

ARCH = Architecture()  # the demo's base model
SPEC = ScreenSpec(plate_programs=4)  # the demo's screen
N_TOP_GENES = 200
BATCH_CELLS = 128
REPEATS = 3


def stage_data(columns: Columns, arch: Architecture, spec: ScreenSpec, n_top_genes: int, adaptation: str = "lora"):
    """A simulated target line, its train cells' pairing index, and a factory of fresh models:
    the base wrapped in LoRA adapters (``"lora"``) or every weight trainable (``"full"``)."""
    screen = simulate_screen(spec)
    data = preprocess(screen, columns, PreprocessSettings(target_cell_line="c37", n_top_genes=n_top_genes))
    target = data.target
    genes = list(target.var_names)
    vocab = sorted(set(data.base.obs[columns.perturbation].astype(str)))
    train = np.flatnonzero(cells_of_split(target.obs, columns, data.split, "train"))
    index = build_pairing_index(target.obs, columns, "batch").with_means(target.X).restrict(train)

    def model() -> tuple[BaseModel, torch.nn.Module]:
        torch.manual_seed(0)
        base = BaseModel(build_st_model(arch, genes, vocab, columns.control), genes, vocab)
        return base, apply_lora(base.model, LoraSettings()) if adaptation == "lora" else base.model.requires_grad_(True)

    codes = np.full(target.n_obs, -1, dtype=np.int64)
    labels = target.obs[columns.perturbation].astype(str).to_numpy()
    return target, index, codes, labels, train, model


def measure(
    arch: Architecture = ARCH,
    spec: ScreenSpec = SPEC,
    n_top_genes: int = N_TOP_GENES,
    steps: int = 400,
    batch_cells: int = BATCH_CELLS,
    accelerator: str = "cpu",
    precision: str = "32-true",
    adaptation: str = "lora",
    repeats: int = REPEATS,
) -> dict:
    """Cells per second of a stage's Trainer and of the bare loop, on ``accelerator`` ("cpu" or "gpu"),
    each the best of ``repeats`` runs."""
    columns = Columns()
    target, index, codes, labels, train, new_model = stage_data(columns, arch, spec, n_top_genes, adaptation)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")

    base, _ = new_model()
    codes[train], table = base.vocabulary(labels[train], columns.control).encode(labels[train])
    data = CellSetBatches(target, columns, codes, table, index, "cells", arch.cell_set_len)
    sets_per_step = max(1, batch_cells // arch.cell_set_len)
    epochs = max(1, -(-steps // data.n_steps(sets_per_step)))
    settings = StageSettings(
        epochs=epochs,
        batch_size=batch_cells,
        lr=1e-3,
        pairing="batch",
        precision=precision,
        adaptation=adaptation,
        loss=LossWeights(delta_mse=0.5, delta_pearson=0.3),
    )
    steps = epochs * data.n_steps(sets_per_step)
    batches = [{k: v.to(device) for k, v in batch.items()} for batch in data.batches(data.plan(0, 0), sets_per_step)]
    batches = (batches * (steps // len(batches) + 1))[:steps]
    cells = sum(len(b["pert_cell_emb"]) for b in batches)

    def finished() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def deltatune_run() -> float:
        base, model = new_model()
        loss = DeltaAwareLoss(base.model.loss_fn, settings.loss)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            Trainer(work, "bench", accelerator=accelerator).fit(model, data, loss, settings, desc="bench")
            return finished() - started

    def bare_run() -> float:
        base, model = new_model()
        model.to(device)
        loss = DeltaAwareLoss(base.model.loss_fn, settings.loss)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
        model.train()
        shape = (-1, arch.cell_set_len, len(base.genes))
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
        started = time.perf_counter()
        for batch in batches:
            with autocast:
                pred = model(batch, padded=True).reshape(shape)
            parts = loss(pred.float(), batch["pert_cell_emb"].reshape(shape), batch["ctrl_cell_emb"].reshape(shape))
            optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            optimizer.step()
        return finished() - started

    # Alternate the two so that drifts in machine load hit both alike; keep each one's best.
    deltatune_s, bare_s, peak_gpu_bytes = float("inf"), float("inf"), None
    for _ in range(repeats):
        deltatune_s = min(deltatune_s, deltatune_run())
        if device.type == "cuda":
            peak_gpu_bytes = max(peak_gpu_bytes or 0, torch.cuda.max_memory_allocated(device))
        bare_s = min(bare_s, bare_run())
    return {
        "cells_per_s": round(cells / deltatune_s, 1),
        "bare_cells_per_s": round(cells / bare_s, 1),
        "ratio_vs_bare": round(bare_s / deltatune_s, 3),
        "peak_gpu_bytes": peak_gpu_bytes,
        "steps": steps,
        "cells_per_step": batch_cells,
        "genes": len(target.var_names),
        "precision": precision,
        "adaptation": adaptation,
        "trainable_parameters": sum(p.numel() for p in new_model()[1].parameters() if p.requires_grad),
        "architecture": to_dict(arch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(steps=args.steps)
    result |= {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": args.threads,
        "commit": commit(Path(__file__).parent),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": describe(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
