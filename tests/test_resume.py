"""Fault tests with real processes: SIGKILL an extraction job mid-way, rerun, compare bytes.

`actiondiff extract` runs as its own process on a 16-video demo (64x64, tiny seeded weights,
window 4 so each video is one short window). The packed store of a killed-and-rerun cache
must be byte-identical to that of an uninterrupted run, and the rerun must extract only the
videos the killed job had not committed.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_store_packed import tree_digest
from workflow_copy import copy_workflow, default_config

from actiondiff.cli import main
from actiondiff.tools.cpu_kernels import portable_env
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

    # Removing the files by hand (as the old advice said) must not let pack leave the video out.
    data.unlink()
    marker.unlink()
    capsys.readouterr()
    assert main(["pack", "--cache", str(cache), "--manifest", str(demo["manifest"]), "--out", str(demo["root"] / "x.zarr")]) == 2
    assert not (demo["root"] / "x.zarr").exists()
    verified = demo["root"] / "verified.json"
    command = ["verify-features", "--cache", str(cache), "--manifest", str(demo["manifest"]), "--shard-size", "16",
               "--out", str(verified)]
    assert main(command) == 1 and not verified.exists()
    out = capsys.readouterr().out
    assert f"UNACCOUNTED {video_id} (shard 0): neither committed nor recorded as failed" in out
    assert out.count("UNACCOUNTED") == 1

    summary = extract(demo, cache, demo["root"] / "repair.json")
    assert summary["extracted"] == [video_id] and len(summary["skipped"]) == 15
    assert main(["store", "verify", "--cache", str(cache)]) == 0
    assert main(command) == 0
    assert json.loads(verified.read_text()) == {"videos": 16, "committed": 16, "failed": 0}
    assert pack(demo, cache, demo["root"] / "repaired.zarr") == reference["digest"]


# --- the repair through Snakemake, as a user runs it ------------------------------------------

# 32 videos of 16 frames at 32x32; one window of 4 kept frames each; one tap (the shared-pass workflow test).
REPAIR_CONFIG = {
    "demo": {"videos_per_pair": 2, "num_frames": 16, "size": 32, "test_domains": ["yellow_cross_checker"]},
    "shard_size": 16,
    "decode": {"stride": 4, "offset": 0, "height": 32, "width": 32, "resize": "stretch", "window": 4},
    "extraction": {"layers": [9], "timestep_indices": [20], "conditioning": "middle_frame", "sdv2": False,
                   "dtype": "float32"},
    "experiments": {"actiondiff": {"taps": ["L09_T20"]}},
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(command, cwd=workdir, env=environment(), capture_output=True, text=True, timeout=600)


def store_target(workdir: Path) -> tuple[str, Path]:
    """(settings hash, store path) of the workflow's one feature set, as Snakemake plans it (the
    hash covers the weights' content, which the dry run builds and hashes first)."""
    plan = snakemake(workdir, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    (digest,) = set(re.findall(r"results/stores/demo/([0-9a-f]{12})\.zarr", plan.stdout + plan.stderr))
    return digest, workdir / "results" / "stores" / "demo" / f"{digest}.zarr"


def test_workflow_repairs_a_damaged_cache_by_re_extracting_exactly_the_damaged_video(tiny_demo_runs, tmp_path):
    # A copy of the session's tiny demo (tests/tiny_demo.py: 32 videos in two shards of 16), one
    # failing repack, one repairing rerun.
    work = tmp_path / "work"
    shutil.copytree(tiny_demo_runs[0], work, symlinks=True)
    (store,) = (work / "results" / "stores" / "demo").glob("*.zarr")
    digest, target = store.name.removesuffix(".zarr"), str(store.relative_to(work))
    reference = tree_digest(store)
    cache = work / "results" / "features" / "demo" / digest
    assert not (cache / "verified.json").exists()  # temp: gone once the store is packed

    # 1. One committed video of shard 1 damaged; shard 0's summary left empty, as a writer
    #    killed mid-write (before summaries were written atomically) left it.
    marker = sorted((cache / "videos").glob("*.done"))[20]
    video_id = json.loads(marker.read_text())["video_id"]
    data = marker.with_suffix(".npz")
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    data.write_bytes(bytes(damaged))
    (cache / "shards" / "0.json").write_bytes(b"")

    # 2. Repacking fails before the store is touched, naming the video and what it did.
    failed = snakemake(work, target, "--forcerun", "pack_store")
    assert failed.returncode != 0 and "Error in rule verify_features" in failed.stderr
    assert tree_digest(store) == reference
    log = (work / "logs" / "verify_features" / "demo" / f"{digest}.log").read_text()
    assert f"UNACCOUNTED {video_id} (shard 1): its features do not match their checksum (damaged)" in log
    assert f"UNREADABLE shard summary results/features/demo/{digest}/shards/0.json" in log
    assert "removed the summaries of shards [0, 1]: rerun the same snakemake command" in log
    assert not marker.exists() and data.with_name(data.name + ".damaged").is_file()

    # 3. The same command again re-extracts exactly that video and packs the same bytes.
    rerun = snakemake(work, target, "--forcerun", "pack_store")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    extract_logs = work / "logs" / "extract_features" / "demo" / digest
    assert (extract_logs / "0.log").read_text().strip().endswith("16 ok (0 extracted, 16 already committed, 0 with warnings), 0 failed")
    assert (extract_logs / "1.log").read_text().strip().endswith("16 ok (1 extracted, 15 already committed, 0 with warnings), 0 failed")
    assert json.loads((cache / "shards" / "1.json").read_text())["extracted"] == [video_id]
    assert tree_digest(store) == reference
    dry = snakemake(work, target, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


# --- issue 27: one pass per video for two feature sets (windows 4 and 3), killed and rerun ---


def shared_command(demo: dict, root: Path, done: Path) -> list[str]:
    """`extract-shared` of the demo's 16 videos for sets `w4` (the demo settings) and `w3`."""
    settings = json.loads(demo["settings"])
    sets = []
    for name, window in (("w4", 4), ("w3", 3)):
        blocks = {**settings, "decode": {**settings["decode"], "window": window}}
        sets.append({"name": name, "manifest": str(demo["manifest"]), "out": str(root / name), "settings": blocks})
    return [sys.executable, "-m", "actiondiff", "extract-shared", "--sets", json.dumps({"sets": sets}),
            "--shard", "0", "--shard-size", "16", "--done", str(done)]


def test_shared_pass_killed_then_rerun_gives_the_bytes_of_separate_jobs(demo, reference):
    root = demo["root"] / "shared"
    w3 = json.loads(demo["settings"])
    w3["decode"]["window"] = 3
    separate = [*extract_command(demo, demo["root"] / "cache-w3", demo["root"] / "w3.json")]
    separate[separate.index("--settings") + 1] = json.dumps(w3)
    assert subprocess.run(separate, env=environment(), capture_output=True, timeout=600).returncode == 0
    w3_digest = pack(demo, demo["root"] / "cache-w3", demo["root"] / "w3.zarr")
    job = subprocess.Popen(shared_command(demo, root, root / "killed.json"), env=environment(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while job.poll() is None and len(committed(root / "w4") if (root / "w4" / "videos").is_dir() else ()) < 3:
        assert time.monotonic() < deadline, "the job committed no video within 300 s"
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL, "the job finished before it could be killed"
    before = {name: committed(root / name) for name in ("w4", "w3")}
    assert 3 <= len(before["w4"]) < 16 and not (root / "killed.json").exists()
    rerun = subprocess.run(shared_command(demo, root, root / "rerun.json"), env=environment(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((root / "rerun.json").read_text())
    for name in ("w4", "w3"):  # each set skips exactly what it had committed
        assert set(summary[name]["skipped"]) == before[name]
        assert len(summary[name]["extracted"]) == 16 - len(before[name])
    assert pack(demo, root / "w4", root / "w4.zarr") == reference["digest"]
    assert pack(demo, root / "w3", root / "w3.zarr") == w3_digest


# --- issue 27 through Snakemake: a share group's jobs shard the union of its sets' videos ---

# Two sets that share one pass per video (windows 4 and 3); `w3` reads only two domains (16 of
# the 32 videos), so the union's shards (12 videos each) are not those of either set alone.
SHARED_CONFIG = {
    **REPAIR_CONFIG,
    "shard_size": 12,
    "feature_sets": {"paper": {}, "w3": {"decode": {"window": 3}}},
    "experiments": {
        "actiondiff": {"feature_set": "paper", "taps": ["L09_T20"]},
        "windows": {"feature_set": "w3", "taps": ["L09_T20"],
                    "protocol": {"train_domains": ["red_square_flat"], "test_domains": ["green_disc_noise"]}},
    },
}


def store_digest(store: Path) -> str:
    """`tree_digest` of a store folder, leaving out Snakemake's folder marker (an empty file the
    workflow adds to a directory output)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in store.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"):
        digest.update(str(file.relative_to(store)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def separate_store(work: Path, entry: dict, tmp: Path) -> str:
    """The digest of the store of one set of an `extract-shared --sets` entry, extracted alone
    from the workflow's manifest of that set, as extract_features runs it (its own process, one
    thread as Snakemake gives a one-thread job: the thread count changes CPU rounding)."""
    manifest, cache, store = entry["manifest"], tmp / entry["name"], tmp / f"{entry['name']}.zarr"
    for command in (
        ["extract", "--manifest", manifest, "--out", str(cache), "--settings-hash", entry["settings_hash"],
         "--settings", json.dumps(entry["settings"])],
        ["pack", "--cache", str(cache), "--manifest", manifest, "--out", str(store)],
    ):
        # the portable CPU kernels, as the Snakefile gives every job
        result = subprocess.run([sys.executable, "-m", "actiondiff", *command], cwd=work,
                                env={**environment(), **portable_env()}, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    return tree_digest(store)


def test_workflow_shares_one_pass_per_video_and_repairs_one_set_of_a_group(tmp_path):
    # ~2 min: the two stores through extract_shared, separate extractions to compare, one
    # failing repack, one repairing rerun, one dry run.
    work = copy_workflow(tmp_path / "work", {**default_config(), **SHARED_CONFIG})
    plan = snakemake(work, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    stores = sorted(set(re.findall(r"results/stores/demo/[0-9a-f]{12}\.zarr", plan.stdout + plan.stderr)))
    first = snakemake(work, *stores)
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout + first.stderr
    assert "rule extract_features:" not in output and output.count("rule extract_shared:") == 3  # 32 videos / 12
    (sets,) = set(re.findall(r"extract-shared --sets '(.*?)' --shard", output))
    entries = {e["name"]: e for e in json.loads(sets)["sets"]}
    # Each set's store is byte-identical to that of its own extraction pass.
    reference = {name: separate_store(work, entry, tmp_path / "separate") for name, entry in entries.items()}
    for name in entries:
        assert store_digest(work / f"results/stores/demo/{name}.zarr") == reference[name]
    w3 = next(name for name, e in entries.items() if e["settings"]["decode"]["window"] == 3)

    # One committed video of `w3` damaged: its repack fails naming the union's shard that holds it.
    cache = work / "results" / "features" / "demo" / w3
    marker = sorted((cache / "videos").glob("*.done"))[-1]
    video_id = json.loads(marker.read_text())["video_id"]
    data = marker.with_suffix(".npz")
    data.write_bytes(data.read_bytes()[:-1] + bytes([data.read_bytes()[-1] ^ 0xFF]))
    union = sorted(json.loads(m.read_text())["video_id"] for m in work.glob("results/features/demo/*/videos/*.done"))
    shard = sorted(set(union)).index(video_id) // 12
    target = f"results/stores/demo/{w3}.zarr"
    failed = snakemake(work, target, "--forcerun", "pack_store")
    assert failed.returncode != 0 and "Error in rule verify_features" in failed.stderr
    log = (work / "logs" / "verify_features" / "demo" / f"{w3}.log").read_text()
    assert f"UNACCOUNTED {video_id} (shard {shard}): its features do not match their checksum (damaged)" in log
    assert f"removed the summaries of shards [{shard}]" in log

    # The rerun redoes that shard's job: only that (video, set) is extracted, the store's bytes return.
    rerun = snakemake(work, target, "--forcerun", "pack_store")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    group = next((work / "logs" / "extract_shared" / "demo").iterdir())
    lines = (group / f"{shard}.log").read_text().splitlines()
    assert any(line.startswith(f"{w3}: ") and "(1 extracted," in line for line in lines)
    assert any(line.startswith(next(n for n in entries if n != w3)) and "(0 extracted," in line for line in lines)
    assert store_digest(work / target) == reference[w3]
    # The other set skipped that shard: its store is not repacked (its shard summaries are ancient).
    dry = snakemake(work, "-n", *stores)
    assert "Nothing to be done" in dry.stdout + dry.stderr
