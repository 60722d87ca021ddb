"""Packed Zarr store: layout, dtype, compression, determinism."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_store_cache import features

from actiondiff.cli import main
from actiondiff.store.cache import FeatureCache
from actiondiff.store.packed import FeatureStore, pack_store, rows_sha256, store_info, verify_store


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


def packed(tmp_path: Path, chunk_bytes: int = 1 << 20) -> tuple[Path, dict]:
    """Three videos of 3, 4, 5 frames (offsets 0, 3, 7, 12) packed into s.zarr."""
    cache = FeatureCache(tmp_path / "cache", "abc")
    videos = {}
    for i in range(3):
        videos[f"v{i}"] = features(f"v{i}" * (i + 1), frames=3 + i)
        videos[f"v{i}"].video_id = f"v{i}"
        cache.commit(videos[f"v{i}"])
    attrs = {"settings": {"decode": {}, "extraction": {}, "weights": {}}, "settings_hash": "abc", "backbone": {}}
    pack_store(cache, list(videos), tmp_path / "s.zarr", attrs, chunk_bytes=chunk_bytes)
    return tmp_path / "s.zarr", videos


def test_checksums_match_rows_and_good_store_verifies(tmp_path):
    path, videos = packed(tmp_path)
    group = zarr.open_group(str(path), mode="r")
    expected = rows_sha256(videos["v2"].features["L09_T20"].astype(np.float16))
    assert str(group["checksums/L09_T20"][2]) == expected
    report = verify_store(path)
    assert report.ok and report.checked == 3 and report.bad == {}
    assert main(["store", "verify", str(path)]) == 0


def test_verify_names_the_video_whose_rows_changed(tmp_path, capsys):
    path, _ = packed(tmp_path)
    group = zarr.open_group(str(path), mode="r+")
    group["features/L09_T20"][3:7] = group["features/L09_T20"][3:7] + 1  # v1's rows, silently
    report = verify_store(path)
    assert sorted(report.bad) == ["v1"] and "checksum" in report.bad["v1"][0]
    assert main(["store", "verify", str(path)]) == 1
    assert "BAD v1:" in capsys.readouterr().out


def test_verify_names_every_video_of_a_corrupted_chunk_file(tmp_path):
    path, _ = packed(tmp_path, chunk_bytes=4 * 8 * 2)  # 4 rows per chunk: chunk 1 = rows 4:8
    assert zarr.open_group(str(path), mode="r")["features/L09_T20"].chunks == (4, 8)
    chunk = path / "features" / "L09_T20" / "c" / "1" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zero the second half by hand
    chunk.write_bytes(bytes(data))
    assert sorted(verify_store(path).bad) == ["v1", "v2"]  # rows 3:7 and 7:12 overlap rows 4:8


def test_verify_flags_nan_bad_offsets_and_missing_attrs(tmp_path):
    path, _ = packed(tmp_path)
    group = zarr.open_group(str(path), mode="r+")
    group["features/L09_T20"][0, 0] = np.nan
    assert "NaN" in verify_store(path).bad["v0"][0]
    group["offsets"][:] = np.asarray([0, 3, 2, 12])
    del group.attrs["backbone"]
    problems = verify_store(path).problems
    assert any("backbone" in p for p in problems) and any("non-decreasing" in p for p in problems)


def test_store_info_counts_and_ratio(tmp_path, capsys):
    path, _ = packed(tmp_path)
    info = store_info(path)
    assert (info["videos"], info["frames"], info["layers"], info["timestep_indices"]) == (3, 12, [9], [20])
    assert info["taps"]["L09_T20"]["channels"] == 8
    assert info["feature_bytes_raw"] == 12 * 8 * 2
    assert info["compression_ratio"] == pytest.approx(192 / info["taps"]["L09_T20"]["bytes"])
    assert main(["store", "info", str(path)]) == 0
    assert "videos    3" in capsys.readouterr().out
