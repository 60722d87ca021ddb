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

from actiondiff.features.unet_taps import layer_map, tap_unet
from actiondiff.settings import DecodeSettings, ExtractSettings

ARCHES = ("svd-xt", "tiny")


def build_models(arch: str, device: str = "meta") -> tuple[Any, Any, Any]:
    """(unet, vae, clip) of `arch`, frozen, initialised straight on `device`: on `meta` (the
    default) without weights, elsewhere with torch's random initialisation (seed it first).

    `svd-xt`: `UNetSpatioTemporalConditionModel()` (its default config is SVD-XT's UNet), the
    SVD VAE and OpenCLIP ViT-H-14; `tiny`: the tiny test configs of the same classes.
    """
    import open_clip
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from actiondiff.features.weights import SVD_VAE_CONFIG
    from actiondiff.tools.tiny_weights import TINY_CLIP_CONFIG, TINY_UNET_CONFIG, TINY_VAE_CONFIG

    if arch not in ARCHES:
        raise ValueError(f"Expected `arch` to be one of {list(ARCHES)}, but got {arch!r}.")
    tiny = arch == "tiny"
    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(**(TINY_UNET_CONFIG if tiny else {}))
        vae = AutoencoderKLTemporalDecoder(**(TINY_VAE_CONFIG if tiny else SVD_VAE_CONFIG))
        clip = open_clip.CLIP(**(TINY_CLIP_CONFIG if tiny else open_clip.get_model_config("ViT-H-14")))
    # diffusers' AlphaBlender creates its mix factor outside the device context
    return tuple(model.to(device).eval().requires_grad_(False) for model in (unet, vae, clip))


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
    """GFLOP per frame of `SVDExtractor.window_taps` on one full window.

    VAE: the first-stage pass of the window plus the conditioning pass of the noised
    conditioning frame(s) (`cond_noise: pixel`); CLIP: the image embedding(s) (the action
    names' text embedding is computed once per run, not per frame, and is not counted).
    """
    total, first_stage, conditioning, clip = _ours_counts(models, decode, extract, count_flops)
    vae = first_stage + conditioning - clip
    scale = 1e9 * decode.window
    return Cost("ours", vae / scale, clip / scale, (total - vae - clip) / scale)


def ours_flops_by_kind(
    models: tuple[Any, Any, Any], decode: DecodeSettings, extract: ExtractSettings
) -> dict[tuple[str, str], float]:
    """GFLOP per frame of `window_taps`, by model and op kind: what a mixed-precision MFU needs.

    Returns:
        {(model, kind): GFLOP/frame} for model "vae" (run in `vae_dtype`) or "unet_clip" (in
        `dtype`), kind "conv" (convolutions, cuDNN) or "matmul" (matmuls and attention, cuBLAS);
        the values sum to `ours_cost(...).total`.
    """
    total, first_stage, conditioning, clip = _ours_counts(models, decode, extract, count_flops_by_kind)
    scale = 1e9 * decode.window
    out = {}
    for kind in ("conv", "matmul"):
        vae = first_stage[kind] + conditioning[kind] - clip[kind]
        out["vae", kind], out["unet_clip", kind] = vae / scale, (total[kind] - vae) / scale
    return out


def count_flops_by_kind(fn: Callable[[], Any]) -> dict[str, int]:
    """FLOPs executed by `fn()`: {"conv": convolutions, "matmul": everything else counted}."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    conv = sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
    return {"conv": conv, "matmul": counter.get_total_flops() - conv}


def _ours_counts(models: tuple[Any, Any, Any], decode: DecodeSettings, extract: ExtractSettings, count: Callable) -> tuple:
    """`count` of one full window on `meta`: (all of `window_taps`, the first-stage VAE pass,
    the conditioning (its VAE pass and CLIP), CLIP alone: 0 when nothing is embedded)."""
    from actiondiff.features.svd_extractor import SVDExtractor

    extractor = SVDExtractor(*models, decode, extract, device="meta")
    frames = _meta_frames(decode)
    generator = torch.Generator().manual_seed(0)
    middle = decode.window // 2
    cond_frames = {"middle_frame": frames[middle : middle + 1], "per_frame": frames}.get(extract.conditioning)
    with torch.inference_mode():
        if extract.conditioning == "action_text":
            extractor._text_embed()  # cached: once per run
        total = count(lambda: extractor.window_taps(frames, generator))
        first_stage = count(lambda: extractor._encode_vae(frames))
        mean, _ = extractor._encode_vae(frames)
        conditioning = count(lambda: extractor._conditioning(frames, mean, decode.window, generator))
        clip = count(lambda: extractor._clip_embed(cond_frames)) if cond_frames is not None else count(lambda: None)
    return total, first_stage, conditioning, clip


def authors_cost(models: tuple[Any, Any, Any], decode: DecodeSettings, extract: ExtractSettings) -> Cost:
    """GFLOP per frame of `authors_window_taps` on one full window.

    The authors' procedure repeats an identical full pipeline run for every timestep, so one
    run is counted and multiplied by the number of timesteps.
    """
    import dataclasses

    from actiondiff.features.svd_extractor import SVDExtractor
    from actiondiff.tools.cost_baseline import authors_window_taps

    unet, vae, clip = models
    num_t = len(extract.timestep_indices)
    one_run = dataclasses.replace(extract, timestep_indices=extract.timestep_indices[:1])
    extractor = SVDExtractor(unet, vae, clip, decode, one_run, device="meta")
    frames = _meta_frames(decode)
    generator = torch.Generator().manual_seed(0)
    total = num_t * count_flops(lambda: authors_window_taps(extractor, frames, generator))
    padded = frames.to(extractor.vae_dtype)
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


# --------------------------------------------------------------------------- backbones

# Full-size transformers video encoders, built on `meta` (configs of the published checkpoints).
# VideoMAE v2 giant (the paper's VideoMAEv2, UnlabeledHybrid pre-training): ViT-g/14, 16 x 224^2.
VIDEOMAE_V2_GIANT: dict[str, Any] = dict(
    image_size=224, patch_size=14, num_frames=16, tubelet_size=2, hidden_size=1408,
    num_hidden_layers=40, num_attention_heads=16, intermediate_size=6144,
)
# VideoMAE base (MCG-NJU/videomae-base, the transformers default config): ViT-B/16, 16 x 224^2.
VIDEOMAE_BASE: dict[str, Any] = {}
# V-JEPA 2 ViT-L/16 (facebook/vjepa2-vitl-fpc64-256, the transformers default config): 64 x 256^2.
VJEPA2_LARGE: dict[str, Any] = {}
# V-JEPA 2 ViT-g/16 (facebook/vjepa2-vitg-fpc64-256): width 1408, 40 layers, 22 heads, 64 x 256^2.
VJEPA2_GIANT: dict[str, Any] = dict(hidden_size=1408, num_hidden_layers=40, num_attention_heads=22, mlp_ratio=48 / 11)
ENCODERS: dict[str, tuple[str, dict[str, Any]]] = {
    "videomae-v2-giant": ("videomae", VIDEOMAE_V2_GIANT),
    "videomae-base": ("videomae", VIDEOMAE_BASE),
    "vjepa2-large": ("vjepa2", VJEPA2_LARGE),
    "vjepa2-giant": ("vjepa2", VJEPA2_GIANT),
}


@dataclass(frozen=True)
class BackboneCost:
    """GFLOP per frame of one backbone's extraction (one full window / clip)."""

    backbone: str
    arch: str
    input: str
    gflop_per_frame: float


def build_encoder(name: str, overrides: dict[str, Any]) -> Any:
    """A `VideoMAEModel` (`videomae`) or `VJEPA2Model` (`vjepa2`) on `meta`, eager attention
    (so FlopCounterMode sees every attention matmul)."""
    import transformers

    config_class, model_class = {
        "videomae": (transformers.VideoMAEConfig, transformers.VideoMAEModel),
        "vjepa2": (transformers.VJEPA2Config, transformers.VJEPA2Model),
    }[name]
    config = config_class(**overrides)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = model_class(config)
    return model.eval().requires_grad_(False)


def encoder_cost(name: str, overrides: dict[str, Any]) -> BackboneCost:
    """GFLOP per frame of `VideoEncoderBackbone.forward` on one full clip (predictor not run)."""
    from actiondiff.features.backbones import backbone_class

    model = build_encoder(name, overrides)
    backbone = backbone_class(name)(model, backbone_class(name).settings_class(), DecodeSettings(), device="meta")
    height, width = backbone.input_size
    pixels = torch.zeros(1, backbone.clip_length, 3, height, width, device="meta")
    with torch.inference_mode():
        flops = count_flops(lambda: backbone.forward(pixels))
    config = model.config
    arch = f"{type(model).__name__} width {config.hidden_size}, {config.num_hidden_layers} layers, patch {config.patch_size}"
    return BackboneCost(name, arch, f"{backbone.clip_length} x {height}x{width}", flops / 1e9 / backbone.clip_length)


def backbone_costs(svd_arch: str = "svd-xt") -> list[BackboneCost]:
    """GFLOP per frame of SVD and SDv2 (paper settings: 576x1024, window 25, layer 9, t = 20,
    middle-frame conditioning) and of the full-size transformers encoders (`ENCODERS`)."""
    decode = DecodeSettings()
    models = build_models(svd_arch)
    rows = []
    for name, sdv2 in (("svd", False), ("sdv2", True)):
        cost = ours_cost(models, decode, ExtractSettings(sdv2=sdv2))
        arch = "SVD-XT VAE encoder + OpenCLIP ViT-H-14 + UNet to layer 9" if svd_arch == "svd-xt" else "tiny SVD"
        rows.append(BackboneCost(name, arch, f"{decode.window} x {decode.height}x{decode.width}", cost.total))
    for label, (name, overrides) in ENCODERS.items():
        cost = encoder_cost(name, overrides)
        rows.append(BackboneCost(label, cost.arch, cost.input, cost.gflop_per_frame))
    return rows


def format_backbone_table(tiny: bool = False) -> str:
    """`backbone_costs` as a Markdown table."""
    lines = [
        "| backbone | architecture | clip x input | GFLOP/frame |",
        "|---|---|---|---|",
    ]
    for cost in backbone_costs("tiny" if tiny else "svd-xt"):
        lines.append(f"| {cost.backbone} | {cost.arch} | {cost.input} | {cost.gflop_per_frame:,.1f} |")
    return "\n".join(lines)
