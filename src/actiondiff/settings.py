"""Frozen, typed, validated settings objects; one per stage.

Each settings object is a frozen dataclass whose fields carry a default and a one-line doc
(`metadata["doc"]`). `from_dict` refuses unknown keys by name, and `settings_hash` names a
cache: two extractions with different settings can never share a directory.
This module imports no torch: Snakemake validates a whole config at parse time with it, in
well under a second, on every start of a workflow or of a cluster job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CONDITIONING_MODES = ("middle_frame", "per_frame", "none", "action_text")
NOISE_MODES = ("none", "gaussian")
RESIZE_POLICIES = ("stretch", "keep_aspect_crop", "keep_aspect_pad")
DTYPES = ("float32", "float16", "bfloat16")
# The SVD path also runs in float64: for parity checks against the authors' modules (issue 30),
# where float32 rounding of ill-conditioned steps (GroupNorm of near-flat maps) would hide the rest.
SVD_DTYPES = (*DTYPES, "float64")
LATENT_MODES = ("mean", "sample")
PADDING_MODES = ("black", "grey")
COND_NOISE_MODES = ("pixel", "latent")
HALF_PRECISION_MODES = ("autocast", "cast")
# torch.compile modes offered for the UNet down path and the VAE encoder. No mode with CUDA
# graphs: a graph's outputs are overwritten by its next replay, and the extractor keeps some.
COMPILE_MODES = ("none", "default", "max-autotune-no-cudagraphs")
# Fields of ExtractSettings that change how fast the backbone runs on a GPU, and with it the
# rounding, but not what it computes (issue 18). They are part of the feature identity when set
# (caches of a tuned and an untuned run never mix) but left out of its hash at their defaults,
# so identities written before these fields existed keep their hash; and they never seed a
# video's random draws (`draw_settings`), so a tuned run draws the noise of the untuned one and
# its features differ from the untuned ones by rounding only.
TUNING_FIELDS = ("tf32", "channels_last", "compile")
# Fields added after identities were recorded, kept out of the hash at their defaults and out of
# the draw seed like TUNING_FIELDS: `z_encoder` (issue 30) changes which VAE encoder copy gives
# z, not the noise drawn, so a run with the authors' copy draws what the default run draws.
LATER_FIELDS = (*TUNING_FIELDS, "z_encoder", "resnet_norm_eps")
Z_ENCODERS = ("conditioner", "first_stage")
# GroupNorm epsilon of the UNet's resnets: diffusers' port of SVD uses 1e-6 in the down blocks 0-2
# and the up blocks, sgm (the authors' model) 1e-5 everywhere (its GroupNorm32 default).
RESNET_NORM_EPS = ("diffusers", "sgm")
NUM_UNET_LAYERS = 13


def _doc(default: Any, doc: str, **kwargs: Any) -> Any:
    """A dataclass field with a default and a one-line description."""
    if isinstance(default, list | dict):
        raise TypeError("use tuples for sequence defaults so settings stay hashable")
    return field(default=default, metadata={"doc": doc}, **kwargs)


def from_dict(cls: type[T], values: dict[str, Any] | None, where: str) -> T:
    """Build a settings object from a mapping, refusing unknown keys.

    Args:
        cls: a settings dataclass.
        values: the mapping, e.g. a block of the YAML config; None means all defaults.
        where: where the mapping came from, named in errors (e.g. "config key `extraction`").
    Raises:
        ValueError: on an unknown key or a value out of range.
    """
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"Expected keys of {where} to be among {sorted(known)}, but got unknown key(s) "
            f"{unknown}. Check the spelling."
        )
    for f in dataclasses.fields(cls):
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return cls(**values)


def to_dict(settings: Any) -> dict[str, Any]:
    """The settings (a settings object or a mapping of them) as plain JSON-able data."""
    if dataclasses.is_dataclass(settings):
        return json.loads(json.dumps(dataclasses.asdict(settings)))
    return json.loads(json.dumps({k: to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in settings.items()}))


def settings_hash(settings: Any, length: int = 12) -> str:
    """A short, stable hash of the settings' sorted JSON: the cache's name.

    Args:
        settings: a settings dataclass, or a JSON-able mapping (e.g. the CLI's extract identity).
    """
    values = to_dict(settings) if dataclasses.is_dataclass(settings) else settings
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def draw_settings(settings: Any) -> dict[str, Any]:
    """The settings that seed a video's random draws: all of them but `LATER_FIELDS`."""
    return {k: v for k, v in to_dict(settings).items() if k not in LATER_FIELDS}


def without_default_tuning(values: dict[str, Any]) -> dict[str, Any]:
    """An `extraction` block without the `LATER_FIELDS` that hold their defaults (what the
    feature hash covers)."""
    defaults = {f.name: f.default for f in dataclasses.fields(ExtractSettings) if f.name in LATER_FIELDS}
    return {k: v for k, v in values.items() if k not in defaults or v != defaults[k]}


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Expected `{name}` to be one of {list(choices)}, but got {value!r}.")


def _check_min(name: str, value: Any, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"Expected `{name}` to be a number >= {minimum}, but got {value!r}.")


@dataclass(frozen=True)
class DecodeSettings:
    """How frames are taken from a video and prepared for the backbone."""

    stride: int = _doc(4, "keep every stride-th decoded frame")
    offset: int = _doc(0, "index of the first kept frame")
    target_fps: float | None = _doc(None, "resample to this frame rate before striding (None: native)")
    max_seconds: float | None = _doc(None, "stop decoding after this many seconds (None: whole video)")
    height: int = _doc(576, "frame height fed to the VAE, pixels")
    width: int = _doc(1024, "frame width fed to the VAE, pixels")
    resize: str = _doc("stretch", "stretch (paper) | keep_aspect_crop | keep_aspect_pad")
    window: int = _doc(25, "frames per backbone window (SVD-XT clip length)")
    max_pixels: int = _doc(8192 * 4320, "largest decoded frame (width x height) accepted; larger is an error")
    frame_folder_fps: float | None = _doc(
        None, "frame rate of image-folder videos (None: unknown, timestamps NaN)"
    )

    def __post_init__(self) -> None:
        _check_min("stride", self.stride, 1)
        _check_min("offset", self.offset, 0)
        _check_min("window", self.window, 1)
        _check_min("height", self.height, 8)
        _check_min("width", self.width, 8)
        if self.height % 8 or self.width % 8:
            raise ValueError(
                f"Expected `height` and `width` to be multiples of 8 (the VAE downsamples by 8), "
                f"but got {self.height}x{self.width}."
            )
        _check_choice("resize", self.resize, RESIZE_POLICIES)
        if self.target_fps is not None:
            _check_min("target_fps", self.target_fps, 1e-3)
        if self.max_seconds is not None:
            _check_min("max_seconds", self.max_seconds, 1e-3)
        _check_min("max_pixels", self.max_pixels, 1)
        if self.frame_folder_fps is not None:
            _check_min("frame_folder_fps", self.frame_folder_fps, 1e-3)


@dataclass(frozen=True)
class ExtractSettings:
    """What the frozen SVD backbone computes for each window (docs/design.md section 2)."""

    layers: tuple[int, ...] = _doc((9,), "UNet taps, 1..13 (the authors' latents[l-1])")
    timestep_indices: tuple[int, ...] = _doc((20,), "Karras timestep indices, 0 = noisiest")
    num_timesteps: int = _doc(30, "length N of the Karras schedule")
    sigma_min: float = _doc(0.002, "smallest sigma of the schedule")
    sigma_max: float = _doc(700.0, "largest sigma of the schedule")
    rho: float = _doc(7.0, "Karras rho")
    conditioning: str = _doc(
        "middle_frame",
        "middle_frame (paper text) | per_frame (authors' code) | none | action_text",
    )
    action_names: tuple[str, ...] = _doc((), "action names for `action_text` (one context token each)")
    sdv2: bool = _doc(False, "image_only_indicator = 1: frames processed independently")
    noise: str = _doc("none", "none (authors' code) | gaussian (seeded, averaged over draws)")
    noise_draws: int = _doc(1, "number K of seeded noise draws averaged when noise = gaussian")
    fps_id: int = _doc(6, "added_time_ids[0]")
    motion_bucket_id: int = _doc(127, "added_time_ids[1]")
    cond_aug: float = _doc(0.02, "std of the conditioning-frame noise (see cond_noise); added_time_ids[2]")
    cond_noise: str = _doc(
        "pixel",
        "pixel (authors: noise the conditioning pixels, second VAE pass, posterior mean) | latent (noise the latent mean)",
    )
    padding: str = _doc("black", "frames padding the last window: black (authors, -1) | grey (0 in [-1, 1])")
    dtype: str = _doc("float32", "backbone compute dtype: float32 | float16 | bfloat16 | float64 (parity checks; features stored float32)")
    half_precision: str = _doc(
        "autocast",
        "a half dtype for UNet and CLIP: autocast (authors: weights as loaded, ops in dtype) | cast (weights cast)",
    )
    vae_dtype: str = _doc("float32", "dtype the VAE encoder is loaded and run in whatever `dtype` (SVD's force_upcast; the authors: float32)")
    vae_chunk: int = _doc(8, "frames per VAE encoder call (bounds activation memory)")
    tf32: bool = _doc(False, "CUDA: TF32 matmuls and convolutions for the float32 parts (the VAE; all under dtype float32); no effect on CPU")
    channels_last: bool = _doc(False, "UNet and VAE encoder 2-D convolutions and the frames in channels-last memory format")
    compile: str = _doc("none", "torch.compile the UNet down path and the VAE encoder: none | default | max-autotune-no-cudagraphs")
    z_encoder: str = _doc(
        "conditioner",
        "VAE encoder of z: conditioner (the single file's conditioner copy with quant_conv; a snapshot's vae/) "
        "| first_stage (authors: the single file's first_stage_model.encoder, no quant_conv)",
    )
    resnet_norm_eps: str = _doc(
        "diffusers",
        "GroupNorm eps of the UNet resnets: diffusers (1e-6 in down blocks 0-2 and up blocks, 1e-5 elsewhere) | sgm (authors: 1e-5)",
    )
    latent: str = _doc("sample", "first-stage VAE posterior: sample (authors, seeded per video) | mean")
    seed: int = _doc(0, "base seed; each video's generator is seeded from it and the video id")

    def __post_init__(self) -> None:
        if not self.layers or any(
            isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= NUM_UNET_LAYERS
            for v in self.layers
        ):
            raise ValueError(
                f"Expected `layers` to be a non-empty list of integers in 1..{NUM_UNET_LAYERS}, "
                f"but got {list(self.layers)}."
            )
        _check_min("num_timesteps", self.num_timesteps, 2)
        if not self.timestep_indices or any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < self.num_timesteps
            for v in self.timestep_indices
        ):
            raise ValueError(
                f"Expected `timestep_indices` to be a non-empty list of integers in "
                f"0..{self.num_timesteps - 1}, but got {list(self.timestep_indices)}."
            )
        if len(set(self.layers)) != len(self.layers) or len(set(self.timestep_indices)) != len(
            self.timestep_indices
        ):
            raise ValueError("Expected `layers` and `timestep_indices` to have no repeats.")
        _check_choice("conditioning", self.conditioning, CONDITIONING_MODES)
        if self.conditioning == "action_text" and not self.action_names:
            raise ValueError(
                "Expected `action_names` to be non-empty when `conditioning` is `action_text`."
            )
        _check_choice("noise", self.noise, NOISE_MODES)
        _check_min("noise_draws", self.noise_draws, 1)
        if self.noise == "none" and self.noise_draws != 1:
            raise ValueError(
                f"Expected `noise_draws` to be 1 when `noise` is `none`, but got "
                f"{self.noise_draws}. Set `noise: gaussian` to average several noise draws."
            )
        _check_choice("dtype", self.dtype, SVD_DTYPES)
        _check_choice("vae_dtype", self.vae_dtype, SVD_DTYPES)
        _check_choice("latent", self.latent, LATENT_MODES)
        _check_choice("cond_noise", self.cond_noise, COND_NOISE_MODES)
        _check_choice("z_encoder", self.z_encoder, Z_ENCODERS)
        _check_choice("resnet_norm_eps", self.resnet_norm_eps, RESNET_NORM_EPS)
        _check_choice("padding", self.padding, PADDING_MODES)
        _check_choice("half_precision", self.half_precision, HALF_PRECISION_MODES)
        _check_min("vae_chunk", self.vae_chunk, 1)
        for name in ("tf32", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Expected `{name}` to be a bool, but got {getattr(self, name)!r}.")
        _check_choice("compile", self.compile, COMPILE_MODES)
        _check_min("cond_aug", self.cond_aug, 0)
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"Expected 0 < `sigma_min` < `sigma_max`, but got {self.sigma_min}, {self.sigma_max}."
            )
        if isinstance(self.rho, bool) or not isinstance(self.rho, int | float) or self.rho <= 0:
            raise ValueError(f"Expected `rho` to be a number > 0, but got {self.rho!r}.")

    @property
    def deepest_layer(self) -> int:
        """The last UNet tap needed: the loop stops after it."""
        return max(self.layers)

    @property
    def taps(self) -> list[tuple[int, int]]:
        """Every (layer, timestep_index) pair, in a fixed order."""
        return [(lay, t) for lay in sorted(self.layers) for t in sorted(self.timestep_indices)]


@dataclass(frozen=True)
class WeightsSettings:
    """Where the frozen backbone's weights live (local paths; hub ids when online)."""

    svd: str = _doc(
        "resources/weights/tiny-svd",
        "SVD-XT: diffusers snapshot folder (unet/, vae/; fp32 or fp16 files), cached hub id, or the single svd_xt.safetensors",
    )
    clip_arch: str = _doc(
        "resources/weights/tiny-clip/open_clip_config.json",
        "OpenCLIP model name (ViT-H-14) or a JSON model config file (for OpenCLIP-format weights)",
    )
    clip_checkpoint: str = _doc(
        "resources/weights/tiny-clip/open_clip_model.safetensors",
        "full OpenCLIP checkpoint (.safetensors / torch file; needed for action_text), or empty: the SVD "
        "download's image_encoder/ (or the single file's conditioner)",
    )
    videomae: str = _doc(
        "resources/weights/tiny-videomae",
        "VideoMAE checkpoint dir (transformers layout: config.json + safetensors) or hub id",
    )
    vjepa2: str = _doc(
        "resources/weights/tiny-vjepa2",
        "V-JEPA 2 checkpoint dir (transformers layout: config.json + safetensors) or hub id",
    )
    checksum_cache: str = _doc(
        "",
        "JSON file remembering weight checksums by path, size and mtime (empty: ~/.cache/actiondiff/weights-sha256.json)",
    )


HEAD_KINDS = ("transformer", "mlp", "linear", "aggregate")
MIXING_KINDS = ("joint", "factorised")
LONG_POLICIES = ("uniform", "truncate")


@dataclass(frozen=True)
class HeadSettings:
    """Architecture of the classifier on cached features (docs/design.md section 5)."""

    kind: str = _doc(
        "transformer",
        "transformer (paper) | mlp | linear (ablations, concatenated frames) | aggregate (every tap of the "
        "feature set, projected and mixed by learned weights, then the transformer)",
    )
    num_layers: int = _doc(6, "transformer encoder layers")
    num_heads: int = _doc(8, "attention heads; must divide the feature width")
    ff_mult: int = _doc(3, "feed-forward width as a multiple of the feature width")
    dropout: float = _doc(0.1, "dropout inside the encoder and before the classifier")
    max_length: int = _doc(64, "frames per sequence; longer ones follow long_policy, shorter are padded")
    long_policy: str = _doc("uniform", "uniform (subsample evenly) | truncate (keep the first frames)")
    mlp_hidden: int = _doc(512, "hidden width of the mlp head")
    standardize: bool = _doc(True, "scale each feature channel by the training frames' mean and std (kept with the weights)")
    aggregate_width: int = _doc(64, "aggregate head: common width each tap is projected to (the transformer's width)")
    mixing: str = _doc("joint", "aggregate head: joint (one weight per tap) | factorised (a layer weight times a timestep weight)")

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, HEAD_KINDS)
        _check_choice("long_policy", self.long_policy, LONG_POLICIES)
        _check_choice("mixing", self.mixing, MIXING_KINDS)
        for name in ("num_layers", "num_heads", "ff_mult", "max_length", "mlp_hidden", "aggregate_width"):
            _check_min(name, getattr(self, name), 1)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Expected `dropout` to be in [0, 1), but got {self.dropout}.")
        if not isinstance(self.standardize, bool):
            raise TypeError(f"Expected `standardize` to be a bool, but got {self.standardize!r}.")


LOSSES = ("focal", "ce", "bce")
OPTIMIZERS = ("adamw", "adam")


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation of the head (defaults: the Animal Kingdom unseen-species preset)."""

    epochs: int = _doc(15, "training epochs")
    batch_size: int = _doc(16, "sequences per step")
    lr: float = _doc(3e-5, "peak learning rate")
    weight_decay: float = _doc(1e-4, "weight decay (decoupled for adamw, L2 for adam)")
    warmup_epochs: float = _doc(4, "linear warm-up length in epochs, then cosine decay to 0")
    optimizer: str = _doc("adamw", "adamw | adam")
    loss: str = _doc("focal", "focal (sigmoid or softmax form) | ce (single-label) | bce (multi-label)")
    focal_alpha: float = _doc(0.25, "focal loss alpha (weight of the positive terms)")
    focal_gamma: float = _doc(2.0, "focal loss gamma (down-weights easy examples)")
    mixup_alpha: float = _doc(0.2, "mixup Beta(alpha, alpha); 0 turns mixup off")
    multilabel: bool = _doc(False, "sigmoid outputs (multi-label) instead of softmax (single-label)")
    seed: int = _doc(0, "seed of initialisation, shuffling, dropout and mixup")

    def __post_init__(self) -> None:
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("epochs", "batch_size"):
            _check_min(name, getattr(self, name), 1)
        for name in ("lr", "weight_decay", "warmup_epochs", "mixup_alpha", "focal_gamma", "focal_alpha", "seed"):
            _check_min(name, getattr(self, name), 0)
        if self.lr == 0:
            raise ValueError("Expected `lr` to be > 0, but got 0 (nothing would train).")
        if not isinstance(self.multilabel, bool):
            raise TypeError(f"Expected `multilabel` to be a bool, but got {self.multilabel!r}.")
        if self.loss == "ce" and self.multilabel:
            raise ValueError("Expected `loss` to be bce or focal when `multilabel` is true, but got 'ce' (softmax).")
        if self.loss == "bce" and not self.multilabel:
            raise ValueError("Expected `loss` to be ce or focal when `multilabel` is false, but got 'bce' (sigmoid).")


# Per-protocol hyperparameters of the paper (docs/design.md section 5), as named presets; everything
# not named here (15 epochs, 4 warm-up epochs, batch 16, AdamW, focal loss) is the default.
PRESETS: dict[str, dict[str, Any]] = {
    "animal_kingdom_full": dict(lr=3e-5, weight_decay=1e-4, mixup_alpha=0.2, focal_alpha=0.25, focal_gamma=2.0, multilabel=True),
    "animal_kingdom_unseen": dict(lr=3e-5, weight_decay=1e-4, mixup_alpha=0.2, focal_alpha=0.25, focal_gamma=2.0),
    "charades_ego": dict(lr=1e-4, weight_decay=1e-3, mixup_alpha=0.3, focal_alpha=1.0, focal_gamma=2.0, multilabel=True),
    "ucf_hmdb": dict(lr=1e-4, weight_decay=1e-4, mixup_alpha=0.0, focal_alpha=1.0, focal_gamma=2.0),
    # The demo's tiny features train from scratch in seconds: a larger rate, more epochs.
    "demo": dict(lr=1e-3, weight_decay=1e-4, mixup_alpha=0.2, focal_alpha=1.0, focal_gamma=2.0, epochs=30, warmup_epochs=3),
}
# Earlier name of the Animal Kingdom preset, kept so existing configs still run.
PRESETS["animal_kingdom"] = PRESETS["animal_kingdom_unseen"]


def train_settings(preset: str, overrides: dict[str, Any] | None = None) -> TrainSettings:
    """A named preset with optional overrides (unknown keys are errors)."""
    if preset not in PRESETS:
        raise ValueError(f"Expected `train.preset` to be one of {sorted(PRESETS)}, but got {preset!r}.")
    return from_dict(TrainSettings, {**PRESETS[preset], **(overrides or {})}, f"config key `train` (preset {preset!r})")


TAP_PATTERN = re.compile(r"^L(\d\d)_T(\d\d)$")
# The run "tap" of the aggregate head: every tap of the store, side by side in the store's column order.
ALL_TAPS = "ALL"
# The tap of backbones without layers x timesteps: the last hidden state, no diffusion timestep.
LAST_HIDDEN_TAP = "L00_T00"


def resolve_train(block: dict[str, Any] | None, preset: str, multilabel: bool, where: str = "config key `train`") -> tuple[TrainSettings, list[int]]:
    """The training settings and seeds of a config's `train` block, as planning and training
    both resolve them (one function, so the two never disagree).

    Args:
        block: the `train` block: `preset`, `seeds`, and overrides of the preset's fields,
            beside `preset` or under `overrides` (not both for one key).
        preset, multilabel: the protocol's defaults, used where the block does not say.
    Raises:
        ValueError: a key given twice, bad seeds, or an invalid setting (named with `where`).
    """
    values = dict(block or {})
    preset = values.pop("preset", preset)
    seeds = values.pop("seeds", [0])
    overrides = dict(values.pop("overrides", None) or {})
    both = sorted(set(overrides) & set(values))
    if both:
        raise ValueError(f"Expected each training setting once, but {both} are both in `train` and `train.overrides` ({where}).")
    if not isinstance(seeds, list | tuple) or not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"Expected `train.seeds` to be a non-empty list of integers >= 0, but got {seeds!r} ({where}).")
    values = {"multilabel": multilabel, **values, **overrides}
    return train_settings(preset, values), list(seeds)


def tap_name(layer: int, timestep_index: int) -> str:
    """The array name of one (layer, timestep) feature, e.g. `L09_T20`."""
    return f"L{layer:02d}_T{timestep_index:02d}"


def is_tap_name(text: str) -> bool:
    """True when `text` is a tap name such as `L09_T20` (the workflow's wildcards rely on it)."""
    return bool(TAP_PATTERN.match(text))


def parse_tap(tap: str) -> tuple[int, int]:
    """(layer, timestep_index) of a tap name such as `L09_T20`; the inverse of `tap_name`."""
    match = TAP_PATTERN.match(tap)
    if not match:
        raise ValueError(f"Expected a tap name like L09_T20, but got {tap!r}.")
    return int(match.group(1)), int(match.group(2))
