"""Names shown in figures (domains, classes), cut to fit a tick label."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten(name: object, width: int) -> str:
    """`name` as a label of at most `width` characters: unchanged when it fits, else its first
    `width - 1` characters (trailing spaces dropped) and "…", so a cut name never passes for
    a whole one.

    Raises:
        ValueError: `width` is below 2 (no room for a character and the ellipsis).
    """
    if width < 2:
        raise ValueError(f"Expected a label `width` of at least 2 characters, but got {width!r}.")
    text = str(name)
    return text if len(text) <= width else text[: width - 1].rstrip() + ELLIPSIS
