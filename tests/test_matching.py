"""A screen meets a checkpoint: genes and perturbations matched by name, loading kept safe."""

import fractions
import pickle
import re
import zipfile

import numpy as np
import pytest
import torch

from deltatune.data.genes import MEASURED, check_model_genes, use_var_column
from deltatune.data.preprocess import preprocess
from deltatune.errors import CheckpointError, InputDataError
from deltatune.evaluate.pairs import evaluation_pair
from deltatune.model.checkpoint import (
    CHECKPOINTS,
    PERT_MAP,
    VAR_DIMS,
    load_base_model,
    save_base_model,
)
from deltatune.model.lora import apply_lora
from deltatune.model.perturbations import Vocabulary, new_rows_module
from deltatune.model.st import BaseModel, build_st_model
from deltatune.pairing.index import build_pairing_index
from deltatune.predict.infer import predict
from deltatune.settings import (
    Architecture,
    CheckpointSettings,
    LoraSettings,
    PerturbationSettings,
    PreprocessSettings,
    SplitSettings,
)

ARCH = Architecture(hidden_dim=16, n_layers=1, n_heads=2, cell_set_len=8)
SETTINGS = PreprocessSettings(target_cell_line="c", split=SplitSettings(val_fraction=0.0, test_fraction=0.3))
TRAIN = PerturbationSettings(unseen_perturbations="train")


def _model_genes(screen, n=40, seed=0):
    """A checkpoint's gene list: a subset of the screen's genes in an order of its own."""
    return list(np.random.default_rng(seed).permutation(screen.var_names)[:n])


def _base(genes, perturbations, control, seed=0):
    torch.manual_seed(seed)
    return BaseModel(build_st_model(ARCH, genes, perturbations, control).eval(), genes, perturbations)


def _labels(screen, columns):
    return sorted(set(screen.obs[columns.perturbation].astype(str)))


def _predict(base, result, columns):
    index = build_pairing_index(result.target.obs, columns, "batch").with_means(result.target.X)
    return predict(base.model, base, result.target, result.split, columns, index)


def test_genes_in_another_order_give_the_same_result(screen, columns):
    genes = _model_genes(screen)
    base = _base(genes, _labels(screen, columns), columns.control)
    in_order = preprocess(screen.copy(), columns, SETTINGS, genes=genes)
    shuffled_screen = screen[:, np.random.default_rng(5).permutation(screen.n_vars)].copy()
    shuffled = preprocess(shuffled_screen, columns, SETTINGS, genes=genes)

    assert list(in_order.target.var_names) == genes == list(shuffled.target.var_names)
    assert (in_order.target.X != shuffled.target.X).nnz == 0
    assert np.array_equal(_predict(base, in_order, columns).X, _predict(base, shuffled, columns).X)


def test_a_few_missing_genes_enter_as_zeros_and_leave_evaluation(screen, columns):
    genes = _model_genes(screen)[:38] + ["NOT_MEASURED_1", "NOT_MEASURED_2"]  # 2 of 40: 5%
    result = preprocess(screen.copy(), columns, SETTINGS, genes=genes)
    target = result.target
    absent = ~target.var[MEASURED].to_numpy()
    assert target.var_names[absent].tolist() == ["NOT_MEASURED_1", "NOT_MEASURED_2"]
    assert target.X[:, absent].nnz == 0 and result.summary["n_genes_missing"] == 2

    base = _base(genes, _labels(screen, columns), columns.control)
    pair = evaluation_pair(target, _predict(base, result, columns), result.split, columns)
    assert list(pair.var_names) == list(pair.prediction.var_names[pair.prediction_genes]) == genes[:38]


def test_too_many_missing_genes_stop_with_counts_and_examples(screen, columns):
    genes = _model_genes(screen)[:30] + [f"ENSG{i:011d}" for i in range(10)]
    with pytest.raises(CheckpointError, match=r"10 of the base model's 40 genes are not in the data \(e\.g\. \['ENSG0"):
        preprocess(screen.copy(), columns, SETTINGS, genes=genes)


def test_gene_names_can_come_from_a_var_column(screen):
    screen.var["symbol"] = [f"SYM{i}" for i in range(screen.n_vars)]
    assert use_var_column(screen, "symbol", "screen").var_names[0] == "SYM0"
    screen.var["symbol"] = "SAME"
    with pytest.raises(InputDataError, match="var column 'symbol' names 1 gene"):
        use_var_column(screen, "symbol", "screen")
    with pytest.raises(InputDataError, match="var column 'gene_name' .* is not in var"):
        use_var_column(screen, "gene_name", "screen")


def test_an_unseen_perturbation_stops_with_its_name(screen, columns):
    labels = [label for label in _labels(screen, columns) if label != columns.control]
    base = _base(_model_genes(screen), labels[1:], columns.control)  # the checkpoint never saw labels[0]
    vocabulary = base.vocabulary(np.array(labels), columns.control)
    with pytest.raises(
        CheckpointError,
        match=rf"1 perturbation\(s\) .* vocabulary of {len(labels) - 1}: \[\"{re.escape(labels[0])}\"\]",
    ):
        vocabulary.encode(np.array(labels))


def test_unseen_perturbations_get_trainable_rows_and_known_ones_keep_their_output(screen, columns):
    labels = [label for label in _labels(screen, columns) if label != columns.control]
    known, unseen = labels[2:], labels[:2]
    genes = _model_genes(screen)
    base = _base(genes, known, columns.control)
    n = 2 * ARCH.cell_set_len
    controls = torch.rand(n, len(genes), generator=torch.Generator().manual_seed(0))
    known_codes, known_table = base.vocabulary(np.array(known), columns.control).encode(np.array(known[:2] * 8))
    before = base.model({"pert_emb": known_table[known_codes], "ctrl_cell_emb": controls}, padded=True)

    vocabulary = base.vocabulary(np.array(labels), columns.control, TRAIN)
    assert vocabulary.labels == known + unseen
    codes, table = vocabulary.encode(np.array(known[:2] * 8))
    after = base.model({"pert_emb": table[codes], "ctrl_cell_emb": controls}, padded=True)
    assert torch.equal(before, after)

    model = apply_lora(
        base.model, LoraSettings(targets=("backbone_attention", "pert_encoder")), trainable=new_rows_module(base.model)
    )
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in name or ".unseen." in name for name in trainable)
    (rows,) = [p for name, p in trainable.items() if ".unseen." in name]
    assert rows.shape == (ARCH.hidden_dim, 2)
    codes, table = vocabulary.encode(np.array([unseen[0]] * n))
    model.train()
    model({"pert_emb": table[codes], "ctrl_cell_emb": controls}, padded=True).pow(2).mean().backward()
    assert rows.grad[:, 0].abs().sum() > 0 and rows.grad[:, 1].abs().sum() == 0


def test_combinations_add_up_their_parts():
    vocabulary = Vocabulary(["ctrl", "A", "B"], torch.eye(3), "ctrl", PerturbationSettings(combination_separator="+"))
    codes, table = vocabulary.encode(np.array(["A+B", "A", "A+ctrl", "A+B"]))
    assert table[codes].tolist() == [[0, 1, 1], [0, 1, 0], [0, 1, 0], [0, 1, 1]]
    with pytest.raises(CheckpointError, match=r"\['C'\]"):
        vocabulary.encode(np.array(["A+C"]))


def test_a_checkpoint_whose_dimensions_do_not_match_names_both(screen, columns, tmp_path):
    genes = _model_genes(screen)
    base = _base(genes, _labels(screen, columns), columns.control)
    save_base_model(base, tmp_path / "run", {})
    short = tmp_path / "genes.txt"
    short.write_text("\n".join(genes[:39]))
    with pytest.raises(
        CheckpointError, match=rf"takes 40 genes \(input_dim\) but base_model.genes \({short}\) lists 39"
    ):
        load_base_model(tmp_path / "run", CheckpointSettings(genes=str(short)))
    (tmp_path / "run" / "genes.txt").write_text("\n".join(genes[:39]))  # a recorded list, not the user's
    with pytest.raises(CheckpointError, match=r"lists 39\. ST records every gene .* as base_model\.genes"):
        load_base_model(tmp_path / "run")
    (tmp_path / "run" / "genes.txt").write_text("\n".join(genes))

    other = preprocess(screen.copy(), columns, SETTINGS, genes=genes[:38])
    with pytest.raises(CheckpointError, match=r"data.h5ad has 38 genes but the base model run takes 40"):
        check_model_genes(other.target, genes, "data.h5ad", "run")

    torch.save({label: torch.zeros(3) for label in base.perturbations}, tmp_path / "run" / PERT_MAP)
    with pytest.raises(
        CheckpointError, match=rf"3-dimensional perturbation vectors but .* takes {len(base.perturbations)}"
    ):
        load_base_model(tmp_path / "run")


def test_loading_pickled_objects_needs_the_trusted_switch(screen, columns, tmp_path):
    base = _base(_model_genes(screen), _labels(screen, columns), columns.control)
    save_base_model(base, tmp_path / "run", {})
    ckpt = tmp_path / "run" / CHECKPOINTS / "final.ckpt"
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["note"] = fractions.Fraction(1, 3)  # any pickled class
    torch.save(state, ckpt)
    with pytest.raises(
        CheckpointError, match=r"holds pickled objects \['fractions.Fraction'\].*base_model.trusted: true"
    ):
        load_base_model(tmp_path / "run")
    assert load_base_model(tmp_path / "run", CheckpointSettings(trusted=True)).genes == base.genes

    with open(tmp_path / "run" / VAR_DIMS, "wb") as handle:
        pickle.dump({"gene_names": fractions.Fraction(1, 3)}, handle)
    state["hyper_parameters"].pop("note")
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=r"var_dims.pkl cannot be loaded safely: global 'fractions.Fraction'"):
        load_base_model(tmp_path / "run")


def _as_numpy_1(data: bytes) -> bytes:
    """A protocol-2 pickle as numpy 1 writes it (its scalars live in numpy.core, not numpy._core)."""
    assert b"numpy._core.multiarray" in data
    return data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def test_maps_pickled_under_numpy_1_load_without_trust(screen, columns, tmp_path):
    """ST stores labels and sizes as numpy scalars; older checkpoints spell their module numpy.core."""
    base = _base(_model_genes(screen), _labels(screen, columns), columns.control)
    save_base_model(base, tmp_path / "run", {})
    run = tmp_path / "run"
    (run / "genes.txt").unlink()  # the gene list now comes from var_dims.pkl
    var_dims = {"input_dim": np.int64(len(base.genes)), "gene_names": [np.str_(g) for g in base.genes]}
    (run / VAR_DIMS).write_bytes(_as_numpy_1(pickle.dumps(var_dims, protocol=2)))
    state = torch.load(run / CHECKPOINTS / "final.ckpt", weights_only=True)
    state["hyper_parameters"]["gene_names"] = None
    torch.save(state, run / CHECKPOINTS / "final.ckpt")
    pert_map = {np.str_(label): vector for label, vector in zip(base.perturbations, base.pert_vectors, strict=True)}
    torch.save(pert_map, run / PERT_MAP)
    with zipfile.ZipFile(run / PERT_MAP) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(run / PERT_MAP, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, _as_numpy_1(data) if name.endswith("data.pkl") else data)

    loaded = load_base_model(run)
    assert loaded.genes == base.genes and loaded.perturbations == base.perturbations
