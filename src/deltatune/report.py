"""The comparison tables: every score, its interval, and the tests between stages.

``comparison.csv`` is the tidy record (stage, replicate, perturbation, metric, value) of every
cell-eval score; ``summary.csv`` has one row per stage and baseline, in workflow order, with the
mean ``pearson_delta`` first, its bootstrap interval over perturbations and seeds, the paired
tests against ``base`` and against the previous stage, then the mean of every other metric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .statistics import BootstrapSettings, bootstrap_interval, paired_test, score_matrix

PRIMARY_METRIC = "pearson_delta"
BASE_STAGE = "base"


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
    """One row per entry of ``stages`` (workflow order; baselines last) with intervals and tests.

    ``p_vs_previous`` compares each fine-tuned stage with the one listed before it; baselines and
    ``base`` have none. Every p-value is a paired test over the same test perturbations.
    """
    means = comparison.groupby(["stage", "metric"])["value"].mean().unstack("metric")
    scores = {s: score_matrix(comparison, s, PRIMARY_METRIC) for s in stages}
    rows = []
    for i, stage in enumerate(stages):
        low, high = bootstrap_interval(scores[stage].to_numpy(), bootstrap)
        previous = stages[i - 1] if 0 < i and not stage.startswith("baseline_") and stage != BASE_STAGE else None
        rows.append(
            {
                "stage": stage,
                PRIMARY_METRIC: means.loc[stage, PRIMARY_METRIC],
                f"{PRIMARY_METRIC}_ci_low": low,
                f"{PRIMARY_METRIC}_ci_high": high,
                "p_vs_base": paired_test(scores[stage], scores[BASE_STAGE]) if stage != BASE_STAGE else np.nan,
                "previous_stage": previous,
                "p_vs_previous": paired_test(scores[stage], scores[previous]) if previous else np.nan,
                "n_replicates": scores[stage].shape[0],
                "n_perturbations": scores[stage].shape[1],
                **means.loc[stage].drop(PRIMARY_METRIC).to_dict(),
            }
        )
    return pd.DataFrame(rows)


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


def mean_effects(adata, perturbation_col: str, control: str, perturbations: list[str]) -> pd.DataFrame:
    """Mean expression of each of ``perturbations`` minus the control mean (perturbations x genes).

    For the predicted-vs-real figure only; scores always come from cell-eval.
    """
    from .control_means import group_means

    labels = adata.obs[perturbation_col].astype(str)
    codes = pd.Categorical(labels, categories=[control, *perturbations]).codes.astype(np.int64)
    means = group_means(adata.X, codes, len(perturbations) + 1)
    return pd.DataFrame(means[1:] - means[0], index=perturbations, columns=adata.var_names)
