"""``report.html``: one self-contained page (figures embedded) that a co-author can read alone."""

from __future__ import annotations

import base64
import html
import json

import numpy as np
import pandas as pd

from .. import roles
from ..metrics import (
    CORRELATIONS,
    DELTA_CORRELATION_PREDICTED,
    DELTA_CORRELATION_REAL,
    MATCHED,
    MATCHED_SUFFIX,
    MODE_COLLAPSE,
    PRIMARY_METRIC,
    SCORES,
    no_signal,
)
from ..predict.baselines import BASELINES
from .tables import INTERVAL_NOTE, p_suffix, position_column

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.86em;margin:.8em 0}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#f3f5f7}
figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption{font-size:.88em;color:#555}
.note{background:#f7f7f2;border-left:4px solid #c2a02b;padding:.5em 1em}
.meta{color:#444}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.8em}
.wide{overflow-x:auto}
table.lead td{vertical-align:top}
table.lead .ci{display:block;font-size:.85em;color:#555;white-space:nowrap}
"""

FEW = "\u2020"  # marks an interval over too few test perturbations
THREE_NUMBERS = (
    "<p><b>How to read the scores.</b> The <i>pooled</i> score (cell-eval's <code>pearson_delta</code>) "
    "compares each drug's cells with all control cells, so a drug's real effect also contains the offsets of "
    "the plates it happened to sit on; the <i>plate-matched</i> score compares it with its own plates' "
    "controls only, so it rewards drug effects and not plate structure. The <i>floor</i> "
    "(<code>baseline_plate_control</code>, which predicts no drug effect at all) shows what a score of nothing "
    "looks like on these data. Two rows come from the real cells alone: the <i>ceiling</i> (half of the real "
    "cells predicting the other half, mapped to full depth: how well another replicate of this screen would "
    "score) and the <i>noise-free bound</i> (the square root of that reliability, per perturbation: what the "
    "true effect itself would score against these noisy data). A prediction has no noise of its own, so it can "
    "pass the ceiling; only noise it shares with the data (the same control cells) can lift it above the "
    "bound. <code>_floor_to_bound</code> places every row between floor (0) and bound (1).</p>"
)
SYSTEMATIC = (
    "<p><b>What every perturbation shares.</b> A delta against controls also rewards the part of the effect "
    "that all perturbations share. <i>Systema</i>'s score (Vi\u00f1as Torn\u00e9 et al., Nature Biotechnology "
    "2025; <code>pearson_delta_perturbed_mean</code>) subtracts one reference from both the predicted and the "
    "real profile of each test perturbation: the mean of the training perturbations' real centroids (per plate "
    "for the plate-matched score), and correlates what is left. A prediction whose shared part is wrong keeps "
    "that error and scores lower. <i>Discrimination</i> (cell-eval) asks whether each prediction lies closest "
    "to its own perturbation's real profile (1 = always, 0.5 = chance). <i>Mode collapse</i> is the mean "
    "correlation between the predicted deltas of different perturbations minus the same for the real deltas "
    "(both shown below it): 0 when the predictions are as distinct as the data; collapsed onto one effect, "
    "a prediction scores 1 minus the real correlation.</p>"
)

NO_BATCH = (
    "<p><b>No batch column.</b> The data has no plate or batch column (<code>data.columns.batch: null</code>), "
    "so every score is against pooled controls and there is no plate-matched score. The <i>floor</i> "
    "(<code>baseline_plate_control</code>, here the global control mean: no effect at all), the <i>ceiling</i> "
    "(half of the real cells predicting the other half: another replicate) and the <i>noise-free bound</i> "
    "(what the true effect would score) bound what a score can mean; <code>_floor_to_bound</code> places every "
    "row between floor (0) and bound (1).</p>"
)


def _table(frame: pd.DataFrame, digits: int = 4) -> str:
    """``frame`` as HTML, in a box that scrolls sideways rather than widen the page."""
    table = frame.to_html(
        index=False,
        float_format=lambda v: f"{v:.{digits}g}" if abs(v) < 1e-3 else f"{v:.{digits}f}",
        na_rep="",
        border=0,
        escape=True,
    )
    return f"<div class='wide'>{table}</div>"


def _figure(png: bytes, name: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="fig-{name}"><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _interval(row: pd.Series, metric: str) -> str:
    value, low, high = row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if pd.isna(value):
        return ""
    few = FEW if row[INTERVAL_NOTE] else ""
    interval = "" if pd.isna(low) else f"<span class='ci'>[{low:.3f}, {high:.3f}]{few}</span>"
    correlations = ""
    if metric == MODE_COLLAPSE:
        correlations = (
            f"<span class='ci'>{row[DELTA_CORRELATION_PREDICTED]:.3f} / {row[DELTA_CORRELATION_REAL]:.3f}</span>"
        )
    return f"{value:.3f}{interval}{correlations}"


def lead_table(summary: pd.DataFrame) -> str:
    """The first table: each row's scores of the catalogue with intervals, narrow enough for a page.

    Every number is also in ``summary.csv``; the tests and floor-to-bound positions follow in
    :func:`tests_table`.
    """
    scores = [s for s in SCORES if s.name in summary]
    rows = [
        "<tr>"
        + f"<td>{html.escape(str(row['stage']))}</td>"
        + "".join(f"<td>{_interval(row, s.name)}</td>" for s in scores)
        + f"<td>{int(row['n_perturbations'])}</td></tr>"
        for _, row in summary.iterrows()
    ]
    head = "".join(f"<th>{s.label}</th>" for s in scores)
    parts = [
        "<table class='lead'><thead><tr><th>row</th>",
        head,
        "<th>test<br>perts</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
    ]
    notes = summary.loc[summary[INTERVAL_NOTE].fillna("").astype(bool), ["stage", INTERVAL_NOTE]]
    if len(notes):
        stages = ", ".join(f"<code>{html.escape(s)}</code>" for s in notes["stage"])
        parts.append(
            f"<p class='note'>{FEW} {html.escape(notes[INTERVAL_NOTE].iloc[0])} ({stages}). A bootstrap "
            "resamples the test perturbations; with so few, it cannot see how much another draw of "
            "perturbations would move the score. Keep more perturbations in the test split "
            "(<code>preprocess.split.test_fraction</code>).</p>"
        )
    return "".join(parts)


def tests_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per row and score: position between floor and bound (or ceiling), and the paired tests,
    each p-value shown with its Benjamini-Hochberg q-value over every test of the table."""
    columns = ["stage"]
    for score in SCORES:
        suffix = p_suffix(score.name)
        columns += [c for c in [position_column(score)] if c]
        columns += [f"p_vs_base{suffix}", f"p_vs_previous{suffix}"] if score.tested else []
    return with_q_values(summary[[c for c in [*columns, "mse", "n_replicates"] if c in summary]])


def with_q_values(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each ``p_vs_*`` cell written "p (q ...)": the q-values are scipy's
    Benjamini-Hochberg adjustment (``false_discovery_control``) of all the table's p-values, one
    family, because a reader scans them all for the smallest."""
    from scipy.stats import false_discovery_control

    p_columns = [c for c in table if c.startswith("p_vs_")]
    values = table[p_columns].to_numpy(dtype=float)
    tested = ~np.isnan(values)
    q = np.full_like(values, np.nan)
    if tested.any():
        q[tested] = false_discovery_control(values[tested])
    shown = table.copy()
    for j, column in enumerate(p_columns):
        shown[column] = [
            "" if np.isnan(p) else f"{p:.3g} (q {adjusted:.3g})"
            for p, adjusted in zip(values[:, j], q[:, j], strict=True)
        ]
    return shown


def _no_signal_note(summary: pd.DataFrame) -> str:
    """Which rows had correlations scored 0 because their prediction had nothing to correlate."""
    items, matched = [], False
    for metric in (*CORRELATIONS, DELTA_CORRELATION_PREDICTED):
        column = no_signal(metric)
        if column not in summary:
            continue
        for _, row in summary[summary[column].fillna(0) > 0].iterrows():
            items.append(
                f"<code>{html.escape(str(row['stage']))}</code> {html.escape(metric)} "
                f"({row[column]:.0%} of test perturbations)"
            )
            matched |= metric.endswith(MATCHED_SUFFIX)
    weighting = " (for a plate-matched score, weighted by cells over plates)" if matched else ""
    if not items:
        return ""
    return (
        "<p class='note'><b>Scored 0: nothing to correlate.</b> Where a prediction is constant over genes up "
        "to rounding (the floor against its own plate's controls predicts each plate's control mean, a delta of "
        "0), a correlation with it is undefined; it is scored 0 (it explains nothing), not computed from "
        f"rounding noise: {'; '.join(items)}{weighting}.</p>"
    )


def _above_bound_warning(summary: pd.DataFrame, rows_roles: dict[str, str]) -> str:
    """A warning for every row that scores above the noise-free bound of a correlation score."""
    table = summary.set_index("stage")
    bound = roles.row_of(rows_roles, roles.BOUND)
    if bound not in table.index:
        return ""
    above = [
        f"<code>{html.escape(stage)}</code> on {html.escape(metric)} ({table.loc[stage, metric]:.3f} &gt; "
        f"{table.loc[bound, metric]:.3f})"
        for metric in CORRELATIONS
        if metric in table
        for stage in table.index
        if rows_roles[stage] not in roles.FROM_REAL_DATA and table.loc[stage, metric] > table.loc[bound, metric]
    ]
    if not above:
        return ""
    return (
        "<p class='note'><b>Above the noise-free bound.</b> No prediction should score above what the true "
        f"effect would: {'; '.join(above)}. Such a prediction shares noise with the real data it is scored "
        "against (the same control cells, a reference from the same plates), or the bound is poorly estimated "
        "(few cells per perturbation, few ceiling splits: <code>evaluation.ceiling_splits</code>).</p>"
    )


def _codes(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(f"<code>{html.escape(str(n))}</code>" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _sources(context: dict) -> str:
    """What the run was made of: simulated or named input files, the base model, the date."""
    data = context["data"]
    if data is None:
        what = "<b>simulated data</b> (the embedded default's synthetic screen: not a biological result)"
    else:
        what = "data " + _codes([data] if isinstance(data, str) else list(data), limit=3)
    checkpoint = context["checkpoint"]
    base = (
        f"the checkpoint <code>{html.escape(checkpoint)}</code>"
        if checkpoint
        else "a base model pretrained in this run on the other lines"
    )
    return f"<p class='meta'>Made from {what}, fine-tuning {base}; report written {html.escape(context['date'])}.</p>"


def _mixed_code_note(mixed: dict[str, dict]) -> str:
    """A warning when the folder's models were trained, or the report written, by different code."""
    if not mixed:
        return ""

    def version(code: dict) -> str:
        commit = (code["commit"] or "no commit")[:10] + (" (dirty)" if code["dirty"] else "")
        image = f", image {code['image']}" if code.get("image") else ""
        return f"deltatune {code['deltatune']}, {commit}{image}"

    by_version: dict[str, list[str]] = {}
    for name, code in mixed.items():
        by_version.setdefault(version(code), []).append(name)
    items = "; ".join(f"{html.escape(v)}: {_codes(names, limit=6)}" for v, names in by_version.items())
    return (
        "<p class='note'><b>Mixed code versions.</b> This folder's models and report were made by different "
        f"code ({items}). A <code>git pull</code> or a changed library default does not rerun finished jobs: "
        "rerun the older ones (<code>snakemake --forcerun</code>) before comparing them.</p>"
    )


def _leakage_note(context: dict) -> str:
    """Whether the base model may have trained on the target line's test perturbations
    (:func:`deltatune.data.leakage.leakage`): said in the header, as a warning where it may have."""
    line = html.escape(context["target_cell_line"])
    if not context["checkpoint"]:
        return ""  # our own base trains on the other lines only (preprocess.base_cell_lines)
    found = context["leakage"]
    if found is None:
        return (
            "<p class='note'><b>Leakage unknown.</b> No training split of the checkpoint was found: its run records "
            "none, or records a split file (<code>data.kwargs.toml_config_path</code> in its <code>config.yaml</code>) "
            "that is neither at that path nor beside the run or one folder up. It may have trained on "
            f"<b>{line}</b> and on its test perturbations, and would then be scored on cells it has seen. Put its "
            "split file beside the run to have it checked, or ask whoever trained it.</p>"
        )
    source = f"<code>{html.escape(found['split_file'])}</code>"
    seen = found["test_perturbations_seen"]
    if found["target_line"] == "zeroshot":
        return (
            f"<p class='meta'>The checkpoint's split ({source}) held <b>{line}</b> out whole: it never trained "
            "on it.</p>"
        )
    if not seen:
        return (
            f"<p class='meta'>The checkpoint's split ({source}) held out every test perturbation of <b>{line}</b>; "
            "it trained on the line's other perturbations and its controls.</p>"
        )
    if found["target_line"] == "fewshot":
        how = f"trained on <b>{line}</b> except its listed perturbations, and did not hold out"
    else:
        how = f"does not hold <b>{line}</b> out: if its training data held the line, it trained on"
    return (
        f"<p class='note'><b>Leakage.</b> The checkpoint's split ({source}) {how} {len(seen)} of this run's "
        f"{found['n_test_perturbations']} test perturbations ({_codes(seen)}). The base model's scores on them may "
        "measure recall, not prediction; fix the split to its held-out list with "
        "<code>preprocess.split.toml</code>, or report it.</p>"
    )


def _unseen_note(unseen: list[str]) -> str:
    """Which test perturbations the base model never saw (predicted through new, untrained input rows)."""
    if not unseen:
        return ""
    names = ", ".join(f"<code>{html.escape(str(u))}</code>" for u in unseen[:20])
    return (
        f"<p class='note'><b>Unseen by the base model.</b> {len(unseen)} test perturbation(s) contain a label "
        f"the checkpoint never saw ({names}{' ...' if len(unseen) > 20 else ''}). Each such label got a new "
        "input row (<code>base_model.unseen_perturbations: train</code>), which learns only from fine-tuning "
        "cells that carry it; a label in no training cell keeps the row's starting point, the mean of the "
        "known rows. The untuned <code>base</code> row predicts them from that starting point.</p>"
    )


def _plate_warning(summary: pd.DataFrame, rows_roles: dict[str, str]) -> str:
    """A warning when predicting no drug effect beats a model on the pooled score."""
    table = summary.set_index("stage")
    floor_row = roles.row_of(rows_roles, roles.FLOOR)
    if floor_row not in table.index:
        return ""
    floor = table.loc[floor_row, PRIMARY_METRIC]
    models = [s for s in table.index if rows_roles[s] in (roles.BASE, roles.STAGE)]
    beaten = [s for s in models if table.loc[s, PRIMARY_METRIC] < floor]
    if not beaten:
        return ""
    return (
        f"<p class='note'><b>Plate confounding.</b> Predicting no drug effect at all (<code>{floor_row}</code>, "
        f"{floor:.3f}) scores above {', '.join(f'<code>{html.escape(s)}</code>' for s in beaten)} on the pooled "
        "score: on these data the pooled number largely measures plate structure. Read the plate-matched "
        "column.</p>"
    )


def _baselines_note(rows_roles: dict[str, str]) -> str:
    """What each baseline of the run predicts (:data:`deltatune.predict.baselines.BASELINES`)."""
    kinds = [row for row, role in rows_roles.items() if roles.is_baseline(role)]
    if not kinds:
        return ""
    each = ", ".join(f"<code>{html.escape(kind)}</code> {html.escape(BASELINES[kind].description)}" for kind in kinds)
    return (
        "<p class='note'>Baselines predict each test cell as its plate's control mean plus a fixed effect: "
        f"{each}. A stage below them has learned less than these rules of thumb.</p>"
    )


def _findings(summary: pd.DataFrame, rows_roles: dict[str, str]) -> list[str]:
    """Plain statements read off the summary: change against base, and which baselines are cleared."""
    table = summary.set_index("stage")
    base = table[PRIMARY_METRIC].get(roles.row_of(rows_roles, roles.BASE))
    baselines = [s for s in table.index if roles.is_baseline(rows_roles[s])]
    items = []
    for stage, row in table.iterrows():
        if rows_roles[stage] != roles.STAGE:
            continue
        change = row[PRIMARY_METRIC] - base
        cleared = [b for b in baselines if row[f"{PRIMARY_METRIC}_ci_low"] > table.loc[b, f"{PRIMARY_METRIC}_ci_high"]]
        items.append(
            f"<code>{html.escape(stage)}</code>: {change:+.4f} against base ({change / abs(base):+.1%}, "
            f"raw paired p = {row['p_vs_base']:.2g}); clears {len(cleared)} of {len(baselines)} baselines"
            + (f" ({', '.join(cleared)})" if cleared else "")
        )
    return items


def render(
    context: dict,
    summary: pd.DataFrame,
    rows_roles: dict[str, str],
    figures: dict[str, tuple[bytes, str]],
    tables: dict[str, pd.DataFrame],
    provenance: dict,
) -> str:
    """The page: findings and the main figure first, details and provenance after."""
    fig = {name: _figure(png, name, caption) for name, (png, caption) in figures.items()}
    findings = "".join(f"<li>{item}</li>" for item in _findings(summary, rows_roles))
    git = provenance.get("git", {})
    facts = pd.DataFrame(
        [
            ("git commit", f"{git.get('commit')} ({'dirty' if git.get('dirty') else 'clean'})"),
            ("container", json.dumps(provenance.get("container"))),
            ("device", json.dumps(provenance["device"]["training"]) + f" on {provenance['device']['cpu']}"),
            ("run by", "; ".join(i["command"] for i in provenance["invocations"]) or "not recorded"),
            ("packages", ", ".join(f"{k} {v}" for k, v in provenance["packages"].items() if v)),
            (
                "inputs (size, sha256)",
                "; ".join(f"{k}: {v['bytes']:,} B, {v['sha256'][:16]}" for k, v in provenance["inputs"].items()),
            ),
        ],
        columns=["what", "value"],
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>deltatune report: {html.escape(context['run'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>deltatune report: {html.escape(context['run'])}</h1>",
        (
            f"<p>Fine-tuning cell line <b>{html.escape(context['target_cell_line'])}</b>: "
            f"{int(summary['n_perturbations'].max())} held-out test perturbations, predicted from control cells "
            f"(<code>{html.escape(context['inference_mode'])}</code>) and scored with cell-eval "
            f"(profile <code>{html.escape(context['profile'])}</code>); {context['replicates']} replicate seed(s) "
            f"per stage. Intervals are {context['level']:.0%} bootstrap intervals over test perturbations and "
            "seeds; p-values are paired Wilcoxon signed-rank tests over the same perturbations.</p>"
        ),
        _sources(context),
        _mixed_code_note(context["mixed_code"]),
        _leakage_note(context),
        _unseen_note(context["unseen_by_base"]),
        "<h2>Perturbation-effect score by stage</h2>",
        fig["stage_scores"],
        lead_table(summary),
        THREE_NUMBERS if MATCHED in summary else NO_BATCH,
        SYSTEMATIC,
        _no_signal_note(summary),
        _above_bound_warning(summary, rows_roles),
        "<p>Position between floor and bound (ceiling for discrimination), and paired tests against "
        "<code>base</code> and the stage each stage extends, for each score. A position of 0 is the floor "
        "(predicting no drug effect), 1 the bound; below 0 a row scores worse than predicting no effect at all, "
        "above 1 better than the bound allows (see the note on the bound). Each p-value is followed by its "
        "Benjamini-Hochberg q-value over every test in this table: with this many tests, some raw p-values "
        "fall below 0.05 by chance alone.</p>",
        _table(tests_table(summary)),
        _plate_warning(summary, rows_roles),
        f"<ul>{findings}</ul>",
        _baselines_note(rows_roles),
        "<h2>Per perturbation: every stage against the base model</h2>",
        fig["stage_vs_base"],
        "<h2>Predicted against real effect</h2>",
        fig["predicted_vs_real"],
    ]
    if "dose_scores" in fig:
        parts += ["<h2>By dose</h2>", fig["dose_scores"], _table(tables["by_dose"])]
    if "training_curves" in fig:
        parts += ["<h2>Fine-tuning stages</h2>", _table(tables["training"]), fig["training_curves"]]
    if "capacity" in fig:
        parts += [
            "<h2>How much of the model moves</h2>",
            "<p>Each stage's plate-matched score against the number of weights it trained. Read a rung against "
            "the stage it extends with the paired tests above, not by eye: intervals over the same perturbations "
            "overlap even where the paired difference is clear.</p>",
            fig["capacity"],
        ]
    if "search_scores" in fig:
        parts += [
            "<h2>Hyper-parameter search</h2>",
            "<p>Every trial trained the search's start stage with the values shown, on the train split, and was "
            "scored on the validation perturbations only; the chosen trial was retrained with every replicate seed "
            "as <code>tuned</code> and scored once on the test perturbations, in the tables above.</p>",
            fig["search_scores"],
            _table(tables["search"]),
        ]
    parts += [
        "<h2>Control pairing</h2>",
        (
            "<p>Cells whose plate (or group) has no control fall back to a random control (training) or to the "
            "global control mean (inference); their number is counted here.</p>"
        ),
        _table(tables["pairing"]),
    ]
    if MATCHED in summary:
        parts += [
            (
                "<p>Plate-matched scores: plates without controls or with a single test perturbation cannot be "
                "scored on their own and are skipped; a plate without training perturbations has no Systema "
                "reference of its own and is scored against the pooled one.</p>"
            ),
            _table(tables["matching"]),
        ]
    parts += [
        "<h2>Provenance</h2>",
        _table(facts),
        "<details><summary>provenance.json</summary><pre>",
        html.escape(json.dumps(provenance, indent=2)),
        "</pre></details>",
        (
            "<p>Every score, per stage, replicate and perturbation, is in <code>comparison.csv</code>; "
            "<code>summary.csv</code> holds the mean of every cell-eval metric of the profile.</p>"
        ),
        "</body></html>",
    ]
    return "\n".join(parts)
