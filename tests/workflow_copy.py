"""A copy of the repository's workflow (Snakefile, workflow/, config/, profiles/, envs/) for tests that run Snakemake."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def copy_workflow(dest: Path, config: dict[str, Any] | None = None) -> Path:
    """Copy the workflow into `dest`; `config`, if given, becomes its config/config.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    shutil.copytree(REPO / "workflow", dest / "workflow")
    shutil.copytree(REPO / "config", dest / "config")
    shutil.copytree(REPO / "profiles", dest / "profiles")
    shutil.copytree(REPO / "envs", dest / "envs")
    if config is not None:
        (dest / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def default_config() -> dict[str, Any]:
    """The repository's config/config.yaml, parsed."""
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())
