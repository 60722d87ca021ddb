"""The aggregate head at the paper's grid scale, on synthetic features (no backbone): peak memory
and time per training step when every tap is streamed from the store (issue 28).

The grid of the paper: 13 layers x 7 timesteps = 91 taps, SVD-XT UNet widths per layer (76,160
channels per frame in all; `bench_scale.taps_of("grid")`). Synthetic videos (75 frames, as
`bench_scale.py`) are committed to a per-video cache and packed; a child process then does what
`train_seeds` does for `head.kind: aggregate` with `stream=True`: `StoreSequences` over the
pseudo-tap `ALL` (each item one read of the video's rows, every tap), the head's scaling fitted
in one streaming pass, then one epoch of optimiser steps (`run_epoch`), each step timed. Its peak
RSS comes from `os.wait4` (the kernel's ru_maxrss of that child).

Run:  PYTHONPATH=src python benchmarks/bench_aggregate.py [--videos 32] [--batch 8] [--width 256]
      [--max-length 32] [--root DIR]   (prints a Markdown table; deletes its data)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import FRAMES, POOL_ROWS, taps_of, video_features  # noqa: E402


def make_store(root: Path, videos: int) -> tuple[int, float]:
    """Cache and pack `videos` synthetic grid videos at root/store.zarr; (channels, seconds)."""
    from actiondiff.store.cache import FeatureCache
    from actiondiff.store.packed import pack_store
    from actiondiff.store.records import VideoFeatures

    taps = taps_of("grid")
    pool = np.random.default_rng(0).standard_normal((POOL_ROWS, max(taps.values()) + 512), dtype=np.float32)
    cache = FeatureCache(root / "cache", "synthetic")
    start = time.perf_counter()
    ids = [f"v{i:05d}" for i in range(videos)]
    for i, video_id in enumerate(ids):
        cache.commit(VideoFeatures(video_id, video_features(i, pool, taps), np.arange(FRAMES) * 2, np.arange(FRAMES) * 80.0))
    pack_store(cache, ids, root / "store.zarr", {"settings": {}, "settings_hash": "synthetic", "backbone": {}})
    shutil.rmtree(root / "cache")
    return sum(taps.values()), time.perf_counter() - start


def train_child(store_path: str, batch: int, width: int, max_length: int) -> dict:
    """One epoch of the aggregate head streamed from the store; JSON of its timings."""
    import torch

    from actiondiff.learn.head import build_head
    from actiondiff.learn.train import StoreSequences, run_epoch
    from actiondiff.settings import ALL_TAPS, HeadSettings, TrainSettings
    from actiondiff.store.packed import FeatureStore

    torch.manual_seed(0)
    store = FeatureStore(store_path)
    head = HeadSettings(kind="aggregate", aggregate_width=width, max_length=max_length)  # the paper's 6 layers, 8 heads
    settings = TrainSettings(batch_size=batch, epochs=1, mixup_alpha=0.2, multilabel=True)
    sequences = StoreSequences(store, ALL_TAPS, np.arange(len(store.video_ids)), head)
    targets = np.eye(4, dtype=np.float32)[np.arange(len(sequences)) % 4]
    start = time.perf_counter()
    model = build_head(store.columns(ALL_TAPS)[1], 4, head, sequences, store.attrs["tap_columns"])  # fits the scaling
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(min(batch, len(sequences))):  # what one batch reads from the store (every tap)
        sequences[k]
    read_s = time.perf_counter() - start
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    steps = math.ceil(len(sequences) / batch)
    start, cpu = time.perf_counter(), time.process_time()
    run_epoch(model, optimizer, (sequences, targets), head, settings, step=0, total_steps=steps, warmup_steps=1,
              generator=torch.Generator().manual_seed(0), rng=np.random.default_rng(0), device=torch.device("cpu"))
    epoch_s, epoch_cpu = time.perf_counter() - start, time.process_time() - cpu
    params = sum(p.numel() for p in model.parameters())
    return {"fit_s": fit_s, "steps": steps, "read_s": read_s, "step_s": epoch_s / steps, "step_cpu_s": epoch_cpu / steps, "params": params, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=256, help="head.aggregate_width")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--root", help="working folder (default: a temporary one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_child(args.child, args.batch, args.width, args.max_length)))
        return
    root = Path(args.root or tempfile.mkdtemp(prefix="bench_aggregate_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        channels, pack_s = make_store(root, args.videos)
        store_bytes = sum(p.stat().st_size for p in (root / "store.zarr").rglob("*") if p.is_file())
        command = [sys.executable, __file__, "--child", str(root / "store.zarr"), "--batch", str(args.batch),
                   "--width", str(args.width), "--max-length", str(args.max_length)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        out = process.stdout.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"Expected the training child to succeed, but it exited with {status}: {out[-2000:]}")
        result = json.loads(out.strip().splitlines()[-1])
        batch_gib = args.batch * args.max_length * channels * 4 / 2**30
        print("| videos | channels/frame | store (GiB) | batch x frames | float32 batch (GiB) | head params (M) "
              "| scaling fit (s) | batch read (s) | step wall (s) | step CPU (s) | peak RSS (GiB) | torch threads |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {args.videos} | {channels:,} | {store_bytes / 2**30:.2f} | {args.batch} x {args.max_length} | {batch_gib:.2f} "
              f"| {result['params'] / 1e6:.1f} | {result['fit_s']:.1f} | {result['read_s']:.2f} | {result['step_s']:.2f} | {result['step_cpu_s']:.2f} "
              f"| {usage.ru_maxrss / 2**20:.2f} | {result['threads']} |")
        print(f"(pack {pack_s:.0f} s; {result['steps']} steps)")
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
