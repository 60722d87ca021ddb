"""Loading the frozen backbones' weights (SVD-XT + OpenCLIP, transformers video encoders),
strictly and offline, from every layout researchers download.

Which files are read is decided by `actiondiff.features.weight_files` (no torch), so the
feature identity hashes exactly what is loaded. Models are built on the meta device and the
tensors assigned in their final dtype, one tensor at a time: no random initialisation, peak
memory about the size of the loaded model. A missing or unexpected tensor, or one of another
shape, is a `WeightsError` naming the file, the tensors and the shapes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from actiondiff.features import key_maps
from actiondiff.features.weight_files import (
    SVD_XT_CLIP_ARCH,
    WeightsError,
    clip_files,
    svd_files,
    transformers_files,
)
from actiondiff.features.weight_files import (
    resolve_clip_checkpoint as resolve_clip_checkpoint,
)
from actiondiff.features.weight_files import (
    resolve_snapshot as resolve_snapshot,
)

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
HF_HUB_PREFIX = "hf-hub:"
# Tensors of published checkpoints that the encoders we build do not have, by the class we
# build: heads of pre-training (VideoMAE's decoder) and of fine-tunes (classifiers, poolers).
# They are dropped with a log line; anything else missing or unexpected is an error.
KNOWN_HEAD_PREFIXES: dict[str, tuple[str, ...]] = {
    "VideoMAEModel": ("decoder.", "encoder_to_decoder.", "mask_token", "fc_norm.", "classifier."),
    "VJEPA2Model": ("pooler.", "classifier."),
}

__all__ = [
    "WeightsError",
    "load_svd",
    "load_clip",
    "load_transformers_model",
    "read_state_dict",
    "resolve_snapshot",
    "resolve_clip_checkpoint",
]


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    """Frozen models run frozen: eval mode, no gradients."""
    return model.eval().requires_grad_(False)


def _summarise_keys(bad: dict[str, list[Any]], limit: int = 5) -> str:
    parts = []
    for kind, keys in bad.items():
        shown = [str(k) for k in list(keys)[:limit]]
        more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
        parts.append(f"{len(keys)} {kind.replace('_', ' ')}: {shown}{more}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- reading tensors


class TensorFile:
    """The tensors of one checkpoint file (safetensors, or a torch file read `weights_only`),
    read one at a time; names and shapes are known without reading values."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"Expected the weight file {str(self.path)!r} to exist, but it does not.")
        try:
            if self.path.name.endswith(".safetensors"):
                from safetensors import safe_open

                self._file = safe_open(str(self.path), framework="pt")
                self.shapes = {k: tuple(self._file.get_slice(k).get_shape()) for k in self._file.keys()}
                self._state = None
            else:
                state = torch.load(str(self.path), map_location="cpu", weights_only=True, mmap=True)
                # Training checkpoints nest the weights and prefix them with `module.`.
                state = state.get("state_dict", state) if isinstance(state, dict) else state
                if not isinstance(state, dict):
                    raise ValueError(f"a {type(state).__name__}, not a mapping of tensors")
                self._state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
                self.shapes = {k: tuple(v.shape) for k, v in self._state.items()}
        except WeightsError:
            raise
        except Exception as error:  # any parse failure of an untrusted file is a weights error
            raise WeightsError(f"Could not read checkpoint {str(self.path)!r}: {error}") from error

    def get(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One tensor, in `dtype` (None: as stored)."""
        try:
            value = self._file.get_tensor(name) if self._state is None else self._state[name]
        except Exception as error:  # a truncated file fails here, not when listing names
            raise WeightsError(f"Could not read tensor {name!r} of {str(self.path)!r}: {error}") from error
        return value.to(dtype) if dtype is not None and value.is_floating_point() else value


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file (safetensors, or a torch file loaded `weights_only`)."""
    tensors = TensorFile(path)
    return {name: tensors.get(name) for name in tensors.shapes}


def build_on_meta(factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A model built on the meta device: shapes without memory or random initialisation."""
    with torch.device("meta"):
        return factory()


def expected_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_tensors(
    expected: dict[str, tuple[int, ...]],
    found: dict[str, tuple[int, ...]],
    where: str,
    what: str,
    hint: str = "",
    in_file: dict[str, tuple[str, tuple[int, ...]]] | None = None,
) -> None:
    """Refuse missing / unexpected tensors and shape mismatches, naming them.

    Args:
        expected: {name: shape} the model has; found: {name: shape} the file gives it.
        hint: a sentence (with its leading space) appended to the message.
        in_file: {model name: (name in the file, shape in the file)} of renamed or converted
            tensors, so that a shape mismatch names the tensor as the file has it.
    Raises:
        WeightsError: "Expected the weights in <where> to match <what> exactly, but got ...".
    """
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        _shape_error(k, found[k], expected[k], (in_file or {}).get(k))
        for k in set(expected) & set(found)
        if tuple(found[k]) != tuple(expected[k])
    )
    bad = {k: v for k, v in (("missing_keys", missing), ("unexpected_keys", unexpected), ("mismatched_shapes", mismatched)) if v}
    if bad:
        raise WeightsError(f"Expected the weights in {where} to match {what} exactly, but got {_summarise_keys(bad)}.{hint}")


def _shape_error(key: str, found: tuple[int, ...], expected: tuple[int, ...], in_file: tuple[str, tuple[int, ...]] | None) -> str:
    """One shape mismatch, named as the file names the tensor (and as the model does, if renamed)."""
    name, shape = in_file or (key, found)
    converted = f" ({list(found)} once converted)" if tuple(shape) != tuple(found) else ""
    loaded_as = f" (loaded as {key})" if name != key else ""
    return f"{name}: {list(shape)} in the file{converted}, {list(expected)} expected{loaded_as}"


def _one_to_one(convert: Callable[[dict[str, torch.Tensor]], Any], shapes: dict[str, tuple[int, ...]],
                rename: Callable[[str], str] = str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{converted name: (file name, file shape)} of the file tensors that `convert` maps alone
    (one at a time, on meta; tensors fused from several, which it refuses alone, are left out).

    Args:
        convert: file tensors -> converted tensors (or a tuple whose first item they are).
        rename: applied to each converted name (e.g. a prefix removed).
    """
    out = {}
    for name, shape in shapes.items():
        try:
            converted = convert({name: torch.empty(shape, device="meta")})
        except KeyError:
            continue
        for key in converted[0] if isinstance(converted, tuple) else converted:
            out[rename(key)] = (name, shape)
    return out


def assign(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Assign `state` (already checked) to a meta-built model; no tensor stays on meta."""
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise WeightsError(f"Expected every tensor of {type(model).__name__} to be loaded, but {left[:5]} were not.")
    return model


def log_loading(name: str, path: str | Path, model: torch.nn.Module, dtype: torch.dtype) -> None:
    """One line per model before its tensors are read (a large one takes a while), e.g.
    "loading SVD UNet from .../diffusion_pytorch_model.fp16.safetensors (<GB> as float16)"."""
    values = sum(math.prod(shape) for shape in expected_shapes(model).values())
    log.info("loading %s from %s (%.2f GB as %s)", name, path, values * dtype.itemsize / 1e9, str(dtype).removeprefix("torch."))


def load_mapped(
    model: torch.nn.Module,
    tensors: TensorFile,
    names: dict[str, str],
    dtype: torch.dtype,
    what: str,
    transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    whole_file: bool = True,
    values: bool = True,
    hint: str = "",
) -> torch.nn.Module:
    """Fill a meta-built `model` from `tensors`, reading file tensor `names[k]` for model tensor k.

    Shapes are checked first (after `transform`'s reshape, when given), then each tensor is
    read, converted to `dtype` and assigned. Errors name tensors as the file does.

    Args:
        what: the model, as errors name it ("Expected the weights in <file> to match <what> exactly").
        whole_file: every tensor of the file must be used (others are unexpected); False for
            a file shared by several models (the single file, whose rest `_log_unused` checks).
        values: False: check names and shapes only (`actiondiff weights check`), the model stays on meta.
        hint: a sentence (with its leading space) ending an error: the likely cause.
    """
    expected = expected_shapes(model)
    inverse = {v: k for k, v in names.items()}
    found = {inverse[n]: s for n, s in tensors.shapes.items() if n in inverse}
    if transform is not None:
        found = {k: tuple(transform(k, torch.empty(s, device="meta")).shape) for k, s in found.items()}
    if whole_file:
        found.update({n: s for n, s in tensors.shapes.items() if n not in inverse})
    # the names the file lacks, when they are not the model's own (sgm names of the single file)
    missing_in_file = {k: names[k] for k in expected if names[k] not in tensors.shapes and names[k] != k}
    in_file = {k: (names[k], tensors.shapes[names[k]]) for k in expected if names[k] in tensors.shapes}
    check_tensors(expected, found, str(tensors.path), what,
                  (f" (file names of the missing: {list(missing_in_file.values())[:5]})" if missing_in_file else "") + hint,
                  in_file)
    if not values:
        return model
    state = {}
    for key in expected:
        value = tensors.get(names[key], dtype)
        state[key] = transform(key, value) if transform is not None else value
    return assign(model, state)


# ---------------------------------------------------------------------------- SVD: UNet + VAE


def _config(value: Path | dict) -> dict[str, Any]:
    return json.loads(value.read_text()) if isinstance(value, Path) else dict(value)


def assumed_configs(files: dict[str, Path | dict]) -> str:
    """For the single file (`svd_files` roles) loaded without configs beside it: a sentence
    saying that SVD-XT's full-size configs were assumed and where configs are read; else ""."""
    parts = [p for p in ("unet", "vae") if isinstance(files.get(f"{p}/config.json"), dict)]
    if "svd_xt" not in files or not parts:
        return ""
    beside = files["svd_xt"].parent
    return (f"SVD-XT's full-size {' and '.join(parts)} configs were assumed for {files['svd_xt'].name}, since "
            f"{beside} has no {' or '.join(f'{p}/config.json' for p in parts)}; for weights of another size, place "
            f"their unet/config.json and vae/config.json there (configs beside the file are read).")


def load_svd(
    source: str | Path,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
    vae_dtype: torch.dtype | None = None,
    values: bool = True,
) -> tuple[Any, Any]:
    """Load the SVD UNet and VAE from any published layout (see `weight_files.svd_files`).

    Args:
        source: a diffusers snapshot folder (`unet/`, `vae/`: fp32 or fp16-variant files), a
            hub id in the local HF cache, or the single file `svd_xt.safetensors`.
        dtype: the UNet's dtype (the run's precision; the files' dtype does not matter).
        vae_dtype: the VAE's dtype (None: `dtype`). SVD's VAE asks for fp32 (`force_upcast`).
        cache_dir: Hugging Face cache for hub ids (None: the default).
        values: False: check every tensor's name and shape only; the models stay on meta.
    Returns:
        (unet, vae), frozen, on the CPU. Only the VAE encoder is ever run.
    Raises:
        WeightsError: a missing file, missing / unexpected tensors or shape mismatches,
            naming the weight file.
    """
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    files = svd_files(source, cache_dir)
    vae_dtype = vae_dtype or dtype
    unet = build_on_meta(lambda: UNetSpatioTemporalConditionModel.from_config(_config(files["unet/config.json"])))
    vae = build_on_meta(lambda: AutoencoderKLTemporalDecoder.from_config(_config(files["vae/config.json"])))
    if values:
        for model, part, name, part_dtype in ((unet, "unet", "UNet", dtype), (vae, "vae", "VAE", vae_dtype)):
            log_loading(f"SVD {name}", files.get("svd_xt") or files[f"{part}/weights"], model, part_dtype)
    if "svd_xt" in files:
        tensors = TensorFile(files["svd_xt"])
        assumed = assumed_configs(files)
        if assumed:
            log.info("%s", assumed)
        hint = f" {assumed}" if assumed else ""
        unet_names = key_maps.unet_sgm_names(unet.state_dict(), unet.config.layers_per_block)
        load_mapped(unet, tensors, unet_names, dtype, "UNetSpatioTemporalConditionModel (sgm names)", whole_file=False, values=values,
                    hint=hint)

        def squeeze(key: str, value: torch.Tensor) -> torch.Tensor:
            # sgm's VAE attention projections are 1x1 convolutions: [c, c, 1, 1] -> [c, c]
            return value.flatten(1) if key_maps.is_vae_1x1_projection(key) and value.dim() == 4 else value

        vae_names = key_maps.vae_sgm_names(vae.state_dict())
        load_mapped(vae, tensors, vae_names, vae_dtype, "AutoencoderKLTemporalDecoder (sgm names)", squeeze, whole_file=False,
                    values=values, hint=hint)
        _log_unused(tensors, {*unet_names.values(), *vae_names.values()})
    else:
        for model, part, part_dtype in ((unet, "unet", dtype), (vae, "vae", vae_dtype)):
            tensors = TensorFile(files[f"{part}/weights"])
            names = {k: k for k in model.state_dict()}
            load_mapped(model, tensors, names, part_dtype, type(model).__name__, values=values,
                        hint=" Is this an SVD-XT snapshot (diffusers layout)?")
    log.info("loaded SVD UNet (%s) and VAE (%s) from %s", dtype, vae_dtype, source)
    return _frozen(unet), _frozen(vae)


def _log_unused(tensors: TensorFile, used: set[str]) -> None:
    """List the single file's tensors no model reads, by group; a tensor of no known group is an error."""
    groups: dict[str, int] = {}
    unknown = []
    for name in tensors.shapes:
        if name in used or name.startswith(key_maps.SGM_CLIP_PREFIX + "visual."):
            continue
        prefix = next((p for p in key_maps.SGM_UNUSED if name.startswith(p)), None)
        if prefix is None:
            unknown.append(name)
        else:
            groups[prefix] = groups.get(prefix, 0) + 1
    if unknown:
        raise WeightsError(
            f"Expected the single file {tensors.path} to hold only SVD-XT's tensors (sgm names), but got "
            f"{len(unknown)} others: {sorted(unknown)[:5]}."
        )
    for prefix, count in sorted(groups.items()):
        log.info("not loaded from %s: %d tensors %s* (%s)", tensors.path.name, count, prefix, key_maps.SGM_UNUSED[prefix])


def _squeeze_1x1(key: str, value: torch.Tensor) -> torch.Tensor:
    """sgm's VAE attention projections are 1x1 convolutions: [c, c, 1, 1] -> [c, c]."""
    return value.flatten(1) if key_maps.is_vae_1x1_projection(key) and value.dim() == 4 else value


def load_first_stage_encoder(source: str | Path, dtype: torch.dtype = torch.float32, values: bool = True) -> torch.nn.Module:
    """The single file's first-stage VAE encoder, the authors' encoder of z (`z_encoder: first_stage`).

    Returns:
        diffusers' VAE `Encoder`, frozen, on the CPU: [n, 3, H, W] -> [n, 8, H/8, W/8] posterior
        moments, with no `quant_conv` after it (sgm's `AutoencodingEngine` has none).
    Raises:
        WeightsError: `source` is not a single sgm file, or its first-stage copy is incomplete.
    """
    from diffusers import AutoencoderKLTemporalDecoder

    files = svd_files(source)
    if "svd_xt" not in files:
        raise WeightsError(
            f"Expected `weights.svd` to be the single sgm file (svd_xt.safetensors) for `extraction.z_encoder: "
            f"first_stage`, but got the diffusers snapshot {source}, which keeps one encoder copy (vae/)."
        )
    vae = build_on_meta(lambda: AutoencoderKLTemporalDecoder.from_config(_config(files["vae/config.json"])))
    names = key_maps.first_stage_encoder_sgm_names(vae.state_dict())
    load_mapped(vae.encoder, TensorFile(files["svd_xt"]), names, dtype, "the first-stage VAE encoder (sgm names)",
                _squeeze_1x1, whole_file=False, values=values)
    return _frozen(vae.encoder)


def encoder_copies_report(source: str | Path) -> list[str]:
    """Whether the z the authors compute is ours: their encoder copies and `quant_conv`, compared.

    The authors' z comes from the single file's `first_stage_model.encoder` without `quant_conv`;
    their concat latent, and both of ours by default, from the conditioner's encoder with it.
    The two agree when the copies hold identical tensors and `quant_conv` is the identity (a
    diffusers snapshot holds one copy: only its `quant_conv` is reported). Reads the tensors.
    Returns:
        report lines, indented under `weights check`'s.
    """
    files = svd_files(source)
    if "svd_xt" in files:
        tensors = TensorFile(files["svd_xt"])
        conditioner = key_maps.SGM_ENCODER_PREFIX + "encoder."
        theirs = sorted(n for n in tensors.shapes if n.startswith(key_maps.SGM_FIRST_STAGE_ENCODER_PREFIX))
        ours = sorted(n for n in tensors.shapes if n.startswith(conditioner))
        pairs = [(n, n.replace(key_maps.SGM_FIRST_STAGE_ENCODER_PREFIX, conditioner, 1)) for n in theirs]
        if not theirs:
            copies = "no first_stage_model.encoder in the file: z can only come from the conditioner's copy"
        elif len(theirs) != len(ours) or any(b not in tensors.shapes or tensors.shapes[a] != tensors.shapes[b] for a, b in pairs):
            copies = "first_stage_model.encoder and the conditioner's encoder differ in names or shapes"
        else:
            differ = [a for a, b in pairs if not torch.equal(tensors.get(a), tensors.get(b))]
            copies = (f"first_stage_model.encoder and {conditioner} hold identical tensors ({len(pairs)})" if not differ
                      else f"first_stage_model.encoder differs from {conditioner} in {len(differ)} of {len(pairs)} tensors (e.g. {differ[0]})")
        weight, bias = (tensors.get(key_maps.SGM_ENCODER_PREFIX + f"quant_conv.{p}") for p in ("weight", "bias"))
    else:
        tensors = TensorFile(files["vae/weights"])
        copies = "one encoder copy (vae/): the authors' two copies cannot be compared here"
        weight, bias = tensors.get("quant_conv.weight"), tensors.get("quant_conv.bias")
    identity = torch.equal(weight.float().flatten(1), torch.eye(weight.shape[0], weight.shape[1])) and not bias.float().any()
    same = identity and "identical" in copies
    return [
        f"  z encoder: {copies}",
        f"  quant_conv: {'the identity' if identity else 'not the identity'}",
        "  z: the authors' (first-stage copy, no quant_conv) equals ours" if same else
        "  z: the authors' may differ from ours: extraction.z_encoder: first_stage follows theirs (single file only)",
    ]


# ---------------------------------------------------------------------------- OpenCLIP


class VisualCLIP(torch.nn.Module):
    """OpenCLIP's image side alone, what conditioning on frames needs: `visual` and `encode_image`.

    Built from the SVD download's image encoder (no text tower exists there), so
    `action_text` conditioning needs a full OpenCLIP checkpoint.
    """

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """[n, 3, s, s] normalised pixels -> [n, embed_dim] (as `open_clip.CLIP.encode_image`)."""
        features = self.visual(image)
        return torch.nn.functional.normalize(features, dim=-1) if normalize else features


def clip_config(arch: str | Path, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """An OpenCLIP model config: a registered name (`ViT-H-14`), a JSON file, or `hf-hub:<repo>`."""
    import open_clip

    from actiondiff.features.weight_files import clip_arch_file

    value = clip_arch_file(str(arch), cache_dir)
    if isinstance(value, Path):
        config = json.loads(value.read_text())
        return config.get("model_cfg", config)  # hub files nest the model config
    config = open_clip.get_model_config(value["open_clip"])
    if config is None:
        raise WeightsError(
            f"Expected `weights.clip_arch` to be an OpenCLIP model name such as 'ViT-H-14', a "
            f"JSON config file or 'hf-hub:<repo>', but got {str(arch)!r}."
        )
    return config


def build_clip(config: dict[str, Any]) -> torch.nn.Module:
    """An OpenCLIP `CLIP` model from a config dict, randomly initialised (tiny weights, tests)."""
    import open_clip

    return open_clip.CLIP(**config)


def _meta_clip(config: dict[str, Any]) -> torch.nn.Module:
    import open_clip

    return build_on_meta(lambda: open_clip.CLIP(**config))


def _causal_mask(size: int) -> torch.Tensor:
    """OpenCLIP's text attention mask (a buffer not saved in checkpoints): -inf above the diagonal."""
    return torch.full((size, size), float("-inf")).triu_(1)


def _visual_tower(config: dict[str, Any]) -> torch.nn.Module:
    """OpenCLIP's visual tower alone, built on meta from a CLIP config."""
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    vision = config["vision_cfg"]
    cfg = vision if isinstance(vision, CLIPVisionCfg) else CLIPVisionCfg(**vision)
    return build_on_meta(lambda: _build_vision_tower(config["embed_dim"], cfg, quick_gelu=config.get("quick_gelu", False)))


def vision_config_from_hf(path: Path) -> dict[str, Any]:
    """The OpenCLIP config (visual tower) equal to a transformers `CLIPVisionConfig` JSON.

    Raises:
        WeightsError: a config OpenCLIP's tower cannot express (activation, LayerNorm eps).
    """
    hf = json.loads(path.read_text())
    hf = hf.get("vision_config", hf)
    act, eps = hf.get("hidden_act", "quick_gelu"), hf.get("layer_norm_eps", 1e-5)
    if act not in ("gelu", "quick_gelu") or abs(eps - 1e-5) > 1e-12:
        raise WeightsError(
            f"Expected the image encoder config {path} to have hidden_act gelu or quick_gelu and "
            f"layer_norm_eps 1e-05 (OpenCLIP's), but got {act!r} and {eps!r}."
        )
    width, heads = hf["hidden_size"], hf["num_attention_heads"]
    return {
        "embed_dim": hf["projection_dim"],
        "quick_gelu": act == "quick_gelu",
        "vision_cfg": {"image_size": hf["image_size"], "layers": hf["num_hidden_layers"], "width": width,
                       "head_width": width // heads, "mlp_ratio": hf["intermediate_size"] / width,
                       "patch_size": hf["patch_size"]},
    }


def load_clip(
    arch: str | Path,
    checkpoint: str | Path,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | Path | None = None,
    svd: str | Path | None = None,
    values: bool = True,
) -> torch.nn.Module:
    """OpenCLIP for SVD's conditioning, loaded strictly (`values` False: names and shapes only).

    Args:
        arch: OpenCLIP model name, JSON config file or `hf-hub:<repo>` (for OpenCLIP-format
            weights: a full checkpoint or the single file's conditioner).
        checkpoint: a full OpenCLIP checkpoint (.safetensors / torch file / `hf-hub:<repo>`),
            or empty: the visual tower from the SVD download `svd` (its `image_encoder/`, or
            the single file's conditioner).
    Returns:
        an `open_clip.CLIP` (full checkpoint), else a `VisualCLIP`; frozen, in `dtype`.
    Raises:
        WeightsError: unreadable file, missing/unexpected tensors or shape mismatches, naming the file.
    """
    files = clip_files(str(svd or ""), str(arch), str(checkpoint or ""), cache_dir)
    if "checkpoint" in files:
        config = clip_config(arch, cache_dir)
        model = _meta_clip(config)
        tensors = TensorFile(files["checkpoint"])
        if values:
            log_loading(f"OpenCLIP {arch}", tensors.path, model, dtype)
        expected = [k for k in model.state_dict() if k != "attn_mask"]
        load_mapped_partial(model, tensors, {k: k for k in expected}, dtype, f"OpenCLIP architecture {str(arch)!r}", values)
        if not values:
            return model
        model.attn_mask = _causal_mask(model.context_length)
        return _frozen(model)
    if "svd_xt" in files:
        visual = _visual_tower(clip_config(arch or SVD_XT_CLIP_ARCH, cache_dir))
        tensors = TensorFile(files["svd_xt"])
        if values:
            log_loading("OpenCLIP image encoder", tensors.path, visual, dtype)
        names = {k: f"{key_maps.SGM_CLIP_PREFIX}visual.{k}" for k in visual.state_dict()}
        load_mapped(visual, tensors, names, dtype, f"OpenCLIP {arch or SVD_XT_CLIP_ARCH} visual tower (the single file's conditioner)",
                    whole_file=False, values=values)
        return _frozen(VisualCLIP(visual))
    config = vision_config_from_hf(files["image_encoder/config.json"])
    visual = _visual_tower(config)
    tensors = TensorFile(files["image_encoder/weights"])
    if values:
        log_loading("OpenCLIP image encoder", tensors.path, visual, dtype)
    try:
        hf_shapes = {k: torch.empty(s, device="meta") for k, s in tensors.shapes.items()}
        mapped = key_maps.hf_vision_to_openclip(hf_shapes)
    except KeyError as error:
        raise WeightsError(
            f"Expected the image encoder {tensors.path} to be a transformers CLIPVisionModelWithProjection, "
            f"but it holds {error} (key_maps.hf_vision_to_openclip)."
        ) from error
    check_tensors(expected_shapes(visual), {k.removeprefix("visual."): tuple(v.shape) for k, v in mapped.items()},
                  str(tensors.path), "OpenCLIP's visual tower (CLIPVisionModelWithProjection names)",
                  in_file=_one_to_one(key_maps.hf_vision_to_openclip, tensors.shapes, lambda k: k.removeprefix("visual.")))
    if not values:
        return VisualCLIP(visual)
    state = key_maps.hf_vision_to_openclip({k: tensors.get(k, dtype) for k in tensors.shapes})
    assign(visual, {k.removeprefix("visual."): v for k, v in state.items()})
    return _frozen(VisualCLIP(visual))


def load_mapped_partial(
    model: torch.nn.Module, tensors: TensorFile, names: dict[str, str], dtype: torch.dtype, what: str, values: bool = True
) -> torch.nn.Module:
    """`load_mapped` for a model with non-persistent buffers in its state dict (OpenCLIP's attn_mask):
    the tensors `names` lists are checked and assigned; the caller sets the rest."""
    state_shapes = expected_shapes(model)
    expected = {k: state_shapes[k] for k in names}
    found = {k: tensors.shapes[v] for k, v in names.items() if v in tensors.shapes}
    found.update({n: s for n, s in tensors.shapes.items() if n not in set(names.values())})
    check_tensors(expected, found, str(tensors.path), what)
    if not values:
        return model
    state = {k: tensors.get(v, dtype) for k, v in names.items()}
    model.load_state_dict(state, strict=False, assign=True)  # keys checked above; buffers set by the caller
    return model


# ---------------------------------------------------------------------------- transformers encoders


def load_transformers_model(
    cls: Any, source: str | Path, key: str, dtype: torch.dtype = torch.float32, cache_dir: str | Path | None = None
) -> tuple[torch.nn.Module, Path]:
    """Load a transformers model (e.g. `VideoMAEModel`) from a checkpoint folder, strictly and offline.

    Published pre-training and fine-tuned checkpoints hold heads the encoder does not have
    (`KNOWN_HEAD_PREFIXES`): those are dropped, with a log line. VideoMAE v2's hub layout
    (`model_type: VideoMAEv2_*`) is converted (`videomae_v2`).

    Args:
        cls: the transformers model class.
        source: a folder with `config.json` and weights (safetensors or `.bin`), or a hub id
            resolved from the local Hugging Face cache (nothing is downloaded).
        key: the `weights` config key, named in errors.
    Returns:
        (model frozen on the CPU, the checkpoint folder).
    Raises:
        WeightsError: missing folder, a config of another model type, missing / unexpected
            keys or shape mismatches; the message names the weight files.
    """
    from safetensors import SafetensorError
    from transformers.utils import logging as hf_logging

    files = transformers_files(source, key, cache_dir)
    root = files["config.json"].parent
    where = ", ".join(str(f) for name, f in files.items() if name not in ("config.json", "preprocessor_config.json"))
    config_values = json.loads(files["config.json"].read_text())
    log.info("loading %s from %s (%.2f GB of files)", cls.__name__, where,
             sum(f.stat().st_size for n, f in files.items() if n not in ("config.json", "preprocessor_config.json")) / 1e9)
    if str(config_values.get("model_type", "")).startswith("VideoMAEv2"):
        return _frozen(load_videomae_v2(files, dtype, key)), root
    hf_logging.disable_progress_bar()
    try:
        # ignore_mismatched_sizes=True only reports size mismatches in `info` (transformers' own
        # error does not name the keys); any missing, unexpected or mismatched key fails below.
        model, info = cls.from_pretrained(
            str(root), dtype=dtype, output_loading_info=True, local_files_only=True, ignore_mismatched_sizes=True
        )
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:  # SafetensorError: truncated file
        raise WeightsError(f"Could not load {cls.__name__} (`weights.{key}`) from {where}: {error}") from error
    heads = KNOWN_HEAD_PREFIXES.get(cls.__name__, ())
    dropped = sorted(k for k in info.get("unexpected_keys", []) if k.startswith(heads))
    info["unexpected_keys"] = [k for k in info.get("unexpected_keys", []) if k not in set(dropped)]
    if info.get("mismatched_keys"):  # (model name, shape in the file, shape of the model): named as in the file
        in_file = {_model_name(n, cls.base_model_prefix): n for p in _weight_files(files) for n in TensorFile(p).shapes}
        info["mismatched_keys"] = [_shape_error(k, tuple(a), tuple(b), (in_file.get(k, k), tuple(a)))
                                   for k, a, b in info["mismatched_keys"]]
    bad = {k: sorted(map(str, v)) for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise WeightsError(
            f"Expected the weights in {where} to match {cls.__name__} exactly, but got "
            f"{_summarise_keys(bad)}. Is `weights.{key}` a checkpoint of this model?"
        )
    if dropped:
        groups = sorted({next(p for p in heads if k.startswith(p)) for k in dropped})
        log.info("dropped %d head tensors of %s not in %s: %s", len(dropped), where, cls.__name__, ", ".join(f"{g}*" for g in groups))
    return _frozen(model), root


def _weight_files(files: dict[str, Path]) -> list[Path]:
    """The tensor files among a transformers checkpoint's files (`transformers_files`)."""
    return [p for name, p in files.items() if name not in ("config.json", "preprocessor_config.json", "video_preprocessor_config.json")]


def _model_name(name: str, base_model_prefix: str) -> str:
    """A transformers checkpoint tensor's name in the base model (as `from_pretrained` maps it)."""
    name = name.removeprefix(f"{base_model_prefix}.")
    # the 2022 VideoMAE uploads' names, which transformers renames on load
    return name.replace("attention.attention.q_bias", "attention.attention.query.bias").replace(
        "attention.attention.v_bias", "attention.attention.value.bias")


def _head_groups(names: list[str], prefixes: tuple[str, ...]) -> dict[str, int]:
    """{"decoder.*": tensors, "mask_token": 1, ...}: dropped head tensors counted by the prefix they match."""
    groups: dict[str, int] = {}
    for name in names:
        prefix = next(p for p in prefixes if name.startswith(p))
        label = f"{prefix}*" if prefix.endswith(".") else prefix
        groups[label] = groups.get(label, 0) + 1
    return dict(sorted(groups.items()))


def check_transformers_model(cls: Any, source: str | Path, key: str) -> tuple[torch.nn.Module, dict[str, int]]:
    """Names and shapes of a transformers checkpoint against `cls` built from its config on meta
    (the same rules as `load_transformers_model`: heads dropped, VideoMAE v2 converted).

    Returns:
        (the model on meta, the dropped head tensors counted by prefix: `_head_groups`).
    Raises:
        WeightsError: what is missing, unexpected or mis-shaped, naming the files and the
            mis-shaped tensors as the files name them.
    """
    from actiondiff.features.backbones.videomae_v2 import V2_HEAD_PREFIXES

    files = transformers_files(source, key)
    config_values = json.loads(files["config.json"].read_text())
    if str(config_values.get("model_type", "")).startswith("VideoMAEv2"):
        model = load_videomae_v2(files, torch.float32, key, values=False)
        names = [n.removeprefix("model.") for p in _weight_files(files) for n in TensorFile(p).shapes]
        return model, _head_groups([n for n in names if n.startswith(V2_HEAD_PREFIXES)], V2_HEAD_PREFIXES)
    config = cls.config_class.from_pretrained(str(files["config.json"].parent))
    model = build_on_meta(lambda: cls(config))
    weights = [TensorFile(p) for p in _weight_files(files)]
    heads = KNOWN_HEAD_PREFIXES.get(cls.__name__, ())
    found, in_file, dropped = {}, {}, []
    for tensors in weights:
        for file_name, shape in tensors.shapes.items():
            name = _model_name(file_name, cls.base_model_prefix)
            if name.startswith(heads):
                dropped.append(name)
            else:
                found[name], in_file[name] = shape, (file_name, shape)
    check_tensors(expected_shapes(model), found, ", ".join(str(t.path) for t in weights), cls.__name__, in_file=in_file)
    return model, _head_groups(dropped, heads)


def _published(files: dict[str, Any], part: str, published: dict[str, Any]) -> str:
    config = _config(files[f"{part}/config.json"])
    same = all(_plain(config.get(k)) == _plain(v) for k, v in published.items())
    return "SVD-XT's published config" if same else "a config other than SVD-XT's"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _count(model: torch.nn.Module) -> str:
    return f"{len(model.state_dict())} tensors, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters"


def check_weights(path: str | Path, clip_arch: str = SVD_XT_CLIP_ARCH) -> list[str]:
    """Validate a download against the architectures it will be loaded as, on the meta device.

    Every expected tensor must be there with its shape (no values are read). Recognised: an
    SVD-XT snapshot folder or hub id (unet/, vae/, image_encoder/ when present), the single
    file `svd_xt.safetensors`, a `image_encoder/` folder, an OpenCLIP checkpoint (with
    `clip_arch`), and VideoMAE / VideoMAE v2 / V-JEPA 2 checkpoint folders.
    Returns:
        report lines: the layout, what each model would load from which file.
    Raises:
        WeightsError: what is missing, unexpected or mis-shaped, naming the file.
    """
    from actiondiff.features.weight_files import (
        SVD_XT_UNET_CONFIG,
        SVD_XT_VAE_CONFIG,
        looks_like_hub_id,
        pick_file,
    )

    source = Path(path)
    if not source.exists() and not looks_like_hub_id(str(path)):
        raise WeightsError(f"Expected {str(path)!r} to be a weights folder, file or cached hub id, but it does not exist.")
    root = resolve_snapshot(path, key="svd") if source.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt") or not source.is_file() else source
    lines = []
    if root.is_file():
        names = TensorFile(root).shapes
        if any(n.startswith(key_maps.SGM_UNET_PREFIX) for n in names):
            files = svd_files(root)
            unet, vae = load_svd(root, values=False)
            visual = load_clip(clip_arch, "", svd=root, values=False).visual
            lines.append(f"{root}: SVD single file (sgm names), {len(names)} tensors")
            lines.append(f"  configs: {assumed_configs(files) or 'unet/config.json and vae/config.json beside the file'}")
            lines.append(f"  unet: {_count(unet)} ({_published(files, 'unet', SVD_XT_UNET_CONFIG)})")
            lines.append(f"  vae: {_count(vae)} (encoder + quant_conv from the conditioner, decoder from first_stage_model)")
            lines.append(f"  conditioning: OpenCLIP {clip_arch} visual tower, {_count(visual)}; no text tower (action_text needs an OpenCLIP checkpoint)")
            return lines + encoder_copies_report(root)
        if any(n.startswith("vision_model.") for n in names):
            raise WeightsError(f"Expected {root} in its image_encoder/ folder (with config.json), but it is a lone file: check the folder.")
        model = load_clip(clip_arch, root, values=False)
        return [f"{root}: OpenCLIP checkpoint ({clip_arch}), {_count(model)}: conditioning on frames and action_text"]
    if (root / "unet").is_dir() or (root / "vae").is_dir():
        files = svd_files(root)
        unet, vae = load_svd(root, values=False)
        lines.append(f"{root}: SVD diffusers snapshot")
        for part, model, published in (("unet", unet, SVD_XT_UNET_CONFIG), ("vae", vae, SVD_XT_VAE_CONFIG)):
            lines.append(f"  {part}: {_count(model)} from {files[f'{part}/weights'].name} ({_published(files, part, published)})")
        if (root / "image_encoder").is_dir():
            visual = load_clip(clip_arch, "", svd=root, values=False).visual
            weights = pick_file(root / "image_encoder", ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin"), "the image encoder weights")
            lines.append(f"  image_encoder: OpenCLIP visual tower, {_count(visual)} from {weights.name} (conditioning with clip_checkpoint: '')")
        else:
            lines.append("  image_encoder: absent (set weights.clip_checkpoint to an OpenCLIP checkpoint)")
        return lines + encoder_copies_report(root)
    config = root / "config.json"
    if not config.is_file():
        raise WeightsError(f"Expected {root} to hold unet/ and vae/ (SVD) or config.json (a checkpoint folder), but it has {sorted(p.name for p in root.iterdir())}.")
    model_type = str(json.loads(config.read_text()).get("model_type", ""))
    if model_type == "clip_vision_model":
        visual = load_clip(clip_arch, "", svd=root.parent, values=False).visual if root.name == "image_encoder" else None
        if visual is None:
            raise WeightsError(f"Expected the CLIP vision checkpoint {root} to be the image_encoder/ folder of an SVD snapshot.")
        return [f"{root}: transformers CLIPVisionModelWithProjection, as OpenCLIP's visual tower: {_count(visual)}"]
    import transformers

    classes = {"videomae": "VideoMAEModel", "vjepa2": "VJEPA2Model"}
    name = "videomae" if model_type.startswith("VideoMAEv2") else model_type
    if name not in classes:
        raise WeightsError(f"Expected {config} to be of model_type videomae, VideoMAEv2_* or vjepa2, but got {model_type!r}.")
    model, dropped = check_transformers_model(getattr(transformers, classes[name]), root, name)
    heads = ", ".join(f"{group} ({count})" for group, count in dropped.items()) or "none in the file"
    return [f"{root}: {model_type} checkpoint, loads as {classes[name]} (`weights.{name}`): {_count(model)}",
            f"  dropped heads (tensors the encoder does not have, not loaded): {heads}"]


def load_videomae_v2(files: dict[str, Path], dtype: torch.dtype, key: str, values: bool = True) -> torch.nn.Module:
    """A `VideoMAEModel` from a VideoMAE v2 hub folder (`transformers_files`), strictly
    (`values` False: names and shapes checked, the model left on meta).

    Raises:
        WeightsError: a variant it cannot express, unknown / missing tensors or shapes, naming the file.
    """
    import transformers

    from actiondiff.features.backbones.videomae_v2 import v2_to_videomae, videomae_config_from_v2

    config_path = files["config.json"]
    values = json.loads(config_path.read_text())
    if "model_config" not in values:
        raise WeightsError(f"Expected the VideoMAE v2 config {config_path} to hold `model_config`, but it has {sorted(values)}.")
    config = transformers.VideoMAEConfig(**videomae_config_from_v2(values["model_config"], str(config_path)))
    model = build_on_meta(lambda: transformers.VideoMAEModel(config))
    weights = [TensorFile(path) for name, path in files.items() if name not in ("config.json", "preprocessor_config.json", "video_preprocessor_config.json")]
    where = ", ".join(str(t.path) for t in weights)
    shapes = {n: torch.empty(s, device="meta") for t in weights for n, s in t.shapes.items()}
    try:
        mapped, dropped = v2_to_videomae(shapes)
    except KeyError as error:
        raise WeightsError(f"Expected the weights in {where} (`weights.{key}`) to be VideoMAE v2's, but got tensor {error}.") from error
    check_tensors(expected_shapes(model), {k: tuple(v.shape) for k, v in mapped.items()}, where, "VideoMAEModel (from VideoMAE v2 names)",
                  in_file=_one_to_one(v2_to_videomae, {n: tuple(s.shape) for n, s in shapes.items()}))
    if not values:
        return model
    state, _ = v2_to_videomae({n: t.get(n, dtype) for t in weights for n in t.shapes})
    model = assign(model, state)
    # The sinusoid position table is not a saved tensor: transformers builds it at init, on meta here.
    model.embeddings.position_embeddings = _sinusoid_table(model).to(dtype)
    if dropped:
        log.info("dropped %d head tensors of %s not in VideoMAEModel: %s", len(dropped), where, sorted({d.split(".")[-2] for d in dropped}))
    return model


def _sinusoid_table(model: torch.nn.Module) -> torch.Tensor:
    """VideoMAE's fixed position embeddings, as transformers builds them."""
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    config = model.config
    tokens = (config.num_frames // config.tubelet_size) * (config.image_size // config.patch_size) ** 2
    return get_sinusoid_encoding_table(tokens, config.hidden_size)
