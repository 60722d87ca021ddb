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


def test_unaccounted_names_removed_damaged_and_set_aside_videos(tmp_path):
    cache = FeatureCache(tmp_path, "abc")
    for name in ("ok", "damaged", "removed", "warned"):
        cache.commit(features(name))
    cache.record_failure("failed", "/videos/failed.mp4", ValueError("no frames"))
    cache.record_failure("warned", "/videos/warned.mp4", UserWarning("3 packets"), kind="warning")
    data = next(p for p in tmp_path.rglob("damaged.npz"))
    data.write_bytes(data.read_bytes()[:-1] + b"x")
    next(tmp_path.rglob("removed.done")).unlink()
    next(tmp_path.rglob("warned.done")).unlink()  # its features lost: the warning does not account for it
    ids = ["ok", "damaged", "removed", "warned", "failed", "never"]
    neither = "neither committed nor recorded as failed (features removed, or never extracted)"
    assert cache.unaccounted(ids) == {"removed": neither, "warned": neither, "never": neither}
    assert cache.unaccounted(ids, check_data=True) == {
        "damaged": "its features do not match their checksum (damaged)",
        "removed": neither, "warned": neither, "never": neither,
    }
    aside = cache.set_aside("damaged")
    assert aside == data.with_name("damaged.npz.damaged") and aside.is_file() and not data.exists()
    assert cache.unaccounted(["damaged"]) == {"damaged": f"its features were damaged and set aside as {aside}"}
    cache.commit(features("damaged"))  # re-extracted
    assert cache.unaccounted(["damaged"], check_data=True) == {}


def test_stale_temporaries_are_those_of_dead_writers_here_or_a_day_old(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    cache = FeatureCache(tmp_path, "abc")
    cache.commit(features("v"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, host = int(dead.stdout), socket.gethostname()
    names = {
        "videos/.a.npz.tmp-{host}-{dead}": True,  # killed writer on this machine
        "videos/.b.npz.tmp-{host}-{alive}": False,  # running writer (this process)
        "failures/.c.json.tmp-other-node-{dead}": False,  # another machine's, fresh: may be running
        "failures/.d.json.tmp-other-node-7": True,  # another machine's, two days old
        ".weights.json.tmp-{dead}": False,  # the older form without a host, fresh
        "shards/.0.json.tmp-{host}-{dead}": True,
        "videos/.e.npz": False,  # not a temporary name
    }
    for name in names:
        path = tmp_path / name.format(host=host, dead=dead_pid, alive=os.getpid())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    old = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / "failures" / ".d.json.tmp-other-node-7", (old, old))
    removed = cache.remove_stale_temporaries()
    expected = sorted(tmp_path / n.format(host=host, dead=dead_pid) for n, stale in names.items() if stale)
    assert sorted(removed) == expected
    assert {p.name for p in tmp_path.rglob(".*")} == {
        n.format(host=host, dead=dead_pid, alive=os.getpid()).rsplit("/", 1)[-1] for n, stale in names.items() if not stale
    }
    assert cache.is_committed("v")


def test_pack_refuses_unaccounted_videos_and_prints_failures(tmp_path, capsys, caplog):
    import json

    import pandas as pd

    from actiondiff.cli import main
    from actiondiff.features.backbones import feature_hash, feature_identity
    from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings

    identity = feature_identity(DecodeSettings(), "svd", ExtractSettings(layers=(9,), timestep_indices=(20,)), WeightsSettings())
    cache = FeatureCache(tmp_path / "cache", feature_hash(identity))
    cache.root.mkdir()
    (cache.root / "settings.json").write_text(json.dumps(identity))
    cache.record_weights({"unet.safetensors": "0" * 64})
    cache.commit(features("a"))
    cache.commit(features("b"))
    cache.record_failure("c", "/data/c.mp4", RuntimeError("Expected decodable frames, but got none"))
    cache.record_failure("b", "/data/b.mp4", UserWarning("1 packet(s) did not decode"), kind="warning")
    rows = [{"video_id": v, "path": f"/data/{v}.mp4", "labels": "x", "domain": "d", "split": ""} for v in "abcd"]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    store = tmp_path / "store.zarr"
    argv = ["pack", "--cache", str(cache.root), "--manifest", str(manifest), "--out", str(store), "--failures", str(tmp_path / "f.csv")]
    assert main(argv) == 2  # d: never extracted, nor recorded as failed
    assert not store.exists()
    assert "but 1 are neither: d (neither committed nor recorded as failed" in caplog.text
    pd.DataFrame(rows[:3]).to_csv(manifest, index=False)
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"packed 2 videos into {store}; 1 failed (no features), 1 decoded with warnings",
        f"failed: c (RuntimeError: Expected decodable frames, but got none) (all in {tmp_path / 'f.csv'})",
        f"with warnings: b (1 packet(s) did not decode) (all in {tmp_path / 'f.csv'})",
    ]
