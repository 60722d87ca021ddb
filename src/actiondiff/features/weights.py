"""Loading the frozen backbones' weights (SVD-XT + OpenCLIP, transformers video encoders),
strictly and offline; tiny stand-ins.

The same functions load a real SVD-XT snapshot (diffusers layout: `unet/`, `vae/`) and an
OpenCLIP ViT-H-14 checkpoint, or the tiny seeded models that `actiondiff.tools.tiny_weights`
writes with `save_pretrained` / safetensors for tests and the demo. A missing or unexpected key, or a
checkpoint of another architecture, is a `WeightsError` naming the file and the keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# SVD-XT's VAE is not the class default (docs/design.md, weights).
SVD_VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    scaling_factor=0.18215,
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
    from safetensors import SafetensorError
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
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:  # SafetensorError: truncated file
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
