import pytest
import torch

from deltatune.errors import CheckpointError
from deltatune.model.checkpoint import load_base_model, save_base_model
from deltatune.model.lora import apply_lora, count_parameters
from deltatune.model.st import BaseModel, build_st_model
from deltatune.settings import Architecture, LoraSettings

ARCH = Architecture(hidden_dim=16, n_layers=1, n_heads=2, cell_set_len=4)


@pytest.fixture
def base():
    torch.manual_seed(0)
    genes = [f"g{i}" for i in range(12)]
    perts = ["ctrl", "a", "b"]
    return BaseModel(build_st_model(ARCH, genes, perts, "ctrl"), genes, perts)


def _batch(base, n_sets=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = n_sets * base.cell_set_len
    codes = torch.randint(0, len(base.perturbations), (n,), generator=g)
    return {
        "pert_emb": torch.nn.functional.one_hot(codes, len(base.perturbations)).float(),
        "ctrl_cell_emb": torch.rand(n, len(base.genes), generator=g),
    }


def test_run_directory_roundtrip(base, tmp_path):
    save_base_model(base, tmp_path / "run", {"note": "test"})
    for name in ("checkpoints/final.ckpt", "pert_onehot_map.pt", "var_dims.pkl", "config.yaml"):
        assert (tmp_path / "run" / name).exists()
    assert (tmp_path / "run" / "genes.txt").read_text().split() == base.genes
    loaded = load_base_model(tmp_path / "run")
    assert loaded.genes == base.genes and loaded.perturbations == base.perturbations
    base.model.eval()
    batch = _batch(base)
    assert torch.equal(loaded.model(batch, padded=True), base.model(batch, padded=True))


def test_missing_checkpoint_is_named(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch=3.ckpt").touch()
    with pytest.raises(
        CheckpointError, match=r"has no checkpoints/final.ckpt / .*present: \['checkpoints/epoch=3.ckpt'\]"
    ):
        load_base_model(tmp_path)


def test_lora_freezes_and_never_changes_base_weights(base):
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    model = apply_lora(
        base.model,
        LoraSettings(
            targets=("backbone_attention", "pert_encoder", "basal_encoder"), rank_scale={"basal_encoder": 0.5}
        ),
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("basal_encoder" in n for n in trainable) and not any("project_out" in n for n in trainable)
    basal_a = dict(model.named_parameters())["base_model.model.basal_encoder.0.lora_A.default.weight"]
    assert basal_a.shape[0] == 4, "basal encoder at half rank"

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for seed in range(3):
        out = model(_batch(base, seed=seed), padded=True)
        out.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()  # dropout off, so outputs are comparable
    merged_reference = model(_batch(base, seed=9), padded=True)
    after = {
        k.replace(".base_layer", ""): v for k, v in model.get_base_model().state_dict().items() if "lora_" not in k
    }
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    counts = count_parameters(model)
    assert 0 < counts["trainable"] < counts["total"] / 2
    merged = model.merge_and_unload()
    model_out = merged(_batch(base, seed=9), padded=True)
    assert torch.allclose(model_out, merged_reference, atol=1e-5)


def test_dora_on_the_decoder_trains_magnitudes_and_leaves_the_base_as_it_was(base):
    """peft's DoRA (lora.use_dora) on ST's decoder (the `decoder` group: project_out): each
    adapted layer gains a trained magnitude vector; the base weights stay frozen and unchanged."""
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    model = apply_lora(base.model, LoraSettings(targets=("decoder",), rank=2, use_dora=True))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("project_out" in n for n in trainable)
    magnitudes = [n for n in trainable if "lora_magnitude_vector" in n]
    assert len(magnitudes) == 2, trainable  # the decoder's two Linear layers
    plain = apply_lora(
        BaseModel(build_st_model(ARCH, base.genes, base.perturbations, "ctrl"), base.genes, base.perturbations).model,
        LoraSettings(targets=("decoder",), rank=2),
    )
    assert count_parameters(model)["trainable"] > count_parameters(plain)["trainable"]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    out = model(_batch(base), padded=True)
    out.pow(2).mean().backward()
    optimizer.step()
    after = {
        k.replace(".base_layer", ""): v for k, v in model.get_base_model().state_dict().items() if "lora_" not in k
    }
    assert all(torch.equal(after[k], v) for k, v in before.items())
