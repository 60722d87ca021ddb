"""Video input: streaming PyAV decode, frame sampling, resizing and windowing.

Frames are sampled and resized as they are decoded and windows are yielded one at a time, so
memory does not grow with video length. Frames are indexed in decode order (container
timestamps can be non-monotonic or gapped); each kept frame's source index and timestamp are
recorded so features can be traced back to the video.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from .settings import DecodeSettings


class VideoError(RuntimeError):
    """A video could not be read; the message names the video and the reason."""


@dataclass
class Window:
    """Consecutive kept frames of one video, resized and scaled to [-1, 1].

    frames: [f, 3, height, width] float32, f <= window.
    frame_index: [f] int64 source frame index in decode order.
    timestamp_ms: [f] float64 presentation time in milliseconds (NaN where unknown).
    """

    frames: torch.Tensor
    frame_index: np.ndarray
    timestamp_ms: np.ndarray


def resize_frame(rgb: np.ndarray, settings: DecodeSettings) -> torch.Tensor:
    """One decoded RGB frame -> the backbone's input.

    Args:
        rgb: [h, w, 3] uint8.
    Returns:
        [3, height, width] float32 in [-1, 1]; bilinear, align_corners=True, aspect ratio
        stretched (the paper's default) or kept with a centre crop / pad.
    """
    # [h, w, 3] uint8 -> [1, 3, h, w] float in [0, 1]
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    height, width = settings.height, settings.width
    if settings.resize == "keep_aspect_crop":
        image = _crop_to_aspect(image, height / width)
    elif settings.resize == "keep_aspect_pad":
        image = _pad_to_aspect(image, height / width)
    image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=True)
    return (image[0] * 2.0 - 1.0).clamp_(-1.0, 1.0)


def _crop_to_aspect(image: torch.Tensor, aspect: float) -> torch.Tensor:
    h, w = image.shape[-2:]
    if h / w > aspect:  # too tall: crop rows
        new_h = max(1, round(w * aspect))
        top = (h - new_h) // 2
        return image[..., top : top + new_h, :]
    new_w = max(1, round(h / aspect))
    left = (w - new_w) // 2
    return image[..., :, left : left + new_w]


def _pad_to_aspect(image: torch.Tensor, aspect: float) -> torch.Tensor:
    h, w = image.shape[-2:]
    if h / w > aspect:  # too tall: pad columns
        extra = max(0, round(h / aspect) - w)
        return F.pad(image, (extra // 2, extra - extra // 2, 0, 0), value=0.5)
    extra = max(0, round(w * aspect) - h)
    return F.pad(image, (0, 0, extra // 2, extra - extra // 2), value=0.5)


def iter_frames(path: str | Path, settings: DecodeSettings) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (source_index, timestamp_ms, rgb [h, w, 3] uint8) of the kept frames.

    Raises:
        VideoError: the file is missing, unreadable, or has no video stream.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"Expected video file {str(path)!r} to exist, but it does not.")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise VideoError(f"Could not open video {str(path)!r}: {error}") from error
    with container:
        if not container.streams.video:
            raise VideoError(f"Expected video {str(path)!r} to have a video stream, but it has none.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threading in the decoder
        time_base = float(stream.time_base) if stream.time_base else None
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index < settings.offset or (index - settings.offset) % settings.stride:
                    continue
                timestamp = frame.pts * time_base * 1000.0 if frame.pts is not None and time_base else float("nan")
                if settings.max_seconds is not None and timestamp > settings.max_seconds * 1000.0:
                    break
                yield index, timestamp, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as error:
            raise VideoError(f"Could not decode video {str(path)!r} after frame {index}: {error}") from error


def iter_windows(path: str | Path, settings: DecodeSettings) -> Iterator[Window]:
    """Yield the video's kept frames in windows of `settings.window` (the last may be shorter).

    Raises:
        VideoError: as `iter_frames`, or when no frame at all could be decoded.
    """
    frames: list[torch.Tensor] = []
    indices: list[int] = []
    stamps: list[float] = []
    total = 0
    for index, timestamp, rgb in iter_frames(path, settings):
        frames.append(resize_frame(rgb, settings))
        indices.append(index)
        stamps.append(timestamp)
        if len(frames) == settings.window:
            yield _window(frames, indices, stamps)
            total += len(frames)
            frames, indices, stamps = [], [], []
    if frames:
        total += len(frames)
        yield _window(frames, indices, stamps)
    if total == 0:
        raise VideoError(f"Expected video {str(path)!r} to have decodable frames, but it has none.")


def _window(frames: list[torch.Tensor], indices: list[int], stamps: list[float]) -> Window:
    return Window(
        frames=torch.stack(frames),  # f x [3, H, W] -> [f, 3, H, W]
        frame_index=np.asarray(indices, dtype=np.int64),
        timestamp_ms=np.asarray(stamps, dtype=np.float64),
    )
