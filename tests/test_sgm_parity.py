"""The extractor against the authors' own modules: Stability's sgm, run as their script runs it.

`tests/sgm_vendored/` holds the subset of sgm (MIT) that `generate_svd_maps.py` (github
frankyaoxiao/ActionDiff @ 57fcb58) uses, and the script's helpers (README.md there says what was
trimmed). Their `DiffusionEngine` is built from their `svd_xt.yaml` / `svd_xt_sdv2.yaml` with tiny
widths, loads a tiny single file `svd_xt.safetensors` that our key map wrote from our tiny
diffusers weights (`tools.tiny_weights.write_single_file`), and runs the script's per-window loop
body below; our extractor loads the same file through our loader. Both sides run in float64
(sgm computes its sinusoidal embeddings in float32 whatever the weights: they are cast to the
weights' dtype here, as diffusers does), and their random draws are ours, replayed in their
order, with the authors' conventions where ours differ (`z_encoder: first_stage`,
`resnet_norm_eps: sgm`). Measured 2026-12-07 on the 2-core AMD EPYC container: every layer at t = 0
and t = 20, per_frame / none / action_text, sdv2 on and off, within 1e-6 relative (docs/design.md,
"sgm parity").
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.weights import build_clip, check_weights, encoder_copies_report
from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings
from actiondiff.tools.tiny_weights import TINY_CLIP_CONFIG, write_single_file

VENDORED = Path(__file__).parent / "sgm_vendored"
sys.path.insert(0, str(VENDORED))  # their code imports `sgm` by that name (yaml targets too)
open_clip = pytest.importorskip("open_clip")

# 64 x 128 frames: latents 8 x 16 (their output blocks, which they run, need multiples of 8), the
# deepest taps 1 x 2 (at 1 x 1, GroupNorm over 2 values amplifies their float32 sigma table's
# 2e-7 to 4e-6); CLIP's 224 x 224 is an enlargement (the shrinking blur: test_clip_resize_equals_kornias_own)
# a 3-frame window of 2 real frames and 1 black pad (the smallest with both)
WINDOW, REAL, HEIGHT, WIDTH = 3, 2, 64, 128
DECODE = DecodeSettings(stride=1, height=HEIGHT, width=WIDTH, window=WINDOW)
LAYERS, TIMESTEPS = tuple(range(1, 14)), (0, 20)
NAMES = ("eating", "swimming", "flying")
# their FrozenOpenCLIPImageEmbedder resizes to 224 x 224 whatever the model: a tiny ViT of that size
CLIP_NAME = "actiondiff-tiny-vit-224"
CLIP_CONFIG = {**TINY_CLIP_CONFIG, "vision_cfg": {**TINY_CLIP_CONFIG["vision_cfg"], "image_size": 224, "patch_size": 56}}
# our modes -> the script's `conditioning` argument (None: the conditioner's own, per frame);
# `middle_frame` (the paper's text) has no counterpart in their code
MODES = {"per_frame": None, "none": "no_cond", "action_text": "actions"}


@pytest.fixture(scope="module")
def files(tiny_weights, tmp_path_factory) -> dict[str, Path]:
    """The tiny single file (sgm names, written by our key map) and its OpenCLIP checkpoint."""
    out = tmp_path_factory.mktemp("sgm")
    torch.manual_seed(1)
    config = out / f"{CLIP_NAME}.json"
    config.write_text(json.dumps(CLIP_CONFIG))
    checkpoint = out / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in build_clip(CLIP_CONFIG).state_dict().items()}, str(checkpoint))
    single = write_single_file(tiny_weights["svd"], checkpoint, out / "svd_xt.safetensors")
    open_clip.add_model_config(config)  # their embedders build the model by name
    return {"single": single, "clip_arch": config, "clip_checkpoint": checkpoint}


def tiny_config(path: Path, sdv2: bool) -> dict:
    """Their yaml, SVD-XT's classes and wiring, at our tiny widths (tools/tiny_weights.py)."""
    model = yaml.safe_load((VENDORED / "configs" / ("svd_xt_sdv2.yaml" if sdv2 else "svd_xt.yaml")).read_text())["model"]
    params = model["params"]
    params["ckpt_path"] = str(path)
    params["scale_factor"] = json.loads((path.parent / "vae" / "config.json").read_text())["scaling_factor"]
    # no xformers on CPU: plain softmax attention, the same parameters
    params["network_config"]["params"].update(
        model_channels=32, channel_mult=[1, 1, 2, 2], num_head_channels=16, context_dim=32, adm_in_channels=24,
        spatial_transformer_attn_type="softmax", use_checkpoint=False,
    )
    embedders = params["conditioner_config"]["params"]["emb_models"]
    embedders[0]["params"]["open_clip_embedding_config"]["params"].update(arch=CLIP_NAME, version=None)
    for index in (1, 2, 4):
        embedders[index]["params"]["outdim"] = 8
    embedders[3]["params"]["encoder_config"]["params"]["ddconfig"].update(ch=32, ch_mult=[1, 1, 1, 1], attn_type="vanilla")
    params["first_stage_config"]["params"]["encoder_config"]["params"].update(ch=32, ch_mult=[1, 1, 1, 1])
    # the script deletes the decoder before it runs anything
    params["first_stage_config"]["params"]["decoder_config"] = {"target": "torch.nn.Identity"}
    sampler = params["sampler_config"]["params"]
    sampler.update(num_steps=30, verbose=False, device="cpu")  # the script's svd_xt steps; a CPU table
    sampler["guider_config"]["params"]["num_frames"] = WINDOW
    return model


def group_norm_in_the_input_dtype() -> None:
    """sgm's GroupNorm32 normalises in float32 whatever its input (`x.float()`: an upcast meant for
    half precision); in a float64 run it would mix dtypes: it normalises in its input's dtype here."""
    from sgm.modules.diffusionmodules.util import GroupNorm32

    GroupNorm32.forward = torch.nn.GroupNorm.forward


def float32_embeddings_to_float64(module: torch.nn.Module) -> None:
    """sgm's timestep_embedding returns float32 whatever the weights: cast it where it is read
    (the time, label and frame-position MLPs), as diffusers casts its own (`.to(sample.dtype)`)."""
    for name, child in module.named_modules():
        if name.split(".")[-1] in ("time_embed", "label_emb", "time_pos_embed"):
            child.register_forward_pre_hook(lambda _, args: tuple(a.double() for a in args))


@pytest.fixture(scope="module")
def engines(files):
    """Their DiffusionEngine, svd_xt and svd_xt_sdv2, float64, from the tiny single file."""
    from sgm.util import instantiate_from_config

    group_norm_in_the_input_dtype()
    out = {}
    for sdv2 in (False, True):
        with contextlib.redirect_stdout(None):  # their loader prints every kept tensor
            engine = instantiate_from_config(tiny_config(files["single"], sdv2)).eval()
        # what their strict=False load left out: only the parts the script never runs
        missing, unexpected = engine.load_state_dict(load_file(str(files["single"])), strict=False)
        assert all(k.startswith(("conditioner.embedders.3.encoder.decoder.", "conditioner.embedders.3.encoder.post_quant")) for k in missing)
        assert all(k.startswith(("first_stage_model.decoder.", "conditioner.embedders.3.encoder.")) for k in unexpected)
        if sdv2:  # init_from_ckpt's `fixed` merge: the file's mix factors replaced by 1.0
            engine.init_from_ckpt(str(files["single"]), "fixed", 1.0)
        del engine.first_stage_model.decoder
        engine.double()
        float32_embeddings_to_float64(engine.model)
        out[sdv2] = engine
    return out


@contextlib.contextmanager
def replay(draws: list[torch.Tensor]):
    """`torch.randn` / `randn_like` hand out `draws` in order (shapes checked), in the caller's dtype."""
    queue = list(draws)
    randn, randn_like = torch.randn, torch.randn_like

    def next_draw(shape, dtype):
        value = queue.pop(0)
        assert tuple(value.shape) == tuple(shape), (value.shape, shape)
        return value.to(dtype or torch.get_default_dtype())

    torch.randn = lambda *shape, dtype=None, **_: next_draw(shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape, dtype)
    torch.randn_like = lambda x, **_: next_draw(x.shape, x.dtype)
    try:
        yield
    finally:
        torch.randn, torch.randn_like = randn, randn_like
    assert not queue


def their_text(files) -> tuple[torch.Tensor, torch.Tensor]:
    """The script's `actions` embeddings: FrozenOpenCLIPEmbedder2's pooled output per name, [n, d]; and of ""."""
    from sgm.modules.encoders.modules import FrozenOpenCLIPEmbedder2

    model = FrozenOpenCLIPEmbedder2(arch=CLIP_NAME, version=None, device="cpu", always_return_pooled=True, legacy=False)
    state = {k: v for k, v in load_file(str(files["clip_checkpoint"])).items() if not k.startswith("visual.")}
    model.model.load_state_dict(state)
    model.double()
    return torch.cat([model(name)[1] for name in NAMES]), model("")[1]


@torch.no_grad()
def their_taps(engine, frames: torch.Tensor, num_real: int, mode: str | None, draws, text) -> list[dict[int, torch.Tensor]]:
    """The script's loop body for one window at each `diffusion_step` of TIMESTEPS: [{layer: [num_real, c]}].

    The script runs one step per call; its conditioning is deterministic given the draws, so it
    is computed once here and `get_svd_latents` (which encodes the first stage, one posterior
    draw each time) runs per step. frames: [WINDOW, 3, H, W] float64 in [-1, 1], black-padded.
    """
    from generate_svd_maps import (
        get_batch,
        get_svd_latents,
        get_unique_embedder_keys_from_conditioner,
    )

    num_frames = frames.shape[0]
    with replay(draws):
        value_dict = {
            "cond_frames_without_noise": frames, "motion_bucket_id": 127, "fps_id": 6, "cond_aug": 0.02,
            "cond_frames": frames + 0.02 * torch.randn_like(frames),
        }
        batch, batch_uc = get_batch(
            get_unique_embedder_keys_from_conditioner(engine.conditioner), value_dict, [1, num_frames], T=num_frames, device="cpu"
        )
        c, uc = engine.conditioner.get_unconditional_conditioning(
            batch, batch_uc=batch_uc, force_uc_zero_embeddings=["cond_frames", "cond_frames_without_noise"]
        )
        if mode == "no_cond":
            c = uc
        elif mode == "actions":
            c["crossattn"] = text[0].expand(num_frames, -1, -1)
            uc["crossattn"] = text[1].expand(num_frames, len(NAMES), -1)
        torch.randn((num_frames, 4, HEIGHT // 8, WIDTH // 8))  # the script's unused `randn`
        additional = {"image_only_indicator": torch.zeros(2, num_frames), "num_video_frames": batch["num_video_frames"]}

        def denoiser(input, sigma, c, return_latents=False):
            return engine.denoiser(engine.model, input, sigma, c, return_latents=return_latents, **additional)

        out = []
        for t in TIMESTEPS:
            latents = get_svd_latents(frames=frames, model=engine, denoiser=denoiser, cond=c, uc=uc,
                                      num_steps=30, diff_step=t, add_noise=True)
            out.append({layer: latents[layer - 1][num_frames:][:num_real].mean(dim=(-1, -2)) for layer in LAYERS})
    return out


def our_draws(mode: str, seed: int) -> list[torch.Tensor]:
    """Our extractor's draws for one window, in their order: pixel noise of the conditioning
    frames (none drawn by us without conditioning: theirs is then unused), their unused latent
    draw, the posterior sample's noise (once per timestep: the same draw each time)."""
    generator = torch.Generator().manual_seed(seed)
    latent = (WINDOW, 4, HEIGHT // 8, WIDTH // 8)
    cond = torch.randn((WINDOW, 3, HEIGHT, WIDTH), generator=generator) if mode != "none" else torch.zeros(WINDOW, 3, HEIGHT, WIDTH)
    posterior = torch.randn(latent, generator=generator)
    return [cond, torch.zeros(latent), *[posterior] * len(TIMESTEPS)]


def max_relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def our_taps(files, mode: str, sdv2: bool, frames: torch.Tensor, **departures) -> dict[int, torch.Tensor]:
    """The extractor in float64 with the authors' conventions, on the single file: {layer: [T, f, c]}."""
    settings = ExtractSettings(
        layers=LAYERS, timestep_indices=TIMESTEPS, conditioning=mode, action_names=NAMES if mode == "action_text" else (),
        sdv2=sdv2, dtype="float64", vae_dtype="float64", **{"z_encoder": "first_stage", "resnet_norm_eps": "sgm", **departures},
    )
    weights = WeightsSettings(svd=str(files["single"]), clip_arch=str(files["clip_arch"]), clip_checkpoint=str(files["clip_checkpoint"]))
    return SVDExtractor.from_weights(weights, DECODE, settings).window_taps(frames, torch.Generator().manual_seed(7))


# sdv2 changes only the UNet's spatio-temporal mixing, whatever the conditioning: with per_frame
@pytest.mark.parametrize("mode, sdv2", [("per_frame", False), ("per_frame", True), ("none", False), ("action_text", False)])
def test_extractor_equals_the_authors_sgm_modules_in_float64(files, engines, mode, sdv2):
    """2 real frames + 1 black pad, 13 layers x 2 timesteps (t = 0 is sigma 700), float64 on both sides.

    Measured (2026-12-07, max over the 13 layers): <= 1.2e-7 at t = 0 and <= 6.9e-7 at t = 20
    relative; the t = 20 residue is their sigma table, computed in float32 (`EDMDiscretization`):
    2.1e-7 already at layer 1, the UNet's input.
    """
    video = np.random.default_rng(5).integers(0, 256, size=(REAL, HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).double() / 255.0 * 2 - 1
    ours = our_taps(files, mode, sdv2, frames)
    padded = torch.cat([frames, torch.full((WINDOW - REAL, 3, HEIGHT, WIDTH), -1.0, dtype=torch.float64)])
    text = their_text(files) if mode == "action_text" else None
    theirs = their_taps(engines[sdv2], padded, REAL, MODES[mode], our_draws(mode, 7), text)
    for i, t in enumerate(TIMESTEPS):
        for layer in LAYERS:
            assert ours[layer][i].dtype == torch.float64 and ours[layer][i].shape == theirs[i][layer].shape
            assert max_relative_difference(ours[layer][i], theirs[i][layer]) <= 1e-6, (layer, t)
    if mode == "none":
        # diffusers' GroupNorm eps (1e-6 in the down blocks' resnets) against sgm's 1e-5: with no
        # conditioning at sigma 700 the maps are flat and the variance is near the epsilon
        # (measured: 1.6e-2 at layer 2 up to 4.8e-1 at layer 13, float64)
        default = our_taps(files, mode, sdv2, frames, resnet_norm_eps="diffusers")
        assert max_relative_difference(default[13][0], theirs[0][13]) > 1e-2


def test_first_stage_encoder_needs_the_single_file(tiny_weights, files):
    """A diffusers snapshot keeps one encoder copy: `z_encoder: first_stage` is refused, naming it."""
    from actiondiff.features.weight_files import WeightsError
    from actiondiff.features.weights import load_first_stage_encoder, load_svd

    with pytest.raises(WeightsError, match=r"single sgm file .* for `extraction.z_encoder: first_stage`.*diffusers snapshot"):
        load_first_stage_encoder(tiny_weights["svd"])
    # the tiny file's first-stage copy is a clone of the conditioner's (write_single_file)
    first_stage = load_first_stage_encoder(files["single"]).state_dict()
    conditioner = load_svd(files["single"])[1].encoder.state_dict()
    assert first_stage.keys() == conditioner.keys() and all(torch.equal(v, conditioner[k]) for k, v in first_stage.items())


def test_clip_resize_equals_kornias_own():
    """Our kornia-0.6.9 resize against the kornia installed (their `preprocess`), shrinking and enlarging."""
    kornia = pytest.importorskip("kornia")
    from actiondiff.features.svd_extractor import antialiased_resize

    for shape in ((2, 3, 576, 1024), (1, 3, 64, 256), (1, 3, 64, 64)):
        images = torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
        theirs = kornia.geometry.resize(images, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)
        torch.testing.assert_close(antialiased_resize(images, (224, 224)), theirs, rtol=0, atol=1e-12)


def test_weights_check_reports_the_encoder_copies_and_quant_conv(files, tiny_weights, tmp_path):
    """Identical copies, then a first-stage copy that differs; the tiny quant_conv is not the identity."""
    lines = encoder_copies_report(files["single"])
    assert "hold identical tensors" in lines[0] and lines[1] == "  quant_conv: not the identity"
    assert "may differ" in lines[2]
    assert check_weights(files["single"], clip_arch=str(files["clip_arch"]))[-3:] == lines  # `actiondiff weights check`
    state = load_file(str(files["single"]))
    changed = copy.copy(state)
    changed["first_stage_model.encoder.conv_in.bias"] = state["first_stage_model.encoder.conv_in.bias"] + 1.0
    latent = 8  # moments: an identity quant_conv
    changed["conditioner.embedders.3.encoder.quant_conv.weight"] = torch.eye(latent)[..., None, None]
    changed["conditioner.embedders.3.encoder.quant_conv.bias"] = torch.zeros(latent)
    other = tmp_path / "svd_xt.safetensors"
    save_file(changed, str(other))
    for part in ("unet", "vae"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "config.json").write_bytes((files["single"].parent / part / "config.json").read_bytes())
    lines = encoder_copies_report(other)
    assert "differs from conditioner.embedders.3.encoder.encoder. in 1 of" in lines[0] and "conv_in.bias" in lines[0]
    assert lines[1] == "  quant_conv: the identity"
    same = {**changed, "first_stage_model.encoder.conv_in.bias": state["first_stage_model.encoder.conv_in.bias"]}
    save_file(same, str(other))
    assert encoder_copies_report(other)[2] == "  z: the authors' (first-stage copy, no quant_conv) equals ours"
    # a diffusers snapshot: one copy, its quant_conv reported
    assert encoder_copies_report(tiny_weights["svd"])[:2] == [
        "  z encoder: one encoder copy (vae/): the authors' two copies cannot be compared here", "  quant_conv: not the identity"]
