"""The authors' extraction procedure, reimplemented as the cost baseline (never used to extract).

docs/design.md section 2 lists what the authors' procedure (their `generate_svd_maps.py` on
sgm) spends per frame: for every timestep a full run of the pipeline, each with three VAE
encoder passes per frame (the first-stage posterior sample, then the pixel-noised frames once
for the conditional and once for the zeroed unconditional conditioning) and two CLIP passes,
and the whole UNet (up path included) on a classifier-free-guidance batch of 2 x window
frames, of which only the conditional half is kept. This module runs exactly that, with the
conventions of their code (black padding, per-frame conditioning, posterior sample), so that
`flops` can count it on the `meta` device and `benchmarks/bench_extractor.py` can time it
against `SVDExtractor` on tiny models.

Every timestep is a separate run of their script, which seeds its generator once at start:
each run makes the same draws, so here every timestep reuses the window's draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from actiondiff.features import sigmas
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.unet_taps import capture_taps, spatial_mean, time_embedding


def full_unet(
    unet: torch.nn.Module,
    sample: torch.Tensor,
    c_noise: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    added_time_ids: torch.Tensor,
    image_only_indicator: torch.Tensor,
) -> torch.Tensor:
    """The whole SVD UNet (diffusers' forward, up path included) with a context per frame.

    diffusers' forward repeats one context over the frames and fixes the indicator to zeros;
    sgm's VideoUNet, which the authors run, takes a context per frame.
    Args:
        sample: [b, f, 8, h, w]; c_noise: [b]; added_time_ids: [b, 3];
        encoder_hidden_states: [b*f, tokens, d]; image_only_indicator: [b, f].
    Returns:
        the UNet output [b, f, 4, h, w].
    """
    batch, num_frames = sample.shape[:2]
    emb = time_embedding(unet, c_noise, added_time_ids).repeat_interleave(num_frames, dim=0)  # [b*f, d]
    hidden = unet.conv_in(sample.flatten(0, 1))  # [b, f, 8, h, w] -> [b*f, c, h, w]
    skips = (hidden,)
    context = dict(image_only_indicator=image_only_indicator)
    for block in unet.down_blocks:
        extra = dict(encoder_hidden_states=encoder_hidden_states) if getattr(block, "has_cross_attention", False) else {}
        hidden, res = block(hidden_states=hidden, temb=emb, **extra, **context)
        skips += res
    hidden = unet.mid_block(hidden_states=hidden, temb=emb, encoder_hidden_states=encoder_hidden_states, **context)
    for block in unet.up_blocks:
        res, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
        extra = dict(encoder_hidden_states=encoder_hidden_states) if getattr(block, "has_cross_attention", False) else {}
        hidden = block(hidden_states=hidden, temb=emb, res_hidden_states_tuple=res, **extra, **context)
    hidden = unet.conv_out(unet.conv_act(unet.conv_norm_out(hidden)))
    return hidden.reshape(batch, num_frames, *hidden.shape[1:])  # [b*f, 4, h, w] -> [b, f, 4, h, w]


@torch.inference_mode()
def authors_window_taps(extractor: SVDExtractor, frames: torch.Tensor, generator: torch.Generator) -> dict[int, torch.Tensor]:
    """Pooled taps of one window computed the authors' way; same output layout as ours.

    Conditioning follows `extractor.extract.conditioning`: `per_frame` is the authors' code
    (each frame conditions itself), `action_text` their `actions` mode (one token per name,
    the unconditional context the embedding of ""), `none` their `no_cond`, `middle_frame`
    the paper's description (the middle real frame's embedding and concat latent).
    Args:
        extractor: supplies the models, the settings and the device (its modules must all be
            on the device: `SVDExtractor` moves only what our procedure runs, so the caller
            moves the rest for this baseline).
        frames: [f, 3, H, W] float32 in [-1, 1], f <= window.
        generator: CPU generator: the conditioning pixel noise, then the posterior noise.
    Returns:
        {layer: [timesteps, f, channels] float32}, like `SVDExtractor.window_taps`.
    """
    ex, settings = extractor, extractor.extract
    unet, vae, scale = ex.unet, ex.vae, ex.vae.config.scaling_factor
    num_real, window, mode = frames.shape[0], ex.decode.window, settings.conditioning
    # uint8 zeros appended before x / 127.5 - 1: black frames
    padded = F.pad(frames, (0, 0, 0, 0, 0, 0, 0, window - num_real), value=-1.0) if num_real < window else frames
    padded = padded.to(ex.device, ex.vae_dtype)
    middle = num_real // 2
    schedule = sigmas.karras_sigmas(settings.num_timesteps, settings.sigma_min, settings.sigma_max, settings.rho)
    outputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in settings.layers}
    state = generator.get_state()
    for t in ex.timestep_indices:  # one full pipeline run per timestep, each with the same draws
        generator.set_state(state)
        sigma = schedule[t]
        # 1. conditioner, run for the conditional and the unconditional half: CLIP of the clean
        #    frames and the VAE mode of the pixel-noised frames (unscaled), each twice
        noise = torch.randn(padded.shape, generator=generator).to(padded)
        noisy = padded + settings.cond_aug * noise
        cond_latents = vae.encode(noisy).latent_dist.mode()  # [window, 4, h, w]
        vae.encode(noisy)  # the unconditional half's, zeroed
        embeddings = ex._clip_embed(padded)[:, None]  # [window, 1, d]
        ex._clip_embed(padded)
        # 2. first stage: a posterior sample, scaled
        posterior = vae.encode(padded).latent_dist
        draw = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
        z = (posterior.mean + posterior.std * draw) * scale
        # 3. the conditional context and concat latent of the mode
        uncond_states = torch.zeros_like(embeddings)
        if mode == "middle_frame":
            embeddings = embeddings[middle : middle + 1].expand(window, -1, -1)
            cond_latents = cond_latents[middle : middle + 1].expand(window, -1, -1, -1)
        elif mode == "action_text":
            embeddings = ex._text_embed()[None].expand(window, -1, -1)  # [window, n_actions, d]
            uncond_states = _empty_text(ex).expand(window, embeddings.shape[1], -1)
        elif mode == "none":
            embeddings, cond_latents = uncond_states, torch.zeros_like(cond_latents)
        # 4. guidance batch [unconditional, conditional]: [2, window, 8, h, w]
        dtype = ex.input_dtype  # float32 under autocast, as the authors' inputs
        scaled, cond_latents = (sigmas.c_in(sigma) * z).to(dtype), cond_latents.to(dtype)
        sample = torch.stack(
            [torch.cat([scaled, torch.zeros_like(cond_latents)], dim=1), torch.cat([scaled, cond_latents], dim=1)]
        )
        states = torch.cat([uncond_states, embeddings]).to(dtype)  # [2*window, tokens, d]
        time_ids = torch.tensor(
            [[settings.fps_id, settings.motion_bucket_id, settings.cond_aug]] * 2, device=ex.device, dtype=dtype
        )
        c_noise = torch.full((2,), sigmas.c_noise(sigma), device=ex.device)
        indicator = torch.full((2, window), float(settings.sdv2), device=ex.device, dtype=dtype)
        # 5. the whole UNet, up path included; keep the conditional half of each tap
        with capture_taps(unet, settings.layers) as taps, ex._precision():
            full_unet(unet, sample, c_noise, states, time_ids, indicator)
        for layer in settings.layers:
            pooled = spatial_mean(taps[layer]).reshape(2, window, -1)  # [2*window, c] -> [2, window, c]
            outputs[layer].append(pooled[1, :num_real])
    return {layer: torch.stack(values) for layer, values in outputs.items()}  # [T, f, c]


def _empty_text(extractor: SVDExtractor) -> torch.Tensor:
    """The OpenCLIP text embedding of "" (the authors' unconditional context): [1, 1, d]."""
    import open_clip

    tokens = open_clip.get_tokenizer("ViT-H-14")([""], context_length=extractor.clip.context_length)
    return extractor.clip.encode_text(tokens.to(extractor.device))[None]
