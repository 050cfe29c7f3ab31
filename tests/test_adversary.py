"""The plate-adversarial loss: it hides the plate from the basal embedding, and is absent at weight 0."""

from __future__ import annotations

from dataclasses import replace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from deltatune.errors import SettingsError
from deltatune.model.st import BaseModel, build_st_model
from deltatune.pairing.index import build_pairing_index
from deltatune.settings import Architecture, Columns, LossWeights, StageSettings
from deltatune.train.finetune import finetune_stage
from deltatune.train.loop import Trainer

COLUMNS = Columns(perturbation="pert", control="ctrl", cell_type="line", batch="plate", drug="drug", dose="dose")
ARCH = Architecture(hidden_dim=16, n_layers=1, n_heads=2, cell_set_len=8)
N_GENES, N_PLATES, N_DRUGS = 20, 4, 6
STAGE = StageSettings(epochs=20, batch_size=32, lr=1e-3, checkpoint_every=10**6, pairing="batch", adaptation="full")


def _plate_screen(seed: int) -> tuple[ad.AnnData, np.ndarray, np.ndarray]:
    """Controls that carry a per-plate offset, treated cells that do not: the plate is a nuisance
    the model need not carry. Returns the screen, and held-out control cells of the same plates
    (never trained on) with their plate codes, for the probe."""
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(1, 3, N_GENES)
    offsets = rng.normal(0, 0.6, (N_PLATES, N_GENES))
    effects = rng.normal(0, 0.8, (N_DRUGS, N_GENES))
    blocks, obs = [], []
    for p in range(N_PLATES):
        blocks.append(baseline + offsets[p] + rng.normal(0, 0.5, (60, N_GENES)))
        obs += [{"pert": "ctrl", "plate": f"p{p}", "drug": "ctrl"}] * 60
        for d in range(N_DRUGS):
            blocks.append(baseline + effects[d] + rng.normal(0, 0.5, (24, N_GENES)))
            obs += [{"pert": f"d{d}", "plate": f"p{p}", "drug": f"d{d}"}] * 24
    frame = pd.DataFrame(obs, index=[f"cell{i}" for i in range(len(obs))]).assign(line="c", dose=1.0)
    screen = ad.AnnData(X=np.vstack(blocks).astype(np.float32), obs=frame)
    screen.var_names = [f"g{i}" for i in range(N_GENES)]
    held_plates = np.repeat(np.arange(N_PLATES), 100)
    held = baseline + offsets[held_plates] + rng.normal(0, 0.5, (len(held_plates), N_GENES))
    return screen, held.astype(np.float32), held_plates


def _train(screen: ad.AnnData, loss: LossWeights, work, columns: Columns = COLUMNS, **changes):
    """A fresh base (seed 0) fully fine-tuned on every drug of ``screen`` with ``loss``."""
    torch.manual_seed(0)
    genes, vocabulary = list(screen.var_names), ["ctrl", *(f"d{d}" for d in range(N_DRUGS))]
    base = BaseModel(build_st_model(ARCH, genes, vocabulary, "ctrl"), genes, vocabulary)
    split = pd.DataFrame({"perturbation": vocabulary[1:], "split": "train"})
    settings = replace(STAGE, loss=loss, **changes)
    index = build_pairing_index(screen.obs, columns, settings.pairing)
    if settings.control_input == "mean":
        index = index.with_means(screen.X)
    result = finetune_stage(base, screen, split, columns, settings, Trainer(work, "fp", accelerator="cpu"), index)
    return base, result


def _probe_accuracy(base: BaseModel, held: np.ndarray, plates: np.ndarray) -> float:
    """Plate accuracy of a logistic probe fitted on half of the held-out controls' basal
    embeddings and scored on the other half."""
    with torch.no_grad():
        embedding = base.model.encode_basal_expression(torch.from_numpy(held)).numpy()
    order = np.random.default_rng(0).permutation(len(plates))
    fit, score = order[: len(order) // 2], order[len(order) // 2 :]
    probe = LogisticRegression(max_iter=2000).fit(embedding[fit], plates[fit])
    return float(probe.score(embedding[score], plates[score]))


def test_a_held_out_probe_reads_the_plate_less_as_the_adversarial_weight_rises(tmp_path):
    """Over three constructed screens, the mean probe accuracy falls with every step of the weight
    (chance is 0.25), and the classifier's cross-entropy is logged."""
    weights = (0.0, 0.1, 0.3)
    accuracy = np.zeros((3, len(weights)))
    for seed in range(3):
        screen, held, plates = _plate_screen(seed)
        for k, weight in enumerate(weights):
            base, result = _train(screen, LossWeights(plate_adversarial=weight), tmp_path / f"{seed}_{k}")
            accuracy[seed, k] = _probe_accuracy(base, held, plates)
            assert ("plate_adversarial" in result.history) == (weight > 0)
    mean = accuracy.mean(axis=0)
    assert mean[0] > mean[1] > mean[2], accuracy
    assert mean[0] - mean[2] > 0.1, accuracy


def test_weight_zero_is_bit_identical_to_no_option_and_a_weight_changes_the_model(tmp_path):
    screen, _, _ = _plate_screen(0)
    trained = {}
    for name, loss in {
        "none": LossWeights(),
        "zero": LossWeights(plate_adversarial=0.0, plate_adversary_lr_scale=3.0),
        "on": LossWeights(plate_adversarial=0.3),
    }.items():
        base, result = _train(screen, loss, tmp_path / name, epochs=2)
        trained[name] = ({n: p.detach().clone() for n, p in base.model.named_parameters()}, result.history)
    (none, none_history), (zero, zero_history), (on, _) = trained["none"], trained["zero"], trained["on"]
    assert zero_history.equals(none_history)
    assert all(torch.equal(none[n], zero[n]) for n in none)
    assert not all(torch.equal(none[n], on[n]) for n in none)


@pytest.mark.parametrize(
    ("columns", "changes"),
    [
        (replace(COLUMNS, batch=None), {"pairing": "random"}),
        (COLUMNS, {"pairing": "random", "control_input": "mean"}),
    ],
    ids=["no batch column", "control means without plates"],
)
def test_the_adversary_without_plates_to_read_is_refused(tmp_path, columns, changes):
    screen, _, _ = _plate_screen(0)
    with pytest.raises(SettingsError, match="loss.plate_adversarial needs the plate of each control input"):
        _train(screen, LossWeights(plate_adversarial=1.0), tmp_path, columns=columns, **changes)


def test_every_control_input_carries_its_plate_code(tmp_path):
    """Control cells carry their own plate; control means the plate of their group, the overall
    mean (the fallback) none; so the classifier learns each input's true plate."""
    from deltatune.train.batches import CellSetBatches

    screen, _, _ = _plate_screen(0)
    plates = pd.Index(sorted(screen.obs["plate"].unique()))
    codes = np.zeros(screen.n_obs, dtype=np.int64)
    for control_input, strategy in (("cells", "random"), ("mean", "batch")):
        index = build_pairing_index(screen.obs, COLUMNS, strategy).with_means(screen.X)
        data = CellSetBatches(screen, COLUMNS, codes, torch.eye(1), index, control_input, set_size=8)
        assert data.n_plates == N_PLATES
        if control_input == "cells":
            expected = plates.get_indexer(screen.obs["plate"])
        else:
            expected = np.append(plates.get_indexer(index.keys["plate"]), -1)
        assert data.plates.tolist() == expected.tolist()
        batch = next(data.batches(data.plan(0, 0), sets_per_step=2))
        plan = data.plan(0, 0)
        assert batch["ctrl_plate"].tolist() == expected[plan.control[:2].ravel()].tolist()


def test_the_adversary_trains_under_bf16_mixed_precision(tmp_path):
    """Under autocast the basal embedding is bfloat16; the float32 classifier reads it all the same."""
    screen, _, _ = _plate_screen(0)
    _, result = _train(screen, LossWeights(plate_adversarial=0.3), tmp_path, epochs=1, precision="bf16-mixed")
    assert np.isfinite(result.history["plate_adversarial"]).all()
    with pytest.raises(SettingsError, match="use bf16-mixed or 32-true"):
        replace(STAGE, loss=LossWeights(plate_adversarial=0.3), precision="16-mixed").check()


@pytest.mark.parametrize(
    ("columns", "stage", "message"),
    [
        ({"batch": None}, {"pairing": "random"}, "data.columns.batch is null"),
        ({}, {"pairing": "celltype", "control_input": "mean"}, "needs a pairing by batch"),
    ],
    ids=["no batch column", "control means without plates"],
)
def test_a_config_whose_adversary_has_no_plate_to_read_stops_before_any_job(tiny_config, columns, stage, message):
    from deltatune.settings.workflow import WorkflowSettings

    data, model = tiny_config["data"], tiny_config["base_model"]
    adversarial = {**tiny_config["stages"]["lora_random"], **stage, "loss": {"plate_adversarial": 1.0}}
    config = {
        **tiny_config,
        "data": {**data, "columns": {**data["columns"], **columns}},
        "base_model": {**model, "pretrain": {**model["pretrain"], "pairing": "celltype"}},
        "stages": {"adversarial": adversarial},
    }
    with pytest.raises(SettingsError, match=f"stages.adversarial: loss.plate_adversarial .*{message}"):
        WorkflowSettings(config)
