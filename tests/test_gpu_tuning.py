"""The GPU tuning options of the SVD extractor (tf32, channels_last, compile) and its attention
kernels, on the tiny seeded weights on CPU. Each test loads its own models: channels_last and
compile change the modules in place."""

from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from actiondiff.features.gpu_tuning import set_conv_memory_format, tf32_scope
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.unet_taps import down_path_modules, tap_unet
from actiondiff.features.weights import load_clip, load_svd
from actiondiff.features.windows import video_seed
from actiondiff.settings import DecodeSettings, ExtractSettings

DECODE = DecodeSettings(stride=1, height=64, width=64, window=6)


def fresh_models(tiny_weights):
    unet, vae = load_svd(tiny_weights["svd"])
    return unet, vae, load_clip(tiny_weights["clip_arch"], tiny_weights["clip_checkpoint"])


def frames(num: int) -> torch.Tensor:
    """[num, 3, 64, 64] in [-1, 1], seeded."""
    return torch.rand(num, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1


def taps(extractor: SVDExtractor, num: int) -> torch.Tensor:
    """Layer 9 of a window of `num` real frames (padded to 6): [1, num, 64]."""
    return extractor.window_taps(frames(num), torch.Generator().manual_seed(0))[9]


class RecordOps(TorchDispatchMode):
    """Counts the aten ops that run (the outermost ones: a fused op's insides are not seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def test_attention_runs_scaled_dot_product_attention(tiny_weights):
    """diffusers' UNet and VAE attention is `AttnProcessor2_0`, one SDPA call per attention and
    no softmax of our own; OpenCLIP's tower takes SDPA under autocast and PyTorch's fused
    inference kernel in float32 (on CUDA that kernel calls SDPA too)."""
    unet, vae, clip = models = fresh_models(tiny_weights)
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"AttnProcessor2_0"}
    assert {type(p).__name__ for p in vae.attn_processors.values()} == {"AttnProcessor2_0"}
    extractor = SVDExtractor(*models, DECODE, ExtractSettings(conditioning="none"))
    with RecordOps() as record:
        taps(extractor, 6)
    # to layer 9: 6 spatio-temporal transformers x 4 attentions (spatial and temporal, self and
    # cross); the VAE's mid-block attention once (6 frames in one chunk of 8)
    assert record.ops["aten.scaled_dot_product_attention"] == 6 * 4 + 1
    assert not {"aten._softmax", "aten.bmm", "aten.baddbmm"} & set(record.ops)
    image = torch.rand(1, 3, 32, 32)
    with torch.inference_mode(), RecordOps() as plain:
        clip.encode_image(image)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), RecordOps() as autocast:
        clip.encode_image(image)
    assert plain.ops["aten._native_multi_head_attention"] == 2  # 2 layers, fused
    assert autocast.ops["aten.scaled_dot_product_attention"] == 2


def test_tf32_is_scoped_to_each_window_and_changes_nothing_on_cpu(tiny_weights):
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = matmul.fp32_precision, conv.fp32_precision
    with pytest.raises(RuntimeError, match="inside"), tf32_scope(True):
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
        raise RuntimeError("inside")
    assert (matmul.fp32_precision, conv.fp32_precision) == before  # restored, even on an error
    with tf32_scope(False):
        assert (matmul.fp32_precision, conv.fp32_precision) == before

    models = fresh_models(tiny_weights)
    default = taps(SVDExtractor(*models, DECODE, ExtractSettings()), 4)
    tuned = SVDExtractor(*models, DECODE, ExtractSettings(tf32=True))
    seen = []
    tuned.vae.encoder.register_forward_pre_hook(lambda *_: seen.append(matmul.fp32_precision))
    assert torch.equal(taps(tuned, 4), default)  # CPU ops have no TF32
    assert seen == ["tf32", "tf32"] and matmul.fp32_precision == before[0]  # both VAE passes


def test_channels_last_matches_the_default_within_float32_rounding(tiny_weights):
    models = fresh_models(tiny_weights)
    unet, vae, _ = models
    default = {n: taps(SVDExtractor(*models, DECODE, ExtractSettings()), n) for n in (6, 4)}
    tuned = SVDExtractor(*models, DECODE, ExtractSettings(channels_last=True))
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert vae.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    temporal = unet.down_blocks[0].resnets[0].temporal_res_block.conv1.weight  # Conv3d: stays 5-D contiguous
    assert temporal.dim() == 5 and temporal.is_contiguous()
    moved = {n: ((taps(tuned, n) - default[n]).abs().max() / default[n].abs().max()).item() for n in (6, 4)}
    # measured 7.4e-6 for a full window; 2.1e-3 for 4 real frames and 2 black padding frames:
    # PyTorch's channels-last CPU GroupNorm loses precision on the near-constant groups of a
    # black frame (5.5e-2 against float64 there, contiguous 2e-6), which the temporal layers
    # carry into the real frames (docs/design.md, "GPU tuning")
    assert 0 < moved[6] < 1e-4 and 0 < moved[4] < 1e-2, moved
    # a default extractor on the same modules puts the weights back
    SVDExtractor(*models, DECODE, ExtractSettings())
    assert unet.conv_in.weight.is_contiguous() and vae.encoder.conv_in.weight.is_contiguous()
    set_conv_memory_format([unet], channels_last=True)
    assert unet.down_blocks[1].downsamplers[0].conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_is_wired_to_the_modules_that_run(tiny_weights):
    """Only the wiring: compiling even the tiny models takes minutes on 2 CPU cores (546 s for
    the first window, measured; features then 7.5e-6 of their scale from eager), so the
    compiled modules are not run here; benchmarks/bench_gpu_tuning.py runs them on a GPU."""
    unet, vae, clip = fresh_models(tiny_weights)
    SVDExtractor(unet, vae, clip, DECODE, ExtractSettings(layers=(3,), compile="default"))
    compiled = {id(m) for m in unet.modules() if getattr(m, "_compiled_call_impl", None) is not None}
    assert compiled == {id(m) for m in down_path_modules(unet, 3)}
    assert vae.encoder._compiled_call_impl is not None and clip.visual._compiled_call_impl is None


def test_down_path_modules_are_the_ones_the_tap_loop_calls_in_order(tiny_weights):
    unet = fresh_models(tiny_weights)[0]
    sample = torch.zeros(1, 2, 8, 8, 8)  # [b, f, c, h, w]: 2 frames of an 8x8 latent
    # conv_in; (resnet, attention) pairs and a downsampler per block; block 3 has resnets only
    for deepest, count in ((3, 5), (9, 15), (13, 19)):
        units, calls = down_path_modules(unet, deepest), []
        handles = [m.register_forward_hook(lambda m, *_, calls=calls: calls.append(id(m))) for m in units]
        with torch.inference_mode():
            tap_unet(unet, sample, torch.zeros(1), torch.zeros(2, 1, 32), torch.zeros(1, 3), torch.zeros(1, 2), (deepest,))
        for handle in handles:
            handle.remove()
        assert calls == [id(m) for m in units] and len(units) == count, deepest


def test_tuning_fields_are_validated_hashed_when_set_and_never_seed_the_draws():
    with pytest.raises(TypeError, match="`tf32`"):
        ExtractSettings(tf32="yes")
    with pytest.raises(ValueError, match="`compile`"):
        ExtractSettings(compile="max-autotune")  # CUDA graphs: left out on purpose
    tuned = ExtractSettings(tf32=True, channels_last=True, compile="default")
    assert video_seed("a", tuned) == video_seed("a", ExtractSettings()) != video_seed("a", ExtractSettings(seed=1))
