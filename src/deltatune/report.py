"""The comparison report: one row per stage, the metric that matters first.

``summary.csv`` has a row per stage (``base`` = the untuned model) with the mean over test
perturbations of every cell-eval metric, ``pearson_delta`` first; ``report.md`` puts it in front
of a reader with what each stage changed and how it was trained.
"""

from __future__ import annotations

import pandas as pd

PRIMARY_METRIC = "pearson_delta"


def summarize(metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean of each metric over perturbations, per stage, in the order of ``metrics``."""
    rows = []
    for stage, table in metrics.items():
        numeric = table.drop(columns=["perturbation"], errors="ignore").select_dtypes("number")
        rows.append({"stage": stage, **numeric.mean().to_dict(), "n_perturbations": len(table)})
    summary = pd.DataFrame(rows)
    leading = ["stage", PRIMARY_METRIC]
    return summary[leading + [c for c in summary.columns if c not in leading]]


def training_table(stage_summaries: dict[str, dict]) -> pd.DataFrame:
    """What each fine-tuned stage changed and how it trained (from the stages' summary.json)."""
    rows = []
    for stage, info in stage_summaries.items():
        settings, history = info["settings"], info["final_loss"]
        rows.append(
            {
                "stage": stage,
                "pairing": settings["pairing"],
                "control_input": settings["control_input"],
                "loss (base / delta_mse / delta_pearson)": "{base:g} / {delta_mse:g} / {delta_pearson:g}".format(**settings["loss"]),
                "lora_targets": ", ".join(settings["lora"]["targets"]),
                "trainable_params": info["parameters"]["trainable"],
                "steps": info["steps"],
                "final_loss": round(history["total"], 4),
                "pairing fallback (cells / groups)": "{fallback_cells} / {fallback_groups}".format(**info["pairing"]),
            }
        )
    return pd.DataFrame(rows)


def markdown_report(summary: pd.DataFrame, training: pd.DataFrame, context: dict) -> str:
    """A short report a co-author can read without opening the workflow."""
    metric_cols = ["stage", PRIMARY_METRIC] + [c for c in ("mse", "mae", "n_perturbations") if c in summary]
    base_score = summary.set_index("stage")[PRIMARY_METRIC].get("base")
    lines = [
        f"# deltatune report: {context['run']}",
        "",
        f"Fine-tuning cell line **{context['target_cell_line']}**; "
        f"{int(summary['n_perturbations'].max())} held-out test perturbations, "
        "predicted from their plates' control means and scored with cell-eval "
        f"(profile `{context['profile']}`).",
        "",
        "## Perturbation-effect score by stage",
        "",
        summary[metric_cols].to_markdown(index=False, floatfmt=".4f"),
        "",
    ]
    if base_score is not None:
        lines += [
            f"Change in `{PRIMARY_METRIC}` against the untuned base model ({base_score:.4f}):",
            "",
        ]
        for _, row in summary.iterrows():
            if row["stage"] != "base":
                change = row[PRIMARY_METRIC] - base_score
                lines.append(f"- `{row['stage']}`: {change:+.4f} ({change / abs(base_score):+.1%})")
        lines.append("")
    if summary["stage"].str.startswith("baseline_").any():
        lines += [
            "Baselines predict each test cell as its plate's control mean plus a fixed effect: "
            "`baseline_mean_delta` the average effect of the training drugs, `baseline_other_lines` "
            "the same drug's average effect in the other cell lines. A stage below them has learned "
            "less than these rules of thumb.",
            "",
        ]
    if len(training):
        lines += ["## Fine-tuning stages", "", training.to_markdown(index=False), ""]
    lines += [
        "All metrics, per stage and test perturbation, are in `../metrics/`; "
        "`summary.csv` holds every cell-eval metric of the profile.",
        "",
    ]
    return "\n".join(lines)
