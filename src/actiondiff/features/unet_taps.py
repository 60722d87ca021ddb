"""Our own SVD UNet loop: run the down path, tap the layers of the map of docs/design.md section 2, stop early.

Layer l is the authors' `latents[l-1]`: the outputs of conv_in, of every (resnet, attention)
pair or resnet of the down blocks, of each downsampler, and of the mid block, in order. The
stock diffusers forward fixes `image_only_indicator` to zeros and always runs the up path;
this loop takes the indicator as an argument (ones = the SDv2 baseline) and stops after the
deepest tap, so up blocks are never run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LayerInfo:
    """One tap of the layer map."""

    layer: int  # 1..13
    module: str  # diffusers module path whose output is tapped
    channels: int
    downsample: int  # spatial reduction relative to the latent

    def size(self, height: int, width: int) -> tuple[int, int]:
        """The tap's spatial size (h, w) for an input of `height` x `width` pixels.

        The VAE divides by 8; each stride-2 downsampler (padding 1) rounds up.
        """
        return -(-height // (8 * self.downsample)), -(-width // (8 * self.downsample))


def layer_map(unet: torch.nn.Module) -> list[LayerInfo]:
    """The 13 taps of an SVD UNet, read from the model (works on the `meta` device)."""
    taps = [LayerInfo(1, "conv_in", unet.conv_in.out_channels, 1)]
    factor = 1
    for b, block in enumerate(unet.down_blocks):
        kind = "attentions" if getattr(block, "has_cross_attention", False) else "resnets"
        for i, resnet in enumerate(block.resnets):
            taps.append(LayerInfo(len(taps) + 1, f"down_blocks[{b}].{kind}[{i}]", _channels(resnet), factor))
        if block.downsamplers is not None:
            factor *= 2
            channels = block.downsamplers[0].out_channels
            taps.append(LayerInfo(len(taps) + 1, f"down_blocks[{b}].downsamplers[0]", channels, factor))
    mid_channels = _channels(unet.mid_block.resnets[-1])
    taps.append(LayerInfo(len(taps) + 1, "mid_block", mid_channels, factor))
    return taps


def get_tap_module(unet: torch.nn.Module, info: LayerInfo) -> torch.nn.Module:
    """The module whose output is tap `info`, e.g. `down_blocks[2].attentions[1]`."""
    # "down_blocks[2].attentions[1]" -> "down_blocks.2.attentions.1"
    return unet.get_submodule(info.module.replace("[", ".").replace("]", ""))


def modules_needed(unet: torch.nn.Module, deepest: int) -> list[torch.nn.Module]:
    """The UNet modules that run to reach layer `deepest` (1..13): the rest never run.

    Up blocks, the output head and every down block past the deepest tap are left out, so the
    caller can keep them off the accelerator.
    """
    needed = [unet.conv_in, unet.time_proj, unet.time_embedding, unet.add_time_proj, unet.add_embedding]
    taps = layer_map(unet)
    for b, block in enumerate(unet.down_blocks):
        first = next(info.layer for info in taps if info.module.startswith(f"down_blocks[{b}]"))
        if first <= deepest:
            needed.append(block)
    if deepest >= taps[-1].layer:
        needed.append(unet.mid_block)
    return needed


def down_path_modules(unet: torch.nn.Module, deepest: int) -> list[torch.nn.Module]:
    """The modules `tap_unet` calls one after the other to reach layer `deepest` (1..13).

    conv_in, each resnet and its attention, each downsampler and the mid block, in order:
    the units `torch.compile` compiles one by one (the loop between them taps and may stop).
    The time embedding's small MLPs are left out.
    """
    units: list[list[torch.nn.Module]] = [[unet.conv_in]]  # one entry per tap, as _down_path yields
    for block in unet.down_blocks:
        attentions = block.attentions if getattr(block, "has_cross_attention", False) else None
        for i, resnet in enumerate(block.resnets):
            units.append([resnet] if attentions is None else [resnet, attentions[i]])
        if block.downsamplers is not None:
            units.append([block.downsamplers[0]])
    units.append([unet.mid_block])
    return [module for unit in units[:deepest] for module in unit]


@contextlib.contextmanager
def capture_taps(unet: torch.nn.Module, layers: tuple[int, ...] | list[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the outputs of the tapped modules during any forward (e.g. the stock one).

    Yields a dict that fills with {layer: [n, c, h, w] output} as the UNet runs; the hooks are
    removed on exit. Used to check our loop against diffusers' forward, and by the authors'
    procedure, which runs the stock forward.
    """
    outputs: dict[int, torch.Tensor] = {}
    handles = []
    for info in layer_map(unet):
        if info.layer in layers:

            def hook(_module, _args, output, layer=info.layer):
                # transformer blocks return a tuple (hidden_states,)
                outputs[layer] = output[0] if isinstance(output, tuple) else output

            handles.append(get_tap_module(unet, info).register_forward_hook(hook))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def spatial_mean(hidden: torch.Tensor) -> torch.Tensor:
    """[n, c, h, w] any float dtype -> [n, c] float32 (float64 for float64) mean over space.

    The sum is accumulated in fp32 without an fp32 copy of the activations: half-precision
    sums over 72x128 positions lose digits.
    """
    return hidden.mean(dim=(2, 3), dtype=torch.promote_types(hidden.dtype, torch.float32))


def _channels(resnet: torch.nn.Module) -> int:
    """Output channels of a (spatio-temporal) resnet block."""
    return resnet.spatial_res_block.out_channels if hasattr(resnet, "spatial_res_block") else resnet.out_channels


def _down_path(
    unet: torch.nn.Module,
    sample: torch.Tensor,
    emb: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    image_only_indicator: torch.Tensor,
) -> Iterator[torch.Tensor]:
    """Yield the 13 tapped hidden states in order; the caller stops consuming when done."""
    hidden = unet.conv_in(sample)
    yield hidden
    for block in unet.down_blocks:
        attentions = block.attentions if getattr(block, "has_cross_attention", False) else None
        for i, resnet in enumerate(block.resnets):
            hidden = resnet(hidden, emb, image_only_indicator=image_only_indicator)
            if attentions is not None:
                hidden = attentions[i](
                    hidden,
                    encoder_hidden_states=encoder_hidden_states,
                    image_only_indicator=image_only_indicator,
                    return_dict=False,
                )[0]
            yield hidden
        if block.downsamplers is not None:
            hidden = block.downsamplers[0](hidden)
            yield hidden
    yield unet.mid_block(
        hidden_states=hidden,
        temb=emb,
        encoder_hidden_states=encoder_hidden_states,
        image_only_indicator=image_only_indicator,
    )


def time_embedding(unet: torch.nn.Module, c_noise: torch.Tensor, added_time_ids: torch.Tensor) -> torch.Tensor:
    """The UNet's conditioning embedding for each batch item, as diffusers computes it.

    Args:
        c_noise: [b] float, the EDM timestep c_noise(sigma) per batch item.
        added_time_ids: [b, 3] (fps_id, motion_bucket_id, cond_aug).
    Returns:
        [b, time_embed_dim] in the UNet's dtype.
    """
    dtype = unet.conv_in.weight.dtype
    t_emb = unet.time_proj(c_noise).to(dtype)  # time_proj returns fp32
    emb = unet.time_embedding(t_emb)
    # [b, 3] -> [b*3] -> sinusoid [b*3, d] -> [b, 3*d]
    time_embeds = unet.add_time_proj(added_time_ids.flatten()).reshape(c_noise.shape[0], -1)
    return emb + unet.add_embedding(time_embeds.to(emb.dtype))


def tap_unet(
    unet: torch.nn.Module,
    sample: torch.Tensor,
    c_noise: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    added_time_ids: torch.Tensor,
    image_only_indicator: torch.Tensor,
    layers: tuple[int, ...] | list[int],
) -> dict[int, torch.Tensor]:
    """Run the UNet to the deepest requested layer and mean-pool each tap over space.

    Args:
        sample: [b, f, 8, h, w] UNet input (c_in * z concatenated with the conditioning latent).
        c_noise: [b] EDM timestep per batch item.
        encoder_hidden_states: [b*f, tokens, d] conditioning context of every frame (1 token,
            or one per action name under `action_text`).
        added_time_ids: [b, 3].
        image_only_indicator: [b, f]; zeros for SVD, ones for the SDv2 baseline.
        layers: taps to return, 1..13.
    Returns:
        {layer: [b, f, channels] float32} spatial means (pooled in fp32).
    """
    batch, num_frames = sample.shape[:2]
    emb = time_embedding(unet, c_noise, added_time_ids)
    # emb: [b, d] -> [b*f, d]; sample: [b, f, c, h, w] -> [b*f, c, h, w]
    emb = emb.repeat_interleave(num_frames, dim=0)
    flat = sample.flatten(0, 1)
    wanted, deepest, pooled = set(layers), max(layers), {}
    for layer, hidden in enumerate(_down_path(unet, flat, emb, encoder_hidden_states, image_only_indicator), 1):
        if layer in wanted:
            pooled[layer] = spatial_mean(hidden).reshape(batch, num_frames, -1)  # [b*f, c] -> [b, f, c]
        if layer == deepest:
            break
    return pooled
