"""Resources that follow the input: a bigger screen asks for more memory and time, a retry for more."""

import re
from dataclasses import replace

import pytest
from conftest import snakemake, write_config

from deltatune.data.simulate import simulate_screen
from deltatune.files import write_h5ad
from deltatune.resources import DEMANDS, HASH_MIN_PER_GB, mem_mb, runtime


def test_every_rule_grows_with_its_input_and_with_each_attempt():
    for rule in DEMANDS:
        assert mem_mb(rule, 1000) >= mem_mb(rule, 10) >= mem_mb(rule, 0) > 0
        assert mem_mb(rule, 500, attempt=2) == 2 * mem_mb(rule, 500)
        assert runtime(rule, 5000, attempt=3) > runtime(rule, 5000) > 0


def test_the_report_has_time_to_hash_tahoes_314_gb():
    tahoe_mb = 314e3 * 1e6 / 2**20
    assert runtime("report", 100, hashed_mb=tahoe_mb) - runtime("report", 100) == round(
        HASH_MIN_PER_GB * tahoe_mb / 1024
    )
    assert runtime("report", 100, hashed_mb=tahoe_mb) >= 60


def _preprocess_demand(workdir, config) -> tuple[int, int]:
    """The mem_mb and runtime the dry run's preprocess job asks for."""
    write_config(workdir, config)
    done = snakemake(workdir, "-n", "--until", "preprocess")
    assert done.returncode == 0, done.stderr[-3000:]
    block = done.stdout.split("rule preprocess:", 1)[1]
    return int(re.search(r"mem_mb=(\d+)", block).group(1)), int(re.search(r"runtime=(\d+)", block).group(1))


@pytest.mark.workflow
def test_the_dry_run_asks_for_the_demand_at_the_screens_size(tmp_path, tiny_config, screen_spec):
    demands = {}
    for name, cells in (("small", 12), ("big", 400)):
        screen = tmp_path / f"{name}.h5ad"
        write_h5ad(simulate_screen(replace(screen_spec, cells_per_well=cells, controls_per_plate=3 * cells)), screen)
        config = {**tiny_config, "data": {**tiny_config["data"], "path": str(screen)}}
        demands[name] = _preprocess_demand(tmp_path / name, config)
    for name in ("small", "big"):  # the rule's demand at its input's size (MiB, as Snakemake measures)
        size_mb = (tmp_path / f"{name}.h5ad").stat().st_size / 2**20
        assert demands[name] == (mem_mb("preprocess", size_mb), runtime("preprocess", size_mb))
    assert demands["big"] >= demands["small"] and mem_mb("preprocess", 10_000) > mem_mb("preprocess", 0)


def test_the_documented_table_is_the_code():
    from conftest import REPO

    text = (REPO / "docs" / "running.md").read_text()
    for rule, demand in DEMANDS.items():
        row = f"| `{rule}` | {demand.base_mb} | {demand.per_input_mb:g} | {demand.base_min} | {demand.min_per_gb:g} |"
        assert row in text, f"docs/running.md lacks {row}"
