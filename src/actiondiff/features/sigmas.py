"""The Karras/EDM noise schedule and SVD's preconditioning (pure functions).

SVD-XT is an EDM model: the UNet sees `c_in(sigma) * z` and the timestep `c_noise(sigma)`.
Timestep indices count from the noisiest end, as in the paper (t=0: sigma_max).
"""

from __future__ import annotations

import math


def karras_sigmas(
    num_timesteps: int = 30, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0
) -> list[float]:
    """The Karras et al. (2022) sigma schedule, noisiest first.

    Returns:
        `num_timesteps` floats from `sigma_max` (index 0) down to `sigma_min` (last index).
    """
    if num_timesteps < 2:
        raise ValueError(f"Expected `num_timesteps` to be >= 2, but got {num_timesteps}.")
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    ramp = [i / (num_timesteps - 1) for i in range(num_timesteps)]
    return [(inv_max + r * (inv_min - inv_max)) ** rho for r in ramp]


def c_in(sigma: float) -> float:
    """Input scale of EDM preconditioning: 1 / sqrt(sigma^2 + 1)."""
    return 1.0 / math.sqrt(sigma**2 + 1.0)


def c_noise(sigma: float) -> float:
    """The UNet's `timestep` argument under EDM preconditioning: 0.25 * ln(sigma)."""
    return 0.25 * math.log(sigma)
