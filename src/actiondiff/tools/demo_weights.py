"""The demo's tiny weights, built before the workflow plans (no torch unless they are built).

The feature hash names the weights' content, and Snakemake names the caches and stores by it
when it parses the workflow, so the tiny weights the demo uses must exist by then.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from actiondiff.settings import WeightsSettings, from_dict
from actiondiff.tools.cpu_kernels import kernel_mode, portable_env


def ensure_demo_weights(config: dict[str, Any]) -> list[str]:
    """Build the tiny demo weights the config's feature sets read, if they are missing.

    The feature identity hashes the weights' content, and the workflow names its caches and
    stores by that hash when it plans, so weights the workflow would build must exist
    before planning. Only weights under `weights_dir` are built, only for the backbones a
    feature set uses. Returns the backbones built (none when all are there).
    """
    demo = Path(config.get("weights_dir", "resources/weights"))
    weights = from_dict(WeightsSettings, config.get("weights"), "config key `weights`")
    wanted = {"svd": ("svd", "clip_arch", "clip_checkpoint"), "sdv2": ("svd", "clip_arch", "clip_checkpoint"),
              "videomae": ("videomae",), "vjepa2": ("vjepa2",)}
    todo = set()
    default = config.get("backbone") or "svd"
    for overrides in (config.get("feature_sets") or {"default": {}}).values():
        backbone = (overrides or {}).get("backbone") or default
        for key in wanted.get(backbone, ()):  # (another backbone's weights are its own business)
            path = Path(getattr(weights, key))
            if not path.exists() and path.is_relative_to(demo):
                todo.add("svd" if backbone == "sdv2" else backbone)
    if todo and kernel_mode() == "portable":
        # in a process started with the portable kernels, as the jobs run: the weights (their
        # VAE calibration runs the model) are then the same on every CPU
        command = [sys.executable, "-m", "actiondiff", "make-tiny-weights", "--out", str(demo), "--backbone", *sorted(todo)]
        result = subprocess.run(command, env={**os.environ, **portable_env()}, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"Expected `{' '.join(command[2:])}` to build the demo's weights, but it exited "
                               f"{result.returncode}:\n{result.stderr[-2000:]}")
    elif todo:
        from actiondiff.tools.tiny_weights import make_tiny_weights  # torch: only when building

        make_tiny_weights(demo, backbones=tuple(sorted(todo)))
    return sorted(todo)
