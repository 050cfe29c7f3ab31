"""profiles/slurm on a real single-node SLURM: the tiny config with a one-trial search runs through
it, and sacct shows that every job, the search's trial and choose included, was submitted with the
profile's CPUs, the memory and time its rule asked for from its inputs' size, the user's partition
and account, and a GPU only for the GPU rules. The cluster (tests/slurm/cluster.py) is started and
stopped by the fixture.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pandas as pd
import pytest
import yaml
from conftest import REPO, snakemake_command, snakemake_env, write_config
from slurm.cluster import Cluster, running_cluster

from deltatune.resources import mem_mb, runtime

pytestmark = pytest.mark.workflow

PROFILE = REPO / "profiles" / "slurm"
GPU_RULES = {"pretrain", "finetune", "trial", "infer"}
RUN_TIMEOUT_S = 900  # about 300 s without the search, 490 s with it, on 2 busy cores
# The compute setting behind the threads of each rule that has some (cpus_per_*: threads in the profile).
THREADS_SETTING = {
    "pretrain": "train_threads",
    "finetune": "train_threads",
    "trial": "train_threads",
    "infer": "train_threads",
    "evaluate": "eval_threads",
    "ceiling": "eval_threads",
}
# sacct columns read back for every job allocation.
SACCT_FIELDS = ["JobID", "Comment", "State", "Partition", "Account", "ReqMem", "Timelimit", "ReqCPUS", "ReqTRES"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("slurm")) as started:
        yield started


def profile_resources() -> dict[str, dict]:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"]


def sacct_jobs(cluster: Cluster) -> pd.DataFrame:
    """One row per job allocation of the cluster (its database holds only this test's jobs)."""
    text = cluster.client(
        "sacct",
        "--allusers",
        "--allocations",
        "--parsable2",
        "--noheader",
        "--starttime=2000-01-01",
        f"--format={','.join(SACCT_FIELDS)}",
    )
    jobs = pd.DataFrame([line.split("|") for line in text.splitlines()], columns=SACCT_FIELDS)
    jobs["rule"] = jobs["Comment"].str.removeprefix("rule_").str.split("_wildcards_").str[0]
    return jobs


def requested_cpus(rule: str, wanted: dict, config: dict) -> int:
    """The CPUs a job of ``rule`` should hold: the profile's number, or the rule's threads."""
    cpus = wanted.get("cpus_per_gpu", wanted.get("cpus_per_task"))
    return config["compute"][THREADS_SETTING[rule]] if cpus == "threads" else cpus


def job_resources(log: str) -> dict[tuple[str, str], dict[str, int]]:
    """mem_mb and runtime of every job Snakemake printed, by (rule, wildcard values joined by _)."""
    jobs, rule, wildcards = {}, None, ""
    for line in log.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            rule, wildcards = match.group(1), ""
        elif rule and line.strip().startswith("wildcards:"):
            wildcards = "_".join(item.split("=", 1)[1] for item in line.split(":", 1)[1].strip().split(", "))
        elif rule and line.strip().startswith("resources:"):
            values = dict(item.split("=", 1) for item in line.split(":", 1)[1].strip().split(", "))
            if {"mem_mb", "runtime"} <= set(values):  # the local target rule asks for neither
                jobs[rule, wildcards] = {"mem_mb": int(values["mem_mb"]), "runtime": int(values["runtime"])}
            rule = None
    return jobs


def timelimit(minutes: int) -> str:
    """sacct's Timelimit for a runtime in minutes (HH:MM:SS below a day)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def test_profile_sets_resources_for_exactly_the_workflow_rules(tmp_path, tiny_config):
    """Every rule, those of a search included, has an entry in the profile."""
    write_config(tmp_path, {**tiny_config, "search": {"start": "lora_random", "trials": 1}})
    listed = subprocess.run(
        snakemake_command(tmp_path, "--list-rules"),
        capture_output=True,
        text=True,
        env=snakemake_env(),
        check=True,
    )
    local = {"all", "effective_config"}  # localrule: they run on the submitting host, never as jobs
    rules = set(listed.stdout.split()) - local
    assert rules == set(profile_resources())


def test_tiny_run_through_the_slurm_profile(cluster, tmp_path, tiny_config):
    # Every rule once or a few times (one replicate, one ceiling split, the baseline that reads the
    # other lines, a search of one trial, which needs validation perturbations, and its winner
    # trained as stage `tuned`), and CPUs that differ by rule.
    config = {
        **tiny_config,
        "replicates": 1,
        "baselines": ["baseline_other_lines"],
        "preprocess": {
            **tiny_config["preprocess"],
            "split": {**tiny_config["preprocess"]["split"], "val_fraction": 0.3},
        },
        "search": {"start": "lora_random", "trials": 1, "parameters": {"lora.rank": {"values": [2, 4]}}},
        "evaluation": {**tiny_config["evaluation"], "ceiling_splits": 1},
        "compute": {**tiny_config["compute"], "eval_threads": 2},
    }
    workdir = tmp_path / "run"
    write_config(workdir, config)
    user_profile = tmp_path / "mycluster"
    user_profile.mkdir()
    (user_profile / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "default-resources": {"slurm_partition": cluster.partition, "slurm_account": cluster.account},
                "slurm-init-seconds-before-status-checks": 2,  # the plugin's 40 s default is for busy clusters
                "seconds-between-status-checks": 2,  # and Snakemake's 10 s
            }
        )
    )

    result = subprocess.run(
        snakemake_command(workdir, "--profile", PROFILE, "--profile", user_profile),
        capture_output=True,
        text=True,
        env=snakemake_env(cluster.env),
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    results = workdir / "results" / "tiny"
    summary = pd.read_csv(results / "report" / "summary.csv")
    assert {"base", "lora_random", "tuned", "baseline_other_lines", "ceiling"} <= set(summary["stage"])
    assert summary["pearson_delta"].notna().all()
    for stage in ("lora_random", "tuned"):
        assert (results / "models" / stage / "rep0" / "adapter" / "adapter_model.safetensors").exists()
    assert (results / "search" / "trials" / "trial0.json").exists() and (results / "search" / "chosen.json").exists()
    (invocation,) = json.loads((results / "report" / "provenance.json").read_text())["invocations"]
    assert invocation["executor"] == "slurm" and invocation["profiles"] == [str(PROFILE), str(user_profile)]

    jobs = sacct_jobs(cluster)
    printed = job_resources(result.stdout + result.stderr)
    assert (jobs["State"] == "COMPLETED").all(), jobs[["rule", "State"]]
    assert (jobs["Partition"] == cluster.partition).all() and (jobs["Account"] == cluster.account).all()
    resources = profile_resources()
    # Every rule ran as a SLURM job, none locally, the search's trial (a GPU rule) and choose
    # included; genes only runs when a checkpoint is given.
    assert set(jobs["rule"]) == set(resources) - {"genes"}
    assert (jobs["rule"] == "trial").sum() == 1 and (jobs["rule"] == "choose").sum() == 1
    for job in jobs.itertuples():
        wanted = resources[job.rule]
        # Memory and time are the rule's own, from its inputs' size (deltatune.resources).
        asked = printed[job.rule, job.Comment.removeprefix(f"rule_{job.rule}").removeprefix("_wildcards_")]
        assert asked["mem_mb"] >= mem_mb(job.rule, 0) and asked["runtime"] >= runtime(job.rule, 0), job
        assert job.ReqMem == f"{asked['mem_mb']}M", job
        assert job.Timelimit == timelimit(asked["runtime"]), job
        assert int(job.ReqCPUS) == requested_cpus(job.rule, wanted, config), job
        assert ("gres/gpu=1" in job.ReqTRES) == (job.rule in GPU_RULES), job
