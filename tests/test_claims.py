"""Per-video claims across processes: held, put off, waited for, dropped by a killed holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from actiondiff.features.claims import claim, claim_each, claim_path
from actiondiff.store.cache import FeatureCache

REPO = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from actiondiff.features.claims import claim
from actiondiff.store.cache import FeatureCache
cache = FeatureCache(sys.argv[1], "abc")
with claim(cache, sys.argv[2], wait=False) as held:
    print("held" if held else "busy", flush=True)
    time.sleep(120)
"""


def holder(root: Path, video_id: str) -> subprocess.Popen:
    """Another process that claims `video_id` in the cache at `root` and holds it for 2 minutes."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(root), video_id], stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_claim_held_by_another_process_is_refused_until_it_is_killed(tmp_path):
    cache = FeatureCache(tmp_path, "abc")
    other = holder(tmp_path, "clip/1")
    try:
        with claim(cache, "clip/1", wait=False) as held:
            assert not held
        with claim(cache, "clip/2", wait=False) as held:  # one claim per video
            assert held and claim_path(cache, "clip/2").is_file()
        assert not claim_path(cache, "clip/2").exists()  # the holder removes its file
    finally:
        other.send_signal(signal.SIGKILL)  # no teardown runs: the kernel drops the lock
        other.wait()
    assert claim_path(cache, "clip/1").is_file()  # the killed holder's file stays ...
    with claim(cache, "clip/1", wait=False) as held:
        assert held  # ... but blocks nobody
    assert list((tmp_path / "claims").iterdir()) == []


def test_claim_each_puts_off_held_videos_then_waits_and_skips_what_the_other_run_committed(tmp_path):
    cache = FeatureCache(tmp_path, "abc")
    other = holder(tmp_path, "a")
    elsewhere, got = [], []

    def other_run_commits_a_and_dies() -> None:
        time.sleep(0.5)  # while claim_each waits for `a`
        (tmp_path / "videos").mkdir(exist_ok=True)
        (tmp_path / "videos" / "a.done").write_text('{"settings_hash": "abc"}')
        other.send_signal(signal.SIGKILL)

    videos = [("a", "a.mp4"), ("b", "b.mp4"), ("c", "c.mp4")]
    thread = threading.Thread(target=other_run_commits_a_and_dies)
    try:
        for video_id, _ in claim_each(videos, cache, elsewhere.append):
            got.append(video_id)
            if video_id == "c":
                thread.start()
    finally:
        other.wait()
        thread.join()
    assert got == ["b", "c"] and elsewhere == ["a"]  # `a` put off, waited for, found committed


def test_a_file_system_without_locks_warns_once_and_extracts_unclaimed(tmp_path, monkeypatch, caplog):
    import errno

    from actiondiff.features import claims

    def no_locks(fd: int, operation: int) -> None:  # what NFS mounted with `nolock` answers
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(claims.fcntl, "flock", no_locks)
    cache = FeatureCache(tmp_path, "abc")
    got = [video_id for video_id, _ in claim_each([("a", "a.mp4"), ("b", "b.mp4")], cache, lambda v: None)]
    assert got == ["a", "b"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "videos are not claimed, so concurrent runs" in warnings[0]
