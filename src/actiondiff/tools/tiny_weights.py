"""Seeded tiny backbone weights in the real formats, for tests and the embedded demo.

Tiny configs of the same classes as SVD-XT, OpenCLIP ViT-H-14, VideoMAE and V-JEPA 2, written
with `save_pretrained` / safetensors and read back through the real loaders of
`actiondiff.features.weights`, so the loading code the real weights take is the one tested.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actiondiff.features.weights import SVD_VAE_CONFIG, build_clip
from actiondiff.tools import demo_data

log = logging.getLogger(__name__)

# Tiny configs of the same classes: channels multiples of 32 (GroupNorm), 4 down levels x 2
# layers so the 13-layer map holds, projection dim = 3 * addition_time_embed_dim.
TINY_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=8,
    in_channels=8,
    out_channels=4,
    block_out_channels=(32, 32, 64, 64),
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=24,
    layers_per_block=2,
    cross_attention_dim=32,
    num_attention_heads=(2, 2, 4, 4),
    num_frames=25,
)
TINY_VAE_CONFIG: dict[str, Any] = dict(SVD_VAE_CONFIG, block_out_channels=(32, 32, 32, 32))
TINY_CLIP_CONFIG: dict[str, Any] = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=32, layers=2, width=64, head_width=32, patch_size=8),
    text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
)

# Tiny configs of the transformers video encoders (same classes as the real checkpoints):
# 4-frame clips of 32 x 32, tubelet 2, patch 8 -> 2 x 4 x 4 tokens, width 32.
TINY_VIDEOMAE_CONFIG: dict[str, Any] = dict(
    image_size=32,
    patch_size=8,
    num_frames=4,
    tubelet_size=2,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
)
TINY_VJEPA2_CONFIG: dict[str, Any] = dict(
    crop_size=32,
    patch_size=8,
    frames_per_clip=4,
    tubelet_size=2,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    mlp_ratio=2.0,
    pred_hidden_size=32,
    pred_num_hidden_layers=1,
    pred_num_attention_heads=2,
    pred_num_mask_tokens=2,
    num_pooler_layers=1,
)
# What the real checkpoints' processors say (ImageNet mean/std), written next to the tiny ones.
TINY_PREPROCESSOR = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
TINY_BACKBONES = ("svd", "videomae", "vjepa2")


def make_tiny_transformer(name: str, out_dir: str | Path) -> Path:
    """Write a seeded tiny `VideoMAEModel` (`videomae`) or `VJEPA2Model` (`vjepa2`) with `save_pretrained`."""
    import transformers

    if name == "videomae":
        model = transformers.VideoMAEModel(transformers.VideoMAEConfig(**TINY_VIDEOMAE_CONFIG))
    elif name == "vjepa2":
        model = transformers.VJEPA2Model(transformers.VJEPA2Config(**TINY_VJEPA2_CONFIG))
    else:
        raise ValueError(f"Expected a transformers backbone name (videomae, vjepa2), but got {name!r}.")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = Path(out_dir)
    model.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps(TINY_PREPROCESSOR, indent=2) + "\n")
    return out


def make_tiny_weights(out_dir: str | Path, seed: int = 0, backbones: tuple[str, ...] = ("svd",)) -> dict[str, Path]:
    """Write seeded tiny backbone weights, in the real formats.

    Layout written: `svd`: `{out}/tiny-svd/unet/`, `{out}/tiny-svd/vae/` (diffusers
    `save_pretrained`), `{out}/tiny-clip/open_clip_config.json` and `open_clip_model.safetensors`;
    `videomae` / `vjepa2`: `{out}/tiny-<name>/` (transformers `save_pretrained` plus a
    `preprocessor_config.json`). Each model is seeded with `seed` on its own, so any subset
    writes the same files.
    Returns:
        the paths to put in the `weights` config block.
    """
    unknown = sorted(set(backbones) - set(TINY_BACKBONES))
    if unknown:
        raise ValueError(f"Expected tiny weights of {list(TINY_BACKBONES)}, but got {unknown}.")
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    if "svd" in backbones:
        paths.update(_make_tiny_svd(out, seed))
    for name in ("videomae", "vjepa2"):
        if name in backbones:
            torch.manual_seed(seed)
            paths[name] = make_tiny_transformer(name, out / f"tiny-{name}")
    log.info("wrote tiny weights of %s to %s", list(backbones), out)
    return paths


def _demo_frames(frames_per_clip: int = 8, size: int = 64) -> torch.Tensor:
    """[n, 3, size, size] in [-1, 1]: one seeded clip of each demo (domain, action)."""
    rng = np.random.default_rng(0)
    clips = [demo_data.render_clip(d, a, frames_per_clip, size, rng) for d in demo_data.DOMAINS for a in demo_data.ACTIONS]
    return torch.from_numpy(np.concatenate(clips)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def unit_variance_scale(vae: torch.nn.Module, frames_per_clip: int = 8, size: int = 64) -> float:
    """The VAE scaling factor that gives its latents unit variance on the demo's frames.

    This is how Stable Diffusion's 0.18215 was chosen (1 / std of the latents of real images).
    A random tiny VAE's latents are far smaller (std ~0.2 against SD's ~5.5); with the real
    factor its frames would reach the UNet 30 times weaker than the conditioning latent, so
    the per-frame (motion) signal would drown. Rounded to 4 significant digits.
    """
    with torch.no_grad():
        mean, _ = vae.quant_conv(vae.encoder(_demo_frames(frames_per_clip, size))).chunk(2, dim=1)
    return float(f"{1.0 / mean.std().item():.4g}")


def narrow_posterior(vae: torch.nn.Module, relative_std: float = 0.1) -> None:
    """Give a random VAE a narrow posterior, as trained ones have (their KL weight is tiny).

    A random init's log-variance is ~0 (posterior std ~1, five times its latents' std), so a
    posterior sample, the authors' first-stage latent, would be mostly noise. Here the
    log-variance half of `quant_conv` outputs a constant: std = `relative_std` x the std of
    the posterior means on the demo's frames.
    """
    with torch.no_grad():
        mean, _ = vae.quant_conv(vae.encoder(_demo_frames())).chunk(2, dim=1)
        latent = vae.config.latent_channels
        vae.quant_conv.weight[latent:] = 0.0
        vae.quant_conv.bias[latent:] = 2.0 * float(np.log(relative_std * mean.std().item()))


def _make_tiny_svd(out: Path, seed: int) -> dict[str, Path]:
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    svd_dir = out / "tiny-svd"
    UNetSpatioTemporalConditionModel(**TINY_UNET_CONFIG).save_pretrained(svd_dir / "unet")
    vae = AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG)
    narrow_posterior(vae)
    vae.register_to_config(scaling_factor=unit_variance_scale(vae))
    vae.save_pretrained(svd_dir / "vae")
    clip_dir = out / "tiny-clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    config_path = clip_dir / "open_clip_config.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2, sort_keys=True) + "\n")
    checkpoint = clip_dir / "open_clip_model.safetensors"
    state = {k: v.contiguous() for k, v in build_clip(TINY_CLIP_CONFIG).state_dict().items()}
    save_file(state, str(checkpoint))
    # the SVD download's own image encoder: the same visual tower in transformers' layout
    write_image_encoder(checkpoint, TINY_CLIP_CONFIG, svd_dir / "image_encoder")
    return {"svd": svd_dir, "clip_arch": config_path, "clip_checkpoint": checkpoint}


# ------------------------------------------------------------------ the published layouts, tiny


def write_fp16_variant(svd_dir: str | Path, out: str | Path) -> Path:
    """An SVD snapshot holding only `*.fp16.safetensors` (what `variant="fp16"` downloads)."""
    from safetensors.torch import load_file, save_file

    svd_dir, out = Path(svd_dir), Path(out)
    for part in ("unet", "vae"):
        (out / part).mkdir(parents=True, exist_ok=True)
        (out / part / "config.json").write_bytes((svd_dir / part / "config.json").read_bytes())
        state = load_file(str(svd_dir / part / "diffusion_pytorch_model.safetensors"))
        save_file({k: v.half() for k, v in state.items()}, str(out / part / "diffusion_pytorch_model.fp16.safetensors"))
    return out


def write_image_encoder(clip_checkpoint: str | Path, clip_config: dict[str, Any], out_dir: str | Path) -> Path:
    """The OpenCLIP visual tower as transformers' `CLIPVisionModelWithProjection` folder (SVD's `image_encoder/`)."""
    from safetensors.torch import load_file, save_file

    from actiondiff.features.key_maps import openclip_to_hf_vision

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    visual = {k: v for k, v in load_file(str(clip_checkpoint)).items() if k.startswith("visual.")}
    save_file(openclip_to_hf_vision(visual), str(out / "model.safetensors"), metadata={"format": "pt"})
    vision = clip_config["vision_cfg"]
    width = vision["width"]
    config = {
        "architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model", "hidden_act": "gelu",
        "hidden_size": width, "image_size": vision["image_size"], "intermediate_size": int(width * vision.get("mlp_ratio", 4.0)),
        "layer_norm_eps": 1e-05, "num_attention_heads": width // vision["head_width"], "num_channels": 3,
        "num_hidden_layers": vision["layers"], "patch_size": vision["patch_size"], "projection_dim": clip_config["embed_dim"],
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def write_single_file(svd_dir: str | Path, clip_checkpoint: str | Path, out_file: str | Path, seed: int = 0) -> Path:
    """The SVD snapshot and OpenCLIP's visual tower as one sgm-named file, laid out like `svd_xt.safetensors`.

    Written with `actiondiff.features.key_maps` (diffusers -> sgm names), plus what the real
    file holds that nothing loads: a first-stage copy of the encoder, the conditioner
    autoencoder's decoder and post_quant_conv (random here), the text tower's leftovers.
    The unet/ and vae/ configs are written beside it (the real file carries none).
    """
    from diffusers import AutoencoderKLTemporalDecoder
    from safetensors.torch import load_file, save_file

    from actiondiff.features import key_maps

    svd_dir, out_file = Path(svd_dir), Path(out_file)
    unet = load_file(str(svd_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    vae = load_file(str(svd_dir / "vae" / "diffusion_pytorch_model.safetensors"))
    state = {name: unet[key] for key, name in key_maps.unet_sgm_names(unet).items()}
    for key, name in key_maps.vae_sgm_names(vae).items():
        value = vae[key]
        state[name] = value[..., None, None] if key_maps.is_vae_1x1_projection(key) else value  # [c, c] -> [c, c, 1, 1]
        if name.startswith(key_maps.SGM_ENCODER_PREFIX + "encoder."):
            state[name.replace(key_maps.SGM_ENCODER_PREFIX, key_maps.SGM_DECODER_PREFIX)] = state[name].clone()
    generator = torch.Generator().manual_seed(seed)
    config = json.loads((svd_dir / "vae" / "config.json").read_text())
    with torch.device("meta"):
        plain = AutoencoderKLTemporalDecoder.from_config(config)
    for key, shape in (("decoder.conv_in.weight", plain.decoder.conv_in.weight.shape), ("post_quant_conv.weight", (4, 4, 1, 1))):
        state[f"{key_maps.SGM_ENCODER_PREFIX}{key}"] = torch.randn(shape, generator=generator)
    clip = load_file(str(clip_checkpoint))
    for key, value in clip.items():
        if key.startswith("visual.") or key in ("token_embedding.weight", "positional_embedding", "ln_final.weight",
                                                 "ln_final.bias", "text_projection", "logit_scale"):
            state[key_maps.SGM_CLIP_PREFIX + key] = value
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_file))
    for part in ("unet", "vae"):
        (out_file.parent / part).mkdir(exist_ok=True)
        (out_file.parent / part / "config.json").write_bytes((svd_dir / part / "config.json").read_bytes())
    return out_file
