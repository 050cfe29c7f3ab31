"""A user's own inputs, made small: a screen in the public-benchmark layout and an ST run directory.

The screen has the layout common to public perturbation benchmarks (scPerturb, GEARS-style
files): log-normalized sparse X, obs ``condition`` with the control label ``control`` and double
perturbations written ``A+B``, ``cell_type``, ``dataset``, ``dose``, and no plate column.

The base model is trained by arc-state's own ``state tx train`` CLI on a *different* dataset in
cell-load's layout (``gene`` / ``gem_group``, control ``non-targeting``, other genes in another
order), so deltatune meets a checkpoint exactly as a user brings one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

N_GENES = 60
GENES = [f"GENE{i:02d}" for i in range(N_GENES)]
SINGLES = [f"P{i}" for i in range(1, 9)]
UNSEEN = "P9"  # in the screen, never in the base model's training data
COMBOS = ["P1+P2", "P3+P4", "P5+P6", "P7+P9"]
BASE_CELL_TYPES = ["A549", "MCF7"]
SCREEN_CELL_TYPES = ["K562", "RPE1", "HepG2"]


def _effects(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Log-fold effects of each single perturbation (shared by both datasets: one biology)."""
    effects = {}
    for label in [*SINGLES, UNSEEN]:
        effect = np.zeros(N_GENES)
        hit = rng.choice(N_GENES, size=8, replace=False)
        effect[hit] = rng.normal(0, 1.0, size=8)
        effects[label] = effect
    return effects


def _cells(
    labels: list[str],
    cell_types: list[str],
    groups: list[str],
    per_label: int,
    control: str,
    seed: int,
    separator: str = "+",
) -> tuple[np.ndarray, pd.DataFrame]:
    """log1p-normalized expression and (label, cell type, group) of every cell."""
    rng = np.random.default_rng(seed)
    effects = _effects(np.random.default_rng(0))
    baseline = {ct: rng.normal(1.0, 0.6, N_GENES) for ct in cell_types}
    offsets = {g: rng.normal(0, 0.3, N_GENES) for g in groups}
    rows, X = [], []
    for cell_type in cell_types:
        for group in groups:
            for label in [control, *labels]:
                n = per_label * (3 if label == control else 1)
                parts = [] if label == control else label.split(separator)
                log_mean = baseline[cell_type] + offsets[group] + sum((effects[p] for p in parts), np.zeros(N_GENES))
                counts = rng.poisson(np.exp(log_mean), size=(n, N_GENES))
                X.append(np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4))
                rows += [(label, cell_type, group)] * n
    return np.vstack(X).astype(np.float32), pd.DataFrame(rows, columns=["label", "cell_type", "group"])


def benchmark_screen(path: Path, seed: int = 1) -> Path:
    """The public-benchmark layout; genes shuffled, two model genes absent, five extra genes."""
    X, meta = _cells(
        [*SINGLES, UNSEEN, *COMBOS],
        SCREEN_CELL_TYPES,
        ["norman2019", "replogle2022"],
        per_label=12,
        control="control",
        seed=seed,
    )
    extra = np.random.default_rng(seed).random((X.shape[0], 5)).astype(np.float32)
    genes = np.array(GENES + [f"EXTRA{i}" for i in range(5)])
    X = np.hstack([X, extra])
    keep = np.random.default_rng(seed).permutation(len(genes))
    keep = keep[~np.isin(genes[keep], GENES[:2])]  # GENE00 and GENE01 were not measured
    obs = pd.DataFrame(
        {
            "condition": meta["label"].to_numpy(),
            "cell_type": meta["cell_type"].to_numpy(),
            "dataset": meta["group"].to_numpy(),
            "dose": np.where(meta["label"].str.contains("+", regex=False), "1+1", "1"),
        },
        index=[f"cell{i}" for i in range(len(meta))],
    )
    adata = ad.AnnData(sp.csr_matrix(X[:, keep]), obs=obs, var=pd.DataFrame(index=genes[keep]))
    adata.write_h5ad(path)
    return path


def split_into_files(path: Path, column: str, seed: int = 2) -> list[Path]:
    """``path``'s cells as one file per value of obs ``column`` (``<stem>_<value>.h5ad`` beside it),
    as Tahoe-100M comes as a file per plate; each file's genes in an order of its own."""
    screen = ad.read_h5ad(path)
    rng = np.random.default_rng(seed)
    files = []
    for value in sorted(screen.obs[column].unique()):
        part = screen[(screen.obs[column] == value).to_numpy()]
        files.append(path.with_name(f"{path.stem}_{value}.h5ad"))
        part[:, rng.permutation(part.n_vars)].copy().write_h5ad(files[-1])
    return files


def train_st_run_directory(workdir: Path, steps: int = 40) -> Path:
    """A real ST run directory, written by ``state tx train`` on a cell-load layout dataset."""
    data_dir = workdir / "st_data"
    data_dir.mkdir(parents=True)
    X, meta = _cells(SINGLES, BASE_CELL_TYPES, ["gem1", "gem2"], per_label=16, control="non-targeting", seed=7)
    order = np.random.default_rng(7).permutation(N_GENES)  # the model's own gene order
    obs = pd.DataFrame({"gene": meta["label"], "cell_type": meta["cell_type"], "gem_group": meta["group"]})
    obs.index = [f"st{i}" for i in range(len(obs))]
    ad.AnnData(sp.csr_matrix(X[:, order]), obs=obs, var=pd.DataFrame(index=np.array(GENES)[order])).write_h5ad(
        data_dir / "training.h5"
    )
    toml = workdir / "st_data.toml"
    toml.write_text(f'[datasets]\nbase = "{data_dir}"\n[training]\nbase = "train"\n[zeroshot]\n"base.MCF7" = "val"\n')
    overrides = [
        f"data.kwargs.toml_config_path={toml}",
        "data.kwargs.embed_key=null",
        "data.kwargs.output_space=gene",
        "data.kwargs.num_workers=0",
        "data.kwargs.pin_memory=false",
        "data.kwargs.pert_col=gene",
        "data.kwargs.control_pert=non-targeting",
        "data.kwargs.batch_col=gem_group",
        "data.kwargs.cell_type_key=cell_type",
        "model=state_sm",
        "model.kwargs.cell_set_len=8",
        "model.kwargs.hidden_dim=32",
        "model.kwargs.transformer_backbone_kwargs.intermediate_size=64",
        "model.kwargs.transformer_backbone_kwargs.num_hidden_layers=1",
        "model.kwargs.transformer_backbone_kwargs.num_attention_heads=2",
        "model.kwargs.transformer_backbone_kwargs.num_key_value_heads=2",
        "model.kwargs.transformer_backbone_kwargs.head_dim=16",
        f"training.max_steps={steps}",
        "training.val_freq=20",
        "training.ckpt_every_n_steps=20",
        "training.batch_size=4",
        "use_wandb=false",
        f"output_dir={workdir}",
        "name=st_run",
    ]
    state = Path(sys.executable).parent / "state"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [str(state), "tx", "train", *overrides],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workdir / "st_run"
