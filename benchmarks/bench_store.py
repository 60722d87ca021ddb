"""Blosc-zstd byte- vs bit-shuffle and chunk sizes for packed float16 features.

Synthetic feature-like data: 200 videos x 100 frames x 1280 channels, each channel a smooth
AR(1) process over frames around a per-channel mean and scale (pooled UNet activations vary
slowly in time and differ in scale across channels). Measures compression ratio, pack time
and the time to read 50 random whole videos (what training does).
Run: PYTHONPATH=src python benchmarks/bench_store.py   (prints a Markdown table)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from zarr.codecs import BloscCodec

from actiondiff.store.cache import FeatureCache
from actiondiff.store.packed import FeatureStore, pack_store, store_info
from actiondiff.store.records import VideoFeatures


def feature_like(rng: np.random.Generator, frames: int, channels: int = 1280) -> np.ndarray:
    """[frames, channels] float32: per-channel mean/scale plus AR(1) noise over frames."""
    mean = rng.standard_normal(channels) * 0.5
    scale = np.exp(rng.standard_normal(channels) * 0.5)
    noise = np.empty((frames, channels), dtype=np.float32)
    noise[0] = rng.standard_normal(channels)
    for f in range(1, frames):  # AR(1), coefficient 0.9: slow change over frames
        noise[f] = 0.9 * noise[f - 1] + 0.44 * rng.standard_normal(channels)
    return (mean + scale * noise).astype(np.float32)


def main(num_videos: int = 200, frames: int = 100) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp) / "cache", "bench")
        for i in range(num_videos):
            cache.commit(VideoFeatures(f"v{i:04d}", {"L09_T20": feature_like(rng, frames)}, np.arange(frames) * 4, np.arange(frames) * 160.0))
        ids = [f"v{i:04d}" for i in range(num_videos)]
        attrs = {"settings": {}, "settings_hash": "bench", "backbone": {}}
        print("| shuffle | chunk | ratio | pack s | read 50 videos s |")
        print("|---|---|---|---|---|")
        for shuffle in ("shuffle", "bitshuffle"):
            for chunk_bytes in (1 << 18, 1 << 20, 1 << 22):
                out = Path(tmp) / f"{shuffle}-{chunk_bytes}.zarr"
                start = time.perf_counter()
                pack_store(cache, ids, out, attrs, chunk_bytes=chunk_bytes, compressor=BloscCodec(cname="zstd", clevel=5, shuffle=shuffle))
                pack_s = time.perf_counter() - start
                store = FeatureStore(out)
                start = time.perf_counter()
                for i in np.random.default_rng(1).choice(num_videos, 50, replace=False):
                    store.rows("L09_T20", int(i))
                read_s = time.perf_counter() - start
                ratio = store_info(out)["compression_ratio"]
                print(f"| {shuffle} | {chunk_bytes >> 10} KiB | {ratio:.2f} | {pack_s:.2f} | {read_s:.3f} |", flush=True)


if __name__ == "__main__":
    main()
