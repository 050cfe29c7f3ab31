"""Scoring predictions with cell-eval, never with metrics of our own.

Every score is cell-eval's, computed on the sides :mod:`.pairs` builds: the mean-based metrics
on one row per perturbation (its mean over every scored cell), the cell-level ones on a capped
sample of cells. Pooled over all controls, a drug's real delta contains the offsets of the plates
it sits on. The plate-matched scores run cell-eval once per plate, on that plate's perturbation
means against that plate's own control mean, and average the delta metrics over plates with
cell-count weights. Beside them, each side gets the scores for what every perturbation shares
(:mod:`.systematic`): cell-eval's ``pearson_delta`` against Systema's reference (the training
perturbations' mean centroid, :mod:`.reference`) instead of the controls, and the correlation
between perturbations' deltas. A correlation whose predicted vector has no signal scores 0 and
is marked (:func:`.systematic.without_signal`). The noise ceiling scores disjoint halves of the real
cells against each other the same way: means of every cell, a capped sample for DE.
"""

from __future__ import annotations

import functools
import tempfile

import anndata as ad
import numpy as np
import pandas as pd

from ..errors import SettingsError
from ..metrics import MATCHED_SUFFIX, PERTURBED_MEAN, PRIMARY_METRIC, no_signal
from ..settings import Columns, EvaluateSettings
from ..settings.evaluate import PROFILES_WITHOUT_DE
from .pairs import Bulk, Pair, bulk_pair, cell_sample, for_cell_eval, real_cell_sample, split_half_bulk
from .reference import Reference
from .systematic import centred_on_reference, delta_correlations, labels_without_signal

# cell-eval's AnnData metrics that read cells: energy distance (distances between cells), and the
# clustering of perturbation centroids (Leiden, which rounding-level changes to the centroids can
# flip, so the centroids stay cell-eval's own, from cells)
CELL_METRICS = ("pearson_edistance", "clustering_agreement")
PROFILES_WITH_CELL_METRICS = ("anndata", "full", "minimal", "vcc", "de")  # edistance or DE metrics


@functools.cache
def _cache_graph_compilation() -> None:
    """Keep numba's compiled code of the neighbour-graph functions on disk, across processes.

    cell-eval's clustering_agreement clusters perturbation centroids on scanpy's neighbour graph,
    whose umap and pynndescent functions are numba functions without numba's cache: every
    evaluation and ceiling job compiled them again, about 9 s of a 16 s job on the tiny config
    (measured on a 2-core VM). With numba's own cache (``enable_caching``: the compiled machine
    code written beside the function's source, or under ``NUMBA_CACHE_DIR``) the first job
    compiles and the others load; the numbers are the same code's. Where no cache folder is
    writable numba refuses, and every job compiles as before.
    """
    import pynndescent.utils
    import umap.umap_

    for function in (umap.umap_.smooth_knn_dist, umap.umap_.compute_membership_strengths, pynndescent.utils.make_heap):
        try:
            function.enable_caching()
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            return


def _metric_names() -> tuple[list[str], list[str]]:
    """cell-eval's DE metrics and its AnnData-pair metrics, in its registry's order."""
    from cell_eval import (  # heavy import (numba), only where it is needed
        MetricType,
        metrics_registry,
    )

    return metrics_registry.list_metrics(MetricType.DE), metrics_registry.list_metrics(MetricType.ANNDATA_PAIR)


def _compute(
    real: ad.AnnData,
    pred: ad.AnnData,
    columns: Columns,
    profile: str,
    skip: list[str],
    threads: int,
    skip_de: bool,
    ceiling_seed: int | None = None,
) -> pd.DataFrame:
    """cell-eval's per-perturbation results of ``profile`` less ``skip`` (or its split-half ceiling)."""
    from cell_eval import MetricsEvaluator

    _cache_graph_compilation()

    with tempfile.TemporaryDirectory(prefix="cell-eval-") as outdir:
        evaluator = MetricsEvaluator(
            adata_pred=pred,
            adata_real=real,
            control_pert=columns.control,
            pert_col=columns.perturbation,
            num_threads=threads,
            outdir=outdir,
            skip_de=skip_de,
        )
        if ceiling_seed is None:
            results, _ = evaluator.compute(profile=profile, skip_metrics=skip, write_csv=False)
        else:
            results, _ = evaluator.compute_ceiling(
                profile=profile, skip_metrics=skip, seed=ceiling_seed, write_csv=False
            )
    return results.to_pandas()


def _zero_without_signal(table: pd.DataFrame, metric: str, labels: np.ndarray) -> pd.DataFrame:
    """``table`` with ``metric`` set to 0 for the perturbations in ``labels`` (their prediction has
    no signal to correlate), which its ``no_signal_`` column marks."""
    if metric not in table:
        return table
    flat = table["perturbation"].isin(set(labels)).to_numpy()
    table.loc[flat, metric] = 0.0
    return table.assign(**{no_signal(metric): flat.astype(np.float64)})


def _systema_score(bulk: Bulk, reference: np.ndarray, columns: Columns, threads: int) -> pd.DataFrame:
    """cell-eval's ``pearson_delta`` of ``bulk``'s perturbations against ``reference`` on both
    sides: Systema's centred score (:mod:`.systematic`)."""
    _, anndata = _metric_names()
    real, pred, flat = centred_on_reference(bulk, reference, columns)
    skip = [m for m in anndata if m != PRIMARY_METRIC]
    table = _compute(real, pred, columns, "anndata", skip, threads, skip_de=True)
    table = table[["perturbation", PRIMARY_METRIC]].rename(columns={PRIMARY_METRIC: PERTURBED_MEAN})
    return _zero_without_signal(table, PERTURBED_MEAN, flat)


def _merge(parts: list[pd.DataFrame]) -> pd.DataFrame:
    scores = parts[0]
    for part in parts[1:]:
        scores = scores.merge(part, on="perturbation", how="outer")
    return scores


def score(pair: Pair, reference: Reference, settings: EvaluateSettings, threads: int) -> pd.DataFrame:
    """Per-perturbation cell-eval metrics of ``settings.profile`` against pooled controls, then
    Systema's score against the pooled ``reference`` and the delta correlations (one row per
    perturbation)."""
    de, anndata = _metric_names()
    columns = pair.columns
    bulk = bulk_pair(pair, [columns.perturbation])
    parts = []
    if settings.profile != "de":
        table = _compute(bulk.real, bulk.pred, columns, settings.profile, [*de, *CELL_METRICS], threads, skip_de=True)
        parts.append(_zero_without_signal(table, PRIMARY_METRIC, labels_without_signal(bulk, columns)))
    if settings.profile in PROFILES_WITH_CELL_METRICS:
        real, pred = cell_sample(pair, settings)
        skip = [m for m in anndata if m not in CELL_METRICS]
        parts.append(
            _compute(
                for_cell_eval(real, columns),
                for_cell_eval(pred, columns),
                columns,
                settings.profile,
                skip,
                threads,
                skip_de=settings.profile in PROFILES_WITHOUT_DE,
            )
        )
    scores = _merge(parts)
    order = {name: i for i, name in enumerate([*de, *anndata])}  # cell-eval's own column order
    ordered = sorted(scores.columns.drop("perturbation"), key=lambda c: order.get(c, len(order)))
    scores = scores[["perturbation", *ordered]]
    systema = _systema_score(bulk, reference.pooled, columns, threads)
    return _merge([scores, systema, delta_correlations(bulk, columns)])


def usable_batches(batch: np.ndarray, labels: np.ndarray, n_cells: np.ndarray, control: str) -> tuple[list[str], dict]:
    """The batches that can be scored on their own, and what was skipped.

    ``batch``, ``labels`` and ``n_cells`` describe groups (or single cells, with ``n_cells`` 1).
    A batch needs its own controls and at least two perturbations (cell-eval's discrimination
    metrics compare perturbations with each other).
    """
    table = pd.DataFrame({"batch": batch, "label": labels, "n": n_cells, "control": labels == control})
    controls = table[table["control"]].groupby("batch")["n"].sum()
    perts = table[~table["control"]].groupby("batch")["label"].nunique()
    plates = perts.index.union(controls.index)
    usable = plates[controls.reindex(plates, fill_value=0).gt(0) & perts.reindex(plates, fill_value=0).ge(2)]
    skipped = perts.index.difference(usable)
    info = {
        "batches": len(usable),
        "skipped_batches": sorted(skipped),
        "skipped_cells": int(table.loc[~table["control"] & table["batch"].isin(skipped), "n"].sum()),
    }
    return sorted(usable), info


def _plate_average(parts: list[pd.DataFrame], metrics: list[str]) -> pd.DataFrame:
    """Each of ``metrics`` averaged over plates, weighted by the perturbation's cells in each."""
    scores = pd.concat(parts, ignore_index=True)
    weighted = scores[metrics].mul(scores["weight"], axis=0).assign(perturbation=scores["perturbation"])
    weights = scores.groupby("perturbation")["weight"].sum()
    matched = weighted.groupby("perturbation")[metrics].sum().div(weights, axis=0)
    return matched.add_suffix(MATCHED_SUFFIX).reset_index()


def _each_plate(bulk: Bulk, columns: Columns, score_plate) -> tuple[pd.DataFrame, dict, list[str]]:
    """``score_plate(plate, plate's bulk)`` on every usable plate of a (plate, perturbation)
    ``bulk``, averaged over plates; what was skipped; and the plates scored."""
    labels = bulk.keys[columns.perturbation].to_numpy()
    plates, info = usable_batches(
        bulk.keys[columns.batch].to_numpy(), labels, bulk.keys["n_cells"].to_numpy(), columns.control
    )
    parts = []
    for plate in plates:
        rows = (bulk.keys[columns.batch] == plate).to_numpy()
        table = score_plate(plate, bulk.rows(rows))
        weights = pd.Series(bulk.keys["n_cells"].to_numpy()[rows], index=labels[rows])
        parts.append(table.assign(weight=table["perturbation"].map(weights).to_numpy()))
    if not parts:  # no plate has its own controls and two test perturbations: no matched score
        return pd.DataFrame({"perturbation": pd.Series(dtype=str)}), info, plates
    return _plate_average(parts, [c for c in parts[0].columns if c not in ("perturbation", "weight")]), info, plates


def _plate_delta_scores(plate: str, bulk: Bulk, reference: Reference, columns: Columns, threads: int) -> pd.DataFrame:
    """cell-eval's delta metrics of one plate's (perturbation) ``bulk`` against its own control
    mean, and Systema's score against the plate's own reference (the pooled one where the plate
    has no training perturbation)."""
    _, anndata = _metric_names()
    skip = [m for m in anndata if "delta" not in m]
    table = _compute(bulk.real, bulk.pred, columns, "anndata", skip, threads, skip_de=True)
    table = _zero_without_signal(table, PRIMARY_METRIC, labels_without_signal(bulk, columns))
    systema = _systema_score(bulk, reference.of_plate(plate), columns, threads)
    return table.merge(systema, on="perturbation", how="left")


def _matched(bulk: Bulk, reference: Reference, columns: Columns, threads: int) -> tuple[pd.DataFrame, dict]:
    """:func:`_plate_delta_scores` on every usable plate of a (plate, perturbation) ``bulk``,
    averaged over plates with cell-count weights; and what was skipped."""
    if not columns.batch:
        raise SettingsError("plate-matched scores need data.columns.batch")

    def score_plate(plate: str, plate_bulk: Bulk) -> pd.DataFrame:
        return _plate_delta_scores(plate, plate_bulk, reference, columns, threads)

    matched, info, scored = _each_plate(bulk, columns, score_plate)
    return matched, info | {"reference_fallback_plates": reference.fallbacks(scored)}


def score_matched(pair: Pair, reference: Reference, threads: int) -> tuple[pd.DataFrame, dict]:
    """Plate-matched delta metrics per perturbation, and the batches skipped.

    cell-eval runs on every usable plate alone: its perturbations' means against its own control
    mean (the prediction carries the same real controls), and against the plate's own Systema
    reference (the pooled one where the plate has no training perturbation, counted).
    """
    return _matched(bulk_pair(pair, [pair.columns.batch, pair.columns.perturbation]), reference, pair.columns, threads)


def ceiling_scores(
    real: ad.AnnData, reference: Reference, columns: Columns, settings: EvaluateSettings, threads: int, seed: int
) -> pd.DataFrame:
    """The real cells split into disjoint halves, one scored as the prediction of the other, by
    the same scores as a prediction: half-depth values per perturbation, pooled and plate-matched.

    Like an evaluation, the mean-based scores (cell-eval's, and Systema's) read every cell's
    contribution to its half's mean (``real.X`` may be CSR: nothing dense of cells x genes), and
    the DE metrics of a profile with DE read a capped, seeded sample of the cells
    (``evaluation.cell_cap`` and ``control_cap``), split in halves by cell-eval's own
    ``compute_ceiling``. The halves are drawn as cell-eval draws them (``floor(n / 2)`` cells of
    each group to each, groups of one cell left out). cell-eval gives the cell-level metrics
    (``pearson_edistance``, ``clustering_agreement``) no ceiling, so they are not computed. The
    report maps the values to full depth with cell-eval's Spearman-Brown correction and derives
    the bound for a noise-free prediction from them.
    """
    de, anndata = _metric_names()
    halves = split_half_bulk(real, [columns.perturbation], seed)
    table = _compute(halves.real, halves.pred, columns, settings.profile, [*de, *CELL_METRICS], threads, skip_de=True)
    parts = [table, _systema_score(halves, reference.pooled, columns, threads)[["perturbation", PERTURBED_MEAN]]]
    if settings.profile not in PROFILES_WITHOUT_DE:
        sample = real_cell_sample(real, columns, settings)
        parts.append(_compute(sample, sample, columns, settings.profile, anndata, threads, False, ceiling_seed=seed))
    pooled = _merge(parts)
    if not columns.batch:
        return pooled
    by_plate = split_half_bulk(real, [columns.batch, columns.perturbation], seed)
    matched, _ = _matched(by_plate, reference, columns, threads)
    kept = [c for c in matched.columns if c == "perturbation" or not c.startswith("no_signal_")]
    return pooled.merge(matched[kept], on="perturbation", how="left")


def score_prediction(
    pair: Pair, reference: Reference, settings: EvaluateSettings, threads: int
) -> tuple[pd.DataFrame, dict]:
    """Per-perturbation pooled scores, joined by the plate-matched ones when the data has plates.

    Returns the table (one row per test perturbation) and what plate matching used and skipped.
    """
    scores = score(pair, reference, settings, threads)
    if not pair.columns.batch:
        return scores, {"batches": 0}
    matched, matching = score_matched(pair, reference, threads)
    return scores.merge(matched, on="perturbation", how="left"), matching
