"""FLOP counts on the `meta` device, and the authors' procedure as a baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from actiondiff.cli import main
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.unet_taps import tap_unet
from actiondiff.features.weights import load_clip, load_svd
from actiondiff.settings import DecodeSettings, ExtractSettings
from actiondiff.tools.cost_baseline import authors_window_taps
from actiondiff.tools.flops import (
    authors_cost,
    build_models,
    cost_table,
    count_flops,
    full_unet_cost,
    layer_costs,
    ours_cost,
    ours_flops_by_kind,
)

FULL = DecodeSettings()  # 576x1024, window 25
TINY = DecodeSettings(height=64, width=64, window=25)
GRID = ExtractSettings(layers=tuple(range(1, 14)), timestep_indices=(0, 5, 10, 15, 20, 25, 29))

ROOT = Path(__file__).resolve().parents[1]


def test_full_size_unet_to_layer_9_and_vae_encoder_per_frame():
    unet, vae, clip = build_models("svd-xt")
    frames = 25
    sample = torch.zeros(1, frames, 8, 72, 128, device="meta")
    states = torch.zeros(frames, 1, 1024, device="meta")
    meta = dict(device="meta")
    with torch.inference_mode():
        to_layer_9 = count_flops(
            lambda: tap_unet(unet, sample, torch.zeros(1, **meta), states, torch.zeros(1, 3, **meta), torch.zeros(1, frames, **meta), (9,))
        )
        vae_encoder = count_flops(lambda: vae.encode(torch.zeros(1, 3, 576, 1024, **meta)))
        clip_image = count_flops(lambda: clip.encode_image(torch.zeros(1, 3, 224, 224, **meta)))
    assert to_layer_9 / frames / 1e9 == pytest.approx(1082.8, abs=0.1)
    assert vae_encoder / 1e9 == pytest.approx(2609.1, abs=0.1)
    assert clip_image / 1e9 == pytest.approx(334.6, abs=0.1)


def test_tiny_costs_decompose_as_the_procedures_say():
    models = build_models("tiny")
    extract = ExtractSettings(layers=(9, 3), timestep_indices=(20, 5, 10))
    ours, authors = ours_cost(models, TINY, extract), authors_cost(models, TINY, extract)
    per_layer = layer_costs(models[0], TINY)
    full = full_unet_cost(models[0], TINY)
    assert per_layer == sorted(per_layer) and per_layer[-1] < full
    num_t = 3
    # ours: one VAE pass per frame plus one of the noised middle frame, one CLIP pass per
    # window, T timesteps batched to layer 9; authors: 3 VAE and 2 CLIP passes per frame and timestep
    assert ours.vae * 25 / 26 * 3 * num_t == pytest.approx(authors.vae, rel=1e-9)
    assert ours.clip * 25 * 2 * num_t == pytest.approx(authors.clip, rel=1e-9)
    assert ours.unet == pytest.approx(num_t * per_layer[8], rel=1e-9)
    # authors: the whole UNet on the guidance batch of 2 x window, once per timestep
    assert authors.unet == pytest.approx(2 * num_t * full, rel=1e-9)
    assert authors.total / ours.total > 3
    # split by model and op kind, as a mixed-precision MFU needs: the same totals
    kinds = ours_flops_by_kind(models, TINY, extract)
    assert kinds["vae", "conv"] + kinds["vae", "matmul"] == pytest.approx(ours.vae, rel=1e-9)
    assert sum(kinds.values()) == pytest.approx(ours.total, rel=1e-9)
    assert kinds["vae", "matmul"] > 0 and kinds["unet_clip", "conv"] > 0  # the VAE's attention, the UNet's convs


@pytest.mark.slow
def test_full_size_targets():
    default = cost_table("svd-xt", FULL, ExtractSettings())
    # ours: 3705 GFLOP/frame + one VAE pass (2609.1) of the noised middle frame per 25 frames
    assert [round(c.total) for c in default] == [14892, 3810]
    assert default[0].total / default[1].total >= 3.5
    grid = cost_table("svd-xt", FULL, GRID)
    assert round(grid[0].total) == 104247
    assert grid[0].total / grid[1].total >= 9


@pytest.mark.parametrize("sdv2", [False, True])
def test_authors_conditional_half_equals_ours_with_the_same_draws(tiny_weights, sdv2):
    """Per-frame conditioning (the authors' code), same generator: the cost baseline's full
    guidance batch and our conditional half to layer 9 give the same features."""
    unet, vae = load_svd(tiny_weights["svd"])
    clip = load_clip(tiny_weights["clip_arch"], tiny_weights["clip_checkpoint"])
    decode = DecodeSettings(height=64, width=64, window=5)
    settings = ExtractSettings(layers=(2, 9), timestep_indices=(20, 5), conditioning="per_frame", sdv2=sdv2)
    extractor = SVDExtractor(unet, vae, clip, decode, settings)
    frames = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = extractor.window_taps(frames, torch.Generator().manual_seed(0))
    theirs = authors_window_taps(extractor, frames, torch.Generator().manual_seed(0))
    for layer in (2, 9):
        assert theirs[layer].shape == ours[layer].shape == (2, 4, {2: 32, 9: 64}[layer])
        torch.testing.assert_close(theirs[layer], ours[layer], rtol=1e-4, atol=1e-5)


def test_cli_layers_and_flops_on_tiny(capsys):
    assert main(["layers", "--arch", "tiny", "--settings", '{"decode": {"height": 64, "width": 64}}']) == 0
    out = capsys.readouterr().out
    assert "| 9 | down_blocks[2].attentions[1] | 64 | 2x2 |" in out
    assert "| 13 | mid_block | 64 | 1x1 |" in out
    settings = '{"decode": {"height": 64, "width": 64}}'
    assert main(["flops", "--arch", "tiny", "--layers", "9", "--timesteps", "20", "--settings", settings]) == 0
    out = capsys.readouterr().out
    assert "| authors |" in out and "| ours |" in out and "ratio authors / ours" in out


def test_transformer_backbones_per_frame_on_meta():
    """Full-size VideoMAE ViT-B/16 (16 x 224^2) and V-JEPA 2 ViT-L/16 (64 x 256^2), encoder only.

    VideoMAE-B: 360.7 GFLOP per clip = 180 GMAC, the VideoMAE paper's 180 GFLOPs (in MACs).
    """
    from actiondiff.tools.flops import ENCODERS, encoder_cost

    videomae = encoder_cost(*ENCODERS["videomae-base"])
    assert videomae.input == "16 x 224x224" and videomae.gflop_per_frame * 1e9 == pytest.approx(22_543_073_280, abs=1)
    vjepa2 = encoder_cost(*ENCODERS["vjepa2-large"])
    assert vjepa2.input == "64 x 256x256" and vjepa2.gflop_per_frame * 1e9 == pytest.approx(180_791_279_616, abs=1)


def test_config_cost_separate_vs_shared_on_meta(capsys):
    """`flops --config` on a shipped config (bf16 autocast: no autocast on meta), tiny models:
    every set listed, shared cheaper than separate, GPU-hours stated."""
    from actiondiff.tools.config_cost import config_cost

    config = yaml.safe_load((ROOT / "config" / "animal_kingdom.yaml").read_text())
    cost = config_cost(config, arch="tiny")
    assert list(cost.stages) == list(config["feature_sets"])
    assert cost.videos["paper"] == 30_100 and cost.videos["grid"] == 5_749  # published counts, nested
    assert cost.frames["window_10"] == 5_749 * 80  # 75 kept frames in 8 windows of 10
    for name in ("window_10", "window_16", "window_21"):  # alone in their window length: VAE chunks shared
        assert cost.shared[name] < cost.separate[name]
    assert sum(cost.shared.values()) < sum(cost.separate.values())
    assert cost.shared["paper"] < cost.separate["paper"]
    assert main(["flops", "--config", str(ROOT / "config" / "ucf_hmdb.yaml"), "--arch", "tiny", "--videos", "10"]) == 0
    out = capsys.readouterr().out
    assert "| paper | 25 | 10 |" in out and "separate / shared" in out and "--videos 10" in out


def test_window_memory_estimate_on_meta():
    """Tiny models on meta: the VAE chunk bounds the activation peak; weights as placed."""
    from actiondiff.tools.flops import build_models
    from actiondiff.tools.memory import placed_bytes, window_memory

    models = build_models("tiny")
    decode = DecodeSettings(height=64, width=64, window=8)
    one, eight = (window_memory(models, decode, ExtractSettings(vae_chunk=c)) for c in (1, 8))
    assert 0 < one.activations < eight.activations and one.weights == eight.weights
    assert placed_bytes(models, ExtractSettings(layers=(13,))) > placed_bytes(models, ExtractSettings(layers=(1,)))
    assert placed_bytes(models, ExtractSettings(conditioning="none")) < placed_bytes(models, ExtractSettings())  # no CLIP
    autocast = window_memory(models, decode, ExtractSettings(dtype="bfloat16"))
    assert autocast.weights == one.weights  # autocast keeps the float32 weights
