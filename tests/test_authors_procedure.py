"""The authors' feature procedure, reimplemented here on diffusers' modules, against the extractor.

What these figures are measured against: our reading of their code on diffusers' and open_clip's
modules, in float32 (not their sgm modules: tests/test_sgm_parity.py runs those, in float64).

`authors_taps` follows their `generate_svd_maps.py` on sgm (frankyaoxiao/ActionDiff,
`generative-models/`) step by step, with diffusers' modules for the weights and nothing of
ours: uint8 frames padded with zeros before `x / 255 * 2 - 1` (black), the conditioner's
CLIP embedding of the clean frames (kornia-style antialiased resize, here diffusers' copy
of it) and VAE mode of the pixel-noised frames (unscaled), a posterior sample x the scaling
factor as the first-stage latent, the guidance batch [unconditional, conditional] through
the UNet's input blocks and middle block, and the conditional half's spatial mean of
`latents[l - 1]`. The draws are ours, in our order (conditioning pixel noise, then the
posterior noise), so that both sides see the same numbers: the authors' own draws come from
one global stream over a shuffled video order and cannot be reproduced.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    _resize_with_antialiasing,
)

from actiondiff.features.svd_extractor import SVDExtractor, antialiased_resize, gaussian_kernel1d
from actiondiff.features.weights import load_clip, load_svd
from actiondiff.features.windows import content_key, video_seed
from actiondiff.settings import DecodeSettings, ExtractSettings

# 96 x 96: the deepest taps are 2 x 2 (at 64 x 64 the mid block is 1 x 1, where GroupNorm over
# 2 values amplifies the float32 rounding of another batch composition to ~1e-2; measured
# here: <= 2e-6 on every tap)
WINDOW, SIZE = 5, 96
DECODE = DecodeSettings(stride=1, height=SIZE, width=SIZE, window=WINDOW)
LAYERS, TIMESTEPS = tuple(range(1, 14)), (10, 20, 29)
NAMES = ("eating", "swimming", "flying")
OPENCLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
OPENCLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def models(tiny_weights):
    unet, vae = load_svd(tiny_weights["svd"])
    clip = load_clip(tiny_weights["clip_arch"], tiny_weights["clip_checkpoint"])
    return unet, vae, clip


def karras(index: int, n: int = 30, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0) -> float:
    """sgm's EDMDiscretization, noisiest first (float64; their fp32 table agrees to 2e-6)."""
    ramp = np.linspace(0, 1, n)
    return float(((sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho)[index])


def clip_image(clip, frames: torch.Tensor) -> torch.Tensor:
    """sgm FrozenOpenCLIPImageEmbedder: resize (kornia, antialias), [0, 1], normalise, ViT."""
    size = clip.visual.image_size  # (32, 32) for the tiny model, 224 for ViT-H-14
    size = tuple(size) if isinstance(size, tuple | list) else (size, size)
    images = (_resize_with_antialiasing(frames, size) + 1.0) / 2.0
    return clip.encode_image((images - OPENCLIP_MEAN) / OPENCLIP_STD)


def clip_text(clip, names) -> torch.Tensor:
    """FrozenOpenCLIPEmbedder2's pooled output, one call per name: [len(names), d]."""
    tokenizer = open_clip.get_tokenizer("ViT-H-14")
    return torch.cat([clip.encode_text(tokenizer([name])) for name in names])


def input_and_middle_blocks(unet, x, c_noise, context, vector, indicator) -> list[torch.Tensor]:
    """sgm VideoUNet's `latents`: outputs of every input block and of the middle block.

    Args:
        x: [b*f, 8, h, w]; c_noise: [b]; context: [b*f, tokens, d]; vector: [b, 3]
        (fps_id, motion_bucket_id, cond_aug); indicator: [b, f]. The output blocks run after
        the last tap and cannot change it, so they are left out.
    """
    frames = x.shape[0] // c_noise.shape[0]
    emb = unet.time_embedding(unet.time_proj(c_noise))
    emb = emb + unet.add_embedding(unet.add_time_proj(vector.flatten()).reshape(vector.shape[0], -1))
    emb = emb.repeat_interleave(frames, dim=0)
    hidden = unet.conv_in(x)
    latents = [hidden]
    for block in unet.down_blocks:
        extra = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
        hidden, outputs = block(hidden_states=hidden, temb=emb, image_only_indicator=indicator, **extra)
        latents += list(outputs)
    latents.append(unet.mid_block(hidden, emb, encoder_hidden_states=context, image_only_indicator=indicator))
    return latents


@torch.inference_mode()
def authors_taps(models, video: np.ndarray, settings: ExtractSettings, generator: torch.Generator) -> dict[int, torch.Tensor]:
    """One window the authors' way: video [f, H, W, 3] uint8, f <= WINDOW -> {layer: [T, f, c]}."""
    unet, vae, clip = models
    num_real = video.shape[0]
    # 1. pad the uint8 frames with zeros, then preprocess: black frames
    video = torch.from_numpy(video)
    video = F.pad(video, (0, 0, 0, 0, 0, 0, 0, WINDOW - num_real), value=0)
    # [window, H, W, 3] -> [window, 3, H, W] in [-1, 1]; contiguous as the extractor makes its
    # frames: black frames are flat, GroupNorm of the tiny VAE (one channel per group) then
    # divides by near-zero variances, and channels-last convolutions round differently
    frames = (video.float() / 255.0 * 2 - 1).permute(0, 3, 1, 2).contiguous()
    mode, middle = settings.conditioning, num_real // 2
    # 2. conditioner: CLIP of the clean frames, VAE mode of the pixel-noised frames, unscaled
    cond = frames[middle : middle + 1] if mode == "middle_frame" else frames
    if mode != "none":
        noise = torch.randn(cond.shape, generator=generator)
        concat = vae.encode(cond + settings.cond_aug * noise).latent_dist.mode().expand(WINDOW, -1, -1, -1)
    if mode in ("per_frame", "middle_frame"):
        context = clip_image(clip, cond)[:, None].expand(WINDOW, -1, -1)  # [window, 1, d]
        uncond_context = torch.zeros_like(context)
    elif mode == "action_text":
        context = clip_text(clip, NAMES)[None].expand(WINDOW, -1, -1)  # [window, n_actions, d]
        uncond_context = clip_text(clip, [""])[None].expand(WINDOW, len(NAMES), -1)
    else:  # no_cond: c = uc, all zeros
        context = uncond_context = torch.zeros(WINDOW, 1, unet.config.cross_attention_dim)
        concat = torch.zeros(WINDOW, 4, SIZE // 8, SIZE // 8)
    # 3. first stage: a posterior sample, scaled
    posterior = vae.encode(frames).latent_dist
    z = (posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)) * vae.config.scaling_factor
    # 4. every timestep: the guidance batch [uc, c] of 2 x window frames through the UNet
    vector = torch.tensor([[settings.fps_id, settings.motion_bucket_id, settings.cond_aug]] * 2)
    indicator = torch.full((2, WINDOW), float(settings.sdv2))
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in settings.layers}
    for t in sorted(settings.timestep_indices):
        sigma = karras(t)
        x = z / (sigma**2 + 1) ** 0.5
        unet_input = torch.cat([torch.cat([x, torch.zeros_like(concat)], 1), torch.cat([x, concat], 1)])
        latents = input_and_middle_blocks(
            unet, unet_input, torch.full((2,), 0.25 * np.log(sigma)), torch.cat([uncond_context, context]), vector, indicator
        )
        for layer in settings.layers:
            # the conditional half, padded frames dropped, mean over H and W
            out[layer].append(latents[layer - 1][WINDOW:][:num_real].mean(dim=(-1, -2)))
    return {layer: torch.stack(values) for layer, values in out.items()}


def max_relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| over the tap, relative to max |theirs|."""
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def video_uint8(num: int, seed: int) -> np.ndarray:
    """[num, SIZE, SIZE, 3] uint8 seeded frames."""
    return np.random.default_rng(seed).integers(0, 256, size=(num, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.mark.parametrize("sdv2", [False, True])
@pytest.mark.parametrize("conditioning", ["middle_frame", "per_frame", "none", "action_text"])
def test_extractor_equals_the_diffusers_reimplementation_of_the_authors_procedure(models, conditioning, sdv2):
    """3 real frames of a 5-frame window (2 black pads), 13 layers x 3 timesteps, same draws."""
    settings = ExtractSettings(
        layers=LAYERS,
        timestep_indices=TIMESTEPS,
        conditioning=conditioning,
        action_names=NAMES if conditioning == "action_text" else (),
        sdv2=sdv2,
    )
    video = video_uint8(3, seed=1)
    theirs = authors_taps(models, video, settings, torch.Generator().manual_seed(4))
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0 * 2 - 1
    ours = SVDExtractor(*models, DECODE, settings).window_taps(frames, torch.Generator().manual_seed(4))
    for layer in LAYERS:
        assert ours[layer].shape == theirs[layer].shape == (3, 3, unet_channels(models[0], layer))
        assert max_relative_difference(ours[layer], theirs[layer]) <= 1e-4, layer


def unet_channels(unet, layer: int) -> int:
    """Tiny UNet taps: 32, 32 channels to layer 7, 64 from layer 8 (block_out_channels 32, 32, 64, 64)."""
    return 32 if layer <= 7 else 64


def test_each_departure_moves_away_from_the_authors(models):
    """grey padding, latent-space noise, the posterior mean: named settings, not the authors'."""
    base = dict(layers=(9,), timestep_indices=(20,), conditioning="per_frame")
    video = video_uint8(3, seed=2)
    theirs = authors_taps(models, video, ExtractSettings(**base), torch.Generator().manual_seed(0))[9]
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0 * 2 - 1
    for departure in ({}, {"padding": "grey"}, {"cond_noise": "latent"}, {"latent": "mean"}):
        extractor = SVDExtractor(*models, DECODE, ExtractSettings(**base, **departure))
        difference = max_relative_difference(extractor.window_taps(frames, torch.Generator().manual_seed(0))[9], theirs)
        assert (difference <= 1e-4) == (not departure), (departure, difference)


def write_video(path: Path, video: np.ndarray) -> Path:
    """A lossless (qp 0, yuv444p) H.264 file of [n, H, W, 3] uint8 frames."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv444p"
        for image in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_video_windows_draw_from_one_seeded_stream(models, tmp_path):
    """A 7-frame video: windows of 5 and 2 (+3 black), one generator seeded per video."""
    settings = ExtractSettings(layers=(3, 9), timestep_indices=(20,), conditioning="per_frame")
    path = write_video(tmp_path / "v.mp4", video_uint8(7, seed=3))
    with av.open(str(path)) as container:  # the decoded frames, as the authors' read_video gives them
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    assert decoded.shape == (7, SIZE, SIZE, 3)
    ours = SVDExtractor(*models, DECODE, settings).extract_video(path, "v")
    generator = torch.Generator().manual_seed(video_seed(content_key(path), settings))
    windows = [authors_taps(models, decoded[i : i + WINDOW], settings, generator) for i in (0, WINDOW)]
    for layer in (3, 9):
        theirs = torch.cat([w[layer][0] for w in windows])  # [7, c]
        got = torch.from_numpy(ours.features[f"L{layer:02d}_T20"])
        assert got.shape == theirs.shape == (7, unet_channels(models[0], layer))
        assert max_relative_difference(got, theirs) <= 1e-4


@pytest.mark.parametrize("shape, size", [((2, 3, 576, 1024), (224, 224)), ((1, 3, 64, 96), (32, 32)), ((1, 3, 64, 64), (32, 32))])
def test_clip_resize_is_kornias(shape, size):
    """Gaussian blur (sigma = (factor - 1) / 2, odd 4-sigma kernel, reflect) + bicubic align_corners."""
    images = torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = antialiased_resize(images, size)
    assert ours.shape == (*shape[:2], *size)
    torch.testing.assert_close(ours, _resize_with_antialiasing(images, size), rtol=0, atol=1e-6)


def test_clip_resize_kernels_and_non_shrinking_sizes():
    # SVD-XT, 576 x 1024 -> 224: sigmas (0.786, 1.786), kernels of 3 and 7 taps (kornia 0.6.9)
    np.testing.assert_allclose(gaussian_kernel1d(3, (576 / 224 - 1) / 2), [0.2354, 0.5292, 0.2354], atol=1e-4)
    np.testing.assert_allclose(
        gaussian_kernel1d(7, (1024 / 224 - 1) / 2), [0.0572, 0.1252, 0.2004, 0.2344, 0.2004, 0.1252, 0.0572], atol=1e-4
    )
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert antialiased_resize(images, (16, 16)) is images  # same size: untouched
    # enlarging: no blur (kornia blurs only when shrinking), plain bicubic with align_corners
    expected = F.interpolate(images, size=(32, 32), mode="bicubic", align_corners=True)
    assert torch.equal(antialiased_resize(images, (32, 32)), expected)
