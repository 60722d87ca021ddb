"""Loading the frozen backbones' weights (SVD-XT + OpenCLIP, transformers video encoders),
strictly and offline; tiny stand-ins.

The same functions load a real SVD-XT snapshot (diffusers layout: `unet/`, `vae/`) and an
OpenCLIP ViT-H-14 checkpoint, or the tiny seeded models that `make_tiny_weights` writes with
`save_pretrained` / safetensors for tests and the demo. A missing or unexpected key, or a
checkpoint of another architecture, is a `WeightsError` naming the file and the keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

# SVD-XT's VAE is not the class default (DESIGN section 3).
SVD_VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    scaling_factor=0.18215,
)

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


class WeightsError(RuntimeError):
    """A weight file is missing, unreadable, or does not fit the architecture."""


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    """Frozen models run frozen: eval mode, no gradients."""
    return model.eval().requires_grad_(False)


def resolve_snapshot(source: str | Path, cache_dir: str | Path | None = None, key: str = "svd") -> Path:
    """The local directory of a snapshot: `source` itself, or a hub id in the HF cache.

    Args:
        source: a directory (SVD: holding `unet/` and `vae/`), or a hub id such as
            `stabilityai/stable-video-diffusion-img2vid-xt` already in the local cache.
        cache_dir: the Hugging Face cache (None: `HF_HUB_CACHE` / the default).
        key: the `weights` config key it came from, named in errors.
    Raises:
        WeightsError: neither a directory nor a cached hub id. Nothing is downloaded.
    """
    path = Path(source)
    if path.is_dir():
        return path
    if _looks_like_hub_id(str(source)):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(str(source), cache_dir=cache_dir, local_files_only=True))
        except Exception as error:  # the hub client raises several types for "not cached"
            raise WeightsError(
                f"Expected hub id {str(source)!r} to be in the local Hugging Face cache "
                f"({cache_dir or 'HF_HUB_CACHE'}), but it is not ({type(error).__name__}). "
                f"Download it once with `huggingface-cli download {source}` on a machine online."
            ) from error
    what = "an SVD-XT snapshot directory (with unet/ and vae/)" if key == "svd" else "a checkpoint directory"
    raise WeightsError(
        f"Expected `weights.{key}` to be {what} or a "
        f"cached hub id, but {str(source)!r} does not exist. Build the demo weights with "
        f"`actiondiff make-weights` or point the config at a downloaded snapshot."
    )


def load_svd(
    source: str | Path, dtype: torch.dtype = torch.float32, cache_dir: str | Path | None = None
) -> tuple[Any, Any]:
    """Load the SVD UNet and VAE from a diffusers-layout snapshot (local dir or cached hub id).

    Args:
        source: directory holding `unet/` and `vae/` (each with config + safetensors), or a
            Hugging Face hub id resolved from the local cache (no download is attempted).
        dtype: weight dtype.
        cache_dir: Hugging Face cache for hub ids (None: the default).
    Returns:
        (unet, vae), frozen, on the CPU. Only the VAE encoder is ever run.
    Raises:
        WeightsError: missing snapshot, missing/unexpected keys, or a size mismatch; the
            message names the weight file.
    """
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    root = resolve_snapshot(source, cache_dir)
    models = []
    for subfolder, cls in (("unet", UNetSpatioTemporalConditionModel), ("vae", AutoencoderKLTemporalDecoder)):
        files = sorted(str(f) for f in (root / subfolder).glob("*.safetensors")) or [str(root / subfolder)]
        where = ", ".join(files)
        try:
            # low_cpu_mem_usage=False + strict key checks: a missing key is an error, never a
            # silent random init.
            model, info = cls.from_pretrained(
                str(root),
                subfolder=subfolder,
                torch_dtype=dtype,
                output_loading_info=True,
                local_files_only=True,
                low_cpu_mem_usage=False,
            )
        except (OSError, ValueError, RuntimeError) as error:
            raise WeightsError(f"Could not load SVD {subfolder} from {where}: {error}") from error
        bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if bad:
            raise WeightsError(
                f"Expected the weights in {where} to match {cls.__name__} exactly, "
                f"but got {_summarise_keys(bad)}. Is this an SVD-XT snapshot?"
            )
        models.append(_frozen(model))
    return models[0], models[1]


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/"))


def _summarise_keys(bad: dict[str, list[Any]], limit: int = 5) -> str:
    parts = []
    for kind, keys in bad.items():
        shown = [str(k) for k in list(keys)[:limit]]
        more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
        parts.append(f"{len(keys)} {kind.replace('_', ' ')}: {shown}{more}")
    return "; ".join(parts)


HF_HUB_PREFIX = "hf-hub:"
# File names of OpenCLIP checkpoints on the hub, preferred first.
HUB_CLIP_CHECKPOINTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _hub_file(repo: str, names: tuple[str, ...], cache_dir: str | Path | None) -> Path:
    """The first of `names` found in the local HF cache for `repo` (no download)."""
    from huggingface_hub import hf_hub_download

    for name in names:
        try:
            return Path(hf_hub_download(repo, name, cache_dir=cache_dir, local_files_only=True))
        except Exception:  # not cached under this name: try the next one
            continue
    raise WeightsError(
        f"Expected one of {list(names)} of hub repo {repo!r} in the local Hugging Face cache "
        f"({cache_dir or 'HF_HUB_CACHE'}), but none is there. Download it once on a machine online."
    )


def clip_config(arch: str | Path, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """An OpenCLIP model config: a registered name (`ViT-H-14`), a JSON file, or `hf-hub:<repo>`."""
    import open_clip

    text = str(arch)
    if text.startswith(HF_HUB_PREFIX):
        arch = _hub_file(text.removeprefix(HF_HUB_PREFIX), ("open_clip_config.json",), cache_dir)
    if str(arch).endswith(".json"):
        path = Path(arch)
        if not path.is_file():
            raise WeightsError(f"Expected `weights.clip_arch` JSON file {str(arch)!r} to exist, but it does not.")
        config = json.loads(path.read_text())
        return config.get("model_cfg", config)  # hub files nest the model config
    config = open_clip.get_model_config(text)
    if config is None:
        raise WeightsError(
            f"Expected `weights.clip_arch` to be an OpenCLIP model name such as 'ViT-H-14', a "
            f"JSON config file or 'hf-hub:<repo>', but got {text!r}."
        )
    return config


def resolve_clip_checkpoint(checkpoint: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A checkpoint file path, or `hf-hub:<repo>` resolved from the local HF cache."""
    text = str(checkpoint)
    if text.startswith(HF_HUB_PREFIX):
        return _hub_file(text.removeprefix(HF_HUB_PREFIX), HUB_CLIP_CHECKPOINTS, cache_dir)
    return Path(checkpoint)


def build_clip(config: dict[str, Any]) -> torch.nn.Module:
    """An OpenCLIP `CLIP` model from a config dict, randomly initialised."""
    import open_clip

    return open_clip.CLIP(**config)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors: safetensors, or a torch file loaded with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Expected the OpenCLIP checkpoint {str(path)!r} to exist, but it does not.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # any parse failure of an untrusted file is a weights error
        raise WeightsError(f"Could not read checkpoint {str(path)!r}: {error}") from error
    # Training checkpoints nest the weights and prefix them with `module.`.
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_clip(
    arch: str | Path,
    checkpoint: str | Path,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
) -> torch.nn.Module:
    """Build OpenCLIP from `arch` and load `checkpoint` strictly.

    Args:
        arch: model name, JSON config file or `hf-hub:<repo>`.
        checkpoint: .safetensors / torch file, or `hf-hub:<repo>` (local HF cache only).
    Raises:
        WeightsError: unreadable file, missing/unexpected keys or shape mismatches, naming the file.
    """
    path = resolve_clip_checkpoint(checkpoint, cache_dir)
    model = build_clip(clip_config(arch, cache_dir))
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    bad = {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        raise WeightsError(
            f"Expected checkpoint {str(path)!r} to fit OpenCLIP architecture {str(arch)!r}, "
            f"but got {_summarise_keys(bad)}."
        )
    model.load_state_dict(state, strict=True)
    return _frozen(model.to(dtype))


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def weights_identity(
    svd: str | Path, clip_checkpoint: str | Path, cache_dir: str | Path | None = None
) -> dict[str, str]:
    """File names and checksums of the weight files and the UNet / VAE configs, recorded in
    every store (the VAE config holds the latent scaling factor, which changes the features).

    Hub ids are resolved from the local cache first. Checksums of multi-GB files are
    expensive: callers compute this once per job.
    """
    identity: dict[str, str] = {}
    root = resolve_snapshot(svd, cache_dir)
    files = [root / "unet" / "config.json", root / "vae" / "config.json"]
    files += sorted(root.glob("unet/*.safetensors")) + sorted(root.glob("vae/*.safetensors"))
    files.append(resolve_clip_checkpoint(clip_checkpoint, cache_dir))
    for path in files:
        if path.is_file():
            identity[str(path)] = file_sha256(path)
    return identity


def load_transformers_model(
    cls: Any, source: str | Path, key: str, dtype: torch.dtype = torch.float32, cache_dir: str | Path | None = None
) -> tuple[torch.nn.Module, Path]:
    """Load a transformers model (e.g. `VideoMAEModel`) from a checkpoint dir, strictly and offline.

    Args:
        cls: the transformers model class.
        source: a directory with `config.json` and safetensors (`save_pretrained` layout), or a
            hub id resolved from the local Hugging Face cache (nothing is downloaded).
        key: the `weights` config key, named in errors.
    Returns:
        (model frozen on the CPU, the checkpoint directory).
    Raises:
        WeightsError: missing directory, a config of another model type, missing / unexpected
            keys or shape mismatches; the message names the weight files.
    """
    from transformers.utils import logging as hf_logging

    root = resolve_snapshot(source, cache_dir, key=key)
    files = sorted(str(f) for f in root.glob("*.safetensors")) or [str(root)]
    where = ", ".join(files)
    hf_logging.disable_progress_bar()
    try:
        # ignore_mismatched_sizes=True only reports size mismatches in `info` (transformers' own
        # error does not name the keys); any missing, unexpected or mismatched key fails below.
        model, info = cls.from_pretrained(
            str(root), dtype=dtype, output_loading_info=True, local_files_only=True, ignore_mismatched_sizes=True
        )
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise WeightsError(f"Could not load {cls.__name__} (`weights.{key}`) from {where}: {error}") from error
    bad = {k: sorted(v) for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise WeightsError(
            f"Expected the weights in {where} to match {cls.__name__} exactly, but got "
            f"{_summarise_keys(bad)}. Is `weights.{key}` a checkpoint of this model?"
        )
    return _frozen(model), root


def checkpoint_identity(source: str | Path, key: str, cache_dir: str | Path | None = None) -> dict[str, str]:
    """{file: SHA-256} of a transformers checkpoint's config.json and safetensors (hub ids from
    the local cache): the architecture and the weights."""
    root = resolve_snapshot(source, cache_dir, key=key)
    files = [root / "config.json", *sorted(root.glob("*.safetensors"))]
    return {str(path): file_sha256(path) for path in files if path.is_file()}


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


def unit_variance_scale(vae: torch.nn.Module, frames_per_clip: int = 8, size: int = 64) -> float:
    """The VAE scaling factor that gives its latents unit variance on the demo's frames.

    This is how Stable Diffusion's 0.18215 was chosen (1 / std of the latents of real images).
    A random tiny VAE's latents are far smaller (std ~0.2 against SD's ~5.5); with the real
    factor its frames would reach the UNet 30 times weaker than the conditioning latent, so
    the per-frame (motion) signal would drown. Rounded to 4 significant digits.
    """
    from . import demo_data

    rng = np.random.default_rng(0)
    clips = [demo_data.render_clip(d, a, frames_per_clip, size, rng) for d in demo_data.DOMAINS for a in demo_data.ACTIONS]
    frames = torch.from_numpy(np.concatenate(clips)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        mean, _ = vae.quant_conv(vae.encoder(frames)).chunk(2, dim=1)
    return float(f"{1.0 / mean.std().item():.4g}")


def _make_tiny_svd(out: Path, seed: int) -> dict[str, Path]:
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    svd_dir = out / "tiny-svd"
    UNetSpatioTemporalConditionModel(**TINY_UNET_CONFIG).save_pretrained(svd_dir / "unet")
    vae = AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG)
    vae.register_to_config(scaling_factor=unit_variance_scale(vae))
    vae.save_pretrained(svd_dir / "vae")
    clip_dir = out / "tiny-clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    config_path = clip_dir / "open_clip_config.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2, sort_keys=True) + "\n")
    checkpoint = clip_dir / "open_clip_model.safetensors"
    state = {k: v.contiguous() for k, v in build_clip(TINY_CLIP_CONFIG).state_dict().items()}
    save_file(state, str(checkpoint))
    return {"svd": svd_dir, "clip_arch": config_path, "clip_checkpoint": checkpoint}
