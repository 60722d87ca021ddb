"""The SVD extractor on tiny seeded weights and small PyAV-written videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from actiondiff.cli import main
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.weights import load_clip, load_svd
from actiondiff.features.windows import content_key, video_seed
from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings, settings_hash
from actiondiff.store.cache import FeatureCache

DECODE = DecodeSettings(stride=1, height=64, width=64, window=6)


def write_video(path: Path, num_frames: int, seed: int) -> Path:
    """A small real H.264 video: a bright square moving over seeded noise."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(num_frames):
            image = background.copy()
            image[10:26, 4 + 3 * i : 20 + 3 * i] = (250, 240, 30)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def models(tiny_weights):
    unet, vae = load_svd(tiny_weights["svd"])
    clip = load_clip(tiny_weights["clip_arch"], tiny_weights["clip_checkpoint"])
    return unet, vae, clip


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {name: write_video(root / f"{name}.mp4", n, seed) for name, n, seed in [("a", 8, 1), ("b", 5, 2)]}


def _frames(num: int, seed: int = 0) -> torch.Tensor:
    """[num, 3, 64, 64] in [-1, 1]."""
    return torch.rand(num, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _extractor(models, decode=DECODE, **extract) -> SVDExtractor:
    return SVDExtractor(*models, decode, ExtractSettings(**extract))


def test_video_features_shapes_and_provenance(models, videos):
    extractor = _extractor(models, layers=(9, 1), timestep_indices=(20, 5))
    result = extractor.extract_video(videos["a"], "a")
    assert sorted(result.features) == ["L01_T05", "L01_T20", "L09_T05", "L09_T20"]
    assert result.features["L09_T20"].shape == (8, 64) and result.features["L01_T05"].shape == (8, 32)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in result.features.values())
    np.testing.assert_array_equal(result.frame_index, np.arange(8))  # windows of 6 + 2 frames
    np.testing.assert_allclose(result.timestamp_ms, np.arange(8) * 100.0)
    # timesteps really differ, and layers really differ
    assert not np.allclose(result.features["L09_T20"], result.features["L09_T05"], atol=1e-3)


def test_batched_timesteps_equal_one_at_a_time(models):
    frames = _frames(4)
    both = _extractor(models, layers=(3, 9), timestep_indices=(5, 20)).window_taps(frames, torch.Generator().manual_seed(7))
    for i, t in enumerate((5, 20)):
        alone = _extractor(models, layers=(3, 9), timestep_indices=(t,)).window_taps(frames, torch.Generator().manual_seed(7))
        for layer in (3, 9):
            assert both[layer].shape == (2, 4, alone[layer].shape[-1])
            torch.testing.assert_close(both[layer][i], alone[layer][0], rtol=1e-5, atol=1e-5)


def test_deterministic_across_order_and_runs(models, videos):
    settings = dict(layers=(9,), timestep_indices=(20,), noise="gaussian", noise_draws=2, latent="sample")
    first = _extractor(models, **settings)
    a1, b1 = first.extract_video(videos["a"], "a"), first.extract_video(videos["b"], "b")
    second = _extractor(models, **settings)
    b2, a2 = second.extract_video(videos["b"], "b"), second.extract_video(videos["a"], "a")
    for one, two in ((a1, a2), (b1, b2)):
        assert one.features["L09_T20"].tobytes() == two.features["L09_T20"].tobytes()
    # the seed is a function of the video's content and the settings only
    extract = ExtractSettings()
    assert video_seed("a", extract) == video_seed("a", ExtractSettings())
    assert video_seed("a", extract) != video_seed("b", extract)
    assert video_seed("a", extract) != video_seed("a", ExtractSettings(seed=1))
    assert content_key(videos["a"]) != content_key(videos["b"])
    # the same file under another id and path: the same draws, the same features
    copy = Path(videos["a"]).parent / "renamed" / "copy.mp4"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(videos["a"], copy)
    renamed = second.extract_video(copy, "another/id")
    assert renamed.features["L09_T20"].tobytes() == a1.features["L09_T20"].tobytes()


def _mode(vae, frames: torch.Tensor) -> torch.Tensor:
    """diffusers' posterior mode (= mean) of frames [n, 3, H, W]: [n, 4, h, w]."""
    with torch.inference_mode():
        return vae.encode(frames).latent_dist.mode()


def test_conditioning_modes(models):
    unet, vae, clip = models
    frames = _frames(5)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    padded = torch.cat([frames, -torch.ones(1, 3, 64, 64)])  # 5 real frames + 1 black padding frame
    noise = lambda n: torch.randn(n, 3, 64, 64, generator=g())  # noqa: E731
    ex = _extractor(models, conditioning="middle_frame")
    mean, _ = ex._encode_vae(padded)
    torch.testing.assert_close(mean, _mode(vae, padded), rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        emb, concat = ex._conditioning(padded, mean, 5, g())
        middle = ex._clip_embed(frames[2:3])
    assert emb.shape == (6, 1, 32) and concat.shape == (6, 4, 8, 8)
    torch.testing.assert_close(emb[:, 0], middle.expand(6, -1))
    # the middle frame, noised in pixel space and encoded again, repeated over the window
    expected = _mode(vae, frames[2:3] + 0.02 * noise(1))
    torch.testing.assert_close(concat, expected.expand(6, -1, -1, -1), rtol=1e-5, atol=1e-6)
    assert (concat[0] - mean[2]).abs().max().item() > 1e-4

    latent = _extractor(models, conditioning="middle_frame", cond_noise="latent")
    with torch.inference_mode():
        _, concat = latent._conditioning(padded, mean, 5, g())
    expected = mean[2:3] + 0.02 * torch.randn(1, 4, 8, 8, generator=g())
    torch.testing.assert_close(concat, expected.expand(6, -1, -1, -1), rtol=0, atol=0)

    per_frame = _extractor(models, conditioning="per_frame")
    with torch.inference_mode():
        emb, concat = per_frame._conditioning(padded, mean, 5, g())
        torch.testing.assert_close(emb[:, 0], per_frame._clip_embed(padded))  # padding conditions itself
    torch.testing.assert_close(concat, _mode(vae, padded + 0.02 * noise(6)), rtol=1e-5, atol=1e-6)

    none = _extractor(models, conditioning="none")
    emb, concat = none._conditioning(padded, mean, 5, g())
    assert not emb.any() and not concat.any() and emb.shape == (6, 1, 32)

    names = ("eating", "swimming", "flying")
    text = _extractor(models, conditioning="action_text", action_names=names)
    import open_clip

    with torch.inference_mode():
        emb, concat = text._conditioning(padded, mean, 5, g())
        tokens = open_clip.get_tokenizer("ViT-H-14")(list(names))
        expected = clip.encode_text(tokens)  # [3, 32]: one context token per action name
    assert emb.shape == (6, 3, 32)
    torch.testing.assert_close(emb, expected.expand(6, -1, -1))
    torch.testing.assert_close(concat, _mode(vae, padded + 0.02 * noise(6)), rtol=1e-5, atol=1e-6)

    features = {
        mode: _extractor(models, conditioning=mode, action_names=names if mode == "action_text" else ())
        .window_taps(frames, g())[9]
        for mode in ("middle_frame", "per_frame", "none", "action_text")
    }
    for a in features:
        for b in features:
            if a < b:
                assert not torch.allclose(features[a], features[b], atol=1e-4), (a, b)


def test_named_departures_change_features_and_hash(models):
    """grey padding, latent-space noise and the posterior mean: each its own features and hash."""
    frames = _frames(4)  # 4 real frames of a 6-frame window
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    default = _extractor(models).window_taps(frames, g())[9]
    assert default.shape == (1, 4, 64)
    hashes = {settings_hash(ExtractSettings())}
    for departure in ({"padding": "grey"}, {"cond_noise": "latent"}, {"latent": "mean"}):
        other = _extractor(models, **departure).window_taps(frames, g())[9]
        assert not torch.allclose(other, default, atol=1e-4), departure
        hashes.add(settings_hash(ExtractSettings(**departure)))
    assert len(hashes) == 4
    # a full window has no padding: the padding setting changes nothing
    full = _frames(6)
    black, grey = (_extractor(models, padding=p).window_taps(full, g())[9] for p in ("black", "grey"))
    assert torch.equal(black, grey)
    for key, value in (("padding", "white"), ("cond_noise", "both"), ("half_precision", "mixed"), ("vae_dtype", "int8")):
        with pytest.raises(ValueError, match=f"`{key}`"):
            ExtractSettings(**{key: value})


def test_sdv2_per_frame_features_are_frame_independent(models):
    """Frames processed alone (padded to a window) give the features they get in the window.

    Layer 9 is 2x2 here; deeper taps are 1x1, where GroupNorm over 2 values amplifies
    batch-dependent rounding (test_unet_taps checks layer 13 at a larger size).
    """
    frames = _frames(6)
    # posterior means: the draws are per window position, not per frame
    ex = _extractor(models, sdv2=True, conditioning="per_frame", cond_aug=0.0, layers=(9,), latent="mean")
    full = ex.window_taps(frames, torch.Generator().manual_seed(0))[9]
    order = torch.tensor([5, 2, 0, 1, 4, 3])
    permuted = ex.window_taps(frames[order], torch.Generator().manual_seed(0))[9]
    alone = ex.window_taps(frames[4:5], torch.Generator().manual_seed(0))[9]
    torch.testing.assert_close(permuted, full[:, order], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone[:, 0], full[:, 4], rtol=1e-4, atol=1e-5)
    svd = _extractor(models, conditioning="per_frame", cond_aug=0.0, layers=(9,), latent="mean")
    mixed = svd.window_taps(frames, torch.Generator().manual_seed(0))[9]
    mixed_alone = svd.window_taps(frames[4:5], torch.Generator().manual_seed(0))[9]
    assert not torch.allclose(mixed_alone[:, 0], mixed[:, 4], atol=1e-4)


def test_gaussian_noise_averages_seeded_draws(models):
    frames = _frames(3)
    common = dict(conditioning="none", layers=(9,), latent="mean")
    clean = _extractor(models, **common).window_taps(frames, torch.Generator().manual_seed(0))[9]
    one = _extractor(models, noise="gaussian", **common)
    g = torch.Generator().manual_seed(5)
    draw1, draw2 = one.window_taps(frames, g)[9], one.window_taps(frames, g)[9]
    two = _extractor(models, noise="gaussian", noise_draws=2, **common)
    averaged = two.window_taps(frames, torch.Generator().manual_seed(5))[9]
    torch.testing.assert_close(averaged, (draw1 + draw2) / 2, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(draw1, draw2, atol=1e-4) and not torch.allclose(draw1, clean, atol=1e-4)
    with pytest.raises(ValueError, match="noise_draws"):
        ExtractSettings(noise_draws=2)


def test_posterior_sample_is_seeded(models):
    frames = _frames(3)
    ex = _extractor(models, latent="sample", conditioning="none")
    one = ex.window_taps(frames, torch.Generator().manual_seed(1))[9]
    same = ex.window_taps(frames, torch.Generator().manual_seed(1))[9]
    other = ex.window_taps(frames, torch.Generator().manual_seed(2))[9]
    mean = _extractor(models, conditioning="none", latent="mean").window_taps(frames, torch.Generator().manual_seed(1))[9]
    assert torch.equal(one, same) and not torch.allclose(one, other, atol=1e-5)
    assert not torch.allclose(one, mean, atol=1e-5)


def test_half_precision_tracks_float32_with_the_vae_in_float32(tiny_weights):
    frames = _frames(4)
    weights = WeightsSettings(**{k: str(v) for k, v in tiny_weights.items()})
    results = {}
    for dtype, half in (("float32", "autocast"), ("bfloat16", "autocast"), ("bfloat16", "cast")):
        ex = SVDExtractor.from_weights(weights, DECODE, ExtractSettings(dtype=dtype, half_precision=half))
        # autocast keeps the authors' fp32 weights (half ops); cast loads them in the run's dtype
        loaded = torch.float32 if half == "autocast" else getattr(torch, dtype)
        assert ex.unet.conv_in.weight.dtype == loaded
        assert {p.dtype for p in ex.vae.encoder.parameters()} == {torch.float32}  # `vae_dtype`
        assert ex.autocast == (dtype == "bfloat16" and half == "autocast")
        results[dtype, half] = ex.window_taps(frames, torch.Generator().manual_seed(0))[9]
        assert results[dtype, half].dtype == torch.float32  # pooled in fp32
    reference = results["float32", "autocast"].flatten()
    for key in (("bfloat16", "autocast"), ("bfloat16", "cast")):
        # bfloat16 keeps ~3 significant digits; the error grows over the 9 UNet layers
        assert torch.corrcoef(torch.stack([reference, results[key].flatten()]))[0, 1].item() > 0.98, key
    assert not torch.equal(results["bfloat16", "autocast"], results["bfloat16", "cast"])


def test_only_modules_that_run_are_moved(tiny_weights):
    unet, vae = load_svd(tiny_weights["svd"])
    clip = load_clip(tiny_weights["clip_arch"], tiny_weights["clip_checkpoint"])
    SVDExtractor(unet, vae, clip, DECODE, ExtractSettings(layers=(9, 2)), device="meta")

    def device(module):
        return {p.device.type for p in module.parameters()}

    for moved in (unet.conv_in, unet.time_embedding, unet.add_embedding, *unet.down_blocks[:3], vae.encoder, clip.visual):
        assert device(moved) == {"meta"}
    for kept in (unet.down_blocks[3], unet.mid_block, *unet.up_blocks, unet.conv_out, vae.decoder, clip.transformer):
        assert device(kept) == {"cpu"}


def test_cli_extract_ad_hoc_with_overrides(tiny_weights, videos, tmp_path, caplog):
    settings = {"decode": {"stride": 1, "height": 64, "width": 64, "window": 6}, "weights": {k: str(v) for k, v in tiny_weights.items()}}
    out = tmp_path / "cache"
    argv = ["extract", str(videos["b"]), "--out", str(out), "--settings", json.dumps(settings)]
    assert main([*argv, "--layers", "9", "3", "--timesteps", "20", "5", "--conditioning", "per_frame"]) == 0
    # the tiny random weights are not SVD-XT: ad-hoc extraction says so
    assert any("tiny RANDOM weights" in r.message and r.levelname == "WARNING" for r in caplog.records)
    # the same folder with other settings is refused, naming it (one folder, one identity)
    caplog.clear()
    assert main([*argv, "--layers", "4"]) == 2
    assert any(f"Expected cache folder {out} to hold one settings identity" in r.message for r in caplog.records)
    stored = json.loads((out / "settings.json").read_text())
    assert stored["extraction"]["layers"] == [9, 3] and stored["extraction"]["conditioning"] == "per_frame"
    from actiondiff.cli import extraction_settings

    decode, extract, weights = extraction_settings(stored)
    # the hash covers the weights' content (`weights_sha256`), not where they lie
    digest = settings_hash({"decode": stored["decode"], "extraction": stored["extraction"], "weights_sha256": stored["weights_sha256"]})
    features = FeatureCache(out, digest).load("b")
    assert sorted(features.features) == ["L03_T05", "L03_T20", "L09_T05", "L09_T20"]
    assert features.features["L09_T20"].shape == (5, 64)
    # the cached features equal a direct extraction with the same settings
    direct = SVDExtractor.from_weights(weights, decode, extract).extract_video(videos["b"], "b")
    assert direct.features["L03_T05"].tobytes() == features.features["L03_T05"].tobytes()


def test_wrong_weight_file_fails_before_any_video(tiny_weights, videos, tmp_path, caplog):
    weights = {k: str(v) for k, v in tiny_weights.items()}
    weights["clip_checkpoint"] = str(tmp_path / "wrong.safetensors")
    from safetensors.torch import save_file

    save_file({"visual.conv1.weight": torch.zeros(1)}, weights["clip_checkpoint"])
    out = tmp_path / "cache"
    settings = json.dumps({"decode": {"height": 64, "width": 64}, "weights": weights})
    assert main(["extract", str(videos["a"]), "--out", str(out), "--settings", settings]) == 2
    assert "wrong.safetensors" in caplog.text and "missing keys" in caplog.text
    assert not (out / "videos").exists() or not list((out / "videos").glob("*"))
    assert not (out / "failures").exists() or not list((out / "failures").glob("*"))


def test_cli_extract_refuses_two_files_of_one_id_and_counts_a_repeated_path_once(tiny_weights, videos, tmp_path, caplog):
    settings = json.dumps({"decode": {"stride": 1, "height": 64, "width": 64, "window": 6},
                           "weights": {k: str(v) for k, v in tiny_weights.items()}})
    other = tmp_path / "b.avi"
    shutil.copy(videos["b"], other)
    out, done = tmp_path / "cache", tmp_path / "done.json"
    assert main(["extract", str(videos["b"]), str(other), "--out", str(out), "--settings", settings]) == 2
    assert f"{str(videos['b'])!r} and {str(other)!r} are both 'b'" in caplog.text
    assert not out.exists()
    # The same file twice is one video; the summary replaces an older one by rename, never in place.
    done.write_text("{}")
    before = done.stat().st_ino
    assert main(["extract", str(videos["b"]), str(videos["b"]), "--out", str(out), "--done", str(done), "--settings", settings]) == 0
    summary = json.loads(done.read_text())
    assert summary == {"extracted": ["b"], "failed": [], "skipped": [], "warned": []}
    assert done.stat().st_ino != before and not list(tmp_path.glob(".done.json.tmp-*"))
