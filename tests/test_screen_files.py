"""A screen as many files (Tahoe-100M: one per plate), streamed: the same data as one file read
whole, genes matched by name, each file's faults named, genes chosen on training cells only."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from own_data import split_into_files

from deltatune.data import readers
from deltatune.data.hvg import GeneMoments, seurat_hvg
from deltatune.data.normalize import normalize_block
from deltatune.data.preprocess import preprocess, preprocess_screen
from deltatune.data.splits import training_cells
from deltatune.errors import CheckpointError, InputDataError
from deltatune.settings import Columns, PreprocessSettings, SplitSettings
from deltatune.settings.data import screen_files

SETTINGS = PreprocessSettings(target_cell_line="c", n_top_genes=40, split=SplitSettings(val_fraction=0.2))


@pytest.fixture
def plate_files(screen, tmp_path) -> list:
    """The tiny screen as one file per plate, each with its genes in an order of its own."""
    screen.write_h5ad(tmp_path / "screen.h5ad")
    return split_into_files(tmp_path / "screen.h5ad", "plate")


def _read(paths, columns, tmp_path, settings=SETTINGS, genes=None):
    split, summary = preprocess_screen(
        paths, columns, settings, tmp_path / "target.h5ad", tmp_path / "base.h5ad", genes=genes
    )
    return ad.read_h5ad(tmp_path / "target.h5ad"), ad.read_h5ad(tmp_path / "base.h5ad"), split, summary


def _same_cells(a: ad.AnnData, b: ad.AnnData) -> None:
    """``a`` and ``b`` (from several files: names suffixed by file) hold the same cells and genes
    (in any order) with the same expression and obs."""
    assert sorted(a.var_names) == sorted(b.var_names)
    b = b.copy()
    b.obs_names = b.obs_names.str.rsplit("-", n=1).str[0]
    b = b[a.obs_names, a.var_names]
    assert (a.X != b.X).nnz == 0
    pd.testing.assert_frame_equal(a.obs.astype(str), b.obs.astype(str))  # categories in any order


def test_plate_files_give_what_the_whole_screen_gives(screen, plate_files, columns, tmp_path, monkeypatch):
    assert len(plate_files) > 2
    whole = preprocess(screen, columns, SETTINGS)
    monkeypatch.setattr(readers, "CHUNK_ROWS", 50)  # several chunks per file
    target, base, split, summary = _read(plate_files, columns, tmp_path)
    _same_cells(whole.target, target)
    _same_cells(whole.base, base)
    assert split.equals(whole.split)
    assert summary["n_input_files"] == len(plate_files)
    assert {k: v for k, v in summary.items() if k != "n_input_files"} == whole.summary


def test_a_glob_names_the_files_in_order(plate_files, tmp_path):
    assert screen_files(str(tmp_path / "screen_*.h5ad")) == sorted(map(str, plate_files))
    assert screen_files([str(plate_files[1]), str(tmp_path / "screen_c*_plate1.h5ad")])[0] == str(plate_files[1])
    with pytest.raises(InputDataError, match="matches no file"):
        screen_files(str(tmp_path / "plate*.h5ad"))
    with pytest.raises(InputDataError, match="more than once"):
        screen_files([str(plate_files[0]), str(tmp_path / "screen_*.h5ad")])


def test_a_file_lacking_genes_is_named_with_how_many(screen, plate_files, columns, tmp_path):
    short = ad.read_h5ad(plate_files[1])
    short[:, ~short.var_names.isin(screen.var_names[:3])].copy().write_h5ad(plate_files[1])
    with pytest.raises(InputDataError, match=rf"{plate_files[1]} lacks 3 of the {screen.n_vars} genes of"):
        _read(plate_files, columns, tmp_path)
    # A checkpoint's list with max_missing_genes allows them: zero columns, marked unmeasured.
    model = list(screen.var_names[:40])
    lenient = PreprocessSettings(target_cell_line="c", max_missing_genes=0.1)
    target, *_ = _read(plate_files, columns, tmp_path, settings=lenient, genes=model)
    assert list(target.var_names) == model
    assert target.var["measured"].tolist() == [False] * 3 + [True] * 37
    strict = PreprocessSettings(target_cell_line="c", max_missing_genes=0.05)
    with pytest.raises(CheckpointError, match=rf"{plate_files[1]}: 3 of the base model's 40 genes"):
        _read(plate_files, columns, tmp_path, settings=strict, genes=model)


def test_a_bad_column_in_one_file_names_that_file(plate_files, columns, tmp_path):
    part = ad.read_h5ad(plate_files[2])
    part.obs = part.obs.rename(columns={"plate": "plate_id"})
    part.write_h5ad(plate_files[2])
    with pytest.raises(InputDataError, match=rf"{plate_files[2]}: column 'plate' is not in obs"):
        _read(plate_files, columns, tmp_path)
    assert not list(tmp_path.glob("*target.h5ad*")), "nothing written"


def test_keep_cells_keeps_only_the_listed_values_in_every_line(plate_files, columns, tmp_path):
    """Tahoe-100M's ``pass_filter``: cells that passed only the minimal filter are left out of
    both the target and the base lines, counted; the rest is what the filtered screen gives."""
    import dataclasses

    rng = np.random.default_rng(0)
    for path in plate_files:
        part = ad.read_h5ad(path)
        part.obs["pass_filter"] = np.where(rng.random(part.n_obs) < 0.2, "minimal", "full")
        part.write_h5ad(path)
    full = pd.concat([ad.read_h5ad(p).obs for p in plate_files])["pass_filter"] == "full"
    settings = dataclasses.replace(SETTINGS, keep_cells={"pass_filter": ("full",)})
    target, base, split, summary = _read(plate_files, columns, tmp_path, settings=settings)
    assert set(target.obs["pass_filter"]) == set(base.obs["pass_filter"]) == {"full"}
    assert summary["n_cells_left_out"] == (~full).sum() > 0
    assert target.n_obs + base.n_obs == full.sum()
    (tmp_path / "all").mkdir()
    assert _read(plate_files, columns, tmp_path / "all")[3]["n_cells_left_out"] == 0
    missing = dataclasses.replace(SETTINGS, keep_cells={"passed": ("full",)})
    with pytest.raises(InputDataError, match=rf"{plate_files[0]}: preprocess.keep_cells names column 'passed'"):
        _read(plate_files, columns, tmp_path, settings=missing)
    sampled = dataclasses.replace(settings, base_cells_per_group=3)  # as the Tahoe example combines them
    (tmp_path / "sampled").mkdir()
    _, base, _, summary = _read(plate_files, columns, tmp_path / "sampled", settings=sampled)
    assert set(base.obs["pass_filter"]) == {"full"} and summary["n_cells_left_out"] == (~full).sum()
    for path in plate_files:  # every target cell marked minimal: the message says why none is found
        part = ad.read_h5ad(path)
        part.obs.loc[part.obs["cell_line"] == "c", "pass_filter"] = "minimal"
        part.write_h5ad(path)
    with pytest.raises(InputDataError, match=r"target cell line 'c' not found in column 'cell_line', of the cells"):
        _read(plate_files, columns, tmp_path, settings=settings)
    nothing = dataclasses.replace(SETTINGS, keep_cells={"pass_filter": ("strict",)})
    with pytest.raises(InputDataError, match=r"keep_cells \{'pass_filter': \('strict',\)\} leaves out every"):
        _read(plate_files, columns, tmp_path, settings=nothing)


def test_files_on_different_scales_are_refused(plate_files, columns, tmp_path):
    part = ad.read_h5ad(plate_files[-1])
    sc.pp.log1p(part)
    part.write_h5ad(plate_files[-1])
    with pytest.raises(
        InputDataError, match=rf"{plate_files[-1]} holds log1p where the screen read before it holds counts"
    ):
        _read(plate_files, columns, tmp_path)


def test_blocks_normalize_to_scanpys_numbers_on_the_whole_matrix(screen):
    whole = screen.copy()
    sc.pp.normalize_total(whole, target_sum=1e4)
    sc.pp.log1p(whole)
    blocks = [normalize_block(screen.X[start : start + 77], "counts") for start in range(0, screen.n_obs, 77)]
    assert (sp.vstack(blocks) != sp.csr_matrix(whole.X, dtype=np.float32)).nnz == 0


def test_streamed_moments_select_scanpys_genes(screen):
    """Equal to scanpy's seurat flavor on the same cells, including genes never expressed (a NaN
    dispersion) and a bin holding a single gene."""
    sc.pp.normalize_total(screen, target_sum=1e4)
    sc.pp.log1p(screen)
    X = screen.X.tocsc()
    X[:, 5] = 0  # never expressed
    X[:, 9] = X[:, 9] * 4.0  # far above the other means: a bin of its own
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    expected = ad.AnnData(X=X.copy())
    sc.pp.highly_variable_genes(expected, n_top_genes=60, flavor="seurat")
    moments = GeneMoments(X.shape[1])
    for start in range(0, X.shape[0], 101):
        moments.add(X[start : start + 101])
    table = seurat_hvg(moments, 60)
    assert (table["mean_bin"].value_counts() == 1).any(), "a bin of one gene"
    np.testing.assert_array_equal(table["highly_variable"], expected.var["highly_variable"])
    np.testing.assert_allclose(table["means"], expected.var["means"], rtol=1e-12)
    np.testing.assert_allclose(table["dispersions_norm"], expected.var["dispersions_norm"], rtol=1e-5)


def test_genes_are_chosen_on_training_cells_only(screen, columns):
    """The genes are scanpy's on the base lines and the target's controls and training
    perturbations; noise in the validation and test cells changes nothing but those cells."""
    result = preprocess(screen, columns, SETTINGS)
    in_target = (screen.obs["cell_line"] == "c").to_numpy()
    training = ~in_target | training_cells(screen.obs, columns, result.split)
    normalized = screen.copy()
    sc.pp.normalize_total(normalized, target_sum=1e4)
    sc.pp.log1p(normalized)
    expected = normalized[training].copy()
    sc.pp.highly_variable_genes(expected, n_top_genes=SETTINGS.n_top_genes, flavor="seurat")
    assert list(result.target.var_names) == list(expected.var_names[expected.var["highly_variable"]])
    assert result.summary["n_cells_genes_chosen_on"] == training.sum() < screen.n_obs

    held_out = ~training
    X = screen.X.toarray()
    X[held_out] = np.random.default_rng(0).poisson(100.0, (held_out.sum(), screen.n_vars))
    poisoned = preprocess(ad.AnnData(sp.csr_matrix(X), obs=screen.obs, var=screen.var), columns, SETTINGS)
    assert list(poisoned.target.var_names) == list(result.target.var_names)
    everything = screen.copy()
    everything.X = sp.csr_matrix(X)
    sc.pp.normalize_total(everything, target_sum=1e4)
    sc.pp.log1p(everything)
    sc.pp.highly_variable_genes(everything, n_top_genes=SETTINGS.n_top_genes, flavor="seurat")
    assert set(everything.var_names[everything.var["highly_variable"]]) != set(result.target.var_names), (
        "on every cell the noise would have moved the genes"
    )


def test_cell_names_of_several_files_name_their_file(plate_files, columns, tmp_path):
    for path in plate_files:
        part = ad.read_h5ad(path)
        part.obs_names = [f"bc{i}" for i in range(part.n_obs)]
        part.write_h5ad(path)
    target, base, *_ = _read(plate_files, columns, tmp_path)
    names = target.obs_names.append(base.obs_names)
    assert names.is_unique and names.str.endswith(tuple(p.stem for p in plate_files)).all()


def test_columns_must_match_in_every_file_but_only_the_named_ones(plate_files, tmp_path):
    part = ad.read_h5ad(plate_files[0])
    part.obs["only_here"] = "x"
    part.write_h5ad(plate_files[0])
    target, base, *_ = _read(plate_files, Columns(), tmp_path)
    assert target.obs["only_here"].isna().sum() + base.obs["only_here"].isna().sum() == sum(
        ad.read_h5ad(p, backed="r").n_obs for p in plate_files[1:]
    )


def test_the_base_lines_keep_a_seeded_capped_sample_of_each_group(screen, columns):
    import dataclasses

    by = ["cell_line", "drugname_drugconc", "plate"]
    full = preprocess(screen.copy(), columns, SETTINGS)
    capped = preprocess(screen.copy(), columns, dataclasses.replace(SETTINGS, base_cells_per_group=5))
    sizes = full.base.obs.groupby(by, observed=True).size()
    kept = capped.base.obs.groupby(by, observed=True).size().reindex(sizes.index, fill_value=0)
    assert (kept == sizes.clip(upper=5)).all() and (sizes > 5).any()
    assert capped.summary["n_cells_base"] == kept.sum() < capped.summary["n_cells_base_available"] == full.base.n_obs
    assert capped.target.obs.equals(full.target.obs), "the target line keeps every cell"
    assert capped.summary["n_cells_genes_chosen_on"] < full.summary["n_cells_genes_chosen_on"], "genes: on the sample"
    assert set(capped.base.obs_names) <= set(full.base.obs_names)
    again = preprocess(screen.copy(), columns, dataclasses.replace(SETTINGS, base_cells_per_group=5))
    other_seed = dataclasses.replace(
        SETTINGS, base_cells_per_group=5, split=dataclasses.replace(SETTINGS.split, seed=1)
    )
    assert list(again.base.obs_names) == list(capped.base.obs_names)
    assert list(preprocess(screen.copy(), columns, other_seed).base.obs_names) != list(capped.base.obs_names)


TAHOE_FILE = "plate{}_filt_Vevo_Tahoe100M_WServicesFrom_ParseGigalab.h5ad"


def test_the_tahoe_config_plans_every_rule_and_checks_obs_on_fourteen_simulated_plate_files(tmp_path):
    """config/tahoe.yaml as a Tahoe user runs it (docs/tahoe.md): the 14 plate files named as
    downloaded, by glob, with Tahoe's obs columns (Cellosaurus IDs in cell_line, pass_filter);
    every rule to the report planned (``snakemake -n``), then the obs check run for real."""
    import json

    import yaml
    from conftest import REPO, planned_jobs, snakemake

    from deltatune.data.simulate_plates import write_plates
    from deltatune.settings import ScreenSpec

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    from snakemake.utils import update_config

    update_config(config, yaml.safe_load((REPO / "config" / "tahoe.yaml").read_text()))  # as Snakemake lays them
    target = config["data"]["target_cell_line"]
    spec = ScreenSpec(
        n_genes=300, cell_lines=("CVCL_1693", target), n_drugs=14, doses_um=(0.5,), plate_files=14,
        cells_per_well=3, controls_per_plate=6, plates_per_drug=(1, 1), detected_genes=100,
    )  # fmt: skip
    tahoe, rng, minimal = tmp_path / "data" / "tahoe", np.random.default_rng(0), 0
    for path in write_plates(spec, tahoe):
        plate = ad.read_h5ad(path)
        plate.obs["pass_filter"] = np.where(rng.random(plate.n_obs) < 0.1, "minimal", "full")
        minimal += int((plate.obs["pass_filter"] == "minimal").sum())
        plate.write_h5ad(tahoe / TAHOE_FILE.format(path.stem.removeprefix("plate")))
        path.unlink()
    checkpoint, genes = tmp_path / config["base_model"]["checkpoint"], tmp_path / config["base_model"]["genes"]
    checkpoint.mkdir(parents=True)
    (checkpoint / "final.ckpt").touch()  # the release's layout; a dry run plans, it loads nothing
    genes.write_text("\n".join(ad.read_h5ad(next(tahoe.iterdir()), backed="r").var_names))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, "--dry-run", "--printshellcmds")
    assert done.returncode == 0, done.stderr[-3000:]
    every_rule = {"check_obs", "genes", "preprocess", "pair", "finetune", "infer", "baseline", "reference"}
    assert every_rule | {"evaluate", "ceiling", "report"} <= set(planned_jobs(done))
    command = next(line for line in done.stdout.splitlines() if "deltatune preprocess" in line)
    files = re.findall(r"data/tahoe/(\S+?\.h5ad)", command)
    assert files == sorted(TAHOE_FILE.format(p) for p in range(1, 15)), "all 14, in glob order"
    checked = snakemake(tmp_path, "--until", "check_obs")
    assert checked.returncode == 0, checked.stderr[-3000:]
    found = json.loads((tmp_path / "results" / config["run"] / "data" / "obs_check.json").read_text())
    assert found["n_files"] == 14 and found["n_cells_left_out"] == minimal > 0
    obs = pd.concat([ad.read_h5ad(path, backed="r").obs for path in sorted(tahoe.iterdir())])
    kept = obs[(obs["cell_line"] == target) & (obs["pass_filter"] == "full")]
    assert found["n_cells_target"] == len(kept) < (obs["cell_line"] == target).sum()
    assert found["n_controls_target"] == (kept["drugname_drugconc"] == config["data"]["columns"]["control"]).sum() > 0


def test_a_simulated_screen_in_plate_files_is_the_workflows_input(tmp_path, tiny_config):
    from conftest import snakemake, write_config

    config = {**tiny_config, "data": {**tiny_config["data"]}}
    config["data"]["simulate"] = {**config["data"]["simulate"], "plate_files": 3, "detected_genes": 40}
    write_config(tmp_path, config)
    done = snakemake(tmp_path, "--dry-run", "--printshellcmds", "--until", "preprocess")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--out-dir results/tiny/data/screen " in done.stdout
    command = next(line for line in done.stdout.splitlines() if "deltatune preprocess" in line)
    assert re.findall(r"data/screen/(plate\d)\.h5ad", command) == ["plate1", "plate2", "plate3"]


def test_a_base_sample_over_files_takes_each_groups_cap_from_all_of_them(screen, columns, tmp_path):
    """Groups spread over three files: each keeps its lowest keys, and together the screen's."""
    import dataclasses

    part = np.random.default_rng(0).integers(0, 3, screen.n_obs)
    paths = [tmp_path / f"part{k}.h5ad" for k in range(3)]
    for k, path in enumerate(paths):
        screen[part == k].copy().write_h5ad(path)
    settings = dataclasses.replace(SETTINGS, base_cells_per_group=5)
    _, base, _, summary = _read(paths, columns, tmp_path, settings=settings)
    by = ["cell_line", "drugname_drugconc", "plate"]
    sizes = screen.obs[screen.obs["cell_line"] != "c"].groupby(by, observed=True).size()
    kept = base.obs.groupby(by, observed=True).size().reindex(sizes.index, fill_value=0)
    assert (kept == sizes.clip(upper=5)).all() and (sizes > 5).any()
    spread = base.obs.assign(file=base.obs_names.str.rsplit("-", n=1).str[1]).groupby(by, observed=True)["file"]
    assert spread.nunique().max() > 1, "some group's sample comes from several files"


def test_an_empty_file_and_a_file_without_kept_cells_add_nothing(screen, plate_files, columns, tmp_path):
    screen[:0].copy().write_h5ad(tmp_path / "screen_empty.h5ad")
    others = ad.read_h5ad(plate_files[0])
    others.obs["cell_line"] = others.obs["cell_line"].astype(str) + "_elsewhere"
    others.write_h5ad(plate_files[0])  # a line neither target nor base: no cell kept
    settings = PreprocessSettings(target_cell_line="c", n_top_genes=40, base_cell_lines=("a", "b"))
    with_extra, *_ = _read([*plate_files, tmp_path / "screen_empty.h5ad"], columns, tmp_path, settings=settings)
    (tmp_path / "alone").mkdir()
    without, *_ = _read(plate_files[1:], columns, tmp_path / "alone", settings=settings)
    assert with_extra.n_obs == without.n_obs > 0
    assert list(with_extra.obs_names) == list(without.obs_names)
    assert (with_extra.X != without[:, with_extra.var_names].X).nnz == 0  # genes in the first file's order
