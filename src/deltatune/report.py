"""The comparison tables: every score, its interval, and the tests between stages.

``comparison.csv`` is the tidy record (stage, replicate, perturbation, metric, value) of every
cell-eval score; ``summary.csv`` has one row per stage and baseline, in workflow order, then the
noise ceiling. For ``pearson_delta`` (pooled controls) and ``pearson_delta_matched`` (each plate's
own controls) it gives the mean, the bootstrap interval over perturbations and seeds, the paired
tests against ``base`` and against the previous stage, and where the score lies between the
zero-effect floor (``baseline_plate_control``) and the ceiling; then the mean of every other metric.

The ceiling row holds cell-eval's split-half scores mapped to full depth with cell-eval's own
Spearman-Brown correction (its interval endpoints too: the correction is monotonic).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluate import MATCHED_SUFFIX
from .statistics import BootstrapSettings, bootstrap_interval, paired_test, score_matrix

PRIMARY_METRIC = "pearson_delta"
SCORE_METRICS = (PRIMARY_METRIC, PRIMARY_METRIC + MATCHED_SUFFIX)
BASE_STAGE = "base"
FLOOR = "baseline_plate_control"
CEILING = "ceiling"


def full_depth(means: pd.Series) -> pd.Series:
    """Half-depth split-half means mapped to full depth by cell-eval's Spearman-Brown correction.

    Metrics without a defensible ceiling (errors, counts) become NaN, as in cell-eval.
    """
    import polars as pl
    from cell_eval._evaluator import _spearman_brown_correct  # cell-eval's own correction

    corrected = {}
    for suffix in ("", MATCHED_SUFFIX):
        names = [m for m in means.index if (m.endswith(MATCHED_SUFFIX) == bool(suffix))]
        if not names:
            continue
        frame = pl.DataFrame({m.removesuffix(suffix) if suffix else m: [float(means[m])] for m in names})
        row = _spearman_brown_correct(frame).row(0, named=True)
        corrected.update({m: row[m.removesuffix(suffix) if suffix else m] for m in names})
    return pd.Series(corrected).reindex(means.index)


def tidy_metrics(metrics: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Stage -> per-replicate cell-eval tables, as one long table in stage order."""
    parts = []
    for stage, replicates in metrics.items():
        for replicate, table in enumerate(replicates):
            long = table.melt(id_vars="perturbation", var_name="metric", value_name="value")
            parts.append(long.assign(stage=stage, replicate=replicate))
    tidy = pd.concat(parts, ignore_index=True)
    tidy["value"] = pd.to_numeric(tidy["value"], errors="coerce")
    tidy = tidy.dropna(subset=["value"])
    return tidy[["stage", "replicate", "perturbation", "metric", "value"]]


def summarize(comparison: pd.DataFrame, stages: list[str], bootstrap: BootstrapSettings) -> pd.DataFrame:
    """One row per entry of ``stages`` (workflow order) with intervals, tests and the floor-to-ceiling position.

    ``p_vs_previous`` compares each fine-tuned stage with the one listed before it; baselines,
    ``base`` and the ceiling have none. Every p-value is a paired test over the same test
    perturbations.
    """
    means = comparison.groupby(["stage", "metric"])["value"].mean().unstack("metric")
    metrics = [m for m in SCORE_METRICS if m in means.columns]
    rows = []
    for i, stage in enumerate(stages):
        is_stage = stage != CEILING and not stage.startswith("baseline_") and stage != BASE_STAGE
        previous = stages[i - 1] if i > 0 and is_stage else None
        row = {"stage": stage}
        stage_means = full_depth(means.loc[stage]) if stage == CEILING else means.loc[stage]
        for metric in metrics:
            suffix = metric.removeprefix(PRIMARY_METRIC)
            scores = score_matrix(comparison, stage, metric)
            low, high = bootstrap_interval(scores.to_numpy(), bootstrap)
            if stage == CEILING:
                low, high = full_depth(pd.Series({metric: low})).iloc[0], full_depth(pd.Series({metric: high})).iloc[0]
            testable = stage not in (BASE_STAGE, CEILING)
            row |= {
                metric: stage_means[metric],
                f"{metric}_ci_low": low,
                f"{metric}_ci_high": high,
                f"p_vs_base{suffix}": paired_test(scores, score_matrix(comparison, BASE_STAGE, metric)) if testable else np.nan,
                f"p_vs_previous{suffix}": paired_test(scores, score_matrix(comparison, previous, metric)) if previous else np.nan,
            }
        row |= {
            "previous_stage": previous,
            "n_replicates": comparison.loc[comparison["stage"] == stage, "replicate"].nunique(),
            "n_perturbations": comparison.loc[comparison["stage"] == stage, "perturbation"].nunique(),
            **stage_means.drop(metrics).to_dict(),
        }
        rows.append(row)
    summary = pd.DataFrame(rows)
    by_stage = summary.set_index("stage")
    if {FLOOR, CEILING} <= set(by_stage.index):
        for metric in metrics:
            floor, ceiling = by_stage.loc[FLOOR, metric], by_stage.loc[CEILING, metric]
            summary.insert(summary.columns.get_loc(f"{metric}_ci_high") + 1, f"{metric}_floor_to_ceiling",
                           (summary[metric] - floor) / (ceiling - floor))
    return summary


def by_dose(comparison: pd.DataFrame, doses: pd.Series) -> pd.DataFrame:
    """Mean ``pearson_delta`` per stage and dose (``doses``: perturbation -> dose)."""
    scores = comparison[comparison["metric"] == PRIMARY_METRIC]
    scores = scores.assign(dose=scores["perturbation"].map(doses)).dropna(subset=["dose"])
    table = scores.groupby(["stage", "dose"], sort=False)["value"].agg(["mean", "count"]).reset_index()
    return table.rename(columns={"mean": PRIMARY_METRIC, "count": "n_scores"})


def training_table(stage_summaries: dict[str, list[dict]]) -> pd.DataFrame:
    """What each fine-tuned stage changed and how it trained (replicate 0's summary.json)."""
    rows = []
    for stage, replicates in stage_summaries.items():
        info = replicates[0]
        settings = info["settings"]
        rows.append(
            {
                "stage": stage,
                "pairing": settings["pairing"],
                "control_input": settings["control_input"],
                "loss (base / delta_mse / delta_pearson)": "{base:g} / {delta_mse:g} / {delta_pearson:g}".format(**settings["loss"]),
                "lora_targets": ", ".join(settings["lora"]["targets"]),
                "trainable_params": info["parameters"]["trainable"],
                "steps": info["steps"],
                "final_loss": round(float(np.mean([r["final_loss"]["total"] for r in replicates])), 4),
                "train_s": round(float(np.mean([r["train_seconds"] for r in replicates])), 1),
                "replicates": len(replicates),
            }
        )
    return pd.DataFrame(rows)


def pairing_table(stage_summaries: dict[str, list[dict]], inference: dict[str, dict]) -> pd.DataFrame:
    """Pairing groups and fallbacks (cells whose plate/group had no control) of every step."""
    rows = [
        {"step": f"finetune {stage}", **replicates[0]["pairing"]}
        for stage, replicates in stage_summaries.items()
    ]
    rows += [
        {"step": f"infer {stage}", "strategy": info["mode"], "n_perturbed": info["n_predicted"],
         "n_controls": info["n_controls"], "fallback_cells": info["fallback_cells"]}
        for stage, info in inference.items()
    ]
    columns = ["step", "strategy", "n_groups", "n_controls", "n_perturbed", "fallback_cells", "fallback_groups"]
    return pd.DataFrame(rows).reindex(columns=columns)


def matching_table(matching: dict[str, dict]) -> pd.DataFrame:
    """Plate-matched scoring per stage: plates scored, plates skipped (no controls or one drug), cells lost."""
    return pd.DataFrame(
        [
            {"stage": stage, "plates_scored": info["batches"], "plates_skipped": len(info.get("skipped_batches", [])),
             "test_cells_skipped": info.get("skipped_cells", 0)}
            for stage, info in matching.items()
        ]
    )


def mean_effects(adata, perturbation_col: str, control: str, perturbations: list[str]) -> pd.DataFrame:
    """Mean expression of each of ``perturbations`` minus the control mean (perturbations x genes).

    For the predicted-vs-real figure only; scores always come from cell-eval.
    """
    from .control_means import group_means

    labels = adata.obs[perturbation_col].astype(str)
    codes = pd.Categorical(labels, categories=[control, *perturbations]).codes.astype(np.int64)
    means = group_means(adata.X, codes, len(perturbations) + 1)
    return pd.DataFrame(means[1:] - means[0], index=perturbations, columns=adata.var_names)
