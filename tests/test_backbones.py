"""The backbone interface: registry, SVD/SDv2 unchanged behind it, VideoMAE and V-JEPA 2 on tiny
checkpoints of the real transformers classes, and a third-party backbone via its entry point."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_svd_extractor import write_video

from actiondiff.features.backbones import (
    LAST_HIDDEN_TAP,
    backbone_class,
    feature_hash,
    feature_identity,
    known_backbones,
    parse_identity,
    resolve_settings,
    token_groups_to_frames,
)
from actiondiff.features.backbones.transformer import IMAGENET_MEAN, normalisation
from actiondiff.features.windows import content_key, video_seed
from actiondiff.io.video import iter_windows
from actiondiff.plan import feature_sets, parse_experiments
from actiondiff.settings import (
    LATER_FIELDS,
    DecodeSettings,
    ExtractSettings,
    WeightsSettings,
    settings_hash,
    to_dict,
)

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "plugin_backbone"
DECODE = DecodeSettings(stride=1, height=64, width=64, window=6)


@pytest.fixture()
def plugin_on_path(monkeypatch):
    """The test package's folder on sys.path: its dist-info declares the entry point."""
    monkeypatch.syspath_prepend(str(PLUGIN))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "v.mp4", 7, seed=3)


def _weights(tiny_weights=None, tiny_encoders=None) -> WeightsSettings:
    paths = {**(tiny_weights or {}), **(tiny_encoders or {})}
    return WeightsSettings(**{k: str(v) for k, v in paths.items()})


def test_registry_names_and_unknown_backbone(plugin_on_path):
    assert known_backbones()[:4] == ["svd", "sdv2", "videomae", "vjepa2"] and "histogram" in known_backbones()
    with pytest.raises(ValueError, match=r"one of \['svd', 'sdv2', 'videomae', 'vjepa2', 'histogram'\].*'resnet'"):
        backbone_class("resnet")


def test_svd_identity_holds_the_weights_content_and_sdv2_is_svd_with_sdv2_true(tmp_path):
    weights = WeightsSettings(svd=str(tmp_path / "absent"), checksum_cache=str(tmp_path / "sums.json"))
    name, extract = resolve_settings({"layers": [9], "timestep_indices": [20]}, {}, "svd", "test")
    identity = feature_identity(DECODE, name, extract, weights)
    # weights not there yet (planned before the download): their content is `missing`
    paths = {"svd": weights.svd, "clip_arch": weights.clip_arch, "clip_checkpoint": weights.clip_checkpoint}
    # the GPU tuning fields at their defaults are left out, as in identities recorded before them
    untuned = {k: v for k, v in to_dict(ExtractSettings()).items() if k not in LATER_FIELDS}
    before = {"decode": to_dict(DECODE), "extraction": untuned, "weights": paths}
    assert identity == {**before, "weights_sha256": {"svd": "missing", "clip_arch": "missing", "clip_checkpoint": "missing"}}
    # the hash covers the content, not the location; an identity recorded before content
    # hashing (no `weights_sha256`) keeps the hash it had
    assert feature_hash(identity) == settings_hash({k: v for k, v in identity.items() if k != "weights"})
    assert feature_hash(before) == settings_hash(before)
    assert feature_hash({**before, "extraction": to_dict(ExtractSettings())}) == feature_hash(before)  # written out
    tuned = feature_identity(DECODE, name, dataclasses.replace(extract, tf32=True), weights)
    assert tuned["extraction"] == {**untuned, "tf32": True} and feature_hash(tuned) != feature_hash(identity)
    # the authors' model where ours departs (issue 30): hashed when set, like the tuning fields
    authors = feature_identity(DECODE, name, dataclasses.replace(extract, z_encoder="first_stage", resnet_norm_eps="sgm"), weights)
    assert authors["extraction"] == {**untuned, "z_encoder": "first_stage", "resnet_norm_eps": "sgm"}
    assert feature_hash(authors) != feature_hash(identity)
    _, sdv2 = resolve_settings({"sdv2": False}, {"backbone": "sdv2"}, "svd", "test")
    assert sdv2 == ExtractSettings(sdv2=True)
    assert feature_identity(DECODE, "sdv2", sdv2, weights) == feature_identity(DECODE, "svd", ExtractSettings(sdv2=True), weights)
    assert parse_identity(identity, "test") == (DECODE, "svd", extract, dataclasses.replace(weights, checksum_cache=""))


def test_encoder_settings_inherit_only_their_keys_and_refuse_unknown_ones():
    extraction = {"layers": [3, 9], "timestep_indices": [20], "dtype": "bfloat16"}
    name, settings = resolve_settings(extraction, {"backbone": "videomae"}, "svd", "test")
    assert name == "videomae" and to_dict(settings) == {"dtype": "bfloat16"}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['layers'\]"):
        resolve_settings({}, {"backbone": "vjepa2", "layers": [9]}, "svd", "config key `feature_sets.v`")
    identity = feature_identity(DECODE, name, settings, WeightsSettings(videomae="/ckpt"))
    assert identity["backbone"] == "videomae" and identity["weights"] == {"videomae": "/ckpt"}
    assert "height" not in identity["decode"] and "window" not in identity["decode"]  # the checkpoint's
    assert identity["decode"]["stride"] == 1
    decode, *rest = parse_identity(identity, "test")
    assert settings_hash(feature_identity(decode, *rest)) == settings_hash(identity)


def test_svd_backbone_features_equal_the_svd_extractor(tiny_weights, video):
    weights = _weights(tiny_weights)
    decode = DecodeSettings(stride=2, height=32, width=32, window=3)
    _, extract = resolve_settings({"layers": [4, 2], "timestep_indices": [20], "conditioning": "none"}, {}, "svd", "test")
    backbone = backbone_class("svd").load(extract, decode, weights)
    assert backbone.input_size == (32, 32) and backbone.clip_length == 3
    assert backbone.tap_names == ["L02_T20", "L04_T20"] and backbone.feature_dims == {"L02_T20": 32, "L04_T20": 32}
    ours = backbone.extract_video(video, "v")
    # By hand: decode the windows, seed one generator by the video's content, run each window.
    generator = torch.Generator().manual_seed(video_seed(content_key(video), extract))
    windows = list(iter_windows(video, decode))
    by_hand = [backbone.extractor.extract_window(w.frames, generator) for w in windows]
    assert ours.features["L04_T20"].shape == (4, 32) and len(windows) == 2  # 4 kept frames, windows of 3
    for tap in ("L02_T20", "L04_T20"):
        np.testing.assert_array_equal(ours.features[tap], np.concatenate([part[tap] for part in by_hand]))
    np.testing.assert_array_equal(ours.frame_index, np.concatenate([w.frame_index for w in windows]))
    svd = Path(weights.svd)
    assert backbone.weight_files(weights) == {
        "svd/unet/config.json": svd / "unet/config.json", "svd/unet/weights": svd / "unet/diffusion_pytorch_model.safetensors",
        "svd/vae/config.json": svd / "vae/config.json", "svd/vae/weights": svd / "vae/diffusion_pytorch_model.safetensors",
        "clip/arch": Path(weights.clip_arch), "clip/checkpoint": Path(weights.clip_checkpoint)}


def test_token_groups_to_frames_by_hand():
    # 2 temporal groups x 2 x 1 patches, 1 channel: group means 1.5 and 10.0
    hidden = torch.tensor([[[1.0], [2.0], [4.0], [16.0]]])  # [1, 4, 1]
    out = token_groups_to_frames(hidden, (2, 2, 1), tubelet_size=2)
    assert out.dtype == torch.float32 and out[0, :, 0].tolist() == [1.5, 1.5, 10.0, 10.0]
    with pytest.raises(ValueError, match="2x2x2 = 8 tokens, but got 4"):
        token_groups_to_frames(hidden, (2, 2, 2), tubelet_size=2)


@pytest.mark.parametrize("name", ["videomae", "vjepa2"])
def test_encoder_window_is_the_spatial_mean_per_tubelet(name, tiny_encoders):
    backbone = backbone_class(name).load(backbone_class(name).settings_class(), DECODE, _weights(tiny_encoders=tiny_encoders))
    assert backbone.input_size == (32, 32) and backbone.clip_length == 4 and backbone.tap_names == [LAST_HIDDEN_TAP]
    assert backbone.feature_dims == {LAST_HIDDEN_TAP: 32}
    frames = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # 3 real of 4
    features = backbone.extract_window(frames, torch.Generator())[LAST_HIDDEN_TAP]
    assert features.shape == (3, 32) and features.dtype == np.float32
    # by hand: pad with a zero frame, [-1, 1] -> ImageNet-normalised, last hidden state [1, 2*4*4, 32]
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
    clip = torch.cat([frames, torch.zeros(1, 3, 32, 32)])
    pixels = (((clip + 1) / 2 - mean) / std)[None]
    with torch.inference_mode():
        hidden = backbone.forward(pixels)
    assert hidden.shape == (1, 32, 32)
    groups = hidden[0].reshape(2, 16, 32).mean(dim=1)  # [t', c]
    np.testing.assert_allclose(features, groups[[0, 0, 1]].numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(features[0], features[2])


@pytest.mark.parametrize("name", ["videomae", "vjepa2"])
def test_encoder_video_features_per_kept_frame(name, tiny_encoders, video):
    decode = DecodeSettings(stride=2, height=64, width=64, window=25)  # size and window: the checkpoint's
    backbone = backbone_class(name).load(backbone_class(name).settings_class(), decode, _weights(tiny_encoders=tiny_encoders))
    features = backbone.extract_video(video, "v")
    assert features.frame_index.tolist() == [0, 2, 4, 6]  # 7 frames, stride 2: one clip of 4
    assert features.features[LAST_HIDDEN_TAP].shape == (4, 32)
    again = backbone.extract_video(video, "v")
    assert again.features[LAST_HIDDEN_TAP].tobytes() == features.features[LAST_HIDDEN_TAP].tobytes()
    ones = DecodeSettings(stride=1)  # 7 frames: a full clip and a padded one of 3
    assert backbone_class(name).load(backbone.settings, ones, _weights(tiny_encoders=tiny_encoders)).extract_video(
        video, "v").features[LAST_HIDDEN_TAP].shape == (7, 32)


def test_normalisation_from_the_preprocessor_config(tmp_path):
    assert normalisation(tmp_path) == (IMAGENET_MEAN, (0.229, 0.224, 0.225))
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    assert normalisation(tmp_path) == ((0.5,) * 3, (0.25,) * 3)


def test_plugin_backbone_through_entry_point(plugin_on_path, video):
    name, settings = resolve_settings({"layers": [9]}, {"backbone": "histogram", "bins": 4}, "svd", "test")
    backbone = backbone_class(name).load(settings, DecodeSettings(stride=1), WeightsSettings())
    features = backbone.extract_video(video, "v").features[LAST_HIDDEN_TAP]  # 7 frames: windows of 8
    assert features.shape == (7, 12)
    np.testing.assert_allclose(features.reshape(7, 3, 4).sum(axis=2), 1.0, rtol=1e-6)
    assert feature_identity(DecodeSettings(), name, settings, WeightsSettings())["backbone"] == "histogram"


def test_backbones_config_lists_four_backbones_in_one_table():
    config = yaml.safe_load((REPO / "config" / "backbones.yaml").read_text())
    sets = feature_sets(config)
    assert {n: s.backbone_label for n, s in sets.items()} == {
        "svd": "svd", "sdv2": "sdv2", "videomae": "videomae", "vjepa2": "vjepa2"}
    assert sets["sdv2"].extract.sdv2 and len({s.settings_hash for s in sets.values()}) == 4
    experiments = parse_experiments(config)
    rows = [(e.run_settings(config, "main")["run"]["backbone"], e.taps) for e in experiments.values()
            if "results" in e.settings.tables and e.protocol.name == "custom"]
    assert rows == [("svd", ["L09_T20"]), ("sdv2", ["L09_T20"]), ("videomae", ["L00_T00"]), ("vjepa2", ["L00_T00"])]
    assert sets["videomae"].weight_inputs == ["resources/weights/tiny-videomae/config.json"]
