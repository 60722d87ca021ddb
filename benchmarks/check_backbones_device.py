"""Check the transformers backbones on a GPU: tiny models agree with the CPU, full-size ones run
in bfloat16 close to float32, and their throughput (prints a short Markdown report).

Full-size models are randomly initialised (seeded) from the published configs (no weights are
downloaded), so the timings and the bf16-vs-fp32 agreement are real, the features are not.

Run:  PYTHONPATH=src python benchmarks/check_backbones_device.py --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from actiondiff.features.backbones import LAST_HIDDEN_TAP, backbone_class
from actiondiff.features.backbones.transformer import VideoEncoderSettings
from actiondiff.settings import DecodeSettings, WeightsSettings
from actiondiff.tools.flops import ENCODERS
from actiondiff.tools.tiny_weights import make_tiny_weights

DECODE = DecodeSettings()


def frames(backbone, num: int, seed: int) -> torch.Tensor:
    """[num, 3, h, w] float32 in [-1, 1] on the CPU, as the video module yields them."""
    height, width = backbone.input_size
    return torch.rand(num, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_agreement(device: str) -> list[str]:
    """Tiny checkpoints through the real loader: CPU float32 vs `device` float32 and bfloat16."""
    lines = []
    with tempfile.TemporaryDirectory() as root:
        paths = make_tiny_weights(root, backbones=("videomae", "vjepa2"))
        weights = WeightsSettings(videomae=str(paths["videomae"]), vjepa2=str(paths["vjepa2"]))
        for name in ("videomae", "vjepa2"):
            cls = backbone_class(name)
            out = {}
            for where, dtype in (("cpu", "float32"), (device, "float32"), (device, "bfloat16")):
                backbone = cls.load(VideoEncoderSettings(dtype=dtype), DECODE, weights, device=where)
                out[where, dtype] = backbone.extract_window(frames(backbone, 3, 0), torch.Generator())[LAST_HIDDEN_TAP]
            reference = out["cpu", "float32"]
            f32 = np.abs(out[device, "float32"] - reference).max()
            bf16 = np.abs(out[device, "bfloat16"] - reference).max() / np.abs(reference).max()
            lines.append(f"| tiny {name} | {reference.shape} | max abs diff {device} fp32 vs cpu: {f32:.2e} | "
                         f"bf16 max rel diff: {bf16:.2e} |")
    return lines


def full_size(device: str, clips: int) -> list[str]:
    """Full-size encoders (random init) in bf16 and fp32 on `device`: agreement, clips/s, memory."""
    import transformers

    lines = []
    for label, (name, overrides) in ENCODERS.items():
        config_class, model_class = {
            "videomae": (transformers.VideoMAEConfig, transformers.VideoMAEModel),
            "vjepa2": (transformers.VJEPA2Config, transformers.VJEPA2Model),
        }[name]
        torch.manual_seed(0)
        with torch.device(device):
            model = model_class(config_class(**overrides))
        features, timing = {}, {}
        for dtype in ("float32", "bfloat16"):
            backbone = backbone_class(name)(model, VideoEncoderSettings(dtype=dtype), DECODE, device=device)
            clip = frames(backbone, backbone.clip_length, 1)
            features[dtype] = backbone.extract_window(clip, torch.Generator())[LAST_HIDDEN_TAP]  # warm-up
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            for _ in range(clips):
                backbone.extract_window(clip, torch.Generator())
            torch.cuda.synchronize()
            timing[dtype] = (time.perf_counter() - start) / clips, torch.cuda.max_memory_allocated() / 2**30
        a, b = features["float32"], features["bfloat16"]
        cosine = float((a * b).sum(1).min() / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).max())
        frames_per_s = backbone.clip_length / timing["bfloat16"][0]
        lines.append(
            f"| {label} | {backbone.clip_length} x {backbone.input_size[0]}^2 | "
            f"{1000 * timing['float32'][0]:.0f} / {1000 * timing['bfloat16'][0]:.0f} ms per clip | "
            f"{frames_per_s:,.0f} frames/s bf16, peak {timing['bfloat16'][1]:.1f} GiB | min cosine bf16 vs fp32 {cosine:.4f} |"
        )
        del model, backbone
        torch.cuda.empty_cache()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clips", type=int, default=5, help="timed clips per backbone and dtype")
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name(args.device)}, torch {torch.__version__}")
    print("| check | shape / input | result | | |\n|---|---|---|---|---|")
    print("\n".join(tiny_agreement(args.device)))
    print("| full size | clip | fp32 / bf16 | throughput | agreement |\n|---|---|---|---|---|")
    print("\n".join(full_size(args.device, args.clips)))


if __name__ == "__main__":
    main()
