"""The comparison report: statistics, tables, the rendered page, provenance and `deltatune compare`."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from deltatune import roles
from deltatune.errors import InputDataError
from deltatune.report.compare import compare_runs
from deltatune.report.statistics import bootstrap_interval, paired_test
from deltatune.report.tables import summarize, tidy_metrics
from deltatune.settings import BootstrapSettings

BOOT = BootstrapSettings(samples=4000, seed=0)


def _scores(values: np.ndarray, stage: str) -> pd.DataFrame:
    """A tidy comparison with one metric for ``values`` (replicates x perturbations)."""
    return pd.DataFrame(
        [
            {"stage": stage, "replicate": r, "perturbation": f"p{p}", "metric": "pearson_delta", "value": v}
            for (r, p), v in np.ndenumerate(values)
        ]
    )


def test_interval_covers_the_mean_and_narrows_with_more_perturbations():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.4, 0.2, (1, 20)), rng.normal(0.4, 0.2, (1, 2000))
    for values in (few, many):
        low, high = bootstrap_interval(values, BOOT)
        assert low < values.mean() < high
    assert np.subtract(*bootstrap_interval(many, BOOT)[::-1]) < np.subtract(*bootstrap_interval(few, BOOT)[::-1]) / 5
    assert bootstrap_interval(few, BOOT) == bootstrap_interval(few, BOOT)
    assert bootstrap_interval(np.full((3, 10), 0.3), BOOT) == pytest.approx((0.3, 0.3))


def test_interval_resamples_seeds_too():
    """Two seeds that disagree by 1.0 on every perturbation: the interval must span most of it."""
    x = np.random.default_rng(2).normal(0.0, 0.01, 500)
    low, high = bootstrap_interval(np.stack([x, x + 1.0]), BOOT)
    assert low < x.mean() + 0.1 and high > x.mean() + 0.9


def test_paired_test_sees_a_consistent_shift_and_not_noise():
    rng = np.random.default_rng(3)
    base = pd.DataFrame(rng.normal(0.3, 0.2, (2, 30)))
    shifted = base + 0.05 + rng.normal(0, 0.01, base.shape)
    noise = base + rng.normal(0, 0.05, base.shape)
    assert paired_test(shifted, base) < 1e-4
    assert paired_test(noise, base) > 0.01
    assert paired_test(base, base) == 1.0


def test_summary_rows_follow_the_workflow_order_with_tests():
    rng = np.random.default_rng(4)
    base = rng.normal(0.3, 0.1, (2, 25))
    comparison = pd.concat(
        [
            _scores(base, "base"),
            _scores(base + 0.2, "lora_a"),
            _scores(base + 0.2 + rng.normal(0, 1e-3, base.shape), "lora_b"),
            _scores(base[:1] - 0.1, "baseline_x"),
        ]
    )
    rows = {"base": roles.BASE, "lora_a": roles.STAGE, "lora_b": roles.STAGE, "baseline_x": roles.BASELINE}
    summary = summarize(comparison, rows, BOOT, {"lora_a": "base", "lora_b": "lora_a"}).set_index("stage")
    assert summary.index.tolist() == ["base", "lora_a", "lora_b", "baseline_x"]
    assert summary.loc["lora_a", "pearson_delta"] == pytest.approx(base.mean() + 0.2)
    assert summary["previous_stage"].tolist()[1:3] == ["base", "lora_a"]
    assert pd.isna(summary.loc["baseline_x", "previous_stage"]) and pd.isna(summary.loc["base", "p_vs_base"])
    assert summary.loc["lora_a", "p_vs_base"] < 1e-4 and summary.loc["lora_b", "p_vs_previous"] > 0.01
    assert summary.loc["baseline_x", "n_replicates"] == 1 and summary.loc["lora_a", "n_perturbations"] == 25


def test_tidy_metrics_keeps_every_score():
    table = pd.DataFrame({"perturbation": ["a", "b"], "pearson_delta": [0.1, 0.2], "mse": [1.0, 2.0]})
    tidy = tidy_metrics({"base": [table, table.assign(mse=[3.0, 4.0])]})
    assert len(tidy) == 8
    assert tidy.query("replicate == 1 and metric == 'mse'")["value"].tolist() == [3.0, 4.0]


def _summary_dir(root: Path, run: str, rows: dict[str, float], tested=("d1", "d2")) -> Path:
    report = root / run / "report"
    report.mkdir(parents=True)
    pd.DataFrame({"stage": list(rows), "pearson_delta": list(rows.values())}).to_csv(
        report / "summary.csv", index=False
    )
    pd.DataFrame({"stage": "base", "perturbation": list(tested)}).to_csv(report / "comparison.csv", index=False)
    return root / run


def test_compare_puts_two_runs_side_by_side(tmp_path):
    a = _summary_dir(tmp_path, "small", {"base": 0.2, "lora_batch": 0.3})
    b = _summary_dir(tmp_path, "large", {"base": 0.25, "lora_batch": 0.45, "lora_ext": 0.5})
    other = _summary_dir(tmp_path, "other_split", {"base": 0.3}, tested=("d1", "d3"))
    with pytest.raises(
        InputDataError, match=r"different test perturbations \(1 only in .*\['d2'\]; 1 only in .*\['d3'\]\)"
    ):
        compare_runs(a, other)
    assert compare_runs(a, other, allow_different_tests=True)["stage"].tolist() == ["base", "lora_batch"]
    table = compare_runs(a, b).set_index("stage")
    assert table.index.tolist() == ["base", "lora_batch", "lora_ext"]
    assert table.loc["lora_batch", "pearson_delta difference (B - A)"] == pytest.approx(0.15)
    assert pd.isna(table.loc["lora_ext", "pearson_delta [small]"])
    with pytest.raises(InputDataError, match="holds no report/summary.csv"):
        compare_runs(a, tmp_path / "nothing")


def test_compare_command_prints_and_writes(finished_run, tmp_path):
    results = finished_run / "results" / "tiny"
    out = tmp_path / "side_by_side.csv"
    done = subprocess.run(
        [sys.executable, "-m", "deltatune.cli", "compare", str(results), str(results / "report"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert "lora_random" in done.stdout and table["stage"].tolist()[0] == "base"
    assert np.allclose(table["pearson_delta difference (B - A)"], 0.0)


# Runs a deltatune command in this process and fails if it imported torch on the way.
WITHOUT_TORCH = (
    "import sys; from deltatune.cli import main; code = main(sys.argv[1:]); "
    "assert 'torch' not in sys.modules, 'the command imported torch'; sys.exit(code)"
)


def _report_command(workdir: Path) -> list[str]:
    """The report rule's own command line for ``workdir``, as Snakemake prints it in a dry run."""
    from conftest import snakemake

    done = snakemake(workdir, "-n", "--forcerun", "report", "--printshellcmds")
    line = next(line for line in done.stdout.splitlines() if "deltatune report --manifest" in line)
    return shlex.split(line.split("deltatune ", 1)[1].split(" 2> ")[0])  # without the log redirection


def test_report_and_compare_run_without_torch(finished_run, tmp_path):
    """The report (rebuilt from the run's own manifest) and compare need no torch, and the rebuilt
    report's tables are the workflow's."""
    args = _report_command(finished_run)
    args[args.index("--out-dir") + 1] = str(tmp_path / "report")
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args], cwd=finished_run, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = finished_run / "results" / "tiny" / "report"
    for table in ("summary.csv", "comparison.csv"):
        assert (tmp_path / "report" / table).read_bytes() == (report / table).read_bytes()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_TORCH,
            "compare",
            str(report),
            str(tmp_path / "report"),
            "--out",
            str(tmp_path / "compare.csv"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_full_depth_is_cell_evals_own_correction():
    """The ceiling's Spearman-Brown step and its list of metrics match cell-eval's (checked here,
    against its private function, so that the library imports only cell-eval's public API)."""
    import polars as pl
    from cell_eval._evaluator import SB_METRICS, _spearman_brown_correct

    from deltatune.report.ceiling import SPEARMAN_BROWN_METRICS, full_depth

    assert SPEARMAN_BROWN_METRICS == SB_METRICS
    names = sorted(SB_METRICS) + ["mse", "pearson_edistance", "clustering_agreement"]
    for r in (-1.0, -0.3, 0.0, 0.2, 0.77, 1.0):
        theirs = _spearman_brown_correct(pl.DataFrame({n: [r] for n in names})).row(0, named=True)
        ours = full_depth(pd.Series(r, index=names + [f"{n}_matched" for n in names]))
        for n in names:
            for name in (n, f"{n}_matched"):
                assert ours[name] == theirs[n] or (np.isnan(ours[name]) and np.isnan(theirs[n])), (name, r)


RENDER_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0);
  document.body.setAttribute("data-probe", images.length + "/" + loaded.length + "/" + document.body.scrollHeight);
});
</script>"""


def test_report_html_renders_in_chromium_with_every_figure(finished_run, tmp_path):
    report = finished_run / "results" / "tiny" / "report"
    page = (report / "report.html").read_text()
    assert "http://" not in page and "https://" not in page, "the page must be self-contained"
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", RENDER_PROBE + "</body>"))
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'data-probe="(\d+)/(\d+)/(\d+)"', done.stdout)
    assert match, "the page did not finish loading"
    total, loaded, height = map(int, match.groups())
    figures = sorted(p.stem for p in (report / "figures").glob("*.png"))
    assert figures == ["dose_scores", "predicted_vs_real", "stage_scores", "stage_vs_base", "training_curves"]
    assert total == len(figures) and loaded == total
    assert height > 2000
    for stage in (
        "base",
        "lora_random",
        "baseline_mean_delta",
        "baseline_other_lines",
        "baseline_plate_control",
        "ceiling",
    ):
        assert stage in done.stdout
    assert "How to read the scores" in done.stdout


WIDTH_PROBE = """<script>
window.addEventListener("load", () => {
  const right = Math.ceil(document.querySelector("table").getBoundingClientRect().right);
  const widths = [right, window.innerWidth, document.documentElement.scrollWidth];
  document.body.setAttribute("data-width", widths.join("/"));
});
</script>"""


def test_the_first_table_fits_the_page_in_chromium(finished_run, tmp_path):
    """Rendered at 1400 px (and at 1000 px), the lead table ends inside the viewport and the page
    does not scroll sideways; a screenshot of the first screen is kept beside the probe."""
    page = (finished_run / "results" / "tiny" / "report" / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", WIDTH_PROBE + "</body>"))
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    for width in (1400, 1000):
        done = subprocess.run(
            [*chromium, f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        match = re.search(r'data-width="(\d+)/(\d+)/(\d+)"', done.stdout)
        assert match, "the page did not finish loading"
        right, viewport, scroll = map(int, match.groups())
        assert viewport == width
        assert right <= viewport and scroll <= viewport, (width, right, scroll)
        assert "Systema" in done.stdout.split("</table>")[0], "the lead table shows the new scores"
    shot = tmp_path / "report.png"
    subprocess.run(
        [*chromium, "--window-size=1400,900", f"--screenshot={shot}", probe.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_with_few_test_perturbations_says_its_intervals_say_little(finished_run):
    """The tiny run keeps 6 test perturbations: summary.csv and the report say so beside the intervals."""
    report = finished_run / "results" / "tiny" / "report"
    summary = pd.read_csv(report / "summary.csv", keep_default_na=False)
    assert (summary["n_perturbations"] < 10).all()
    assert summary["interval_note"].str.contains("the interval says little").all()
    page = (report / "report.html").read_text()
    rows = page.split("</table>")[0].split("<tbody>")[1].split("</tr>")[:-1]  # the lead table's rows
    assert len(rows) == len(summary) and all("\u2020" in row for row in rows)
    assert "the interval says little" in page


def test_interval_notes_start_at_ten_perturbations():
    from deltatune.report.tables import interval_note

    assert interval_note(9) and interval_note(3)
    assert interval_note(10) == "" and interval_note(500) == ""


def test_the_report_header_names_the_data_the_base_model_and_the_date(finished_run):
    report = finished_run / "results" / "tiny" / "report"
    page = (report / "report.html").read_text()
    header = page.split("<h2>")[0]
    date = json.loads((report / "provenance.json").read_text())["date"]
    assert "<b>simulated data</b>" in header and "pretrained in this run on the other lines" in header
    assert f"report written {date}" in header
    assert "Leakage" not in page, "our own base never sees the target line"


def test_a_copied_results_folder_rebuilds_its_report_without_snakemake(finished_run, tmp_path):
    """`deltatune report RESULTS_DIR` on a copy elsewhere: the same scores, the record carried over."""
    original = finished_run / "results" / "tiny"
    copy = tmp_path / "handed_over" / "tiny"
    shutil.copytree(original, copy)
    for name in ("summary.csv", "comparison.csv", "report.html"):
        (copy / "report" / name).unlink()
    shutil.rmtree(copy / "report" / "figures")
    manifest = json.loads((copy / "report" / "manifest.json").read_text())
    assert not Path(manifest["split"]).is_absolute(), "paths inside the folder are relative to it"
    probe = (
        "import sys; from deltatune.cli import main; code = main(['report', sys.argv[1]]); "
        "assert 'snakemake' not in sys.modules; sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(copy)], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pd.testing.assert_frame_equal(
        pd.read_csv(copy / "report" / "summary.csv"), pd.read_csv(original / "report" / "summary.csv")
    )
    assert (copy / "report" / "report.html").stat().st_size > 0 and any((copy / "report" / "figures").iterdir())
    before = json.loads((original / "report" / "provenance.json").read_text())
    after = json.loads((copy / "report" / "provenance.json").read_text())
    for key in ("config", "inputs", "git", "date", "seeds"):
        assert after[key] == before[key], key
    assert len(after["rebuilt"]) == 1 and "rebuilt" not in before

    done = subprocess.run(
        [sys.executable, "-m", "deltatune.cli", "report", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "manifest.json is missing" in done.stderr and "Traceback" not in done.stderr


def test_provenance_matches_the_run(finished_run):
    results = finished_run / "results" / "tiny"
    record = json.loads((results / "report" / "provenance.json").read_text())
    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    assert record["config"]["run"] == "tiny" and record["config"]["replicates"] == config["replicates"]
    assert record["config"]["stages"]["lora_random"]["lr"] == config["stages"]["lora_random"]["lr"]
    assert record["config"]["stages"]["lora_random"]["warmup_fraction"] == 0.05, "defaults are filled in"
    assert record["seeds"]["stages"]["lora_random"] == [0, 1]
    assert record["seeds"]["simulate"] == config["data"]["simulate"]["seed"]
    screen = results / "data" / "screen.h5ad"
    assert record["inputs"]["results/tiny/data/screen.h5ad"] == {
        "bytes": screen.stat().st_size,
        "sha256": hashlib.sha256(screen.read_bytes()).hexdigest(),
    }
    assert "results/tiny/models/base/checkpoints/final.ckpt" in record["inputs"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert record["git"]["commit"] == head.stdout.strip()
    assert isinstance(record["git"]["dirty"], bool)
    assert record["packages"]["cell-eval"] == metadata.version("cell-eval")
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["device"]["training"] == {"lora_random": ["cpu"]}
    benchmarks = {
        str(p.relative_to(results / "benchmarks").with_suffix("")) for p in (results / "benchmarks").rglob("*.tsv")
    } - {"report"}
    assert set(record["rule_seconds"]) - {"report"} == benchmarks
    assert "finetune/lora_random/rep1" in record["rule_seconds"]

    # What made each model, and how the workflow was run.
    assert sorted(record["made_by"]) == ["base", "lora_random/rep0", "lora_random/rep1"]
    for made in record["made_by"].values():
        assert made["code"]["commit"] == head.stdout.strip() and made["packages"]["torch"] == metadata.version("torch")
        assert made["machine"]["cpu"] == record["device"]["cpu"] != "x86_64"
    assert record["made_by"]["base"]["device"] == "cpu"
    assert record["device"]["python"] == platform.python_version()
    assert record["git"]["remote"] is None or isinstance(record["git"]["remote"], str)
    (invocation,) = record["invocations"]
    assert "snakemake" in invocation["command"] and invocation["executor"] == "local"
    assert invocation["workflow_profile"].endswith("profiles/default") and invocation["date"] <= record["date"]


def test_a_folder_made_by_several_code_versions_says_so():
    from deltatune.origin import mixed_code
    from deltatune.report.html import _mixed_code_note

    old = {"deltatune": "0.1.0", "commit": "a" * 40, "dirty": False}
    new = {"deltatune": "0.1.0", "commit": "b" * 40, "dirty": True}
    same = {"lora_random/rep0": {"code": old}, "report": {"code": old}}
    assert mixed_code(same) == {} and _mixed_code_note(mixed_code(same)) == ""
    note = _mixed_code_note(mixed_code({**same, "lora_batch/rep0": {"code": new}}))
    assert "Mixed code versions" in note and "aaaaaaaaaa: <code>lora_random/rep0</code>, <code>report</code>" in note
    assert "bbbbbbbbbb (dirty): <code>lora_batch/rep0</code>" in note


def test_report_warns_when_the_no_effect_floor_beats_a_model():
    from deltatune.report.html import _plate_warning

    summary = pd.DataFrame(
        {"stage": ["base", "lora_a", "baseline_plate_control", "ceiling"], "pearson_delta": [0.3, 0.6, 0.5, 0.9]}
    )
    rows = roles.row_roles(["lora_a"], ["baseline_plate_control"])
    warning = _plate_warning(summary, rows)
    assert "Plate confounding" in warning and "<code>base</code>" in warning and "lora_a" not in warning
    assert _plate_warning(summary.assign(pearson_delta=[0.55, 0.6, 0.5, 0.9]), rows) == ""


def test_report_warns_above_the_noise_free_bound_and_says_which_scores_were_set_to_zero():
    from deltatune.report.html import _above_bound_warning, _no_signal_note

    rows = roles.with_bound(roles.row_roles([], ["baseline_plate_control"]))
    summary = pd.DataFrame(
        {
            "stage": list(rows),
            "pearson_delta": [0.95, 0.5, 0.97, 0.9],
            "no_signal_pearson_delta_matched": [0.0, 1.0, np.nan, np.nan],
        }
    )
    warning = _above_bound_warning(summary, rows)
    assert (
        "Above the noise-free bound" in warning and "<code>base</code> on pearson_delta (0.950 &gt; 0.900)" in warning
    )
    assert "<code>ceiling</code>" not in warning, "the ceiling row is real data, not a prediction"
    assert _above_bound_warning(summary.assign(pearson_delta=[0.85, 0.5, 0.97, 0.9]), rows) == ""
    note = _no_signal_note(summary)
    assert "<code>baseline_plate_control</code> pearson_delta_matched (100% of test perturbations)" in note
    assert "<code>base</code>" not in note
    assert _no_signal_note(summary.assign(no_signal_pearson_delta_matched=0.0)) == ""


def test_the_by_dose_table_holds_every_correlation_score_per_dose():
    from deltatune.report.tables import by_dose

    rows = [
        {"stage": "base", "replicate": r, "perturbation": p, "metric": m, "value": v}
        for r in (0, 1)
        for p, v in (("a_low", 0.1), ("a_high", 0.5), ("b_low", 0.3))
        for m, v in (("pearson_delta", v), ("pearson_delta_matched", v / 2), ("mse", 9.0))
    ]
    table = by_dose(pd.DataFrame(rows), pd.Series({"a_low": 0.1, "b_low": 0.1, "a_high": 1.0})).set_index("dose")
    assert list(table.columns) == ["stage", "pearson_delta", "pearson_delta_matched", "n_scores"]
    assert table.loc[0.1, "pearson_delta"] == pytest.approx(0.2) and table.loc[
        0.1, "pearson_delta_matched"
    ] == pytest.approx(0.1)
    assert table.loc[0.1, "n_scores"] == 4 and table.loc[1.0, "n_scores"] == 2


def test_the_tests_table_adjusts_every_p_value_of_the_table_as_one_family():
    from scipy.stats import false_discovery_control

    from deltatune.report.html import with_q_values

    table = pd.DataFrame(
        {"stage": ["base", "a", "b"], "p_vs_base": [np.nan, 0.01, 0.04], "p_vs_previous": [np.nan, 0.03, 0.5]}
    )
    shown = with_q_values(table)
    q = false_discovery_control([0.01, 0.04, 0.03, 0.5])
    assert shown["p_vs_base"].tolist() == ["", f"0.01 (q {q[0]:.3g})", f"0.04 (q {q[1]:.3g})"]
    assert shown["p_vs_previous"].tolist() == ["", f"0.03 (q {q[2]:.3g})", f"0.5 (q {q[3]:.3g})"]
    assert (q >= [0.01, 0.04, 0.03, 0.5]).all()


def test_the_header_says_when_no_training_split_of_a_checkpoint_was_found():
    from deltatune.report.html import _leakage_note

    unknown = _leakage_note({"target_cell_line": "c37", "checkpoint": "models/st", "leakage": None})
    assert "Leakage unknown" in unknown and "<b>c37</b>" in unknown
    assert "records a split file" in unknown and "beside the run or one folder up" in unknown
    assert _leakage_note({"target_cell_line": "c37", "checkpoint": None, "leakage": None}) == "", "our own base"


def test_the_capacity_figure_marks_what_every_kind_of_stage_trained():
    """Every way a stage can adapt is put into words the capacity figure has a marker for, and the
    figure draws runs with the base, stages of every kind, baselines and the ceiling."""
    from dataclasses import replace

    from deltatune.report.figures import ADAPTED_MARKERS, ADVERSARY_MARKER, _adapted_marker, capacity
    from deltatune.report.tables import adapted
    from deltatune.settings import LossWeights, StageSettings, output_dict
    from deltatune.settings.model import LoraSettings

    lora = StageSettings()
    kinds = {
        "LoRA r8: backbone_attention": lora,
        "DoRA r8: backbone_attention": replace(lora, lora=LoraSettings(use_dora=True)),
        "every weight": replace(lora, adaptation="full"),
        "whole: decoder": replace(lora, adaptation="full", full_groups=("decoder",)),
        "every weight + plate adversary": replace(lora, adaptation="full", loss=LossWeights(plate_adversarial=1.0)),
    }
    words = {name: adapted(output_dict(settings)) for name, settings in kinds.items()}
    assert list(words.values()) == list(kinds)
    markers = [_adapted_marker(w) for w in words.values()]
    assert markers == [*ADAPTED_MARKERS.values(), ADVERSARY_MARKER]
    summary = pd.DataFrame(
        {
            "stage": ["base", *kinds, "baseline_other_lines", "ceiling"],
            "trainable_parameters": [0, 10, 12, 1000, 100, 1000, np.nan, np.nan],
            "adapted": ["nothing", *words.values(), np.nan, np.nan],
            "pearson_delta_matched": [0.1, 0.12, 0.13, 0.3, 0.2, 0.31, 0.45, 0.5],
        }
    )
    summary["pearson_delta_matched_ci_low"] = summary["pearson_delta_matched"] - 0.05
    summary["pearson_delta_matched_ci_high"] = summary["pearson_delta_matched"] + 0.05
    png = capacity({"small base": summary, "large base": summary.assign(pearson_delta_matched=0.2)})
    assert png.startswith(b"\x89PNG")
