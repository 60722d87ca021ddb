"""Exact FLOP counts per frame, on the `meta` device: the authors' procedure versus ours.

Both procedures are run for real, on full-size (or tiny) models built on the `meta` device,
under `torch.utils.flop_counter.FlopCounterMode`: every convolution, matmul and attention the
code executes is counted (FlopCounterMode counts 2 FLOPs per multiply-add and ignores
element-wise ops, norms and interpolation). No weights and no accelerator are needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .settings import DecodeSettings, ExtractSettings
from .unet_taps import layer_map, tap_unet

ARCHES = ("svd-xt", "tiny")


def build_models(arch: str) -> tuple[Any, Any, Any]:
    """(unet, vae, clip) of `arch` on the `meta` device, without weights.

    `svd-xt`: `UNetSpatioTemporalConditionModel()` (its default config is SVD-XT's UNet), the
    SVD VAE and OpenCLIP ViT-H-14; `tiny`: the tiny test configs of the same classes.
    """
    import open_clip
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from .weights import SVD_VAE_CONFIG, TINY_CLIP_CONFIG, TINY_UNET_CONFIG, TINY_VAE_CONFIG

    if arch not in ARCHES:
        raise ValueError(f"Expected `arch` to be one of {list(ARCHES)}, but got {arch!r}.")
    tiny = arch == "tiny"
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**(TINY_UNET_CONFIG if tiny else {}))
        vae = AutoencoderKLTemporalDecoder(**(TINY_VAE_CONFIG if tiny else SVD_VAE_CONFIG))
        clip = open_clip.CLIP(**(TINY_CLIP_CONFIG if tiny else open_clip.get_model_config("ViT-H-14")))
    # diffusers' AlphaBlender creates its mix factor outside the device context
    return tuple(model.to("meta").eval().requires_grad_(False) for model in (unet, vae, clip))


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs executed by `fn()` (2 per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


@dataclass(frozen=True)
class Cost:
    """GFLOP per frame of one procedure, by model."""

    pipeline: str
    vae: float
    clip: float
    unet: float

    @property
    def total(self) -> float:
        return self.vae + self.clip + self.unet


def _meta_frames(decode: DecodeSettings) -> torch.Tensor:
    """One full window of frames on `meta`: [window, 3, H, W]."""
    return torch.zeros(decode.window, 3, decode.height, decode.width, device="meta")


def ours_cost(models: tuple[Any, Any, Any], decode: DecodeSettings, extract: ExtractSettings) -> Cost:
    """GFLOP per frame of `SVDExtractor.window_taps` on one full window."""
    from .extractor import SVDExtractor

    extractor = SVDExtractor(*models, decode, extract, device="meta")
    frames = _meta_frames(decode)
    generator = torch.Generator().manual_seed(0)
    total = count_flops(lambda: extractor.window_taps(frames, generator))
    with torch.inference_mode():
        vae = count_flops(lambda: extractor._encode_vae(frames, generator))
        latents = extractor._encode_vae(frames, generator)
        clip = count_flops(lambda: extractor._conditioning(frames, latents, decode.window, generator))
    scale = 1e9 * decode.window
    return Cost("ours", vae / scale, clip / scale, (total - vae - clip) / scale)


def authors_cost(models: tuple[Any, Any, Any], decode: DecodeSettings, extract: ExtractSettings) -> Cost:
    """GFLOP per frame of `authors_window_taps` on one full window.

    The authors' procedure repeats an identical full pipeline run for every timestep, so one
    run is counted and multiplied by the number of timesteps.
    """
    import dataclasses

    from .authors import authors_window_taps
    from .extractor import SVDExtractor

    unet, vae, clip = models
    num_t = len(extract.timestep_indices)
    one_run = dataclasses.replace(extract, timestep_indices=extract.timestep_indices[:1])
    extractor = SVDExtractor(unet, vae, clip, decode, one_run, device="meta")
    frames = _meta_frames(decode)
    generator = torch.Generator().manual_seed(0)
    total = num_t * count_flops(lambda: authors_window_taps(extractor, frames, generator))
    padded = frames.to(extractor.dtype)
    with torch.inference_mode():
        vae_flops = 3 * num_t * count_flops(lambda: vae.encode(padded))
        clip_flops = 2 * num_t * count_flops(lambda: extractor._clip_embed(padded))
    scale = 1e9 * decode.window
    return Cost("authors", vae_flops / scale, clip_flops / scale, (total - vae_flops - clip_flops) / scale)


def layer_costs(unet: Any, decode: DecodeSettings) -> list[float]:
    """Cumulative UNet GFLOP per frame up to each of the 13 layers (one timestep)."""
    h, w = decode.height // 8, decode.width // 8
    frames = decode.window
    sample = torch.zeros(1, frames, unet.config.in_channels, h, w, device="meta")
    states = torch.zeros(frames, 1, unet.config.cross_attention_dim, device="meta")
    time_ids = torch.zeros(1, 3, device="meta")
    indicator = torch.zeros(1, frames, device="meta")
    c_noise = torch.zeros(1, device="meta")
    costs = []
    with torch.inference_mode():
        for info in layer_map(unet):
            flops = count_flops(lambda layer=info.layer: tap_unet(unet, sample, c_noise, states, time_ids, indicator, (layer,)))
            costs.append(flops / 1e9 / frames)
    return costs


def full_unet_cost(unet: Any, decode: DecodeSettings) -> float:
    """GFLOP per frame of the stock diffusers forward (up path included), one timestep."""
    h, w = decode.height // 8, decode.width // 8
    frames = decode.window
    sample = torch.zeros(1, frames, unet.config.in_channels, h, w, device="meta")
    states = torch.zeros(1, 1, unet.config.cross_attention_dim, device="meta")
    with torch.inference_mode():
        flops = count_flops(
            lambda: unet(sample, torch.zeros(1, device="meta"), states, torch.zeros(1, 3, device="meta"), return_dict=False)
        )
    return flops / 1e9 / frames


def cost_table(arch: str, decode: DecodeSettings, extract: ExtractSettings) -> list[Cost]:
    """[authors, ours] GFLOP per frame for these settings."""
    models = build_models(arch)
    return [authors_cost(models, decode, extract), ours_cost(models, decode, extract)]


def format_cost_table(costs: list[Cost], title: str) -> str:
    """A Markdown table of `cost_table`'s rows with the authors/ours ratio."""
    lines = [
        f"#### {title}",
        "",
        "| pipeline | VAE | CLIP | UNet | total GFLOP/frame |",
        "|---|---|---|---|---|",
    ]
    for cost in costs:
        lines.append(f"| {cost.pipeline} | {cost.vae:,.1f} | {cost.clip:,.1f} | {cost.unet:,.1f} | {cost.total:,.1f} |")
    authors, ours = costs
    lines += ["", f"ratio authors / ours: **{authors.total / ours.total:.2f}x** (ours = 1/{authors.total / ours.total:.2f})"]
    return "\n".join(lines)


def format_layer_table(arch: str, decode: DecodeSettings, with_costs: bool = False) -> str:
    """The layer map as Markdown: l, module, channels, H x W (and cumulative GFLOP/frame)."""
    unet = build_models(arch)[0]
    costs = layer_costs(unet, decode) if with_costs else None
    lines = [
        f"Layer map of {arch} at {decode.height}x{decode.width} (latent {decode.height // 8}x{decode.width // 8})",
        "",
        "| l | diffusers module output | channels | H x W |" + (" cumulative GFLOP/frame |" if costs else ""),
        "|---|---|---|---|" + ("---|" if costs else ""),
    ]
    for i, info in enumerate(layer_map(unet)):
        h, w = info.size(decode.height, decode.width)
        cost = f" {costs[i]:,.1f} |" if costs else ""
        lines.append(f"| {info.layer} | {info.module} | {info.channels} | {h}x{w} |{cost}")
    if costs:
        lines += ["", f"Full UNet (stock forward, up path included): {full_unet_cost(unet, decode):,.1f} GFLOP/frame"]
    return "\n".join(lines)
