"""Ad-hoc extraction conveniences: --list, --format npy, --devices, per-window progress."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from actiondiff.cli import main, read_video_list
from actiondiff.features.job import frames_bar
from actiondiff.features.multi_device import parse_devices
from actiondiff.features.windows import extract_windows
from actiondiff.io.video import declared_frames
from actiondiff.settings import DecodeSettings, ExtractSettings
from actiondiff.store.cache import FeatureCache
from actiondiff.tools.demo_data import DOMAINS, render_clip, write_mp4

DECODE = {"stride": 1, "height": 64, "width": 64, "window": 6}
EXTRACT = {"layers": [1], "timestep_indices": [20], "conditioning": "none"}  # the cheapest tiny run
FRAMES = {"a": 8, "b": 5, "c": 11}  # windows of 6: [6, 2], [5], [6, 5]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Three small demo clips (64 x 64 H.264) of 8, 5 and 11 frames."""
    root = tmp_path_factory.mktemp("adhoc_videos")
    paths = {}
    for i, (name, num_frames) in enumerate(FRAMES.items()):
        paths[name] = root / f"{name}.mp4"
        write_mp4(render_clip(DOMAINS[i], "pulse", num_frames, 64, np.random.default_rng(i)), paths[name])
    return paths


@pytest.fixture(scope="module")
def settings(tiny_weights) -> str:
    return json.dumps({"decode": DECODE, "extraction": EXTRACT, "weights": {k: str(v) for k, v in tiny_weights.items()}})


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, videos, settings) -> dict:
    """One single-process run: `a` as an argument, the rest from a list file, --format npy."""
    root = tmp_path_factory.mktemp("adhoc_single")
    (root / "lists").mkdir()
    shutil.copy(videos["b"], root / "lists" / "b.mp4")
    list_file = root / "lists" / "videos.txt"
    list_file.write_text(f"# my clips\nb.mp4\n\n  {videos['c']}  \nmissing.mp4\n")
    out, done = root / "cache", root / "done.json"
    argv = ["extract", str(videos["a"]), "--list", str(list_file), "--format", "npy", "--out", str(out),
            "--done", str(done), "--settings", settings]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers of the two-worker test: CPU bytes depend on the thread count
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return {"out": out, "summary": json.loads(done.read_text()), "list": list_file}


def _cache(out: Path) -> FeatureCache:
    from actiondiff.features.backbones import feature_hash

    return FeatureCache(out, feature_hash(json.loads((out / "settings.json").read_text())))


def test_list_file_paths_relative_to_it_and_missing_ones_recorded(single_run):
    summary, cache = single_run["summary"], _cache(single_run["out"])
    assert sorted(summary["extracted"]) == ["a", "b", "c"] and summary["failed"] == ["missing"]
    failure = cache.failure("missing")
    assert failure["error_type"] == "VideoNotFoundError"
    assert failure["path"] == str(single_run["list"].parent / "missing.mp4")  # relative to the list's folder
    assert {v: len(cache.load(v).frame_index) for v in "abc"} == FRAMES


def test_npy_files_per_video_and_tap_hold_the_cache_arrays(single_run):
    cache = _cache(single_run["out"])
    folder = single_run["out"] / "npy"
    names = [f"{v}_{key}.npy" for v in "abc" for key in ("L01_T20", "timestamp_ms", "frame_index")]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    for video_id in "abc":
        stored = cache.load(video_id)
        tap = np.load(folder / f"{video_id}_L01_T20.npy")
        assert tap.dtype == np.float32 and tap.shape == (FRAMES[video_id], 32)
        assert tap.tobytes() == stored.features["L01_T20"].tobytes()
        np.testing.assert_array_equal(np.load(folder / f"{video_id}_frame_index.npy"), np.arange(FRAMES[video_id]))
        np.testing.assert_array_equal(np.load(folder / f"{video_id}_timestamp_ms.npy"), stored.timestamp_ms)


def test_rerun_skips_committed_videos_and_writes_only_missing_npy_files(single_run, videos, settings, tmp_path, capsys):
    out = tmp_path / "cache"
    shutil.copytree(single_run["out"], out)
    kept = (out / "npy" / "a_L01_T20.npy").stat().st_ino
    (out / "npy" / "b_frame_index.npy").unlink()  # b's files are incomplete: written again
    argv = ["extract", *(str(videos[v]) for v in "abc"), "--format", "npy", "--out", str(out), "--settings", settings]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("3 ok (0 extracted, 3 already committed")
    assert (out / "npy" / "a_L01_T20.npy").stat().st_ino == kept
    np.testing.assert_array_equal(np.load(out / "npy" / "b_frame_index.npy"), np.arange(5))


def test_exit_status_with_failed_videos_is_0_and_2_with_strict(single_run, videos, settings, tmp_path, caplog, capsys):
    # without --strict (single_run): `missing` failed and is recorded, the run exits 0
    assert single_run["summary"]["failed"] == ["missing"]
    out = tmp_path / "cache"
    argv = ["extract", str(tmp_path / "gone.mp4"), str(videos["b"]), "--out", str(out), "--settings", settings, "--strict"]
    assert main(argv) == 2  # --strict: stops at the first bad video
    assert "gone.mp4" in caplog.text and not _cache(out).is_committed("b")
    assert main(argv[:-1]) == 0
    assert capsys.readouterr().out.startswith("1 ok (1 extracted, 0 already committed, 0 with warnings), 1 failed")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 when every video is committed or recorded as failed" in helptext
    assert "with --strict, 2 at the first video that fails" in helptext


def test_on_window_is_called_once_per_window_with_its_frames(videos):
    def extract_window(frames, generator):  # a per-window function: each frame's mean and a draw
        return {"L01_T20": (frames.mean(dim=(1, 2, 3)) + torch.rand(len(frames), generator=generator))[:, None].numpy()}

    decode = DecodeSettings(**DECODE)
    calls: list[np.ndarray] = []
    ticked = extract_windows(videos["c"], "c", decode, ExtractSettings(), extract_window, on_window=calls.append)
    assert [c.tolist() for c in calls] == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    # a progress callback sees indices only: the features are those extracted without one
    plain = extract_windows(videos["c"], "c", decode, ExtractSettings(), extract_window)
    assert ticked.features["L01_T20"].shape == (11, 1)
    assert ticked.features["L01_T20"].tobytes() == plain.features["L01_T20"].tobytes()


def test_frames_bar_ticks_per_window_up_to_the_declared_frames(videos, tmp_path):
    assert declared_frames(videos["c"]) == 11 and declared_frames(tmp_path / "none.mp4") is None
    (tmp_path / "frames").mkdir()
    for i in range(3):
        shutil.copy(videos["a"], tmp_path / "frames" / f"{i}.png")  # counted by name, not read
    assert declared_frames(tmp_path / "frames") == 3
    with frames_bar("c", str(videos["c"]), console=True) as tick:
        tick(np.arange(6))
        assert (tick.bar.n, tick.bar.total) == (6, 11)
        tick(np.arange(6, 11))
        assert tick.bar.n == 11
    with frames_bar("c", str(videos["c"]), console=False) as tick:
        assert tick is None  # a log file gets one line per video instead


def test_bad_list_devices_and_sources_are_refused_by_name(tmp_path, settings, videos, caplog):
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        read_video_list(tmp_path / "nope.txt")
    out = tmp_path / "cache"
    base = ["extract", str(videos["a"]), "--out", str(out), "--settings", settings]
    assert main([*base, "--list", str(tmp_path / "nope.txt")]) == 2
    assert f"{tmp_path / 'nope.txt'} does not exist" in caplog.text and not out.exists()
    assert main([*base, "--device", "cpu", "--devices", "cpu,cpu"]) == 2
    assert "Expected --device or --devices, but got both" in caplog.text
    assert main([*base, "--manifest", str(tmp_path / "m.csv")]) == 2
    assert "from --manifest or from paths / --list, but got both" in caplog.text
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    with pytest.raises(ValueError, match="but got 'gpu0' in 'cpu,gpu0'"):
        parse_devices("cpu,gpu0")


def test_two_cpu_workers_commit_each_video_once_with_the_single_process_bytes(
    single_run, videos, settings, tmp_path, caplog, monkeypatch
):
    # One worker process per device ('spawn': each imports torch), one thread each, as the
    # single-process run had: 2 workers x 2 threads on 2 cores ran 5x slower.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out, done = tmp_path / "cache", tmp_path / "done.json"
    argv = ["extract", *(str(videos[v]) for v in "abc"), "--devices", "cpu,cpu", "--out", str(out),
            "--done", str(done), "--settings", settings]
    caplog.set_level("INFO")
    assert main(argv) == 0
    summary = json.loads(done.read_text())
    assert sorted(summary["extracted"]) == ["a", "b", "c"] and summary["failed"] == []  # each once
    per_worker = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("videos per worker"))
    assert sum(int(part.split()[-1]) for part in per_worker.split(": ", 1)[1].split(", ")) == 3
    ours, single = _cache(out), _cache(single_run["out"])
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(f"{v}.{e}" for v in "abc" for e in ("done", "npz"))
    for video_id in "abc":
        a, b = ours.load(video_id), single.load(video_id)
        assert a.features["L01_T20"].tobytes() == b.features["L01_T20"].tobytes()
        assert a.frame_index.tobytes() == b.frame_index.tobytes()


def _extract_process(out: Path, done: Path, settings: str, videos: list[Path]) -> subprocess.Popen:
    """A real `actiondiff extract` run in its own process (one torch thread, as `single_run`)."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "actiondiff", "extract", *map(str, videos), "--out", str(out), "--done", str(done),
            "--settings", settings]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_runs_on_one_folder_extract_each_video_once(videos, settings, single_run, tmp_path):
    out = tmp_path / "cache"
    runs = [_extract_process(out, tmp_path / f"done{k}.json", settings, [videos[v] for v in "abc"]) for k in range(2)]
    logs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], logs
    summaries = [json.loads((tmp_path / f"done{k}.json").read_text()) for k in range(2)]
    extracted = [set(s["extracted"]) for s in summaries]
    assert not extracted[0] & extracted[1] and extracted[0] | extracted[1] == set("abc"), logs  # each once
    for summary, other in zip(summaries, reversed(extracted), strict=True):
        assert set(summary["skipped"]) == other  # what the other run did, counted as committed
    ours, single = _cache(out), _cache(single_run["out"])
    for video_id in "abc":
        assert ours.load(video_id).features["L01_T20"].tobytes() == single.load(video_id).features["L01_T20"].tobytes()
    assert list((out / "claims").iterdir()) == []


def test_a_run_puts_off_videos_another_holds_and_takes_them_when_it_is_killed(videos, settings, single_run, tmp_path):
    out = tmp_path / "cache"
    cache = FeatureCache(out, _cache(single_run["out"]).settings_hash)  # the same settings
    # another run, holding `a` and `b`: this test process's claims, then a process's, killed
    hold = ("import sys, time\nfrom actiondiff.features.claims import claim\nfrom actiondiff.store.cache import "
            "FeatureCache\ncache = FeatureCache(sys.argv[1], sys.argv[2])\nwith claim(cache, 'a', wait=False), "
            "claim(cache, 'b', wait=False):\n    print('held', flush=True)\n    time.sleep(300)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    other = subprocess.Popen([sys.executable, "-c", hold, str(out), cache.settings_hash], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        run = _extract_process(out, tmp_path / "done.json", settings, [videos[v] for v in "abc"])
        deadline = time.monotonic() + 300
        while not cache.is_committed("c") and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # it goes on to wait for `a`
        assert run.poll() is None, run.communicate()[0]
        assert not cache.is_committed("a") and not cache.is_committed("b")
        for name in ("a.npz", "a.done"):  # the other run commits `a` ...
            shutil.copy(_cache(single_run["out"]).videos / name, cache.videos / name)
    finally:
        other.send_signal(signal.SIGKILL)  # ... and is killed with `b` claimed: its claims die with it
        other.wait()
    log = run.communicate(timeout=300)[0]
    assert run.returncode == 0, log
    summary = json.loads((tmp_path / "done.json").read_text())
    assert (summary["extracted"], summary["skipped"], summary["failed"]) == (["c", "b"], ["a"], []), log
