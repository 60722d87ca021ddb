"""Extraction throughput end to end (decode -> features) against the model alone, same run.

Run:
    PYTHONPATH=src python benchmarks/bench_throughput.py                       # CPU, tiny SVD
    PYTHONPATH=src python benchmarks/bench_throughput.py --device cuda --arch svd-xt --dtype bfloat16

For one clip (default: 60 s of 320x240 H.264 at 24 fps, the paper's stride 4 and 576x1024
input) it measures, in one process:
1. decode alone: windows decoded, sampled and resized on the extraction device (frames/s);
2. the model alone: `extract_window` on windows already decoded onto the device (frames/s);
3. end to end, `extract_windows` with `prefetch` 0 (decode, then model, one after the other:
   the loop before background decoding) and with the default prefetch: frames/s, the share of
   the time the backbone waited for input, and the ratio to the model alone;
4. achieved TFLOP/s: our exact GFLOP/frame (`actiondiff flops`, counted on the meta device)
   times frames/s, against `--peak-tflops` (the device's dense peak for the dtype; MFU).
`--arch svd-xt` builds the full-size models with random weights (no download needed). Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decode import write_test_video  # noqa: E402

from actiondiff.features.svd_extractor import SVDExtractor  # noqa: E402
from actiondiff.features.windows import PREFETCH_WINDOWS, _to_input, extract_windows  # noqa: E402
from actiondiff.io.video import iter_windows  # noqa: E402
from actiondiff.settings import DecodeSettings, ExtractSettings  # noqa: E402
from actiondiff.tools.flops import build_models, ours_cost  # noqa: E402


def build_extractor(arch: str, decode: DecodeSettings, extract: ExtractSettings, device: str, workdir: Path) -> SVDExtractor:
    """Tiny seeded weights through the real loaders, or full-size models with random weights.

    Each call builds fresh models: the extractor moves, casts (`half_precision: cast`) and may
    convert or compile (`channels_last`, `compile`) the modules it runs in place.
    """
    if arch == "tiny":
        from actiondiff.settings import WeightsSettings
        from actiondiff.tools.tiny_weights import make_tiny_weights

        paths = make_tiny_weights(workdir / "weights")
        weights = WeightsSettings(svd=str(paths["svd"]), clip_arch=str(paths["clip_arch"]),
                                  clip_checkpoint=str(paths["clip_checkpoint"]))
        return SVDExtractor.from_weights(weights, decode, extract, device)
    return SVDExtractor(*random_models(arch, device), decode, extract, device)


def random_models(arch: str, device: str, seed: int = 0) -> tuple[torch.nn.Module, ...]:
    """Float32 models with seeded random weights, initialised straight on `device` (seconds on
    a GPU; speed does not depend on the values), frozen: `svd-xt` is the SVD-XT UNet, the SVD
    VAE and OpenCLIP ViT-H-14; `tiny` the test configs (a CPU dry run of this path)."""
    torch.manual_seed(seed)
    return build_models(arch, device)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def decode_only(video: Path, decode: DecodeSettings, device: str) -> tuple[float, list[torch.Tensor]]:
    """(seconds, windows on the device) of decoding and resizing the whole clip."""
    start = time.perf_counter()
    windows = [_to_input(w.frames, decode, torch.device(device)) for w in iter_windows(video, decode, resize=False)]
    synchronize(device)
    return time.perf_counter() - start, windows


@torch.inference_mode()
def model_only(extractor: SVDExtractor, windows: list[torch.Tensor], device: str,
               features: list[dict] | None = None) -> float:
    """Seconds of `extract_window` on every window (after one warm-up window); `features`, if
    given, gets each window's {tap: [f, c] array}."""
    generator = torch.Generator().manual_seed(0)
    extractor.extract_window(windows[0], generator)  # warm-up (allocator, kernels, compilation)
    synchronize(device)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for frames in windows:
        out = extractor.extract_window(frames, generator)
        if features is not None:
            features.append(out)
    synchronize(device)
    return time.perf_counter() - start


def end_to_end(extractor: SVDExtractor, video: Path, prefetch: int, device: str) -> tuple[float, dict[str, float]]:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    extract_windows(video, "bench", extractor.decode, extractor.extract, extractor.extract_window, device,
                    prefetch=prefetch, timings=timings)
    synchronize(device)
    return time.perf_counter() - start, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", choices=["tiny", "svd-xt"], default="tiny")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length")
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, nargs="+", default=[9])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[20])
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for the dtype (0: skip MFU)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_throughput_"))
    workdir.mkdir(parents=True, exist_ok=True)
    video = write_test_video(workdir / f"clip_{args.seconds:g}s.mp4", args.seconds)
    decode = DecodeSettings(height=args.height, width=args.width)
    extract = ExtractSettings(layers=tuple(args.layers), timestep_indices=tuple(args.timesteps), dtype=args.dtype)
    extractor = build_extractor(args.arch, decode, extract, args.device, workdir)
    gflop = ours_cost(build_models(args.arch), decode, extract).total

    decode_s, windows = decode_only(video, decode, args.device)
    frames = sum(w.shape[0] for w in windows)
    model_s = model_only(extractor, windows, args.device)
    del windows
    rows = [("decode + resize alone", frames / decode_s, None), ("model alone", frames / model_s, None)]
    for prefetch in (0, PREFETCH_WINDOWS):
        total_s, timings = end_to_end(extractor, video, prefetch, args.device)
        rows.append((f"end to end, prefetch {prefetch}", frames / total_s, timings["wait_s"] / total_s))

    model_fps = frames / model_s
    print(f"device {args.device}, {args.arch} {args.dtype}, {frames} kept frames of a {args.seconds:g} s 320x240 clip "
          f"at {args.height}x{args.width}, layers {args.layers}, timesteps {args.timesteps}; {gflop:.1f} GFLOP/frame\n")
    print("| path | frames/s | vs model alone | backbone waits | TFLOP/s | MFU |")
    print("|---|---|---|---|---|---|")
    for name, fps, wait in rows:
        tflops = fps * gflop / 1e3
        mfu = f"{100 * tflops / args.peak_tflops:.1f}%" if args.peak_tflops else "-"
        waited = "-" if wait is None else f"{100 * wait:.0f}%"
        ratio = "-" if name.startswith("decode") else f"{fps / model_fps:.2f}"
        print(f"| {name} | {fps:.2f} | {ratio} | {waited} | {tflops:.3f} | {mfu} |")


if __name__ == "__main__":
    main()
