"""Peak GPU memory of one extraction window, estimated on the `meta` device (no GPU, no weights).

Weights: the bytes of every parameter and buffer the extractor places on the device (UNet down
path to the deepest tap, VAE encoder, CLIP's image tower; in the dtypes they are kept in: under
`half_precision: autocast` the UNet and CLIP keep their float32 weights). Activations: one full
window through `SVDExtractor.window_taps` on full-size models on `meta`, every tensor an op
creates counted from its creation until Python frees it (views and in-place results not again);
the peak of that sum. Attention counts its output only, as the fused kernels PyTorch's SDPA
picks on a GPU (flash / memory-efficient) hold no [tokens x tokens] matrix. Under autocast the
activations are counted with the weights cast (`half_precision: cast`), whose op outputs have
autocast's dtypes. Not counted: the CUDA context, cuDNN / cuBLAS workspaces and the caching
allocator's slack, so a card needs some headroom above the estimate.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from actiondiff.settings import DecodeSettings, ExtractSettings

GIB = 1024**3


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of tensors created by ops while they are alive; keeps the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {id(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and id(tensor) not in inputs and not tensor._is_view():
                size = tensor.numel() * tensor.element_size()
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._free, size)
        return out

    def _free(self, size: int) -> None:
        self.live -= size


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one window: the weights placed on the device and the activation peak."""

    weights: int
    activations: int

    @property
    def total_gib(self) -> float:
        return (self.weights + self.activations) / GIB


def placed_bytes(models: tuple, extract: ExtractSettings) -> int:
    """Bytes of the parameters and buffers an extractor with `extract` places on its device."""
    from actiondiff.features.unet_taps import modules_needed

    unet, vae, clip = models
    half = getattr(torch, extract.dtype).itemsize
    unet_clip = 4 if extract.dtype == "float32" or extract.half_precision == "autocast" else half
    vae_size = getattr(torch, extract.vae_dtype).itemsize

    def count(modules: list, itemsize: int) -> int:
        seen: dict[int, int] = {}
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                seen[id(tensor)] = tensor.numel() * itemsize
        return sum(seen.values())

    clip_modules = {"middle_frame": [clip.visual], "per_frame": [clip.visual], "action_text": [clip]}.get(extract.conditioning, [])
    return (
        count([*modules_needed(unet, extract.deepest_layer), *clip_modules], unet_clip)
        + count([vae.encoder, vae.quant_conv], vae_size)
    )


def window_memory(models: tuple, decode: DecodeSettings, extract: ExtractSettings) -> MemoryEstimate:
    """Estimate the peak bytes of one full window of `decode` / `extract` (see the module doc)."""
    from actiondiff.features.svd_extractor import SVDExtractor

    weights = placed_bytes(models, extract)
    counted = extract
    if extract.dtype != "float32" and extract.half_precision == "autocast":
        counted = dataclasses.replace(extract, half_precision="cast")
    extractor = SVDExtractor(*models, decode, counted, device="meta")
    frames = torch.zeros(decode.window, 3, decode.height, decode.width, device="meta")
    generator = torch.Generator().manual_seed(0)
    mode = LiveBytes()
    with torch.inference_mode(), mode:
        result = extractor.window_taps(frames, generator)
        del result
    return MemoryEstimate(weights, mode.peak)


CARDS_GB = (24, 40, 80)


def config_memory(config: dict[str, Any], chunks: tuple[int, ...] = (8, 4, 2), arch: str = "svd-xt") -> dict[str, dict[int, MemoryEstimate]]:
    """{feature set: {vae_chunk: estimate}} of a config's sets (`vae_chunk` as configured first)."""
    from actiondiff.plan import feature_sets
    from actiondiff.tools.flops import build_models

    models = build_models(arch)
    out: dict[str, dict[int, MemoryEstimate]] = {}
    for name, fs in feature_sets(config).items():
        own = fs.extract.vae_chunk
        out[name] = {c: window_memory(models, fs.decode, dataclasses.replace(fs.extract, vae_chunk=c)) for c in dict.fromkeys((own, *chunks))}
    return out


def format_config_memory(estimates: dict[str, dict[int, MemoryEstimate]], title: str) -> str:
    """Markdown: GiB per set and `vae_chunk`, the cards (GB) each fits, and the shared pass."""
    chunks = list(next(iter(estimates.values())))
    lines = [
        f"#### {title}",
        "",
        "| feature set | weights GiB | " + " | ".join(f"vae_chunk {c}: total GiB" for c in chunks) + " | fits (as configured) |",
        "|---|---|" + "---|" * len(chunks) + "---|",
    ]
    for name, by_chunk in estimates.items():
        first = by_chunk[chunks[0]]
        lines.append(
            f"| {name} | {first.weights / GIB:.1f} | " + " | ".join(f"{e.total_gib:.1f}" for e in by_chunk.values())
            + f" | {_fits(first.total_gib)} |"
        )
    # one shared pass: every set's modules once (the largest placement), the sets' windows one after the other
    weights = max(by_chunk[chunks[0]].weights for by_chunk in estimates.values())
    peak = (weights + max(by_chunk[chunks[0]].activations for by_chunk in estimates.values())) / GIB
    lines += ["", f"One shared pass of all these sets (modules once, sets one after the other): {peak:.1f} GiB, fits {_fits(peak)}."]
    return "\n".join(lines)


def _fits(gib: float) -> str:
    """The cards of `CARDS_GB` whose memory (GB = 1e9 bytes) holds `gib` GiB."""
    cards = [f"{gb} GB" for gb in CARDS_GB if gib * GIB <= gb * 1e9]
    return ", ".join(cards) or "none of " + "/".join(map(str, CARDS_GB)) + " GB"
