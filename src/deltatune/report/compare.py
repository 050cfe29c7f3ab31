"""Two runs side by side: their ``summary.csv`` rows matched by stage.

For questions like "what did the larger base model change?": each run keeps its own intervals,
and the difference column is B minus A. Stages present in only one run are kept, with blanks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InputDataError
from ..evaluate import PRIMARY_METRIC

COMPARED = (PRIMARY_METRIC, f"{PRIMARY_METRIC}_ci_low", f"{PRIMARY_METRIC}_ci_high", "mse")


def summary_path(results: str | Path) -> Path:
    """``summary.csv`` of a ``results/<run>`` folder or of its ``report/`` folder."""
    folder = Path(results)
    for candidate in (folder / "report" / "summary.csv", folder / "summary.csv"):
        if candidate.exists():
            return candidate
    raise InputDataError(f"{folder} holds no report/summary.csv: is it a finished deltatune run?")


def _run_name(path: Path) -> str:
    return path.parent.parent.name if path.parent.name == "report" else path.parent.name


def compare_runs(a: str | Path, b: str | Path) -> pd.DataFrame:
    """One row per stage of either run (A's order, then B's extra stages) with both runs' scores."""
    paths = summary_path(a), summary_path(b)
    names = [_run_name(p) for p in paths]
    if names[0] == names[1]:
        names = [f"{names[0]}_A", f"{names[1]}_B"]
    tables = []
    for path, name in zip(paths, names, strict=True):
        summary = pd.read_csv(path)
        missing = [c for c in ("stage", PRIMARY_METRIC) if c not in summary]
        if missing:
            raise InputDataError(f"{path} lacks column(s) {missing}")
        kept = summary[["stage", *[c for c in COMPARED if c in summary]]].set_index("stage")
        tables.append(kept.add_suffix(f" [{name}]"))
    table = tables[0].join(tables[1], how="outer", sort=False)
    order = list(dict.fromkeys([*tables[0].index, *tables[1].index]))
    table = table.loc[order]
    table[f"{PRIMARY_METRIC} difference (B - A)"] = (
        table[f"{PRIMARY_METRIC} [{names[1]}]"] - table[f"{PRIMARY_METRIC} [{names[0]}]"]
    )
    return table.reset_index()
