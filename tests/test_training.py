"""The training loop: deterministic, resumable, and stopped by a non-finite loss."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from deltatune.errors import NonFiniteLossError, SettingsError
from deltatune.pairing.index import build_pairing_index
from deltatune.settings import LossWeights, StageSettings
from deltatune.settings.train import DoseInterpolation
from deltatune.train.finetune import finetune_stage
from deltatune.train.loop import Trainer

SETTINGS = StageSettings(epochs=3, batch_size=16, lr=1e-2, checkpoint_every=2, pairing="batch")
# every weight trained, with the plate classifier whose weights the checkpoint must carry too
ADVERSARIAL = replace(SETTINGS, adaptation="full", loss=LossWeights(plate_adversarial=1.0))


def _run(new_base, preprocessed, columns, work_dir, fingerprint="fp", settings=SETTINGS):
    target = preprocessed.target
    index = build_pairing_index(target.obs, columns, settings.pairing)
    result = finetune_stage(
        new_base(), target, preprocessed.split, columns, settings, Trainer(work_dir, fingerprint), index
    )
    weights = {n: p.detach().clone() for n, p in result.model.named_parameters() if p.requires_grad}
    return weights, result.history, {**result.parameters, **result.pairing}


def test_same_seed_same_result(new_base, preprocessed, columns, tmp_path):
    w1, h1, info = _run(new_base, preprocessed, columns, tmp_path / "a")
    w2, h2, _ = _run(new_base, preprocessed, columns, tmp_path / "b")
    assert h1.equals(h2)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert info["strategy"] == "batch" and info["trainable"] > 0
    assert {"base", "delta_mse", "delta_pearson", "total", "lr", "grad_norm"} <= set(h1.columns)


class Interrupted(Exception):
    pass


def _fail_at(monkeypatch, step, exc):
    """Make the trainer's data raise ``exc`` (or yield a NaN batch) at global step ``step``."""
    from deltatune.train import batches as batches_module

    original = batches_module.CellSetBatches.batches
    seen = {"n": 0}

    def batches(self, plan, sets_per_step):
        for batch in original(self, plan, sets_per_step):
            seen["n"] += 1
            if seen["n"] == step:
                if exc is None:
                    batch = {**batch, "pert_cell_emb": batch["pert_cell_emb"] * float("nan")}
                else:
                    raise exc
            yield batch

    monkeypatch.setattr(batches_module.CellSetBatches, "batches", batches)


@pytest.mark.parametrize("settings", [SETTINGS, ADVERSARIAL], ids=["lora", "full with plate adversary"])
def test_interrupted_run_resumes_to_the_same_result(new_base, preprocessed, columns, tmp_path, monkeypatch, settings):
    reference, ref_history, _ = _run(new_base, preprocessed, columns, tmp_path / "ref", settings=settings)
    assert len(ref_history) > 6

    with monkeypatch.context() as m:
        _fail_at(m, 6, Interrupted())  # mid-epoch, after the checkpoint at step 4
        with pytest.raises(Interrupted):
            _run(new_base, preprocessed, columns, tmp_path / "killed", settings=settings)
    assert (tmp_path / "killed" / "last.ckpt").exists()
    resumed, history, _ = _run(new_base, preprocessed, columns, tmp_path / "killed", settings=settings)
    assert history.equals(ref_history)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_checkpoint_of_other_settings_is_not_resumed(new_base, preprocessed, columns, tmp_path):
    _run(new_base, preprocessed, columns, tmp_path / "w")
    _, history, _ = _run(new_base, preprocessed, columns, tmp_path / "w", fingerprint="other")
    assert history["step"].iloc[0] == 1


def test_index_of_another_strategy_is_refused(new_base, preprocessed, columns, tmp_path):
    target = preprocessed.target
    index = build_pairing_index(target.obs, columns, "random")
    with pytest.raises(SettingsError, match="built for strategy 'random' but the settings ask for 'batch'"):
        finetune_stage(new_base(), target, preprocessed.split, columns, SETTINGS, Trainer(tmp_path, "fp"), index)


def test_nan_loss_stops_and_keeps_the_last_checkpoint(new_base, preprocessed, columns, tmp_path, monkeypatch):
    _fail_at(monkeypatch, 5, None)
    with pytest.raises(NonFiniteLossError, match=r"step 4: '(base|delta_mse|delta_pearson|total)' is nan"):
        _run(new_base, preprocessed, columns, tmp_path / "w")
    saved = torch.load(tmp_path / "w" / "last.ckpt", weights_only=True)
    assert saved["position"]["global_step"] == 4
    assert all(np.isfinite(row["total"]) for row in saved["history"])
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_a_stage_reads_and_densifies_only_its_own_rows(new_base, preprocessed, columns, tmp_path):
    """Test cells whose expression is NaN change nothing: a stage never reads them, nor does inference."""
    from deltatune.data.groups import control_mask
    from deltatune.data.readers import UnreadRowError, read_cells
    from deltatune.data.splits import cells_of_split, training_cells
    from deltatune.files import write_h5ad
    from deltatune.predict.infer import predict

    target, split = preprocessed.target, preprocessed.split
    test = cells_of_split(target.obs, columns, split, "test")
    X = target.X.tolil()
    X[np.flatnonzero(test)] = np.nan
    poisoned = target.copy()
    poisoned.X = X.tocsr()
    outcomes = []
    for name, data in (("clean", target), ("poisoned", poisoned)):
        path = tmp_path / f"{name}.h5ad"
        write_h5ad(data, path)
        read = read_cells(path, lambda obs: training_cells(obs, columns, split))
        with pytest.raises(UnreadRowError, match="not read from the file"):  # never a row of zeros
            read.X[np.flatnonzero(test)]
        index = build_pairing_index(read.obs, columns, SETTINGS.pairing)
        result = finetune_stage(new_base(), read, split, columns, SETTINGS, Trainer(tmp_path / name, "fp"), index)
        plates = build_pairing_index(read.obs, columns, "batch").with_means(read.X)
        controls_only = read_cells(path, lambda obs: control_mask(obs, columns))
        predicted = predict(result.model, new_base(), controls_only, split, columns, plates)
        outcomes.append((result.history, predicted.X))
    (clean_history, clean_pred), (history, pred) = outcomes
    assert history.equals(clean_history) and np.isfinite(history["total"]).all()
    assert np.array_equal(pred, clean_pred) and np.isfinite(pred).all()
    everything = build_pairing_index(controls_only.obs, columns, SETTINGS.pairing)  # its perturbed rows were not read
    with pytest.raises(UnreadRowError, match="asked for"):
        trainer = Trainer(tmp_path / "unread", "fp")
        finetune_stage(new_base(), controls_only, split, columns, SETTINGS, trainer, everything)
    no_controls = read_cells(path, lambda obs: cells_of_split(obs, columns, split, "train"))  # controls not read
    interpolating = replace(SETTINGS, dose_interpolation=DoseInterpolation(points=1))
    with pytest.raises(UnreadRowError, match="training asked for"):  # the added cells keep the others unreadable
        finetune_stage(
            new_base(),
            no_controls,
            split,
            columns,
            interpolating,
            Trainer(tmp_path / "interp", "fp"),
            build_pairing_index(no_controls.obs, columns, SETTINGS.pairing),
        )
