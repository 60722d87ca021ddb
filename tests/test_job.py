"""One extraction job's progress reporting (features/job.py)."""

from __future__ import annotations

import re

from actiondiff.features.job import VideoOutcome, VideoProgress, progress_line


def test_progress_line_names_videos_rate_and_eta():
    # 3 of 8 videos after 30 s: 10 s per video, 5 left -> 50 s
    line = progress_line(3, 8, "rat/walk/w1", frames=75, seconds=6.0, elapsed=30.0)
    assert line == "video 3/8 rat/walk/w1: 75 frames in 6.0 s (12.5 frames/s); ETA 0 min 50 s"
    assert progress_line(8, 8, "v", frames=1, seconds=0.0, elapsed=80.0).endswith("ETA 0 min 00 s")


def eta_seconds(caplog) -> int:
    minutes, seconds = re.findall(r"ETA (\d+) min (\d+) s", caplog.text)[-1]
    return 60 * int(minutes) + int(seconds)


def test_eta_starts_once_the_models_are_loaded(caplog):
    caplog.set_level("INFO", logger="actiondiff")
    done = VideoOutcome("v", failed=False, frames=10, seconds=0.1)
    waited = VideoProgress(4, console=False)  # created before loading, as a multi-device run's
    waited.start -= 600  # as if its workers took 10 minutes to load the models
    waited.finished(done)
    assert eta_seconds(caplog) >= 1800  # the load counted: 3 x 600 s
    progress = VideoProgress(4, console=False)
    progress.start -= 600
    progress.loaded()  # the first worker's backbone is loaded: the clock restarts
    progress.finished(done)
    assert eta_seconds(caplog) < 60
    progress.start -= 600
    progress.loaded()  # a later worker: no restart once a video is done
    progress.finished(done)
    assert eta_seconds(caplog) >= 300
