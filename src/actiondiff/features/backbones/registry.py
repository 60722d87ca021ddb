"""Backbones by name: the built-ins and those of installed packages (entry point group `actiondiff.backbones`).

A third-party package registers a `Backbone` subclass in its pyproject:

    [project.entry-points."actiondiff.backbones"]
    histogram = "my_package.histogram:HistogramBackbone"

and a config selects it with `backbone: histogram` (or per feature set). Built-in names win
over entry points of the same name.

The extraction identity (its hash names the cache and the store) is built here, the same way
for every backbone: the decode and settings blocks, the content of the weight files the
backbone reads (their locations are recorded, not hashed) and, for any backbone but SVD, its
name. `sdv2` is SVD with `sdv2: true` and shares that identity.
"""

from __future__ import annotations

import dataclasses
import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from actiondiff.features.backbones.base import Backbone, check_tap_names
from actiondiff.settings import (
    DecodeSettings,
    ExtractSettings,
    WeightsSettings,
    from_dict,
    settings_hash,
    to_dict,
    without_default_tuning,
)

ENTRY_POINT_GROUP = "actiondiff.backbones"
DEFAULT_BACKBONE = "svd"
BUILTIN = {
    "svd": "actiondiff.features.backbones.svd:SVDBackbone",
    "sdv2": "actiondiff.features.backbones.svd:SDv2Backbone",
    "videomae": "actiondiff.features.backbones.videomae:VideoMAEBackbone",
    "vjepa2": "actiondiff.features.backbones.vjepa2:VJEPA2Backbone",
}
# Names shown in tables (paper spelling); other backbones show their registry name.


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_backbones() -> list[str]:
    """Built-in names, then installed entry points' names, sorted."""
    return list(BUILTIN) + sorted(set(_plugins()) - set(BUILTIN))


def backbone_class(name: str) -> type[Backbone]:
    """The `Backbone` subclass registered under `name`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        TypeError: an entry point that is not a `Backbone` subclass.
    """
    if name in BUILTIN:
        module, attr = BUILTIN[name].split(":")
        return getattr(importlib.import_module(module), attr)
    plugins = _plugins()
    if name not in plugins:
        raise ValueError(
            f"Expected `backbone` to be one of {known_backbones()}, but got {name!r}. Third-party "
            f"backbones register under the entry point group `{ENTRY_POINT_GROUP}`."
        )
    cls = plugins[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise TypeError(
            f"Expected entry point {name!r} ({plugins[name].value}) to be a subclass of "
            f"actiondiff.features.backbones.Backbone, but got {cls!r}."
        )
    return cls


def canonical_name(name: str, settings: Any) -> str:
    """`sdv2` for SVD settings with `sdv2: true`, else the name (what tables show as the backbone)."""
    if name == "svd" and getattr(settings, "sdv2", False):
        return "sdv2"
    return name



def resolve_settings(
    extraction: dict[str, Any] | None, overrides: dict[str, Any] | None, default: str, where: str
) -> tuple[str, Any]:
    """(backbone name, its settings) of one feature set.

    Args:
        extraction: the config's `extraction` block. SVD and SDv2 take all of it; other
            backbones inherit only the keys their settings have (e.g. `dtype`), since the
            rest (layers, timesteps, conditioning...) are SVD's.
        overrides: the feature set's keys (`backbone` and settings keys); unknown keys are errors.
        default: the config's top-level `backbone`.
    """
    overrides = dict(overrides or {})
    name = overrides.pop("backbone", None) or default
    cls = backbone_class(name)
    extraction = dict(extraction or {})
    if cls.settings_class is not ExtractSettings:
        fields = {f.name for f in dataclasses.fields(cls.settings_class)}
        extraction = {k: v for k, v in extraction.items() if k in fields}
    settings = cls.parse_settings({**extraction, **overrides}, where)
    check_tap_names(name, cls.taps_of(settings))
    return name, settings


def feature_identity(
    decode: DecodeSettings, name: str, settings: Any, weights: WeightsSettings, checksums: dict[str, str] | None = None
) -> dict[str, Any]:
    """Everything that determines the features: its hash (`feature_hash`) names the cache and the store.

    Blocks: `decode`, `extraction` (the backbone's settings; for SVD without the GPU tuning
    fields and the later ones that hold their defaults, `settings.LATER_FIELDS`, so identities recorded before
    those fields existed keep their hash), `weights` (where the weights
    were read: recorded, not hashed), `weights_sha256` ({role: SHA-256} of exactly the files
    the backbone loads, `Backbone.weight_files`: the weights' content, hashed) and, for any
    backbone but SVD, `backbone`.

    Args:
        checksums: the `weights_sha256` block when known (a stored identity); None: computed
            now through the checksum cache (`weights.checksum_cache`); a file missing now (the
            workflow plans before a download) counts as `missing`, which no file matches.
    """
    cls = backbone_class(name)
    extraction = to_dict(settings)
    if cls.settings_class is ExtractSettings:  # SVD: as identities recorded before these fields
        extraction = without_default_tuning(extraction)
    identity = {
        "decode": {k: v for k, v in to_dict(decode).items() if k not in cls.replaces_decode},
        "extraction": extraction,
        "weights": {key: getattr(weights, key) for key in cls.weight_keys},
        "weights_sha256": dict(checksums) if checksums is not None else weight_checksums(name, weights, strict=False),
    }
    if cls.settings_class is not ExtractSettings:  # SVD / SDv2 identities carry no name
        identity["backbone"] = name
    return identity


def weight_checksums(
    name: str, weights: WeightsSettings, strict: bool = True, cache: str | Path | None = None
) -> dict[str, str]:
    """{role: SHA-256} of the files backbone `name` loads (cached by path, size and mtime).

    Args:
        cache: the checksum cache file (None: `weights.checksum_cache`); planning keeps its own
            under `.snakemake/`, so a dry run writes nothing else.
    Raises:
        WeightsError: a file is missing (only when `strict`; else its keys count as `missing`).
    """
    from actiondiff.features.weight_files import MISSING, ChecksumCache, WeightsError

    cls = backbone_class(name)
    try:
        files = cls.weight_files(weights)
    except WeightsError:
        if strict:
            raise
        return {key: MISSING for key in cls.weight_keys}
    return ChecksumCache(weights.checksum_cache if cache is None else cache).checksums(files)


def weight_paths(name: str, weights: WeightsSettings) -> dict[str, str]:
    """{file path: role} of the real files backbone `name` loads (built-in configs are not files)."""
    return {str(v): role for role, v in backbone_class(name).weight_files(weights).items() if not isinstance(v, dict)}


def weight_file_checksums(name: str, weights: WeightsSettings) -> dict[str, str]:
    """{file path: SHA-256} of the real files backbone `name` loads (what stores record)."""
    checksums = weight_checksums(name, weights)
    return {path: checksums[role] for path, role in weight_paths(name, weights).items()}


def hashed_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """What the feature hash covers: the identity without the weights' locations when their
    content is known, so a moved download keeps the hash and replaced weights never do.
    Identities recorded before content hashing (no `weights_sha256`) hash as they did."""
    checksums = identity.get("weights_sha256")
    if checksums:
        return {k: v for k, v in identity.items() if k != "weights"}
    return {k: v for k, v in identity.items() if k != "weights_sha256"}


def feature_hash(identity: dict[str, Any], where: str = "the extraction identity") -> str:
    """The hash that names a cache and a store: of the identity rebuilt from its settings objects,
    so a stored identity (JSON) and a fresh one (`feature_identity`) always hash alike. Every
    caller (extraction, pack, planning, predict) hashes through this function."""
    checksums = identity.get("weights_sha256")
    if checksums is not None and not (
        isinstance(checksums, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in checksums.items())
    ):
        raise ValueError(f"Expected `weights_sha256` in {where} to map file roles to SHA-256 strings, but got {checksums!r}.")
    rebuilt = feature_identity(*parse_identity(identity, where), checksums=checksums or {})
    if checksums is None:
        rebuilt.pop("weights_sha256")
    return settings_hash(hashed_identity(rebuilt))


def parse_identity(identity: dict[str, Any], where: str) -> tuple[DecodeSettings, str, Any, WeightsSettings]:
    """(decode, backbone name, settings, weights) of a stored identity; unknown keys are errors."""
    for block in ("decode", "extraction", "weights"):  # `weights_sha256` is read by feature_hash
        if block not in identity:
            raise ValueError(f"Expected the extraction identity in {where} to have a `{block}` block, but it has {sorted(identity)}.")
    name = identity.get("backbone", DEFAULT_BACKBONE)
    cls = backbone_class(name)
    return (
        from_dict(DecodeSettings, identity["decode"], f"{where} `decode`"),
        name,
        cls.parse_settings(identity["extraction"], f"{where} `extraction`"),
        from_dict(WeightsSettings, identity["weights"], f"{where} `weights`"),
    )
