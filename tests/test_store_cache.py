"""Per-video cache: atomic commits, markers keyed by the settings hash, damage detection."""

import numpy as np
import pytest

from actiondiff.store.cache import FeatureCache
from actiondiff.store.records import VideoFeatures


def features(video_id: str, frames: int = 5) -> VideoFeatures:
    rng = np.random.default_rng(len(video_id))
    return VideoFeatures(
        video_id,
        {"L09_T20": rng.standard_normal((frames, 8)).astype(np.float32)},
        np.arange(frames) * 4,
        np.arange(frames) * 160.0,
    )


def test_commit_and_load_round_trip(tmp_path):
    cache = FeatureCache(tmp_path, "abc123abc123")
    original = features("clip one")
    assert not cache.is_committed("clip one")
    cache.commit(original)
    assert cache.is_committed("clip one")
    loaded = cache.load("clip one")
    np.testing.assert_array_equal(loaded.features["L09_T20"], original.features["L09_T20"])
    np.testing.assert_array_equal(loaded.frame_index, [0, 4, 8, 12, 16])
    assert not list(tmp_path.rglob("*.tmp-*")), "no temporary file may remain"


def test_other_settings_hash_does_not_count(tmp_path):
    FeatureCache(tmp_path, "aaaaaaaaaaaa").commit(features("v"))
    assert not FeatureCache(tmp_path, "bbbbbbbbbbbb").is_committed("v")


def test_data_without_marker_is_not_committed(tmp_path):
    cache = FeatureCache(tmp_path, "abc")
    cache.commit(features("v"))
    next(tmp_path.rglob("*.done")).unlink()  # a job killed between the two renames
    assert not cache.is_committed("v")


def test_damaged_file_is_detected(tmp_path):
    cache = FeatureCache(tmp_path, "abc")
    cache.commit(features("v"))
    data = next(tmp_path.rglob("*.npz"))
    data.write_bytes(data.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="damaged"):
        cache.load("v")


def test_failure_is_recorded_then_cleared_by_success(tmp_path):
    cache = FeatureCache(tmp_path, "abc")
    cache.record_failure("v/with slash", "/x/v.mp4", RuntimeError("bad"))
    assert cache.failure("v/with slash")["error_type"] == "RuntimeError"
    cache.commit(features("v/with slash"))
    assert cache.failure("v/with slash") is None


def test_verify_names_only_the_damaged_committed_video(tmp_path):
    cache = FeatureCache(tmp_path, "abc")
    for video_id in ("a", "b/c", "d"):
        cache.commit(features(video_id))
    assert cache.verify().ok and cache.verify().checked == 3
    data = tmp_path / "videos" / "b%2Fc.npz"
    data.write_bytes(data.read_bytes()[:-10] + b"0123456789")
    report = cache.verify()
    assert sorted(report.bad) == ["b/c"] and "damaged" in report.bad["b/c"][0]
