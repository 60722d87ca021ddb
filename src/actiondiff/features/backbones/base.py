"""The backbone interface: frames of a window (or clip) in, pooled per-frame features per tap out.

A backbone is a frozen video (or image) model behind five facts and one method:

| member | what |
|---|---|
| `name` | the registry name (`svd`, `sdv2`, `videomae`, `vjepa2`, or an entry point's name) |
| `settings_class` | a frozen settings dataclass; its values (and the content of the weight files the backbone reads, `weight_files`) feed the settings hash, so two settings never share a cache or a store |
| `input_size` | (height, width) in pixels the frames are resized to |
| `clip_length` | frames per window (clip); the last window of a video is padded |
| `tap_names`, `feature_dims` | the named features it returns (`L\\d\\d_T\\d\\d`, e.g. `L09_T20`) and their widths |
| `extract_window(frames, generator)` | `[f, 3, h, w]` float32 in **[-1, 1]** (f <= clip_length) -> `{tap: [f, c] float32}` |

`extract_video` (here, shared by every backbone) decodes a video with the decode settings'
frame sampling, resized to `input_size`, in windows of `clip_length`, so every kept frame gets
one feature per tap (an `on_window` callback, for progress, hears of each window). Tap names are known from the settings alone (`taps_of`), before any
weight is loaded, because the workflow plans its training runs from them.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from actiondiff.settings import (
    DecodeSettings,
    WeightsSettings,
    from_dict,
    is_tap_name,
)

if TYPE_CHECKING:  # torch is imported where frames are processed, not when the workflow plans
    import torch


class Backbone(ABC):
    """A frozen feature extractor. Subclasses set the class attributes and implement the rest."""

    name: ClassVar[str]
    settings_class: ClassVar[type]
    # The `weights` config keys it reads (recorded in the identity; the files' content is hashed).
    weight_keys: ClassVar[tuple[str, ...]] = ()
    # `decode` keys it replaces by its own values (e.g. a checkpoint's frame size and clip
    # length); they are left out of the settings hash.
    replaces_decode: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Any, decode: DecodeSettings) -> None:
        self.settings = settings
        self.decode = decode

    # ------------------------------------------------------------------ from the settings alone

    @classmethod
    def parse_settings(cls, values: dict[str, Any] | None, where: str) -> Any:
        """The settings object from a config mapping; unknown keys are errors."""
        return from_dict(cls.settings_class, values, where)

    @classmethod
    @abstractmethod
    def taps_of(cls, settings: Any) -> list[str]:
        """The tap names these settings produce (no weights loaded)."""

    @classmethod
    def weight_inputs(cls, weights: WeightsSettings) -> list[str]:
        """Files the workflow can wait for before extracting (e.g. a built demo checkpoint)."""
        return []

    @classmethod
    @abstractmethod
    def load(cls, settings: Any, decode: DecodeSettings, weights: WeightsSettings, device: str = "cpu") -> Backbone:
        """Load the weights (strictly, offline) and build the backbone on `device`."""

    @classmethod
    def weight_files(cls, weights: WeightsSettings) -> dict[str, Path | dict]:
        """{role: file} of exactly the files `load` reads (a built-in config may stand for a
        file as a dict); their checksums are the weights' part of the feature identity.

        Roles are location-independent names (`svd/unet/weights`), so a moved download keeps
        its identity. The default: every file under each `weight_keys` path.

        Raises:
            WeightsError (`actiondiff.features.weight_files`): a file is missing.
        """
        from actiondiff.features.weight_files import WeightsError

        files: dict[str, Path | dict] = {}
        for key in cls.weight_keys:
            path = Path(getattr(weights, key))
            if path.is_file():
                files[key] = path
            elif path.is_dir():
                files.update({f"{key}/{f.relative_to(path)}": f for f in sorted(path.rglob("*")) if f.is_file()})
            else:
                raise WeightsError(f"Expected `weights.{key}` {str(path)!r} to exist, but it does not.")
        return files

    # ------------------------------------------------------------------ per loaded model

    @property
    @abstractmethod
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the frames `extract_window` takes."""

    @property
    @abstractmethod
    def clip_length(self) -> int:
        """Frames per window; `extract_window` takes 1..clip_length frames."""

    @property
    def tap_names(self) -> list[str]:
        return self.taps_of(self.settings)

    @property
    @abstractmethod
    def feature_dims(self) -> dict[str, int]:
        """{tap name: channels}."""

    @abstractmethod
    def extract_window(self, frames: torch.Tensor, generator: torch.Generator) -> dict[str, np.ndarray]:
        """Features of one window.

        Args:
            frames: [f, 3, height, width] float32 in [-1, 1], 1 <= f <= clip_length, at
                `input_size`; padded by the backbone where it needs a full clip.
            generator: the video's seeded CPU generator (for any random draw).
        Returns:
            {tap name: [f, channels] float32}, one row per real frame.
        """

    @property
    def video_decode(self) -> DecodeSettings:
        """The decode settings with the frame size and window this backbone takes."""
        height, width = self.input_size
        return dataclasses.replace(self.decode, height=height, width=width, window=self.clip_length)

    def extract_video(
        self, path: str | Path, video_id: str, on_window: Callable[[np.ndarray], None] | None = None
    ):
        """Decode one video and return its per-frame features (`VideoFeatures`) for every tap.

        `on_window`, if given, is called after each window with its [f] source frame indices
        (progress; see `extract_windows`)."""
        from actiondiff.features.windows import extract_windows

        device = getattr(self, "device", "cpu")  # where frames are resized: the backbone's device
        return extract_windows(
            path, video_id, self.video_decode, self.settings, self.extract_window, device, on_window=on_window
        )


def pad_clip(frames: torch.Tensor, clip_length: int) -> torch.Tensor:
    """[f, 3, h, w] -> [clip_length, 3, h, w], padded with zero (mid-grey) frames as SVD windows are.

    Raises:
        ValueError: f is not in 1..clip_length.
    """
    import torch.nn.functional as F

    num_real = frames.shape[0]
    if not 1 <= num_real <= clip_length:
        raise ValueError(f"Expected a window of 1..{clip_length} frames, but got {num_real}.")
    return F.pad(frames, (0, 0, 0, 0, 0, 0, 0, clip_length - num_real)) if num_real < clip_length else frames


def token_groups_to_frames(hidden: torch.Tensor, grid: tuple[int, int, int], tubelet_size: int) -> torch.Tensor:
    """Spatial mean per temporal token group, repeated over the group's frames.

    Args:
        hidden: [b, tokens, c] last hidden state, tokens ordered (time, row, column) as a
            Conv3d patch embedding flattens them; tokens = t' * h' * w'.
        grid: (t', h', w'): temporal token groups and the patch grid.
        tubelet_size: frames per temporal token group.
    Returns:
        [b, t' * tubelet_size, c] float32: each frame gets its group's mean feature.
    """
    groups, rows, columns = grid
    batch, tokens, channels = hidden.shape
    if tokens != groups * rows * columns:
        raise ValueError(f"Expected {groups}x{rows}x{columns} = {groups * rows * columns} tokens, but got {tokens}.")
    # [b, t'*h'*w', c] -> [b, t', h'*w', c]; mean over space, accumulated in fp32
    pooled = hidden.reshape(batch, groups, rows * columns, channels).float().mean(dim=2)  # [b, t', c]
    return pooled.repeat_interleave(tubelet_size, dim=1)  # [b, t', c] -> [b, t'*tubelet, c]


def check_tap_names(name: str, taps: list[str]) -> list[str]:
    """The tap names, checked against the `L\\d\\d_T\\d\\d` pattern the workflow relies on."""
    bad = [tap for tap in taps if not is_tap_name(tap)]
    if not taps or bad:
        raise ValueError(
            f"Expected backbone {name!r} to name its taps like L09_T20 (L00_T00 for a last hidden "
            f"state), but got {taps}."
        )
    return taps
