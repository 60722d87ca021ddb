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
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from actiondiff.plan import DEMO_WEIGHTS, demo_weight_paths, used_backbones
from actiondiff.settings import WeightsSettings, from_dict


def to_be_built(config: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Path]:
    """{key: demo path} of the `keys` that name the demo's own weights, not built yet."""
    weights = config.get("weights") or {}
    demo = demo_weight_paths(config)
    return {k: demo[k] for k in keys if k in demo and Path(str(weights.get(k, ""))) == demo[k] and not demo[k].exists()}


def planning_weights(config: dict[str, Any], keys: tuple[str, ...], staging: str | Path) -> WeightsSettings:
    """The config's weights, where each of `keys` naming a demo weight not built yet points at
    the same file in a copy under `staging` (built there once, seeded: the same bytes)."""
    weights = from_dict(WeightsSettings, config.get("weights"), "config key `weights`")
    absent = to_be_built(config, keys)
    if not absent:
        return weights
    backbones = tuple(sorted({DEMO_WEIGHTS[k][1] for k in absent}))
    folder = staged_demo_weights(Path(staging), backbones)
    return dataclasses.replace(weights, **{k: str(folder / DEMO_WEIGHTS[k][0]) for k in absent})


def staged_demo_weights(staging: Path, backbones: tuple[str, ...]) -> Path:
    """The tiny weights of `backbones` under `staging/<code version>/`, built when absent.

    Named by a hash of the module that builds them, so a changed generator never hashes stale
    bytes. Built in a private folder and renamed into place: concurrent Snakemake processes
    (each job re-reads the workflow) never see a half-written copy.
    """
    from actiondiff.tools import tiny_weights

    version = hashlib.sha256(Path(tiny_weights.__file__).read_bytes()).hexdigest()[:12]
    root = staging / version
    for backbone in backbones:
        done = root / backbone / ".complete"
        if done.exists():
            continue
        root.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=f".{backbone}-", dir=root))
        tiny_weights.make_tiny_weights(private, backbones=(backbone,))
        (private / ".complete").write_text("")
        try:
            os.rename(private, root / backbone)
        except OSError:  # another process finished first: its copy has the same bytes
            shutil.rmtree(private, ignore_errors=True)
    return _merged(root, backbones)


def _merged(root: Path, backbones: tuple[str, ...]) -> Path:
    """One folder holding every backbone's tiny-* entries (links to the built copies)."""
    merged = root / "+".join(backbones)
    if len(backbones) == 1:
        return root / backbones[0]
    merged.mkdir(exist_ok=True)
    for backbone in backbones:
        for entry in (root / backbone).iterdir():
            link = merged / entry.name
            if entry.name != ".complete" and not link.exists():
                link.symlink_to(entry.resolve())
    return merged


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
