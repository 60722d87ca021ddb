"""README numbers that reproduce on any x86-64 CPU: a tiny demo run twice, once as this machine's
kernels would run it and once as an AVX2-only machine's would (ATen, oneDNN, MKL and NumPy told
to use AVX2 at most), gives byte-identical stores, models, evaluations and tables, because the
jobs run the portable CPU kernels (tools/cpu_kernels.py); the README block written from one run
passes `--check` against the other, and fails once a number in it is changed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_demo import AVX2_MACHINE

from actiondiff.tools import readme_numbers
from actiondiff.tools.cpu_kernels import (
    ENV_VAR,
    PORTABLE_ENV,
    kernel_mode,
    pin_cpu_kernels,
    portable_env,
)

REPO = Path(__file__).resolve().parents[1]
# Outputs compared byte for byte (figures hold matplotlib's metadata, logs hold times).
COMPARED = ("results/stores", "results/models", "results/eval", "results/tables")


def files(workdir: Path) -> dict[str, bytes]:
    out = {}
    for folder in COMPARED:
        for path in sorted((workdir / folder).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(workdir))] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def runs(tiny_demo_runs) -> tuple[Path, Path]:
    return tiny_demo_runs


def test_stores_models_and_tables_are_byte_identical_on_other_kernels(runs):
    here, avx2 = (files(w) for w in runs)
    assert sorted(here) == sorted(avx2) and len(here) > 20
    assert [name for name in here if here[name] != avx2[name]] == []


def readme(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir(exist_ok=True)
    path = tmp_path / "README.md"
    path.write_text(f"# demo\n\n{readme_numbers.START}\nold\n{readme_numbers.TIMING}\nold timing\n{readme_numbers.END}\n\nafter\n")
    return path


def tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "actiondiff.tools.readme_numbers", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_readme_block_written_from_one_run_passes_the_check_against_the_other(runs, tmp_path):
    here, avx2 = runs
    path = readme(tmp_path)
    written = tool("--readme", str(path), "--workdir", str(here), "--write", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    text = path.read_text()
    assert text.startswith("# demo\n\n") and text.endswith(f"{readme_numbers.END}\n\nafter\n") and "old" not in text
    assert "| transformer | actiondiff" in text and "| linear " in text and "of the 8 held-out clips" in text
    assert (tmp_path / "docs" / "demo_per_domain_accuracy.png").is_file()
    # The timing line differs between machines and runs: not checked. One number changed: the
    # check against the other run fails naming that line only (every other line matches it).
    changed = text.replace("Timing: not measured", "The demo took 1 min 2 s")
    path.write_text(changed.replace("of the 8 held-out clips", "of the 9 held-out clips"))
    failed = tool("--readme", str(path), "--workdir", str(avx2), "--check", cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    differences = [line for line in failed.stdout.splitlines() if line.startswith(("README: ", "run:    "))]
    assert len(differences) == 2 and "9 held-out" in differences[0] and "8 held-out" in differences[1], failed.stdout


def test_missing_markers_name_the_readme(tmp_path):
    (tmp_path / "README.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="demo-numbers markers .* in .*README.md"):
        readme_numbers.readme_block("# no markers\n", tmp_path / "README.md")


def pinned(environ: dict[str, str]) -> subprocess.CompletedProcess:
    # in a fresh process: NumPy and torch read the variables when they first pick a kernel
    code = ("import os, torch; from actiondiff.tools.cpu_kernels import pin_cpu_kernels, numpy_uses; pin_cpu_kernels(); "
            "print(torch.backends.cpu.get_cpu_capability(), torch.backends.mkldnn.enabled, os.environ['MKL_CBWR'], "
            "numpy_uses())")
    env = {k: v for k, v in os.environ.items() if k not in AVX2_MACHINE}
    return subprocess.run([sys.executable, "-c", code], env={**env, **environ, "PYTHONPATH": str(REPO / "src")},
                          capture_output=True, text=True)


def test_portable_mode_overrides_the_machine_and_unknown_modes_fail():
    machine = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO"}
    out = pinned({**machine, **portable_env()})
    assert out.stdout.split() == ["DEFAULT", "False", PORTABLE_ENV["MKL_CBWR"], "[]"], out.stderr
    late = pinned({**machine, ENV_VAR: "portable"})  # NumPy imported without its variable: refused
    assert late.returncode != 0 and "Expected ACTIONDIFF_CPU_KERNELS=portable to be applied before NumPy" in late.stderr
    assert "NPY_DISABLE_CPU_FEATURES=" in late.stderr
    assert kernel_mode({}) == "native" and pin_cpu_kernels({ENV_VAR: "native"}) == "native"
    with pytest.raises(ValueError, match="Expected `ACTIONDIFF_CPU_KERNELS` to be one of portable, native, but got 'fast'"):
        kernel_mode({ENV_VAR: "fast"})


def test_demo_videos_are_the_same_bytes_on_every_run(tmp_path):
    import numpy as np

    from actiondiff.tools.demo_data import DOMAINS, render_clip, rgb_to_yuv420p, write_mp4

    frame = np.zeros((2, 4, 3), dtype=np.uint8)
    frame[:, 2:] = 255  # left half black, right half white: BT.601 limited range
    assert rgb_to_yuv420p(frame).tolist() == [[16, 16, 235, 235], [16, 16, 235, 235], [128, 128, 128, 128]]
    clip = render_clip(DOMAINS[1], "pulse", 24, 64, np.random.default_rng(3))
    for name in ("a.mp4", "b.mp4"):
        write_mp4(clip, tmp_path / name)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    with pytest.raises(ValueError, match="even height and width"):
        rgb_to_yuv420p(np.zeros((3, 4, 3), dtype=np.uint8))
