"""Shared pytest fixtures. Each section is owned by the module whose tests introduced it."""

from __future__ import annotations

from pathlib import Path

import pytest

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
