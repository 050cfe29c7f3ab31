"""The prediction step's entry points, files in and files out: what the ``infer`` and
``baseline`` rules run. torch and arc-state are imported when :func:`infer_files` is called."""

from __future__ import annotations

from pathlib import Path

from ..settings import CheckpointSettings, Columns, InferenceSettings, PerturbationSettings


def infer_files(
    data: str | Path,
    split: str | Path,
    base: str | Path,
    pairing: str | Path,
    out: str | Path,
    *,
    columns: Columns,
    adapter: str | Path | None = None,
    settings: InferenceSettings = InferenceSettings(),
    checkpoint: CheckpointSettings = CheckpointSettings(),
    perturbations: PerturbationSettings = PerturbationSettings(),
    accelerator: str = "auto",
) -> None:
    """Predict the test perturbations of ``data`` (the preprocessed target line) from control
    cells with the base model ``base`` and, if given, a trained stage replicate ``adapter``
    (:mod:`deltatune.model.stage`); write the prediction to ``out`` (.h5ad).

    ``pairing`` is the target line's plate (``batch``) index, which holds the control means;
    only control expression is read.
    """
    from lightning.fabric import Fabric

    from ..data.genes import read_for_model
    from ..data.groups import control_mask
    from ..data.splits import read_split
    from ..model.checkpoint import load_base_model
    from ..model.stage import load_stage
    from ..pairing.index import PairingIndex
    from .infer import predict

    model = load_base_model(base, checkpoint)
    target = read_for_model(data, model.genes, lambda obs: control_mask(obs, columns), base)  # controls only
    vocabulary = model.screen_vocabulary(target.obs, columns, perturbations)  # widens before the adapter
    network = load_stage(model.model, adapter) if adapter else model.model
    network.to(Fabric(accelerator=accelerator, devices=1).device)
    index = PairingIndex.load(pairing)
    predict(network, model, target, read_split(split), columns, index, settings, vocabulary, out=out)


def baseline_file(
    kind: str,
    data: str | Path,
    split: str | Path,
    pairing: str | Path,
    out: str | Path,
    *,
    columns: Columns,
    base_data: str | Path | None = None,
    base_pairing: str | Path | None = None,
) -> None:
    """Predict the test perturbations of ``data`` with baseline ``kind``
    (:data:`deltatune.predict.baselines.BASELINES`) and write the prediction to ``out``.

    ``base_data`` and ``base_pairing`` (the base lines and their plate x line index) serve
    ``baseline_other_lines`` only. Of each file only the rows a baseline reads are read, in
    chunks: the target line's controls (every prediction carries them) and, for
    ``baseline_mean_delta``, its training cells; the base lines' cells of the test perturbations.
    """
    from ..data.groups import control_mask
    from ..data.readers import read_cells
    from ..data.splits import cells_of_split, read_split
    from ..pairing.index import PairingIndex
    from .baselines import BASELINES, predict_baseline

    table = read_split(split)

    def needed(obs):
        controls = control_mask(obs, columns)
        training = kind in BASELINES and BASELINES[kind].reads_training_cells
        return controls | cells_of_split(obs, columns, table, "train") if training else controls

    tested = set(table.loc[table["split"] == "test", "perturbation"])
    base = (
        read_cells(base_data, lambda obs: obs[columns.perturbation].astype(str).isin(tested).to_numpy())
        if base_data
        else None
    )
    base_index = PairingIndex.load(base_pairing) if base_pairing else None
    target = read_cells(data, needed)
    predict_baseline(kind, target, table, columns, PairingIndex.load(pairing), base, base_index, out=out)
