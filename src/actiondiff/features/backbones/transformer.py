"""Shared code of the transformers video encoders (VideoMAE, V-JEPA 2): clips in, per-frame features out.

Per clip (the model card's clip length and frame size, read from the checkpoint's config):
1. pad the window to a full clip with zero (mid-grey) frames, as SVD windows are padded;
2. [-1, 1] -> [0, 1] -> normalise with the checkpoint's mean/std (its preprocessor config,
   else the model card's ImageNet values);
3. encoder forward -> last hidden state [1, t' * h' * w', c] (t' = clip / tubelet_size
   temporal token groups, h' x w' patches);
4. spatial mean per temporal token group (fp32), repeated over the group's `tubelet_size`
   frames, so each frame gets a feature; the padded frames are dropped.
The one tap is `L00_T00` (the last hidden state; these models have no diffusion timestep).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from actiondiff.features.backbones.base import (
    Backbone,
    pad_clip,
    token_groups_to_frames,
)
from actiondiff.features.weight_files import PREPROCESSOR_FILES
from actiondiff.settings import (
    DTYPES,
    LAST_HIDDEN_TAP,
    DecodeSettings,
    WeightsSettings,
    _check_choice,
    _doc,
)

if TYPE_CHECKING:  # torch is imported when a model is built, not when the workflow plans
    import numpy as np
    import torch

# ImageNet normalisation (the VideoMAE and V-JEPA 2 model cards' processors).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VideoEncoderSettings:
    """What a transformers video encoder computes (its clip length and frame size come from its config)."""

    dtype: str = _doc("float32", "backbone compute dtype: float32 | float16 | bfloat16")

    def __post_init__(self) -> None:
        _check_choice("dtype", self.dtype, DTYPES)


def normalisation(root: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) from the checkpoint's preprocessor config, else ImageNet's."""
    for name in PREPROCESSOR_FILES:
        path = root / name
        if path.is_file():
            config = json.loads(path.read_text())
            if "image_mean" in config and "image_std" in config:
                return tuple(config["image_mean"]), tuple(config["image_std"])
    return IMAGENET_MEAN, IMAGENET_STD


class VideoEncoderBackbone(Backbone):
    """A frozen transformers video encoder with a Conv3d tubelet embedding."""

    settings_class = VideoEncoderSettings
    replaces_decode = ("height", "width", "window")  # from the checkpoint's config
    model_class_name: ClassVar[str]  # the transformers class, e.g. "VideoMAEModel"

    def __init__(
        self,
        model: torch.nn.Module,
        settings: VideoEncoderSettings,
        decode: DecodeSettings,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        device: str | torch.device = "cpu",
    ) -> None:
        import torch

        super().__init__(settings, decode)
        self.device = torch.device(device)
        self.dtype = getattr(torch, settings.dtype)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def taps_of(cls, settings: Any) -> list[str]:
        return [LAST_HIDDEN_TAP]

    @classmethod
    def weight_inputs(cls, weights: WeightsSettings) -> list[str]:
        return [f"{getattr(weights, cls.weight_keys[0])}/config.json"]

    @classmethod
    def load(
        cls, settings: VideoEncoderSettings, decode: DecodeSettings, weights: WeightsSettings, device: str = "cpu"
    ) -> VideoEncoderBackbone:
        import torch
        import transformers

        from actiondiff.features.weights import load_transformers_model

        key = cls.weight_keys[0]
        model, root = load_transformers_model(
            getattr(transformers, cls.model_class_name), getattr(weights, key), key, dtype=getattr(torch, settings.dtype)
        )
        mean, std = normalisation(root)
        return cls(model, settings, decode, mean, std, device)

    @classmethod
    def weight_files(cls, weights: WeightsSettings) -> dict[str, Path]:
        """config.json, the weights (safetensors, shards or .bin) and the preprocessor config."""
        from actiondiff.features.weight_files import transformers_files

        key = cls.weight_keys[0]
        return {f"{key}/{role}": path for role, path in transformers_files(getattr(weights, key), key).items()}

    # --- what each model's config calls these
    @property
    @abstractmethod
    def image_size(self) -> int:
        """Square frame size of the checkpoint, pixels."""

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[b, clip, 3, h, w] normalised -> last hidden state [b, tokens, c]."""

    @property
    def input_size(self) -> tuple[int, int]:
        return self.image_size, self.image_size

    @property
    def tubelet_size(self) -> int:
        return int(self.model.config.tubelet_size)

    @property
    def patch_size(self) -> int:
        return int(self.model.config.patch_size)

    @property
    def feature_dims(self) -> dict[str, int]:
        return {LAST_HIDDEN_TAP: int(self.model.config.hidden_size)}

    def extract_window(self, frames: torch.Tensor, generator: torch.Generator) -> dict[str, np.ndarray]:
        """Features of one clip.

        Args:
            frames: [f, 3, h, w] float32 in [-1, 1] at `input_size`, 1 <= f <= clip_length.
            generator: unused (the encoders draw nothing at random).
        Returns:
            {"L00_T00": [f, hidden_size] float32}.
        """
        import torch

        num_real = frames.shape[0]
        # 1. pad: [f, 3, h, w] -> [clip, 3, h, w]
        clip = pad_clip(frames, self.clip_length).to(self.device, torch.float32)
        # 2. [-1, 1] -> [0, 1] -> normalised
        pixels = (((clip + 1.0) / 2.0) - self.mean) / self.std
        # 3. [clip, 3, h, w] -> [1, clip, 3, h, w] (the processors' layout)
        with torch.inference_mode():
            hidden = self.forward(pixels[None].to(self.dtype))
        # 4. [1, t'*h'*w', c] -> [1, clip, c] per frame, fp32
        grid = (self.clip_length // self.tubelet_size, self.image_size // self.patch_size, self.image_size // self.patch_size)
        per_frame = token_groups_to_frames(hidden, grid, self.tubelet_size)
        return {LAST_HIDDEN_TAP: per_frame[0, :num_real].cpu().numpy()}
