"""Tensor names between the published layouts: the sgm single file and transformers' CLIP vision model.

1. `svd_xt.safetensors` (Stability's sgm code) -> diffusers `UNetSpatioTemporalConditionModel`
   and `AutoencoderKLTemporalDecoder`. Written as the diffusers -> sgm direction
   (`unet_sgm_names`, `vae_sgm_names`): the loader builds the model on the meta device, asks
   for the sgm name of every tensor it has, and so knows exactly which file tensors it needs
   (any missing is an error; any other is listed). Where the VAE comes from in the file:
   encoder and `quant_conv` from the conditioner's autoencoder (`conditioner.embedders.3.
   encoder.`, the only one with a `quant_conv`), the temporal decoder from
   `first_stage_model.decoder.`; sgm's 1x1-conv attention projections become diffusers'
   linear ones (`[c, c, 1, 1]` -> `[c, c]`). The file's second encoder copy,
   `first_stage_model.encoder.` (no `quant_conv`: sgm's `AutoencodingEngine`), is the one the
   authors' `encode_first_stage` gives z with; `first_stage_encoder_sgm_names` maps it
   (`extraction.z_encoder: first_stage`).
2. OpenCLIP's visual tower (`visual.*`) <-> transformers `CLIPVisionModelWithProjection`
   (`vision_model.*`, `visual_projection.weight`): the fused attention input projection is
   split into q, k, v and the output projection is transposed. The single file's conditioner
   holds the OpenCLIP names under `conditioner.embedders.0.open_clip.model.visual.`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SGM_UNET_PREFIX = "model.diffusion_model."
SGM_ENCODER_PREFIX = "conditioner.embedders.3.encoder."  # encoder.*, quant_conv.* (AutoencoderKLModeOnly)
SGM_DECODER_PREFIX = "first_stage_model."  # decoder.* (the temporal VideoDecoder)
SGM_CLIP_PREFIX = "conditioner.embedders.0.open_clip.model."
SGM_FIRST_STAGE_ENCODER_PREFIX = "first_stage_model.encoder."  # the authors' encoder of z
# Tensors of the single file no backbone reads, by prefix, and why (listed in the log).
SGM_UNUSED = {
    SGM_FIRST_STAGE_ENCODER_PREFIX: "the first-stage copy of the VAE encoder (read only with extraction.z_encoder: first_stage)",
    "conditioner.embedders.3.encoder.decoder.": "the conditioner autoencoder's frame-wise decoder",
    "conditioner.embedders.3.encoder.post_quant_conv.": "the conditioner autoencoder's post_quant_conv",
    SGM_CLIP_PREFIX: "what is left of OpenCLIP's text tower (its transformer was removed)",
}

# diffusers ResnetBlock names -> sgm ResBlock names
_RES = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
        "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
# diffusers VAE ResnetBlock2D names -> sgm (ldm) ResnetBlock names
_VAE_RES = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(name: str, table: dict[str, str]) -> str:
    head, _, tail = name.rpartition(".")  # tail: weight / bias
    if head not in table:
        raise KeyError(name)
    return f"{table[head]}.{tail}"


def _unet_resnet(rest: str) -> str:
    """diffusers SpatioTemporalResBlock -> sgm VideoResBlock."""
    if rest == "time_mixer.mix_factor":
        return rest
    if rest.startswith("spatial_res_block."):
        return _rename(rest.removeprefix("spatial_res_block."), _RES)
    if rest.startswith("temporal_res_block."):
        return "time_stack." + _rename(rest.removeprefix("temporal_res_block."), _RES)
    raise KeyError(rest)


def _unet_attention(rest: str) -> str:
    """diffusers TransformerSpatioTemporalModel -> sgm SpatialVideoTransformer."""
    rest = re.sub(r"^temporal_transformer_blocks\.", "time_stack.", rest)
    return rest.replace("time_pos_embed.linear_1.", "time_pos_embed.0.").replace("time_pos_embed.linear_2.", "time_pos_embed.2.")


def unet_sgm_names(keys: Iterable[str], layers_per_block: int = 2) -> dict[str, str]:
    """{diffusers UNet tensor name: its name in the sgm file (with `model.diffusion_model.`)}.

    Args:
        keys: the diffusers model's state-dict names (all of them: up blocks without
            attention are recognised from the names).
        layers_per_block: the config's `layers_per_block` (SVD-XT: 2).
    Raises:
        KeyError: a name this layout does not have.
    """
    keys = list(keys)
    step = layers_per_block + 1  # sgm: layers_per_block blocks, then the down/upsampler
    with_attention = {int(m[1]) for k in keys if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    fixed = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
             "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
             "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
    out = {}
    for key in keys:
        name = None
        for ours, theirs in fixed.items():
            if key.startswith(ours):
                name = theirs + key.removeprefix(ours)
        if name is None and (m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)):
            index = 1 + int(m[1]) * step + int(m[3])
            name = f"input_blocks.{index}.0.{_unet_resnet(m[4])}" if m[2] == "resnets" else f"input_blocks.{index}.1.{_unet_attention(m[4])}"
        elif name is None and (m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)):
            name = f"input_blocks.{1 + int(m[1]) * step + layers_per_block}.0.op.{m[2]}"
        elif name is None and (m := re.match(r"mid_block\.(resnets|attentions)\.(\d)\.(.*)", key)):
            if m[1] == "attentions":
                name = f"middle_block.1.{_unet_attention(m[3])}"
            else:
                name = f"middle_block.{2 * int(m[2])}.{_unet_resnet(m[3])}"
        elif name is None and (m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)):
            index = int(m[1]) * step + int(m[3])
            name = f"output_blocks.{index}.0.{_unet_resnet(m[4])}" if m[2] == "resnets" else f"output_blocks.{index}.1.{_unet_attention(m[4])}"
        elif name is None and (m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)):
            block = int(m[1])
            # the upsampler follows the last layer's resnet (and its attention, if the block has one)
            name = f"output_blocks.{block * step + layers_per_block}.{2 if block in with_attention else 1}.conv.{m[2]}"
        if name is None:
            raise KeyError(key)
        out[key] = SGM_UNET_PREFIX + name
    return out


def _vae_resnet(rest: str) -> str:
    """diffusers VAE resnet (plain, or SpatioTemporalResBlock in the decoder) -> sgm."""
    if rest == "time_mixer.mix_factor":
        return "mix_factor"
    if rest.startswith("temporal_res_block."):
        return "time_stack." + _rename(rest.removeprefix("temporal_res_block."), _RES)
    return _rename(rest.removeprefix("spatial_res_block."), _VAE_RES)


def vae_sgm_names(keys: Iterable[str]) -> dict[str, str]:
    """{diffusers AutoencoderKLTemporalDecoder tensor name: its name in the sgm file}.

    Raises:
        KeyError: a name this layout does not have.
    """
    keys = list(keys)
    num_up = 1 + max(int(m[1]) for k in keys if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    out = {}
    for key in keys:
        side, _, rest = key.partition(".")
        prefix = SGM_ENCODER_PREFIX if side in ("encoder", "quant_conv") else SGM_DECODER_PREFIX
        name = None
        if side == "quant_conv":
            name = key
        elif rest.startswith(("conv_in.", "conv_out.")):
            name = key
        elif rest.startswith("conv_norm_out."):
            name = f"{side}.norm_out.{rest.removeprefix('conv_norm_out.')}"
        elif rest.startswith("time_conv_out."):
            name = f"{side}.conv_out.time_mix_conv.{rest.removeprefix('time_conv_out.')}"
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):
            name = f"{side}.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", rest):
            name = f"{side}.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest):  # sgm counts up levels bottom-up
            name = f"{side}.up.{num_up - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", rest):
            name = f"{side}.up.{num_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d)\.(.*)", rest):
            name = f"{side}.mid.block_{int(m[1]) + 1}.{_vae_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", rest):
            name = f"{side}.mid.attn_1.{_rename(m[1], _VAE_ATTN)}"
        if name is None:
            raise KeyError(key)
        out[key] = prefix + name
    return out


def first_stage_encoder_sgm_names(vae_keys: Iterable[str]) -> dict[str, str]:
    """{diffusers VAE `encoder.*` tensor name, without `encoder.`: its name in the first-stage copy}.

    Args:
        vae_keys: every state-dict name of the diffusers VAE (the decoder's give the level count).
    """
    encoder = SGM_ENCODER_PREFIX + "encoder."
    return {key.removeprefix("encoder."): name.replace(encoder, SGM_FIRST_STAGE_ENCODER_PREFIX, 1)
            for key, name in vae_sgm_names(vae_keys).items() if key.startswith("encoder.")}


def is_vae_1x1_projection(diffusers_key: str) -> bool:
    """True for the VAE attention projections stored as 1x1 convolutions by sgm ([c, c, 1, 1])."""
    return bool(re.search(r"mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$", diffusers_key))


# ---------------------------------------------------------------- OpenCLIP visual <-> transformers


_CLIP_FIXED = {
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "class_embedding": "vision_model.embeddings.class_embedding",
    "positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight",  # transformers' own spelling
    "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight",
    "ln_post.bias": "vision_model.post_layernorm.bias",
}
_CLIP_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
               "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def hf_vision_to_openclip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers `CLIPVisionModelWithProjection` tensors -> OpenCLIP `visual.*` tensors.

    Raises:
        KeyError: a tensor of another layout (named); the caller checks what is missing.
    """
    import torch

    out: dict[str, torch.Tensor] = {}
    inverse = {v: k for k, v in _CLIP_FIXED.items()}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in inverse:
            out[f"visual.{inverse[key]}"] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.t().contiguous()  # Linear [d, width] -> x @ proj [width, d]
        elif m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)$", key):
            qkv.setdefault((int(m[1]), m[3]), {})[m[2]] = value
        elif m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key):
            theirs = {v: k for k, v in _CLIP_BLOCK.items()}.get(m[2])
            if theirs is None:
                raise KeyError(key)
            out[f"visual.transformer.resblocks.{m[1]}.{theirs}.{m[3]}"] = value
        else:
            raise KeyError(key)
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise KeyError(f"vision_model.encoder.layers.{layer}.self_attn.{{q,k,v}}_proj.{kind} (only {sorted(parts)})")
        # nn.MultiheadAttention's fused input projection: rows q, then k, then v
        out[f"visual.transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def openclip_to_hf_vision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP `visual.*` tensors -> transformers `CLIPVisionModelWithProjection` tensors (the inverse)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        rest = key.removeprefix("visual.")
        if rest in _CLIP_FIXED:
            out[_CLIP_FIXED[rest]] = value
        elif rest == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif m := re.match(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", rest):
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[f"vision_model.encoder.layers.{m[1]}.self_attn.{name}_proj.{m[2]}"] = part.contiguous()
        elif m := re.match(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$", rest):
            out[f"vision_model.encoder.layers.{m[1]}.{_CLIP_BLOCK[m[2]]}.{m[3]}"] = value
        else:
            raise KeyError(key)
    return out
