"""Which weight files a backbone reads, and their content checksums (no torch: planning uses it).

Every layout a researcher downloads is resolved here to the exact files the loaders of
`actiondiff.features.weights` read, by *role* (a location-independent name such as
`svd/unet/diffusion_pytorch_model.fp16.safetensors`):

| `weights.svd` | files read |
|---|---|
| a diffusers snapshot folder (`unet/`, `vae/`; fp32 or `*.fp16.*` files, whichever exist; fp32 preferred) or a hub id in the local Hugging Face cache | `unet/config.json`, one `unet/diffusion_pytorch_model[.fp16].{safetensors,bin}`, the same of `vae/` |
| the single file `svd_xt.safetensors` (sgm keys) | that file, plus `unet/config.json` / `vae/config.json` beside it if present, else SVD-XT's published configs (built in) |

Conditioning (`weights.clip_checkpoint`): an OpenCLIP checkpoint file (the whole model,
needed for `action_text`), or empty: the SVD download's own `image_encoder/` (transformers
`CLIPVisionModelWithProjection`, mapped onto OpenCLIP's visual tower) or the single file's
conditioner.

The feature identity holds `{role: SHA-256}` of exactly these files, so a moved or trimmed
download keeps its identity and a changed tensor never does. Hashing GBs is slow, so
checksums are kept in a small JSON cache keyed by real path, size and mtime
(`weights.checksum_cache`); a replaced file has a new size or mtime and is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# SVD-XT's published configs (stabilityai/stable-video-diffusion-img2vid-xt, unet/ and vae/
# config.json), for the single file, which carries none.
SVD_XT_UNET_CONFIG: dict[str, Any] = dict(
    addition_time_embed_dim=256,
    block_out_channels=[320, 640, 1280, 1280],
    cross_attention_dim=1024,
    down_block_types=["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
    in_channels=8,
    layers_per_block=2,
    num_attention_heads=[5, 10, 20, 20],
    num_frames=25,
    out_channels=4,
    projection_class_embeddings_input_dim=768,
    sample_size=96,
    transformer_layers_per_block=1,
    up_block_types=["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3,
)
SVD_XT_VAE_CONFIG: dict[str, Any] = dict(
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    force_upcast=True,
    in_channels=3,
    latent_channels=4,
    layers_per_block=2,
    out_channels=3,
    sample_size=768,
    scaling_factor=0.18215,
)
# The OpenCLIP architecture of SVD-XT's conditioner (open_clip's registered name).
SVD_XT_CLIP_ARCH = "ViT-H-14"

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"
# Preferred first: full precision, then the fp16 variant; safetensors before torch files.
DIFFUSERS_CANDIDATES = tuple(
    f"{DIFFUSERS_WEIGHTS}{variant}.{ext}" for variant in ("", ".fp16") for ext in ("safetensors", "bin")
)
TRANSFORMERS_CANDIDATES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
IMAGE_ENCODER_CANDIDATES = ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin")
PREPROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")
HF_HUB_PREFIX = "hf-hub:"
# A file that is the sgm single checkpoint rather than a folder (svd_xt.safetensors, svd.safetensors...).
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
# What a role's content is when the file is not there at planning time: a checksum no file has.
MISSING = "missing"


class WeightsError(RuntimeError):
    """A weight file is missing, unreadable, or does not fit the architecture."""


def hf_download_hint(repo: str, *patterns: str) -> str:
    """The `hf download` command (current huggingface_hub CLI) for `repo`, one --include per pattern."""
    include = "".join(f' --include "{p}"' for p in patterns)
    return f"`hf download {repo}{include} --local-dir <folder>` (gated models: `hf auth login` first)"


def looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()


def resolve_snapshot(source: str | Path, cache_dir: str | Path | None = None, key: str = "svd") -> Path:
    """The local folder (or, for `svd`, single file) a weights setting names.

    Args:
        source: a folder, a file (SVD: `svd_xt.safetensors`), or a hub id such as
            `stabilityai/stable-video-diffusion-img2vid-xt` already in the local HF cache.
        cache_dir: the Hugging Face cache (None: `HF_HUB_CACHE` / the default).
        key: the `weights` config key it came from, named in errors.
    Raises:
        WeightsError: none of these. Nothing is downloaded.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        if key == "svd" and path.suffix in SINGLE_FILE_SUFFIXES:
            return path
        raise WeightsError(
            f"Expected `weights.{key}` to be a checkpoint folder (config.json + weights), but "
            f"{str(source)!r} is a file. Point it at the folder holding the file."
        )
    if looks_like_hub_id(str(source)):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(str(source), cache_dir=cache_dir, local_files_only=True))
        except Exception as error:  # the hub client raises several types for "not cached"
            raise WeightsError(
                f"Expected hub id {str(source)!r} to be in the local Hugging Face cache "
                f"({cache_dir or 'HF_HUB_CACHE'}), but it is not ({type(error).__name__}). Download it "
                f"once on a machine online: {hf_download_hint(str(source))}; see README, Getting the weights."
            ) from error
    what = (
        "an SVD-XT snapshot folder (unet/, vae/) or the single file svd_xt.safetensors"
        if key == "svd"
        else "a checkpoint folder"
    )
    raise WeightsError(
        f"Expected `weights.{key}` to be {what} or a cached hub id, but {str(source)!r} does not "
        f"exist. Build the demo weights with `actiondiff make-tiny-weights` or point the config at a download."
    )


def pick_file(folder: Path, candidates: tuple[str, ...], what: str) -> Path:
    """The first of `candidates` in `folder`.

    Raises:
        WeightsError: none is there (the message lists what is).
    """
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "the folder does not exist"
    raise WeightsError(f"Expected {what} in {folder} to be one of {list(candidates)}, but got {present}.")


def svd_files(source: str | Path, cache_dir: str | Path | None = None) -> dict[str, Path | dict]:
    """{role: file (or built-in config dict)} that loading SVD's UNet and VAE reads.

    Roles: `unet/config.json`, `unet/weights`, `vae/config.json`, `vae/weights` (diffusers
    layout), or `svd_xt` (the single file) with the two configs.
    """
    root = resolve_snapshot(source, cache_dir)
    if root.is_file():
        base = root.parent
        files: dict[str, Path | dict] = {"svd_xt": root}
        for part, builtin in (("unet", SVD_XT_UNET_CONFIG), ("vae", SVD_XT_VAE_CONFIG)):
            config = base / part / "config.json"
            files[f"{part}/config.json"] = config if config.is_file() else dict(builtin)
        return files
    files = {}
    for part in ("unet", "vae"):
        config = root / part / "config.json"
        if not config.is_file():
            raise WeightsError(
                f"Expected an SVD-XT snapshot folder holding {part}/config.json, but {root} has none "
                f"(has {sorted(p.name for p in root.iterdir())}). Download with "
                f"{hf_download_hint('stabilityai/stable-video-diffusion-img2vid-xt', f'{part}/*')}."
            )
        files[f"{part}/config.json"] = config
        files[f"{part}/weights"] = pick_file(root / part, DIFFUSERS_CANDIDATES, f"the SVD {part} weights")
    return files


def clip_files(
    svd: str | Path, clip_arch: str, clip_checkpoint: str, cache_dir: str | Path | None = None
) -> dict[str, Path | dict]:
    """{role: file (or built-in value)} that loading the conditioning CLIP reads.

    `clip_checkpoint` set: an OpenCLIP checkpoint (`checkpoint`) and its architecture
    (`arch`: a JSON file, or `{"open_clip": name}`). Empty: the SVD download's
    `image_encoder/` (`image_encoder/config.json`, `image_encoder/weights`) or, for the single
    file, its conditioner (`svd_xt`) with `arch`.
    """
    if clip_checkpoint:
        return {"arch": clip_arch_file(clip_arch, cache_dir), "checkpoint": resolve_clip_checkpoint(clip_checkpoint, cache_dir)}
    root = resolve_snapshot(svd, cache_dir)
    if root.is_file():
        return {"arch": clip_arch_file(clip_arch or SVD_XT_CLIP_ARCH, cache_dir), "svd_xt": root}
    folder = root / "image_encoder"
    if not (folder / "config.json").is_file():
        raise WeightsError(
            f"Expected the SVD-XT snapshot {root} to hold image_encoder/ (config.json + model"
            f"[.fp16].safetensors) since `weights.clip_checkpoint` is empty, but it has none. Download it "
            f"with {hf_download_hint('stabilityai/stable-video-diffusion-img2vid-xt', 'image_encoder/*')}, or set "
            f"`weights.clip_checkpoint` to an OpenCLIP checkpoint."
        )
    return {"image_encoder/config.json": folder / "config.json",
            "image_encoder/weights": pick_file(folder, IMAGE_ENCODER_CANDIDATES, "the image encoder weights")}


def clip_arch_file(arch: str, cache_dir: str | Path | None = None) -> Path | dict:
    """An OpenCLIP architecture as content: its JSON file, or `{"open_clip": name}` for a registered name."""
    text = str(arch)
    if text.startswith(HF_HUB_PREFIX):
        return hub_file(text.removeprefix(HF_HUB_PREFIX), ("open_clip_config.json",), cache_dir)
    if text.endswith(".json"):
        if not Path(text).is_file():
            raise WeightsError(f"Expected `weights.clip_arch` JSON file {text!r} to exist, but it does not.")
        return Path(text)
    return {"open_clip": text}


def resolve_clip_checkpoint(checkpoint: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A checkpoint file path, or `hf-hub:<repo>` resolved from the local HF cache."""
    text = str(checkpoint)
    if text.startswith(HF_HUB_PREFIX):
        return hub_file(text.removeprefix(HF_HUB_PREFIX), ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"), cache_dir)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise WeightsError(f"Expected the OpenCLIP checkpoint {text!r} (`weights.clip_checkpoint`) to exist, but it does not.")
    return path


def hub_file(repo: str, names: tuple[str, ...], cache_dir: str | Path | None) -> Path:
    """The first of `names` found in the local HF cache for `repo` (no download)."""
    from huggingface_hub import hf_hub_download

    for name in names:
        try:
            return Path(hf_hub_download(repo, name, cache_dir=cache_dir, local_files_only=True))
        except Exception:  # not cached under this name: try the next one
            continue
    raise WeightsError(
        f"Expected one of {list(names)} of hub repo {repo!r} in the local Hugging Face cache "
        f"({cache_dir or 'HF_HUB_CACHE'}), but none is there. Download it once on a machine online: "
        f"{hf_download_hint(repo, *names)}."
    )


def transformers_files(source: str | Path, key: str, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """{role: file} a transformers checkpoint folder is loaded from: `config.json`, the weights
    (one file, or every shard an index names), and the preprocessor config if any."""
    root = resolve_snapshot(source, cache_dir, key=key)
    if not (root / "config.json").is_file():
        raise WeightsError(f"Expected the checkpoint folder {root} (`weights.{key}`) to hold config.json, but it does not.")
    files = {"config.json": root / "config.json"}
    weights = pick_file(root, TRANSFORMERS_CANDIDATES, f"the weights of `weights.{key}`")
    if weights.name.endswith(".index.json"):
        shards = sorted(set(json.loads(weights.read_text())["weight_map"].values()))
        files.update({shard: root / shard for shard in shards})
    else:
        files[weights.name] = weights
    for name in PREPROCESSOR_FILES:
        if (root / name).is_file():
            files[name] = root / name
    return files


def file_sha256(path: str | Path, block: int = 1 << 24) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def content_sha256(value: Path | dict) -> str:
    """SHA-256 of a file's bytes, or of a built-in value's sorted JSON."""
    if isinstance(value, dict):
        return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return file_sha256(value)


def default_checksum_cache() -> Path:
    """Where checksums are kept when `weights.checksum_cache` is empty: the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "actiondiff" / "weights-sha256.json"


class ChecksumCache:
    """SHA-256 of files, remembered by (real path, size, mtime) in one JSON file.

    Concurrent jobs may share it: each write merges into what is on disk and replaces the
    file atomically; a lost update only costs hashing a file again.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else default_checksum_cache()

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def checksums(self, files: dict[str, Path | dict]) -> dict[str, str]:
        """{role: SHA-256} of `files`, hashing only files whose size or mtime is new."""
        known = self._read()
        out: dict[str, str] = {}
        new: dict[str, dict[str, Any]] = {}
        for role, value in files.items():
            if isinstance(value, dict):
                out[role] = content_sha256(value)
                continue
            real = os.path.realpath(value)  # the HF cache's snapshot files are links to blobs
            stat = os.stat(real)
            entry = new.get(real) or known.get(real)
            if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
                out[role] = entry["sha256"]
            else:  # a large file takes a while: say so (seconds per GB)
                log.info("hashing %s (%.2f GB) for the feature identity, once (cached in %s)", real, stat.st_size / 1e9, self.path)
                out[role] = file_sha256(real)
                new[real] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": out[role]}
        if new and self.path is not None:
            merged = {**self._read(), **new}
            tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
                os.replace(tmp, self.path)
            except OSError as error:  # a read-only cache costs hashing again next time, nothing else
                log.warning("could not update the weight checksum cache %s: %s", self.path, error)
        return out


def file_paths(files: dict[str, Path | dict], prefix: str) -> dict[str, str]:
    """{role with prefix: path as text} of the real files (built-in configs are not files)."""
    return {f"{prefix}{role}": str(value) for role, value in files.items() if not isinstance(value, dict)}
