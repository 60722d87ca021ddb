"""Which feature sets may share one extraction pass per video (`features/shared.py`).

Read at planning time (`plan.share_groups`), for every Snakemake start: no torch here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings

SVD_BACKBONES = ("svd", "sdv2")


def module_key(weights: WeightsSettings, extract: ExtractSettings) -> tuple[Any, ...]:
    """What `SVDExtractor.load_modules` and the placement depend on: extractors with equal keys
    may share one set of modules. The GPU tuning fields enter it, as `channels_last` and
    `compile` change the modules in place; issue 30's `z_encoder` adds a first-stage encoder
    and `resnet_norm_eps` sets GroupNorm's eps in place."""
    return (weights, extract.dtype, extract.half_precision, extract.vae_dtype, extract.channels_last, extract.compile,
            extract.z_encoder, extract.resnet_norm_eps)


def share_key(backbone: str, decode: DecodeSettings, settings: Any, weights: Any) -> Hashable | None:
    """Feature sets with equal keys may be extracted in one pass; None: never shared (not the
    SVD path). The window length stays out of it: each window length cuts its own windows
    from the one decode."""
    if backbone not in SVD_BACKBONES:
        return None
    return (dataclasses.replace(decode, window=1), module_key(weights, settings))


def can_share(*sets: tuple[str, DecodeSettings, Any, Any]) -> bool:
    """Whether every (backbone, decode, settings, weights) of `sets` may go in one pass."""
    keys = {share_key(*s) for s in sets}
    return len(keys) == 1 and None not in keys
