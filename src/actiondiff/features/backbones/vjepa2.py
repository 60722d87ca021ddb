"""V-JEPA 2 (transformers' `VJEPA2Model`) behind the interface: the encoder only.

Model card (facebook/vjepa2-vitl-fpc64-256): clips of `frames_per_clip` = 64 frames at
`crop_size` = 256, tubelet 2 x patch 16, ImageNet mean/std; all four are read from the
checkpoint's `config.json`. The predictor is loaded (strict loading checks every key) but
never run (`skip_predictor=True`). The paper compared V-JEPA (v1, ViT-H); transformers ships
V-JEPA 2, the same encoder design (3D RoPE ViT), so V-JEPA 2 stands in for it here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actiondiff.features.backbones.transformer import VideoEncoderBackbone

if TYPE_CHECKING:
    import torch


class VJEPA2Backbone(VideoEncoderBackbone):
    """Frozen `transformers.VJEPA2Model` encoder: spatial mean of the last hidden state per tubelet."""

    name = "vjepa2"
    weight_keys = ("vjepa2",)
    model_class_name = "VJEPA2Model"

    @property
    def image_size(self) -> int:
        return int(self.model.config.crop_size)

    @property
    def clip_length(self) -> int:
        return int(self.model.config.frames_per_clip)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[b, frames_per_clip, 3, h, w] -> encoder last hidden state [b, t' * h' * w', hidden_size]."""
        return self.model(pixel_values_videos=pixels, skip_predictor=True).last_hidden_state
