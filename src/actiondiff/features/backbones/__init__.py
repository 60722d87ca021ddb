"""Frozen backbones behind one interface (`base.Backbone`), registered by name (`registry`).

Built-ins: `svd` (the paper's SVD-XT), `sdv2` (SVD with temporal mixing off), `videomae` and
`vjepa2` (transformers video encoders, optional extra `backbones`); third-party backbones plug
in through the entry point group `actiondiff.backbones`.
"""

from actiondiff.features.backbones.base import (
    Backbone,
    pad_clip,
    token_groups_to_frames,
)
from actiondiff.features.backbones.registry import (
    DEFAULT_BACKBONE,
    ENTRY_POINT_GROUP,
    backbone_class,
    feature_hash,
    feature_identity,
    known_backbones,
    parse_identity,
    resolve_settings,
    weight_checksums,
    weight_file_checksums,
)
from actiondiff.settings import LAST_HIDDEN_TAP

__all__ = [
    "DEFAULT_BACKBONE",
    "ENTRY_POINT_GROUP",
    "LAST_HIDDEN_TAP",
    "Backbone",
    "backbone_class",
    "feature_hash",
    "feature_identity",
    "known_backbones",
    "pad_clip",
    "parse_identity",
    "resolve_settings",
    "token_groups_to_frames",
    "weight_checksums",
    "weight_file_checksums",
]
