"""Two runs side by side: their ``summary.csv`` rows matched by stage, on every score of the
catalogue (:mod:`deltatune.metrics`).

For questions like "what did the larger base model change?": each run keeps its own intervals,
and each score's difference column is B minus A. Stages present in only one run are kept, with
blanks; a score only one run has (the plate-matched ones need a plate column) is left out.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InputDataError
from ..files import atomic_path
from ..metrics import PRIMARY_METRIC, SCORES


def summary_path(results: str | Path) -> Path:
    """``summary.csv`` of a ``results/<run>`` folder or of its ``report/`` folder."""
    folder = Path(results)
    for candidate in (folder / "report" / "summary.csv", folder / "summary.csv"):
        if candidate.exists():
            return candidate
    raise InputDataError(f"{folder} holds no report/summary.csv: is it a finished deltatune run?")


def _run_name(path: Path) -> str:
    return path.parent.parent.name if path.parent.name == "report" else path.parent.name


def tested_perturbations(summary: Path) -> set[str]:
    """The perturbations a run scored (``comparison.csv`` beside its ``summary.csv``)."""
    table = summary.with_name("comparison.csv")
    if not table.exists():
        raise InputDataError(
            f"{table} is missing: without it the runs' test sets cannot be checked (pass "
            "--allow-different-tests to compare the summaries anyway)"
        )
    return set(pd.read_csv(table, usecols=["perturbation"], dtype=str)["perturbation"])


def _check_same_tests(paths: tuple[Path, Path]) -> None:
    """Scores over different test perturbations are not comparable: stop, naming the difference."""
    a, b = (tested_perturbations(p) for p in paths)
    if a != b:
        only_a, only_b = sorted(a - b), sorted(b - a)
        raise InputDataError(
            f"the runs were scored on different test perturbations ({len(only_a)} only in {paths[0]}, e.g. "
            f"{only_a[:3]}; {len(only_b)} only in {paths[1]}, e.g. {only_b[:3]}): their scores are not "
            "comparable. Fix the split (preprocess.split.test or .toml), or pass --allow-different-tests"
        )


def compare_runs(a: str | Path, b: str | Path, allow_different_tests: bool = False) -> pd.DataFrame:
    """One row per stage of either run (A's order, then B's extra stages); per score of the
    catalogue that both runs have (pooled, plate-matched, Systema's), each run's mean and
    interval, then B minus A. Runs scored on different test perturbations are refused unless
    ``allow_different_tests``."""
    paths = summary_path(a), summary_path(b)
    if not allow_different_tests:
        _check_same_tests(paths)
    names = [_run_name(p) for p in paths]
    if names[0] == names[1]:
        names = [f"{names[0]}_A", f"{names[1]}_B"]
    summaries = [pd.read_csv(p).set_index("stage") for p in paths]
    for path, summary in zip(paths, summaries, strict=True):
        if PRIMARY_METRIC not in summary:
            raise InputDataError(f"{path} lacks column {PRIMARY_METRIC}: is it a deltatune summary?")
    order = list(dict.fromkeys([*summaries[0].index, *summaries[1].index]))
    table = pd.DataFrame(index=pd.Index(order, name="stage"))
    for score in (s.name for s in SCORES if all(s.name in summary for summary in summaries)):
        for name, summary in zip(names, summaries, strict=True):
            for column in (score, f"{score}_ci_low", f"{score}_ci_high"):
                if column in summary:
                    table[f"{column} [{name}]"] = summary[column]
        table[f"{score} difference (B - A)"] = table[f"{score} [{names[1]}]"] - table[f"{score} [{names[0]}]"]
    return table.reset_index()


def compare_files(
    a: str | Path, b: str | Path, *, out: str | Path, allow_different_tests: bool = False
) -> pd.DataFrame:
    """:func:`compare_runs` of two results folders, written to ``out`` (.csv) and returned."""
    table = compare_runs(a, b, allow_different_tests)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table
