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
from deltatune.errors import SettingsError
from deltatune.model.stage import load_stage, save_stage
from deltatune.pairing.index import build_pairing_index
from deltatune.settings import Columns, LossWeights, StageSettings, from_mapping
from deltatune.settings.train import DoseInterpolation
from deltatune.train.batches import CellSetBatches
from deltatune.train.doses import INTERPOLATED, interpolated_targets, with_interpolated_doses
from deltatune.train.finetune import finetune_stage, stage_summary
from deltatune.train.loop import Trainer
from deltatune.train.losses import DeltaAwareLoss, diversity_reward, drug_spread

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
            0.5 * profiles[(plate, 1.0)] + 0.5 * profiles[(plate, 10.0)], abs=1e-5
        )
        assert (adata.obs["plate"].to_numpy()[like[(added.obs["plate"] == plate).to_numpy()]] == plate).all()
    mixed = new_inputs[new_codes[extended.obs[INTERPOLATED].to_numpy()][0]]
    assert mixed.tolist() == pytest.approx([0.0, 0.5, 0.5])  # ctrl, d_1, d_10
    index = build_pairing_index(adata.obs, COLUMNS, "batch").restrict(rows).with_cells_like(like, extended.obs_names)
    assert index.n_obs == extended.n_obs and len(index.perturbed) == len(rows) + 8


def _sparse_doses() -> ad.AnnData:
    """Drug d at 0.1 and 10 uM (6 and 4 cells, many zeros) on one plate, and 1 uM held out."""
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 3, (13, 8)) * (rng.random((13, 8)) < 0.3)  # log1p-like: mostly zeros
    doses = [0.1] * 6 + [10.0] * 4 + [1.0] * 3
    obs = pd.DataFrame(
        {"pert": [f"d_{d:g}" for d in doses], "plate": "p1", "line": "c", "drug": "d", "dose": doses},
        index=[f"c{i}" for i in range(13)],
    )
    return ad.AnnData(X=sp.csr_matrix(X.astype(np.float32)), obs=obs)


def test_interpolated_cells_stay_non_negative_and_keep_their_target_mean():
    adata = _sparse_doses()
    rows = np.arange(10)  # the two training doses
    codes = np.r_[np.zeros(6), np.ones(4), np.full(3, 2)].astype(np.int64)
    extended, *_ = with_interpolated_doses(adata, rows, COLUMNS, codes, torch.eye(3), 2, seed=0)
    added = extended[extended.obs[INTERPOLATED].to_numpy()]
    X = added.X.toarray()
    assert added.n_obs == 8 and (X >= 0).all(), "a shifted mix of sparse cells goes negative; a rescaled one does not"
    targets = interpolated_targets(adata[rows], COLUMNS, points=2)
    for k in range(2):
        cells = X[(added.obs["dose"] == targets.keys["dose"][k]).to_numpy()]
        assert cells.mean(axis=0) == pytest.approx(targets.means[k], abs=1e-5)


def test_no_interpolated_dose_lands_on_a_held_out_dose():
    adata = _sparse_doses()
    rows = np.arange(10)
    halfway = interpolated_targets(adata[rows], COLUMNS, points=1, measured=adata.obs)
    assert len(interpolated_targets(adata[rows], COLUMNS, points=1).keys) == 1, "sqrt(0.1 * 10) = 1 uM"
    assert len(halfway.keys) == 0, "1 uM is measured (held out): no synthetic target there"
    thirds = interpolated_targets(adata[rows], COLUMNS, points=2, measured=adata.obs)
    assert thirds.keys["dose"].to_numpy() == pytest.approx([10 ** (-1 / 3), 10 ** (1 / 3)])
    codes = np.r_[np.zeros(6), np.ones(4), np.full(3, 2)].astype(np.int64)
    extended, _, _, like = with_interpolated_doses(adata, rows, COLUMNS, codes, torch.eye(3), 1, seed=0)
    assert extended.n_obs == adata.n_obs and len(like) == 0, "training adds no cell at the held-out dose"


def test_the_diversity_reward_is_the_spread_share_capped_at_one_and_subtracted():
    true = torch.zeros(4, 2, 3)
    true[2:] += torch.tensor([2.0, -2.0, 1.0])  # drug 1 moves, drug 0 does not
    ctrl = torch.zeros_like(true)
    drugs = torch.tensor([0, 0, 1, 1])
    real_spread = drug_spread(true - ctrl, drugs)
    assert real_spread.item() == pytest.approx(np.var([[0, 0, 0], [2, -2, 1]], axis=0).mean())
    assert drug_spread(true, torch.zeros(4, dtype=torch.long)).item() == 0.0  # one drug: nothing
    half = true / 2  # a quarter of the real spread
    assert diversity_reward(half, true, drugs, 1e-8).item() == pytest.approx(0.25)
    assert diversity_reward(10 * true, true, drugs, 1e-8).item() == 1.0, "no reward for spreading beyond the data"
    inflated = (10 * true).requires_grad_()
    diversity_reward(inflated, true, drugs, 1e-8).backward()
    assert not inflated.grad.any(), "and no gradient towards it"
    mse = lambda p, t: ((p - t) ** 2).mean(dim=(1, 2))  # noqa: E731
    without = DeltaAwareLoss(mse, LossWeights())(half, true, ctrl)
    weighted = DeltaAwareLoss(mse, LossWeights(diversity=2.0))(half, true, ctrl, drugs=drugs)
    assert weighted["diversity"].item() == pytest.approx(0.25)
    assert weighted["total"].item() == pytest.approx(without["total"].item() - 2.0 * 0.25)


def test_gradient_steps_on_the_reward_spread_collapsed_predictions_up_to_the_real_spread_and_no_further():
    rng = np.random.default_rng(0)
    shared, own = torch.tensor(rng.normal(0, 1, 20)), torch.tensor(rng.normal(0, 1, (6, 20)))
    true = (shared + own).repeat_interleave(2, dim=0)[:, None, :].float()  # 6 drugs, 2 sets each, (12, 1, 20)
    drugs = torch.arange(6).repeat_interleave(2)
    scale = torch.tensor(0.01, requires_grad=True)  # how much of each drug's own effect is predicted
    optimizer = torch.optim.SGD([scale], lr=0.02)
    for _ in range(300):
        pred = (shared + scale * own).repeat_interleave(2, dim=0)[:, None, :].float()
        optimizer.zero_grad()
        (-diversity_reward(pred, true, drugs, 1e-8)).backward()
        optimizer.step()
    real = drug_spread(true, drugs).item()
    assert 0.95 * real <= drug_spread(pred.detach(), drugs).item() <= 1.1 * real


BASE_STAGE = StageSettings(epochs=2, batch_size=16, lr=5e-3, checkpoint_every=1000, pairing="batch")


def _spread(model, data, batch) -> tuple[float, float]:
    """Spread of the model's predicted deltas across the batch's drugs, and of the real ones."""
    with torch.no_grad():
        shape = (-1, data.set_size, batch["pert_cell_emb"].shape[-1])
        pred = model(batch, padded=True).reshape(shape)
        ctrl = batch["ctrl_cell_emb"].reshape(shape)
        real = batch["pert_cell_emb"].reshape(shape)
        return drug_spread(pred - ctrl, batch["set_drug"]).item(), drug_spread(real - ctrl, batch["set_drug"]).item()


def test_a_large_diversity_weight_does_not_inflate_the_predicted_spread(new_base, preprocessed, columns, tmp_path):
    """Trained on the same batches with weights 0 and 100, the predicted spread across drugs on
    a fixed batch stays near the data's (the tiny model's predictions are about as spread as the
    data already, so the reward sits near its cap)."""
    target, split = preprocessed.target, preprocessed.split
    index = build_pairing_index(target.obs, columns, "batch")
    spreads = []
    for weight in (0.0, 100.0):
        settings = replace(BASE_STAGE, adaptation="full", epochs=4, lr=1e-2, loss=LossWeights(diversity=weight))
        trainer = Trainer(tmp_path / str(weight), "fp")
        result = finetune_stage(new_base(), target, split, columns, settings, trainer, index)
        data = _fixed_data(new_base, target, split, columns, index)
        batch = next(data.batches(data.plan(seed=123, epoch=0), sets_per_step=8))
        spreads.append(_spread(result.model, data, batch))
        assert ("diversity" in result.history) == (weight > 0)
    (_, real), (large, _) = spreads
    assert large < 3 * real, f"spread {large:.3g} against the data's {real:.3g}"


def _fixed_data(new_base, target, split, columns, index) -> CellSetBatches:
    """The train split's batches, built as a stage builds them."""
    base = new_base()
    rows = np.flatnonzero(cells_of_split(target.obs, columns, split, "train"))
    vocabulary = base.screen_vocabulary(target.obs, columns)
    codes = np.full(target.n_obs, -1, dtype=np.int64)
    codes[rows], table = vocabulary.encode(target.obs[columns.perturbation].astype(str).to_numpy()[rows])
    return CellSetBatches(
        target, columns, codes, table, index.restrict(rows), control_input="cells", set_size=base.cell_set_len
    )


def test_full_fine_tuning_changes_base_weights_and_adapters_do_not(new_base, preprocessed, columns, tmp_path):
    target, split = preprocessed.target, preprocessed.split
    index = build_pairing_index(target.obs, columns, "batch")
    untouched = {n: p.detach().clone() for n, p in new_base().model.named_parameters()}
    changed = {}
    for adaptation in ("lora", "full"):
        settings = replace(BASE_STAGE, adaptation=adaptation)
        base = new_base()
        trainer = Trainer(tmp_path / adaptation, "fp")
        result = finetune_stage(base, target, split, columns, settings, trainer, index)
        after = (
            dict(base.model.named_parameters())
            if adaptation == "full"
            else {
                n.removeprefix("base_model.model.").replace(".base_layer", ""): p
                for n, p in result.model.named_parameters()
                if "lora_" not in n
            }
        )
        changed[adaptation] = sorted(n for n, p in untouched.items() if not torch.equal(p, after[n].detach()))
        save_stage(
            tmp_path / f"{adaptation}_stage",
            result.model,
            result.history,
            stage_summary(result, adaptation, settings, trainer),
        )
        reloaded = load_stage(new_base().model, tmp_path / f"{adaptation}_stage")
        assert all(torch.equal(p, dict(reloaded.named_parameters())[n]) for n, p in result.model.named_parameters())
    assert changed["lora"] == []
    assert len(changed["full"]) > len(untouched) // 2
    assert (tmp_path / "full_stage" / "weights.pt").exists() and (tmp_path / "lora_stage" / "adapter").is_dir()


def test_full_groups_train_only_their_modules_whole(new_base, preprocessed, columns, tmp_path):
    """adaptation: full with full_groups moves exactly the named groups' weights, as many as it
    counts as trainable, and the stage reloads; a group the model lacks is named."""
    from deltatune.settings.train import FULL_GROUPS

    target, split = preprocessed.target, preprocessed.split
    index = build_pairing_index(target.obs, columns, "batch")
    untouched = {n: p.detach().clone() for n, p in new_base().model.named_parameters()}
    for groups in (("pert_encoder",), ("basal_encoder", "decoder")):
        settings = replace(BASE_STAGE, adaptation="full", full_groups=groups)
        base = new_base()
        result = finetune_stage(base, target, split, columns, settings, Trainer(tmp_path / groups[0], "fp"), index)
        after = dict(base.model.named_parameters())
        changed = {n for n, p in untouched.items() if not torch.equal(p, after[n].detach())}
        prefixes = tuple(FULL_GROUPS[g] for g in groups)
        assert changed and all(n.startswith(prefixes) for n in changed), sorted(changed)
        group_weights = sum(p.numel() for n, p in untouched.items() if n.startswith(prefixes))
        assert result.parameters["trainable"] == group_weights < result.parameters["total"]
        summary = stage_summary(result, "s", settings, Trainer(tmp_path, "fp"))
        save_stage(tmp_path / groups[0], result.model, result.history, summary)
        reloaded = dict(load_stage(new_base().model, tmp_path / groups[0]).named_parameters())
        assert all(torch.equal(p, reloaded[n]) for n, p in after.items())
    with pytest.raises(SettingsError, match="full_groups trains module groups whole: it needs adaptation: full"):
        from_mapping(StageSettings, {"pairing": "batch", "full_groups": ["decoder"]}, "stages.s")


def test_dose_interpolation_trains_a_stage(new_base, preprocessed, columns, tmp_path):
    settings = replace(BASE_STAGE, dose_interpolation=DoseInterpolation(points=1))
    index = build_pairing_index(preprocessed.target.obs, columns, "batch")
    result = finetune_stage(
        new_base(), preprocessed.target, preprocessed.split, columns, settings, Trainer(tmp_path, "fp"), index
    )
    assert result.parameters["interpolated_cells"] > 0 and np.isfinite(result.history["total"]).all()
