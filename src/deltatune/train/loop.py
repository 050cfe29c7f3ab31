"""One training loop for pretraining and for every fine-tuning stage.

Lightning Fabric places the model and batches on the device (GPU when present) and handles
precision and backward; the loop itself stays small so that its guarantees are easy to check:

* deterministic on CPU for a seed: batches come from (seed, epoch) and the torch RNG state is
  checkpointed with the weights;
* resumable: every ``checkpoint_every`` steps the trainable weights, optimizer, scheduler, RNG
  and history go to ``work_dir/last.ckpt`` (atomically). A rerun with the same fingerprint
  regenerates the interrupted epoch and skips the steps already taken;
* safe: a NaN or infinite loss component or gradient norm stops training with a message naming
  the step and the component, before the optimizer touches the weights and before any
  checkpoint is written, so the last good checkpoint survives.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import platform
import sys
from pathlib import Path

import pandas as pd
import torch
from lightning.fabric import Fabric
from tqdm.auto import tqdm

from ..errors import NonFiniteLossError, SettingsError
from ..files import atomic_path
from ..pairing.index import PairingIndex
from ..settings import TrainSettings
from .batches import CellSetBatches
from .losses import DeltaAwareLoss

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
FINAL_LR_FRACTION = 0.1


def check_index(index: PairingIndex, settings: TrainSettings) -> None:
    """The pairing index given must be the one the settings ask for."""
    if index.strategy != settings.pairing:
        raise SettingsError(
            f"the pairing index was built for strategy '{index.strategy}' but the settings ask for '{settings.pairing}'"
        )


def _schedule(total_steps: int, warmup_fraction: float):
    """Linear warm-up, then cosine decay to :data:`FINAL_LR_FRACTION` of the peak rate."""
    warmup = max(1, math.ceil(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _check_finite(values: dict[str, float], epoch: int, step: int, where: Path) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        name, value = next(iter(bad.items()))
        raise NonFiniteLossError(
            f"training stopped at epoch {epoch + 1}, step {step}: '{name}' is {value}. "
            f"No weights were updated with it; the last checkpoint in {where} is kept. "
            "Check the input data for NaN/Inf, or lower the learning rate."
        )


def fingerprint(settings: dict, inputs: list[str | Path]) -> str:
    """Identity of a training run: its effective settings and the size and mtime of its inputs.

    A checkpoint left by a run with other settings or other input files must not be resumed.
    """
    stats = []
    for path in map(Path, inputs):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        stats += [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps({"settings": settings, "inputs": stats}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Trainer:
    """Where and how a run trains: the device, and the checkpoints in ``work_dir`` it resumes from.

    ``fingerprint`` identifies the run (settings and inputs); a checkpoint with another
    fingerprint is not resumed from. What to train with (optimizer, schedule, precision, how
    often to checkpoint) is the settings given to :meth:`fit`.
    """

    def __init__(self, work_dir: str | Path, fingerprint: str, accelerator: str = "auto"):
        self.work_dir = Path(work_dir)
        self.fingerprint = fingerprint
        self.accelerator = accelerator
        self.fabric = Fabric(accelerator=accelerator, devices=1)

    @property
    def device_name(self) -> str:
        """What the model trains on: the GPU's name, or the CPU's."""
        device = self.fabric.device
        if device.type == "cuda":
            return torch.cuda.get_device_name(device)
        return platform.processor() or platform.machine()

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / LAST_CHECKPOINT

    def _save(self, model, loss, optimizer, scheduler, position: dict, history: list[dict]) -> None:
        trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
        state = {
            "fingerprint": self.fingerprint,
            "model": trainable,
            "adversary": loss.adversary.training_state() if loss.adversary is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.fabric.device.type == "cuda" else None,
            "position": position,
            "history": history,
        }
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def _restore(self, model, loss, optimizer, scheduler) -> tuple[dict, list[dict]]:
        """Load the last checkpoint if it belongs to this run; return (position, history)."""
        start = {"epoch": 0, "step": 0, "global_step": 0}
        if not self.checkpoint_path.exists():
            return start, []
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != self.fingerprint:
            log.info("ignoring %s: it belongs to other settings or inputs", self.checkpoint_path)
            return start, []
        unexpected = model.load_state_dict(state["model"], strict=False).unexpected_keys
        if unexpected:
            raise SettingsError(f"checkpoint {self.checkpoint_path} holds unknown weights {unexpected[:3]}")
        if loss.adversary is not None:
            loss.adversary.load_training_state(state["adversary"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and self.fabric.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"])  # dropout on the GPU draws from its own generator
        log.info("resuming from %s at step %d", self.checkpoint_path, state["position"]["global_step"])
        return state["position"], state["history"]

    def _step(
        self,
        model,
        optimizer,
        loss: DeltaAwareLoss,
        batch: dict,
        set_size: int,
        grad_clip: float,
        epoch: int,
        step: int,
    ) -> dict:
        """One optimizer step; returns the loss components and gradient norm as floats.

        Nothing is updated unless every component and the gradient norm are finite.
        """
        batch = self.fabric.to_device(batch)
        pred = model(batch, padded=True).reshape(-1, set_size, batch["pert_cell_emb"].shape[-1])
        real, control = batch["pert_cell_emb"].reshape(pred.shape), batch["ctrl_cell_emb"].reshape(pred.shape)
        parts = loss(pred.float(), real, control, drugs=batch["set_drug"], plates=batch["ctrl_plate"])
        values = dict(zip(parts, torch.stack([v.detach() for v in parts.values()]).tolist(), strict=True))
        _check_finite(values, epoch, step, self.checkpoint_path)
        optimizer.zero_grad(set_to_none=True)
        self.fabric.backward(parts["total"])
        values["grad_norm"] = float(self.fabric.clip_gradients(model, optimizer, max_norm=grad_clip))
        _check_finite({"gradient norm": values["grad_norm"]}, epoch, step, self.checkpoint_path)
        optimizer.step()
        if loss.adversary is not None:
            loss.adversary.step()
        return values

    def fit(
        self, model: torch.nn.Module, data: CellSetBatches, loss: DeltaAwareLoss, settings: TrainSettings, desc: str
    ) -> pd.DataFrame:
        """Train ``model`` in place with ``settings``; return the per-step history of every loss component."""
        s = settings
        self.fabric = Fabric(accelerator=self.accelerator, devices=1, precision=s.precision)
        sets_per_step = max(1, s.batch_size // data.set_size)
        steps_per_epoch = data.n_steps(sets_per_step)
        total_steps = s.epochs * steps_per_epoch
        torch.manual_seed(s.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total_steps, s.warmup_fraction))
        if loss.adversary is not None:  # the plate classifier, with its own optimizer and faster
            lr = s.lr * s.loss.plate_adversary_lr_scale
            schedule = _schedule(total_steps, s.warmup_fraction)
            loss.adversary.start_training(self.fabric.device, lr, s.weight_decay, schedule)
        # On the device first, then restored: the optimizer's state follows its parameters'
        # device when loaded, so a checkpoint written on one device resumes on another.
        fmodel, foptimizer = self.fabric.setup(model, optimizer)
        position, history = self._restore(model, loss, optimizer, scheduler)
        fmodel.train()

        global_step = position["global_step"]
        progress = tqdm(
            total=total_steps,
            initial=global_step,
            desc=desc,
            file=sys.stderr,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            dynamic_ncols=True,
        )
        with loss.watching(fmodel):  # the plate adversary reads the basal embeddings
            for epoch in range(position["epoch"], s.epochs):
                skip = position["step"] if epoch == position["epoch"] else 0
                batches = data.batches(data.plan(s.seed, epoch), sets_per_step)
                for step_in_epoch, batch in enumerate(itertools.islice(batches, skip, None), start=skip):
                    values = self._step(fmodel, foptimizer, loss, batch, data.set_size, s.grad_clip, epoch, global_step)
                    scheduler.step()
                    global_step += 1
                    history.append(
                        {"epoch": epoch + 1, "step": global_step, "lr": scheduler.get_last_lr()[0], **values}
                    )
                    if progress.update():  # only when the bar redraws: formatting costs per step
                        progress.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
                    if global_step % s.checkpoint_every == 0:
                        end_of_epoch = step_in_epoch + 1 == steps_per_epoch
                        nxt = (
                            {"epoch": epoch + 1, "step": 0}
                            if end_of_epoch
                            else {"epoch": epoch, "step": step_in_epoch + 1}
                        )
                        self._save(model, loss, optimizer, scheduler, {**nxt, "global_step": global_step}, history)
        progress.close()
        model.eval()
        return pd.DataFrame(history)
