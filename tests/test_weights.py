"""Strict loading of SVD / OpenCLIP weights through the real code, on tiny seeded weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actiondiff.features.weight_files import ChecksumCache, svd_files, transformers_files
from actiondiff.features.weights import (
    WeightsError,
    clip_config,
    load_clip,
    load_svd,
    read_state_dict,
)
from actiondiff.tools import demo_data
from actiondiff.tools.tiny_weights import TINY_CLIP_CONFIG


def _copy_svd(tiny_weights, tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "svd"
    shutil.copytree(tiny_weights["svd"], target)
    return target, target / "unet" / "diffusion_pytorch_model.safetensors"


def test_tiny_svd_round_trip(tiny_weights):
    unet, vae = load_svd(tiny_weights["svd"])
    saved = load_file(str(Path(tiny_weights["svd"]) / "unet" / "diffusion_pytorch_model.safetensors"))
    state = unet.state_dict()
    assert sorted(state) == sorted(saved)
    for key in ("conv_in.weight", "down_blocks.2.attentions.1.proj_out.weight", "mid_block.resnets.0.time_mixer.mix_factor"):
        assert torch.equal(state[key], saved[key])
    assert vae.config.latent_channels == 4
    assert not unet.training and not any(p.requires_grad for p in unet.parameters())
    half_unet, half_vae = load_svd(tiny_weights["svd"], dtype=torch.bfloat16)
    assert half_unet.conv_in.weight.dtype == torch.bfloat16
    assert torch.equal(half_unet.conv_in.weight, saved["conv_in.weight"].to(torch.bfloat16))


def test_tiny_vae_scaling_factor_gives_demo_latents_unit_variance(tiny_weights):
    # Calibrated like SD's 0.18215 (1 / std of the latents), on frames the VAE never saw.
    _, vae = load_svd(tiny_weights["svd"])
    rng = np.random.default_rng(7)
    clips = [demo_data.render_clip(d, a, 4, 64, rng) for d in demo_data.DOMAINS for a in demo_data.ACTIONS]
    frames = torch.from_numpy(np.concatenate(clips)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    latents = vae.quant_conv(vae.encoder(frames)).chunk(2, dim=1)[0] * vae.config.scaling_factor
    assert latents.std().item() == pytest.approx(1.0, abs=0.05)
    assert vae.config.scaling_factor > 1  # the real factor would leave this random VAE's latents ~0.04


def test_tiny_clip_round_trip_safetensors_and_torch_file(tiny_weights, tmp_path):
    clip = load_clip(tiny_weights["clip_arch"], tiny_weights["clip_checkpoint"])
    saved = load_file(str(tiny_weights["clip_checkpoint"]))
    assert all(torch.equal(clip.state_dict()[k], v) for k, v in saved.items())
    # a training checkpoint: nested under state_dict, keys prefixed with `module.`
    torch_file = tmp_path / "clip.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in saved.items()}}, torch_file)
    again = load_clip(tiny_weights["clip_arch"], torch_file)
    assert torch.equal(again.visual.conv1.weight, saved["visual.conv1.weight"])
    assert clip_config(tiny_weights["clip_arch"]) == json.loads(json.dumps(TINY_CLIP_CONFIG))


def test_missing_and_unexpected_unet_keys_name_the_file(tiny_weights, tmp_path):
    root, weight_file = _copy_svd(tiny_weights, tmp_path)
    state = load_file(str(weight_file))
    del state["conv_in.bias"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(weight_file))
    with pytest.raises(WeightsError) as error:
        load_svd(root)
    message = str(error.value)
    assert message == (  # one sentence, the question after it (it once sat inside: "...Model. Is this ...? exactly")
        f"Expected the weights in {weight_file} to match UNetSpatioTemporalConditionModel exactly, but got 1 missing keys: "
        f"['conv_in.bias']; 1 unexpected keys: ['extra.weight']. Is this an SVD-XT snapshot (diffusers layout)?"
    )


def test_wrong_shape_is_an_error(tiny_weights, tmp_path):
    root, weight_file = _copy_svd(tiny_weights, tmp_path)
    state = load_file(str(weight_file))
    state["conv_in.weight"] = torch.zeros(32, 8, 5, 5)
    save_file(state, str(weight_file))
    with pytest.raises(WeightsError, match="conv_in.weight") as error:
        load_svd(root)
    assert str(weight_file) in str(error.value)


def test_missing_snapshot_and_uncached_hub_id(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_svd(tmp_path / "nowhere")
    with pytest.raises(WeightsError, match="local Hugging Face cache"):
        load_svd("someone/not-cached", cache_dir=tmp_path)


def test_clip_checkpoint_of_another_architecture(tiny_weights, tmp_path):
    other = dict(TINY_CLIP_CONFIG, embed_dim=64)
    arch = tmp_path / "other.json"
    arch.write_text(json.dumps(other))
    with pytest.raises(WeightsError) as error:
        load_clip(arch, tiny_weights["clip_checkpoint"])
    message = str(error.value)
    assert str(tiny_weights["clip_checkpoint"]) in message and "mismatched shapes" in message
    assert "text_projection" in message or "visual.proj" in message


def test_clip_checkpoint_missing_keys_and_unreadable_files(tiny_weights, tmp_path):
    state = load_file(str(tiny_weights["clip_checkpoint"]))
    del state["logit_scale"]
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    with pytest.raises(WeightsError, match=r"1 missing keys: \['logit_scale'\]"):
        load_clip(tiny_weights["clip_arch"], broken)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.safetensors"):
        read_state_dict(garbage)
    with pytest.raises(WeightsError, match="to exist"):
        read_state_dict(tmp_path / "absent.bin")
    with pytest.raises(WeightsError, match="OpenCLIP model name"):
        clip_config("ViT-Nonexistent-99")


class _Payload:
    """An arbitrary pickled object: `weights_only=True` must refuse it."""


def test_torch_file_is_loaded_weights_only(tmp_path):
    path = tmp_path / "evil.bin"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(WeightsError, match="evil.bin"):
        read_state_dict(path)


def _cache_repo(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """Lay out a Hugging Face hub cache entry (refs/main -> snapshots/<commit>/...) by hand."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    for name, source in files.items():
        target = entry / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)


def test_hub_ids_resolve_from_the_local_cache(tiny_weights, tmp_path):
    svd = Path(tiny_weights["svd"])
    cache = tmp_path / "hub"
    _cache_repo(cache, "org/tiny-svd", {str(f.relative_to(svd)): f for f in svd.rglob("*") if f.is_file()})
    config = tmp_path / "open_clip_config.json"
    config.write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}))
    _cache_repo(
        cache,
        "org/tiny-clip",
        {"open_clip_config.json": config, "open_clip_model.safetensors": Path(tiny_weights["clip_checkpoint"])},
    )
    unet, _ = load_svd("org/tiny-svd", cache_dir=cache)
    reference, _ = load_svd(svd)
    assert torch.equal(unet.conv_in.weight, reference.conv_in.weight)
    clip = load_clip("hf-hub:org/tiny-clip", "hf-hub:org/tiny-clip", cache_dir=cache)
    assert clip.visual.conv1.weight.shape == (64, 3, 8, 8)
    # the hub cache's snapshot holds the same files as the folder: the same content identity
    from_hub = ChecksumCache(tmp_path / "sums.json").checksums(svd_files("org/tiny-svd", cache_dir=cache))
    assert from_hub == ChecksumCache(tmp_path / "sums.json").checksums(svd_files(svd))
    assert sorted(from_hub) == ["unet/config.json", "unet/weights", "vae/config.json", "vae/weights"]
    with pytest.raises(WeightsError, match="org/absent"):
        load_clip("hf-hub:org/absent", "hf-hub:org/absent", cache_dir=cache)


# --- transformers video encoders (issue 9): the same strict, offline rules -------------------


def test_tiny_encoders_round_trip_strictly(tiny_encoders, tmp_path):
    import transformers

    from actiondiff.features.weights import load_transformers_model

    model, root = load_transformers_model(transformers.VideoMAEModel, tiny_encoders["videomae"], "videomae")
    saved = load_file(str(root / "model.safetensors"))
    state = model.state_dict()
    assert len(state) == len(saved)  # transformers renames q_bias / v_bias to query.bias / value.bias
    for key in ("embeddings.patch_embeddings.projection.weight", "encoder.layer.1.output.dense.weight"):
        assert torch.equal(state[key], saved[key])
    assert torch.equal(state["encoder.layer.0.attention.attention.query.bias"], saved["encoder.layer.0.attention.attention.q_bias"])
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    files = transformers_files(tiny_encoders["vjepa2"], "vjepa2")
    assert sorted(files) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    # a checkpoint of the other class: every key is missing or unexpected
    with pytest.raises(WeightsError, match="VideoMAEModel exactly") as error:
        load_transformers_model(transformers.VideoMAEModel, tiny_encoders["vjepa2"], "videomae")
    assert "model.safetensors" in str(error.value) and "missing keys" in str(error.value)
    with pytest.raises(WeightsError, match=r"`weights.vjepa2` to be a checkpoint folder"):
        load_transformers_model(transformers.VJEPA2Model, tmp_path / "absent", "vjepa2")


def test_tiny_encoder_missing_and_unexpected_keys_name_the_file(tiny_encoders, tmp_path):
    import transformers

    from actiondiff.features.weights import load_transformers_model

    root = tmp_path / "vmae"
    shutil.copytree(tiny_encoders["videomae"], root)
    weight_file = root / "model.safetensors"
    state = load_file(str(weight_file))
    del state["encoder.layer.1.output.dense.bias"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(weight_file), metadata={"format": "pt"})
    with pytest.raises(WeightsError) as error:
        load_transformers_model(transformers.VideoMAEModel, root, "videomae")
    message = str(error.value)
    assert str(weight_file) in message
    assert "1 missing keys: ['encoder.layer.1.output.dense.bias']" in message
    assert "1 unexpected keys: ['extra.weight']" in message
    state = load_file(str(tiny_encoders["videomae"] / "model.safetensors"))
    state["embeddings.patch_embeddings.projection.weight"] = torch.zeros(32, 3, 2, 4, 4)
    save_file(state, str(weight_file), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="embeddings.patch_embeddings.projection.weight"):
        load_transformers_model(transformers.VideoMAEModel, root, "videomae")


def test_truncated_transformers_checkpoint_names_the_file(tiny_encoders, tmp_path):
    import transformers

    from actiondiff.features.weights import WeightsError, load_transformers_model

    root = tmp_path / "truncated"
    shutil.copytree(tiny_encoders["videomae"], root)
    weights = root / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut short
    with pytest.raises(WeightsError, match=rf"Could not load VideoMAEModel \(`weights.videomae`\) from {weights}"):
        load_transformers_model(transformers.VideoMAEModel, root, "videomae")


def test_each_model_gets_a_loading_line_with_its_size(tiny_weights, caplog):
    caplog.set_level("INFO", logger="actiondiff")
    unet, _ = load_svd(tiny_weights["svd"], dtype=torch.bfloat16)
    svd = Path(tiny_weights["svd"])
    gigabytes = sum(t.numel() for t in unet.state_dict().values()) * 2 / 1e9
    assert f"loading SVD UNet from {svd / 'unet' / 'diffusion_pytorch_model.safetensors'} ({gigabytes:.2f} GB as bfloat16)" in caplog.text
    assert "loading SVD VAE from" in caplog.text and "as float32" not in caplog.text
    caplog.clear()
    load_svd(tiny_weights["svd"], values=False)  # `weights check`: nothing is read, no line
    assert "loading" not in caplog.text


def test_hashing_a_weight_file_is_said_once(tiny_weights, tmp_path, caplog):
    caplog.set_level("INFO", logger="actiondiff")
    files = svd_files(tiny_weights["svd"])
    ChecksumCache(tmp_path / "sums.json").checksums(files)
    assert caplog.text.count("for the feature identity, once") == sum(not isinstance(v, dict) for v in files.values())
    caplog.clear()
    ChecksumCache(tmp_path / "sums.json").checksums(files)  # cached: nothing to say
    assert "hashing" not in caplog.text
