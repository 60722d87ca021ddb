"""Running the frozen SVD models faster on a GPU: TF32, channels-last memory, torch.compile.

Each is an `ExtractSettings` field, off by default (`tf32`, `channels_last`, `compile`), so the
default features are those of before these options existed; each changes the rounding of the
features, never what is computed, and is measured on its own by
`benchmarks/bench_gpu_tuning.py` (BENCHMARKS.md, "GPU tuning").

Attention needs no option: diffusers' UNet and VAE attention layers already run
`F.scaled_dot_product_attention` (`AttnProcessor2_0`), and OpenCLIP's `nn.MultiheadAttention`
reaches it too (under autocast through `F.multi_head_attention_forward`; in float32 through
PyTorch's inference fast path, which uses it on CUDA). tests/test_gpu_tuning.py checks the UNet
and VAE processors and the ops a window runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch


@contextlib.contextmanager
def tf32_scope(enabled: bool) -> Iterator[None]:
    """Inside the block, CUDA float32 matmuls (cuBLAS) and convolutions (cuDNN) may use TF32.

    TF32 keeps float32's range with a 10-bit mantissa, at twice or more the float32 rate on
    Ampere and later GPUs. It reaches only float32 ops: the VAE encoder (`vae_dtype: float32`),
    and everything when `dtype` is float32; ops under bf16 autocast are unaffected. PyTorch's own
    defaults already let cuDNN convolutions use TF32 (`torch.backends.cudnn.conv.fp32_precision`
    is "tf32") but not matmuls ("none"), so on a default PyTorch this adds TF32 matmuls (the
    VAE's attention and linear layers) and holds convolutions at TF32. The process-wide flags
    (the `fp32_precision` API; PyTorch refuses mixing it with the older `allow_tf32` flags)
    are restored on exit. CPU ops never use TF32.

    Args:
        enabled: False leaves the flags as the process has them (a no-op).
    """
    if not enabled:
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "tf32"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def set_conv_memory_format(modules: Iterable[torch.nn.Module], channels_last: bool) -> None:
    """Store the weight of every `Conv2d` in `modules` channels-last (or contiguous), in place.

    A convolution whose weight is channels-last gives channels-last outputs (cuDNN and oneDNN
    follow the weight as well as the input), so the spatial layers that follow run in NHWC:
    the layout Tensor Cores read without transposes. The UNet's temporal `Conv3d` weights stay
    contiguous: channels-last is a 4-D format, and their inputs are frames permuted into time.
    Setting `channels_last=False` undoes an earlier conversion (a no-op on contiguous weights).
    """
    layout = torch.channels_last if channels_last else torch.contiguous_format
    for module in modules:
        for conv in module.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.data = conv.weight.data.contiguous(memory_format=layout)


def compile_modules(modules: Iterable[torch.nn.Module], mode: str) -> None:
    """`torch.compile` each module in place (`nn.Module.compile`) with static shapes.

    Compilation itself happens at each module's first call (the first window: tens of seconds
    at full size) and again for each new input shape; with `dynamic=False` every shape is
    its own graph, which is what a padded, fixed-size window gives.

    Args:
        mode: a torch.compile mode ("default", "max-autotune-no-cudagraphs"); "none" does nothing.
    """
    if mode == "none":
        return
    for module in modules:
        module.compile(mode=mode, dynamic=False)
