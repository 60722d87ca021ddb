"""Benchmark of the SVD extractor: our procedure vs the authors', in FLOPs and wall time.

Usage:
    PYTHONPATH=src python benchmarks/bench_extractor.py            # FLOP table + CPU timing (tiny)
    PYTHONPATH=src python benchmarks/bench_extractor.py --skip-flops --repeats 5
    PYTHONPATH=src python benchmarks/bench_extractor.py --gpu      # full-size, bf16, 576x1024, cuda

Prints Markdown tables:
1. GFLOP per frame counted on the `meta` device (full-size SVD-XT + ViT-H-14 at 576x1024) for
   the paper default (layer 9, t = 20) and the 13-layer x 7-timestep grid, authors vs ours.
2. CPU wall time per window, ours (`SVDExtractor.window_taps`) vs the authors' procedure
   (`actiondiff.tools.cost_baseline.authors_window_taps`) on the tiny models, same run, as a ratio.
3. With --gpu: frames/s and peak memory of both procedures with the full-size architecture
   (random weights) in bf16 at 576x1024 on one CUDA device.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time

import torch

from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.settings import DecodeSettings, ExtractSettings
from actiondiff.tools.cost_baseline import authors_window_taps
from actiondiff.tools.flops import cost_table, format_cost_table

DEFAULT = ExtractSettings()  # layer 9, t = 20, middle frame
GRID = ExtractSettings(layers=tuple(range(1, 14)), timestep_indices=(0, 5, 10, 15, 20, 25, 29))
SETTINGS = {"default (L9, t=20)": DEFAULT, "grid (13 layers x 7 timesteps)": GRID}


def flop_tables() -> str:
    """Both FLOP tables for the full-size models at 576x1024."""
    decode = DecodeSettings()
    return "\n\n".join(format_cost_table(cost_table("svd-xt", decode, s), name) for name, s in SETTINGS.items())


def tiny_models(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """Seeded tiny UNet, VAE and OpenCLIP (the test configs), frozen, on the CPU."""
    import open_clip
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from actiondiff.tools.tiny_weights import TINY_CLIP_CONFIG, TINY_UNET_CONFIG, TINY_VAE_CONFIG

    torch.manual_seed(seed)
    models = (
        UNetSpatioTemporalConditionModel(**TINY_UNET_CONFIG),
        AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG),
        open_clip.CLIP(**TINY_CLIP_CONFIG),
    )
    return tuple(m.eval().requires_grad_(False) for m in models)


def _time(fn, repeats: int, synchronize=lambda: None) -> float:
    """Median seconds of `fn()` over `repeats` runs after one warm-up run."""
    fn()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_timing(height: int, width: int, repeats: int) -> str:
    """Seconds per 25-frame window on the CPU, tiny models, ours vs the authors' procedure."""
    models = tiny_models()
    decode = DecodeSettings(height=height, width=width)
    frames = torch.rand(decode.window, 3, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1
    lines = [
        f"CPU wall time per window ({decode.window} frames at {height}x{width}, tiny models, "
        f"{torch.get_num_threads()} threads, median of {repeats})",
        "",
        "| settings | authors s/window | ours s/window | authors / ours |",
        "|---|---|---|---|",
    ]
    for name, settings in SETTINGS.items():
        extractor = SVDExtractor(*models, decode, settings)
        generator = torch.Generator().manual_seed(0)
        ours = _time(lambda ex=extractor, g=generator: ex.window_taps(frames, g), repeats)
        authors = _time(lambda ex=extractor, g=generator: authors_window_taps(ex, frames, g), repeats)
        lines.append(f"| {name} | {authors:.3f} | {ours:.3f} | {authors / ours:.2f}x |")
    return "\n".join(lines)


def models_on(device: str, dtype: torch.dtype, arch: str = "svd-xt") -> tuple[torch.nn.Module, ...]:
    """SVD-XT UNet, SVD VAE and ViT-H-14 (or the tiny configs) with random weights, on the CPU.

    Initialised on `device` (fast on a GPU), cast to `dtype`, then parked on the CPU so that
    each procedure moves to the device only what it runs.
    """
    import open_clip
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from actiondiff.features.weights import (
        SVD_VAE_CONFIG,
        TINY_CLIP_CONFIG,
        TINY_UNET_CONFIG,
        TINY_VAE_CONFIG,
    )

    tiny = arch == "tiny"
    torch.manual_seed(0)
    with torch.device(device):
        models = (
            UNetSpatioTemporalConditionModel(**(TINY_UNET_CONFIG if tiny else {})),
            AutoencoderKLTemporalDecoder(**(TINY_VAE_CONFIG if tiny else SVD_VAE_CONFIG)),
            open_clip.CLIP(**(TINY_CLIP_CONFIG if tiny else open_clip.get_model_config("ViT-H-14"))),
        )
    return tuple(m.to(device, dtype).to("cpu").eval().requires_grad_(False) for m in models)


def gpu_timing(
    windows: int, device: str = "cuda", arch: str = "svd-xt", height: int = 576, width: int = 1024, dtype: str = "bfloat16"
) -> str:
    """Frames/s and peak memory in bf16, ours vs the authors' procedure (full size at 576x1024).

    `device="cpu", arch="tiny", dtype="float32"` and a small size give a quick dry run of this
    code path (bf16 convolutions are very slow on CPUs).
    """
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    models = models_on(device, getattr(torch, dtype), arch)
    decode = DecodeSettings(height=height, width=width)
    frames = torch.rand(decode.window, 3, decode.height, decode.width, generator=torch.Generator().manual_seed(0)) * 2 - 1
    card = torch.cuda.get_device_name() if cuda else "CPU dry run"
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    lines = [
        f"GPU: {card}, {arch} UNet/VAE/OpenCLIP (random weights), {dtype}, {height}x{width}, "
        f"window 25, median of {windows} windows, torch {torch.__version__}",
        "",
        "| settings | procedure | frames/s | s/window | weights on GPU (GiB) | peak GPU memory (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    gib = 1024**3
    for name, settings in SETTINGS.items():
        settings = dataclasses.replace(settings, dtype=dtype)
        for procedure in ("ours", "authors"):
            for model in models:
                model.to("cpu")
            if cuda:
                torch.cuda.empty_cache()
            extractor = SVDExtractor(*models, decode, settings, device=device)  # moves what ours runs
            if procedure == "authors":
                for model in models:  # the authors' procedure runs every module
                    model.to(device)
                run = lambda ex=extractor: authors_window_taps(ex, frames, torch.Generator().manual_seed(0))  # noqa: E731
            else:
                run = lambda ex=extractor: ex.window_taps(frames, torch.Generator().manual_seed(0))  # noqa: E731
            weights = torch.cuda.memory_allocated() / gib if cuda else float("nan")
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            try:
                seconds = _time(run, windows, synchronize)
            except torch.cuda.OutOfMemoryError:
                lines.append(f"| {name} | {procedure} | out of memory | | {weights:.2f} | |")
                continue
            peak = torch.cuda.max_memory_allocated() / gib if cuda else float("nan")
            lines.append(
                f"| {name} | {procedure} | {decode.window / seconds:.1f} | {seconds:.3f} | {weights:.2f} | {peak:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per CPU measurement")
    parser.add_argument("--height", type=int, default=64, help="CPU timing frame height")
    parser.add_argument("--width", type=int, default=64, help="CPU timing frame width")
    parser.add_argument("--skip-flops", action="store_true", help="skip the meta-device FLOP tables")
    parser.add_argument("--skip-cpu", action="store_true", help="skip the CPU timing")
    parser.add_argument("--gpu", action="store_true", help="also time full-size bf16 on CUDA")
    parser.add_argument("--gpu-windows", type=int, default=3, help="timed windows per GPU measurement")
    parser.add_argument("--gpu-dry-run", action="store_true", help="run the --gpu code path on the CPU (tiny, fp32, 32x32)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}\n")
    if not args.skip_flops:
        print("### GFLOP per frame (meta device, SVD-XT + ViT-H-14, 576x1024)\n")
        print(flop_tables() + "\n")
    if not args.skip_cpu:
        print(cpu_timing(args.height, args.width, args.repeats) + "\n")
    if args.gpu:
        print(gpu_timing(args.gpu_windows) + "\n")
    if args.gpu_dry_run:
        print(gpu_timing(1, device="cpu", arch="tiny", height=32, width=32, dtype="float32") + "\n")


if __name__ == "__main__":
    main()
