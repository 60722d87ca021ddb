"""Packed Zarr store: layout, dtype, compression, determinism."""

import hashlib
from pathlib import Path

import numpy as np
import zarr
from test_feature_cache import features

from actiondiff.feature_cache import FeatureCache
from actiondiff.store import FeatureStore, pack_store


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def test_pack_layout_and_values(tmp_path):
    cache = FeatureCache(tmp_path / "cache", "abc")
    videos = {f"v{i}": features(f"v{i}" * (i + 1), frames=3 + i) for i in range(3)}
    for video_id, value in videos.items():
        value.video_id = video_id
        cache.commit(value)
    counts = pack_store(cache, ["v2", "v0", "v1", "missing"], tmp_path / "s.zarr", {"settings": {}, "settings_hash": "abc", "backbone": {}})
    assert counts == {"packed": 3, "missing": 1}
    store = FeatureStore(tmp_path / "s.zarr")
    assert store.video_ids == ["v0", "v1", "v2"]
    np.testing.assert_array_equal(store.offsets, [0, 3, 7, 12])
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group["features/L09_T20"].dtype == np.float16
    assert group["features/L09_T20"].shape == (12, 8)
    loaded = store.features("L09_T20")
    np.testing.assert_allclose(loaded["v1"], videos["v1"].features["L09_T20"], atol=2e-3)
    assert store.attrs["taps"] == ["L09_T20"]
    assert "actiondiff_version" in store.attrs


def test_pack_is_deterministic_and_incremental_safe(tmp_path):
    ids = [f"v{i}" for i in range(4)]
    cache = FeatureCache(tmp_path / "cache", "abc")
    for video_id in ids[:2]:
        cache.commit(features(video_id))
    attrs = {"settings": {}, "settings_hash": "abc", "backbone": {}}
    pack_store(cache, ids, tmp_path / "s.zarr", attrs)  # partial pack first
    for video_id in ids[2:]:
        cache.commit(features(video_id))
    pack_store(cache, ids, tmp_path / "s.zarr", attrs)
    other = FeatureCache(tmp_path / "cache2", "abc")
    for video_id in reversed(ids):  # extracted in another order, packed once
        other.commit(features(video_id))
    pack_store(other, ids, tmp_path / "t.zarr", attrs)
    assert tree_digest(tmp_path / "s.zarr") == tree_digest(tmp_path / "t.zarr")
