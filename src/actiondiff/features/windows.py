"""The windowed video loop every backbone runs: decode, draw per-video randomness, concatenate.

A video's random draws (conditioning noise, posterior samples) come from a generator seeded by
its content and the settings, never by its name or the run order, so a video extracted again,
under any id, in any shard, gets the same features.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actiondiff.io.video import iter_windows
from actiondiff.settings import DecodeSettings, ExtractSettings, settings_hash
from actiondiff.store.records import VideoFeatures


def video_seed(key: str, settings: ExtractSettings) -> int:
    """A per-video seed from a video key (`content_key`) and the settings (any backbone's;
    `seed` 0 if it has none), independent of run order."""
    text = f"{getattr(settings, 'seed', 0)}:{settings_hash(settings)}:{key}"
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


@torch.inference_mode()
def extract_windows(
    path: str | Path,
    video_id: str,
    decode: DecodeSettings,
    seed_settings: Any,
    extract_window: Callable[[torch.Tensor, torch.Generator], dict[str, np.ndarray]],
) -> VideoFeatures:
    """Decode one video in windows and concatenate `extract_window`'s features of each.

    Args:
        decode: frame sampling, size and window length of the backbone.
        seed_settings: the settings object the video's generator is seeded from (with its `content_key`).
        extract_window: [f, 3, h, w] frames in [-1, 1] and the generator -> {tap: [f, c]}.
    """
    generator = torch.Generator(device="cpu").manual_seed(video_seed(content_key(path), seed_settings))
    parts: dict[str, list[np.ndarray]] = {}
    indices, stamps = [], []
    for window in iter_windows(path, decode):
        for name, value in extract_window(window.frames, generator).items():
            parts.setdefault(name, []).append(value)
        indices.append(window.frame_index)
        stamps.append(window.timestamp_ms)
    return VideoFeatures(
        video_id=video_id,
        features={name: np.concatenate(chunks) for name, chunks in parts.items()},
        frame_index=np.concatenate(indices),
        timestamp_ms=np.concatenate(stamps),
    )
