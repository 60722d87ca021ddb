"""Video input: streaming PyAV decode, frame sampling, resizing and windowing.

A "video" is a media file FFmpeg can read (any container and codec) or a folder of JPEG/PNG
frames. Frames are sampled (target-fps resampling, then offset and stride, up to
`max_seconds`) and resized as they are decoded, and windows are yielded one at a time, so
memory does not grow with video length. Frames are indexed in decode order (decoder output
order), and their timestamps follow that order: the k-th decoded frame gets the k-th smallest
presentation time (gaps are kept). Raw pts can be out of that order or offset: AVI stores no
presentation times, so FFmpeg's pts there count chunks in decode order, and with B-frames
(MPEG-4 part 2) they are shuffled or shifted by the decoder's delay. Each kept frame's source
index and timestamp are recorded so features can be traced back to the video.

Bad input raises a subclass of `VideoError` naming the video and the reason. A video that
decodes only partly (a truncated file, a corrupt packet, an unreadable image in a folder)
keeps what decoded and emits a `VideoWarning` through the `warnings` module once decoding has
finished; the extraction job records it in the failure manifest with kind "warning".
"""

from __future__ import annotations

import heapq
import re
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from actiondiff.settings import DecodeSettings

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# FFmpeg demuxers that turn non-video files into "video": `tty` renders any .txt as ANSI art.
NON_VIDEO_FORMATS = ("tty",)
# Consecutive undecodable packets after which a stream is given up as garbage.
MAX_BAD_PACKETS = 50
# Decoded frames held back so that out-of-order pts can be sorted into decode order: more than
# the B-frame depth of MPEG-4 part 2 (1-2) and of common H.264 encodes (3); bounded memory.
REORDER_FRAMES = 4
# Demuxers whose pts count frames in decode order rather than give presentation times.
FRAME_COUNTING_FORMATS = ("avi",)


class VideoError(RuntimeError):
    """A video could not be read; the message names the video and the reason."""


class VideoNotFoundError(VideoError):
    """The path is neither a file nor a folder."""


class VideoOpenError(VideoError):
    """FFmpeg cannot open the file: empty, not a media file, or damaged beyond its header."""


class NoVideoStreamError(VideoError):
    """The file opens but holds no video stream (e.g. audio only)."""


class FrameSizeError(VideoError):
    """A frame is larger than `DecodeSettings.max_pixels`."""


class FrameRateError(VideoError):
    """The video's frame rate is unknown but `target_fps` or `max_seconds` needs it."""


class NoFramesError(VideoError):
    """Not one frame could be decoded, or none is left after offset and stride."""


class VideoWarning(UserWarning):
    """A video decoded only partly; the frames that decoded are kept."""


@dataclass
class Window:
    """Consecutive kept frames of one video, resized and scaled to [-1, 1].

    frames: [f, 3, height, width] float32, f <= window (or, decoded with `resize=False`,
        a list of f [h, w, 3] uint8 frames).
    frame_index: [f] int64 source frame index in decode order.
    timestamp_ms: [f] float64 presentation time in milliseconds (NaN where unknown).
    """

    frames: torch.Tensor | list[torch.Tensor]
    frame_index: np.ndarray
    timestamp_ms: np.ndarray


def resize_frame(rgb: np.ndarray, settings: DecodeSettings) -> torch.Tensor:
    """One decoded RGB frame -> the backbone's input.

    Args:
        rgb: [h, w, 3] uint8.
    Returns:
        [3, height, width] float32 in [-1, 1]; see `resize_frames`.
    """
    return resize_frames(torch.from_numpy(np.ascontiguousarray(rgb))[None], settings)[0]


def resize_frames(rgb: torch.Tensor, settings: DecodeSettings) -> torch.Tensor:
    """Decoded RGB frames -> the backbone's input, on the frames' device.

    Args:
        rgb: [f, h, w, 3] uint8, on any device (extraction moves uint8 frames to the GPU and
            resizes there: a quarter of the bytes of float32, and no CPU resize).
    Returns:
        [f, 3, height, width] float32 in [-1, 1]; bilinear, align_corners=True, aspect ratio
        stretched (the paper's default) or kept with a centre crop / pad. Every output pixel is
        computed from its own inputs, so a batch gives the same bytes as one frame at a time.
    """
    # [f, h, w, 3] uint8 -> [f, 3, h, w] float in [-1, 1], contiguous (channels-last input makes
    # the interpolation twice as slow); scaling before the resize touches the smaller image,
    # and bilinear weights sum to 1, so the result is the same up to float rounding.
    image = rgb.permute(0, 3, 1, 2).contiguous()
    image = image.float().mul_(2.0 / 255.0).sub_(1.0)
    height, width = settings.height, settings.width
    if settings.resize == "keep_aspect_crop":
        image = _crop_to_aspect(image, height / width)
    elif settings.resize == "keep_aspect_pad":
        image = _pad_to_aspect(image, height / width)
    image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=True)
    return image.clamp_(-1.0, 1.0)


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
        return F.pad(image, (extra // 2, extra - extra // 2, 0, 0), value=0.0)  # mid grey
    extra = max(0, round(w * aspect) - h)
    return F.pad(image, (0, 0, extra // 2, extra - extra // 2), value=0.0)  # mid grey


def resampled_index(index: int, native_fps: float | None, target_fps: float | None) -> int | None:
    """The position of decoded frame `index` on the target-fps clock, or None if it is dropped.

    Frame i sits at time i / native_fps; target slot k at k / target_fps. A frame is kept when it
    is the first frame to reach a new slot, so 30 -> 10 fps keeps 0, 3, 6, ... Without a target,
    or with a target at or above the native rate, every frame is kept at its own index.
    """
    if target_fps is None or native_fps is None or target_fps >= native_fps:
        return index
    ratio = target_fps / native_fps
    slot = int(np.floor(index * ratio + 1e-9))
    if index > 0 and int(np.floor((index - 1) * ratio + 1e-9)) == slot:
        return None
    return slot


def _reason(error: av.FFmpegError) -> str:
    """FFmpeg's reason for an error, without the file name PyAV appends."""
    return f"{type(error).__name__}: {error.strerror or error}"


def _natural_key(path: Path) -> list[int | str]:
    """Sort key that puts frame_2.jpg before frame_10.jpg."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class _ContainerSource:
    """Decoded frames of the first video stream of a media file, packet by packet."""

    def __init__(self, path: Path, settings: DecodeSettings) -> None:
        self.path, self.problems = path, []
        if path.stat().st_size == 0:
            raise VideoOpenError(f"Expected video file to be non-empty, but got 0 bytes ({path}).")
        try:
            self.container = av.open(str(path))
        except av.FFmpegError as error:
            raise VideoOpenError(
                f"Expected video file to be readable by FFmpeg, but got {_reason(error)} ({path}). "
                f"The file may not be a video, or be truncated (an mp4 whose index, written last, "
                f"is missing)."
            ) from error
        try:
            self._check_stream(settings)
        except VideoError:
            self.container.close()
            raise

    def _check_stream(self, settings: DecodeSettings) -> None:
        if self.container.format.name in NON_VIDEO_FORMATS:
            raise VideoOpenError(
                f"Expected a video file, but FFmpeg reads it as {self.container.format.name!r} "
                f"(text rendered as video) ({self.path})."
            )
        if self.container.format.name.endswith("_pipe") or self.container.format.name == "image2":
            # an image (e.g. a PNG renamed .mp4): it decodes, as a one-frame "video"
            self.problems.append(
                f"FFmpeg reads it as a single image ({self.container.format.name}), not a video: one frame"
            )
        if not self.container.streams.video:
            kinds = sorted({s.type for s in self.container.streams}) or ["none"]
            raise NoVideoStreamError(
                f"Expected video file to have a video stream, but got streams of type {kinds} "
                f"({self.path}). An audio file, or a truncated mp4, looks like this."
            )
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame + slice threading in the decoder
        width, height = self.stream.codec_context.width, self.stream.codec_context.height
        _check_size(width, height, settings, self.path)
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.native_fps = float(rate) if rate else None
        self.time_base = self.stream.time_base  # a Fraction, or None
        self.declared = int(self.stream.frames or 0)  # 0: the container does not say
        self.bad_packets, self.first_bad = 0, ""

    def _stamp(self, frame: av.VideoFrame) -> tuple[int, float]:
        """Sort key (0, ms), or (1, NaN) without a pts: a frame's presentation time.

        A frame-counting demuxer (AVI) is shifted so that the first decoded frame sits at the
        stream's start (its count is off by the decoder's delay with B-frames).
        """
        if frame.pts is None or not self.time_base:
            return 1, np.nan
        if self.shift is None:
            counting = self.container.format.name in FRAME_COUNTING_FORMATS
            self.shift = frame.pts - (self.stream.start_time or 0) if counting else 0
        # exact rational arithmetic, rounded once: pts 2042 at 1/1000 s is 2042.0 ms
        return 0, float((frame.pts - self.shift) * self.time_base * 1000)

    def frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """Yield (timestamp_ms or NaN, frame) in decoder output order; problems are collected.

        Frames are held back `REORDER_FRAMES` at a time, so that each leaves with the smallest
        presentation time not yet given out: times increase with the decode order.
        """
        held: deque[av.VideoFrame] = deque()
        times: list[tuple[int, float]] = []  # a heap
        for frame in self._decoded():
            held.append(frame)
            heapq.heappush(times, self._stamp(frame))
            if len(held) > REORDER_FRAMES:
                yield heapq.heappop(times)[1], held.popleft()
        while held:
            yield heapq.heappop(times)[1], held.popleft()

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Decoded frames in decoder output order; problems are collected."""
        packets = self.container.demux(self.stream)
        bad_in_a_row, decoded = 0, 0
        self.shift = None
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as error:  # the file ends mid-packet or the demuxer gives up
                self.problems.append(f"reading stopped after frame {decoded}: {_reason(error)}")
                break
            try:
                frames = packet.decode()
            except av.FFmpegError as error:  # a corrupt packet: skip it, as ffmpeg does
                self.bad_packets += 1
                self.first_bad = self.first_bad or f"the first after frame {decoded}: {_reason(error)}"
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_BAD_PACKETS:
                    self.problems.append(f"gave up after {MAX_BAD_PACKETS} undecodable packets in a row")
                    break
                continue
            bad_in_a_row = 0
            for frame in frames:
                decoded += 1
                yield frame

    def finished(self, decoded: int, reached_end: bool) -> None:
        """Summarise skipped packets; once read to the end, note a shortfall of declared frames."""
        if self.bad_packets:
            self.problems.append(f"{self.bad_packets} packet(s) did not decode ({self.first_bad})")
        if reached_end and self.declared and decoded < self.declared:
            self.problems.append(
                f"decoded {decoded} of the {self.declared} frames the container declares "
                f"(truncated or damaged file?)"
            )

    def close(self) -> None:
        self.container.close()


class _FolderSource:
    """Frames of a folder of JPEG/PNG images, in natural name order."""

    def __init__(self, path: Path, settings: DecodeSettings) -> None:
        self.path, self.problems = path, []
        self.images = sorted(
            (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key
        )
        if not self.images:
            raise NoFramesError(
                f"Expected frame folder to hold {'/'.join(IMAGE_SUFFIXES)} images, but it holds none ({path})."
            )
        self.native_fps = settings.frame_folder_fps

    def frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """Yield (timestamp_ms or NaN, frame) per readable image; unreadable ones are noted."""
        period = 1000.0 / self.native_fps if self.native_fps else np.nan
        for position, image in enumerate(self.images):
            try:
                with av.open(str(image)) as container:
                    frame = next(container.decode(video=0), None)
            except (av.FFmpegError, IndexError) as error:
                self.problems.append(f"image {image.name} did not decode: {error}")
                continue
            if frame is None:
                self.problems.append(f"image {image.name} holds no frame")
                continue
            yield position * period, frame

    def finished(self, decoded: int, reached_end: bool) -> None:
        pass

    def close(self) -> None:
        pass


def _check_size(width: int, height: int, settings: DecodeSettings, where: Path) -> None:
    if width * height > settings.max_pixels:
        raise FrameSizeError(
            f"Expected frame size to be at most `max_pixels` = {settings.max_pixels} pixels, but got "
            f"{width}x{height} ({where}). Raise `decode.max_pixels` if the machine has memory for it."
        )


def _to_rgb(frame: av.VideoFrame, settings: DecodeSettings, where: Path) -> np.ndarray:
    """A decoded frame (any pixel format: yuv420p/444p, grey, 10-bit, ...) -> [h, w, 3] uint8.

    The display rotation (mp4 display matrix, a multiple of 90 degrees counter-clockwise) is
    applied, so a portrait phone video comes out upright.
    """
    _check_size(frame.width, frame.height, settings, where)
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    if quarter_turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))  # counter-clockwise
    return rgb


def iter_frames(path: str | Path, settings: DecodeSettings) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (source_index, timestamp_ms, rgb [h, w, 3] uint8) of the kept frames.

    Decoded frames are numbered 0, 1, ... in decoder output order; the kept ones are those
    whose target-fps slot (see `resampled_index`) is >= `offset` and a multiple of `stride`
    from it, before `max_seconds` (on the nominal clock index / native fps). Only kept frames
    are converted to RGB. Once the video has been read to the end, each problem met on the way
    is emitted as one `VideoWarning`.

    Raises:
        VideoNotFoundError, VideoOpenError, NoVideoStreamError, FrameSizeError, FrameRateError,
        NoFramesError: see their docs; each message names the video.
    """
    path = Path(path)
    if path.is_dir():
        source: _ContainerSource | _FolderSource = _FolderSource(path, settings)
    elif path.is_file():
        source = _ContainerSource(path, settings)
    else:
        raise VideoNotFoundError(f"Expected video path to be a file or a frame folder, but it does not exist ({path}).")
    try:
        if source.native_fps is None and (settings.target_fps is not None or settings.max_seconds is not None):
            hint = "set `decode.frame_folder_fps`" if path.is_dir() else "the container gives no rate"
            raise FrameRateError(
                f"Expected the frame rate to be known when `target_fps` or `max_seconds` is set, but "
                f"it is unknown ({path}): {hint}."
            )
        decoded, kept, reached_end = 0, 0, True
        for index, (timestamp, frame) in enumerate(source.frames()):
            if settings.max_seconds is not None and index >= settings.max_seconds * source.native_fps:
                reached_end = False
                break
            decoded += 1
            slot = resampled_index(index, source.native_fps, settings.target_fps)
            if slot is None or slot < settings.offset or (slot - settings.offset) % settings.stride:
                continue
            kept += 1
            yield index, timestamp, _to_rgb(frame, settings, path)
        source.finished(decoded, reached_end)
    finally:
        source.close()
    if decoded == 0:
        problems = f": {'; '.join(source.problems)}" if source.problems else ""
        raise NoFramesError(f"Expected video to have decodable frames, but got none ({path}){problems}.")
    if kept == 0:
        raise NoFramesError(
            f"Expected video to have a frame left after `offset` = {settings.offset} and `stride` = "
            f"{settings.stride}, but got none of its {decoded} decoded frames ({path})."
        )
    for problem in source.problems:
        warnings.warn(VideoWarning(f"{path}: {problem}; kept the {decoded} frames that decoded"), stacklevel=2)


def declared_frames(path: str | Path) -> int | None:
    """How many frames a video says it has, for a progress bar's total (no frame is decoded).

    The container's frame count, else its duration x frame rate; a frame folder's image count.
    None when it does not say, or cannot be opened: decoding, not this, reports a bad video.
    """
    path = Path(path)
    if path.is_dir():
        return sum(1 for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) or None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if stream.frames:
                return int(stream.frames)
            if rate and container.duration:  # in microseconds (av.time_base)
                return int(container.duration * rate / av.time_base)
    except (av.FFmpegError, OSError):
        return None
    return None


def iter_windows(path: str | Path, settings: DecodeSettings, resize: bool = True) -> Iterator[Window]:
    """Yield the video's kept frames in windows of `settings.window` (the last may be shorter).

    Peak memory is one window of frames plus one decoded frame, whatever the length.

    Args:
        resize: True: `Window.frames` are resized [f, 3, height, width] float32 in [-1, 1];
            False: the decoded [h, w, 3] uint8 frames as a list (for `resize_frames` on the
            extraction device; a frame folder's images may differ in size).
    Raises:
        VideoError: as `iter_frames`.
    """
    frames: list[torch.Tensor] = []
    indices: list[int] = []
    stamps: list[float] = []
    for index, timestamp, rgb in iter_frames(path, settings):
        frames.append(resize_frame(rgb, settings) if resize else torch.from_numpy(np.ascontiguousarray(rgb)))
        indices.append(index)
        stamps.append(timestamp)
        if len(frames) == settings.window:
            yield _window(frames, indices, stamps, resize)
            frames, indices, stamps = [], [], []
    if frames:
        yield _window(frames, indices, stamps, resize)


def _window(frames: list[torch.Tensor], indices: list[int], stamps: list[float], stacked: bool = True) -> Window:
    return Window(
        frames=torch.stack(frames) if stacked else frames,  # f x [3, H, W] -> [f, 3, H, W]
        frame_index=np.asarray(indices, dtype=np.int64),
        timestamp_ms=np.asarray(stamps, dtype=np.float64),
    )
