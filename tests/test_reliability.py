"""Faults and bad inputs: what a user sees, and that nothing already computed is lost.

Every case is recorded (tests/reliability.py) so that `make reliability` can write
docs/reliability.md from what the suite observed. Marked ``reliability``: `pytest -m reliability`
runs the suite alone; `make test` runs it with everything else.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import REPO, snakemake, snakemake_command, snakemake_env, write_config
from reliability import record

from deltatune.files import atomic_path, write_text

pytestmark = pytest.mark.reliability

EARLIER = b"an earlier result\n"  # stands in for an output a previous run left


def _deltatune(*args: str, cwd: Path | None = None, umask: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deltatune.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        check=False,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def _message(done: subprocess.CompletedProcess) -> str:
    """The line the user reads: the last line the command printed."""
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _failed_cleanly(done: subprocess.CompletedProcess, command: str, expected: str) -> str:
    """A non-zero exit, no traceback, and one message naming the problem; returns the message."""
    message = _message(done)
    assert done.returncode != 0, f"{command} accepted it: {message}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert message.startswith(f"deltatune {command}: error: ") and expected in message, message
    return message.removeprefix(f"deltatune {command}: error: ")


# --------------------------------------------------------------------------------------------
# Bad inputs to preprocessing: the screen file and the settings given on the command line


COLUMNS = {
    "batch": "plate",
    "cell_type": "cell_line",
    "control": "[('DMSO_TF', 0.0, 'uM')]",
    "dose": "concentration",
    "drug": "drug",
    "perturbation": "drugname_drugconc",
}
SETTINGS = {"n_top_genes": 40, "split": {"seed": 0, "test_fraction": 0.3, "val_fraction": 0.0}, "target_cell_line": "c"}


def _with_x(adata: ad.AnnData, change) -> ad.AnnData:
    X = adata.X.toarray() if sp.issparse(adata.X) else np.array(adata.X)
    change(X)
    adata.X = sp.csr_matrix(X)
    return adata


def _truncated(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)


BAD_SCREENS = {
    "NaN in X": (lambda a: _with_x(a, lambda X: X.__setitem__((0, 0), np.nan)), {}, {}, "NaN or infinite"),
    "Inf in X": (lambda a: _with_x(a, lambda X: X.__setitem__((3, 1), np.inf)), {}, {}, "NaN or infinite"),
    "negative values": (lambda a: _with_x(a, lambda X: X.__setitem__((0, 0), -2.0)), {}, {}, "negative values"),
    "duplicated cell names": (
        lambda a: a.obs_names.values.__setitem__(1, a.obs_names[0]) or a,
        {},
        {},
        "cell names are not unique",
    ),
    "duplicated gene names": (
        lambda a: a.var_names.values.__setitem__(1, a.var_names[0]) or a,
        {},
        {},
        "gene names are not unique",
    ),
    "missing batch column": (None, {"batch": "plate_id"}, {}, "column 'plate_id' is not in obs"),
    "misspelled perturbation column": (
        None,
        {"perturbation": "drugname_drugconcc"},
        {},
        "column 'drugname_drugconcc' is not in obs",
    ),
    "absent control label": (None, {"control": "DMSO"}, {}, "control label 'DMSO' does not occur"),
    "no cells for the chosen line": (None, {}, {"target_cell_line": "HeLa"}, "target cell line 'HeLa' not found"),
    "setting of the wrong type (CLI)": (None, {}, {"n_top_genes": "many"}, "preprocess.n_top_genes"),
    "setting out of range (CLI)": (None, {}, {"n_top_genes": -5}, "n_top_genes must be at least 2"),
    "truncated .h5ad": ("truncate", {}, {}, "is not a readable .h5ad file"),
}


@pytest.fixture(scope="module")
def screen_file(_screen, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("screen") / "screen.h5ad"
    _screen.write_h5ad(path)
    return path


def _preprocess_args(screen: Path, out: Path, columns: dict, settings: dict) -> list[str]:
    """``deltatune preprocess`` of ``screen`` into ``out``, as its arguments."""
    outputs = {
        "base": "base_lines.h5ad",
        "target": "target_line.h5ad",
        "split": "split.tsv",
        "summary": "preprocess.json",
    }
    given = ["--input", str(screen), "--columns", json.dumps(columns), "--settings", json.dumps(settings)]
    return [
        "preprocess",
        *given,
        *(arg for name, file in outputs.items() for arg in (f"--out-{name}", str(out / file))),
    ]


def _preprocess(screen: Path, out: Path, columns: dict, settings: dict) -> subprocess.CompletedProcess:
    return _deltatune(*_preprocess_args(screen, out, columns, settings))


def _earlier_outputs(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / n for n in ("base_lines.h5ad", "target_line.h5ad", "split.tsv", "preprocess.json")]
    for path in paths:
        path.write_bytes(EARLIER)
    return paths


@pytest.mark.parametrize("case", BAD_SCREENS)
def test_a_bad_screen_or_setting_stops_preprocessing_with_one_message(case, screen_file, tmp_path):
    change, columns, settings, expected = BAD_SCREENS[case]
    screen = screen_file
    if change == "truncate":
        screen = tmp_path / "screen.h5ad"
        screen.write_bytes(screen_file.read_bytes())
        _truncated(screen)
    elif change is not None:
        screen = tmp_path / "screen.h5ad"
        change(ad.read_h5ad(screen_file)).write_h5ad(screen)
    earlier = _earlier_outputs(tmp_path / "out")
    done = _preprocess(screen, tmp_path / "out", {**COLUMNS, **columns}, {**SETTINGS, **settings})
    message = _failed_cleanly(done, "preprocess", expected)
    assert all(p.read_bytes() == EARLIER for p in earlier), "an earlier output was touched"
    record("Bad inputs", case, "preprocess", message, f"exit {done.returncode}; earlier outputs intact")


def test_unused_categorical_levels_are_ignored(screen_file, tmp_path):
    adata = ad.read_h5ad(screen_file)
    for column in ("plate", "drugname_drugconc", "cell_line"):
        adata.obs[column] = adata.obs[column].astype("category").cat.add_categories([f"unused_{column}"])
    adata.write_h5ad(tmp_path / "screen.h5ad")
    clean = _preprocess(screen_file, tmp_path / "clean", COLUMNS, SETTINGS)
    done = _preprocess(tmp_path / "screen.h5ad", tmp_path / "out", COLUMNS, SETTINGS)
    assert clean.returncode == 0 and done.returncode == 0, done.stderr[-2000:]
    splits = [pd.read_csv(tmp_path / name / "split.tsv", sep="\t") for name in ("out", "clean")]
    same = splits[0].equals(splits[1])
    assert same, "unused levels changed the split"
    record(
        "Bad inputs",
        "categorical columns with unused levels",
        "preprocess",
        "(none)",
        "runs; the unused levels are dropped, the split is the one without them",
    )


# --------------------------------------------------------------------------------------------
# Bad inputs through the workflow: a config value of the wrong type or out of range


@pytest.mark.parametrize(
    ("case", "mutate", "expected"),
    [
        (
            "config value of the wrong type (workflow)",
            lambda c: c["preprocess"].update(n_top_genes="many"),
            "config error at preprocess.n_top_genes: 'many' is not of type 'integer'",
        ),
        (
            "data.columns with a key left out (workflow)",
            lambda c: c["data"]["columns"].pop("dose"),
            "config error at data.columns: 'dose' is a required property",
        ),
        (
            "misspelled config key (workflow)",
            lambda c: c["stages"]["lora_random"].update(lrr=0.1),
            "config error at stages.lora_random: Unevaluated properties are not allowed ('lrr' was unexpected)",
        ),
        (
            "config value out of range (workflow)",
            lambda c: c["preprocess"]["split"].update(test_fraction=1.5),
            "config error at preprocess.split.test_fraction: 1.5 is greater than or equal to the maximum of 1",
        ),
        (
            "misspelled search parameter (workflow)",
            lambda c: c.update(search={"start": "lora_random", "parameters": {"lora.rnak": {"values": [2, 4]}}}),
            "search.parameters.lora.rnak: 2 does not fit stage 'lora_random'",
        ),
        (
            "list element of the wrong type (workflow)",
            lambda c: c["data"]["simulate"].update(doses_um=[0.1, "a"]),
            "config error at data.simulate.doses_um.1: 'a' is not of type 'number'",
        ),
    ],
)
def test_a_bad_config_value_stops_the_workflow_before_any_job(case, mutate, expected, tmp_path, tiny_config):
    config = copy.deepcopy(tiny_config)
    mutate(config)
    write_config(tmp_path, config)
    done = snakemake(tmp_path, "-n")
    printed = done.stdout + done.stderr
    assert done.returncode != 0 and expected in printed, printed[-2000:]
    assert "Traceback" not in printed and not (tmp_path / "results").exists()
    assert "Failed validating" not in printed and len(printed.splitlines()) < 12, "no schema dump"
    line = next(line for line in printed.splitlines() if expected in line)
    step = "snakemake (search settings)" if "search" in case else "snakemake (config validation)"
    record("Bad inputs", case, step, line.strip(), "exit 1 before any job; nothing written")


# --------------------------------------------------------------------------------------------
# Bad model inputs: checkpoints and adapters that do not fit


def _infer_args(run: Path, base: Path, adapter: Path | None, out: Path) -> list[str]:
    results = run / "results" / "tiny"
    return [
        "infer",
        "--data",
        str(results / "data" / "target_line.h5ad"),
        "--split",
        str(results / "data" / "split.tsv"),
        "--base",
        str(base),
        "--pairing",
        str(results / "pairing" / "target_line_batch.npz"),
        "--columns",
        json.dumps(COLUMNS),
        "--out",
        str(out),
        *(["--adapter", str(adapter)] if adapter else []),
    ]


def _other_base(finished_run: Path, tmp_path: Path) -> Path:
    """A base model like the run's but of another size, saved as a run directory."""
    from deltatune.model.checkpoint import load_base_model, save_base_model
    from deltatune.model.st import BaseModel, build_st_model
    from deltatune.settings import Architecture, CheckpointSettings

    base = load_base_model(finished_run / "results" / "tiny" / "models" / "base", CheckpointSettings())
    torch.manual_seed(0)
    other = build_st_model(
        Architecture(hidden_dim=8, n_layers=1, n_heads=2, cell_set_len=8),
        base.genes,
        base.perturbations,
        COLUMNS["control"],
    )
    save_base_model(BaseModel(other, base.genes, base.perturbations), tmp_path / "other_base", {}, pd.DataFrame())
    return tmp_path / "other_base"


def _model_cases(finished_run: Path, tmp_path: Path) -> dict:
    results = finished_run / "results" / "tiny"
    base, adapter = results / "models" / "base", results / "models" / "lora_random" / "rep0"
    truncated = shutil.copytree(base, tmp_path / "truncated_base")
    _truncated(truncated / "checkpoints" / "final.ckpt")
    corrupt = shutil.copytree(base, tmp_path / "corrupt_base")
    (corrupt / "checkpoints" / "final.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    broken_adapter = shutil.copytree(adapter, tmp_path / "broken_adapter")
    _truncated(broken_adapter / "adapter" / "adapter_model.safetensors")
    return {
        "truncated checkpoint": (truncated, None, "final.ckpt"),
        "corrupt checkpoint": (corrupt, None, "final.ckpt"),
        "adapter of another base model": (_other_base(finished_run, tmp_path), adapter, "does not fit the base model"),
        "truncated adapter": (base, broken_adapter, "cannot read the stage"),
    }


MODEL_CASES = ("truncated checkpoint", "corrupt checkpoint", "adapter of another base model", "truncated adapter")


@pytest.mark.parametrize("case", MODEL_CASES)
def test_a_checkpoint_or_adapter_that_does_not_fit_stops_inference(case, finished_run, tmp_path):
    base, adapter, expected = _model_cases(finished_run, tmp_path)[case]
    out = tmp_path / "prediction.h5ad"
    out.write_bytes(EARLIER)
    done = _deltatune(*_infer_args(finished_run, base, adapter, out))
    message = _failed_cleanly(done, "infer", expected)
    assert out.read_bytes() == EARLIER
    record("Bad inputs", case, "infer", message, f"exit {done.returncode}; earlier outputs intact")


def _evaluate_args(results: Path, data: Path, predicted: Path, columns: dict, out: Path) -> list[str]:
    return [
        "evaluate",
        *("--data", str(data), "--split", str(results / "data" / "split.tsv")),
        *("--reference", str(results / "data" / "reference.npz"), "--predicted", str(predicted)),
        *("--columns", json.dumps(columns), "--out", str(out / "m.tsv"), "--out-matching", str(out / "m.json")),
    ]


EVALUATE_CASES = {
    "--data and --predicted swapped": ({}, True, "is a prediction (written by deltatune infer or baseline)"),
    "a data.columns name absent from obs": ({"batch": "plate_id"}, False, "has no obs column 'plate_id'"),
    "--columns with only some keys": ({"batch": None}, False, "--columns lacks ['control', 'cell_type'"),
}


@pytest.mark.parametrize("case", list(EVALUATE_CASES))
def test_bad_evaluation_inputs_stop_before_scoring(case, finished_run, tmp_path):
    changed, swapped, expected = EVALUATE_CASES[case]
    results = finished_run / "results" / "tiny"
    data, predicted = results / "data" / "target_line.h5ad", results / "predictions" / "base" / "rep0.h5ad"
    columns = {**COLUMNS, **changed}
    if case.startswith("--columns"):
        columns = {"perturbation": COLUMNS["perturbation"], **changed}
    args = _evaluate_args(results, *((predicted, data) if swapped else (data, predicted)), columns, tmp_path)
    done = _deltatune(*args)
    message = _failed_cleanly(done, "evaluate", expected)
    assert len(message.splitlines()) == 1 and not list(tmp_path.iterdir()), "one line; nothing written"
    record("Bad inputs", case, "evaluate", message, f"exit {done.returncode}; nothing written")


def test_a_gene_set_that_does_not_match_the_checkpoint_stops_training(finished_run, tmp_path):
    results = finished_run / "results" / "tiny"
    data = ad.read_h5ad(results / "data" / "target_line.h5ad")
    data.var_names = [f"other_{g}" for g in data.var_names]
    data.write_h5ad(tmp_path / "target_line.h5ad")
    args = [
        "finetune",
        "--data",
        str(tmp_path / "target_line.h5ad"),
        "--split",
        str(results / "data" / "split.tsv"),
        "--base",
        str(results / "models" / "base"),
        "--pairing",
        str(results / "pairing" / "target_line_random.npz"),
        "--columns",
        json.dumps(COLUMNS),
        "--stage",
        "lora_random",
        "--settings",
        json.dumps({"pairing": "random"}),
        "--out",
        str(tmp_path / "stage"),
        "--work-dir",
        str(tmp_path / "work"),
    ]
    message = _failed_cleanly(_deltatune(*args), "finetune", "rerun preprocessing with this base model")
    assert not (tmp_path / "stage").exists()
    record(
        "Bad inputs",
        "a gene set that does not match the checkpoint",
        "finetune",
        message,
        "exit 2; no stage folder written",
    )


# --------------------------------------------------------------------------------------------
# Odd but valid data: the run goes on and says what it did


def test_a_perturbation_with_one_cell_and_a_plate_without_controls_train_and_predict(
    preprocessed, columns, new_base, tmp_path
):
    from deltatune.data.splits import cells_of_split
    from deltatune.pairing.index import build_pairing_index
    from deltatune.predict.infer import predict
    from deltatune.settings import StageSettings
    from deltatune.train.finetune import finetune_stage
    from deltatune.train.loop import Trainer

    target, split = preprocessed.target, preprocessed.split
    obs = target.obs
    train = cells_of_split(obs, columns, split, "train")
    label = obs.loc[train, columns.perturbation].astype(str).iloc[0]
    single = (obs[columns.perturbation].astype(str) == label).to_numpy()
    keep = ~single | (np.cumsum(single) == 1)  # that perturbation keeps one cell
    plate = obs.loc[cells_of_split(obs, columns, split, "test"), columns.batch].iloc[0]
    keep &= ~((obs[columns.batch] == plate) & (obs[columns.perturbation] == columns.control)).to_numpy()
    target = target[keep].copy()
    settings = StageSettings(epochs=1, batch_size=16, pairing="batch")
    index = build_pairing_index(target.obs, columns, "batch")
    result = finetune_stage(new_base(), target, split, columns, settings, Trainer(tmp_path, "fp"), index)
    plates = build_pairing_index(target.obs, columns, "batch").with_means(target.X)
    prediction = predict(result.model, new_base(), target, split, columns, plates)
    info = prediction.uns["deltatune_inference"]
    assert np.isfinite(result.history["total"]).all() and np.isfinite(prediction.X).all()
    assert info["fallback_cells"] > 0 and result.pairing["fallback_cells"] > 0
    record(
        "Bad inputs",
        "a perturbation with one cell",
        "finetune",
        "(none)",
        "trains: its one cell forms a set of its own; loss finite",
    )
    record(
        "Bad inputs",
        "a plate without controls",
        "finetune, infer",
        f"counted: {result.pairing['fallback_cells']} training and {info['fallback_cells']} test cells fell back",
        "trains and predicts; cells of that plate use a random control / the global control mean, and the "
        "report's pairing table counts them",
    )


# --------------------------------------------------------------------------------------------
# Faults: killed jobs, a second run in the same folder, a read-only or full output directory


# Each kill: what it waits for under results/tiny (the job's log: the job has started; a
# checkpoint: training is under way; a temporary sibling of the output: the file is being
# written), the output that must not exist after it, and what the case is called.
KILLS = (
    ("preprocess", "logs/preprocess.log", "data/target_line.h5ad", "SIGKILL during preprocess"),
    ("pretrain", "logs/pretrain.log", "models/base", "SIGKILL during pretrain"),
    ("finetune", "logs/finetune/lora_random/rep0.log", "models/lora_random/rep0", "SIGKILL during finetune"),
    (
        "finetune",
        "work/lora_random/rep0/last.ckpt",
        "models/lora_random/rep0",
        "SIGKILL during finetune, after its first checkpoint",
    ),
    ("infer", "logs/infer/lora_random/rep0.log", "predictions/lora_random/rep0.h5ad", "SIGKILL during infer"),
    (
        "infer",
        "predictions/lora_random/.rep0.h5ad.*.tmp.h5ad",
        "predictions/lora_random/rep0.h5ad",
        "SIGKILL during infer, while it writes the prediction",
    ),
    ("evaluate", "logs/evaluate/lora_random/rep0.log", "metrics/lora_random/rep0.tsv", "SIGKILL during evaluate"),
    ("report", "logs/report.log", "report/summary.csv", "SIGKILL during report"),
)
ATTEMPTS = 5  # a job can finish inside the polling interval; then its output is removed and it runs again


def _snakemake_process(workdir: Path, *args: str) -> subprocess.Popen:
    """The workflow started in its own process group (to be killed whole)."""
    command = snakemake_command(workdir, "--cores", "2", *args)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=snakemake_env(),
                            start_new_session=True)  # fmt: skip


def _exists(path: Path) -> bool:
    """Whether ``path`` exists (its last part may be a glob pattern)."""
    return path.parent.is_dir() and any(path.parent.glob(path.name))


def _wait_for(path: Path, run: subprocess.Popen, timeout: float = 600) -> bool:
    """Wait until ``path`` exists; False if the run ends first."""
    deadline = time.monotonic() + timeout
    while not _exists(path):
        if run.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.001)
    return True


def _output_names(results: Path) -> set[Path]:
    """Every file or folder under results/ that is not a temporary sibling of an output."""
    return {p for p in results.rglob("*") if not p.name.startswith(".")}


def _killed_config(tiny_config: dict) -> dict:
    """The tiny config with every rule once (one replicate, the floor, one ceiling split) and a stage
    checkpointed often enough to be killed between its checkpoints. ``checkpoint_every`` is
    run-only and the first replicate's seeds do not depend on the number of replicates, so every
    score file it writes is one the tiny config's own run writes too."""
    config = copy.deepcopy(tiny_config)
    config |= {"replicates": 1, "baselines": ["baseline_plate_control"]}
    config["evaluation"] = {**config["evaluation"], "ceiling_splits": 1}
    config["stages"]["lora_random"]["checkpoint_every"] = 5
    return config


def _kill_inside(workdir: Path, results: Path, wait: str, output: str) -> None:
    """Start the workflow, SIGKILL it once ``wait`` exists, and check that ``output`` does not;
    when the job finished first (inside the polling interval), remove its output and try again."""
    watched = results / wait
    for _ in range(ATTEMPTS):
        for earlier in watched.parent.glob(watched.name) if watched.parent.is_dir() else []:
            earlier.unlink()  # what an earlier attempt left must not trigger this one's kill
        run = _snakemake_process(workdir, "--rerun-incomplete")
        started = _wait_for(watched, run)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        assert started, f"the run ended before {wait} appeared"
        assert snakemake(workdir, "--unlock").returncode == 0
        if not (results / output).exists():
            return
        (shutil.rmtree if (results / output).is_dir() else Path.unlink)(results / output)
    pytest.fail(f"{output} was finished before every one of {ATTEMPTS} kills")


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, tiny_config) -> Path:
    """The tiny config from scratch, SIGKILLed once at each point of :data:`KILLS` and resumed each time."""
    workdir = tmp_path_factory.mktemp("killed")
    write_config(workdir, _killed_config(tiny_config))
    results = workdir / "results" / "tiny"
    for rule, wait, output, case in KILLS:
        _kill_inside(workdir, results, wait, output)
        outcome = "no file under the output's name; `snakemake --unlock`, then `--rerun-incomplete`, completed it"
        if wait.endswith("last.ckpt"):
            outcome = "no stage folder; the rerun resumed from the checkpoint (its log: resuming from last.ckpt)"
        elif "tmp" in wait:
            outcome = (
                "only a hidden temporary file, removed by the rerun; no file under the output's name; "
                "the rerun completed it"
            )
        record("Faults", case, rule, "(killed)", outcome)
    done = snakemake(workdir, "--rerun-incomplete")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


def test_a_stage_killed_after_a_checkpoint_resumes_from_it_and_no_temporary_file_is_left(killed_run):
    results = killed_run / "results" / "tiny"
    log = (results / "logs" / "finetune" / "lora_random" / "rep0.log").read_text()
    assert re.search(r"resuming from \S+last\.ckpt at step [1-9]", log), log[-2000:]
    assert not list(results.rglob(".*.tmp*")), "every temporary file of a killed write was removed"


# What the killed run writes besides the report, each a table the tiny run writes too.
KILLED_RUN_TABLES = {
    "data/split.tsv",
    "models/base/history.tsv",
    "models/lora_random/rep0/history.tsv",
    "metrics/base/rep0.tsv",
    "metrics/lora_random/rep0.tsv",
    "metrics/baseline_plate_control/rep0.tsv",
    "metrics/ceiling/rep0.tsv",
}
COMPARISON_KEYS = ["stage", "replicate", "perturbation", "metric"]


def test_killed_jobs_leave_nothing_half_written_and_rerun_to_the_same_results(killed_run, finished_run):
    """The run killed at every point of :data:`KILLS` ends with the same split, training histories
    and scores as the undisturbed run of the tiny config (the session's tiny run, of which the
    killed config is a subset), byte for byte, and its report holds the same values for the rows
    both reports have."""
    killed, finished = killed_run / "results" / "tiny", finished_run / "results" / "tiny"
    tables = {
        str(p.relative_to(killed))
        for p in killed.rglob("*.tsv")
        if p.relative_to(killed).parts[0] not in ("benchmarks", "report")
    }
    assert tables == KILLED_RUN_TABLES
    for name in sorted(tables):
        assert (killed / name).read_bytes() == (finished / name).read_bytes(), name
    reported = pd.read_csv(killed / "report" / "comparison.csv").sort_values(COMPARISON_KEYS, ignore_index=True)
    undisturbed = pd.read_csv(finished / "report" / "comparison.csv").merge(reported[COMPARISON_KEYS])
    undisturbed = undisturbed.sort_values(COMPARISON_KEYS, ignore_index=True)
    pd.testing.assert_frame_equal(reported, undisturbed, check_exact=True)
    record(
        "Reproducibility",
        f"a run of the tiny config (every rule once) killed {len(KILLS)} times, against its undisturbed run",
        "all",
        "(none)",
        f"the split, training histories and scores ({len(tables)} tables) byte-identical, and the report's "
        f"{len(reported)} values the two reports share equal (same machine, same threads)",
    )


def test_a_second_run_in_the_same_folder_gets_the_lock_error_and_changes_nothing(killed_run):
    results = killed_run / "results" / "tiny"
    assert snakemake(killed_run, "--forcerun", "report", "-n").returncode == 0
    first = _snakemake_process(killed_run, "--forcerun", "report")
    try:
        assert _wait_for(killed_run / ".snakemake" / "locks" / "0.output.lock", first, timeout=120)
        # the report job has started (its outputs marked incomplete and removed): before that, a
        # second run would find everything present and have nothing to lock for
        assert _wait_for(killed_run / ".snakemake" / "incomplete" / "*", first, timeout=120)
        deadline = time.monotonic() + 120  # and its outputs removed (a moment later, on a loaded machine)
        while (results / "report" / "summary.csv").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the report's outputs were not removed"
            time.sleep(0.001)
        before = {p: p.stat().st_mtime_ns for p in _output_names(results) if p.is_file()}
        second = snakemake(killed_run)
        assert second.returncode != 0 and "LockException" in second.stderr, second.stderr[-2000:]
        assert "rule " not in second.stdout, "the second run started a job"
    finally:
        first.wait(timeout=600)
    assert first.returncode == 0
    touched = {p for p, mtime in before.items() if p.exists() and p.stat().st_mtime_ns != mtime}
    assert touched <= set((results / "report").rglob("*")) | set((results / "benchmarks").rglob("*")) | set(
        (results / "logs").rglob("*")
    ), f"files outside the first run's report job changed: {sorted(touched)[:3]}"
    lines = [line.strip() for line in second.stderr.splitlines() if line.strip()]
    at = next(i for i, line in enumerate(lines) if "LockException" in line)
    record(
        "Faults",
        "a second snakemake in the same folder while one runs",
        "snakemake",
        " ".join(lines[at : at + 2]),
        "exit 1; it starts no job, the first run completes",
    )


def _in_a_small_file_system(command: list[str], directory: Path, size: str, read_only: bool, earlier: str) -> str:
    """Run ``command`` with ``directory`` on a fresh tmpfs of ``size`` (remounted read-only when
    asked) holding ``earlier``, in a user namespace; return the output and the earlier file's
    content after the command, which the namespace's shell prints."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "earlier.txt"
    script = (
        " && ".join(
            [
                f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(directory))}",
                f"printf %s {shlex.quote(earlier)} > {shlex.quote(str(marker))}",
                *([f"mount -o remount,ro {shlex.quote(str(directory))}"] if read_only else []),
            ]
        )
        + f'; {shlex.join(command)}; echo "exit=$?"; echo "earlier=$(cat {shlex.quote(str(marker))})"'
    )
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    ("case", "size", "read_only"),
    [("read-only output directory", "1m", True), ("full output directory (64 kB file system)", "64k", False)],
)
def test_an_unwritable_output_directory_gives_one_message_and_keeps_earlier_outputs(
    case, size, read_only, screen_file, tmp_path
):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "deltatune.cli", *_preprocess_args(screen_file, out, COLUMNS, SETTINGS)]
    output = _in_a_small_file_system(command, out, size, read_only, "kept")
    lines = [line for line in output.splitlines() if line.strip()]
    assert "exit=2" in lines and "earlier=kept" in lines, output[-3000:]
    message = lines[lines.index("exit=2") - 1]  # the command's last line
    assert message.startswith("deltatune preprocess: error: cannot write "), output[-3000:]
    assert ("Read-only file system" if read_only else "No space left on device") in message
    assert "/deltatune/" not in output, "a traceback through deltatune's code"
    outcome = "exit 2; no partial output; the earlier file in the directory intact"
    if "Traceback" in output:  # h5py reports each of its objects that fails to close on the full disk
        outcome += "; before the message h5py prints tracebacks of its own objects failing to close"
    record("Faults", case, "preprocess", message.removeprefix("deltatune preprocess: error: "), outcome)


# --------------------------------------------------------------------------------------------
# Shareable outputs: a normal write's permissions under the user's umask


def test_the_next_write_of_an_output_removes_the_temporaries_a_killed_one_left(tmp_path):
    from deltatune.files import HOST

    gone = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale = [
        tmp_path / f".summary.csv.{HOST}-{gone}.k1ll3d_x.tmp.csv",
        tmp_path / f".figures.{HOST}-{gone}.k1ll3d_x.tmp",
    ]
    stale[0].write_text("half")
    stale[1].mkdir()
    kept = [
        tmp_path / f".summary.csv.{HOST}-{os.getpid()}.w0rk1ng_.tmp.csv",  # its writer is alive
        tmp_path / f".summary.csv.otherhost-{gone}.w0rk1ng_.tmp.csv",  # another host's: cannot tell
        tmp_path / f".other.csv.{HOST}-{gone}.k1ll3d_x.tmp.csv",  # another output's
        tmp_path / ".figures.old.tmp",
    ]  # not a temporary of ours
    for path in kept:
        path.write_text("keep")
    write_text(tmp_path / "summary.csv", "whole")
    with atomic_path(tmp_path / "figures", directory=True) as folder:
        (folder / "a.png").write_bytes(b"png")
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert (tmp_path / "summary.csv").read_text() == "whole" and (tmp_path / "figures" / "a.png").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_follow_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "file.txt", "x")
        with atomic_path(tmp_path / "folder", directory=True) as folder:
            (folder / "inside.txt").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "file.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "folder" / "inside.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    record(
        "Shareable outputs",
        f"outputs under umask {umask:03o}",
        "every step (atomic writes)",
        "(none)",
        f"files {0o666 & ~umask:o}, folders {0o777 & ~umask:o}, as a plain write gives",
    )


def test_a_command_run_under_umask_002_writes_group_readable_outputs(screen_file, tmp_path):
    done = _deltatune(
        "preprocess",
        "--input",
        str(screen_file),
        "--columns",
        json.dumps(COLUMNS),
        "--settings",
        json.dumps(SETTINGS),
        "--out-base",
        str(tmp_path / "b.h5ad"),
        "--out-target",
        str(tmp_path / "t.h5ad"),
        "--out-split",
        str(tmp_path / "s.tsv"),
        "--out-summary",
        str(tmp_path / "p.json"),
        umask=0o002,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert set(modes.values()) == {0o664}, modes


def test_the_workflows_results_are_readable_by_the_group(finished_run):
    """The tiny run (under the suite's umask, 022 in CI) left nothing private to its owner."""
    private = [p for p in (finished_run / "results" / "tiny").rglob("*") if not p.stat().st_mode & 0o040]
    assert not private, f"{len(private)} result paths are not group-readable, e.g. {private[:3]}"


# --------------------------------------------------------------------------------------------
# A user's config that stands alone


def _dry_run_from_the_repository(config: Path, *args: str) -> str:
    """The shell commands of a dry run started in the repository, as a user starts it."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--printshellcmds",
            "--cores",
            "1",
            "--configfile",
            str(config),
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_users_config_can_replace_the_demo_config(tmp_path, tiny_config):
    """Started in the repository, a config is laid over config/config.yaml (the demo's stages are
    merged in); with --replace-workflow-config it stands alone and runs exactly its stages."""
    config = copy.deepcopy(tiny_config)
    config["run"] = "standalone_config_test"
    config["stages"] = {"only": {**config["stages"]["lora_random"], "pairing": "batch"}}
    write_config(tmp_path, config)
    merged = _dry_run_from_the_repository(tmp_path / "config.yaml")
    alone = _dry_run_from_the_repository(tmp_path / "config.yaml", "--replace-workflow-config")
    assert "--stage only" in merged and "--stage lora_random" in merged, "laid over the demo's config"
    assert "--stage only" in alone and "--stage lora_random" not in alone
    record(
        "Configuration",
        "a user's config with fewer stages than the demo",
        "snakemake",
        "(none)",
        "--replace-workflow-config runs exactly the user's stages; without it the demo's are merged in",
    )
