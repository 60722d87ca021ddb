"""Video input: sampling, timestamps, pixel formats, rotation, frame folders, bad input, memory.

Every input is built here, with PyAV or by hand (YUV4MPEG2 files are a text header plus raw
planes, so odd pixel formats and huge declared sizes cost a few bytes).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from actiondiff.cli import main
from actiondiff.features.job import run_extraction
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.io.video import (
    FrameRateError,
    FrameSizeError,
    NoFramesError,
    NoVideoStreamError,
    VideoNotFoundError,
    VideoOpenError,
    VideoWarning,
    iter_frames,
    iter_windows,
    resampled_index,
    resize_frame,
)
from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings
from actiondiff.store.cache import FeatureCache
from actiondiff.tools.tiny_weights import make_tiny_weights

# ---------------------------------------------------------------------------------------------
# Builders


def level_frames(num_frames: int, height: int = 16, width: int = 16, step: int = 8) -> np.ndarray:
    """[n, h, w, 3] uint8; frame i is uniformly grey at level (step * i) % 256."""
    levels = (np.arange(num_frames) * step) % 256
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8)


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: Fraction | int = 24,
    codec: str = "ffv1",
    pix_fmt: str = "bgr0",
    rotation: int | None = None,
    audio: bool = False,
    options: dict[str, str] | None = None,
) -> Path:
    """Write [n, h, w, 3] uint8 frames; ffv1 + bgr0 (the default) round-trips RGB exactly."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.codec_context.options = {"threads": "1", "preset": "ultrafast"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if audio:
            sound = container.add_stream("aac", rate=16000)
            samples = np.zeros((1, 16000 * len(frames) // int(fps)), dtype=np.float32)
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate = 16000
            for packet in sound.encode(chunk):
                container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_y4m(path: Path, width: int, height: int, chroma: str, planes: list[bytes], fps: str = "25:1") -> Path:
    """A YUV4MPEG2 file by hand: header, then `FRAME` + raw planes per frame."""
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps} Ip A1:1 C{chroma}\n".encode())
        for plane in planes:
            handle.write(b"FRAME\n" + plane)
    return path


def decode_all(path: Path, settings: DecodeSettings) -> tuple[list[int], list[float], list[np.ndarray]]:
    """(frame indices, timestamps, rgb frames) of every kept frame, warnings turned into errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", VideoWarning)
        items = list(iter_frames(path, settings))
    return [i for i, _, _ in items], [t for _, t, _ in items], [rgb for _, _, rgb in items]


def expected_input(level: int) -> float:
    """The backbone input value of grey level `level` (uint8 -> [-1, 1])."""
    return level / 255.0 * 2.0 - 1.0


# ---------------------------------------------------------------------------------------------
# Sampling, indices and timestamps


def test_windows_hold_every_stride_th_frame_with_index_and_timestamp(tmp_path):
    path = write_video(tmp_path / "ramp.mkv", level_frames(30), fps=24)
    settings = DecodeSettings(stride=4, window=3, height=16, width=16)
    windows = list(iter_windows(path, settings))
    assert [w.frame_index.tolist() for w in windows] == [[0, 4, 8], [12, 16, 20], [24, 28]]
    for window in windows:
        assert window.frames.dtype == torch.float32 and window.frames.shape[1:] == (3, 16, 16)
        assert window.frame_index.dtype == np.int64 and window.timestamp_ms.dtype == np.float64
        for frame, index in zip(window.frames, window.frame_index, strict=True):
            # same size: the bilinear resize is the identity, so values are exact
            torch.testing.assert_close(frame, torch.full((3, 16, 16), expected_input(8 * int(index))))
        # mkv stores milliseconds: frame i at round(i * 1000 / 24)
        np.testing.assert_allclose(window.timestamp_ms, np.round(window.frame_index * 1000 / 24), atol=1)


def test_stride_equals_decoding_every_frame_then_slicing(tmp_path):
    path = write_video(tmp_path / "ramp.mkv", level_frames(23, 24, 40), fps=25)
    strided = decode_all(path, DecodeSettings(stride=4, offset=2, height=16, width=16))
    every = decode_all(path, DecodeSettings(stride=1, height=16, width=16))
    assert strided[0] == every[0][2::4] == [2, 6, 10, 14, 18, 22]
    assert strided[1] == every[1][2::4]
    for a, b in zip(strided[2], every[2][2::4], strict=True):
        np.testing.assert_array_equal(a, b)


def test_resampled_index_against_ceil_oracle():
    # kept frame for target slot k is the first i with i / native >= k / target: ceil(k * native / target)
    native, target = 981 / 50, 10.0
    kept = [i for i in range(80) if resampled_index(i, native, target) is not None]
    oracle = [math.ceil(k * native / target - 1e-9) for k in range(60)]
    assert kept == [i for i in oracle if i < 80]
    assert 53 in kept  # drift: 19.62 fps is not exactly 2x 10 fps
    assert [resampled_index(i, 30.0, 10.0) for i in range(7)] == [0, None, None, 1, None, None, 2]
    assert [resampled_index(i, 10.0, 30.0) for i in range(3)] == [0, 1, 2]  # never upsampled
    assert resampled_index(5, 30.0, None) == 5


def test_target_fps_resamples_before_stride(tmp_path):
    path = write_video(tmp_path / "thirty.mkv", level_frames(30), fps=30)
    assert decode_all(path, DecodeSettings(stride=1, target_fps=10, height=16, width=16))[0] == list(range(0, 30, 3))
    assert decode_all(path, DecodeSettings(stride=2, target_fps=10, height=16, width=16))[0] == [0, 6, 12, 18, 24]


def test_target_fps_on_an_odd_native_rate(tmp_path):
    # 19.62 fps exactly (F981:50), greyscale planes: frame i has luma i
    planes = [bytes([i]) * 64 for i in range(80)]
    path = write_y4m(tmp_path / "odd.y4m", 8, 8, "mono", planes, fps="981:50")
    indices, stamps, frames = decode_all(path, DecodeSettings(stride=1, target_fps=10, height=8, width=8))
    assert indices == [math.ceil(k * 19.62 / 10 - 1e-9) for k in range(len(indices))]
    assert indices[-1] == 79 and 53 in indices
    np.testing.assert_allclose(stamps, np.array(indices) * 1000 * 50 / 981, rtol=1e-9)
    assert [int(f[0, 0, 0]) for f in frames] == indices  # the pixels are those of the source frames


def test_max_seconds_stops_on_the_nominal_clock(tmp_path):
    path = write_video(tmp_path / "two_seconds.mkv", level_frames(48), fps=24)
    assert decode_all(path, DecodeSettings(stride=1, max_seconds=1.0, height=16, width=16))[0] == list(range(24))
    assert decode_all(path, DecodeSettings(stride=1, max_seconds=1.0, target_fps=12, height=16, width=16))[0] == list(
        range(0, 24, 2)
    )
    # longer than the video: the whole video, no warning
    assert len(decode_all(path, DecodeSettings(stride=1, max_seconds=60, height=16, width=16))[0]) == 48


def test_gapped_and_non_monotonic_timestamps_keep_decode_order(tmp_path):
    """Frames come out in packet order; their times are the pts sorted into that order (gaps
    kept); indices count decoded frames."""
    pts_ms = [0, 83, 42, 125, 2000, 2042]
    path = tmp_path / "gappy.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width = stream.height = 16
        stream.pix_fmt = "bgr0"
        packets = []
        for array in level_frames(6, step=40):
            packets += stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24"))
        packets += stream.encode()
        for i, (packet, pts) in enumerate(zip(packets, pts_ms, strict=True)):
            packet.time_base, packet.pts, packet.dts = Fraction(1, 1000), pts, i
            container.mux(packet)
    indices, stamps, frames = decode_all(path, DecodeSettings(stride=1, height=16, width=16))
    assert indices == [0, 1, 2, 3, 4, 5]
    assert stamps == [0.0, 42.0, 83.0, 125.0, 2000.0, 2042.0]
    assert [int(f[0, 0, 0]) for f in frames] == [0, 40, 80, 120, 160, 200]


@pytest.mark.parametrize("b_frames", [0, 2])
def test_avi_with_b_frames_times_follow_the_decode_order(tmp_path, b_frames):
    """MPEG-4 part 2 in AVI: the pts count chunks in decode order, shuffled or shifted by
    B-frames; the times are index / fps, like the frames' order."""
    path = tmp_path / f"bf{b_frames}.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24, options={"bf": str(b_frames)})
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.max_b_frames = b_frames
        for i, array in enumerate(level_frames(12, height=32, width=32, step=20)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(path)) as container:  # the premise: pts out of order in decode order
        pts = [p.pts for p in container.demux(video=0) if p.pts is not None]
        assert (pts != sorted(pts)) == (b_frames > 0)
    indices, stamps, frames = decode_all(path, DecodeSettings(stride=1, height=32, width=32))
    assert indices == list(range(12))
    np.testing.assert_allclose(stamps, np.arange(12) * 1000 / 24, atol=1e-9)
    levels = [int(f[:, :, 0].mean()) for f in frames]
    assert levels == sorted(levels) and np.allclose(levels, np.arange(12) * 20, atol=6)  # display order


# ---------------------------------------------------------------------------------------------
# Pixel formats, sizes, rotation, containers


def test_greyscale_video_becomes_rgb_with_equal_channels(tmp_path):
    planes = [bytes([20 + 30 * i]) * (16 * 8) for i in range(3)]
    path = write_y4m(tmp_path / "grey.y4m", 16, 8, "mono", planes)
    _, _, frames = decode_all(path, DecodeSettings(stride=1, height=8, width=16))
    assert [f.shape for f in frames] == [(8, 16, 3)] * 3
    assert [np.unique(f).tolist() for f in frames] == [[20], [50], [80]]


def test_444_chroma_keeps_a_one_pixel_colour_stripe(tmp_path):
    # full-resolution chroma: column 5 is red (V high), the rest neutral grey
    width, height = 16, 8
    y = np.full((height, width), 128, np.uint8)
    u = np.full((height, width), 128, np.uint8)
    v = np.full((height, width), 128, np.uint8)
    v[:, 5] = 240
    path = write_y4m(tmp_path / "c444.y4m", width, height, "444", [y.tobytes() + u.tobytes() + v.tobytes()])
    _, _, (rgb,) = decode_all(path, DecodeSettings(stride=1, height=8, width=16))
    red = rgb[:, :, 0].astype(int)
    assert (red[:, 5] > red[:, 4] + 100).all()  # the stripe is red ...
    assert (np.abs(red[:, [3, 4, 6, 7]] - red[0, 0]) <= 1).all()  # ... and does not bleed (4:2:0 would)
    assert (np.abs(rgb[:, 4].astype(int) - rgb[:, 4, :1]) <= 1).all()  # neighbours stay grey


def test_h264_444_mp4_decodes_to_rgb(tmp_path):
    frames = np.zeros((4, 32, 48, 3), np.uint8)
    frames[..., 0] = 220
    path = write_video(tmp_path / "x264_444.mp4", frames, codec="libx264", pix_fmt="yuv444p")
    _, _, decoded = decode_all(path, DecodeSettings(stride=1, height=32, width=48))
    assert len(decoded) == 4
    np.testing.assert_allclose(decoded[0].reshape(-1, 3).mean(0), [220, 0, 0], atol=4)


@pytest.mark.parametrize("rotation", [90, 180, 270, -90])
def test_display_rotation_is_applied(tmp_path, rotation):
    source = np.zeros((2, 32, 64, 3), np.uint8)
    source[:, :16, :32] = 255  # top-left quadrant white
    path = write_video(tmp_path / f"rot{rotation}.mp4", source, codec="mpeg4", pix_fmt="yuv420p", rotation=rotation)
    _, _, frames = decode_all(path, DecodeSettings(stride=1, height=32, width=32))
    expected = np.rot90(source[0], k=rotation // 90)  # display matrix: counter-clockwise degrees
    assert frames[0].shape == expected.shape
    assert np.abs(frames[0].astype(int) - expected).mean() < 8


def test_odd_size_odd_rate_with_audio_stream(tmp_path):
    frames = level_frames(6, 870, 870, step=40)
    path = write_video(tmp_path / "odd.mp4", frames, fps=Fraction(981, 50), codec="libx264", pix_fmt="yuv420p", audio=True)
    windows = list(iter_windows(path, DecodeSettings(stride=1, window=4, height=64, width=64)))
    assert [w.frame_index.tolist() for w in windows] == [[0, 1, 2, 3], [4, 5]]
    assert windows[0].frames.shape == (4, 3, 64, 64)
    np.testing.assert_allclose(np.concatenate([w.timestamp_ms for w in windows]), np.arange(6) * 1000 * 50 / 981, atol=1)
    levels = torch.cat([w.frames for w in windows]).mean(dim=(1, 2, 3))
    torch.testing.assert_close(levels, torch.tensor([expected_input(40 * i) for i in range(6)]), atol=0.03, rtol=0)


def test_large_frame_within_limit_is_resized(tmp_path):
    width, height = 3840, 2160
    path = write_y4m(tmp_path / "uhd.y4m", width, height, "mono", [bytes([100]) * (width * height)] * 2)
    (window,) = iter_windows(path, DecodeSettings(stride=1, height=64, width=64))
    assert window.frames.shape == (2, 3, 64, 64)
    torch.testing.assert_close(window.frames, torch.full((2, 3, 64, 64), expected_input(100)))


def test_path_with_spaces_quotes_and_brackets(tmp_path):
    folder = tmp_path / "my videos (copy)"
    folder.mkdir()
    path = write_video(folder / "it's a \"clip\" & [1] #2.mkv", level_frames(5), fps=24)
    assert decode_all(path, DecodeSettings(stride=2, height=16, width=16))[0] == [0, 2, 4]


def test_video_shorter_than_one_window_yields_one_short_window(tmp_path):
    path = write_video(tmp_path / "short.mkv", level_frames(5), fps=24)
    (window,) = iter_windows(path, DecodeSettings(stride=4, window=25, height=16, width=16))
    assert window.frame_index.tolist() == [0, 4]
    assert window.frames.shape == (2, 3, 16, 16)


# ---------------------------------------------------------------------------------------------
# Frame folders


def test_frame_folder_png_and_jpg_in_natural_order(tmp_path):
    folder = tmp_path / "clip_001"
    folder.mkdir()
    for i in range(12):  # 0..11: names frame_2 sorts before frame_10
        level = 20 * i
        if i == 3:  # a greyscale PNG among RGB ones
            Image.fromarray(np.full((8, 12), level, np.uint8), mode="L").save(folder / f"frame_{i}.png")
        else:
            Image.fromarray(np.full((8, 12, 3), level, np.uint8)).save(folder / f"frame_{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    settings = DecodeSettings(stride=1, height=8, width=16, frame_folder_fps=10)
    indices, stamps, frames = decode_all(folder, settings)
    assert indices == list(range(12))
    assert stamps == [100.0 * i for i in range(12)]
    assert [int(f[0, 0, 0]) for f in frames] == [20 * i for i in range(12)]
    assert frames[3].shape == (8, 12, 3) and np.unique(frames[3]).tolist() == [60]

    jpg_folder = tmp_path / "clip_jpg"
    jpg_folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 80 * i, np.uint8)).save(jpg_folder / f"{i:05d}.JPG", quality=95)
    indices, stamps, frames = decode_all(jpg_folder, DecodeSettings(stride=1, height=16, width=16))
    assert indices == [0, 1, 2] and all(math.isnan(t) for t in stamps)  # no frame rate: unknown
    assert [round(float(f.mean())) for f in frames] == [0, 80, 160]


def test_frame_folder_with_unreadable_image_keeps_the_rest_and_warns(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 50 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "2.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(VideoWarning, match="image 2.png did not decode"):
        items = list(iter_frames(folder, DecodeSettings(stride=1, height=8, width=8)))
    assert [i for i, _, _ in items] == [0, 1, 2]  # decode order: three frames decoded
    assert [int(rgb[0, 0, 0]) for _, _, rgb in items] == [0, 50, 150]


def test_frame_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoFramesError, match="holds none"):
        list(iter_frames(empty, DecodeSettings()))
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "0.png")
    with pytest.raises(FrameRateError, match="frame_folder_fps"):
        list(iter_frames(folder, DecodeSettings(target_fps=5)))


# ---------------------------------------------------------------------------------------------
# Bad input: each gives a named error that names the video, or a correct result


def _empty(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


def _text_as_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


def _text_file(tmp_path):
    path = tmp_path / "notes.txt"  # FFmpeg's tty demuxer would render this as "video"
    path.write_text("this is not a video\n" * 50)
    return path


def _random_bytes(tmp_path):
    path = tmp_path / "noise.avi"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return path


def _audio_only(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        chunk.sample_rate = 8000
        for packet in list(stream.encode(chunk)) + list(stream.encode()):
            container.mux(packet)
    return path


def _missing(tmp_path):
    return tmp_path / "gone.mp4"


def _no_frames(tmp_path):
    return write_y4m(tmp_path / "header_only.y4m", 16, 16, "mono", [])


def _huge_frames(tmp_path):
    return write_y4m(tmp_path / "huge.y4m", 9000, 9000, "mono", [])  # 81 Mpixel declared


def _truncated_mp4(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    full = write_video(tmp_path / "full.mp4", noise, codec="mpeg4", pix_fmt="yuv420p")
    path = tmp_path / "truncated.mp4"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # moov index (written last) lost
    return path


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (_empty, VideoOpenError, "non-empty, but got 0 bytes"),
        (_text_as_mp4, VideoOpenError, "readable by FFmpeg"),
        (_text_file, VideoOpenError, "'tty'"),
        (_random_bytes, VideoOpenError, "readable by FFmpeg"),
        (_audio_only, NoVideoStreamError, r"streams of type \['audio'\]"),
        (_missing, VideoNotFoundError, "does not exist"),
        (_no_frames, NoFramesError, "decodable frames, but got none"),
        (_huge_frames, FrameSizeError, "9000x9000"),
        (_truncated_mp4, VideoOpenError, "readable by FFmpeg"),
    ],
)
def test_bad_input_raises_a_named_error_naming_the_video(tmp_path, build, error, match):
    path = build(tmp_path)
    with pytest.raises(error, match=match) as caught:
        list(iter_windows(path, DecodeSettings(height=16, width=16)))
    assert str(path) in str(caught.value)


def test_offset_past_the_end(tmp_path):
    path = write_video(tmp_path / "five.mkv", level_frames(5))
    with pytest.raises(NoFramesError, match="none of its 5 decoded frames"):
        list(iter_windows(path, DecodeSettings(offset=5, height=16, width=16)))


def test_frame_larger_than_max_pixels_setting(tmp_path):
    path = write_video(tmp_path / "small.mkv", level_frames(2, 48, 64))
    with pytest.raises(FrameSizeError, match="64x48"):
        list(iter_windows(path, DecodeSettings(height=16, width=16, max_pixels=64 * 47)))


def _noise_avi(tmp_path: Path, name: str) -> Path:
    """50 frames of seeded noise, MPEG-4 part 2 in AVI (as UCF101/HMDB51): large packets."""
    frames = np.random.default_rng(0).integers(0, 256, (50, 48, 64, 3), dtype=np.uint8)
    return write_video(tmp_path / name, frames, codec="mpeg4", pix_fmt="yuv420p")


def test_truncated_avi_keeps_what_decoded_and_warns(tmp_path):
    full = _noise_avi(tmp_path, "full.avi")
    path = tmp_path / "half.avi"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.warns(VideoWarning, match=r"decoded \d+ of the 50 frames") as caught:
        windows = list(iter_windows(path, DecodeSettings(stride=1, height=16, width=16)))
    indices = np.concatenate([w.frame_index for w in windows])
    assert 10 < len(indices) < 40 and indices.tolist() == list(range(len(indices)))
    assert str(path) in str(caught[0].message)


def test_corrupt_bytes_mid_file_keep_later_frames_and_warn(tmp_path):
    full = _noise_avi(tmp_path, "full.avi")
    data = bytearray(full.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.avi"
    path.write_bytes(bytes(data))
    with pytest.warns(VideoWarning, match="of the 50 frames"):
        indices = [i for i, _, _ in iter_frames(path, DecodeSettings(stride=1, height=16, width=16))]
    assert 30 < len(indices) < 50  # frames after the damage still decode


def test_undecodable_packets_are_skipped_and_warned(tmp_path):
    """Packets 2 and 3 replaced by noise: the decoder rejects them, later frames still decode."""
    path = tmp_path / "bad_packets.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width = stream.height = 16
        stream.pix_fmt = "bgr0"
        stream.codec_context.gop_size = 1  # every frame decodes on its own
        packets = []
        for array in level_frames(6, step=40):
            packets += stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24"))
        packets += stream.encode()
        for i, packet in enumerate(packets):
            if i in (2, 3):
                noise = np.random.default_rng(i).integers(0, 256, packet.size, dtype=np.uint8).tobytes()
                bad = av.Packet(noise)
                bad.stream, bad.time_base, bad.pts, bad.dts = stream, packet.time_base, packet.pts, packet.dts
                packet = bad
            container.mux(packet)
    with pytest.warns(VideoWarning, match=r"2 packet\(s\) did not decode \(the first after frame 2"):
        items = list(iter_frames(path, DecodeSettings(stride=1, height=16, width=16)))
    assert [i for i, _, _ in items] == [0, 1, 2, 3]  # decode order counts decoded frames
    assert [t for _, t, _ in items] == [0.0, 42.0, 167.0, 208.0]  # timestamps show the hole
    assert [int(rgb[0, 0, 0]) for _, _, rgb in items] == [0, 40, 160, 200]


def test_good_video_emits_no_warning(tmp_path):
    path = _noise_avi(tmp_path, "good.avi")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len([w for w in iter_windows(path, DecodeSettings(stride=1, window=25, height=16, width=16))]) == 2


def test_resize_frame_stretch_crop_and_pad():
    rgb = np.zeros((8, 16, 3), np.uint8)  # wide: left half black, right half green
    rgb[:, 8:, 1] = 255
    stretched = resize_frame(rgb, DecodeSettings(height=16, width=24, resize="stretch"))
    assert stretched.shape == (3, 16, 24) and stretched.dtype == torch.float32
    torch.testing.assert_close(stretched[0], -torch.ones(16, 24))  # no red anywhere
    torch.testing.assert_close(stretched[1, :, :11], -torch.ones(16, 11))  # left of the edge
    torch.testing.assert_close(stretched[1, :, 13:], torch.ones(16, 11))  # right of the edge
    # centre crop to a square keeps columns 4..11: the edge stays in the middle
    cropped = resize_frame(rgb, DecodeSettings(height=8, width=8, resize="keep_aspect_crop"))
    torch.testing.assert_close(cropped[1], torch.tensor([[-1.0] * 4 + [1.0] * 4] * 8))
    # pad to a square adds 4 mid-grey rows (0.0) above and below
    padded = resize_frame(rgb, DecodeSettings(height=16, width=16, resize="keep_aspect_pad"))
    torch.testing.assert_close(padded[:, :4], torch.zeros(3, 4, 16))
    torch.testing.assert_close(padded[:, 12:], torch.zeros(3, 4, 16))
    torch.testing.assert_close(padded[1, 4:12, 8:], torch.ones(8, 8))


# ---------------------------------------------------------------------------------------------
# Memory: flat in video length

# Peak RSS is VmHWM (/proc/self/status), this process's own high-water mark; getrusage's
# ru_maxrss survives exec on Linux and would report the (larger) pytest parent's peak.
PEAK_RSS_SCRIPT = textwrap.dedent(
    r"""
    import json, re, sys
    from actiondiff.settings import DecodeSettings
    from actiondiff.io.video import iter_windows
    def peak_kb():
        return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
    settings = DecodeSettings(stride=1, window=25, height=128, width=128)
    report = [{"frames": 0, "peak_kb": peak_kb()}]
    for path in sys.argv[1:]:
        count = sum(w.frames.shape[0] for w in iter_windows(path, settings))
        report.append({"frames": count, "peak_kb": peak_kb()})
    print(json.dumps(report))
    """
)


@pytest.mark.slow  # a fresh torch process / tiny weights: 10-60 s on 2 shared cores
def test_peak_memory_is_flat_in_video_length(tmp_path):
    """One fresh process reads a short video, then a 30x longer one; its peak RSS hardly moves."""
    # every frame kept and resized to 128x128 float32 (196 kB): holding 2400 would cost 470 MB
    short = write_video(tmp_path / "short.mkv", level_frames(80, 16, 16, step=1), fps=24)
    long = write_video(tmp_path / "long.mkv", level_frames(2400, 16, 16, step=1), fps=24)
    src = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(short), str(long)],
        capture_output=True, text=True, check=True, env={"PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"},
    )
    after_import, after_short, after_long = json.loads(result.stdout.strip().splitlines()[-1])
    assert (after_short["frames"], after_long["frames"]) == (80, 2400)
    # the measure sees a window: 25 frames of 196 kB were allocated on top of the imports
    assert after_short["peak_kb"] - after_import["peak_kb"] > 4_000
    assert after_long["peak_kb"] - after_short["peak_kb"] < 30_000


# ---------------------------------------------------------------------------------------------
# A batch mixing good and broken videos through the real (tiny) extractor


# the cheapest real extraction (first UNet tap, no CLIP): the batch logic is under test here
BATCH_SETTINGS = {
    "decode": {"height": 64, "width": 64, "window": 4, "stride": 4},
    "extraction": {"layers": [1], "conditioning": "none"},
}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> dict[str, str]:
    paths = make_tiny_weights(tmp_path_factory.mktemp("weights"))
    return {key: str(value) for key, value in paths.items()}


@pytest.fixture(scope="module")
def tiny_extractor(tiny_weights):
    decode = DecodeSettings(**BATCH_SETTINGS["decode"])
    extract = ExtractSettings(layers=(1,), conditioning="none")
    return SVDExtractor.from_weights(WeightsSettings(**tiny_weights), decode, extract)


@pytest.mark.slow  # a fresh torch process / tiny weights: 10-60 s on 2 shared cores
def test_batch_of_good_and_broken_videos(tmp_path, tiny_extractor):
    folder = tmp_path / "frames clip"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(folder / f"{i}.jpg")
    full = _noise_avi(tmp_path, "full.avi")
    half = tmp_path / "half.avi"
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    videos = [
        ("good_mkv", str(write_video(tmp_path / "good.mkv", level_frames(9, 48, 64)))),
        ("empty", str(_empty(tmp_path))),
        ("good_avi", str(write_video(tmp_path / "good.avi", level_frames(12, 32, 32), codec="mpeg4", pix_fmt="yuv420p"))),
        ("text", str(_text_as_mp4(tmp_path))),
        ("audio", str(_audio_only(tmp_path))),
        ("folder", str(folder)),
        ("truncated", str(half)),
        ("missing", str(_missing(tmp_path))),
    ]
    cache = FeatureCache(tmp_path / "cache", "abc123")
    calls = []

    def factory():
        calls.append(1)
        return tiny_extractor

    summary = run_extraction(videos, cache, factory)
    assert calls == [1]
    assert sorted(summary.extracted) == ["folder", "good_avi", "good_mkv", "truncated"]
    assert sorted(summary.failed) == ["audio", "empty", "missing", "text"]
    assert summary.warned == ["truncated"]
    assert summary.line().startswith("4 ok (4 extracted, 0 already committed, 1 with warnings), 4 failed")
    # features for every good video, one row per kept frame
    assert cache.load("good_mkv").frame_index.tolist() == [0, 4, 8]
    assert cache.load("folder").features["L01_T20"].shape == (2, 32)
    assert cache.load("good_avi").frame_index.tolist() == [0, 4, 8]
    truncated = cache.load("truncated").frame_index
    assert 2 < len(truncated) < 10 and truncated.tolist() == list(range(0, 4 * len(truncated), 4))
    # a manifest line for every broken one, and a warning line for the truncated one
    expected = {
        "empty": "VideoOpenError",
        "text": "VideoOpenError",
        "audio": "NoVideoStreamError",
        "missing": "VideoNotFoundError",
        "truncated": "VideoWarning",
    }
    for video_id, error_type in expected.items():
        record = cache.failure(video_id)
        assert record["error_type"] == error_type and record["path"] == dict(videos)[video_id]
        assert record["kind"] == ("warning" if video_id == "truncated" else "error")
        assert record["message"]
    assert cache.failure("good_mkv") is None and cache.failure("folder") is None
    # rerun: committed videos are skipped, broken ones retried and still recorded
    again = run_extraction(videos, cache, factory)
    assert sorted(again.skipped) == ["folder", "good_avi", "good_mkv", "truncated"]
    assert sorted(again.failed) == ["audio", "empty", "missing", "text"]


@pytest.mark.slow  # a fresh torch process / tiny weights: 10-60 s on 2 shared cores
def test_strict_batch_stops_at_the_first_bad_video(tmp_path, tiny_extractor):
    videos = [("empty", str(_empty(tmp_path))), ("good", str(write_video(tmp_path / "g.mkv", level_frames(3))))]
    with pytest.raises(VideoOpenError):
        run_extraction(videos, FeatureCache(tmp_path / "cache", "abc"), lambda: tiny_extractor, strict=True)


@pytest.mark.slow  # a fresh torch process / tiny weights: 10-60 s on 2 shared cores
def test_extract_command_reports_ok_and_failed_and_exits_zero_unless_strict(tmp_path, tiny_weights, capsys):
    good = write_video(tmp_path / "good clip.mkv", level_frames(5, 32, 32))
    folder = tmp_path / "clip.v2"  # a frame folder: its id is its whole name
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "0001.jpg")
    empty, text = _empty(tmp_path), _text_as_mp4(tmp_path)
    settings = json.dumps({**BATCH_SETTINGS, "weights": tiny_weights})
    videos = [str(good), str(empty), str(folder), str(text)]
    args = ["extract", *videos, "--out", str(tmp_path / "cache"), "--settings", settings]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "2 ok (2 extracted, 0 already committed, 0 with warnings), 2 failed"
    )
    done = sorted(p.name for p in (tmp_path / "cache" / "videos").glob("*.done"))
    assert done == ["clip.v2.done", "good clip.done"]
    failures = sorted(p.name for p in (tmp_path / "cache" / "failures").iterdir())
    assert failures == ["empty.json", "notes.json"]
    assert main([*args, "--strict"]) != 0  # the good video is committed; the empty one stops the run


def test_decode_settings_validate_the_new_fields():
    with pytest.raises(ValueError, match="`max_pixels` to be a number >= 1"):
        DecodeSettings(max_pixels=0)
    with pytest.raises(ValueError, match="`frame_folder_fps`"):
        DecodeSettings(frame_folder_fps=0)
    assert DecodeSettings().max_pixels == 8192 * 4320 and DecodeSettings().frame_folder_fps is None


@pytest.mark.parametrize(("suffix", "form"), [(".png", "png_pipe"), (".jpg", "jpeg_pipe")])
def test_image_renamed_as_video_decodes_with_a_warning(tmp_path, suffix, form):
    image = tmp_path / f"still{suffix}"
    av_frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 90, np.uint8), format="rgb24")
    av_frame.to_image().save(image)
    path = image.rename(tmp_path / "still.mp4")
    with pytest.warns(VideoWarning, match=rf"still.mp4: FFmpeg reads it as a single image \({form}\), not a video: one frame"):
        items = list(iter_frames(path, DecodeSettings(stride=1, height=16, width=16)))
    assert [(i, t) for i, t, _ in items] == [(0, 0.0)]
