"""Tiny weights laid out under the real published file names: every layout loads strictly and
gives the features of the diffusers-layout fp32 reference; the identity follows the content."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actiondiff.cli import main
from actiondiff.features import key_maps
from actiondiff.features.backbones import feature_hash, feature_identity, weight_checksums
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.weights import (
    WeightsError,
    check_weights,
    load_clip,
    load_svd,
    load_transformers_model,
)
from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings
from actiondiff.tools.tiny_weights import (
    TINY_VIDEOMAE_CONFIG,
    TINY_VJEPA2_CONFIG,
    write_fp16_variant,
    write_single_file,
)

DECODE = DecodeSettings(height=32, width=32, window=3)
EXTRACT = ExtractSettings(layers=(2, 4), timestep_indices=(20,), conditioning="middle_frame", cond_aug=0.0)


def _frames(seed: int = 0) -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _features(weights: WeightsSettings, extract: ExtractSettings = EXTRACT) -> dict[str, np.ndarray]:
    extractor = SVDExtractor.from_weights(weights, DECODE, extract)
    return extractor.extract_window(_frames(), torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def layouts(tiny_weights, tmp_path_factory) -> dict[str, WeightsSettings]:
    root = tmp_path_factory.mktemp("layouts")
    svd, arch, ckpt = (str(tiny_weights[k]) for k in ("svd", "clip_arch", "clip_checkpoint"))
    sums = str(root / "sums.json")
    single = write_single_file(svd, ckpt, root / "single" / "svd_xt.safetensors")
    return {
        "reference": WeightsSettings(svd=svd, clip_arch=arch, clip_checkpoint=ckpt, checksum_cache=sums),
        "fp16_only": WeightsSettings(svd=str(write_fp16_variant(svd, root / "fp16")), clip_arch=arch, clip_checkpoint=ckpt,
                                     checksum_cache=sums),
        "image_encoder": WeightsSettings(svd=svd, clip_arch=arch, clip_checkpoint="", checksum_cache=sums),
        "single_file": WeightsSettings(svd=str(single), clip_arch=arch, clip_checkpoint="", checksum_cache=sums),
    }


def test_fp16_only_snapshot_loads_into_the_runs_dtype(layouts):
    reference, _ = load_svd(layouts["reference"].svd)
    unet, vae = load_svd(layouts["fp16_only"].svd, dtype=torch.float32, vae_dtype=torch.float32)
    assert unet.conv_in.weight.dtype == torch.float32 and vae.encoder.conv_in.weight.dtype == torch.float32
    assert torch.equal(unet.conv_in.weight, reference.conv_in.weight.half().float())  # the fp16 file's values
    half, vae_fp32 = load_svd(layouts["reference"].svd, dtype=torch.float16, vae_dtype=torch.float32)
    assert half.conv_in.weight.dtype == torch.float16 and vae_fp32.encoder.conv_in.weight.dtype == torch.float32
    ours, theirs = _features(layouts["fp16_only"]), _features(layouts["reference"])
    for tap in theirs:
        np.testing.assert_allclose(ours[tap], theirs[tap], rtol=0, atol=5e-3 * np.abs(theirs[tap]).max())


def test_single_file_round_trip_gives_identical_features(layouts, caplog):
    # diffusers -> sgm names (write_single_file) -> our converter -> the same tensors and features
    reference_unet, reference_vae = load_svd(layouts["reference"].svd)
    with caplog.at_level(logging.INFO):
        unet, vae = load_svd(layouts["single_file"].svd)
    for ours, theirs in ((unet, reference_unet), (vae, reference_vae)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert sorted(a) == sorted(b) and [k for k in b if not torch.equal(a[k], b[k])] == []
    encoder = sum(k.startswith("encoder.") for k in reference_vae.state_dict())  # 102 tiny, 106 in SVD-XT
    assert f"not loaded from svd_xt.safetensors: {encoder} tensors first_stage_model.encoder.*" in caplog.text
    ours, theirs = _features(layouts["single_file"]), _features(layouts["reference"])
    for tap in theirs:  # the same tensors: equal up to fp32 summation order (memory layout)
        np.testing.assert_allclose(ours[tap], theirs[tap], rtol=0, atol=1e-6)


def test_sgm_names_of_the_real_file():
    # names read from the published svd_xt.safetensors (sgm): a few of each rule
    names = key_maps.unet_sgm_names([
        "conv_in.weight", "down_blocks.1.resnets.0.spatial_res_block.conv_shortcut.weight",
        "down_blocks.2.downsamplers.0.conv.weight", "mid_block.resnets.1.temporal_res_block.norm1.bias",
        "up_blocks.0.upsamplers.0.conv.weight", "up_blocks.1.attentions.0.temporal_transformer_blocks.0.ff_in.net.2.weight",
        "up_blocks.1.upsamplers.0.conv.bias", "up_blocks.3.attentions.2.time_pos_embed.linear_1.weight"])
    assert list(names.values()) == [
        "model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.input_blocks.4.0.skip_connection.weight",
        "model.diffusion_model.input_blocks.9.0.op.weight", "model.diffusion_model.middle_block.2.time_stack.in_layers.0.bias",
        "model.diffusion_model.output_blocks.2.1.conv.weight", "model.diffusion_model.output_blocks.3.1.time_stack.0.ff_in.net.2.weight",
        "model.diffusion_model.output_blocks.5.2.conv.bias", "model.diffusion_model.output_blocks.11.1.time_pos_embed.0.weight"]
    vae = key_maps.vae_sgm_names([
        "decoder.time_conv_out.weight", "quant_conv.weight", "decoder.up_blocks.0.resnets.2.time_mixer.mix_factor",
        "encoder.mid_block.attentions.0.to_out.0.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight",
        "decoder.up_blocks.3.resnets.0.spatial_res_block.norm1.weight"])
    assert list(vae.values()) == [
        "first_stage_model.decoder.conv_out.time_mix_conv.weight", "conditioner.embedders.3.encoder.quant_conv.weight",
        "first_stage_model.decoder.up.3.block.2.mix_factor", "conditioner.embedders.3.encoder.encoder.mid.attn_1.proj_out.weight",
        "first_stage_model.decoder.up.1.upsample.conv.weight", "first_stage_model.decoder.up.0.block.0.norm1.weight"]


def test_image_encoder_equals_openclip_and_transformers(layouts, tiny_weights, tmp_path):
    import transformers

    full = load_clip(tiny_weights["clip_arch"], tiny_weights["clip_checkpoint"])
    visual = load_clip("", "", svd=layouts["image_encoder"].svd)
    assert not hasattr(visual, "transformer")  # the visual tower only
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(visual.encode_image(images), full.encode_image(images), rtol=0, atol=1e-6)
    # an independent oracle: transformers' own CLIPVisionModelWithProjection on the same files
    hf = transformers.CLIPVisionModelWithProjection.from_pretrained(str(Path(layouts["image_encoder"].svd) / "image_encoder"))
    with torch.no_grad():
        torch.testing.assert_close(visual.encode_image(images), hf(pixel_values=images).image_embeds, rtol=0, atol=2e-5)
    # a randomly initialised transformers model (not written by us) maps onto OpenCLIP too
    torch.manual_seed(3)
    config = transformers.CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                                           image_size=32, patch_size=8, projection_dim=32, hidden_act="gelu", layer_norm_eps=1e-5)
    other = transformers.CLIPVisionModelWithProjection(config).eval()
    snapshot = tmp_path / "svd"
    shutil.copytree(layouts["reference"].svd, snapshot, ignore=shutil.ignore_patterns("image_encoder"))
    other.save_pretrained(snapshot / "image_encoder")
    ours = load_clip("", "", svd=snapshot)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(images), other(pixel_values=images).image_embeds, rtol=0, atol=2e-5)
    # features from the SVD download alone equal those with the separate OpenCLIP file
    a, b = _features(layouts["image_encoder"]), _features(layouts["reference"])
    for tap in b:
        np.testing.assert_allclose(a[tap], b[tap], rtol=0, atol=1e-5)


def test_action_text_needs_a_full_openclip_checkpoint(layouts):
    extract = ExtractSettings(layers=(2,), conditioning="action_text", action_names=("run",))
    with pytest.raises(WeightsError, match="`weights.clip_checkpoint` to be a full OpenCLIP checkpoint for `action_text`"):
        SVDExtractor.from_weights(layouts["image_encoder"], DECODE, extract)


def test_vae_runs_in_fp32_when_the_run_is_bfloat16(layouts):
    # `half_precision: cast`: the UNet loaded in bf16; the VAE stays fp32 (vae_dtype) either way
    extractor = SVDExtractor.from_weights(layouts["reference"], DECODE, ExtractSettings(layers=(2,), dtype="bfloat16", half_precision="cast"))
    assert extractor.vae.encoder.conv_in.weight.dtype == torch.float32
    assert extractor.unet.conv_in.weight.dtype == torch.bfloat16
    # `half_precision: autocast` (default, the authors'): fp32 weights, bf16 ops
    autocast = SVDExtractor.from_weights(layouts["reference"], DECODE, ExtractSettings(layers=(2,), dtype="bfloat16"))
    assert autocast.unet.conv_in.weight.dtype == torch.float32 and autocast.vae.encoder.conv_in.weight.dtype == torch.float32
    mean, _ = extractor._encode_vae(_frames().to(torch.bfloat16))
    assert mean.dtype == torch.float32
    _, vae = load_svd(layouts["reference"].svd)
    expected = vae.quant_conv(vae.encoder(_frames().to(torch.bfloat16).float())).chunk(2, dim=1)[0]
    torch.testing.assert_close(mean, expected)


# --- the weights identity ---------------------------------------------------------------------


def test_identity_is_content_moved_or_trimmed_keeps_it_changed_tensor_does_not(layouts, tmp_path):
    weights = layouts["reference"]
    identity = feature_identity(DECODE, "svd", EXTRACT, weights)
    digest = feature_hash(identity)
    assert sorted(identity["weights_sha256"]) == ["clip/arch", "clip/checkpoint", "svd/unet/config.json", "svd/unet/weights",
                                                  "svd/vae/config.json", "svd/vae/weights"]
    # moved, with unused fp16 copies beside (a whole-repo download): the same identity
    moved = tmp_path / "moved"
    shutil.copytree(weights.svd, moved)
    write_fp16_variant(weights.svd, tmp_path / "fp16")
    for part in ("unet", "vae"):
        shutil.copy(tmp_path / "fp16" / part / "diffusion_pytorch_model.fp16.safetensors", moved / part)
    same = WeightsSettings(svd=str(moved), clip_arch=weights.clip_arch, clip_checkpoint=weights.clip_checkpoint,
                           checksum_cache=weights.checksum_cache)
    assert feature_hash(feature_identity(DECODE, "svd", EXTRACT, same)) == digest
    # trimmed: the unused copies deleted, still the same
    for part in ("unet", "vae"):
        (moved / part / "diffusion_pytorch_model.fp16.safetensors").unlink()
    assert feature_hash(feature_identity(DECODE, "svd", EXTRACT, same)) == digest
    # one tensor changed in place: a new identity (the checksum cache sees the new size/mtime)
    path = moved / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    state["conv_in.bias"] = state["conv_in.bias"] + 1e-3
    save_file(state, str(path))
    changed = feature_identity(DECODE, "svd", EXTRACT, same)
    assert feature_hash(changed) != digest
    assert changed["weights_sha256"]["svd/unet/weights"] != identity["weights_sha256"]["svd/unet/weights"]
    assert json.loads(Path(weights.checksum_cache).read_text())[str(path.resolve())]["size"] == path.stat().st_size


def test_bin_only_checkpoints_load_and_are_hashed(tmp_path):
    import transformers

    torch.manual_seed(0)
    model = transformers.VideoMAEModel(transformers.VideoMAEConfig(**TINY_VIDEOMAE_CONFIG))
    model.config.save_pretrained(tmp_path / "bin")  # the 2022 uploads: config.json + pytorch_model.bin
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    loaded, _ = load_transformers_model(transformers.VideoMAEModel, tmp_path / "bin", "videomae")
    assert torch.equal(loaded.embeddings.patch_embeddings.projection.weight, model.embeddings.patch_embeddings.projection.weight)
    sums = weight_checksums("videomae", WeightsSettings(videomae=str(tmp_path / "bin"), checksum_cache=str(tmp_path / "s.json")))
    assert sorted(sums) == ["videomae/config.json", "videomae/pytorch_model.bin"]


# --- transformers backbones: published pre-training and fine-tuned checkpoints -----------------


def _encoder_output(model, pixels):
    with torch.no_grad():
        return model(pixel_values=pixels).last_hidden_state


@pytest.mark.parametrize("head_class, heads", [
    ("VideoMAEForPreTraining", "decoder.*, encoder_to_decoder.*, mask_token"),
    ("VideoMAEForVideoClassification", "classifier.*, fc_norm.*"),
])
def test_videomae_pretraining_and_finetuned_checkpoints_drop_their_heads(head_class, heads, tmp_path, caplog):
    import transformers

    torch.manual_seed(0)
    config = transformers.VideoMAEConfig(**TINY_VIDEOMAE_CONFIG, num_labels=3, use_mean_pooling=head_class.endswith("Classification"))
    published = getattr(transformers, head_class)(config).eval()
    published.save_pretrained(tmp_path / "ckpt")
    with caplog.at_level(logging.INFO):
        model, _ = load_transformers_model(transformers.VideoMAEModel, tmp_path / "ckpt", "videomae")
    assert f"not in VideoMAEModel: {heads}" in caplog.text
    pixels = torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_encoder_output(model, pixels), _encoder_output(published.videomae, pixels), rtol=0, atol=0)
    # anything else unexpected is still an error
    state = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    state["videomae.extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "ckpt" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"1 unexpected keys: \['videomae.extra.weight'\]"):
        load_transformers_model(transformers.VideoMAEModel, tmp_path / "ckpt", "videomae")


def test_vjepa2_classifier_checkpoint_drops_pooler_and_classifier(tmp_path, caplog):
    import transformers

    torch.manual_seed(0)
    published = transformers.VJEPA2ForVideoClassification(transformers.VJEPA2Config(**TINY_VJEPA2_CONFIG, num_labels=3)).eval()
    published.save_pretrained(tmp_path / "ckpt")
    with caplog.at_level(logging.INFO):
        model, _ = load_transformers_model(transformers.VJEPA2Model, tmp_path / "ckpt", "vjepa2")
    assert "not in VJEPA2Model: classifier.*, pooler.*" in caplog.text
    pixels = torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state
        theirs = published.vjepa2(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def _videomae_v2_folder(tmp_path: Path) -> tuple[Path, torch.nn.Module, dict, dict[str, torch.Tensor]]:
    """A tiny VideoMAE v2 hub folder (v2 names, config.json with `model_config`), and the
    `VideoMAEModel` it converts to, its model_config and its tensors."""
    import transformers

    torch.manual_seed(0)
    model_config = dict(img_size=32, patch_size=8, in_chans=3, num_classes=0, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                        qkv_bias=True, layer_norm_eps=1e-6, init_values=0.0, use_learnable_pos_emb=False, tubelet_size=2,
                        use_mean_pooling=True, num_frames=4, cos_attn=False)
    reference = transformers.VideoMAEModel(transformers.VideoMAEConfig(
        image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, layer_norm_eps=1e-6, use_mean_pooling=True)).eval()
    state = reference.state_dict()
    # the same network under v2's names: fused qkv (key bias zero, absent), q_bias / v_bias, `model.` prefix
    v2 = {"model.patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
          "model.patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
          "model.fc_norm.weight": torch.ones(32), "model.fc_norm.bias": torch.zeros(32)}
    for n in range(2):
        p = f"encoder.layer.{n}."
        v2[f"model.blocks.{n}.attn.qkv.weight"] = torch.cat([state[p + f"attention.attention.{x}.weight"] for x in ("query", "key", "value")])
        v2[f"model.blocks.{n}.attn.q_bias"] = state[p + "attention.attention.query.bias"]
        v2[f"model.blocks.{n}.attn.v_bias"] = state[p + "attention.attention.value.bias"]
        for theirs, ours in (("norm1", "layernorm_before"), ("norm2", "layernorm_after"), ("attn.proj", "attention.output.dense"),
                             ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")):
            for kind in ("weight", "bias"):
                v2[f"model.blocks.{n}.{theirs}.{kind}"] = state[p + f"{ours}.{kind}"]
    folder = tmp_path / "VideoMAEv2-tiny"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in v2.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "VideoMAEv2_Base", "model_config": model_config}))
    return folder, reference, model_config, v2


def test_videomae_v2_hub_layout_converts_exactly(tmp_path, caplog):
    import transformers

    from actiondiff.features.backbones.videomae_v2 import v2_to_videomae

    folder, reference, model_config, v2 = _videomae_v2_folder(tmp_path)
    assert sorted(v2_to_videomae(v2)[1]) == ["model.fc_norm.bias", "model.fc_norm.weight"]
    with caplog.at_level(logging.INFO):
        model, _ = load_transformers_model(transformers.VideoMAEModel, folder, "videomae")
    assert model.config.layer_norm_eps == 1e-6 and "dropped 2 head tensors" in caplog.text
    pixels = torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_encoder_output(model, pixels), _encoder_output(reference, pixels), rtol=0, atol=0)
    (folder / "config.json").write_text(json.dumps({"model_type": "VideoMAEv2_giant", "model_config": {**model_config, "cos_attn": True}}))
    with pytest.raises(WeightsError, match=r"sets \{'cos_attn': True\}"):
        load_transformers_model(transformers.VideoMAEModel, folder, "videomae")


# --- `actiondiff weights check` -------------------------------------------------------------------


def test_weights_check_reports_each_layout_and_names_what_is_wrong(layouts, tiny_encoders, tmp_path, capsys):
    reference, single = layouts["reference"], layouts["single_file"]
    lines = check_weights(reference.svd)
    assert lines[1].startswith("  unet: ") and "from diffusion_pytorch_model.safetensors (a config other than SVD-XT's)" in lines[1]
    assert "image_encoder: OpenCLIP visual tower" in lines[3]
    assert "SVD single file (sgm names)" in check_weights(single.svd, clip_arch=reference.clip_arch)[0]
    assert "loads as VideoMAEModel" in check_weights(tiny_encoders["videomae"])[0]
    assert "loads as VJEPA2Model" in check_weights(tiny_encoders["vjepa2"])[0]
    # a damaged copy of each: the missing / mis-shaped tensor is named
    broken = tmp_path / "svd"
    shutil.copytree(layouts["fp16_only"].svd, broken)
    path = broken / "unet" / "diffusion_pytorch_model.fp16.safetensors"
    state = load_file(str(path))
    del state["conv_in.bias"]
    state["conv_out.weight"] = torch.zeros(4, 32, 1, 1, dtype=torch.float16)
    save_file(state, str(path))
    sgm = tmp_path / "single" / "svd_xt.safetensors"
    shutil.copytree(Path(single.svd).parent, sgm.parent)
    state = load_file(str(sgm))
    del state["model.diffusion_model.out.2.bias"]
    save_file(state, str(sgm))
    code = main(["weights", "check", str(broken), str(sgm), str(tiny_encoders["vjepa2"]), "--clip-arch", reference.clip_arch])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL {broken}: Expected the weights in {path} to match UNetSpatioTemporalConditionModel" in out
    assert "1 missing keys: ['conv_in.bias']" in out
    assert "conv_out.weight: [4, 32, 1, 1] in the file, [4, 32, 3, 3] expected" in out
    assert "1 missing keys: ['conv_out.bias']" in out and "file names of the missing: ['model.diffusion_model.out.2.bias']" in out
    assert out.count("FAIL") == 2 and "ok   " in out


def test_shape_errors_name_the_tensor_as_the_file_does(layouts, tmp_path):
    sgm = tmp_path / "single" / "svd_xt.safetensors"
    shutil.copytree(Path(layouts["single_file"].svd).parent, sgm.parent)
    state = load_file(str(sgm))
    state["model.diffusion_model.out.2.weight"] = torch.zeros(4, 32, 1, 1)
    save_file(state, str(sgm))
    with pytest.raises(WeightsError) as error:
        load_svd(sgm)
    assert "['model.diffusion_model.out.2.weight: [4, 32, 1, 1] in the file, [4, 32, 3, 3] expected (loaded as conv_out.weight)']" \
        in str(error.value)
    # the VAE's 1x1 projections are reshaped on load: both shapes are given
    state = load_file(str(Path(layouts["single_file"].svd)))
    name = f"{key_maps.SGM_ENCODER_PREFIX}encoder.mid.attn_1.q.weight"
    state[name] = torch.zeros(8, 8, 1, 1)
    save_file(state, str(sgm))
    with pytest.raises(WeightsError) as error:
        load_svd(sgm)
    assert f"['{name}: [8, 8, 1, 1] in the file ([8, 8] once converted), [32, 32] expected " \
           f"(loaded as encoder.mid_block.attentions.0.to_q.weight)']" in str(error.value)


def test_transformers_shape_errors_name_the_tensor_as_the_file_does(tmp_path):
    import transformers

    transformers.VideoMAEForVideoClassification(transformers.VideoMAEConfig(**TINY_VIDEOMAE_CONFIG, num_labels=3)).save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state["videomae.embeddings.patch_embeddings.projection.bias"] = torch.zeros(5)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    expected = ("'videomae.embeddings.patch_embeddings.projection.bias: [5] in the file, [32] expected "
                "(loaded as embeddings.patch_embeddings.projection.bias)'")
    with pytest.raises(WeightsError) as error:
        load_transformers_model(transformers.VideoMAEModel, tmp_path, "videomae")
    assert f"1 mismatched keys: [{expected}]" in str(error.value)
    with pytest.raises(WeightsError) as error:
        check_weights(tmp_path)  # `weights check`: the same tensor, the same name
    assert f"1 mismatched shapes: [{expected}]" in str(error.value)


def test_single_file_without_configs_says_full_size_configs_were_assumed(layouts, tmp_path, caplog):
    with_configs = Path(layouts["single_file"].svd)
    assert check_weights(with_configs, clip_arch=layouts["reference"].clip_arch)[1] == \
        "  configs: unet/config.json and vae/config.json beside the file"
    alone = tmp_path / "svd_xt.safetensors"  # as downloaded: the real file carries no configs
    shutil.copy(with_configs, alone)
    assumed = (f"SVD-XT's full-size unet and vae configs were assumed for svd_xt.safetensors, since {tmp_path} has no "
               f"unet/config.json or vae/config.json; for weights of another size, place their unet/config.json and "
               f"vae/config.json there (configs beside the file are read).")
    with pytest.raises(WeightsError) as error, caplog.at_level(logging.INFO):
        load_svd(alone)  # the tiny tensors do not fit the full-size configs
    assert str(error.value).endswith(assumed) and assumed in caplog.text
    shutil.copytree(with_configs.parent / "unet", tmp_path / "unet")  # only the unet's: the vae's still assumed
    with pytest.raises(WeightsError, match="full-size vae configs were assumed .* has no vae/config.json;"):
        load_svd(alone)
    shutil.copytree(with_configs.parent / "vae", tmp_path / "vae")
    assert load_svd(alone, values=False)  # configs placed beside it are read


def _checkpoint(tmp_path: Path, kind: str) -> Path:
    """A tiny published-style checkpoint folder with heads: `save_pretrained` of the class named."""
    import transformers

    torch.manual_seed(0)
    if kind == "VJEPA2ForVideoClassification":
        config = transformers.VJEPA2Config(**TINY_VJEPA2_CONFIG, num_labels=3)
    else:
        config = transformers.VideoMAEConfig(**TINY_VIDEOMAE_CONFIG, num_labels=3)
    getattr(transformers, kind)(config).save_pretrained(tmp_path / kind)
    return tmp_path / kind


@pytest.mark.parametrize("kind, dropped", [
    ("VideoMAEForPreTraining", "decoder.* (64), encoder_to_decoder.* (1), mask_token (1)"),
    ("VideoMAEForVideoClassification", "classifier.* (2), fc_norm.* (2)"),
    ("VJEPA2ForVideoClassification", "classifier.* (2), pooler.* (31)"),
])
def test_weights_check_lists_the_dropped_heads_of_transformers_checkpoints(kind, dropped, tmp_path):
    lines = check_weights(_checkpoint(tmp_path, kind))
    assert lines[1] == f"  dropped heads (tensors the encoder does not have, not loaded): {dropped}"


def test_weights_check_lists_no_dropped_heads_of_bare_encoders_and_videomae_v2_heads(tiny_encoders, tmp_path):
    for name in ("videomae", "vjepa2"):
        assert check_weights(tiny_encoders[name])[1].endswith("not loaded): none in the file")
    folder, *_ = _videomae_v2_folder(tmp_path)  # VideoMAE v2's hub layout: its fc_norm is dropped
    assert check_weights(folder)[1] == "  dropped heads (tensors the encoder does not have, not loaded): fc_norm.* (2)"
    state = load_file(str(folder / "model.safetensors"))
    state["model.blocks.1.attn.qkv.weight"] = torch.zeros(90, 32)  # a fused tensor, split on load
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError) as error:
        check_weights(folder)
    assert ("'model.blocks.1.attn.qkv.weight: [90, 32] in the file ([30, 32] once converted), [32, 32] expected "
            "(loaded as encoder.layer.1.attention.attention.key.weight)'") in str(error.value)


# --- replacing the weights at the same path, as a user would (plan, extract, pack) -------------


def test_replaced_weights_re_extract_under_a_new_identity_and_the_store_records_them(tiny_weights, tmp_path, capsys):
    import pandas as pd
    from test_svd_extractor import write_video

    from actiondiff.features.weight_files import file_sha256
    from actiondiff.io.manifest import write_manifest
    from actiondiff.plan import feature_sets
    from actiondiff.store.packed import FeatureStore, store_info

    shutil.copytree(Path(tiny_weights["svd"]).parent, tmp_path / "weights")
    svd = tmp_path / "weights" / "tiny-svd"
    config = {
        "decode": {"height": 32, "width": 32, "window": 2, "stride": 4},
        "extraction": {"layers": [2], "timestep_indices": [20]},
        "weights": {"svd": str(svd), "clip_arch": str(tmp_path / "weights/tiny-clip/open_clip_config.json"),
                    "clip_checkpoint": "", "checksum_cache": str(tmp_path / "results/weights.sha256.json")},
    }
    video = write_video(tmp_path / "a.mp4", 8, seed=0)
    manifest = tmp_path / "manifest.csv"
    write_manifest(pd.DataFrame([{"video_id": "a", "path": str(video), "labels": "x", "domain": "d", "split": "train"}]), manifest)

    def run() -> tuple[str, dict]:
        digest = feature_sets(config)["default"].settings_hash  # as the workflow plans the paths
        cache, store = tmp_path / "results/features" / digest, tmp_path / "results/stores" / f"{digest}.zarr"
        assert main(["extract-features", "--manifest", str(manifest), "--out", str(cache), "--settings-hash", digest,
                     "--settings", json.dumps(config)]) == 0
        assert main(["pack-store", "--cache", str(cache), "--manifest", str(manifest), "--out", str(store)]) == 0
        return digest, store_info(store)

    first, info = run()
    assert "1 ok (1 extracted, 0 already committed" in capsys.readouterr().out
    assert info["settings_hash"] == first
    # replace the UNet at the same path (another seed): a new identity, the video extracted again
    unet = svd / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(unet))
    state["conv_in.weight"] = torch.randn(state["conv_in.weight"].shape, generator=torch.Generator().manual_seed(5))
    save_file(state, str(unet))
    second, info = run()
    assert second != first
    assert "1 ok (1 extracted, 0 already committed" in capsys.readouterr().out
    recorded = FeatureStore(tmp_path / "results/stores" / f"{second}.zarr").attrs["backbone"]["files"]
    assert recorded[str(unet)] == file_sha256(unet)  # the store records the weights that produced its features
    assert info["settings"]["weights_sha256"]["svd/unet/weights"] == file_sha256(unet)
    # the job refuses to extract when the weights changed after planning
    save_file({**state, "conv_in.bias": state["conv_in.bias"] + 1}, str(unet))
    cache = tmp_path / "results/features" / second
    assert main(["extract-features", "--manifest", str(manifest), "--out", str(cache), "--settings-hash", second,
                 "--settings", json.dumps(config)]) == 2
