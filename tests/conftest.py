"""Shared fixtures: a tiny simulated screen and its preprocessed parts, built once per session."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import yaml

from deltatune.data.preprocess import preprocess
from deltatune.data.simulate import simulate_screen
from deltatune.model.st import BaseModel, build_st_model
from deltatune.settings import (
    Architecture,
    Columns,
    PreprocessSettings,
    ScreenSpec,
    SplitSettings,
    from_mapping,
)

TESTS = Path(__file__).parent
REPO = TESTS.parent
TINY_CONFIG = TESTS / "config" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return yaml.safe_load(TINY_CONFIG.read_text())


@pytest.fixture(scope="session")
def columns() -> Columns:
    return Columns()


@pytest.fixture(scope="session")
def screen_spec(tiny_config) -> ScreenSpec:
    return from_mapping(ScreenSpec, tiny_config["data"]["simulate"], "simulate")


@pytest.fixture(scope="session")
def _screen(screen_spec):
    return simulate_screen(screen_spec)


@pytest.fixture
def screen(_screen):
    """Raw counts of the tiny screen (a fresh copy per test)."""
    return _screen.copy()


@pytest.fixture(scope="session")
def _preprocessed(_screen, columns):
    settings = PreprocessSettings(
        target_cell_line="c", n_top_genes=40, split=SplitSettings(val_fraction=0.0, test_fraction=0.3)
    )
    return preprocess(_screen.copy(), columns, settings)


@pytest.fixture
def preprocessed(_preprocessed):
    """Preprocessed tiny screen: base lines, target line and split (copies per test)."""
    p = _preprocessed
    return type(p)(base=p.base.copy(), target=p.target.copy(), split=p.split.copy(), summary=dict(p.summary))


def snakemake_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment) with this interpreter's bin directory first, so that
    jobs find the same ``deltatune`` and ``snakemake``."""
    base = dict(os.environ if base is None else base)
    return {**base, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base['PATH']}"}


def snakemake_command(workdir: Path, *args: str | Path, config: Path | None = None) -> list[str]:
    """The real workflow in ``workdir`` with its config.yaml (or ``config``)."""
    snakefile, configfile = REPO / "Snakefile", config or workdir / "config.yaml"
    return [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
            "--configfile", str(configfile), *map(str, args)]  # fmt: skip


def snakemake(workdir: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    """The real workflow in ``workdir`` with its config.yaml (or ``config``), on two cores."""
    command = snakemake_command(workdir, "--cores", "2", *args, config=config)
    return subprocess.run(command, capture_output=True, text=True, env=snakemake_env(), timeout=900, check=False)


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's job stats table."""
    lines = result.stdout.splitlines()
    start = lines.index("Job stats:") + 3
    jobs = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def with_key(config: dict, path: str, value) -> dict:
    """A copy of ``config`` with the dotted ``path`` set to ``value``."""
    changed = copy.deepcopy(config)
    *parents, leaf = path.split(".")
    node = changed
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return changed


def dry_run_jobs(workdir: Path, config: dict) -> dict[str, int]:
    """Rule -> job count that ``config`` plans in ``workdir`` (a finished run), by dry run."""
    variant = workdir / f"variant-{uuid.uuid4().hex}.yaml"
    variant.write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        done = snakemake(workdir, "--dry-run", config=variant)
    finally:
        variant.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    jobs = planned_jobs(done) if "Job stats:" in done.stdout else {}
    jobs.pop("all", None)
    return jobs


def write_config(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_config) -> Path:
    """A workdir in which the whole workflow ran on the tiny config (shared by the workflow tests)."""
    workdir = tmp_path_factory.mktemp("tiny")
    write_config(workdir, tiny_config)
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


TINY_ARCH = Architecture(hidden_dim=16, n_layers=1, n_heads=2, cell_set_len=8)


@pytest.fixture
def new_base(preprocessed, columns):
    """A fresh, identically initialized base model per call (peft wraps a model in place)."""
    genes = list(preprocessed.target.var_names)
    vocab = sorted(set(preprocessed.base.obs[columns.perturbation].astype(str)))

    def make() -> BaseModel:
        torch.manual_seed(0)
        return BaseModel(build_st_model(TINY_ARCH, genes, vocab, columns.control), genes, vocab)

    return make


# The session's end-to-end runs of the tiny config: every test that reads one runs on one worker.
TINY_RUN_FIXTURES = {"finished_run", "killed_run"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Group tests for pytest-xdist (``-n 2 --dist loadgroup``, pyproject.toml): the tests that read
    the tiny run in one group, so that it is made once; every other module in a group of its own,
    so that its module-scoped fixtures (a workflow run of its own, in some) are made once."""
    for item in items:
        group = "tiny_run" if TINY_RUN_FIXTURES & set(item.fixturenames) else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_addoption(parser):
    parser.addoption(
        "--reliability-table",
        default=None,
        help="write the reliability suite's observations to this Markdown file (docs/reliability.md)",
    )


def pytest_configure(config):
    """The reliability table comes from one process: pytest-xdist's workers each record only their own cases."""
    if config.getoption("--reliability-table") and config.getoption("numprocesses", None):
        raise pytest.UsageError("--reliability-table needs the suite in one process: add -n 0 (make reliability)")


def pytest_sessionfinish(session, exitstatus):
    """Write docs/reliability.md from the cases the suite recorded, when asked and all passed."""
    path = session.config.getoption("--reliability-table")
    if path and exitstatus == 0:
        from reliability import write_table

        write_table(Path(path))
