"""Assemble ``results/<run>/report/`` from a finished run's files.

The inputs are named by a manifest (the workflow builds it from the report rule's inputs), so
the report can be rebuilt by hand from any results folder: scores per stage and replicate, the
stages' training summaries and histories, replicate 0's predictions, the target line's data and
split, the check of the screen's obs, and the benchmark folder for rule times.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import anndata as ad
import pandas as pd

from .. import origin, roles
from ..data.genes import measured_genes
from ..data.screen import read_obs_var
from ..data.splits import cells_of_split, read_split
from ..errors import InputDataError
from ..files import atomic_path, write_json, write_text
from ..metrics import MATCHED, PRIMARY_METRIC
from ..model.stage import read_history, read_summary
from ..settings import BootstrapSettings, Columns, from_mapping
from ..settings.workflow import seeds
from . import figures, provenance
from .html import render
from .tables import (
    adaptations,
    by_dose,
    matching_table,
    mean_effects,
    pairing_table,
    summarize,
    tidy_metrics,
    trainable_parameters,
    training_table,
)

EXAMPLE_PERTURBATIONS = 3
FIGURE_CAPTIONS = {
    "stage_scores": f"{PRIMARY_METRIC} by stage against pooled controls (circles) and each plate's own controls "
    "(squares): mean over test perturbations and seeds, bootstrap interval, and each seed's pooled "
    "mean (ticks). Blue: fine-tuned stages; grey: base model; orange: baselines; green: noise "
    "ceiling (another replicate) and noise-free bound (the true effect). Dotted line: the "
    "zero-effect floor; dashed: the ceiling; dash-dotted: the bound (pooled).",
    "stage_vs_base": f"Per test perturbation, {PRIMARY_METRIC} of each stage and baseline (mean over seeds) "
    "against the untuned base model; points above the diagonal improved.",
    "predicted_vs_real": "Predicted against real perturbation effect (mean minus control mean) per gene, for the "
    "test perturbations with the largest real effect (replicate 0); r is cell-eval's "
    f"{PRIMARY_METRIC}.",
    "dose_scores": f"Mean {PRIMARY_METRIC} per dose of the test perturbations (every correlation score per dose: "
    "the table below and by_dose.csv).",
    "training_curves": "Loss components per optimizer step (mean over seeds, smoothed).",
    "capacity": f"Plate-matched {PRIMARY_METRIC} against the weights each stage trained (log scale): mean over "
    "test perturbations and seeds with its bootstrap interval, the marker saying what was trained. Dotted: the "
    "untuned base, which trains nothing; dashed: baseline_other_lines; dash-dotted: the ceiling (another replicate "
    "of the real data).",
    "search_scores": "Search: each trial's validation score (mean over the validation perturbations; the test "
    "perturbations are never read) against each searched setting; the star is the chosen trial, "
    "retrained as stage tuned.",
}
# The capacity figure is drawn when the rows train this many different numbers of weights (the
# base's 0 counted): enough to read a curve from.
CAPACITY_LEVELS = 4
CHOSEN_SETTING = "chosen_setting"  # summary.csv: the search's chosen values, on the tuned row


@dataclass(frozen=True)
class Manifest:
    """Paths of a run's files, the report's inputs, and the role of every report row.

    ``roles`` lists every row in report order with its role (:mod:`deltatune.roles`);
    ``parents`` names the row each fine-tuned stage is tested against (the stage it extends); the
    other mappings are keyed by row.
    """

    roles: dict[str, str]
    parents: dict[str, str]
    metrics: dict[str, list[str]]
    stages: dict[str, list[str]]
    predictions: dict[str, str]
    matching: dict[str, str]
    data: str
    split: str
    obs_check: str
    preprocess: str
    inputs: list[str]
    benchmarks: str
    repo: str
    container_image: str | None = None
    search: dict[str, str] | None = None  # the search's trial table and chosen trial, when it ran
    base: str | None = None  # the base model's run directory
    invocations: str | None = None  # the workflow's record of each snakemake command (.jsonl)


MANIFEST = "manifest.json"  # kept in report/, paths relative to the results folder
_NOT_PATHS = ("roles", "parents", "repo", "container_image")  # the other fields name files


def _map_paths(value, change):
    """``value`` (a manifest field: a path, or lists and mappings of paths) with ``change`` applied to each path."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_map_paths(v, change) for v in value]
    if isinstance(value, dict):
        return {k: _map_paths(v, change) for k, v in value.items()}
    return value


def _manifest_paths(manifest: Manifest, change) -> dict:
    return {k: v if k in _NOT_PATHS else _map_paths(v, change) for k, v in asdict(manifest).items()}


def _relative_to(results: Path):
    """A path inside ``results`` made relative to it, one outside (a screen file, a checkpoint)
    absolute: the folder can move, and a relative outside path would then name nothing."""
    root = results.resolve()

    def change(path: str) -> str:
        resolved = Path(path).resolve()
        return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)

    return change


def rebuild_report(results_dir: str | Path) -> pd.DataFrame:
    """Rebuild ``results_dir/report/`` from the folder alone, without Snakemake or the screen.

    The report's files name their inputs (``report/manifest.json``, paths relative to the folder)
    and the config (``provenance.json``): a co-author with a copy of the folder, anywhere, reruns
    the report with ``deltatune report RESULTS_DIR``. The run's inputs (screen files, checkpoint)
    and the code that made them are not rehashed: their records are kept from the first report,
    and the rebuild is recorded beside them.
    """
    results = Path(results_dir)
    out = results / "report"
    for needed in (MANIFEST, "provenance.json"):
        if not (out / needed).is_file():
            raise InputDataError(
                f"{out / needed} is missing: {results} is not a results folder whose report was written by "
                "this version of deltatune (rerun the report rule with Snakemake once)"
            )
    try:
        manifest = Manifest(**json.loads((out / MANIFEST).read_text()))
    except TypeError as err:  # a field this version does not know, or lacks
        raise InputDataError(
            f"{out / MANIFEST} was written by another version of deltatune ({err}): rebuild this report "
            "with that version, or rerun the report rule with Snakemake"
        ) from None
    manifest = Manifest(**_manifest_paths(manifest, lambda p: p if Path(p).is_absolute() else str(results / p)))
    previous = json.loads((out / "provenance.json").read_text())
    return report_files(manifest, out, config=previous["config"], previous=previous)


def _invocations(path: str | None) -> list[dict]:
    """Every snakemake command that worked on the folder, as the workflow's ``onstart`` recorded it."""
    if not path or not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _example_effects(manifest: Manifest, columns: Columns):
    """Real and predicted mean effects of the test perturbations with the largest real effect,
    each file read a chunk of the rows it needs at a time."""
    obs, var = read_obs_var(manifest.data)
    genes = measured_genes(ad.AnnData(obs=obs.iloc[:0], var=var)).var_names
    treated = obs[cells_of_split(obs, columns, read_split(manifest.split), "test")]
    tested = sorted(set(treated[columns.perturbation].astype(str)))
    effects = mean_effects(manifest.data, columns.perturbation, columns.control, tested, genes)
    examples = effects.pow(2).sum(axis=1).nlargest(EXAMPLE_PERTURBATIONS).index.tolist()
    predicted = {
        stage: mean_effects(path, columns.perturbation, columns.control, examples, genes)
        for stage, path in manifest.predictions.items()
    }
    if not columns.dose:
        return effects.loc[examples], predicted, None
    doses = treated.groupby(treated[columns.perturbation].astype(str), observed=True)[columns.dose].first()
    doses = pd.to_numeric(doses, errors="coerce").dropna()  # a combination's "1+1" has no place on a dose axis
    return effects.loc[examples], predicted, None if doses.empty else doses


def report_files(
    manifest: Manifest, out_dir: str | Path, *, config: dict, previous: dict | None = None
) -> pd.DataFrame:
    """Write summary.csv, comparison.csv, by_dose.csv, figures/, report.html, provenance.json and
    manifest.json into ``out_dir`` from the files ``manifest`` names; return the summary.

    ``config`` is the run's effective config
    (:meth:`deltatune.settings.workflow.WorkflowSettings.effective`): the report records it and
    reads the columns and bootstrap settings from it. ``previous`` is the provenance of a report
    being rebuilt (:func:`rebuild_report`): its records of the inputs, code and image are kept.
    """
    out = Path(out_dir)
    chosen = json.loads(Path(manifest.search["chosen"]).read_text()) if manifest.search else None
    columns = from_mapping(Columns, config["data"]["columns"], "data.columns")
    bootstrap = from_mapping(BootstrapSettings, config["report"]["bootstrap"], "report.bootstrap")
    rows_roles = roles.with_bound(manifest.roles)
    # the ceiling's half-depth scores stay out of per-perturbation figures
    scored = {row: role for row, role in rows_roles.items() if role not in roles.FROM_REAL_DATA}

    comparison = tidy_metrics({s: [pd.read_csv(p, sep="\t") for p in manifest.metrics[s]] for s in manifest.roles})
    summary = summarize(comparison, rows_roles, bootstrap, manifest.parents)
    stage_info = {s: [read_summary(d) for d in dirs] for s, dirs in manifest.stages.items()}
    summary["trainable_parameters"] = summary["stage"].map(trainable_parameters(stage_info, rows_roles))
    summary["adapted"] = summary["stage"].map(adaptations(stage_info, rows_roles))
    histories = {s: [read_history(d) for d in dirs] for s, dirs in manifest.stages.items()}
    inference = {s: ad.read_h5ad(p, backed="r").uns["deltatune_inference"] for s, p in manifest.predictions.items()}
    real, predicted, doses = _example_effects(manifest, columns)
    rep0 = comparison[(comparison["replicate"] == 0) & (comparison["metric"] == PRIMARY_METRIC)]
    example_scores = rep0.pivot(index="perturbation", columns="stage", values="value")

    matching = {s: json.loads(Path(p).read_text()) for s, p in manifest.matching.items()}
    tables = {
        "training": training_table(stage_info),
        "pairing": pairing_table(stage_info, inference),
        "matching": matching_table(matching),
    }
    figs = {
        "stage_scores": figures.stage_scores(summary, comparison, rows_roles, bootstrap.level),
        "stage_vs_base": figures.stage_vs_base(comparison, scored),
        "predicted_vs_real": figures.predicted_vs_real(real, predicted, example_scores, rows_roles),
    }
    if doses is not None:
        tables["by_dose"] = by_dose(comparison[comparison["stage"].isin(list(scored))], doses)
        figs["dose_scores"] = figures.dose_scores(tables["by_dose"], scored)
    if histories:
        figs["training_curves"] = figures.training_curves(histories)
    if summary["trainable_parameters"].nunique() >= CAPACITY_LEVELS:
        figs["capacity"] = figures.capacity({config["run"]: summary})
    if chosen is not None:
        tables["search"] = pd.read_csv(manifest.search["trials"], sep="\t")
        figs["search_scores"] = figures.search_scores(tables["search"], chosen["metric"])
        chosen_values = json.dumps(chosen["overrides"], sort_keys=True)
        summary[CHOSEN_SETTING] = summary["stage"].map({roles.TUNED_ROW: chosen_values})

    now = datetime.now(UTC).isoformat(timespec="seconds")
    made = (
        {k: previous[k] for k in ("date", "packages", "git", "container", "inputs")}
        if previous
        else {
            "date": now,
            "packages": origin.package_versions(),
            "git": origin.git_state(Path(manifest.repo)),
            "container": provenance.container(manifest.container_image, _invocations(manifest.invocations)),
            "inputs": provenance.input_files(manifest.inputs),
        }
    )
    record = {
        **made,
        "config": config,
        "seeds": seeds(config),
        "screen": json.loads(Path(manifest.obs_check).read_text()),
        "device": provenance.device(stage_info, inference),
        "made_by": provenance.made_by(stage_info, Path(manifest.base) / "config.yaml" if manifest.base else None),
        "invocations": _invocations(manifest.invocations),
        "rule_seconds": provenance.rule_times(Path(manifest.benchmarks)),
        "search": None
        if chosen is None
        else {
            "chosen": {k: chosen[k] for k in ("trial", "overrides", "metric", "score", "n_validation_perturbations")},
            "trials": tables["search"].to_dict(orient="records"),
            # the settings tuned trained with (its first replicate's): the start stage and the chosen values
            "tuned": stage_info[roles.TUNED_ROW][0]["settings"],
        },
    }
    if previous:
        rebuilds = previous.get("rebuilt", [])
        record["rebuilt"] = [*rebuilds, {"date": now, "code": origin.code(), "packages": origin.package_versions()}]
    context = {
        "mixed_code": origin.mixed_code({**record["made_by"], "report": {"code": origin.code()}}),
        "run": config["run"],
        "data": config["data"].get("path"),
        "checkpoint": config["base_model"].get("checkpoint"),
        "date": record["date"],
        "leakage": json.loads(Path(manifest.preprocess).read_text()).get("leakage"),
        "target_cell_line": config["data"]["target_cell_line"],
        "profile": config["evaluation"]["profile"],
        "inference_mode": config["inference"]["mode"],
        "replicates": config["replicates"],
        "level": bootstrap.level,
        "unseen_by_base": list(inference[roles.row_of(rows_roles, roles.BASE)].get("unseen_by_base", [])),
    }

    with atomic_path(out / "figures", directory=True) as tmp:
        for name, png in figs.items():
            (tmp / f"{name}.png").write_bytes(png)
    for name, table in (
        ("summary", summary),
        ("comparison", comparison),
        *([("by_dose", tables["by_dose"])] if "by_dose" in tables else []),
    ):
        with atomic_path(out / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
    write_json(out / "provenance.json", record, sort_keys=False)
    write_json(out / MANIFEST, _manifest_paths(manifest, _relative_to(out.parent)), sort_keys=False)
    captions = dict(FIGURE_CAPTIONS)
    if MATCHED not in summary:
        captions["stage_scores"] = captions["stage_scores"].replace(" and each plate's own controls (squares)", "")
    captioned = {name: (png, captions[name]) for name, png in figs.items()}
    write_text(out / "report.html", render(context, summary, rows_roles, captioned, tables, record))
    return summary
