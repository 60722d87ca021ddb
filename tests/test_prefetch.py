"""Decoding ahead of the backbone (io/prefetch.py) and the device-side resize of the window loop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from test_svd_extractor import write_video

from actiondiff.features.windows import _to_input, extract_windows
from actiondiff.io.prefetch import prefetched
from actiondiff.io.video import iter_windows, resize_frame, resize_frames
from actiondiff.settings import DecodeSettings, ExtractSettings


def test_prefetched_keeps_order_and_stays_bounded():
    produced = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    seen = []
    for item in prefetched(items(), depth=2):
        time.sleep(0.01)  # a slow consumer: the producer must wait for it
        # at most `depth` queued + one being put + the one in use
        assert len(produced) - item <= 4
        seen.append(item)
    assert seen == list(range(20))


def test_prefetched_raises_the_producers_error_where_it_happened():
    def items():
        yield 1
        yield 2
        raise ValueError("bad packet in video x")

    got = []
    with pytest.raises(ValueError, match="bad packet in video x"):
        for item in prefetched(items(), depth=3):
            got.append(item)
    assert got == [1, 2]


def test_prefetched_stops_and_closes_the_source_when_the_consumer_stops():
    closed = threading.Event()

    def items():
        try:
            yield from range(1000)
        finally:
            closed.set()

    before = threading.active_count()
    stream = prefetched(items(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert closed.is_set() and threading.active_count() == before


def test_depth_zero_runs_in_the_callers_thread():
    threads = []

    def items():
        threads.append(threading.current_thread())
        yield 1

    assert list(prefetched(items(), depth=0)) == [1] and threads == [threading.current_thread()]


@pytest.mark.parametrize("resize", ["stretch", "keep_aspect_crop", "keep_aspect_pad"])
def test_batched_resize_gives_the_bytes_of_one_frame_at_a_time(resize):
    settings = DecodeSettings(height=40, width=56, resize=resize)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 30, 50, 3), dtype=np.uint8))
    batched = resize_frames(frames, settings)
    one_by_one = torch.stack([resize_frame(f.numpy(), settings) for f in frames])
    assert batched.shape == (3, 3, 40, 56) and torch.equal(batched, one_by_one)


def test_frames_of_different_sizes_are_resized_in_runs():
    settings = DecodeSettings(height=16, width=16)
    rng = np.random.default_rng(1)
    frames = [torch.from_numpy(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in
              [(20, 30, 3), (20, 30, 3), (12, 12, 3), (20, 30, 3)]]
    out = _to_input(frames, settings, torch.device("cpu"))
    assert out.shape == (4, 3, 16, 16)
    for i, frame in enumerate(frames):
        assert torch.equal(out[i], resize_frame(frame.numpy(), settings))


def test_features_are_the_same_bytes_with_and_without_prefetch(tmp_path):
    video = write_video(tmp_path / "v.mp4", num_frames=23, seed=4)
    decode = DecodeSettings(stride=1, height=16, width=16, window=5)
    # What the window loop owes a backbone is the frames it hands over and the generator's draws,
    # in order; a seeded linear map of the frames plus one draw per window reads both (the real
    # backbones' features are checked window by window in test_backbones.py).
    weights = torch.randn(3 * 16 * 16, 4, generator=torch.Generator().manual_seed(0))

    def extract_window(frames, generator):
        noise = torch.randn(frames.shape[0], 4, generator=generator)
        return {"L01_T00": (frames.flatten(1) @ weights + noise).numpy()}

    runs = {depth: extract_windows(video, "v", decode, ExtractSettings(), extract_window, prefetch=depth, timings=(t := {}))
            for depth in (0, 1, 3)}
    for depth in (1, 3):
        assert runs[depth].features["L01_T00"].tobytes() == runs[0].features["L01_T00"].tobytes()
        np.testing.assert_array_equal(runs[depth].frame_index, np.arange(23))
    # and equal to resizing each window on the CPU as before (`iter_windows` resizing frames)
    windows = list(iter_windows(video, decode))
    assert len(windows) == 5 and torch.equal(
        torch.cat([w.frames for w in windows]),
        torch.cat([_to_input(w.frames, decode, torch.device("cpu")) for w in iter_windows(video, decode, resize=False)]),
    )
    assert t["frames"] == 23 and t["model_s"] > 0 and t["wait_s"] >= 0
