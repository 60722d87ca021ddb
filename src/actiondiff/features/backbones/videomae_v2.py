"""VideoMAE v2's released checkpoint layout (OpenGVLab/VideoMAEv2-*) converted to transformers' `VideoMAEModel`.

The hub folders hold `config.json` with `model_type: VideoMAEv2_*` and the ViT's settings
under `model_config`, and weights named as the official code names them, behind a `model.`
prefix (`model.blocks.N.attn.qkv.weight`, `model.blocks.N.attn.q_bias`, ...). The same
network is a `VideoMAEModel` with:
- `hidden_size = embed_dim`, `intermediate_size = embed_dim * mlp_ratio`, heads, depth,
  patch, tubelet, frames and image size from `model_config`, `layer_norm_eps` from it
  (1e-6; transformers' default 1e-12 would be wrong), exact GELU, q/v biases only;
- the fused `qkv.weight` split into query, key, value (rows in that order), `q_bias` /
  `v_bias` as the query / value biases (the key has none, as in v2, whose key bias is zero);
- `use_mean_pooling` as in `model_config`: true (released models) means no final norm on
  the tokens (`fc_norm` belongs to the pooled classification path and is dropped with the
  `head`); false keeps `norm` as `layernorm`.
Variants the transformers class cannot express (cosine attention, layer scale, learned
position embeddings) are refused by name.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

log = logging.getLogger(__name__)

V2_HEAD_PREFIXES = ("fc_norm.", "head.")
_BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
          "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}


def videomae_config_from_v2(model_config: dict[str, Any], where: str) -> dict[str, Any]:
    """`VideoMAEConfig` keyword arguments equal to a v2 `model_config`.

    Raises:
        WeightsError: a variant `VideoMAEModel` cannot express.
    """
    from actiondiff.features.weight_files import WeightsError

    unsupported = {k: model_config.get(k) for k in ("cos_attn", "use_learnable_pos_emb") if model_config.get(k)}
    if model_config.get("init_values", 0.0):
        unsupported["init_values"] = model_config["init_values"]
    if not model_config.get("qkv_bias", True):
        unsupported["qkv_bias"] = False
    if unsupported:
        raise WeightsError(f"Expected a VideoMAE v2 model transformers' VideoMAEModel can express, but {where} sets {unsupported}.")
    embed = int(model_config["embed_dim"])
    return dict(
        image_size=int(model_config.get("img_size", 224)),
        patch_size=int(model_config.get("patch_size", 16)),
        num_channels=int(model_config.get("in_chans", 3)),
        num_frames=int(model_config.get("num_frames", 16)),
        tubelet_size=int(model_config.get("tubelet_size", 2)),
        hidden_size=embed,
        num_hidden_layers=int(model_config["depth"]),
        num_attention_heads=int(model_config["num_heads"]),
        intermediate_size=int(embed * float(model_config.get("mlp_ratio", 4.0))),
        hidden_act="gelu",
        layer_norm_eps=float(model_config.get("layer_norm_eps", 1e-6)),
        qv_bias=True,
        use_mean_pooling=bool(model_config.get("use_mean_pooling", True)),
    )


def v2_to_videomae(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """v2 tensors (with or without `model.`) -> (`VideoMAEModel` tensors, dropped head names).

    Raises:
        KeyError: a tensor of no known v2 name.
    """
    out: dict[str, torch.Tensor] = {}
    dropped = []
    for key, value in state.items():
        rest = key.removeprefix("model.")
        if rest.startswith(V2_HEAD_PREFIXES):
            dropped.append(key)
        elif rest.startswith("patch_embed.proj."):
            out["embeddings.patch_embeddings.projection." + rest.removeprefix("patch_embed.proj.")] = value
        elif rest.startswith("norm."):
            out["layernorm." + rest.removeprefix("norm.")] = value
        elif m := re.match(r"blocks\.(\d+)\.attn\.qkv\.weight$", rest):
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[f"encoder.layer.{m[1]}.attention.attention.{name}.weight"] = part.contiguous()
        elif m := re.match(r"blocks\.(\d+)\.attn\.(q|v)_bias$", rest):
            out[f"encoder.layer.{m[1]}.attention.attention.{'query' if m[2] == 'q' else 'value'}.bias"] = value
        elif (m := re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", rest)) and m[2] in _BLOCK:
            out[f"encoder.layer.{m[1]}.{_BLOCK[m[2]]}.{m[3]}"] = value
        else:
            raise KeyError(key)
    return out, dropped
