"""The weights' content at planning time, without writing outside Snakemake's own folder.

The feature hash names the weights' content, and Snakemake names the caches and stores by it
when it parses the workflow. The demo's tiny weights are built by a rule (`make_tiny_weights`)
on the first real run; until then planning reads the same seeded bytes from a copy built once
under `.snakemake/` (the `staging` folder), so a dry run never writes the demo's files and a
finished run's weights are never rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from actiondiff.plan import DEMO_WEIGHTS, demo_weight_paths, used_backbones
from actiondiff.settings import WeightsSettings, from_dict
from actiondiff.tools.cpu_kernels import kernel_mode, portable_env


def to_be_built(config: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Path]:
    """{key: demo path} of the `keys` that name the demo's own weights, not built yet."""
    weights = config.get("weights") or {}
    demo = demo_weight_paths(config)
    return {k: demo[k] for k in keys if k in demo and Path(str(weights.get(k, ""))) == demo[k] and not demo[k].exists()}


def planning_weights(config: dict[str, Any], keys: tuple[str, ...], staging: str | Path) -> WeightsSettings:
    """The config's weights, where each of `keys` naming a demo weight not built yet points at
    the same file in a copy under `staging` (built there once, seeded: the same bytes)."""
    weights = from_dict(WeightsSettings, config.get("weights"), "config key `weights`")
    staged = {
        key: staged_demo_weights(Path(staging), DEMO_WEIGHTS[key][1]) / DEMO_WEIGHTS[key][0]
        for key in to_be_built(config, keys)
    }
    return dataclasses.replace(weights, **{key: str(path) for key, path in staged.items()})


def staged_demo_weights(staging: Path, backbone: str) -> Path:
    """The folder holding the tiny weights of `backbone` (`tiny-*` entries), under
    `staging/<code version>/`, built when absent.

    Named by a hash of the code that builds them and of the libraries that write them (a
    diffusers config records its version), so a changed generator never hashes stale bytes.
    Built in a private folder and renamed into place: concurrent Snakemake processes (each job
    re-reads the workflow) never see a half-written copy.
    """
    # their code names the staged copy (read, not imported: planning need not load torch)
    modules = ("actiondiff.tools.tiny_weights", "actiondiff.tools.demo_data")
    code = b"".join(Path(importlib.util.find_spec(m).origin).read_bytes() for m in modules)
    libraries = " ".join(_version(name) for name in ("torch", "diffusers", "open_clip_torch", "transformers", "safetensors"))
    # and of the CPU kernels that build them (the VAE calibration runs the model)
    version = hashlib.sha256(code + f" {libraries} kernels={kernel_mode()}".encode()).hexdigest()[:12]
    folder = staging / version / backbone
    if not (folder / ".complete").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=f".{backbone}-", dir=folder.parent))
        _build_tiny_weights(private, backbone)
        (private / ".complete").write_text("")
        try:
            os.rename(private, folder)
        except OSError:  # another process finished first: its copy has the same bytes
            shutil.rmtree(private, ignore_errors=True)
    return folder


def _build_tiny_weights(folder: Path, backbone: str) -> None:
    """The tiny weights of `backbone` written into `folder`, by the CPU kernels the jobs run: with
    the portable ones (tools/cpu_kernels.py) in a process started with them, as rule
    make_tiny_weights builds them (their VAE calibration runs the model), so both get the same bytes."""
    if kernel_mode() != "portable":
        from actiondiff.tools.tiny_weights import make_tiny_weights

        make_tiny_weights(folder, backbones=(backbone,))
        return
    command = [sys.executable, "-m", "actiondiff", "make-tiny-weights", "--out", str(folder), "--backbone", backbone]
    result = subprocess.run(command, env={**os.environ, **portable_env()}, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"Expected `{' '.join(command[2:])}` to build the demo's weights, but it exited "
            f"{result.returncode}:\n{result.stderr[-2000:]}"
        )


def _version(package: str) -> str:
    try:
        return f"{package}=={metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return f"{package} absent"


def planning_checksums(config: dict[str, Any], staging: str | Path) -> dict[str, dict[str, str]]:
    """{backbone: {role: SHA-256}} of the weights each backbone the config uses loads, read
    strictly at planning time: the demo's not yet built from a copy under `staging`, every
    checksum cached in `staging/weights-sha256.json` (mtimes change on a copied disk, content
    does not: a copied file is hashed again, once, and keeps its hash).

    Raises:
        ValueError: one line naming the `weights` key whose files are missing or of an
            unknown layout (a hub id not in the local cache included).
    """
    from actiondiff.features.backbones import backbone_class
    from actiondiff.features.backbones.registry import weight_checksums
    from actiondiff.features.weight_files import WeightsError

    out = {}
    for name in used_backbones(config):
        keys = backbone_class(name).weight_keys
        weights = planning_weights(config, keys, staging)
        try:
            out[name] = weight_checksums(name, weights, strict=True, cache=Path(staging) / "weights-sha256.json")
        except (WeightsError, OSError) as error:
            message = " ".join(str(error).split())
            raise ValueError(f"Invalid config: {message} (config keys `weights.{'`/`weights.'.join(keys)}`, backbone {name}).") from None
    return out
