"""SVD-XT (the paper's backbone) and SDv2 (the same UNet with temporal mixing off) behind the interface.

Both wrap `actiondiff.features.svd_extractor.SVDExtractor` unchanged: the features, the settings
(`ExtractSettings`) and the settings hash are those of the SVD path. `sdv2` is `svd` with
`sdv2: true` (image_only_indicator = 1, every frame processed on its own; docs/design.md section 2,
step 9): the two spellings name the same features and the same store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actiondiff.features.backbones.base import Backbone
from actiondiff.settings import DecodeSettings, ExtractSettings, WeightsSettings, tap_name

if TYPE_CHECKING:
    import numpy as np
    import torch


class SVDBackbone(Backbone):
    """Frozen SVD-XT: VAE latents, OpenCLIP conditioning, UNet taps (layer x timestep)."""

    name = "svd"
    settings_class = ExtractSettings
    weight_keys = ("svd", "clip_arch", "clip_checkpoint")

    def __init__(self, extractor: Any) -> None:
        super().__init__(extractor.extract, extractor.decode)
        self.extractor = extractor

    @classmethod
    def taps_of(cls, settings: ExtractSettings) -> list[str]:
        return [tap_name(layer, t) for layer, t in settings.taps]

    @classmethod
    def weight_inputs(cls, weights: WeightsSettings) -> list[str]:
        from actiondiff.features.weight_files import SINGLE_FILE_SUFFIXES

        svd = [weights.svd] if weights.svd.endswith(SINGLE_FILE_SUFFIXES) else [f"{weights.svd}/unet/config.json", f"{weights.svd}/vae/config.json"]
        clip = [weights.clip_arch, weights.clip_checkpoint] if weights.clip_checkpoint else []
        return svd + clip

    @classmethod
    def load(cls, settings: ExtractSettings, decode: DecodeSettings, weights: WeightsSettings, device: str = "cpu") -> SVDBackbone:
        from actiondiff.features.svd_extractor import SVDExtractor

        return cls(SVDExtractor.from_weights(weights, decode, settings, device))

    @classmethod
    def weight_files(cls, weights: WeightsSettings) -> dict[str, Any]:
        """The UNet + VAE files (`svd/...`) and the conditioning CLIP's (`clip/...`) that loading reads."""
        from actiondiff.features.weight_files import clip_files, svd_files

        files = {f"svd/{role}": value for role, value in svd_files(weights.svd).items()}
        clip = clip_files(weights.svd, weights.clip_arch, weights.clip_checkpoint)
        files.update({f"clip/{role}": value for role, value in clip.items()})
        return files

    @property
    def input_size(self) -> tuple[int, int]:
        return self.decode.height, self.decode.width

    @property
    def clip_length(self) -> int:
        return self.decode.window

    @property
    def feature_dims(self) -> dict[str, int]:
        from actiondiff.features.unet_taps import layer_map

        channels = {info.layer: info.channels for info in layer_map(self.extractor.unet)}
        return {tap_name(layer, t): channels[layer] for layer, t in self.settings.taps}

    def extract_window(self, frames: torch.Tensor, generator: torch.Generator) -> dict[str, np.ndarray]:
        """`SVDExtractor.extract_window`: frames [f, 3, H, W] in [-1, 1] -> {tap: [f, c] float32}."""
        return self.extractor.extract_window(frames, generator)

    def extract_video(self, path, video_id: str, on_window=None):
        """`SVDExtractor.extract_video`, unchanged."""
        return self.extractor.extract_video(path, video_id, on_window)


class SDv2Backbone(SVDBackbone):
    """SVD with every temporal mixer's alpha at 1: the paper's SDv2 baseline."""

    name = "sdv2"

    @classmethod
    def parse_settings(cls, values: dict[str, Any] | None, where: str) -> ExtractSettings:
        """`ExtractSettings` with `sdv2` set to true (whatever the inherited `extraction` block says)."""
        return super().parse_settings({**(values or {}), "sdv2": True}, where)
