"""One extraction job's progress reporting (features/job.py)."""

from __future__ import annotations

from actiondiff.features.job import progress_line


def test_progress_line_names_videos_rate_and_eta():
    # 3 of 8 videos after 30 s: 10 s per video, 5 left -> 50 s
    line = progress_line(3, 8, "rat/walk/w1", frames=75, seconds=6.0, elapsed=30.0)
    assert line == "video 3/8 rat/walk/w1: 75 frames in 6.0 s (12.5 frames/s); ETA 0 min 50 s"
    assert progress_line(8, 8, "v", frames=1, seconds=0.0, elapsed=80.0).endswith("ETA 0 min 00 s")
