"""Decode benchmark: streaming stride vs decode-everything-then-slice; peak RSS vs video length.

Run: PYTHONPATH=src python benchmarks/bench_decode.py [--workdir DIR] [--skip-extract]

1. Throughput on a 60 s, 320x240, 24 fps H.264 video at the paper's decode settings
   (stride 4, frames resized to 576x1024): streaming (`iter_frames` / `iter_windows`: every
   frame decoded, only kept frames converted to RGB and resized, as they arrive) against
   decoding every frame to RGB into a list, slicing [::4] (and resizing the kept ones). All in
   the same run, best of 2.
2. Peak RSS of a fresh process that (a) decodes and windows, (b) extracts features with the
   tiny SVD backbone (64x64 frames), for a 10-second and a 10-minute video.
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from actiondiff.io.video import iter_frames, iter_windows, resize_frame  # noqa: E402
from actiondiff.settings import DecodeSettings  # noqa: E402

FPS = 24


def write_test_video(path: Path, seconds: float, width: int = 320, height: int = 240) -> Path:
    """A moving gradient with a bouncing square, H.264 (ultrafast) in mp4; reused if present."""
    if path.exists():
        return path
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 255 // (width + height)], -1).astype(np.uint8)
    tmp = path.with_name(f".{path.name}.tmp")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast"}
        for i in range(int(seconds * FPS)):
            frame = np.roll(base, i, axis=1)
            top, left = (i * 3) % (height - 40), (i * 5) % (width - 40)
            frame[top : top + 40, left : left + 40] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def stream_frames(path: Path, settings: DecodeSettings) -> int:
    """Frames kept by `iter_frames`: every frame decoded, only kept ones converted to RGB."""
    return sum(1 for _ in iter_frames(path, settings))


def stream_windows(path: Path, settings: DecodeSettings) -> int:
    """Frames kept by `iter_windows`: as `iter_frames`, plus resize and windowing."""
    return sum(window.frames.shape[0] for window in iter_windows(path, settings))


def all_then_slice(path: Path, settings: DecodeSettings) -> list:
    """The naive way: every frame decoded to RGB into a list, then sliced."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return frames[settings.offset :: settings.stride]


def all_then_slice_frames(path: Path, settings: DecodeSettings) -> int:
    return len(all_then_slice(path, settings))


def all_then_slice_resized(path: Path, settings: DecodeSettings) -> int:
    return len([resize_frame(rgb, settings) for rgb in all_then_slice(path, settings)])


def best_of(func, *args, repeats: int = 2) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = func(*args)
        times.append(time.perf_counter() - start)
    return min(times), count


# Peak RSS is VmHWM of /proc/self/status: the high-water mark of this process's own memory.
# (getrusage's ru_maxrss survives exec on Linux, so a child would report its parent's peak.)
PEAK_SCRIPT = """
import json, re, sys, time
mode, path, weights = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings
if mode == "decode":
    from actiondiff.io.video import iter_windows
    frames = sum(w.frames.shape[0] for w in iter_windows(path, DecodeSettings()))
else:
    from actiondiff.features.svd_extractor import SVDExtractor
    decode = DecodeSettings(height=64, width=64)
    extractor = SVDExtractor.from_weights(WeightsSettings(**json.loads(weights)), decode, ExtractSettings())
    frames = len(extractor.extract_video(path, "bench").frame_index)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"frames": frames, "peak_mb": peak_kb / 1024, "seconds": time.perf_counter() - start}))
"""


def peak_rss(mode: str, path: Path, weights: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, mode, str(path), json.dumps(weights)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="folder for the generated videos and weights (default: a temp dir)")
    parser.add_argument("--skip-extract", action="store_true", help="measure decode-only peak RSS")
    parser.add_argument("--skip-throughput", action="store_true", help="measure peak RSS only")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_decode_"))
    work.mkdir(parents=True, exist_ok=True)

    if not args.skip_throughput:
        throughput(write_test_video(work / "sixty_seconds.mp4", 60))
    peak_table(work, args.skip_extract)


def throughput(minute: Path) -> None:
    settings = DecodeSettings()  # stride 4, 576x1024, window 25
    total = int(60 * FPS)
    methods = [
        ("decode to RGB", "streaming `iter_frames`, stride 4", stream_frames),
        ("decode to RGB", "decode all -> RGB list -> [::4]", all_then_slice_frames),
        ("+ resize to 576x1024", "streaming `iter_windows`, stride 4", stream_windows),
        ("+ resize to 576x1024", "decode all -> RGB list -> [::4] -> resize", all_then_slice_resized),
    ]
    print("Throughput: 60 s of 320x240 H.264 at 24 fps, stride 4, best of 2, same run\n")
    print("| stage | method | source frames | kept frames | seconds | source frames/s | kept frames/s |")
    print("|---|---|---|---|---|---|---|")
    for stage, name, func in methods:
        seconds, kept = best_of(func, minute, settings)
        print(f"| {stage} | {name} | {total} | {kept} | {seconds:.2f} | {total / seconds:.0f} | {kept / seconds:.0f} |", flush=True)



def peak_table(work: Path, skip_extract: bool) -> None:
    ten_s = write_test_video(work / "ten_seconds.mp4", 10)
    ten_min = write_test_video(work / "ten_minutes.mp4", 600)
    weights: dict[str, str] = {}
    modes = ["decode"]
    if not skip_extract:
        from actiondiff.tools.tiny_weights import make_tiny_weights

        if not (work / "weights" / "tiny-svd").exists():
            make_tiny_weights(work / "weights")
        weights = {
            "svd": str(work / "weights" / "tiny-svd"),
            "clip_arch": str(work / "weights" / "tiny-clip" / "open_clip_config.json"),
            "clip_checkpoint": str(work / "weights" / "tiny-clip" / "open_clip_model.safetensors"),
        }
        modes.append("extract")
    print("\nPeak RSS of one fresh process per video (320x240 H.264, 24 fps, stride 4)\n")
    print("| process | video | kept frames | peak RSS (MB) | seconds | ratio to 10 s |")
    print("|---|---|---|---|---|---|")
    labels = {"decode": "decode + window (576x1024, window 25)", "extract": "extract, tiny SVD (64x64, layer 9, t 20)"}
    for mode in modes:
        short = peak_rss(mode, ten_s, weights)
        long = peak_rss(mode, ten_min, weights)
        for video, result in [("10 s", short), ("10 min", long)]:
            ratio = result["peak_mb"] / short["peak_mb"]
            print(
                f"| {labels[mode]} | {video} | {result['frames']} | {result['peak_mb']:.0f} | "
                f"{result['seconds']:.1f} | {ratio:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
