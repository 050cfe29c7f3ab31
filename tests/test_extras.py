"""The design's extras: full fine-tuning, dose interpolation and the drug-diversity regularizer."""

from __future__ import annotations

from dataclasses import replace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from deltatune.data.splits import cells_of_split
from deltatune.pairing.index import build_pairing_index
from deltatune.settings import Columns, LossWeights, StageSettings
from deltatune.settings.train import DoseInterpolation
from deltatune.train.batches import CellSetBatches
from deltatune.train.doses import INTERPOLATED, interpolated_targets, with_interpolated_doses
from deltatune.train.finetune import finetune_stage, load_stage, save_stage
from deltatune.train.loop import Trainer
from deltatune.train.losses import DeltaAwareLoss, drug_diversity

COLUMNS = Columns(perturbation="pert", control="ctrl", cell_type="line", batch="plate", drug="drug", dose="dose")


def _dose_screen() -> tuple[ad.AnnData, dict]:
    """Drug d at doses 1 and 10 on two plates with different offsets, and controls; every cell of
    a (plate, dose) group is that group's profile plus noise that averages to zero."""
    rng = np.random.default_rng(0)
    profiles = {(p, d): rng.uniform(0, 5, 6) for p in ("p1", "p2") for d in (1.0, 10.0)}
    rows, obs = [], []
    for (plate, dose), profile in profiles.items():
        noise = rng.normal(0, 0.5, (4, 6))
        rows.append(profile + noise - noise.mean(axis=0))
        obs += [{"pert": f"d_{dose:g}", "plate": plate, "line": "c", "drug": "d", "dose": dose}] * 4
    for plate in ("p1", "p2"):
        rows.append(rng.uniform(0, 5, (3, 6)))
        obs += [{"pert": "ctrl", "plate": plate, "line": "c", "drug": "ctrl", "dose": 0.0}] * 3
    frame = pd.DataFrame(obs, index=[f"c{i}" for i in range(len(obs))])
    return ad.AnnData(X=sp.csr_matrix(np.vstack(rows).astype(np.float32)), obs=frame), profiles


def test_an_intermediate_dose_is_the_linear_mix_of_its_neighbours_on_each_plate():
    adata, profiles = _dose_screen()
    treated = adata[adata.obs["pert"] != "ctrl"].copy()
    targets = interpolated_targets(treated, COLUMNS, points=1)
    assert targets.keys["plate"].tolist() == ["p1", "p2"]
    assert targets.keys["dose"].to_numpy() == pytest.approx([np.sqrt(10.0)] * 2)  # halfway in log dose
    for k, plate in enumerate(["p1", "p2"]):
        expected = 0.5 * profiles[(plate, 1.0)] + 0.5 * profiles[(plate, 10.0)]
        assert targets.means[k] == pytest.approx(expected, abs=1e-5)
    thirds = interpolated_targets(treated, COLUMNS, points=2)
    assert thirds.keys["t"].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 3, 2 / 3])
    assert thirds.means[0] == pytest.approx(2 / 3 * profiles[("p1", 1.0)] + 1 / 3 * profiles[("p1", 10.0)], abs=1e-5)


def test_interpolated_cells_average_to_the_target_and_mix_the_inputs():
    adata, profiles = _dose_screen()
    rows = np.flatnonzero((adata.obs["pert"] != "ctrl").to_numpy())
    labels = sorted(adata.obs["pert"].unique())
    codes = adata.obs["pert"].map({label: i for i, label in enumerate(labels)}).to_numpy()
    inputs = torch.eye(len(labels))
    extended, new_codes, new_inputs, like = with_interpolated_doses(adata, rows, COLUMNS, codes, inputs, 1, seed=0)
    added = extended[extended.obs[INTERPOLATED].to_numpy()]
    assert added.n_obs == 8 and len(like) == 8 and np.isin(like, rows).all()
    for plate in ("p1", "p2"):
        cells = added[(added.obs["plate"] == plate).to_numpy()]
        assert np.asarray(cells.X.mean(axis=0)).ravel() == pytest.approx(
            0.5 * profiles[(plate, 1.0)] + 0.5 * profiles[(plate, 10.0)], abs=1e-5)
        assert (adata.obs["plate"].to_numpy()[like[(added.obs["plate"] == plate).to_numpy()]] == plate).all()
    mixed = new_inputs[new_codes[extended.obs[INTERPOLATED].to_numpy()][0]]
    assert mixed.tolist() == pytest.approx([0.0, 0.5, 0.5])  # ctrl, d_1, d_10
    index = build_pairing_index(adata.obs, COLUMNS, "batch").restrict(rows).with_cells_like(like, extended.obs_names)
    assert index.n_obs == extended.n_obs and len(index.perturbed) == len(rows) + 8


def test_the_diversity_term_is_subtracted_and_grows_with_spread():
    pred = torch.zeros(4, 2, 3)
    pred[2:] += torch.tensor([1.0, -1.0, 0.5])  # drug 1 moves, drug 0 does not
    ctrl = torch.zeros_like(pred)
    drugs = torch.tensor([0, 0, 1, 1])
    variance = drug_diversity(pred - ctrl, drugs)
    assert variance.item() == pytest.approx(np.var([[0, 0, 0], [1, -1, 0.5]], axis=0).mean())
    assert drug_diversity(pred - ctrl, torch.zeros(4, dtype=torch.long)).item() == 0.0  # one drug: nothing
    mse = lambda p, t: ((p - t) ** 2).mean(dim=(1, 2))  # noqa: E731
    without = DeltaAwareLoss(mse, LossWeights())(pred, pred, ctrl)
    weighted = DeltaAwareLoss(mse, LossWeights(diversity=2.0))(pred, pred, ctrl, drugs=drugs)
    assert weighted["diversity"].item() == pytest.approx(variance.item())
    assert weighted["total"].item() == pytest.approx(without["total"].item() - 2.0 * variance.item())


BASE_STAGE = StageSettings(epochs=2, batch_size=16, lr=5e-3, checkpoint_every=1000, pairing="batch")


def _spread(model, data, batch) -> float:
    """Diversity of the model's predicted deltas across the batch's drugs."""
    with torch.no_grad():
        pred = model(batch, padded=True).reshape(-1, data.set_size, batch["pert_cell_emb"].shape[-1])
        return drug_diversity(pred - batch["ctrl_cell_emb"].reshape(pred.shape), batch["set_drug"]).item()


def test_a_higher_diversity_weight_spreads_the_predicted_deltas(new_base, preprocessed, columns, tmp_path):
    """Trained on the same batches, a larger weight leaves a larger spread across drugs on a fixed batch."""
    target, split = preprocessed.target, preprocessed.split
    index = build_pairing_index(target.obs, columns, "batch")
    spreads = []
    for weight in (0.0, 10.0, 100.0):
        settings = replace(BASE_STAGE, adaptation="full", epochs=4, lr=1e-2, loss=LossWeights(diversity=weight))
        result = finetune_stage(new_base(), target, split, columns, Trainer(settings, tmp_path / str(weight), "fp"), index)
        data = _fixed_data(new_base, target, split, columns, index)
        batch = next(data.batches(data.plan(seed=123, epoch=0), sets_per_step=8))
        spreads.append(_spread(result.model, data, batch))
        assert ("diversity" in result.history) == (weight > 0)
    assert spreads[0] < spreads[1] < spreads[2] and spreads[2] > 1.5 * spreads[0]


def _fixed_data(new_base, target, split, columns, index) -> CellSetBatches:
    """The train split's batches, built as a stage builds them."""
    base = new_base()
    rows = np.flatnonzero(cells_of_split(target.obs, columns, split, "train"))
    vocabulary = base.screen_vocabulary(target.obs, columns)
    codes = np.full(target.n_obs, -1, dtype=np.int64)
    codes[rows], table = vocabulary.encode(target.obs[columns.perturbation].astype(str).to_numpy()[rows])
    return CellSetBatches(target, columns, codes, table, index.restrict(rows), control_input="cells",
                       set_size=base.cell_set_len)


def test_full_fine_tuning_changes_base_weights_and_adapters_do_not(new_base, preprocessed, columns, tmp_path):
    target, split = preprocessed.target, preprocessed.split
    index = build_pairing_index(target.obs, columns, "batch")
    untouched = {n: p.detach().clone() for n, p in new_base().model.named_parameters()}
    changed = {}
    for adaptation in ("lora", "full"):
        settings = replace(BASE_STAGE, adaptation=adaptation)
        base = new_base()
        trainer = Trainer(settings, tmp_path / adaptation, "fp")
        result = finetune_stage(base, target, split, columns, trainer, index)
        after = dict(base.model.named_parameters()) if adaptation == "full" else {
            n.removeprefix("base_model.model.").replace(".base_layer", ""): p
            for n, p in result.model.named_parameters() if "lora_" not in n}
        changed[adaptation] = sorted(n for n, p in untouched.items() if not torch.equal(p, after[n].detach()))
        save_stage(result, adaptation, trainer, tmp_path / f"{adaptation}_stage")
        reloaded = load_stage(new_base().model, tmp_path / f"{adaptation}_stage")
        assert all(torch.equal(p, dict(reloaded.named_parameters())[n]) for n, p in result.model.named_parameters())
    assert changed["lora"] == []
    assert len(changed["full"]) > len(untouched) // 2
    assert (tmp_path / "full_stage" / "weights.pt").exists() and (tmp_path / "lora_stage" / "adapter").is_dir()


def test_dose_interpolation_trains_a_stage(new_base, preprocessed, columns, tmp_path):
    settings = replace(BASE_STAGE, dose_interpolation=DoseInterpolation(points=1))
    index = build_pairing_index(preprocessed.target.obs, columns, "batch")
    result = finetune_stage(new_base(), preprocessed.target, preprocessed.split, columns,
                            Trainer(settings, tmp_path, "fp"), index)
    assert result.parameters["interpolated_cells"] > 0 and np.isfinite(result.history["total"]).all()
