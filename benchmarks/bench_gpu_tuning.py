"""The GPU tuning steps of the SVD extractor, each measured on its own: model-only and end to end.

Run (one command on a GPU node; writes the Markdown table to --out as well as stdout):
    PYTHONPATH=src python benchmarks/bench_gpu_tuning.py --device cuda --arch svd-xt --seconds 30 \\
        --peak-tflops 989 --peak-tflops-tf32 494 --peak-tflops-fp32 67 --out gpu_tuning.md
    PYTHONPATH=src python benchmarks/bench_gpu_tuning.py                  # CPU, tiny SVD, 64x112

Rows, cumulative (each adds one `ExtractSettings` field to the row above; see
src/actiondiff/features/gpu_tuning.py), then one reference row:
1. `fp32`: dtype float32 (cuDNN convolutions in TF32 if PyTorch's default allows it);
2. `bf16`: UNet and CLIP under bfloat16 autocast, VAE in float32: the dataset configs today;
3. `+tf32`: TF32 matmuls and convolutions for the float32 VAE;
4. `+channels_last`: NHWC convolutions in the UNet and the VAE encoder;
5. `+compile`: torch.compile (mode default) of the UNet down path and the VAE encoder;
6. `all bf16` (reference, not cumulative): every model cast to bfloat16, VAE included, the
   setting of BENCHMARKS.md's 48.3 frames/s H200 measurement (2026-11-25).
For each row, on one clip (320x240 H.264 at 24 fps, stride 4, the paper's layer 9 / t = 20):
model-only frames/s (`extract_window` on windows already decoded onto the device), end to end
frames/s (`extract_windows`, background decoding, `prefetch` 2) and its ratio to model-only, the
share of time the backbone waited for frames, achieved TFLOP/s (exact FLOPs counted on `meta`),
MFU against the bf16 peak and against each part's own precision peak (VAE and UNet/CLIP, convs
and matmuls, each at the bf16, TF32 or FP32 peak its precision gets), and how far the features
moved (max |difference| / max |feature| over all windows) from the fp32 row and from the row
above. Fresh models per row: the extractor converts and compiles in place.
On CPU `compile` is left out unless `--steps` names it (compiling even the tiny model took 546 s
on a 2-core machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decode import write_test_video  # noqa: E402
from bench_throughput import build_extractor, decode_only, end_to_end, model_only, synchronize  # noqa: E402

from actiondiff.features.windows import PREFETCH_WINDOWS  # noqa: E402
from actiondiff.settings import DecodeSettings, ExtractSettings  # noqa: E402
from actiondiff.tools.flops import build_models, ours_flops_by_kind  # noqa: E402

# (row name, the settings it adds to the row above); the reference row starts from defaults
STEPS: dict[str, dict] = {
    "fp32": dict(dtype="float32"),
    "bf16": dict(dtype="bfloat16", half_precision="autocast"),
    "+tf32": dict(tf32=True),
    "+channels_last": dict(channels_last=True),
    "+compile": dict(compile="default"),
}
REFERENCE = {"all bf16 (reference)": dict(dtype="bfloat16", half_precision="cast", vae_dtype="bfloat16")}


def row_settings(names: list[str], base: ExtractSettings) -> dict[str, ExtractSettings]:
    """The settings of each requested row: the chain accumulates, the reference row does not."""
    out, current = {}, base
    for name, change in STEPS.items():
        current = dataclasses.replace(current, **change)
        if name in names:
            out[name] = current
    for name, change in REFERENCE.items():
        if name in names:
            out[name] = dataclasses.replace(base, **change)
    return out


def precision_of(model: str, kind: str, extract: ExtractSettings, device: str) -> str:
    """"bf16", "tf32" or "fp32": the precision the `kind` ops of `model` run in on `device`.

    Half dtypes count at the bf16 peak; float32 convolutions are TF32 when `tf32` is set or
    PyTorch's cuDNN default allows it (it does by default), float32 matmuls only with `tf32`.
    """
    dtype = extract.vae_dtype if model == "vae" else extract.dtype
    if dtype != "float32":
        return "bf16"
    if not device.startswith("cuda"):
        return "fp32"
    if extract.tf32 or (kind == "conv" and torch.backends.cudnn.conv.fp32_precision == "tf32"):
        return "tf32"
    return "fp32" if torch.backends.cuda.matmul.fp32_precision != "tf32" else "tf32"


def mfu_by_precision(fps: float, gflop: dict[tuple[str, str], float], extract: ExtractSettings, device: str,
                     peaks: dict[str, float]) -> float | None:
    """Ideal seconds per frame (each part's FLOPs at its precision's peak) x frames/s; None
    when a needed peak is not given."""
    ideal = 0.0
    for (model, kind), value in gflop.items():
        peak = peaks[precision_of(model, kind, extract, device)]
        if not peak:
            return None
        ideal += value / (peak * 1e3)
    return fps * ideal


def moved(features: list[dict], reference: list[dict]) -> float:
    """max |a - b| / max |b| over every window and tap."""
    diff = max(float(np.abs(a[k] - b[k]).max()) for a, b in zip(features, reference, strict=True) for k in b)
    scale = max(float(np.abs(b[k]).max()) for b in reference for k in b)
    return diff / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", choices=["tiny", "svd-xt"], default="tiny")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (24 fps, stride 4: 6 kept frames/s)")
    parser.add_argument("--height", type=int, default=None, help="default: 576 for svd-xt, 64 for tiny")
    parser.add_argument("--width", type=int, default=None, help="default: 1024 for svd-xt, 112 for tiny")
    parser.add_argument("--steps", nargs="+", choices=[*STEPS, *REFERENCE], default=None,
                        help="rows to measure (default: all; on CPU all but +compile)")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="dense bf16 peak (H200: 989); 0: no MFU")
    parser.add_argument("--peak-tflops-tf32", type=float, default=0.0, help="dense TF32 peak (H200: 494)")
    parser.add_argument("--peak-tflops-fp32", type=float, default=0.0, help="FP32 peak (H200: 67)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    full = args.arch == "svd-xt"
    decode = DecodeSettings(height=args.height or (576 if full else 64), width=args.width or (1024 if full else 112))
    names = args.steps or [n for n in [*STEPS, *REFERENCE] if args.device.startswith("cuda") or n != "+compile"]
    rows = row_settings(names, ExtractSettings())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_gpu_tuning_"))
    workdir.mkdir(parents=True, exist_ok=True)
    video = write_test_video(workdir / f"clip_{args.seconds:g}s.mp4", args.seconds)
    gflop = ours_flops_by_kind(build_models(args.arch), decode, ExtractSettings())
    total_gflop = sum(gflop.values())
    peaks = {"bf16": args.peak_tflops, "tf32": args.peak_tflops_tf32, "fp32": args.peak_tflops_fp32}

    decode_s, windows = decode_only(video, decode, args.device)
    frames = sum(w.shape[0] for w in windows)
    lines, measured = [], {}
    for name, extract in rows.items():
        extractor = build_extractor(args.arch, decode, extract, args.device, workdir)
        features: list[dict] = []
        model_s = model_only(extractor, windows, args.device, features)
        total_s, timings = end_to_end(extractor, video, PREFETCH_WINDOWS, args.device)
        model_fps, e2e_fps = frames / model_s, frames / total_s
        tflops = model_fps * total_gflop / 1e3
        mfu = f"{100 * tflops / args.peak_tflops:.1f}%" if args.peak_tflops else "-"
        mixed = mfu_by_precision(model_fps, gflop, extract, args.device, peaks)
        reference = measured.get("fp32", features)
        # the row it adds to: the row above in the chain; the reference row changes `bf16`
        base = measured.get("bf16") if name in REFERENCE else (list(measured.values()) or [None])[-1]
        lines.append(
            f"| {name} | {model_fps:.2f} | {e2e_fps:.2f} | {e2e_fps / model_fps:.2f} | "
            f"{100 * timings['wait_s'] / total_s:.0f}% | {tflops:.3f} | {mfu} | "
            f"{'-' if mixed is None else f'{100 * mixed:.1f}%'} | {moved(features, reference):.1e} | "
            f"{'-' if base is None else f'{moved(features, base):.1e}'} |"
        )
        print(lines[-1], flush=True)
        measured[name] = features
        del extractor
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    synchronize(args.device)

    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    header = [
        f"{datetime.date.today()}, {card} ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end), "
        f"torch {torch.__version__}; {args.arch} ({'random weights' if full else 'tiny seeded weights'}), "
        f"{frames} kept frames of a {args.seconds:g} s 320x240 clip at {decode.height}x{decode.width}, layer 9, t = 20; "
        f"{total_gflop:.1f} GFLOP/frame; decode + resize alone {frames / decode_s:.1f} frames/s",
        "",
        "| row | model-only frames/s | end to end frames/s | e2e / model | backbone waits | TFLOP/s | MFU (bf16 peak) "
        "| MFU (per-precision peaks) | features moved vs fp32 | vs the row it changes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + lines) + "\n"
    print("\n" + table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
