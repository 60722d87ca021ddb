"""Training throughput of the heads on synthetic features of a full-size dataset.

Shape measured: 30,000 videos x 75 frames x 1280 channels (layer 9 of SVD-XT), 140 classes,
batch 16, max_length 75. Only a subset of videos is materialised and only a few optimiser
steps are timed; the epoch time is extrapolated as (videos / batch) x the mean step time.
Data time (collating in-memory float16 sequences into a padded batch) is timed apart from
compute time (forward, loss, backward, optimiser step), and reading a packed Zarr store of
the subset into memory is timed and extrapolated linearly to all videos.

Run:  PYTHONPATH=src python benchmarks/bench_training.py [--device cuda] [--steps 3]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from actiondiff.learn.head import HeadSettings, build_head
from actiondiff.learn.train import TrainSettings, collate, fit_length, loss_fn, mixup
from actiondiff.store.cache import FeatureCache
from actiondiff.store.packed import FeatureStore, pack_store
from actiondiff.store.records import VideoFeatures


def cpu_model() -> str:
    """The CPU's model name from lscpu (or the platform string)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def synthetic_sequences(num_videos: int, frames: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """[frames, width] float16 sequences (float16 as in the store)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((frames, width), dtype=np.float32).astype(np.float16) for _ in range(num_videos)]


def time_store_read(sequences: list[np.ndarray], directory: Path) -> tuple[float, float]:
    """Pack the sequences into a store (through a per-video cache), then time `FeatureStore.read`.

    Returns:
        (seconds to read all of them into memory as float16, store bytes on disk).
    """
    cache = FeatureCache(directory / "cache", "synthetic")
    for i, s in enumerate(sequences):
        cache.commit(VideoFeatures(f"v{i:06d}", {"L09_T20": s}, np.arange(len(s)), np.arange(len(s)) * 40.0))
    ids = [f"v{i:06d}" for i in range(len(sequences))]
    pack_store(cache, ids, directory / "store.zarr", {"settings": {}, "settings_hash": "synthetic", "backbone": {}})
    start = time.perf_counter()
    FeatureStore(directory / "store.zarr").read("L09_T20")
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (directory / "store.zarr").rglob("*") if p.is_file())
    return seconds, float(size)


def time_steps(
    kind: str, sequences: list[np.ndarray], classes: int, args: argparse.Namespace
) -> dict[str, float]:
    """Mean data and compute seconds per optimiser step of one head, after warm-up steps."""
    device = torch.device(args.device)
    head = HeadSettings(kind=kind, max_length=args.frames)
    settings = TrainSettings(batch_size=args.batch, mixup_alpha=0.2, multilabel=True, loss="focal")
    torch.manual_seed(0)
    model = build_head(args.width, classes, head).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng(0)
    targets = (rng.random((len(sequences), classes)) < 0.02).astype(np.float32)
    fitted = [fit_length(s, head) for s in sequences]
    data_s, compute_s = [], []
    for step in range(args.warmup + args.steps):
        index = rng.choice(len(fitted), size=args.batch, replace=False)
        start = time.perf_counter()
        frames, padding = collate([fitted[i] for i in index], head)
        target = torch.from_numpy(targets[index])
        frames, padding, target = mixup(frames, padding, target, 0.7, torch.randperm(args.batch))
        frames, padding, target = frames.to(device), padding.to(device), target.to(device)
        middle = time.perf_counter()
        loss = loss_fn(model(frames, padding), target, settings)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        end = time.perf_counter()
        if step >= args.warmup:
            data_s.append(middle - start)
            compute_s.append(end - middle)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "data": float(np.mean(data_s)),
        "compute": float(np.mean(compute_s)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=30_000, help="dataset size extrapolated to")
    parser.add_argument("--frames", type=int, default=75)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--classes", type=int, default=140)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--subset", type=int, default=256, help="videos materialised in memory and in the store")
    parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps per head")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--heads", default="transformer,mlp,linear")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sequences = synthetic_sequences(args.subset, args.frames, args.width)
    with tempfile.TemporaryDirectory() as tmp:
        read_s, size = time_store_read(sequences, Path(tmp))
    steps_per_epoch = math.ceil(args.videos / args.batch)
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"{cpu_model()}, {torch.get_num_threads()} threads"
    print(f"device: {device_name}; torch {torch.__version__}; {args.videos} videos x {args.frames} frames x {args.width}, "
          f"{args.classes} classes, batch {args.batch}; {args.steps} timed steps after {args.warmup} warm-up, "
          f"extrapolated to {steps_per_epoch} steps per epoch\n")
    print("| head | parameters | data ms/step | compute ms/step | sequences/s | data share | epoch (extrapolated) |")
    print("|---|---|---|---|---|---|---|")
    for kind in args.heads.split(","):
        result = time_steps(kind, sequences, args.classes, args)
        step = result["data"] + result["compute"]
        epoch = steps_per_epoch * step
        print(
            f"| {kind} | {result['params'] / 1e6:.1f} M | {1e3 * result['data']:.1f} | {1e3 * result['compute']:.1f} | "
            f"{args.batch / step:.1f} | {100 * result['data'] / step:.1f}% | {epoch / 60:.1f} min ({epoch / 3600:.2f} h) |"
        )
    per_video = read_s / args.subset
    print(
        f"\nstore read: {args.subset} videos ({size / 2**20:.0f} MiB on disk, random float16) in {read_s:.2f} s = "
        f"{1e3 * per_video:.2f} ms/video; extrapolated to {args.videos} videos: {args.videos * per_video:.0f} s once per run, "
        f"{args.videos * args.frames * args.width * 4 / 2**30:.1f} GiB in memory as float32 "
        f"({args.videos * args.frames * args.width * 2 / 2**30:.1f} GiB as float16)."
    )


if __name__ == "__main__":
    main()
