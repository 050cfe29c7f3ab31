"""Pairing perturbed cells with control cells, and control means per group, vectorized.

The seed drew one control per perturbed cell in a Python loop, from all controls at random. Here
every cell gets a group code (its plate, cell type, or both, by strategy), controls are sorted
once by group, and a draw for all perturbed cells is one vectorized lookup. A perturbed cell
whose group has no controls falls back to a control drawn from all controls; such cells are
counted so that the report can say how often pairing was not what the strategy promised.

The index also holds the mean control profile of every group (one sparse product), which is
what control-mean training and inference feed the model. It is built once per dataset and
strategy by the ``pair`` rule and saved as ``.npz``; training redraws pairs from it with
a new seed every epoch without rebuilding it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.groups import control_mask, group_codes
from ..data.means import group_means
from ..errors import InputDataError, SettingsError
from ..files import atomic_path
from ..settings import Columns
from ..settings.pairing import STRATEGIES, STRATEGY_COLUMNS

ARRAYS = ("controls", "start", "count", "perturbed", "perturbed_group", "means", "overall")  # an index file's arrays


def obs_digest(obs_names: pd.Index) -> str:
    """Fingerprint of the cell order an index refers to (row numbers are only valid for it)."""
    return hashlib.sha256("\n".join(map(str, obs_names)).encode()).hexdigest()


@dataclass(frozen=True)
class PairingIndex:
    """Controls sorted by group, each perturbed cell's group, and each group's control mean.

    ``controls[start[g]:start[g] + count[g]]`` are the control rows of group ``g``; ``perturbed``
    and ``perturbed_group`` list the perturbed rows and their group. ``means`` is (groups, genes)
    with NaN rows for groups without controls, ``overall`` the mean of all controls; both are set
    by :meth:`with_means`. Row numbers refer to an AnnData of ``n_obs`` cells; a saved index also
    records a digest of their names, checked when it is used.
    """

    strategy: str
    keys: pd.DataFrame
    controls: np.ndarray
    start: np.ndarray
    count: np.ndarray
    perturbed: np.ndarray
    perturbed_group: np.ndarray
    n_obs: int
    means: np.ndarray | None = None
    overall: np.ndarray | None = None
    digest: str | None = None

    @property
    def fallback_cells(self) -> np.ndarray:
        """Mask over ``perturbed``: cells whose group has no control (paired at random)."""
        return self.count[self.perturbed_group] == 0

    def summary(self) -> dict:
        """Counts for the report: groups, and cells and groups that fell back to random."""
        fallback = self.fallback_cells
        return {
            "strategy": self.strategy,
            "n_groups": len(self.count),
            "n_controls": len(self.controls),
            "n_perturbed": len(self.perturbed),
            "fallback_cells": int(fallback.sum()),
            "fallback_groups": int(np.unique(self.perturbed_group[fallback]).size),
        }

    def restrict(self, rows: np.ndarray) -> PairingIndex:
        """The same index over the perturbed rows in ``rows`` only (e.g. the train split)."""
        keep = np.isin(self.perturbed, rows)
        return replace(self, perturbed=self.perturbed[keep], perturbed_group=self.perturbed_group[keep])

    def with_cells_like(self, like: np.ndarray, obs_names: pd.Index) -> PairingIndex:
        """The index over ``len(like)`` perturbed cells appended after the last row, each paired
        like the perturbed row ``like[i]`` (same group); ``obs_names`` names all rows after it."""
        position = np.searchsorted(self.perturbed, like)
        if len(like) and not np.array_equal(self.perturbed[np.minimum(position, len(self.perturbed) - 1)], like):
            raise InputDataError("cells can only be paired like perturbed cells of the index")
        added = np.arange(self.n_obs, self.n_obs + len(like))
        return replace(
            self,
            perturbed=np.concatenate([self.perturbed, added]),
            perturbed_group=np.concatenate([self.perturbed_group, self.perturbed_group[position]]),
            n_obs=self.n_obs + len(like),
            digest=obs_digest(obs_names),
        )

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One control row per perturbed cell (aligned with ``perturbed``)."""
        count = self.count[self.perturbed_group]
        u = rng.random(len(self.perturbed))
        within = self.start[self.perturbed_group] + np.floor(u * count).astype(np.int64)
        anywhere = np.floor(u * len(self.controls)).astype(np.int64)
        return self.controls[np.where(count > 0, within, anywhere)]

    def with_means(self, X) -> PairingIndex:
        """The index with each group's control mean, from ``X`` (dense or sparse, n_obs rows).

        One sparse product over the control rows; perturbed rows are never read.
        """
        if X.shape[0] != self.n_obs:
            raise InputDataError(f"expression has {X.shape[0]} rows, the pairing index {self.n_obs}")
        codes = np.full(self.n_obs, -1, dtype=np.int64)
        codes[self.controls] = np.repeat(np.arange(len(self.count)), self.count)
        means = group_means(X, codes, len(self.count))
        overall = np.nansum(means * self.count[:, None], axis=0) / self.count.sum()
        return replace(self, means=means.astype(np.float32), overall=overall.astype(np.float32))

    def mean_rows(self) -> np.ndarray:
        """Row of :meth:`mean_table` for each perturbed cell: its group, or the overall mean."""
        return np.where(self.count[self.perturbed_group] > 0, self.perturbed_group, len(self.count))

    def mean_table(self) -> np.ndarray:
        """Group means with the overall mean appended as the fallback row (groups + 1, genes)."""
        if self.means is None:
            raise SettingsError("this pairing index holds no control means (build it with_means)")
        return np.vstack([self.means, self.overall[None, :]])

    def check_rows_of(self, obs_names: pd.Index, source: str) -> None:
        """Fail unless this index was built for exactly these cells in this order."""
        same = len(obs_names) == self.n_obs and (self.digest is None or obs_digest(obs_names) == self.digest)
        if not same:
            raise InputDataError(
                f"the pairing index does not belong to {source}: its cells or their order differ; "
                "rebuild it (rule pair)"
            )

    def save(self, path: str | Path, obs_names: pd.Index) -> None:
        """Write the index with its means and a digest of ``obs_names`` (the rows it refers to)."""
        self.check_rows_of(obs_names, "the cells it is saved for")
        arrays = {
            "strategy": np.array(self.strategy),
            "key_columns": np.array(list(self.keys.columns), dtype=str),
            "key_values": (
                self.keys.to_numpy(dtype=str) if len(self.keys.columns) else np.empty((len(self.count), 0), str)
            ),
            "digest": np.array(obs_digest(obs_names)),
            "n_obs": np.array(self.n_obs),
            "means": self.mean_table()[:-1],
            "overall": self.overall,
        }
        for name in ("controls", "start", "count", "perturbed", "perturbed_group"):
            arrays[name] = getattr(self, name)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> PairingIndex:
        """An index written by :meth:`save`; a missing file is an input error naming it."""
        if not Path(path).exists():
            raise InputDataError(f"pairing index {path} does not exist")
        with np.load(path, allow_pickle=False) as z:
            keys = pd.DataFrame(z["key_values"], columns=list(z["key_columns"]))
            return cls(
                strategy=str(z["strategy"]),
                keys=keys,
                digest=str(z["digest"]),
                n_obs=int(z["n_obs"]),
                **{name: z[name] for name in ARRAYS},
            )


def strategy_columns(strategy: str, columns: Columns) -> list[str]:
    """The obs columns whose combination defines a pairing group under ``strategy``."""
    if strategy not in STRATEGIES:
        raise SettingsError(f"unknown pairing strategy '{strategy}'; choose one of {STRATEGIES}")
    fields = STRATEGY_COLUMNS[strategy]
    unset = [f for f in fields if getattr(columns, f) is None]
    if unset:
        raise SettingsError(f"pairing strategy '{strategy}' needs data.columns.{unset[0]}, which is not set")
    return [getattr(columns, f) for f in fields]


def build_pairing_index(obs: pd.DataFrame, columns: Columns, strategy: str) -> PairingIndex:
    """Index the controls of ``obs`` by the groups of ``strategy`` (no expression needed).

    Chain :meth:`PairingIndex.with_means` to add the control means.
    """
    codes, keys = group_codes(obs, strategy_columns(strategy, columns))
    is_control = control_mask(obs, columns)
    control_rows = np.flatnonzero(is_control)
    if len(control_rows) == 0:
        raise InputDataError(f"no control cells ({columns.perturbation} == {columns.control!r}) to pair with")
    order = np.argsort(codes[control_rows], kind="stable")
    count = np.bincount(codes[control_rows], minlength=len(keys)).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    perturbed = np.flatnonzero(~is_control)
    return PairingIndex(
        strategy=strategy,
        keys=keys,
        controls=control_rows[order],
        start=start,
        count=count,
        perturbed=perturbed,
        perturbed_group=codes[perturbed],
        n_obs=len(obs),
    )
