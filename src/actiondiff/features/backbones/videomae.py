"""VideoMAE (v1 checkpoints in transformers' layout, v2's released layout converted by
`videomae_v2`) behind the interface, as transformers' `VideoMAEModel`.

Model card (MCG-NJU/videomae-base; VideoMAE v2 uses the same recipe): clips of 16 frames at
224 x 224, tubelet 2 x patch 16, ImageNet mean/std. The clip length, frame size, tubelet and
patch size are read from the checkpoint's `config.json` (`num_frames`, `image_size`,
`tubelet_size`, `patch_size`); the position embeddings are fixed for that grid, so every
clip is padded to the full `num_frames`. The paper's VideoMAEv2 is the giant ViT-g/14
(UnlabeledHybrid); `actiondiff flops --backbone videomae` counts it on the meta device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actiondiff.features.backbones.transformer import VideoEncoderBackbone

if TYPE_CHECKING:
    import torch


class VideoMAEBackbone(VideoEncoderBackbone):
    """Frozen `transformers.VideoMAEModel`: spatial mean of the last hidden state per tubelet."""

    name = "videomae"
    weight_keys = ("videomae",)
    model_class_name = "VideoMAEModel"

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    @property
    def clip_length(self) -> int:
        return int(self.model.config.num_frames)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[b, num_frames, 3, h, w] -> last hidden state [b, t' * h' * w', hidden_size]."""
        return self.model(pixel_values=pixels).last_hidden_state
