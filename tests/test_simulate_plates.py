"""Tahoe-100M's layout: plate files holding every line, raw counts drawn sparsely."""

import dataclasses
import json
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from deltatune.cli import main
from deltatune.data.simulate_plates import draw_plates, expected_detected, logseries, plate_names, write_plates
from deltatune.errors import SettingsError
from deltatune.settings import Columns, ScreenSpec, from_mapping
from deltatune.settings.data import TAHOE_CONTROL

SPEC = ScreenSpec(
    n_genes=4000,
    cell_lines=("a", "b", "c"),
    n_drugs=6,
    doses_um=(0.1, 1.0),
    plate_files=3,
    cells_per_well=15,
    controls_per_plate=40,
    depth=1500.0,
    depth_sd=0.4,
    detected_genes=900,
    seed=4,
)


def _read(paths):
    return [ad.read_h5ad(p) for p in paths]


@pytest.fixture(scope="module")
def plates(tmp_path_factory):
    return _read(write_plates(SPEC, tmp_path_factory.mktemp("plates")))


def test_a_file_per_plate_named_as_tahoe(tmp_path):
    paths = write_plates(dataclasses.replace(SPEC, n_genes=2000, detected_genes=None, depth=300.0), tmp_path)
    assert [p.name for p in paths] == ["plate1.h5ad", "plate2.h5ad", "plate3.h5ad"]
    assert [p.stem for p in paths] == plate_names(SPEC)
    assert sorted(f.name for f in tmp_path.iterdir()) == [p.name for p in paths], "no temporaries left"


def test_every_line_on_every_plate_with_its_controls(plates):
    columns = Columns()
    for number, adata in enumerate(plates, 1):
        obs = adata.obs
        assert set(obs[columns.batch]) == {f"plate{number}"}
        controls = obs[obs[columns.perturbation] == TAHOE_CONTROL]
        assert set(obs[columns.cell_type]) == set(controls[columns.cell_type]) == {"a", "b", "c"}
        treated = obs[obs[columns.perturbation] != TAHOE_CONTROL]
        lines_per_well = treated.groupby(columns.perturbation, observed=True)[columns.cell_type].nunique()
        assert (lines_per_well == 3).all(), "every well holds every line"


def test_tahoe_obs_names_and_labels(plates):
    columns = Columns()
    obs = pd.concat([a.obs for a in plates])
    assert list(obs.columns) == ["drugname_drugconc", "drug", "concentration", "cell_line", "plate"]
    controls = obs[columns.perturbation] == "[('DMSO_TF', 0.0, 'uM')]"
    assert controls.any() and (obs.loc[controls, columns.drug] == "DMSO_TF").all()
    assert (obs.loc[controls, columns.dose] == 0.0).all()
    treated = obs[~controls]
    expected = [f"[('{d}', {c}, 'uM')]" for d, c in zip(treated[columns.drug], treated[columns.dose], strict=True)]
    assert treated[columns.perturbation].astype(str).tolist() == expected
    assert set(treated[columns.dose]) == {0.1, 1.0}
    assert set(treated[columns.drug]) <= {f"drug{d:02d}" for d in range(6)}
    assert obs.index.is_unique, "cell names are unique across plate files"
    assert obs.index[0] == "plate1_0000000"


def test_raw_integer_counts_in_sorted_csr(plates):
    for adata in plates:
        X = adata.X
        assert X.format == "csr" and X.dtype == np.float32 and X.shape[1] == SPEC.n_genes
        assert X.has_canonical_format, "sorted column indices, no duplicates"
        assert X.nnz and (X.data >= 1).all() and np.array_equal(X.data, np.round(X.data))
        assert X.data.max() > 10, "highly expressed genes count more than once"


def test_detected_genes_and_depth_as_set(plates):
    X = np.concatenate([np.diff(a.X.indptr) for a in plates])
    umis = np.concatenate([np.asarray(a.X.sum(axis=1)).ravel() for a in plates])
    assert abs(np.median(X) / SPEC.detected_genes - 1) < 0.1, np.median(X)
    assert abs(np.median(umis) / SPEC.depth - 1) < 0.1, np.median(umis)
    assert np.median(X) < 0.8 * np.median(umis), "genes detected more than once"


def test_counts_are_negative_binomial():
    """One group at a fixed depth: per gene, mean depth * p, variance m + m^2 / dispersion, and
    the zeros the negative binomial has."""
    screen = draw_plates(SPEC)
    n_cells, depth = 3000, 2000.0
    p = screen.proportions(0)
    X = screen._draw_counts(np.zeros(n_cells, dtype=int), np.full(n_cells, depth), np.random.default_rng(0))
    X = X.toarray()
    m = depth * p
    top = np.argsort(m)[-50:]
    assert np.allclose(X[:, top].mean(axis=0), m[top], rtol=0.1)
    var = m[top] + m[top] ** 2 / SPEC.dispersion
    assert np.allclose(X[:, top].var(axis=0), var, rtol=0.2)
    assert np.median(X[:, top].var(axis=0) / var) == pytest.approx(1, abs=0.06)
    assert (X > 0).sum(axis=1).mean() == pytest.approx(expected_detected(np.log(p), depth, SPEC.dispersion), rel=0.01)


def test_logseries_is_numpys_distribution():
    rng = np.random.default_rng(1)
    for p in (0.01, 0.4, 0.9):
        draws = logseries(np.full(400_000, p), rng)
        mean = -p / ((1 - p) * np.log1p(-p))
        assert draws.mean() == pytest.approx(mean, rel=0.02)
        assert (draws == 1).mean() == pytest.approx(-p / np.log1p(-p), rel=0.01)


def test_same_seed_same_files_and_any_plate_alone(plates, tmp_path):
    again = _read(write_plates(SPEC, tmp_path / "again"))
    alone = _read(write_plates(SPEC, tmp_path / "alone", plates=[2]))
    for a, b in [*zip(plates, again, strict=True), (plates[1], alone[0])]:
        assert (a.X != b.X).nnz == 0
        pd.testing.assert_frame_equal(a.obs, b.obs)
    other = _read(write_plates(dataclasses.replace(SPEC, seed=5), tmp_path / "other", plates=[1]))[0]
    assert other.shape != plates[0].shape or (other.X != plates[0].X).nnz > 0


def test_a_line_on_the_first_plates_only_and_more_abundant(tmp_path):
    spec = dataclasses.replace(SPEC, line_plates={"c": 1}, line_abundance={"a": 4.0})
    files = _read(write_plates(spec, tmp_path))
    assert [sorted(set(f.obs["cell_line"])) for f in files] == [["a", "b", "c"], ["a", "b"], ["a", "b"]]
    counts = pd.concat([f.obs for f in files])["cell_line"].value_counts()
    assert 3 < counts["a"] / counts["b"] < 5


def test_cli_writes_plate_files(tmp_path):
    settings = json.dumps({**dataclasses.asdict(SPEC), "n_genes": 1000, "detected_genes": None, "depth": 200.0})
    assert main(["simulate", "--settings", settings, "--out-dir", str(tmp_path), "--plates", "1", "3"]) == 0
    assert sorted(f.name for f in tmp_path.iterdir()) == ["plate1.h5ad", "plate3.h5ad"]
    assert main(["simulate", "--settings", settings, "--out", str(tmp_path / "one.h5ad")]) == 2
    assert main(["simulate", "--settings", settings, "--out-dir", str(tmp_path), "--plates", "4"]) == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"detected_genes": 500}, "detected_genes needs plate_files"),
        ({"plate_files": 2, "line_plates": {"z": 1}}, "line_plates names lines not in cell_lines: ['z']"),
        ({"plate_files": 2, "line_plates": {"c12": 3}}, "line_plates puts a line on more plates than plate_files"),
        (
            {"plate_files": 2, "line_plates": dict.fromkeys(ScreenSpec().cell_lines, 1)},
            "line_plates leaves plate2 without a line",
        ),
        ({"plate_files": 1}, "plates_per_drug (1, 2) must satisfy 1 <= low <= high <= plate_files (1)"),
        ({"plate_files": 2, "line_abundance": {"c12": 0}}, "line_abundance.c12 must be above 0"),
    ],
)
def test_plate_settings_are_checked(values, message):
    with pytest.raises(SettingsError, match="^" + re.escape(f"data.simulate.{message}")):
        from_mapping(ScreenSpec, values, "data.simulate")


def test_detected_genes_out_of_reach_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="detected_genes .* out of reach"):
        write_plates(dataclasses.replace(SPEC, detected_genes=1400), tmp_path)
