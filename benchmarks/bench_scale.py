"""Pack and training-side memory at the paper's scale, on synthetic features (no backbone).

Per-video features shaped like the real ones (float32 in the cache, as extraction writes them,
~75 kept frames per video) are written straight into a per-video cache, then packed in a child
process (`pack_store`), whose peak RSS comes from `os.wait4` (the kernel's ru_maxrss of that
child). Shapes:
- one tap: 1280 channels (layer 9 of SVD-XT);
- the grid: 13 layers x 7 timesteps = 91 taps, the SVD-XT UNet widths per layer
  (320 x 4, 640 x 3, 1280 x 6: 10,880 channels per timestep summed over layers).
Training side: a child opens the one-tap store and does what `train_seeds` does before the
first epoch (read the train + val videos of one tap fitted to max_length 75 as float16, fit the
head's scaling), then trains a linear head for a few steps on a subset; its peak RSS is
compared with the float16 size of the tap; it saves that head as a checkpoint. An evaluation
child then runs `evaluate_run` with it (val + test features read, training labels from the
manifest) and its peak RSS is set beside training's (`--compare-src DIR` runs the evaluation
child a second time with the package of another checkout, e.g. an older version, on
PYTHONPATH). A last child times batches read from memory and streamed from the store
(`StoreSequences`).

Features come from a fixed pool of random rows (video i takes rows at its own stride plus its
own offset): cheap to make, different per video, and about as incompressible as random data.
Run:  PYTHONPATH=src python benchmarks/bench_scale.py --videos 1000,10000,30000 [--grid 250,1000]
      [--root DIR] [--train 30000] [--compare-src DIR]   (prints Markdown tables; deletes its data as it goes)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FRAMES = 75
LAYER_WIDTHS = (320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280)  # 13 layers: 10,880
TIMESTEPS = (0, 5, 10, 15, 20, 25, 29)
POOL_ROWS = 4096


def taps_of(kind: str) -> dict[str, int]:
    """{tap: width}: one tap (L09_T20, 1280 channels) or the 91-tap grid."""
    if kind == "tap":
        return {"L09_T20": 1280}
    return {f"L{layer:02d}_T{t:02d}": width for layer, width in enumerate(LAYER_WIDTHS, start=1) for t in TIMESTEPS}


def video_features(i: int, pool: np.ndarray, taps: dict[str, int]) -> dict[str, np.ndarray]:
    """{tap: [FRAMES, width] float32} of video i, from the random pool."""
    rows = (i * 7919 + np.arange(FRAMES) * (1 + i % 13)) % POOL_ROWS
    block = pool[rows] + np.float32(i % 101) / 101  # [FRAMES, pool width]
    out, column = {}, 0
    for tap, width in taps.items():
        out[tap] = block[:, column % (pool.shape[1] - width + 1) : column % (pool.shape[1] - width + 1) + width]
        column += 97
    return out


def write_cache(root: Path, videos: int, kind: str) -> float:
    """Commit `videos` synthetic videos into a cache at root/cache; returns seconds."""
    from actiondiff.store.cache import FeatureCache
    from actiondiff.store.records import VideoFeatures

    taps = taps_of(kind)
    pool = np.random.default_rng(0).standard_normal((POOL_ROWS, max(taps.values()) + 512), dtype=np.float32)
    cache = FeatureCache(root / "cache", "synthetic")
    start = time.perf_counter()
    for i in range(videos):
        cache.commit(VideoFeatures(f"v{i:06d}", video_features(i, pool, taps), np.arange(FRAMES) * 2, np.arange(FRAMES) * 80.0))
    return time.perf_counter() - start


def child(args: list[str], src: str | None = None) -> tuple[dict, float]:
    """Run this script's child mode; (its JSON line, its peak RSS in GiB from wait4).

    Args:
        src: a package folder put first on the child's PYTHONPATH (None: this environment's).
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)) if src else None
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    out = process.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"Expected the child {args} to succeed, but it exited with {status}: {out[-2000:]}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 2**20  # KiB -> GiB


def child_pack(root: Path, videos: int) -> None:
    from actiondiff.store.cache import FeatureCache
    from actiondiff.store.packed import pack_store

    start = time.perf_counter()
    pack_store(FeatureCache(root / "cache", "synthetic"), [f"v{i:06d}" for i in range(videos)], root / "store.zarr",
               {"settings": {}, "settings_hash": "synthetic", "backbone": {}})
    seconds = time.perf_counter() - start
    files = [p for p in (root / "store.zarr").rglob("*") if p.is_file()]
    print(json.dumps({"seconds": seconds, "bytes": sum(p.stat().st_size for p in files), "files": len(files)}))


def manifest_of(videos: int):
    """Synthetic manifest: 140 classes, 90% train, 9% val, 1% test (training reads 99%)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    split = np.where(np.arange(videos) % 100 == 0, "test", np.where(np.arange(videos) % 100 < 10, "val", "train"))
    return pd.DataFrame({"video_id": [f"v{i:06d}" for i in range(videos)], "labels": [f"c{c:03d}" for c in rng.integers(0, 140, videos)],
                         "domain": "d", "split": split, "path": ""})


def child_train(root: Path, videos: int, steps: int) -> None:
    """What train_seeds does before the first epoch, then `steps` steps of a linear head."""
    import torch

    from actiondiff.learn.head import HeadSettings, build_head
    from actiondiff.learn.protocols import ProtocolSettings
    from actiondiff.learn.run import load_sets
    from actiondiff.learn.train import TrainSettings, checkpoint_info, save_checkpoint, train_head
    from actiondiff.store.packed import FeatureStore

    torch.set_num_threads(2)
    head = HeadSettings(kind="linear", max_length=FRAMES)
    start = time.perf_counter()
    store = FeatureStore(root / "store.zarr")
    sets = load_sets(store, manifest_of(videos), "L09_T20", ProtocolSettings(), roles=("train", "val"), head=head)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    build_head(1280, 140, head, sets["train"].sequences)  # the scaling is fitted over every training video
    fit_s = time.perf_counter() - start
    train, val = sets["train"], sets["val"]
    n = steps * 16
    start = time.perf_counter()
    settings = TrainSettings(epochs=1, batch_size=16, multilabel=True, loss="focal")
    model, _ = train_head((train.sequences[:n], train.targets[:n]), (val.sequences[:64], val.targets[:64]), head, settings)
    train_s = time.perf_counter() - start
    save_checkpoint(model, root / "seed0.safetensors", checkpoint_info(
        head, settings, classes=sets.classes, settings_hash=store.attrs["settings_hash"], tap="L09_T20", width=1280))
    frames = sum(len(s) for s in train.sequences) + sum(len(s) for s in val.sequences)
    print(json.dumps({"read_s": read_s, "fit_s": fit_s, "train_s": train_s, "frames": frames,
                      "tap_f16_bytes": int(store.offsets[-1]) * 1280 * 2}))


def child_evaluate(root: Path, videos: int) -> None:
    """`evaluate_run` of the head the training child saved: what `actiondiff evaluate` does."""
    import torch

    from actiondiff.learn.protocols import ProtocolSettings
    from actiondiff.learn.run import evaluate_run

    torch.set_num_threads(2)
    start = time.perf_counter()
    result = evaluate_run(root / "store.zarr", manifest_of(videos), ProtocolSettings(), [root / "seed0.safetensors"])
    print(json.dumps({"seconds": time.perf_counter() - start, "test_videos": result.num_test_videos,
                      "val_videos": result.in_domain.num_videos if result.in_domain else 0}))


def child_batches(root: Path, batches: int) -> None:
    """Seconds per batch of 16 random videos: collated from memory vs streamed from the store."""
    from actiondiff.learn.head import HeadSettings
    from actiondiff.learn.train import StoreSequences, collate, read_fitted
    from actiondiff.store.packed import FeatureStore

    head = HeadSettings(kind="linear", max_length=FRAMES)
    store = FeatureStore(root / "store.zarr")
    rng = np.random.default_rng(0)
    picks = [rng.choice(len(store.video_ids), 16, replace=False) for _ in range(batches)]
    lazy = StoreSequences(store, "L09_T20", np.arange(len(store.video_ids)), head)
    start = time.perf_counter()
    for index in picks:
        collate([lazy[i] for i in index], head)
    streamed = (time.perf_counter() - start) / batches
    subset = np.unique(np.concatenate(picks))
    memory = dict(zip(subset.tolist(), read_fitted(store, "L09_T20", subset, head), strict=True))
    start = time.perf_counter()
    for index in picks:
        collate([memory[i] for i in index], head)
    in_memory = (time.perf_counter() - start) / batches
    print(json.dumps({"streamed_s": streamed, "memory_s": in_memory}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default="1000,10000,30000", help="one-tap dataset sizes")
    parser.add_argument("--grid", default="250,1000", help="grid dataset sizes (disk: ~34 GB per 1,000 videos)")
    parser.add_argument("--train", type=int, default=30000, help="one-tap size also measured on the training side (0: none)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--root", default="/tmp/bench_scale")
    parser.add_argument("--compare-src", default="", help="also evaluate with the package of this src folder (e.g. an older checkout)")
    args = parser.parse_args()
    root = Path(args.root)
    print("| shape | videos | cache write s | pack s | pack peak RSS GiB | store GiB | store files |")
    print("|---|---|---|---|---|---|---|")
    runs = [("tap", int(v)) for v in args.videos.split(",") if v] + [("grid", int(v)) for v in args.grid.split(",") if v]
    training = []
    for kind, videos in runs:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        try:
            write_s = write_cache(root, videos, kind)
            packed, rss = child(["pack", str(root), str(videos)])
            print(f"| {kind} ({sum(taps_of(kind).values())} channels) | {videos:,} | {write_s:.0f} | {packed['seconds']:.0f} | "
                  f"{rss:.2f} | {packed['bytes'] / 2**30:.2f} | {packed['files']:,} |", flush=True)
            if kind == "tap" and videos == args.train:
                shutil.rmtree(root / "cache")  # the store is all training reads
                trained, train_rss = child(["train", str(root), str(videos), str(args.steps)])
                sources = ["", *([args.compare_src] if args.compare_src else [])]  # "": this environment's package
                evaluated = [(src, *child(["evaluate", str(root), str(videos)], src)) for src in sources]
                batches, _ = child(["batches", str(root), "20"])
                training.append((videos, trained, train_rss, batches, evaluated))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    for videos, trained, rss, batches, evaluated in training:
        tap = trained["tap_f16_bytes"] / 2**30
        print(f"\nTraining side, one tap of {videos:,} videos (float16 size of the tap {tap:.2f} GiB; train + val read: "
              f"{trained['frames'] * 1280 * 2 / 2**30:.2f} GiB): peak RSS {rss:.2f} GiB = {rss / tap:.2f} x the tap; "
              f"read {trained['read_s']:.0f} s, scaling fit {trained['fit_s']:.0f} s, {args.steps} linear-head steps "
              f"{trained['train_s']:.0f} s. Batch of 16 (collate): {1e3 * batches['memory_s']:.1f} ms from memory, "
              f"{1e3 * batches['streamed_s']:.1f} ms streamed from the store.")
        for src, result, eval_rss in evaluated:
            print(f"Evaluation{f' with {src}' if src else ''} ({result['val_videos']:,} val + {result['test_videos']:,} test videos): "
                  f"peak RSS {eval_rss:.2f} GiB ({eval_rss / rss:.2f} x training's), {result['seconds']:.0f} s.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("pack", "train", "evaluate", "batches"):
        mode, where, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
        if mode == "pack":
            child_pack(where, count)
        elif mode == "train":
            child_train(where, count, int(sys.argv[4]))
        elif mode == "evaluate":
            child_evaluate(where, count)
        else:
            child_batches(where, count)
    else:
        main()
