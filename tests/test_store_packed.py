"""Packed Zarr store: layout, dtype, compression, determinism, reads by need, verify."""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_store_cache import features

from actiondiff.cli import main
from actiondiff.store.cache import FeatureCache
from actiondiff.store.packed import (
    FeatureStore,
    damaged_chunks,
    pack_store,
    rows_sha256,
    store_info,
    verify_store,
)
from actiondiff.store.records import VideoFeatures, remove_stale_temporaries

ATTRS = {"settings": {"decode": {}, "extraction": {}, "weights": {}}, "settings_hash": "abc", "backbone": {}}


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def grid_video(video_id: str, frames: int) -> VideoFeatures:
    """Two taps of widths 4 and 8 (a small grid), seeded by the id."""
    rng = np.random.default_rng(len(video_id))
    return VideoFeatures(
        video_id,
        {"L01_T00": rng.standard_normal((frames, 4)).astype(np.float32),
         "L09_T20": rng.standard_normal((frames, 8)).astype(np.float32)},
        np.arange(frames) * 4,
        np.arange(frames) * 160.0,
    )


def test_pack_layout_and_values(tmp_path):
    cache = FeatureCache(tmp_path / "cache", "abc")
    videos = {f"v{i}": features(f"v{i}" * (i + 1), frames=3 + i) for i in range(3)}
    for video_id, value in videos.items():
        value.video_id = video_id
        cache.commit(value)
    counts = pack_store(cache, ["v2", "v0", "v1", "missing"], tmp_path / "s.zarr", ATTRS)
    assert counts == {"packed": 3, "missing": 1}
    store = FeatureStore(tmp_path / "s.zarr")
    assert store.video_ids == ["v0", "v1", "v2"]
    np.testing.assert_array_equal(store.offsets, [0, 3, 7, 12])
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert group["features"].dtype == np.float16 and group["features"].shape == (12, 8)
    assert group["features"].shards == (12, 8)  # one shard file holds every row and tap
    loaded = store.read("L09_T20")
    assert loaded["v1"].dtype == np.float16 and loaded["v1"].shape == (4, 8)
    np.testing.assert_allclose(loaded["v1"], videos["v1"].features["L09_T20"], atol=2e-3)
    assert store.attrs["taps"] == ["L09_T20"] and store.attrs["tap_columns"] == {"L09_T20": [0, 8]}
    assert "actiondiff_version" in store.attrs


def test_grid_store_holds_taps_as_columns_and_reads_one_tap_and_some_videos(tmp_path):
    cache = FeatureCache(tmp_path / "cache", "abc")
    videos = {f"v{i}": grid_video(f"v{i}" * (i + 1), 3 + i) for i in range(5)}
    for video_id, value in videos.items():
        value.video_id = video_id
        cache.commit(value)
    # inner chunks [4 rows, gcd(4, 8) = 4 columns], shards [8 rows, 12 columns]
    pack_store(cache, list(videos), tmp_path / "s.zarr", ATTRS, chunk_bytes=4 * 4 * 2, shard_bytes=8 * 12 * 2)
    store = FeatureStore(tmp_path / "s.zarr")
    assert (store.array.chunks, store.array.shards) == ((4, 4), (8, 12))
    assert store.attrs["tap_columns"] == {"L01_T00": [0, 4], "L09_T20": [4, 12]}
    assert sorted(p.name for p in (tmp_path / "s.zarr" / "features" / "c").iterdir()) == ["0", "1", "2", "3"]  # 25 rows / 8
    some = store.read("L09_T20", ["v4", "v1"])
    assert list(some) == ["v4", "v1"] and some["v4"].shape == (7, 8)
    np.testing.assert_array_equal(some["v4"], videos["v4"].features["L09_T20"].astype(np.float16))
    np.testing.assert_array_equal(store.read("L01_T00")["v2"], videos["v2"].features["L01_T00"].astype(np.float16))
    # iter_rows with a read budget of 6 rows: neighbours share a read, every video comes once, in order
    got = [(i, rows.shape) for i, rows in store.iter_rows("L01_T00", [3, 0, 1], read_bytes=6 * 4 * 2)]
    assert got == [(0, (3, 4)), (1, (4, 4)), (3, (6, 4))]
    np.testing.assert_array_equal(store.rows("L09_T20", 3), videos["v3"].features["L09_T20"].astype(np.float16))
    with pytest.raises(KeyError, match="'nope'"):
        store.read("L09_T20", ["nope"])
    assert verify_store(tmp_path / "s.zarr").ok
    # Same values whatever the shard size: the layout changes, the data does not.
    pack_store(cache, list(videos), tmp_path / "big.zarr", ATTRS)
    big = FeatureStore(tmp_path / "big.zarr").read("L09_T20")
    assert all(np.array_equal(big[v], store.read("L09_T20")[v]) for v in videos)


def test_pack_refuses_videos_with_other_taps(tmp_path):
    cache = FeatureCache(tmp_path / "cache", "abc")
    cache.commit(grid_video("a", 3))
    cache.commit(features("b"))
    with pytest.raises(ValueError, match=r"Expected video 'b' to have the taps \{'L01_T00': 4, 'L09_T20': 8\}"):
        pack_store(cache, ["a", "b"], tmp_path / "s.zarr", ATTRS)
    assert not (tmp_path / "s.zarr").exists()


def test_pack_is_deterministic_and_incremental_safe(tmp_path):
    ids = [f"v{i}" for i in range(4)]
    cache = FeatureCache(tmp_path / "cache", "abc")
    for video_id in ids[:2]:
        cache.commit(features(video_id))
    pack_store(cache, ids, tmp_path / "s.zarr", ATTRS, shard_bytes=4 * 8 * 2)  # partial pack first
    for video_id in ids[2:]:
        cache.commit(features(video_id))
    pack_store(cache, ids, tmp_path / "s.zarr", ATTRS, shard_bytes=4 * 8 * 2)
    other = FeatureCache(tmp_path / "cache2", "abc")
    for video_id in reversed(ids):  # extracted in another order, packed once
        other.commit(features(video_id))
    pack_store(other, ids, tmp_path / "t.zarr", ATTRS, shard_bytes=4 * 8 * 2)
    assert tree_digest(tmp_path / "s.zarr") == tree_digest(tmp_path / "t.zarr")


def test_pack_removes_the_temporary_store_of_a_killed_pack(tmp_path):
    # `pack-store` clears the stale temporaries of the store's folder (this rule) before it packs
    import socket

    cache = FeatureCache(tmp_path / "cache", "abc")
    cache.commit(features("v"))
    host = socket.gethostname()
    dead = tmp_path / f".s.zarr.tmp-{host}-999999999"  # no such pid on this machine
    dead.mkdir()
    (dead / "zarr.json").write_text("{}")
    mine = tmp_path / f".s.zarr.tmp-{host}-{os.getppid()}"  # a live process's: kept
    mine.mkdir()
    removed = remove_stale_temporaries(tmp_path)
    pack_store(cache, ["v"], tmp_path / "s.zarr", ATTRS)
    assert removed == [dead] and not dead.exists() and mine.exists() and (tmp_path / "s.zarr").is_dir()


def packed(tmp_path: Path, chunk_bytes: int = 1 << 20, shard_bytes: int = 128 << 20) -> tuple[Path, dict]:
    """Three videos of 3, 4, 5 frames (offsets 0, 3, 7, 12) packed into s.zarr."""
    cache = FeatureCache(tmp_path / "cache", "abc")
    videos = {}
    for i in range(3):
        videos[f"v{i}"] = features(f"v{i}" * (i + 1), frames=3 + i)
        videos[f"v{i}"].video_id = f"v{i}"
        cache.commit(videos[f"v{i}"])
    pack_store(cache, list(videos), tmp_path / "s.zarr", ATTRS, chunk_bytes=chunk_bytes, shard_bytes=shard_bytes)
    return tmp_path / "s.zarr", videos


def test_checksums_match_rows_and_good_store_verifies(tmp_path):
    path, videos = packed(tmp_path)
    group = zarr.open_group(str(path), mode="r")
    expected = rows_sha256(videos["v2"].features["L09_T20"].astype(np.float16))
    assert group["checksums"][2, 0].tobytes().hex() == expected
    assert group.attrs["checksum_columns"] == ["L09_T20", "frame_index+timestamp_ms"]
    report = verify_store(path)
    assert report.ok and report.checked == 3 and report.bad == {}
    assert main(["store", "verify", str(path)]) == 0


def test_verify_names_the_video_whose_rows_changed(tmp_path, capsys):
    path, _ = packed(tmp_path)
    group = zarr.open_group(str(path), mode="r+")
    group["features"][3:7] = group["features"][3:7] + 1  # v1's rows, silently
    report = verify_store(path)
    assert sorted(report.bad) == ["v1"] and "checksum" in report.bad["v1"][0]
    assert main(["store", "verify", str(path)]) == 1
    assert "BAD v1:" in capsys.readouterr().out


def test_verify_names_every_video_of_a_corrupted_shard_file(tmp_path):
    path, _ = packed(tmp_path, chunk_bytes=4 * 8 * 2, shard_bytes=4 * 8 * 2)  # 4 rows per shard: shard 1 = rows 4:8
    assert zarr.open_group(str(path), mode="r")["features"].shards == (4, 8)
    shard = path / "features" / "c" / "1" / "0"
    data = bytearray(shard.read_bytes())
    data[: len(data) // 2] = bytes(len(data) // 2)  # zero the first half (the chunk) by hand
    shard.write_bytes(bytes(data))
    assert sorted(verify_store(path).bad) == ["v1", "v2"]  # rows 3:7 and 7:12 overlap rows 4:8


@pytest.mark.parametrize("name", ["features", "offsets", "video_id", "frame_index", "timestamp_ms", "checksums"])
def test_verify_fails_on_a_missing_chunk_of_any_array(tmp_path, name):
    path, _ = packed(tmp_path, chunk_bytes=4 * 8 * 2, shard_bytes=4 * 8 * 2)
    chunk = sorted((path / name / "c").rglob("*"))[-1]  # the last chunk (Zarr reads it as fill value)
    chunk.unlink()
    report = verify_store(path)
    assert not report.ok
    assert any(f"`{name}`" in p and "missing" in p for p in report.problems)
    assert main(["store", "verify", str(path)]) == 1


def test_verify_fails_on_an_inner_chunk_emptied_in_a_shard_index(tmp_path):
    path, _ = packed(tmp_path, chunk_bytes=2 * 8 * 2, shard_bytes=4 * 8 * 2)  # 2 inner chunks per shard
    group = zarr.open_group(str(path), mode="r")
    assert damaged_chunks(path, "features", group["features"]) == []
    shard = path / "features" / "c" / "1" / "0"
    data = bytearray(shard.read_bytes())
    data[-36:-20] = b"\xff" * 16  # entry 0 of the 2-entry index (+ 4-byte CRC32C): empty
    shard.write_bytes(bytes(data))
    damage = damaged_chunks(path, "features", group["features"])
    assert [(d.rows, d.label) for d in damage] == [((4, 6), "features chunk 1/0 inner chunk 0/0 is missing (empty in the shard index)")]
    assert verify_store(path).bad["v1"] == [f"`features` rows 3:7 lie in a damaged chunk ({damage[0].label})"]


def cut_in_half(file: Path) -> None:
    """Cut a chunk file to its first half, as an interrupted copy leaves it."""
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


@pytest.mark.parametrize("name", ["frame_index", "timestamp_ms"])
def test_verify_blames_a_cut_frame_array_by_name(tmp_path, name, capsys):
    path, _ = packed(tmp_path)  # frame_index / timestamp_ms: one chunk of 12 rows, Blosc
    cut_in_half(path / name / "c" / "0")
    label = f"{name} chunk 0 has 56 bytes where its Blosc header records 112: cut"
    report = verify_store(path)
    # read whole, the cut frame decodes to garbage with no error: it must be named, not read
    assert report.problems == [f"Expected every chunk of `{name}` whole on disk, but {label}"]
    assert report.bad == {
        "v0": [f"`{name}` rows 0:3 lie in a damaged chunk ({label})"],
        "v1": [f"`{name}` rows 3:7 lie in a damaged chunk ({label})"],
        "v2": [f"`{name}` rows 7:12 lie in a damaged chunk ({label})"],
    }
    assert main(["store", "verify", str(path)]) == 1
    assert f"BAD v1: `{name}` rows 3:7" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["frame_index", "timestamp_ms"])
def test_verify_names_a_shortened_frame_array(tmp_path, name):
    path, _ = packed(tmp_path)
    zarr.open_group(str(path), mode="r+")[name].resize((10,))
    assert verify_store(path).problems == [f"Expected `{name}` to have 12 rows (the last offset), but got 10"]


def test_verify_blames_a_damaged_checksums_chunk_on_checksums(tmp_path):
    path, _ = packed(tmp_path)  # checksums: one Zstd chunk of 4 videos
    chunk = path / "checksums" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zero its second half
    chunk.write_bytes(bytes(data))
    report = verify_store(path)
    assert report.problems == [] and sorted(report.bad) == ["v0", "v1", "v2"]
    for i, reasons in enumerate(report.bad.values()):
        # the frame arrays and features are whole: only the checksums are blamed
        assert len(reasons) == 1 and reasons[0].startswith(f"`checksums` row {i} unreadable (RuntimeError(")


def test_verify_blames_a_cut_feature_shard_on_features(tmp_path):
    path, _ = packed(tmp_path, chunk_bytes=2 * 8 * 2, shard_bytes=4 * 8 * 2)  # shards of 4 rows, 2 inner chunks
    cut_in_half(path / "features" / "c" / "2" / "0")  # rows 8:12, all in v2
    report = verify_store(path)
    assert sorted(report.bad) == ["v2"] and report.bad["v2"][0].startswith("`features` rows 7:12 lie in a damaged chunk (")
    assert report.problems and all(p.startswith("Expected every chunk of `features` whole on disk, but features chunk 2/0")
                                   for p in report.problems)


def test_verify_accepts_nan_timestamps_but_not_changed_ones(tmp_path):
    cache = FeatureCache(tmp_path / "cache", "abc")
    folder = features("frames", frames=4)
    folder.timestamp_ms = np.full(4, np.nan)  # a frame folder: no times, as documented
    cache.commit(folder)
    cache.commit(features("clip", frames=3))
    pack_store(cache, ["frames", "clip"], tmp_path / "s.zarr", ATTRS)
    assert verify_store(tmp_path / "s.zarr").ok
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+")
    group["timestamp_ms"][1] = 999.0  # clip's second frame (clip sorts first)
    assert verify_store(tmp_path / "s.zarr").bad == {"clip": ["frame_index/timestamp_ms differ from their recorded checksum"]}


def test_verify_flags_nan_bad_offsets_and_missing_attrs(tmp_path):
    path, _ = packed(tmp_path)
    group = zarr.open_group(str(path), mode="r+")
    group["features"][0, 0] = np.nan
    assert "NaN" in verify_store(path).bad["v0"][0]
    group["offsets"][:] = np.asarray([0, 3, 2, 12])
    del group.attrs["backbone"]
    problems = verify_store(path).problems
    assert any("backbone" in p for p in problems) and any("non-decreasing" in p for p in problems)


def test_store_info_counts_and_ratio(tmp_path, capsys):
    path, _ = packed(tmp_path)
    info = store_info(path)
    assert (info["videos"], info["frames"], info["layers"], info["timestep_indices"]) == (3, 12, [9], [20])
    assert info["taps"]["L09_T20"] == {"channels": 8, "columns": [0, 8]}
    assert info["feature_bytes_raw"] == 12 * 8 * 2
    shard = path / "features" / "c" / "0" / "0"
    assert info["compression_ratio"] == pytest.approx(192 / shard.stat().st_size)
    assert main(["store", "info", str(path)]) == 0
    assert "videos    3" in capsys.readouterr().out
