"""The report's figures, as PNG bytes (embedded in report.html and written next to it).

Every figure reads the tidy comparison or the training histories; none computes a score.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import roles
from ..metrics import MATCHED, PRIMARY_METRIC

COLORS = {
    roles.STAGE: "#1f5f8b",
    roles.BASE: "#555555",
    roles.BASELINE: "#c2582b",
    roles.FLOOR: "#c2582b",
    roles.CEILING: "#2e8b57",
    roles.BOUND: "#2e8b57",
}
LOSS_COMPONENTS = ("total", "base", "delta_mse", "delta_pearson", "diversity", "plate_adversarial")
# How the capacity figure marks what a stage trained (report.tables.adapted's words)
ADAPTED_MARKERS = {
    "LoRA": ("o", "LoRA"),
    "DoRA": ("^", "DoRA"),
    "every": ("*", "every weight"),
    "whole": ("s", "one group whole"),
}
ADVERSARY_MARKER = ("D", "+ plate adversary")
OTHER_LINES = "baseline_other_lines"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _log_x_png(fig, ax, xlabel: str, ylabel: str) -> bytes:
    """A one-axis figure on a log x axis, grid and legend to the right, as PNG bytes."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
    return _png(fig)


def _scores(comparison: pd.DataFrame) -> pd.DataFrame:
    return comparison[comparison["metric"] == PRIMARY_METRIC]


def stage_scores(summary: pd.DataFrame, comparison: pd.DataFrame, rows_roles: dict[str, str], level: float) -> bytes:
    """Pooled and plate-matched ``pearson_delta`` per row (stages, baselines, floor, ceiling), with intervals."""
    stages = summary["stage"].tolist()
    metrics = [(PRIMARY_METRIC, "o", "pooled controls", 0.0)]
    if MATCHED in summary:
        metrics.append((MATCHED, "s", "own plate's controls", -0.22))
    y = np.arange(len(stages))[::-1].astype(float)
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(stages) + 1.4))
    per_rep = _scores(comparison).groupby(["stage", "replicate"])["value"].mean()
    for metric, marker, label, offset in metrics:
        for yi, row in zip(y, summary.to_dict("records"), strict=True):
            mean, low, high = row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
            err = [[max(mean - low, 0)], [max(high - mean, 0)]] if np.isfinite([low, high]).all() else None
            color = COLORS[rows_roles[row["stage"]]]
            ax.errorbar(
                mean,
                yi + offset,
                xerr=err,
                fmt=marker,
                color=color,
                capsize=3,
                ms=6,
                mfc="white" if marker == "s" else None,
            )
        ax.plot([], [], marker, color="#444444", mfc="white" if marker == "s" else None, label=label)
    for stage in (s for s in stages if rows_roles[s] not in roles.FROM_REAL_DATA):
        reps = per_rep.loc[stage].to_numpy()
        ax.scatter(
            reps,
            np.full(len(reps), y[stages.index(stage)] + 0.15),
            s=12,
            color=COLORS[rows_roles[stage]],
            alpha=0.6,
            marker="|",
        )
    by_stage = summary.set_index("stage")
    for role, style in ((roles.FLOOR, ":"), (roles.CEILING, "--"), (roles.BOUND, "-.")):
        row = roles.row_of(rows_roles, role)
        if row in by_stage.index:
            ax.axvline(by_stage.loc[row, PRIMARY_METRIC], color=COLORS[role], ls=style, lw=1)
    ax.set_yticks(y, stages)
    ax.set_xlabel(f"{PRIMARY_METRIC}: mean over test perturbations and seeds, {level:.0%} bootstrap interval")
    ax.legend(loc="best", frameon=False, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def stage_vs_base(comparison: pd.DataFrame, rows_roles: dict[str, str]) -> bytes:
    """Per-perturbation ``pearson_delta`` of every stage and baseline against the base model."""
    per_pert = _scores(comparison).groupby(["stage", "perturbation"])["value"].mean().unstack("stage")
    base = roles.row_of(rows_roles, roles.BASE)
    others = [s for s, role in rows_roles.items() if role != roles.BASE and role not in roles.FROM_REAL_DATA]
    ncols = min(3, len(others))
    nrows = -(-len(others) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.2 * nrows), squeeze=False)
    lo, hi = np.nanmin(per_pert.to_numpy()), np.nanmax(per_pert.to_numpy())
    pad = 0.05 * (hi - lo)
    for ax, stage in zip(axes.flat, others, strict=False):
        better = (per_pert[stage] > per_pert[base]).sum()
        ax.scatter(per_pert[base], per_pert[stage], s=14, color=COLORS[rows_roles[stage]], alpha=0.8)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#999999", lw=1)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"{stage}\nabove base: {better} of {per_pert[stage].notna().sum()}", fontsize=9)
        ax.set_xlabel("base", fontsize=8)
        ax.set_ylabel(stage, fontsize=8)
    for ax in axes.flat[len(others) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


def predicted_vs_real(
    real: pd.DataFrame, predicted: dict[str, pd.DataFrame], scores: pd.DataFrame, rows_roles: dict[str, str]
) -> bytes:
    """Predicted against real effect per gene, for a few perturbations (rows) and stages (columns).

    ``real`` and each of ``predicted`` are (perturbations x genes) mean effects; ``scores`` gives
    cell-eval's ``pearson_delta`` (replicate 0) per stage and perturbation for the panel titles.
    """
    stages = list(predicted)
    fig, axes = plt.subplots(
        len(real), len(stages), figsize=(2.3 * len(stages), 2.3 * len(real)), squeeze=False, sharex="row"
    )
    for r, pert in enumerate(real.index):
        x = real.loc[pert].to_numpy()
        for c, stage in enumerate(stages):
            ax = axes[r, c]
            ax.scatter(x, predicted[stage].loc[pert].to_numpy(), s=4, alpha=0.6, color=COLORS[rows_roles[stage]])
            ax.axhline(0, color="#cccccc", lw=0.6)
            ax.axvline(0, color="#cccccc", lw=0.6)
            r_text = f"r = {scores.loc[pert, stage]:.2f}"
            ax.set_title(f"{stage}\n{r_text}" if r == 0 else r_text, fontsize=8)
            ax.tick_params(labelsize=6)
            if c == 0:
                ax.set_ylabel(f"{pert}\npredicted delta", fontsize=7)
            if r == len(real) - 1:
                ax.set_xlabel("real delta", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def dose_scores(table: pd.DataFrame, rows_roles: dict[str, str]) -> bytes:
    """Mean ``pearson_delta`` per dose, one line per stage and baseline."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    cmap = plt.get_cmap("viridis")
    stages = [s for s, role in rows_roles.items() if role not in roles.FROM_REAL_DATA]
    trained = [s for s in stages if rows_roles[s] == roles.STAGE]
    for stage in stages:
        rows = table[table["stage"] == stage].sort_values("dose")
        if stage in trained:
            color, style = cmap(trained.index(stage) / max(1, len(trained) - 1) * 0.85), "-"
        else:
            color, style = COLORS[rows_roles[stage]], "--"
        ax.plot(rows["dose"].astype(float), rows[PRIMARY_METRIC], style, marker="o", color=color, label=stage)
    return _log_x_png(fig, ax, "dose", f"mean {PRIMARY_METRIC}")


def training_curves(histories: dict[str, list[pd.DataFrame]]) -> bytes:
    """Every loss component per optimizer step, one line per stage (mean over replicates)."""
    components = [c for c in LOSS_COMPONENTS if any(c in h[0] for h in histories.values())]
    fig, axes = plt.subplots(1, len(components), figsize=(3.4 * len(components), 3.0), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for i, (stage, replicates) in enumerate(histories.items()):
        mean = pd.concat(replicates).groupby("step").mean(numeric_only=True)
        color = cmap(i / max(1, len(histories) - 1) * 0.85)
        for ax, component in zip(axes[0], components, strict=True):
            if component not in mean:  # a component only some stages have (diversity, plate_adversarial)
                continue
            smooth = mean[component].rolling(max(1, len(mean) // 50), min_periods=1).mean()
            ax.plot(mean.index, smooth, color=color, lw=1.2, label=stage)
    for ax, component in zip(axes[0], components, strict=True):
        ax.set_title(component, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return _png(fig)


def search_scores(trials: pd.DataFrame, metric: str) -> bytes:
    """Validation score of every trial against each searched parameter, the chosen trial marked."""
    parameters = [c for c in trials.columns if c not in ("trial", metric, "n_validation_perturbations", "chosen")]
    fig, axes = plt.subplots(1, len(parameters), figsize=(3.0 * len(parameters), 2.8), squeeze=False, sharey=True)
    chosen = trials["chosen"].astype(bool).to_numpy()
    for ax, name in zip(axes[0], parameters, strict=True):
        values = pd.to_numeric(trials[name], errors="coerce")
        x = values.to_numpy() if values.notna().all() else pd.factorize(trials[name].astype(str))[0]
        ax.scatter(x[~chosen], trials[metric][~chosen], color=COLORS[roles.STAGE], s=22, alpha=0.8)
        ax.scatter(
            x[chosen], trials[metric][chosen], color=COLORS[roles.BASELINE], marker="*", s=120, label="chosen", zorder=3
        )
        if name == "lr" or (values.notna().all() and values.min() > 0 and values.max() / values.min() > 20):
            ax.set_xscale("log")
        ax.set_xlabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{metric}\n(validation perturbations)", fontsize=8)
    axes[0, -1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def _adapted_marker(adapted: str) -> tuple[str, str]:
    if adapted.endswith(" + plate adversary"):
        return ADVERSARY_MARKER
    return ADAPTED_MARKERS[adapted.split(maxsplit=1)[0].rstrip(":")]


def capacity(summaries: dict[str, pd.DataFrame]) -> bytes:
    """Plate-matched ``pearson_delta`` against trainable parameters (log scale), with intervals.

    One colour per run (``summaries``: a label, for example the base model's size, and that run's
    summary.csv): a marker per fine-tuned stage by what it trained, labelled with its name (stages
    training as many weights are drawn side by side, 10% apart); the
    untuned base as a dotted line (it trains nothing, so it has no place on a log axis); the first
    run's ``baseline_other_lines`` and ceiling as lines (they come from the data, not the model).
    """
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    cmap = plt.get_cmap("tab10")
    seen_markers = {}
    for i, (label, summary) in enumerate(summaries.items()):
        color = cmap(i)
        rows = summary.set_index("stage")
        stages = rows[rows["trainable_parameters"] > 0]
        # stages that train as many weights (other pairings or losses) side by side, not on top
        spread = 1.1 ** stages.groupby("trainable_parameters").cumcount()
        for (stage, row), x in zip(stages.iterrows(), stages["trainable_parameters"] * spread, strict=True):
            mean, low, high = row[MATCHED], row[f"{MATCHED}_ci_low"], row[f"{MATCHED}_ci_high"]
            marker, kind = _adapted_marker(row["adapted"])
            seen_markers[kind] = marker
            ax.errorbar(
                x,
                mean,
                yerr=[[max(mean - low, 0)], [max(high - mean, 0)]],
                fmt=marker,
                color=color,
                ms=9 if marker == "*" else 6,
                capsize=3,
                alpha=0.9,
            )
            ax.annotate(stage, (x, mean), xytext=(4, 3), textcoords="offset points", fontsize=6)
        base = rows.loc[rows["trainable_parameters"] == 0, MATCHED]
        if len(base):
            ax.axhline(base.iloc[0], color=color, ls=":", lw=1.2)
        ax.plot([], [], "-", color=color, label=f"{label} (dotted: its untuned base)")
    first = next(iter(summaries.values())).set_index("stage")
    for row, role, style in ((OTHER_LINES, roles.BASELINE, "--"), (roles.CEILING_ROW, roles.CEILING, "-.")):
        if row in first.index:
            ax.axhline(first.loc[row, MATCHED], color=COLORS[role], ls=style, lw=1, label=row)
    for kind, marker in seen_markers.items():
        ax.plot([], [], marker, color="#444444", ls="none", label=kind)
    return _log_x_png(fig, ax, "trainable parameters (log scale)", f"{MATCHED}: mean over test perturbations and seeds")
