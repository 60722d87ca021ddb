"""The authors' extraction procedure, reimplemented as the cost baseline (never used to extract).

docs/design.md section 2 lists what the authors' procedure spends per frame: for every timestep a full
run of the pipeline, each with three VAE encoder passes and two CLIP passes per frame and the
whole UNet (up path included) on a classifier-free-guidance batch of 2 x window frames, of
which only the conditional half is kept. This module runs exactly that, with the stock
diffusers forward and hooks on the tapped modules, so that `flops` can count it on the `meta`
device and `benchmarks/bench_extractor.py` can time it against `SVDExtractor` on tiny models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from actiondiff.features import sigmas
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.unet_taps import capture_taps, spatial_mean


@torch.inference_mode()
def authors_window_taps(extractor: SVDExtractor, frames: torch.Tensor, generator: torch.Generator) -> dict[int, torch.Tensor]:
    """Pooled taps of one window computed the authors' way; same output layout as ours.

    Args:
        extractor: supplies the models, the settings and the device (its modules must all be
            on the device: `SVDExtractor` moves only what our procedure runs, so the caller
            moves the rest for this baseline).
        frames: [f, 3, H, W] float32 in [-1, 1], f <= window.
        generator: CPU generator for the conditioning noise.
    Returns:
        {layer: [timesteps, f, channels] float32}, like `SVDExtractor.window_taps`.
    """
    ex, settings = extractor, extractor.extract
    unet, vae, scale = ex.unet, ex.vae, ex.vae.config.scaling_factor
    num_real, window = frames.shape[0], ex.decode.window
    padded = F.pad(frames, (0, 0, 0, 0, 0, 0, 0, window - num_real)) if num_real < window else frames
    padded = padded.to(ex.device, ex.dtype)
    middle = num_real // 2
    schedule = sigmas.karras_sigmas(settings.num_timesteps, settings.sigma_min, settings.sigma_max, settings.rho)
    outputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in settings.layers}
    for t in ex.timestep_indices:  # one full pipeline run per timestep
        sigma = schedule[t]
        # 1. three VAE encoder passes per frame: the video latents, the noise-augmented
        #    conditioning frames, and the frames once more
        z = vae.encode(padded).latent_dist.mean * scale
        noise = torch.randn(padded.shape, generator=generator).to(padded)
        cond_latents = vae.encode(padded + settings.cond_aug * noise).latent_dist.mode()
        vae.encode(padded)
        # 2. two CLIP passes per frame; the middle frame's embedding conditions the window
        embeddings = ex._clip_embed(padded)
        ex._clip_embed(padded)
        embedding = embeddings[middle : middle + 1, None]  # [1, 1, d]
        concat = cond_latents[middle : middle + 1].expand(window, -1, -1, -1)
        # 3. guidance batch [unconditional, conditional]: [2, window, 8, h, w]
        conditional = torch.cat([sigmas.c_in(sigma) * z, concat], dim=1)
        unconditional = torch.cat([sigmas.c_in(sigma) * z, torch.zeros_like(concat)], dim=1)
        sample = torch.stack([unconditional, conditional])
        states = torch.cat([torch.zeros_like(embedding), embedding])  # [2, 1, d]
        time_ids = torch.tensor(
            [[settings.fps_id, settings.motion_bucket_id, settings.cond_aug]] * 2, device=ex.device, dtype=ex.dtype
        )
        c_noise = torch.full((2,), sigmas.c_noise(sigma), device=ex.device)
        # 4. the whole UNet, up path included; keep the conditional half of each tap
        with capture_taps(unet, settings.layers) as taps:
            unet(sample, c_noise, states, time_ids, return_dict=False)
        for layer in settings.layers:
            pooled = spatial_mean(taps[layer]).reshape(2, window, -1)  # [2*window, c] -> [2, window, c]
            outputs[layer].append(pooled[1, :num_real])
    return {layer: torch.stack(values) for layer, values in outputs.items()}  # [T, f, c]
