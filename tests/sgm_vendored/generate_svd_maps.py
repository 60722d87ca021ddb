# MIT License
# 
# Copyright (c) 2024 Rogério Júnior
# 
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
# to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
# copies of the Software, and to permit persons to whom the Software is
# furnished to do so, subject to the following conditions:
# 
# The above copyright notice and this permission notice shall be included in all
# copies or substantial portions of the Software.
# 
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
# IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
# FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
# AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
# LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
# OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
# SOFTWARE.
"""The helper functions of the authors' `generative-models/scripts/generate_svd_maps.py`
(frankyaoxiao/ActionDiff @ 57fcb58), copied unchanged; the script's per-window loop body, which
calls them, is followed step by step in tests/test_sgm_parity.py (see README.md here)."""

import math

import torch
import torch.nn.functional as F
from einops import repeat
from sgm.util import default


def get_batch(keys, value_dict, N, T, device):
    batch = {}
    batch_uc = {}

    for key in keys:
        if key == "fps_id":
            batch[key] = (
                torch.tensor([value_dict["fps_id"]])
                .to(device)
                .repeat(int(math.prod(N)))
            )
        elif key == "motion_bucket_id":
            batch[key] = (
                torch.tensor([value_dict["motion_bucket_id"]])
                .to(device)
                .repeat(int(math.prod(N)))
            )
        elif key == "cond_aug":
            batch[key] = repeat(
                torch.tensor([value_dict["cond_aug"]]).to(device),
                "1 -> b",
                b=math.prod(N),
            )
        else:
            batch[key] = value_dict[key]

    if T is not None:
        batch["num_video_frames"] = T

    for key in batch.keys():
        if key not in batch_uc and isinstance(batch[key], torch.Tensor):
            batch_uc[key] = torch.clone(batch[key])
    return batch, batch_uc


def get_unique_embedder_keys_from_conditioner(conditioner):
    return list(set([x.input_key for x in conditioner.embedders]))


def preprocess(frames):
    frames = frames / 255.0
    frames = 2 * frames - 1
    frames = torch.einsum("t h w c -> t c h w", frames)

    T, C, H, W = frames.shape

    # if H % 64 != 0 or W % 64 != 0:
    #     height, width = map(lambda x: x - x % 64, (H, W))
    #     frames = F.interpolate(frames, size=(height, width), mode='bilinear', align_corners=True)
    #     print(
    #         f"WARNING: Your image is of size {H}x{W} which is not divisible by 64. We are resizing to {height}x{width}!"
    #     )
    frames = F.interpolate(frames, size=(576, 1024), mode='bilinear', align_corners=True)

    assert C == 3, f"expected 3 channels, got {C}"

    # change type to float32
    return frames.float()


def get_svd_latents(frames, model, denoiser, cond, uc, num_steps, diff_step, add_noise):

    z = model.encode_first_stage(frames)

    _, s_in, sigmas, num_sigmas, cond, uc = prepare_extraction_loop(
        model.sampler, z, cond, uc, num_steps
    )

    # schedule = model.sampler.get_sigma_gen(num_sigmas)
    #
    # t = schedule[diff_step]

    t = diff_step

    gamma = (
        min(model.sampler.s_churn / (num_sigmas - 1), 2 ** 0.5 - 1)
        if model.sampler.s_tmin <= sigmas[t] <= model.sampler.s_tmax
        else 0.0
    )

    if not add_noise:
        gamma = 0.0
        sigmas[t] = 0.0

    _, latents = model.sampler.sampler_step(
        s_in * sigmas[t],
        None, # s_in * sigmas[t + 1],
        denoiser,
        z,
        cond,
        uc,
        gamma,
        return_latents=True,
    )

    return latents


def prepare_extraction_loop(self, x, cond, uc=None, num_steps=None):
    sigmas = self.discretization(
        self.num_steps if num_steps is None else num_steps, device=self.device
    )
    uc = default(uc, cond)

    # x *= torch.sqrt(1.0 + sigmas[0] ** 2.0)
    num_sigmas = len(sigmas)

    s_in = x.new_ones([x.shape[0]])

    return x, s_in, sigmas, num_sigmas, cond, uc
