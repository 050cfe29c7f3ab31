import numpy as np
import pytest
import scipy.sparse as sp

from deltatune.columns import Columns
from deltatune.errors import InputDataError
from deltatune.preprocess import PreprocessSettings, detect_scale, preprocess
from deltatune.splits import SplitSettings, cells_of_split, split_perturbations

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
    assert np.allclose(result.target.X.toarray(), before[:, screen.var_names.get_indexer(genes)][
        (screen.obs["cell_line"] == "c").to_numpy()].toarray())


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
