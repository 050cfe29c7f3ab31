"""The device path: every tensor where the model is, the NaN guard, and checkpoints across devices.

Each test runs on the CPU everywhere and, marked ``gpu``, on a CUDA GPU where one is visible
(``pytest -m gpu`` runs those alone); without one the GPU cases are skipped with that reason.
``bench/gpu.py`` measures the GPU path itself (correctness against the CPU, throughput).
"""

import numpy as np
import pytest
import torch
from test_training import SETTINGS, Interrupted, _fail_at

from deltatune.errors import NonFiniteLossError
from deltatune.pairing.index import build_pairing_index
from deltatune.predict.infer import predict
from deltatune.train.finetune import finetune_stage
from deltatune.train.loop import Trainer

NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; torch sees none here")
GPU = [pytest.mark.gpu, NO_GPU]
DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]
ACCELERATOR = {"cpu": "cpu", "cuda": "gpu"}


class DeviceRecorder:
    """Records the device type of every tensor that enters any module's forward."""

    def __init__(self):
        self.devices: set[str] = set()

    def __enter__(self):
        def hook(module, args):
            for arg in args:  # ST's forward takes its batch as one dict of tensors
                values = arg.values() if isinstance(arg, dict) else [arg]
                self.devices.update(v.device.type for v in values if isinstance(v, torch.Tensor))

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _finetune(new_base, preprocessed, columns, work_dir, device, settings=SETTINGS):
    target = preprocessed.target
    index = build_pairing_index(target.obs, columns, settings.pairing)
    trainer = Trainer(work_dir, "fp", accelerator=ACCELERATOR[device])
    return finetune_stage(new_base(), target, preprocessed.split, columns, settings, trainer, index)


@pytest.mark.parametrize("device", DEVICES)
def test_a_training_step_runs_where_the_model_is(new_base, preprocessed, columns, tmp_path, device):
    with DeviceRecorder() as seen:
        result = _finetune(new_base, preprocessed, columns, tmp_path, device)
    assert seen.devices == {device}
    assert {p.device.type for p in result.model.parameters()} == {device}


@pytest.mark.parametrize("device", DEVICES)
def test_inference_runs_where_the_model_is(new_base, preprocessed, columns, device):
    base = new_base()
    base.model.to(device)
    index = build_pairing_index(preprocessed.target.obs, columns, "batch").with_means(preprocessed.target.X)
    with DeviceRecorder() as seen:
        predicted = predict(base.model, base, preprocessed.target, preprocessed.split, columns, index)
    assert seen.devices == {device}
    assert np.isfinite(predicted.X).all()


@pytest.mark.parametrize("device", DEVICES)
def test_the_nan_guard_fires_on_every_device(new_base, preprocessed, columns, tmp_path, device):
    target = preprocessed.target
    target.X = target.X.astype(np.float32)
    target.X.data[:] = np.nan  # every cell's expression, so the first step's loss is NaN
    with pytest.raises(NonFiniteLossError, match=r"step 0: '(base|delta_mse|delta_pearson|total)' is nan"):
        _finetune(new_base, preprocessed, columns, tmp_path, device)
    assert not (tmp_path / "last.ckpt").exists(), "no checkpoint is written from a NaN step"


@pytest.mark.parametrize(
    ("written", "resumed"),
    [
        ("cpu", "cpu"),
        pytest.param("cuda", "cpu", marks=GPU),
        pytest.param("cpu", "cuda", marks=GPU),
        pytest.param("cuda", "cuda", marks=GPU),
    ],
)
def test_a_checkpoint_resumes_on_another_device(
    new_base, preprocessed, columns, tmp_path, monkeypatch, written, resumed
):
    """A run killed after its checkpoint at step 4 on one device finishes on the other."""
    with monkeypatch.context() as m:
        _fail_at(m, 6, Interrupted())
        with pytest.raises(Interrupted):
            _finetune(new_base, preprocessed, columns, tmp_path, written)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["position"]["global_step"] == 4
    full = _finetune(new_base, preprocessed, columns, tmp_path / "uninterrupted", resumed)
    again = _finetune(new_base, preprocessed, columns, tmp_path, resumed)
    assert len(again.history) == len(full.history) and again.history["step"].tolist() == full.history["step"].tolist()
    assert again.history.iloc[:4].to_dict("records") == saved["history"], "the first steps come from the checkpoint"
    assert {p.device.type for p in again.model.parameters()} == {resumed}
    assert all(torch.isfinite(p).all() for p in again.model.parameters())


def test_the_gpu_benchmark_rehearses_on_the_cpu(tmp_path):
    """bench/gpu.py's throughput part (the Tahoe model's shape, scaled down) and its projection of
    the ablation run on the CPU, and say that they are no GPU figure."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "rehearsal.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--rehearse", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"].startswith("cpu") and "no GPU figure" in result["device"]
    lora, full = result["tahoe_lora_bf16"], result["tahoe_full_bf16"]
    for run in (lora, full):
        assert run["cells_per_s"] > 0 and run["bare_cells_per_s"] > 0 and run["peak_gpu_bytes"] is None
        assert run["architecture"]["intermediate_dim"] and run["architecture"]["encoder_layers"] == 4
    assert full["trainable_parameters"] > 10 * lora["trainable_parameters"]
    hours = result["projected_ablation_hours"]
    assert hours == pytest.approx(4 * 3 * 10 * 1_500_000 * 0.95 * 0.55 / lora["cells_per_s"] / 3600, rel=0.01), (
        "the projection is the stated assumptions over the measured LoRA throughput"
    )
