"""The windowed video loop every backbone runs: decode, draw per-video randomness, concatenate.

A video's random draws (conditioning noise, posterior samples) come from a generator seeded by
its content and the settings, never by its name or the run order, so a video extracted again,
under any id, in any shard, gets the same features.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actiondiff.io.prefetch import prefetched
from actiondiff.io.video import iter_windows, resize_frames
from actiondiff.settings import DecodeSettings, ExtractSettings, draw_settings, settings_hash
from actiondiff.store.records import VideoFeatures


def video_seed(key: str, settings: ExtractSettings) -> int:
    """A per-video seed from a video key (`content_key`) and the settings (any backbone's;
    `seed` 0 if it has none), independent of run order. The GPU tuning fields
    (`settings.TUNING_FIELDS`) do not enter it: a tuned run draws the untuned run's noise."""
    text = f"{getattr(settings, 'seed', 0)}:{settings_hash(draw_settings(settings))}:{key}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def content_key(path: str | Path, head_bytes: int = 1 << 20) -> str:
    """A video's identity by content: size and SHA-256 of its first MiB (a frame folder: its
    files' names and sizes). The same video gets the same random draws whatever it is called,
    so `predict` on a training video reproduces the stored features exactly. A missing path
    keys by its name (decoding then reports it)."""
    path = Path(path)
    if path.is_dir():
        listing = sorted(f"{f.relative_to(path)}:{f.stat().st_size}" for f in path.rglob("*") if f.is_file())
        return "folder:" + hashlib.sha256("\n".join(listing).encode()).hexdigest()
    if not path.is_file():
        return f"path:{path}"
    with open(path, "rb") as handle:
        head = handle.read(head_bytes)
    return f"file:{path.stat().st_size}:{hashlib.sha256(head).hexdigest()}"


# Windows decoded ahead of the backbone. Measured on 2 CPU cores (BENCHMARKS.md, Throughput) the
# backbone then waited 1-2% of the time for frames; the GPU case is still to be measured.
PREFETCH_WINDOWS = 2


@torch.inference_mode()
def extract_windows(
    path: str | Path,
    video_id: str,
    decode: DecodeSettings,
    seed_settings: Any,
    extract_window: Callable[[torch.Tensor, torch.Generator], dict[str, np.ndarray]],
    device: str | torch.device = "cpu",
    prefetch: int = PREFETCH_WINDOWS,
    timings: dict[str, float] | None = None,
    on_window: Callable[[np.ndarray], None] | None = None,
) -> VideoFeatures:
    """Decode one video in windows and concatenate `extract_window`'s features of each.

    A background thread decodes up to `prefetch` windows ahead (0: decode in this thread, one
    window after the other); the uint8 frames go to `device` and are resized there. Features
    are the same bytes whatever `prefetch` is: the random draws all happen in this thread, in
    window order.

    Args:
        decode: frame sampling, size and window length of the backbone.
        seed_settings: the settings object the video's generator is seeded from (with its `content_key`).
        extract_window: [f, 3, h, w] frames in [-1, 1] on `device` and the generator -> {tap: [f, c]}.
        timings: if given, gets `wait_s` (time the backbone waited for decoded frames),
            `model_s` (resize and `extract_window`) and `frames`, accumulated.
        on_window: if given, called after each window with its [f] int64 source frame indices
            (a progress bar's tick; it sees indices, not frames, so it cannot change features).
    """
    generator = torch.Generator(device="cpu").manual_seed(video_seed(content_key(path), seed_settings))
    parts: dict[str, list[np.ndarray]] = {}
    indices, stamps, waits = [], [], []
    model_s = 0.0
    for window in prefetched(iter_windows(path, decode, resize=False), prefetch, waits):
        start = time.perf_counter()
        frames = _to_input(window.frames, decode, torch.device(device))
        for name, value in extract_window(frames, generator).items():
            parts.setdefault(name, []).append(value)
        model_s += time.perf_counter() - start
        indices.append(window.frame_index)
        stamps.append(window.timestamp_ms)
        if on_window is not None:
            on_window(window.frame_index)
    if timings is not None:
        timings["wait_s"] = timings.get("wait_s", 0.0) + sum(waits)
        timings["model_s"] = timings.get("model_s", 0.0) + model_s
        timings["frames"] = timings.get("frames", 0) + sum(len(i) for i in indices)
    return VideoFeatures(
        video_id=video_id,
        features={name: np.concatenate(chunks) for name, chunks in parts.items()},
        frame_index=np.concatenate(indices),
        timestamp_ms=np.concatenate(stamps),
    )


def _to_input(frames: list[torch.Tensor], decode: DecodeSettings, device: torch.device) -> torch.Tensor:
    """f [h, w, 3] uint8 frames -> [f, 3, height, width] float32 in [-1, 1] on `device`: the
    uint8 frames travel (pinned for a GPU), runs of equal size are resized as one batch."""
    out, run = [], [frames[0]]
    for frame in frames[1:]:
        if frame.shape == run[0].shape:
            run.append(frame)
        else:
            out.append(_resize_run(run, decode, device))
            run = [frame]
    out.append(_resize_run(run, decode, device))
    return out[0] if len(out) == 1 else torch.cat(out)


def _resize_run(run: list[torch.Tensor], decode: DecodeSettings, device: torch.device) -> torch.Tensor:
    batch = torch.stack(run)  # f x [h, w, 3] -> [f, h, w, 3] uint8
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    return resize_frames(batch, decode)
