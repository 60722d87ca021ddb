"""Fault tests with real processes: SIGKILL an extraction job mid-way, rerun, compare bytes.

`actiondiff extract` runs as its own process on a 16-video demo (64x64, tiny seeded weights,
window 4 so each video is one short window). The packed store of a killed-and-rerun cache
must be byte-identical to that of an uninterrupted run, and the rerun must extract only the
videos the killed job had not committed.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_store_packed import tree_digest

from actiondiff.cli import main
from actiondiff.tools.demo_data import make_demo_dataset
from actiondiff.tools.tiny_weights import make_tiny_weights

pytestmark = pytest.mark.slow  # ~1-2 min on a busy 2-core machine: four extraction processes

REPO = Path(__file__).resolve().parents[1]
COLUMNS = {"video": "video", "label": "action", "domain": "domain", "split": "split"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """16 demo videos (4 domains x 4 actions, 16 frames, 64x64), a manifest, tiny weights."""
    root = tmp_path_factory.mktemp("resume")
    make_demo_dataset(root / "demo", videos_per_pair=1, num_frames=16, size=64, test_domains=("yellow_cross_checker",))
    weights = make_tiny_weights(root / "weights")
    manifest = root / "manifest.csv"
    assert main([
        "manifest", "custom", "--annotations", str(root / "demo" / "labels.csv"), "--videos", str(root / "demo"),
        "--out", str(manifest), "--settings", json.dumps({"dataset": {"columns": COLUMNS}}),
    ]) == 0
    settings = {
        "weights": {k: str(v) for k, v in weights.items()},
        "decode": {"height": 64, "width": 64, "window": 4},
    }
    return {"root": root, "manifest": manifest, "settings": json.dumps(settings)}


def extract_command(demo: dict, cache: Path, done: Path) -> list[str]:
    return [
        sys.executable, "-m", "actiondiff", "extract", "--manifest", str(demo["manifest"]), "--shard", "0",
        "--shard-size", "16", "--out", str(cache), "--done", str(done), "--settings", demo["settings"],
    ]


def environment() -> dict[str, str]:
    # One thread per process: on a shared 2-core machine more threads only contend.
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")


def extract(demo: dict, cache: Path, done: Path) -> dict[str, list[str]]:
    """Run one extraction job to completion; its --done summary."""
    result = subprocess.run(extract_command(demo, cache, done), env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(done.read_text())


def pack(demo: dict, cache: Path, store: Path) -> str:
    """Pack the cache; the digest of every file of the store (names and bytes)."""
    assert main(["pack", "--cache", str(cache), "--manifest", str(demo["manifest"]), "--out", str(store)]) == 0
    return tree_digest(store)


def committed(cache: Path) -> set[str]:
    return {json.loads(p.read_text())["video_id"] for p in (cache / "videos").glob("*.done")}


@pytest.fixture(scope="module")
def reference(demo) -> dict:
    """An uninterrupted run: its cache, summary and packed-store digest."""
    cache = demo["root"] / "cache-reference"
    summary = extract(demo, cache, demo["root"] / "reference.json")
    return {"cache": cache, "summary": summary, "digest": pack(demo, cache, demo["root"] / "reference.zarr")}


def test_uninterrupted_run_extracts_every_video(reference):
    assert len(reference["summary"]["extracted"]) == 16
    assert reference["summary"]["skipped"] == [] and reference["summary"]["failed"] == []


def test_sigkill_then_rerun_gives_identical_bytes_and_redoes_only_the_rest(demo, reference):
    cache = demo["root"] / "cache-killed"
    job = subprocess.Popen(
        extract_command(demo, cache, demo["root"] / "killed.json"),
        env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while job.poll() is None and len(committed(cache) if (cache / "videos").is_dir() else ()) < 3:
        assert time.monotonic() < deadline, "the job committed no video within 300 s"
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL, "the job finished before it could be killed"
    before = committed(cache)
    assert 3 <= len(before) < 16
    assert not (demo["root"] / "killed.json").exists()

    summary = extract(demo, cache, demo["root"] / "rerun.json")
    assert set(summary["skipped"]) == before
    assert set(summary["extracted"]) == set(reference["summary"]["extracted"]) - before
    assert len(summary["extracted"]) == 16 - len(before)
    assert pack(demo, cache, demo["root"] / "rerun.zarr") == reference["digest"]
    assert main(["store", "verify", str(demo["root"] / "rerun.zarr")]) == 0


def test_damaged_video_is_named_then_only_it_is_redone(demo, reference, capsys):
    cache = reference["cache"]
    marker = sorted((cache / "videos").glob("*.done"))[5]
    video_id = json.loads(marker.read_text())["video_id"]
    data = marker.with_suffix(".npz")
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte, by hand
    data.write_bytes(bytes(damaged))

    assert main(["store", "verify", "--cache", str(cache)]) == 1
    out = capsys.readouterr().out
    assert f"BAD {video_id}:" in out and out.count("BAD ") == 1
    assert main(["pack", "--cache", str(cache), "--manifest", str(demo["manifest"]), "--out", str(demo["root"] / "x.zarr")]) == 2

    data.unlink()
    marker.unlink()
    summary = extract(demo, cache, demo["root"] / "repair.json")
    assert summary["extracted"] == [video_id] and len(summary["skipped"]) == 15
    assert main(["store", "verify", "--cache", str(cache)]) == 0
    assert pack(demo, cache, demo["root"] / "repaired.zarr") == reference["digest"]
