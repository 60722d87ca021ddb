"""actiondiff: cross-domain action recognition from frozen Stable Video Diffusion features."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("actiondiff")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"
