"""Shared pytest fixtures. Each section is owned by the module whose tests introduced it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# --- every `snakemake` start (SLURM's client without its controller) -------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Runs without the SLURM tests point SLURM's client at a configuration with no controller.

    The SLURM executor plugin runs `scontrol show config` when Snakemake loads it, at every
    `snakemake` start. Once SLURM's client is installed (tests/test_slurm.py installs it) and its
    controller is not running, that call waits ~9 s for it (measured 2026-12-07): most of the
    suite's time, which starts Snakemake over a hundred times. With this file's controller-less
    configuration it fails at once, as it does where SLURM is not installed. The `-m slurm` runs
    keep the real configuration.
    """
    if "not slurm" not in (config.getoption("markexpr") or "") or "SLURM_CONF" in os.environ:
        return
    conf = Path(tempfile.mkdtemp(prefix="actiondiff-no-slurm-")) / "slurm.conf"
    conf.write_text("ClusterName=none\nSlurmctldHost=localhost\nMessageTimeout=1\n")
    os.environ["SLURM_CONF"] = str(conf)


# --- extractor / weights (issue 3): seeded tiny SVD + OpenCLIP weights, written once ---------


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny SVD (unet/, vae/) and OpenCLIP weights written by `make_tiny_weights` (seed 0)."""
    from actiondiff.tools.tiny_weights import make_tiny_weights

    return make_tiny_weights(tmp_path_factory.mktemp("weights"), seed=0)


# --- backbones (issue 9): seeded tiny VideoMAE and V-JEPA 2 checkpoints, written once --------


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny `VideoMAEModel` and `VJEPA2Model` checkpoint dirs (`save_pretrained`, seed 0)."""
    from actiondiff.tools.tiny_weights import make_tiny_weights

    return make_tiny_weights(tmp_path_factory.mktemp("encoders"), seed=0, backbones=("videomae", "vjepa2"))


# --- aggregate head, heads as models, timelines (issue 28): a synthetic 2 x 2 tap store ------


@pytest.fixture(scope="session")
def grid_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A packed store of random features (no backbone): 4 taps (layers 3, 6 x timesteps 10, 20)
    of width 8, 3 domains x 2 actions x 2 clips of 12 frames; action `cross` shifts tap L06_T20,
    so a head can learn it. Its identity is a real SVD identity with made-up weight checksums."""
    import numpy as np
    import pandas as pd

    from actiondiff.features.backbones import feature_hash, feature_identity
    from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings
    from actiondiff.store.cache import FeatureCache
    from actiondiff.store.packed import pack_store
    from actiondiff.store.records import VideoFeatures

    root = tmp_path_factory.mktemp("grid_store")
    decode = DecodeSettings(height=32, width=32, window=4, stride=2)
    extract = ExtractSettings(layers=(3, 6), timestep_indices=(10, 20))
    checksums = {"svd/unet/weights": "a" * 64, "svd/vae/weights": "b" * 64, "clip/weights": "c" * 64}
    identity = feature_identity(decode, "svd", extract, WeightsSettings(), checksums)
    digest = feature_hash(identity)
    cache, rng, rows = FeatureCache(root / "cache", digest), np.random.default_rng(0), []
    for d, domain in enumerate(("red", "green", "blue")):
        for action in ("pulse", "cross"):
            for clip in range(2):
                video_id = f"{domain}-{action}-{clip}"
                taps = {t: rng.normal(size=(12, 8)).astype(np.float32) for t in ("L03_T10", "L03_T20", "L06_T10", "L06_T20")}
                taps["L06_T20"] += 2.0 * (action == "cross")
                frames = np.arange(12) * 2
                cache.commit(VideoFeatures(video_id, taps, frames, frames * 1000.0 / 24))
                rows.append({"video_id": video_id, "path": f"/videos/{video_id}.mp4", "labels": action, "domain": domain,
                             "split": ["train", "val", "test"][d]})
    manifest = pd.DataFrame(rows)
    attrs = {"settings": identity, "settings_hash": digest, "backbone": {"name": "svd", "files": checksums}}
    pack_store(cache, list(manifest.video_id), root / "store.zarr", attrs)
    return {"root": root, "store": root / "store.zarr", "manifest": manifest, "identity": identity, "digest": digest}


# --- the tiny demo through the real DAG, twice (issues 26 and 29): run once per session --------


@pytest.fixture(scope="session")
def tiny_demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(this machine's finished run, an AVX2 machine's), side by side (tests/tiny_demo.py):
    the README-numbers tests compare them, the plan-time tests dry-run and copy the first."""
    from tiny_demo import run_both

    return run_both(tmp_path_factory.mktemp("tiny_demo"))
