import numpy as np
import pytest
import scipy.sparse as sp

from deltatune.data.normalize import detect_scale
from deltatune.data.preprocess import preprocess
from deltatune.data.splits import cells_of_split, split_perturbations
from deltatune.errors import InputDataError
from deltatune.settings import Columns, PreprocessSettings, SplitSettings

SETTINGS = PreprocessSettings(target_cell_line="c", n_top_genes=40, split=SplitSettings(val_fraction=0.0))


def test_counts_are_log_normalized(preprocessed, screen):
    assert preprocessed.summary["input_scale"] == "counts"
    X = preprocessed.target.X
    assert sp.issparse(X) and X.dtype == np.float32
    assert X.max() < 15 and not np.array_equal(X.data, np.round(X.data))
    assert preprocessed.target.n_vars == 40


def test_log1p_input_is_kept(screen, columns):
    import scanpy as sc

    sc.pp.normalize_total(screen, target_sum=1e4)
    sc.pp.log1p(screen)
    before = screen.X.copy()
    result = preprocess(screen, columns, SETTINGS)
    assert result.summary["input_scale"] == "log1p"
    genes = result.target.var_names
    assert np.allclose(
        result.target.X.toarray(),
        before[:, screen.var_names.get_indexer(genes)][(screen.obs["cell_line"] == "c").to_numpy()].toarray(),
    )


def test_target_line_is_held_out(preprocessed, columns):
    assert set(preprocessed.target.obs[columns.cell_type]) == {"c"}
    assert "c" not in set(preprocessed.base.obs[columns.cell_type])


def test_split_keeps_all_doses_of_a_drug_together(preprocessed, columns):
    split = preprocessed.split
    assert split.groupby("unit")["split"].nunique().max() == 1
    assert {"train", "test"} <= set(split["split"])
    test_cells = cells_of_split(preprocessed.target.obs, columns, split, "test")
    train_cells = cells_of_split(preprocessed.target.obs, columns, split, "train")
    assert test_cells.any() and train_cells.any() and not (test_cells & train_cells).any()


def test_split_is_reproducible_and_seeded(preprocessed, columns):
    obs = preprocessed.target.obs
    a = split_perturbations(obs, columns, SplitSettings(seed=5))
    b = split_perturbations(obs, columns, SplitSettings(seed=5))
    c = split_perturbations(obs, columns, SplitSettings(seed=6))
    assert a.equals(b)
    assert not a.set_index("perturbation")["split"].equals(c.set_index("perturbation")["split"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch": "plate_id"}, "column 'plate_id' is not in obs"),
        ({"perturbation": "treatment"}, "column 'treatment' is not in obs"),
        ({"control": "DMSO"}, "control label 'DMSO' does not occur in column 'drugname_drugconc'"),
    ],
)
def test_bad_columns_are_named(screen, change, message):
    with pytest.raises(InputDataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preprocess(screen, Columns(**change), SETTINGS)


def test_missing_target_line_is_named(screen, columns):
    with pytest.raises(InputDataError, match="target cell line 'zz' not found"):
        preprocess(screen, columns, PreprocessSettings(target_cell_line="zz"))


def test_target_line_without_controls(screen, columns):
    keep = ~((screen.obs["cell_line"] == "c") & (screen.obs[columns.perturbation] == columns.control)).to_numpy()
    with pytest.raises(InputDataError, match="has no control cells"):
        preprocess(screen[keep].copy(), columns, SETTINGS)


def test_non_finite_and_non_log_values_are_rejected(screen):
    X = screen.X.copy()
    X.data[3] = np.nan
    with pytest.raises(InputDataError, match="NaN or infinite"):
        detect_scale(X)
    with pytest.raises(InputDataError, match="neither raw counts nor log1p"):
        detect_scale(screen.X * 100.5)


def test_duplicated_cell_names(screen, columns):
    screen.obs_names = ["same"] * screen.n_obs
    with pytest.raises(InputDataError, match="cell names are not unique"):
        preprocess(screen, columns, SETTINGS)


def test_batch_column_with_missing_values_is_named(screen, columns):
    screen.obs["plate"] = screen.obs["plate"].astype(object)
    screen.obs.iloc[5, screen.obs.columns.get_loc("plate")] = None
    with pytest.raises(InputDataError, match="column 'plate' has 1 missing value"):
        preprocess(screen, columns, SETTINGS)


def test_file_is_read_in_chunks_to_the_same_result(screen, columns, tmp_path, monkeypatch):
    import anndata as ad

    from deltatune.data import readers
    from deltatune.data.preprocess import preprocess_screen

    path = tmp_path / "screen.h5ad"
    screen.write_h5ad(path)
    expected = preprocess(screen.copy(), columns, SETTINGS)
    monkeypatch.setattr(readers, "CHUNK_ROWS", 97)
    monkeypatch.setattr(readers, "CHUNK_VALUES", 5000)
    chunks = []
    real = readers._csr_chunks
    monkeypatch.setattr(readers, "_csr_chunks", lambda *a: (chunks.append(c) or c for c in real(*a)))
    split, _ = preprocess_screen([path], columns, SETTINGS, tmp_path / "target.h5ad", tmp_path / "base.h5ad")
    target, base = ad.read_h5ad(tmp_path / "target.h5ad"), ad.read_h5ad(tmp_path / "base.h5ad")
    assert len(chunks) > 2 * screen.n_obs / 97, "read in windows of fewer rows than CHUNK_ROWS"
    assert (target.X != expected.target.X).nnz == 0 and (base.X != expected.base.X).nnz == 0
    assert split.equals(expected.split)
    assert list(base.obs_names) == list(expected.base.obs_names)
    assert target.var.equals(expected.target.var)


def test_dense_file_is_read_as_sparse(screen, columns, tmp_path):
    from deltatune.data.readers import open_backed, read_rows

    screen.X = screen.X.toarray()
    screen.write_h5ad(tmp_path / "dense.h5ad")
    backed = open_backed(tmp_path / "dense.h5ad")
    rows = np.array([0, 3, 700, 1500])
    subset = read_rows(backed, rows, chunk_rows=500)
    assert sp.issparse(subset.X) and np.array_equal(subset.X.toarray(), screen.X[rows])
    assert list(subset.obs_names) == list(screen.obs_names[rows])


def test_bad_column_fails_before_expression_is_read(screen, columns, tmp_path, monkeypatch):
    from deltatune.data import preprocess as module
    from deltatune.data import screen as screens

    screen.write_h5ad(tmp_path / "screen.h5ad")
    monkeypatch.setattr(screens, "row_chunks", lambda *a, **k: pytest.fail("X was read"))
    with pytest.raises(InputDataError, match="column 'plate_id' is not in obs"):
        module.preprocess_screen(
            [tmp_path / "screen.h5ad"], Columns(batch="plate_id"), SETTINGS, tmp_path / "t.h5ad", tmp_path / "b.h5ad"
        )
    assert not list(tmp_path.glob("*t.h5ad*")), "no output, not even a temporary, is left"


def test_only_the_chosen_base_lines_are_kept(screen, columns):
    settings = PreprocessSettings(target_cell_line="c", n_top_genes=40, base_cell_lines=("a",))
    result = preprocess(screen, columns, settings)
    assert set(result.base.obs["cell_line"]) == {"a"}
    none = preprocess(screen.copy(), columns, PreprocessSettings(target_cell_line="c", base_cell_lines=()))
    assert none.base.n_obs == 0
    with pytest.raises(InputDataError, match="not usable: \\['zz'\\]"):
        preprocess(screen.copy(), columns, PreprocessSettings(target_cell_line="c", base_cell_lines=("zz",)))


def test_dose_holdout_moves_one_dose_of_some_training_drugs_to_test(preprocessed, columns):
    obs = preprocessed.target.obs
    split = split_perturbations(obs, columns, SplitSettings(test_fraction=0.25, dose_holdout_fraction=0.5, seed=1))
    held = split[split["holdout"] == "dose"]
    assert len(held) > 0 and (held["split"] == "test").all()
    assert held["unit"].is_unique, "one dose per drug"
    for unit in held["unit"]:
        rows = split[split["unit"] == unit]
        assert set(rows["split"]) == {"train", "test"}
    assert (split.loc[split["split"] == "train", "holdout"] == "").all()
    assert (split.loc[split["holdout"] == "unit", "split"] != "train").all()


def test_a_dense_x_is_read_a_bounded_number_of_values_at_a_time(tmp_path, monkeypatch):
    """Predictions are dense: windows of 100,000 rows x 2,000 genes, turned into CSR through int64
    coordinates, took the report to 6.95 GB at a million cells (bench/scale.py; 0.87 GB bounded)."""
    import h5py

    from deltatune.data import readers

    X = np.arange(40 * 10, dtype=np.float32).reshape(40, 10)
    with h5py.File(tmp_path / "dense.h5", "w") as f:
        f["X"] = X
    monkeypatch.setattr(readers, "CHUNK_VALUES", 30)  # 3 rows of 10 genes
    rows = np.array([0, 1, 2, 5, 17, 18, 39])
    with h5py.File(tmp_path / "dense.h5") as f:
        chunks = list(readers.row_chunks(f["X"], rows))
    assert all(block.shape[0] <= 3 for _, _, block in chunks)
    assert [r for lo, hi, _ in chunks for r in rows[lo:hi]] == rows.tolist()
    np.testing.assert_array_equal(np.vstack([block.toarray() for _, _, block in chunks]), X[rows])


def test_a_fixed_split_holds_out_the_names_listed_drugs_or_labels(preprocessed, columns):
    obs = preprocessed.target.obs
    drawn = split_perturbations(obs, columns, SplitSettings(seed=0))
    drugs = sorted(drawn["unit"].unique())
    one_dose = drawn.loc[drawn["unit"] == drugs[2], "perturbation"].iloc[0]
    fixed = SplitSettings(test=(drugs[0], one_dose), val=(drugs[1],), seed=99)
    split = split_perturbations(obs, columns, fixed).set_index("perturbation")
    unit = split["unit"]
    assert (split.loc[unit == drugs[0], "split"] == "test").all(), "every dose of a listed drug"
    assert split.loc[one_dose, "split"] == "test" and split.loc[unit == drugs[1], "split"].eq("val").all()
    others = ~unit.isin(drugs[:2]) & (split.index != one_dose)
    assert split.loc[others, "split"].eq("train").all() and set(split.loc[~others, "holdout"]) == {"listed"}
    with pytest.raises(InputDataError, match=r"not in the target line.*\['no-such-drug'\]"):
        split_perturbations(obs, columns, SplitSettings(test=("no-such-drug",)))


def test_a_split_toml_gives_the_target_lines_fewshot_lists(preprocessed, columns, tmp_path):
    """arc-state's split file, read by cell-load: the target line's [fewshot] entry fixes test and val."""
    obs = preprocessed.target.obs
    drugs = sorted(split_perturbations(obs, columns, SplitSettings())["unit"].unique())
    toml = tmp_path / "generalization.toml"
    toml.write_text(
        '[datasets]\ntahoe = "/data/tahoe"\n[training]\ntahoe = "train"\n[zeroshot]\n"tahoe.z" = "test"\n'
        f'[fewshot]\n[fewshot."tahoe.c"]\nval = ["{drugs[1]}", "{drugs[0]}"]\ntest = ["{drugs[0]}", "{drugs[3]}"]\n'
    )
    split = split_perturbations(obs, columns, SplitSettings(toml=str(toml)), "c")
    by_unit = split.groupby("unit")["split"].first()
    assert sorted(by_unit[by_unit == "test"].index) == [drugs[0], drugs[3]], "a name in both lists is tested"
    assert list(by_unit[by_unit == "val"].index) == [drugs[1]]
    with pytest.raises(InputDataError, match=r"holds the whole line out \(\[zeroshot\] \['tahoe.z'\]\)"):
        split_perturbations(obs, columns, SplitSettings(toml=str(toml)), "z")
    with pytest.raises(InputDataError, match=r"no \[fewshot\] entry for it \(entries: \['tahoe.c'\]\)"):
        split_perturbations(obs, columns, SplitSettings(toml=str(toml)), "other")
    toml.write_text(f'[fewshot]\n[fewshot."tahoe.c"]\nval = ["{drugs[1]}"]\n')
    with pytest.raises(InputDataError, match=r"lists no test perturbations"):
        split_perturbations(obs, columns, SplitSettings(toml=str(toml)), "c")


def test_leakage_names_the_test_perturbations_a_checkpoints_split_did_not_hold_out(preprocessed, columns, tmp_path):
    from deltatune.data.leakage import leakage
    from deltatune.model.release import recorded_split

    split = split_perturbations(preprocessed.target.obs, columns, SplitSettings(seed=0))
    test = split[split["split"] == "test"]
    held_unit, held_label = test["unit"].iloc[0], test["perturbation"].iloc[-1]
    release = tmp_path / "release" / "fewshot"
    (release / "run").mkdir(parents=True)
    toml = release / "generalization.toml"  # where Arc's releases keep it: beside the runs
    toml.write_text(
        '[datasets]\ntahoe = "/x"\n[training]\ntahoe = "train"\n[zeroshot]\n"tahoe.z" = "test"\n'
        f'[fewshot]\n[fewshot."tahoe.c"]\ntest = ["{held_unit}", "{held_label}"]\n'
    )
    (release / "run" / "config.yaml").write_text(
        "data:\n  kwargs:\n    toml_config_path: /data/tahoe/generalization.toml\n"
    )
    assert recorded_split(release / "run") == toml == recorded_split(release / "run" / "checkpoints" / "final.ckpt")
    assert recorded_split(tmp_path) is None

    found = leakage(toml, "c", split)
    held = test["unit"].eq(held_unit) | test["perturbation"].eq(held_label)
    assert found["target_line"] == "fewshot" and found["n_test_perturbations"] == len(test)
    assert found["test_perturbations_seen"] == sorted(test.loc[~held, "perturbation"]) != []
    assert leakage(toml, "z", split)["test_perturbations_seen"] == []
    assert leakage(toml, "elsewhere", split)["test_perturbations_seen"] == sorted(test["perturbation"])


def test_a_dose_parsed_from_tahoe_labels_is_written_as_a_column(screen, columns):
    """Tahoe keeps the dose inside drugname_drugconc: dose_from_label writes it as a column, equal to
    the simulated screen's own concentration column (which the parsing never reads)."""
    import dataclasses

    derived = dataclasses.replace(columns, dose="dose_um", dose_from_label=True)
    assert "dose_um" not in derived.required() and "dose_um" not in screen.obs
    result = preprocess(screen.copy(), derived, SETTINGS)
    obs = result.target.obs
    treated = obs[columns.perturbation].astype(str) != columns.control
    assert np.allclose(obs.loc[treated, "dose_um"], obs.loc[treated, "concentration"].astype(float))
    assert (obs.loc[~treated, "dose_um"] == 0.0).all()
    with pytest.raises(InputDataError, match="'concentration' is already an obs column"):
        preprocess(screen.copy(), dataclasses.replace(columns, dose_from_label=True), SETTINGS)


def test_doses_are_parsed_per_label_in_micromolar():
    import pandas as pd

    from deltatune.data.labels import doses_from_labels

    labels = pd.Series(
        ["[('A', 50.0, 'nM')]", "[('A', 0.5, 'uM')]", "[('A', 1, 'uM'), ('B', 2, 'uM')]", "DMSO", "[('A', 0.5, 'uM')]"],
        name="drugname_drugconc",
    )
    doses = doses_from_labels(labels)
    assert np.allclose(doses.to_numpy()[[0, 1, 4]], [0.05, 0.5, 0.5]) and doses.iloc[2:4].isna().all()
    with pytest.raises(InputDataError, match="no label of column 'drugname_drugconc' holds a dose"):
        doses_from_labels(pd.Series(["a", "b"], name="drugname_drugconc"))
    with pytest.raises(InputDataError, match="unit 'mg' is not one of"):
        doses_from_labels(pd.Series(["[('A', 1, 'mg')]"], name="drugname_drugconc"))
