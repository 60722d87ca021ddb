"""A tiny demo run through the real Snakemake DAG, as this machine's CPU kernels would run it and as
an AVX2-only machine's would: shared by the README-numbers tests (the two runs must give the same
bytes) and the plan-time tests (dry runs and copies of the first run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workflow_copy import copy_workflow, default_config

from actiondiff.tools.cpu_kernels import ENV_VAR

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "demo": {"videos_per_pair": 2, "num_frames": 40, "size": 64, "test_domains": ["yellow_cross_checker"]},
    "shard_size": 16,  # two extraction shards (tests/test_resume.py repairs one of them)
    "train": {"preset": "demo", "seeds": [0], "epochs": 4},
    "extraction": {"layers": [9], "timestep_indices": [20], "conditioning": "middle_frame", "sdv2": False,
                   "dtype": "float32"},
    "experiments": {
        "actiondiff": {"taps": ["L09_T20"], "tables": ["results", "ablation"], "ablation": "baseline"},
        "head_linear": {"taps": ["L09_T20"], "head": {"kind": "linear"}, "tables": ["ablation"], "ablation": "head"},
    },
}
# What an AVX2-only CPU's libraries would pick; the portable kernels must make it irrelevant.
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2",
                "NPY_DISABLE_CPU_FEATURES": "X86_V4,AVX512_ICL,AVX512_SPR"}


def start_demo(workdir: Path, env: dict[str, str]) -> subprocess.Popen:
    """The tiny demo in `workdir`, started on one core (two run side by side on the 2-core machine)."""
    copy_workflow(workdir, {**default_config(), **TINY})
    full_env = {k: v for k, v in os.environ.items() if k not in AVX2_MACHINE and k != ENV_VAR}
    full_env.update(env, PYTHONPATH=str(REPO / "src"))
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "1"], cwd=workdir, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(demo: subprocess.Popen) -> None:
    _, stderr = demo.communicate(timeout=900)
    assert demo.returncode == 0, stderr[-4000:]


def run_both(root: Path) -> tuple[Path, Path]:
    """(this machine's run, the AVX2 machine's run), side by side under `root`."""
    here, avx2 = root / "here", root / "avx2"
    demos = [start_demo(here, {}), start_demo(avx2, AVX2_MACHINE)]
    for demo in demos:
        finish(demo)
    return here, avx2
