"""The comparison tables: every score, its interval, and the tests between stages.

``comparison.csv`` is the tidy record (stage, replicate, perturbation, metric, value) of every
cell-eval score; ``summary.csv`` has one row per stage and baseline, in workflow order, then the
noise ceiling. For each score of :data:`SCORE_METRICS` (``pearson_delta`` against pooled controls
and against each plate's own, the same against the mean perturbation, cell-eval's discrimination
score) it gives the mean, the bootstrap interval over perturbations and seeds, the paired tests
against ``base`` and against the previous stage, and where the score lies between the zero-effect
floor (``baseline_plate_control``) and the ceiling; then ``mode_collapse_ratio``, a note where
too few perturbations make the intervals say little, and the mean of every other metric.

The ceiling row holds cell-eval's split-half scores mapped to full depth with cell-eval's own
Spearman-Brown correction (its interval endpoints too: the correction is monotonic).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import roles
from ..evaluate import (
    DELTA_CORRELATION_PREDICTED,
    DELTA_CORRELATION_REAL,
    DISCRIMINATION,
    MATCHED,
    MATCHED_SUFFIX,
    PERTURBED_MEAN,
    PERTURBED_MEAN_MATCHED,
    PRIMARY_METRIC,
)
from ..pairing.means import group_means
from ..settings import BootstrapSettings
from .statistics import bootstrap_interval, paired_test, score_matrix

SCORE_METRICS = (PRIMARY_METRIC, MATCHED, PERTURBED_MEAN, PERTURBED_MEAN_MATCHED, DISCRIMINATION)
COLLAPSE_RATIO = "mode_collapse_ratio"
# Below this many test perturbations a bootstrap over them has too few units to mean much: with
# 3, every draw is one of 10 multisets and the interval is about the spread of 3 numbers.
MIN_PERTURBATIONS = 10
INTERVAL_NOTE = "interval_note"
# The metrics whose split-half ceiling cell-eval corrects to full depth (its SB_METRICS, 0.8.2);
# tests/test_report.py holds this list and the formula against cell-eval's own correction.
SPEARMAN_BROWN_METRICS = frozenset({
    "pearson_delta", "discrimination_score_l1", "discrimination_score_l2", "discrimination_score_cosine",
    "overlap_at_N", "overlap_at_50", "overlap_at_100", "overlap_at_200", "overlap_at_500",
    "precision_at_N", "precision_at_50", "precision_at_100", "precision_at_200", "precision_at_500",
    "de_spearman_sig", "de_spearman_lfc_sig", "de_direction_match", "de_sig_genes_recall", "pr_auc", "roc_auc",
})
# The perturbed-mean score is a Pearson correlation of deltas like pearson_delta: the same correction.
CORRECTED_METRICS = SPEARMAN_BROWN_METRICS | {PERTURBED_MEAN}


def p_suffix(metric: str) -> str:
    """The suffix of ``metric``'s p-value columns: none for ``pearson_delta``, ``_matched`` for
    ``pearson_delta_matched``, ``_<metric>`` for any other."""
    return "" if metric == PRIMARY_METRIC else "_" + metric.removeprefix(PRIMARY_METRIC + "_")


def interval_note(n_perturbations: int) -> str:
    """What to tell a reader beside an interval over ``n_perturbations`` units ("" when enough)."""
    if n_perturbations >= MIN_PERTURBATIONS:
        return ""
    return f"only {n_perturbations} test perturbations (< {MIN_PERTURBATIONS}): the interval says little"


def full_depth(means: pd.Series) -> pd.Series:
    """Half-depth split-half means mapped to full depth, as cell-eval's ``compute_ceiling`` does.

    The Spearman-Brown prophecy ``2r / (1 + r)`` (the reliability of a test of doubled length)
    for the metrics in :data:`CORRECTED_METRICS` (pooled or ``_matched``) where ``r > 0``;
    every other value (errors, counts, a non-positive reliability) has no defensible ceiling and
    becomes NaN, as in cell-eval.
    """
    r = means.to_numpy(dtype=np.float64)
    corrected = np.array([m.removesuffix(MATCHED_SUFFIX) in CORRECTED_METRICS for m in means.index]) & (r > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.Series(np.where(corrected, 2.0 * r / (1.0 + r), np.nan), index=means.index)


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


def summarize(comparison: pd.DataFrame, rows_roles: dict[str, str], bootstrap: BootstrapSettings,
              parents: dict[str, str]) -> pd.DataFrame:
    """One row per report row (``rows_roles``: row -> role, in report order) with intervals,
    tests and the floor-to-ceiling position.

    ``p_vs_previous`` compares each fine-tuned stage with ``parents[stage]``: the stage it
    extends, so that each test isolates the one change the stage makes (``base`` for a stage that
    extends none; the search's start stage for ``tuned``); baselines, ``base`` and the ceiling
    have none. Every p-value is a paired test over the same test
    perturbations. ``mode_collapse_ratio`` is the mean correlation between predicted deltas over
    the same for the real ones (:mod:`deltatune.evaluate.systematic`).
    """
    means = comparison.groupby(["stage", "metric"])["value"].mean().unstack("metric")
    metrics = [m for m in SCORE_METRICS if m in means.columns]
    stages = list(rows_roles)
    base = roles.row_of(rows_roles, roles.BASE)
    rows = []
    for stage in stages:
        role = rows_roles[stage]
        previous = parents.get(stage) if role == roles.STAGE else None
        row = {"stage": stage}
        is_ceiling = role == roles.CEILING
        stage_means = full_depth(means.loc[stage]) if is_ceiling else means.loc[stage]
        for metric in metrics:
            suffix = p_suffix(metric)
            scores = score_matrix(comparison, stage, metric)
            low, high = bootstrap_interval(scores.to_numpy(), bootstrap)
            if is_ceiling:
                low, high = full_depth(pd.Series({metric: low})).iloc[0], full_depth(pd.Series({metric: high})).iloc[0]
            testable = role not in (roles.BASE, roles.CEILING)
            row |= {
                metric: stage_means[metric],
                f"{metric}_ci_low": low,
                f"{metric}_ci_high": high,
                f"p_vs_base{suffix}": paired_test(scores, score_matrix(comparison, base, metric)) if testable else np.nan,
                f"p_vs_previous{suffix}": paired_test(scores, score_matrix(comparison, previous, metric)) if previous else np.nan,
            }
        n_perturbations = comparison.loc[comparison["stage"] == stage, "perturbation"].nunique()
        row |= {
            COLLAPSE_RATIO: stage_means.get(DELTA_CORRELATION_PREDICTED, np.nan) / stage_means.get(DELTA_CORRELATION_REAL, np.nan),
            "previous_stage": previous,
            "n_replicates": comparison.loc[comparison["stage"] == stage, "replicate"].nunique(),
            "n_perturbations": n_perturbations,
            INTERVAL_NOTE: interval_note(n_perturbations),
            **stage_means.drop(metrics).to_dict(),
        }
        rows.append(row)
    summary = pd.DataFrame(rows)
    by_stage = summary.set_index("stage")
    floor_row, ceiling_row = roles.row_of(rows_roles, roles.FLOOR), roles.row_of(rows_roles, roles.CEILING)
    if floor_row and ceiling_row:
        for metric in metrics:
            floor, ceiling = by_stage.loc[floor_row, metric], by_stage.loc[ceiling_row, metric]
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
                "diversity": settings["loss"].get("diversity", 0.0),
                "adapted": ("every weight" if settings.get("adaptation") == "full"
                            else f"LoRA r{settings['lora']['rank']}: " + ", ".join(settings["lora"]["targets"])),
                "lr": settings["lr"],
                "interpolated_cells": info["parameters"].get("interpolated_cells", 0),
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
    labels = adata.obs[perturbation_col].astype(str)
    codes = pd.Categorical(labels, categories=[control, *perturbations]).codes.astype(np.int64)
    means = group_means(adata.X, codes, len(perturbations) + 1)
    return pd.DataFrame(means[1:] - means[0], index=perturbations, columns=adata.var_names)
