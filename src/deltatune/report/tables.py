"""The comparison tables: every score, its interval, and the tests between stages.

``comparison.csv`` is the tidy record (stage, replicate, perturbation, metric, value) of every
cell-eval score; ``summary.csv`` has one row per stage and baseline, in workflow order, then the
noise ceiling and the bound for a noise-free prediction (:mod:`.ceiling`). For each score of the
catalogue (:data:`deltatune.metrics.SCORES`) it gives the mean, the bootstrap interval
over perturbations and seeds, the paired tests against ``base`` and against the stage a stage
extends, and where the score lies between the zero-effect floor (``baseline_plate_control``) and
the noise-free bound (correlations: ``_floor_to_bound``) or the replicate ceiling (the others:
``_floor_to_ceiling``); then a note where too few perturbations make the intervals say little,
and the mean of every other metric, the ``no_signal_`` shares among them.

The ceiling row holds cell-eval's split-half scores mapped to full depth with cell-eval's own
Spearman-Brown correction (its interval endpoints too: the correction is monotonic).
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd

from .. import roles
from ..data.means import group_means
from ..data.readers import row_chunks
from ..data.screen import read_obs_var
from ..errors import InputDataError
from ..metrics import CORRELATIONS, PRIMARY_METRIC, SCORES, Score
from ..settings import BootstrapSettings
from .ceiling import full_depth, noise_free_bounds
from .statistics import bootstrap_interval, paired_test, score_matrix

# Below this many test perturbations a bootstrap over them has too few units to mean much: with
# 3, every draw is one of 10 multisets and the interval is about the spread of 3 numbers.
MIN_PERTURBATIONS = 10
INTERVAL_NOTE = "interval_note"
TO_BOUND = "_floor_to_bound"  # position of a correlation between the floor and the noise-free bound
TO_CEILING = "_floor_to_ceiling"  # position of another score between the floor and the replicate ceiling
LOSS_WEIGHTS = "{base:g} / {delta_mse:g} / {delta_pearson:g}"  # the training table's loss column


def p_suffix(metric: str) -> str:
    """The suffix of ``metric``'s p-value columns: none for ``pearson_delta``, ``_matched`` for
    ``pearson_delta_matched``, ``_<metric>`` for any other."""
    return "" if metric == PRIMARY_METRIC else "_" + metric.removeprefix(PRIMARY_METRIC + "_")


def position_column(score: Score) -> str | None:
    """The summary column placing rows between floor and bound (or ceiling); None without one."""
    if score.correlation:
        return score.name + TO_BOUND
    return score.name + TO_CEILING if score.ceiling else None


def interval_note(n_perturbations: int) -> str:
    """What to tell a reader beside an interval over ``n_perturbations`` units ("" when enough)."""
    if n_perturbations >= MIN_PERTURBATIONS:
        return ""
    return f"only {n_perturbations} test perturbations (< {MIN_PERTURBATIONS}): the interval says little"


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


def _counts(comparison: pd.DataFrame, stage: str) -> dict:
    rows = comparison[comparison["stage"] == stage]
    n_perturbations = rows["perturbation"].nunique()
    return {
        "n_replicates": rows["replicate"].nunique(),
        "n_perturbations": n_perturbations,
        INTERVAL_NOTE: interval_note(n_perturbations),
    }


def _bound_row(
    comparison: pd.DataFrame, name: str, ceiling: str, scores: list[Score], bootstrap: BootstrapSettings
) -> dict:
    """The noise-free bound of every correlation score, from the ceiling's half-depth scores."""
    row = {"stage": name}
    for score in (s for s in scores if s.correlation):
        bounds = noise_free_bounds(score_matrix(comparison, ceiling, score.name))
        low, high = bootstrap_interval(bounds.to_numpy()[None, :], bootstrap)
        row |= {score.name: float(bounds.mean()), f"{score.name}_ci_low": low, f"{score.name}_ci_high": high}
    return row | _counts(comparison, ceiling)


def _row(
    comparison: pd.DataFrame,
    means: pd.Series,
    stage: str,
    role: str,
    scores: list[Score],
    bootstrap: BootstrapSettings,
    base: str,
    previous: str | None,
) -> dict:
    """A stage, baseline or ceiling row: each score's mean, interval and tests, then the rest."""
    row = {"stage": stage}
    for score in scores:
        matrix = score_matrix(comparison, stage, score.name)
        scored = matrix.notna().any(axis=None)
        low, high = bootstrap_interval(matrix.to_numpy(), bootstrap) if scored else (np.nan, np.nan)
        if role == roles.CEILING:
            low, high = full_depth(pd.Series([low, high], index=[score.name] * 2)).to_numpy()
        row |= {score.name: means[score.name], f"{score.name}_ci_low": low, f"{score.name}_ci_high": high}
        if score.tested:
            suffix = p_suffix(score.name)
            testable = role not in (roles.BASE, roles.CEILING)
            against_base = paired_test(matrix, score_matrix(comparison, base, score.name)) if testable else np.nan
            against_previous = (
                paired_test(matrix, score_matrix(comparison, previous, score.name)) if previous else np.nan
            )
            row |= {f"p_vs_base{suffix}": against_base, f"p_vs_previous{suffix}": against_previous}
    return row | {
        "previous_stage": previous,
        **_counts(comparison, stage),
        **means.drop([s.name for s in scores]).to_dict(),
    }


def summarize(
    comparison: pd.DataFrame, rows_roles: dict[str, str], bootstrap: BootstrapSettings, parents: dict[str, str]
) -> pd.DataFrame:
    """One row per report row (``rows_roles``: row -> role, in report order, the bound included:
    :func:`deltatune.roles.with_bound`) with intervals, tests and positions.

    ``p_vs_previous`` compares each fine-tuned stage with ``parents[stage]``: the stage it
    extends, so that each test isolates the one change the stage makes (``base`` for a stage that
    extends none; the search's start stage for ``tuned``); baselines, ``base``, the ceiling and
    the bound have none. Every p-value is a paired test over the same test perturbations.
    """
    means = comparison.groupby(["stage", "metric"])["value"].mean().unstack("metric")
    scores = [s for s in SCORES if s.name in means.columns]
    base, ceiling = roles.row_of(rows_roles, roles.BASE), roles.row_of(rows_roles, roles.CEILING)
    rows = []
    for stage, role in rows_roles.items():
        if role == roles.BOUND:
            rows.append(_bound_row(comparison, stage, ceiling, scores, bootstrap))
            continue
        stage_means = full_depth(means.loc[stage]) if role == roles.CEILING else means.loc[stage]
        previous = parents.get(stage) if role == roles.STAGE else None
        rows.append(_row(comparison, stage_means, stage, role, scores, bootstrap, base, previous))
    summary = pd.DataFrame(rows)
    by_stage = summary.set_index("stage")
    floor = roles.row_of(rows_roles, roles.FLOOR)
    for score in scores:
        column = position_column(score)
        top = roles.row_of(rows_roles, roles.BOUND if score.correlation else roles.CEILING)
        if column and floor in by_stage.index and top in by_stage.index:
            low, high = by_stage.loc[floor, score.name], by_stage.loc[top, score.name]
            summary.insert(
                summary.columns.get_loc(f"{score.name}_ci_high") + 1, column, (summary[score.name] - low) / (high - low)
            )
    return summary


def by_dose(comparison: pd.DataFrame, doses: pd.Series) -> pd.DataFrame:
    """Mean of every correlation score of the catalogue per stage and dose (``doses``:
    perturbation -> dose), and how many scores (perturbations x seeds) each mean is over."""
    scores = comparison[comparison["metric"].isin(CORRELATIONS)]
    scores = scores.assign(dose=scores["perturbation"].map(doses)).dropna(subset=["dose"])
    grouped = scores.groupby(["stage", "dose", "metric"], sort=False)["value"]
    table = grouped.mean().unstack("metric")[[m for m in CORRELATIONS if m in set(scores["metric"])]]
    counts = scores[scores["metric"] == PRIMARY_METRIC].groupby(["stage", "dose"], sort=False).size()
    return table.assign(n_scores=counts).reset_index().rename_axis(columns=None)


def adapted(settings: dict) -> str:
    """What a stage trains, in a few words: its adapters and where they go, or the weights it
    trains whole, and the plate classifier when it trains one (settings from before
    ``full_groups``, ``use_dora`` and ``plate_adversarial`` read as their defaults)."""
    if settings.get("adaptation") == "full":
        groups = settings.get("full_groups") or []
        words = "whole: " + ", ".join(groups) if groups else "every weight"
    else:
        lora = settings["lora"]
        words = f"{'DoRA' if lora.get('use_dora') else 'LoRA'} r{lora['rank']}: " + ", ".join(lora["targets"])
    return words + (" + plate adversary" if settings["loss"].get("plate_adversarial") else "")


def adaptations(stage_summaries: dict[str, list[dict]], rows_roles: dict[str, str]) -> dict[str, str]:
    """What each report row trained (:func:`adapted`): "nothing" for the untuned base; the
    baselines and the rows of real data have no entry."""
    words = {stage: adapted(replicates[0]["settings"]) for stage, replicates in stage_summaries.items()}
    return {**words, **{row: "nothing" for row, role in rows_roles.items() if role == roles.BASE}}


def trainable_parameters(stage_summaries: dict[str, list[dict]], rows_roles: dict[str, str]) -> dict[str, int]:
    """The weights each report row trained: a fine-tuned stage's count (every replicate trains
    the same), 0 for the untuned base; the baselines and the rows of real data have none."""
    counts = {stage: replicates[0]["parameters"]["trainable"] for stage, replicates in stage_summaries.items()}
    return {**counts, **{row: 0 for row, role in rows_roles.items() if role == roles.BASE}}


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
                "loss (base / delta_mse / delta_pearson)": LOSS_WEIGHTS.format(**settings["loss"]),
                "diversity": settings["loss"].get("diversity", 0.0),
                "adapted": adapted(settings),
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
    rows = [{"step": f"finetune {stage}", **replicates[0]["pairing"]} for stage, replicates in stage_summaries.items()]
    rows += [
        {
            "step": f"infer {stage}",
            "strategy": info["mode"],
            "n_perturbed": info["n_predicted"],
            "n_controls": info["n_controls"],
            "fallback_cells": info["fallback_cells"],
        }
        for stage, info in inference.items()
    ]
    columns = ["step", "strategy", "n_groups", "n_controls", "n_perturbed", "fallback_cells", "fallback_groups"]
    return pd.DataFrame(rows).reindex(columns=columns)


def matching_table(matching: dict[str, dict]) -> pd.DataFrame:
    """Plate-matched scoring per stage: plates scored, plates skipped (no controls or one drug), cells
    lost, and plates scored against the pooled Systema reference (no training perturbation there)."""
    return pd.DataFrame(
        [
            {
                "stage": stage,
                "plates_scored": info["batches"],
                "plates_skipped": len(info.get("skipped_batches", [])),
                "test_cells_skipped": info.get("skipped_cells", 0),
                "plates_with_pooled_reference": len(info.get("reference_fallback_plates", [])),
            }
            for stage, info in matching.items()
        ]
    )


def mean_effects(
    path: str, perturbation_col: str, control: str, perturbations: list[str], genes: pd.Index
) -> pd.DataFrame:
    """Mean expression of each of ``perturbations`` minus the control mean (perturbations x
    ``genes``) in the .h5ad at ``path``, read a chunk of their rows at a time.

    For the predicted-vs-real figure only; scores always come from cell-eval.
    """
    obs, var = read_obs_var(path)
    with h5py.File(path, "r") as f:
        labels = obs[perturbation_col].astype(str)
        codes = pd.Categorical(labels, categories=[control, *perturbations]).codes.astype(np.int64)
        rows = np.flatnonzero(codes >= 0)
        counts = np.bincount(codes[rows], minlength=len(perturbations) + 1)
        means = np.zeros((len(perturbations) + 1, len(var)))
        for lo, hi, block in row_chunks(f["X"], rows):
            means += group_means(block, codes[rows[lo:hi]], len(means), counts=counts)
    columns = var.index.get_indexer(genes)
    if (columns < 0).any():
        raise InputDataError(f"{path} lacks {int((columns < 0).sum())} of the data's genes: it was made for other data")
    return pd.DataFrame(means[1:, columns] - means[0, columns], index=perturbations, columns=genes)
