"""The embedded demo dataset: small, deterministic, real H.264 mp4 files written with PyAV.

Agents of several visual *domains* (shape, colour, texture, background: the stand-in for
species / viewpoint / context) perform one of several *actions* (motions). The label table
splits by domain: test domains never appear in training, as in the paper's cross-domain
protocols.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd

# Motions whose signature survives spatial mean pooling of (even random) features: a constant
# agent, a size oscillation, an on/off blink, and one crossing of the frame. Each happens at a
# random phase or moment, as actions do in real videos: a head must find it anywhere in time.
ACTIONS = ("keep_still", "pulse", "blink", "cross")


@dataclass(frozen=True)
class Domain:
    """How an agent looks: its shape, colour, texture and the background it moves on."""

    name: str
    shape: str  # square | disc | diamond | cross
    colour: tuple[int, int, int]
    background: str  # flat | noise | stripes | checker
    background_colour: tuple[int, int, int]


# Bright agents on darker backgrounds of similar brightness: the domains differ in shape, hue
# and texture, while the motion (what the actions are about) stays the strongest signal.
DOMAINS = (
    Domain("red_square_flat", "square", (235, 80, 80), "flat", (70, 70, 70)),
    Domain("green_disc_noise", "disc", (90, 225, 100), "noise", (60, 70, 80)),
    Domain("blue_diamond_stripes", "diamond", (110, 140, 250), "stripes", (80, 75, 60)),
    Domain("yellow_cross_checker", "cross", (240, 225, 90), "checker", (60, 80, 65)),
)


def _agent_mask(shape: str, size: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    half = size / 2
    if shape == "square":
        return (np.abs(dy) <= half) & (np.abs(dx) <= half)
    if shape == "disc":
        return dy**2 + dx**2 <= half**2
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= half
    if shape == "cross":
        bar = half / 3
        return ((np.abs(dy) <= half) & (np.abs(dx) <= bar)) | ((np.abs(dx) <= half) & (np.abs(dy) <= bar))
    raise ValueError(f"Expected a shape among square, disc, diamond, cross, but got {shape!r}.")


def _background(domain: Domain, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.ones((size, size, 3)) * np.asarray(domain.background_colour, dtype=float)
    if domain.background == "noise":
        base += rng.normal(0, 25, (size, size, 1))
    elif domain.background == "stripes":
        base *= (0.7 + 0.3 * ((xx + yy) // 6 % 2))[..., None]
    elif domain.background == "checker":
        base *= (0.6 + 0.4 * ((xx // 8 + yy // 8) % 2))[..., None]
    return base


def render_clip(
    domain: Domain, action: str, num_frames: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Frames of one agent doing one action: [num_frames, size, size, 3] uint8."""
    period = rng.uniform(20, 32)  # frames per motion cycle
    phase = rng.uniform(0, 2 * math.pi)
    agent = size * rng.uniform(0.4, 0.5)
    centre = size / 2 + rng.uniform(-3, 3, size=2)
    background = _background(domain, size, rng)
    if action == "cross":  # one crossing, at a random moment, in a random direction
        duration = num_frames * rng.uniform(0.4, 0.6)
        start = rng.uniform(0, num_frames - duration)
        direction = rng.choice((-1, 1))
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for i in range(num_frames):
        swing = math.sin(2 * math.pi * i / period + phase)
        cy, cx, scale = centre[0], centre[1], 1.0
        visible = True
        if action == "pulse":
            scale = 1.0 + 0.6 * swing
        elif action == "blink":
            visible = swing > 0
        elif action == "cross":  # off the frame before and after: enter at one edge, leave at the other
            progress = (i - start) / duration
            visible = 0 <= progress <= 1
            cx = size / 2 + direction * (progress - 0.5) * (size + agent)
        elif action != "keep_still":
            raise ValueError(f"Expected an action among {ACTIONS}, but got {action!r}.")
        image = background.copy()
        if visible:
            image[_agent_mask(domain.shape, agent * scale, yy, xx, cy, cx)] = domain.colour
        frames[i] = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    return frames


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """[h, w, 3] uint8 RGB (h, w even) -> [h * 3 / 2, w] uint8 yuv420p planes (Y, then U, then V),
    BT.601 limited range in integer arithmetic, chroma averaged over 2 x 2 pixels.

    Done here rather than by FFmpeg's swscale, whose SIMD conversions round by CPU and by the
    input's memory alignment: the demo's videos differed between runs and machines.
    """
    if frame.shape[0] % 2 or frame.shape[1] % 2:
        raise ValueError(f"Expected frames of even height and width for yuv420p, but got {frame.shape[:2]}.")
    r, g, b = (frame[..., c].astype(np.int32) for c in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128
    h, w = y.shape
    half = [(c.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) + 2) // 4 for c in (u, v)]  # [h / 2, w / 2] each
    return np.concatenate([y.ravel(), half[0].ravel(), half[1].ravel()]).astype(np.uint8).reshape(h * 3 // 2, w)


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 24) -> None:
    """Write [n, h, w, 3] uint8 frames as a lossless H.264 mp4 (yuv420p): decoded, the same pixels
    on every run and CPU."""
    with av.open(str(path), "w", format="mp4") as container:
        # Lossless (qp 0): a decoder gets back exactly the frames given, whatever choices x264
        # makes. Lossy (crf 18), one clip of 32 still decoded to other pixels in one of two runs
        # on a busy machine, although x264 ran on one thread with the same input and options.
        # One thread, no frame or slice threads and explicit timestamps keep the bytes stable too.
        options = {"threads": "1", "preset": "veryfast", "qp": "0",
                   "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(array), format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_demo_dataset(
    out_dir: str | Path,
    videos_per_pair: int = 8,
    num_frames: int = 48,
    size: int = 64,
    test_domains: tuple[str, ...] = ("blue_diamond_stripes", "yellow_cross_checker"),
    val_fraction: float = 0.25,
    seed: int = 0,
) -> pd.DataFrame:
    """Write the demo videos and `labels.csv` into `out_dir`.

    Returns:
        the label table: video, action, domain, split (train / val / test); test rows are
        exactly the clips of `test_domains`, never seen in training or validation.
    """
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    known = {d.name for d in DOMAINS}
    if not set(test_domains) < known:
        raise ValueError(f"Expected `test_domains` to be a proper subset of {sorted(known)}, but got {test_domains}.")
    rows = []
    for d, domain in enumerate(DOMAINS):
        for a, action in enumerate(ACTIONS):
            for k in range(videos_per_pair):
                rng = np.random.default_rng([seed, d, a, k])
                video = f"{domain.name}-{action}-{k:02d}"
                write_mp4(render_clip(domain, action, num_frames, size, rng), out / "videos" / f"{video}.mp4")
                if domain.name in test_domains:
                    split = "test"
                else:
                    split = "val" if k < round(videos_per_pair * val_fraction) else "train"
                rows.append({"video": f"videos/{video}.mp4", "action": action, "domain": domain.name, "split": split})
    table = pd.DataFrame(rows)
    table.to_csv(out / "labels.csv", index=False)
    return table
