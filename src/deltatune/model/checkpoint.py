"""ST run directories: reading a user's checkpoint safely, and writing the embedded default's.

A run directory is what ``state tx train`` writes: ``config.yaml``, ``checkpoints/{final,last,
best}.ckpt``, ``var_dims.pkl``, ``pert_onehot_map.pt`` (and maps deltatune does not need). The
embedded default writes the same layout plus ``genes.txt``, so one loader serves both.

Loading is safe by default. Checkpoints are read with ``torch.load(weights_only=True)`` and
``var_dims.pkl`` with a restricted unpickler; both admit tensors, containers and the numpy
scalars ST stores labels and sizes as (``np.str_``, ``np.int64``), which are data. Anything
else (a pickled class, a function) stops with the file and the global named, and is loaded only
with ``base_model.trusted: true``: unpickling runs code, so that switch is for files whose
origin the user vouches for.

The gene list is the part ST does not keep reliably: a model trained on an HVG subset records
every gene of its data in ``gene_names`` but takes only the HVGs. A gene list is accepted only
when its length equals the model's input width; otherwise the user gives it (``base_model.genes``).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import pickle
from pathlib import Path

import lightning
import numpy as np
import torch
import yaml
from state.tx.models.state_transition import StateTransitionPerturbationModel

from ..data.genes import read_gene_list
from ..errors import CheckpointError
from ..files import atomic_path
from ..settings import CheckpointSettings
from .release import CHECKPOINTS, run_candidates
from .st import BaseModel

CHECKPOINT_FILES = ("final.ckpt", "last.ckpt", "best.ckpt")  # preference when none is named
PERT_MAP = "pert_onehot_map.pt"
VAR_DIMS = "var_dims.pkl"
GENES = "genes.txt"  # the model's gene order, readable without unpickling anything

# numpy scalars and dtypes: how ST's maps and sizes store labels (np.str_) and dims (np.int64).
# Files pickled under numpy 1 name the scalar constructor numpy.core.multiarray.scalar.
_SCALAR = np._core.multiarray.scalar
_DTYPES = [np.dtype, *(getattr(np.dtypes, n) for n in np.dtypes.__all__)]
_SAFE_PICKLE = {
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("_codecs", "encode"): codecs.encode,
    **{(t.__module__, t.__name__): t for t in _DTYPES},
}
SAFE_GLOBALS = [_SCALAR, (_SCALAR, "numpy.core.multiarray.scalar"), *_DTYPES]
# Inputs deltatune feeds an ST model: expression in gene space (no embedding, no batch token).
GENE_SPACE_KEYS = (None, "X_hvg")


class _RestrictedUnpickler(pickle.Unpickler):
    """Python's documented way to unpickle untrusted data: only allow-listed globals."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_PICKLE:
            return _SAFE_PICKLE[module, name]
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def _untrusted(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(
        f"{path} cannot be loaded safely: {reason}. Unpickling it would run code from the file. "
        "If you trust its source, set base_model.trusted: true"
    )


def _unreadable(path: Path, err: BaseException | str) -> CheckpointError:
    reason = err if isinstance(err, str) else (str(err).strip().splitlines() or [type(err).__name__])[0]
    return CheckpointError(
        f"{path} is not a readable checkpoint ({reason}): it may be truncated or corrupt; "
        "copy it again from where it was trained"
    )


def load_torch(path: Path, trusted: bool):
    """``torch.load`` of a checkpoint file: weights only (plus numpy scalars) unless trusted.

    A file torch cannot read at all (truncated, corrupt) is a :class:`CheckpointError` naming it.
    """
    try:
        if trusted:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not even a checkpoint's archive
            raise _unreadable(path, "not a PyTorch checkpoint") from None
        names = [g for g in unsafe if g not in {f"{m}.{n}" for m, n in _SAFE_PICKLE}]
        if trusted or not names:
            raise _unreadable(path, "not a PyTorch checkpoint") from None
        raise _untrusted(path, f"it holds pickled objects {names[:5]}") from None
    except Exception as err:  # undecodable bytes fail in many ways (a truncated zip, an unpickler's IndexError)
        raise _unreadable(path, err) from None


def load_pickle(path: Path, trusted: bool):
    """A plain pickle (``var_dims.pkl``), through the restricted unpickler unless trusted."""
    with open(path, "rb") as handle:
        if trusted:
            return pickle.load(handle)
        try:
            return _RestrictedUnpickler(handle).load()
        except pickle.UnpicklingError as err:
            raise _untrusted(path, str(err)) from None


def find_checkpoint(location: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """(run directory, checkpoint file) of what ``base_model.checkpoint`` names.

    Three layouts are accepted, as ``state tx train`` writes them and as Arc releases them:

    - a run directory with ``checkpoints/final.ckpt`` (``state tx train``'s own output);
    - a release folder with the ``.ckpt`` at its top, beside ``pert_onehot_map.pt``, as Arc's
      releases on Hugging Face come (their ``fewshot/`` and ``zeroshot/`` sub-runs are run
      directories of the first kind, chosen by naming them);
    - a ``.ckpt`` file in either: its run directory is the folder that holds
      ``pert_onehot_map.pt``, its own or, for ``checkpoints/x.ckpt``, the one above. It never
      resolves to any other folder.

    A release that holds several runs (``fewshot/<run>``, ``zeroshot/<run>``) and no checkpoint of
    its own stops with the runs it holds, for the user to choose one.
    """
    location = Path(location)
    if location.suffix == ".ckpt":
        return _run_of_file(location), location
    if not location.is_dir():
        raise CheckpointError(f"base model directory {location} does not exist")
    candidates = [name] if name else CHECKPOINT_FILES
    for candidate in candidates:
        for folder in (location / CHECKPOINTS, location):
            if (folder / candidate).is_file():
                return location, folder / candidate
    runs = sub_runs(location)
    if runs and not name:
        listed = ", ".join(str(r) for r in runs)
        raise CheckpointError(
            f"{location} holds {len(runs)} runs and no checkpoint of its own: set base_model.checkpoint to "
            f"the one to fine-tune ({listed}). A fewshot run saw some perturbations of its held-out lines, "
            "a zeroshot run none of them"
        )
    found = [*location.glob("*.ckpt"), *(location / CHECKPOINTS).glob("*.ckpt")]
    present = sorted(str(p.relative_to(location)) for p in found)
    wanted = " / ".join(str(CHECKPOINTS / c) for c in candidates)
    raise CheckpointError(
        f"base model directory {location} has no {wanted} (nor these at its top; checkpoints present: "
        f"{present or 'none'})"
    )


def _run_of_file(ckpt: Path) -> Path:
    """The run directory of a ``.ckpt`` file: the folder beside it that holds the perturbation map."""
    if not ckpt.is_file():
        raise CheckpointError(f"checkpoint file {ckpt} does not exist")
    folders = run_candidates(ckpt)
    for folder in folders:
        if (folder / PERT_MAP).is_file():
            return folder
    raise CheckpointError(
        f"checkpoint file {ckpt}: no {PERT_MAP} in {' or '.join(str(f) for f in folders)}. A run's files "
        f"({PERT_MAP}, {VAR_DIMS}, config.yaml) must sit beside the .ckpt, or one folder above checkpoints/"
    )


def sub_runs(location: Path, depth: int = 3) -> list[Path]:
    """Run directories below ``location`` (at most ``depth`` levels): folders with a perturbation
    map and a checkpoint, as a release's ``fewshot/<run>`` and ``zeroshot/<run>``."""
    maps = [m for level in range(1, depth + 1) for m in sorted(location.glob("*/" * level + PERT_MAP))]
    return [m.parent for m in maps if any(m.parent.glob("*.ckpt")) or any((m.parent / CHECKPOINTS).glob("*.ckpt"))]


def _check_supported(hparams: dict, where: Path) -> None:
    """Stop on ST variants that take something other than gene-space expression."""
    embed_key = hparams.get("embed_key")
    if embed_key not in GENE_SPACE_KEYS:
        raise CheckpointError(
            f"{where} takes cell embeddings (embed_key '{embed_key}'), as Arc's ST-SE-* releases do (State "
            "Embedding vectors, X_state); deltatune feeds expression and needs an ST model trained in gene "
            "space (embed_key null or X_hvg), such as the ST-HVG-* releases"
        )
    if int(hparams["input_dim"]) != int(hparams["output_dim"]):
        raise CheckpointError(
            f"{where} maps {int(hparams['input_dim'])} input genes to {int(hparams['output_dim'])} "
            "outputs; deltatune needs the same genes in and out (output_space: gene)"
        )
    if hparams.get("batch_encoder") or hparams.get("use_batch_token"):
        raise CheckpointError(
            f"{where} was trained with a batch encoder (batch_encoder / use_batch_token); its batch "
            "one-hot codes do not carry over to new data, so deltatune cannot fine-tune it"
        )


def _gene_list(run_dir: Path, hparams: dict, var_dims: dict, n_inputs: int, given: str | None) -> list[str]:
    """The model's gene order: given, ``genes.txt``, or a recorded list as long as the input."""
    if given:
        if not Path(given).is_file():
            raise CheckpointError(f"base_model.genes file {given} does not exist")
        genes, source = read_gene_list(given), f"base_model.genes ({given})"
    elif (run_dir / GENES).is_file():
        genes, source = read_gene_list(run_dir / GENES), str(run_dir / GENES)
    else:
        recorded = hparams.get("gene_names") or var_dims.get("gene_names") or []
        genes, source = [str(g) for g in recorded], f"{run_dir} (gene_names)"
    if len(genes) != n_inputs and given:
        raise CheckpointError(
            f"the base model takes {n_inputs} genes (input_dim) but base_model.genes ({given}) lists "
            f"{len(genes)}: it is not this model's gene list (one gene per line, in the model's order)"
        )
    if len(genes) != n_inputs:
        raise CheckpointError(
            f"the base model takes {n_inputs} genes (input_dim) but {source} lists {len(genes)}. "
            "ST records every gene of its training data, not the highly variable genes it took, nor "
            "their order (Arc's ST-HVG releases included: arc-state issues 268 and 279): give that list, "
            "one gene per line in the model's order, as base_model.genes. Only its authors can say "
            "which it is; a list chosen again from the same data need not be the same"
        )
    if len(set(genes)) != len(genes):
        raise CheckpointError(f"{source} lists duplicate gene names")
    return genes


def _perturbation_map(path: Path, n_pert: int, trusted: bool) -> tuple[list[str], torch.Tensor]:
    """Labels and ``pert_emb`` vectors of ``pert_onehot_map.pt``, checked against the model width."""
    pert_map = load_torch(path, trusted)
    labels = [str(k) for k in pert_map]
    vectors = torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in pert_map.values()])
    if vectors.shape[1] != n_pert:
        raise CheckpointError(
            f"{path} holds {vectors.shape[1]}-dimensional perturbation vectors but the model's "
            f"pert_encoder takes {n_pert} (pert_dim)"
        )
    return labels, vectors


def load_base_model(location: str | Path, settings: CheckpointSettings = CheckpointSettings()) -> BaseModel:
    """Load an ST run directory (``state tx train`` output or :func:`save_base_model`'s)."""
    run_dir, ckpt_path = find_checkpoint(location, settings.checkpoint_file)
    if not (run_dir / PERT_MAP).is_file():
        raise CheckpointError(f"base model directory {run_dir} has no {PERT_MAP}")
    checkpoint = load_torch(ckpt_path, settings.trusted)
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    if not hparams:
        raise CheckpointError(f"{ckpt_path} records no hyper_parameters: not a Lightning checkpoint of ST")
    _check_supported(hparams, ckpt_path)
    var_dims = load_pickle(run_dir / VAR_DIMS, settings.trusted) if (run_dir / VAR_DIMS).is_file() else {}
    genes = _gene_list(run_dir, hparams, var_dims, int(hparams["input_dim"]), settings.genes)
    labels, vectors = _perturbation_map(run_dir / PERT_MAP, int(hparams["pert_dim"]), settings.trusted)
    with contextlib.redirect_stdout(io.StringIO()):  # ST prints its whole module tree
        model = StateTransitionPerturbationModel(**hparams)
    missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt_path} does not fit the model its hyper-parameters describe: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return BaseModel(model=model.eval(), genes=genes, perturbations=labels, pert_vectors=vectors)


def save_base_model(base: BaseModel, out_dir: str | Path, config: dict, history=None) -> None:
    """Write ``base`` as an ST run directory, atomically (the directory appears complete or not at all).

    ``history`` (a DataFrame of training steps) is kept beside the checkpoint as ``history.tsv``.
    """
    model = base.model
    with atomic_path(out_dir, directory=True) as tmp:
        (tmp / CHECKPOINTS).mkdir(parents=True)
        torch.save(
            {
                "state_dict": model.state_dict(),
                "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": lightning.__version__,
            },
            tmp / CHECKPOINTS / CHECKPOINT_FILES[0],
        )
        torch.save(dict(zip(base.perturbations, base.pert_vectors, strict=True)), tmp / PERT_MAP)
        var_dims = {
            "input_dim": len(base.genes),
            "gene_dim": len(base.genes),
            "hvg_dim": len(base.genes),
            "output_dim": len(base.genes),
            "pert_dim": int(base.pert_vectors.shape[1]),
            "gene_names": list(base.genes),
        }
        with open(tmp / VAR_DIMS, "wb") as fh:
            pickle.dump(var_dims, fh)
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / GENES).write_text("\n".join(base.genes) + "\n")
        if history is not None:
            history.to_csv(tmp / "history.tsv", sep="\t", index=False)
