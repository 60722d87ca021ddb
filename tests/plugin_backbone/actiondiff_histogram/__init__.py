"""A third-party backbone for the tests: per-frame colour histograms, registered by entry point.

It lives outside actiondiff and plugs in only through the `actiondiff.backbones` entry point
declared in `actiondiff_histogram-0.1.0.dist-info/entry_points.txt` (what `pip install` of a
package with `[project.entry-points."actiondiff.backbones"] histogram = ...` writes). Put
this folder on PYTHONPATH and `backbone: histogram` works in a config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from actiondiff.features.backbones import LAST_HIDDEN_TAP, Backbone


@dataclass(frozen=True)
class HistogramSettings:
    """Histogram bins per RGB channel and the frame size they are counted at."""

    bins: int = field(default=8, metadata={"doc": "bins per channel"})
    size: int = field(default=32, metadata={"doc": "frame height and width, pixels"})

    def __post_init__(self) -> None:
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 2:
            raise ValueError(f"Expected `bins` to be an integer >= 2, but got {self.bins!r}.")


class HistogramBackbone(Backbone):
    """Per-frame normalised RGB histograms: [f, 3 * bins] features, no weights."""

    name = "histogram"
    settings_class = HistogramSettings
    replaces_decode = ("height", "width", "window")

    @classmethod
    def taps_of(cls, settings: HistogramSettings) -> list[str]:
        return [LAST_HIDDEN_TAP]

    @classmethod
    def load(cls, settings, decode, weights, device="cpu") -> HistogramBackbone:
        return cls(settings, decode)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.settings.size, self.settings.size

    @property
    def clip_length(self) -> int:
        return 8

    @property
    def feature_dims(self) -> dict[str, int]:
        return {LAST_HIDDEN_TAP: 3 * self.settings.bins}

    def extract_window(self, frames: torch.Tensor, generator: torch.Generator) -> dict[str, np.ndarray]:
        """frames [f, 3, h, w] in [-1, 1] -> {"L00_T00": [f, 3 * bins]}, each channel's histogram summing to 1."""
        bins = self.settings.bins
        index = ((frames + 1.0) / 2.0 * bins).long().clamp_(0, bins - 1)  # [f, 3, h, w] bin of each pixel
        counts = torch.nn.functional.one_hot(index, bins).float().mean(dim=(2, 3))  # [f, 3, bins]
        return {LAST_HIDDEN_TAP: counts.reshape(frames.shape[0], 3 * bins).numpy()}
