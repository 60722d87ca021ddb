"""The deterministic stages several feature sets share over one video, keyed by the frames they read.

A shared pass (`features/shared.py`) hands one `StageMemo` per video to every set's windows.
A stage result (a VAE chunk's posterior, a CLIP embedding) is kept under its stage key (the
module, device, dtypes, padding: `SVDExtractor._vae_key` / `_clip_key`) and the source frame
indices of the batch it was computed on, padding as None. A set whose window batches exactly
those frames, in that order, with that key reuses it: the same code on the same inputs, so the
same bytes as a separate pass, whatever window length cut the batch. A VAE chunk of frames
0-7, say, is the first chunk of a window of 10, of 16 and of 25 alike.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

FrameIds = tuple[int | None, ...]  # source frame index per batch row; None: a padding frame


def window_frame_ids(indices: Sequence[int], window: int) -> FrameIds:
    """A window's rows: its kept frames' source indices, then None for each padding frame."""
    return (*map(int, indices), *(None,) * (window - len(indices)))


def chunk_frame_ids(frame_ids: FrameIds, chunk: int) -> list[FrameIds]:
    """The batches of at most `chunk` rows the VAE encodes a window in, in order."""
    return [frame_ids[start : start + chunk] for start in range(0, len(frame_ids), chunk)]


class StageMemo:
    """Stage results of one video, shared by the feature sets of one pass.

    `frame_ids` are the rows of the window being run (`window_frame_ids`); `get` keys a result
    by its stage key and the rows it reads. `forget_before` drops what no later window can read.
    """

    def __init__(self) -> None:
        self.frame_ids: FrameIds = ()
        self._values: dict[tuple[Hashable, FrameIds], Any] = {}

    def get(self, key: Hashable, rows: slice, compute: Callable[[], T]) -> T:
        """`compute()` on the current window's `rows`, once per `key` and those rows' frames."""
        full = (key, self.frame_ids[rows])
        if full not in self._values:
            self._values[full] = compute()
        return self._values[full]

    def forget_before(self, first: int) -> None:
        """Drop the results whose frames all precede source index `first` (every window still
        to run starts at or after it). Padding-only batches stay: they read no frame."""
        self._values = {
            (key, ids): value
            for (key, ids), value in self._values.items()
            if all(i is None for i in ids) or max(i for i in ids if i is not None) >= first
        }

    def __len__(self) -> int:
        return len(self._values)


def memoised(memo: StageMemo | None, key: Hashable, rows: slice, compute: Callable[[], T]) -> T:
    """`compute()` through `memo` (a shared pass), or directly (a separate pass: None)."""
    return compute() if memo is None else memo.get(key, rows, compute)
