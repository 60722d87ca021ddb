"""Peak RSS and wall time of loading a full-size SVD-XT UNet + VAE from fp16 safetensors.

    PYTHONPATH=src python benchmarks/bench_weights_loading.py --dir /tmp/svd-bench [--keep]

1. writes (once) random fp16 values of the full-size SVD-XT UNet and VAE, in the diffusers
   layout, under `--dir` (about 3.25 GB; check `df -h` first); the files are named without the
   `.fp16` variant suffix so that loaders without variant support read them too;
2. in a fresh subprocess per run, loads them with `actiondiff.features.weights.load_svd`
   (dtype float16) and reports wall time and peak RSS (`ru_maxrss` of that subprocess) after
   loading and after touching every value once (memory-mapped tensors count only then);
3. deletes the files unless `--keep`.
The values are random (nothing here needs real weights); their size is what matters.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, scaling_factor=0.18215,
)


def write_weights(root: Path) -> int:
    """Full-size UNet (class defaults = SVD-XT) and VAE, random fp16; returns bytes written."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from safetensors.torch import save_file

    total = 0
    for name, cls, config in (("unet", UNetSpatioTemporalConditionModel, {}), ("vae", AutoencoderKLTemporalDecoder, VAE_CONFIG)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        with torch.device("meta"):
            model = cls(**config)
        generator = torch.Generator().manual_seed(0)
        state = {k: (torch.randn(v.shape, generator=generator) * 0.02).to(torch.float16) for k, v in model.state_dict().items()}
        path = folder / "diffusion_pytorch_model.safetensors"
        save_file(state, str(path))
        del state
        (folder / "config.json").write_text(json.dumps({"_class_name": cls.__name__, **dict(model.config)}, default=list) + "\n")
        total += path.stat().st_size
    return total


def measure(root: Path) -> dict:
    """Load once in this process (the subprocess side): wall time, peak RSS."""
    import torch

    from actiondiff.features.weights import load_svd

    start = time.perf_counter()
    unet, vae = load_svd(root, dtype=torch.float16)
    seconds = time.perf_counter() - start
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # touch every value once (a forward pass would): memory-mapped tensors become resident
    with torch.no_grad():
        checksum = sum(float(p.float().sum()) for p in [*unet.parameters(), *vae.parameters()])
    touched = time.perf_counter() - start
    params = sum(p.numel() for p in unet.parameters()) + sum(p.numel() for p in vae.parameters())
    dtypes = sorted({str(p.dtype) for p in [*unet.parameters(), *vae.parameters()]})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    loaded = sum(p.numel() * p.element_size() for p in [*unet.parameters(), *vae.parameters()])
    return {"load_seconds": round(seconds, 1), "load_and_touch_seconds": round(touched, 1),
            "peak_rss_after_load_gb": round(after_load / 1e9, 2), "peak_rss_after_touch_gb": round(peak / 1e9, 2),
            "loaded_gb": round(loaded / 1e9, 2), "params": params, "dtypes": dtypes, "checksum": round(checksum, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/svd-bench")
    parser.add_argument("--keep", action="store_true", help="keep the written files")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the subprocess side
    args = parser.parse_args()
    root = Path(args.dir)
    if args.measure:
        print(json.dumps(measure(root)))
        return
    if not (root / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        start = time.perf_counter()
        size = write_weights(root)
        print(f"wrote {size / 1e9:.2f} GB of random fp16 weights to {root} in {time.perf_counter() - start:.0f} s")
    try:
        result = subprocess.run([sys.executable, __file__, "--dir", str(root), "--measure"], check=True,
                                capture_output=True, text=True)
        print(result.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
