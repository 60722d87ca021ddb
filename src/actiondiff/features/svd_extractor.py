"""The frozen SVD feature extractor: frames -> per-frame features at each (layer, timestep).

Per window (docs/design.md section 2; its "Conventions" section lists what the authors' code
does and the setting that changes it): one VAE pass of the window, one more of the noised
conditioning frame(s), one CLIP pass serve every requested (layer, timestep); the timesteps,
which differ only in c_in and c_noise, run as one batch; the UNet loop stops after the
deepest requested layer; only the conditional half of the authors' guidance batch is computed.

A window's random draws come from the video's generator in a fixed order: the conditioning
noise (pixel noise of the conditioning frames, or latent noise), then the first-stage posterior
noise, then the `noise: gaussian` draws.

Several feature sets extracted in one pass (`features/shared.py`) hand the video's `memo`
(`features/stage_memo.py`) to every set's windows: the deterministic stages, each VAE chunk's
posterior (mean, log-variance) and the CLIP image embedding, are computed by the first set that
needs them and reused by every other set whose `_vae_key` / `_clip_key` matches and whose window
batches the same frames, whatever its window length, so the bytes are those of a separate pass.
The random draws never are: each set draws from its own generator, in the order above.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from actiondiff.features import sigmas
from actiondiff.features.gpu_tuning import compile_modules, set_conv_memory_format, tf32_scope
from actiondiff.features.stage_memo import StageMemo, memoised
from actiondiff.features.unet_taps import down_path_modules, modules_needed, tap_unet
from actiondiff.features.weights import WeightsError, load_clip, load_first_stage_encoder, load_svd
from actiondiff.features.windows import extract_windows
from actiondiff.settings import (
    DecodeSettings,
    ExtractSettings,
    WeightsSettings,
    tap_name,
)
from actiondiff.store.records import VideoFeatures

log = logging.getLogger(__name__)

# OpenCLIP's normalisation (OPENAI_DATASET_MEAN / STD), as its ViT-H-14 preprocessing uses.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def gaussian_kernel1d(size: int, sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[size] normalised Gaussian taps at offsets arange(size) - size // 2, in `dtype`."""
    x = torch.arange(size, dtype=dtype) - size // 2
    kernel = torch.exp(-(x**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def antialiased_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize as kornia's `geometry.resize(bicubic, align_corners=True, antialias=True)`.

    The authors' OpenCLIP preprocessing (sgm, kornia 0.6.9; diffusers' SVD pipeline has the
    same helper): when shrinking, first a separable Gaussian blur with sigma = max((factor -
    1) / 2, 0.001) per axis, an odd kernel of int(max(4 sigma, 3)) taps and reflect padding,
    along the width first; then bicubic (a = -0.75) with `align_corners=True`.

    Args:
        images: [n, c, h, w] float.
        size: (height, width) of the output.
    Returns:
        [n, c, height, width], the input itself when the size already matches.
    """
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    factors = (height / size[0], width / size[1])
    if max(factors) > 1:  # blur only when shrinking
        channels = images.shape[1]
        sigma_h, sigma_w = (max((f - 1.0) / 2.0, 0.001) for f in factors)
        # kernel sizes: 4 sigma, at least 3, truncated, then made odd
        size_h, size_w = (int(max(4.0 * s, 3)) for s in (sigma_h, sigma_w))
        size_h, size_w = size_h + 1 - size_h % 2, size_w + 1 - size_w % 2
        dtype = torch.promote_types(images.dtype, torch.float32)  # float32 taps, float64 for float64
        kernel_w = gaussian_kernel1d(size_w, sigma_w, dtype).to(images).view(1, 1, 1, size_w).expand(channels, 1, 1, size_w)
        kernel_h = gaussian_kernel1d(size_h, sigma_h, dtype).to(images).view(1, 1, size_h, 1).expand(channels, 1, size_h, 1)
        pad_w, pad_h = (size_w - 1) // 2, (size_h - 1) // 2
        images = F.conv2d(F.pad(images, (pad_w, pad_w, 0, 0), mode="reflect"), kernel_w, groups=channels)
        images = F.conv2d(F.pad(images, (0, 0, pad_h, pad_h), mode="reflect"), kernel_h, groups=channels)
    return F.interpolate(images, size=tuple(size), mode="bicubic", align_corners=True)


def set_resnet_norm_eps(unet: torch.nn.Module, eps: float) -> None:
    """Set the GroupNorm epsilon of every UNet resnet (spatial and temporal), in place.

    sgm's `ResBlock` normalises with `GroupNorm32(32, c)` (eps 1e-5); diffusers' SVD port builds
    the resnets of the cross-attention down blocks and of the up blocks with eps 1e-6. On flat
    maps (black padding, sigma 700 with no conditioning) the variance is near the epsilon and the
    two differ by up to 1e-1 relative on the tiny model (tests/test_sgm_parity.py).
    """
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.GroupNorm) and "res_block." in name:
            module.eps = eps


class SVDExtractor:
    """Holds the frozen UNet, VAE encoder and OpenCLIP model; extracts features per video.

    Precision: the VAE encoder computes in `vae_dtype` (float32 by default, as the authors'
    `disable_first_stage_autocast`) whatever `dtype`. A half `dtype` reaches the UNet and CLIP
    as the authors run them (`half_precision: autocast`: weights as loaded, convolutions and
    matmuls in `dtype` under `torch.autocast`, inputs and time ids in float32) or with their
    weights and inputs cast (`cast`).

    `dtype: float64` runs everything in float64 (the VAE too when `vae_dtype` is float64),
    for parity checks; the features are stored as float32 all the same.

    z's encoder (`z_encoder`): the VAE's (encoder + quant_conv, today's default), or the
    single file's first-stage copy without quant_conv (`vae.first_stage_encoder`, set by
    `load_modules`: the authors').

    GPU tuning (`features/gpu_tuning.py`): `tf32` holds for every window; `channels_last` and
    `compile` change the modules that run in place (a later extractor on the same modules sets
    their memory format again, but does not undo a compile).
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        vae: torch.nn.Module,
        clip: torch.nn.Module,
        decode: DecodeSettings,
        extract: ExtractSettings,
        device: str | torch.device = "cpu",
    ) -> None:
        # z_encoder first_stage: the single file's first-stage copy, loaded with the VAE (`load_modules`)
        self.first_stage_encoder = getattr(vae, "first_stage_encoder", None) if extract.z_encoder == "first_stage" else None
        if extract.z_encoder == "first_stage" and self.first_stage_encoder is None:
            raise ValueError("Expected the VAE to carry `first_stage_encoder` (load_modules) for `z_encoder: first_stage`, but it has none.")
        self.decode, self.extract = decode, extract
        self.device = torch.device(device)
        self.dtype = getattr(torch, extract.dtype)
        self.vae_dtype = getattr(torch, extract.vae_dtype)
        self.autocast = self.dtype in (torch.float16, torch.bfloat16) and extract.half_precision == "autocast"
        # frames, latents and pooled taps: float64 in a float64 run, else float32
        self.work_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
        # the dtype of the tensors fed to the UNet and CLIP (autocast casts inside each op)
        self.input_dtype = torch.float32 if self.autocast else self.dtype
        self.memory_format = torch.channels_last if extract.channels_last else torch.contiguous_format
        self.unet, self.vae, self.clip = unet, vae, clip
        if extract.resnet_norm_eps == "sgm":
            set_resnet_norm_eps(unet, 1e-5)
        self._place_needed_modules()
        schedule = sigmas.karras_sigmas(extract.num_timesteps, extract.sigma_min, extract.sigma_max, extract.rho)
        self.timestep_indices = sorted(extract.timestep_indices)
        self.sigma = torch.tensor([schedule[t] for t in self.timestep_indices], dtype=torch.float64)
        self._text_embedding: torch.Tensor | None = None

    @classmethod
    def from_weights(
        cls, weights: WeightsSettings, decode: DecodeSettings, extract: ExtractSettings, device: str = "cpu"
    ) -> SVDExtractor:
        """Load the weights named in the config (strictly) and build the extractor."""
        return cls(*cls.load_modules(weights, extract), decode, extract, device)

    @staticmethod
    def load_modules(weights: WeightsSettings, extract: ExtractSettings) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
        """(unet, vae, clip) of the weights named in the config, loaded strictly, on the CPU."""
        # Each module is loaded straight into the dtype it is kept in: the VAE in `vae_dtype`
        # (fp32 by default, as SVD's force_upcast asks); the UNet and CLIP in the run's dtype,
        # or in fp32 under `half_precision: autocast` (the authors' fp32 weights, half ops).
        autocast = extract.dtype in ("float16", "bfloat16") and extract.half_precision == "autocast"
        dtype = torch.float32 if autocast else getattr(torch, extract.dtype)
        unet, vae = load_svd(weights.svd, dtype=dtype, vae_dtype=getattr(torch, extract.vae_dtype))
        if extract.conditioning == "action_text" and not weights.clip_checkpoint:
            raise WeightsError(
                "Expected `weights.clip_checkpoint` to be a full OpenCLIP checkpoint for `action_text` "
                "conditioning (it needs the text tower), but it is empty: the SVD download's image "
                "encoder has no text tower. Download laion/CLIP-ViT-H-14-laion2B-s32B-b79K (README, Getting the weights)."
            )
        clip = load_clip(weights.clip_arch, weights.clip_checkpoint, dtype=dtype, svd=weights.svd)
        if extract.z_encoder == "first_stage":  # the authors' encoder of z, kept with the VAE it pairs with
            vae.first_stage_encoder = load_first_stage_encoder(weights.svd, dtype=getattr(torch, extract.vae_dtype))
        return unet, vae, clip

    def _place_needed_modules(self) -> None:
        """Move only the modules that run to the device (and to their compute dtype).

        Up blocks, down blocks past the deepest tap, the VAE decoder and CLIP's text tower
        (unless `action_text` needs it) stay where they were loaded. The VAE encoder goes to
        `vae_dtype`; the UNet and CLIP keep their loaded dtype under autocast.
        """
        unet_parts = modules_needed(self.unet, self.extract.deepest_layer)
        needed = list(unet_parts)
        if self.extract.conditioning in ("middle_frame", "per_frame"):
            needed.append(self.clip.visual)
        elif self.extract.conditioning == "action_text":
            needed.append(self.clip)
        for module in needed:
            module.to(self.device) if self.autocast else module.to(self.device, self.dtype)
        for module in (self.vae.encoder, self.vae.quant_conv, self.first_stage_encoder):
            if module is not None:
                module.to(self.device, self.vae_dtype)
        # GPU tuning: CLIP runs once per window on one frame, too little to be worth it
        set_conv_memory_format([*unet_parts, self.vae.encoder, self.vae.quant_conv], self.extract.channels_last)
        compile_modules([*down_path_modules(self.unet, self.extract.deepest_layer), self.vae.encoder], self.extract.compile)

    def _precision(self) -> contextlib.AbstractContextManager:
        """The context the UNet and CLIP run in: autocast to `dtype`, or nothing (also on `meta`,
        where FLOPs are counted: autocast has no meta device, and the FLOPs are the same)."""
        if self.autocast and self.device.type != "meta":
            return torch.autocast(self.device.type, dtype=self.dtype)
        return contextlib.nullcontext()

    def extract_video(
        self, path: str | Path, video_id: str, on_window: Callable[[np.ndarray], None] | None = None
    ) -> VideoFeatures:
        """Decode one video and return its per-frame features for every requested tap
        (`on_window`: called after each window with its [f] source frame indices, for progress)."""
        return extract_windows(
            path, video_id, self.decode, self.extract, self.extract_window, self.device, on_window=on_window
        )

    def extract_window(
        self, frames: torch.Tensor, generator: torch.Generator, memo: StageMemo | None = None
    ) -> dict[str, np.ndarray]:
        """Features of one window as arrays.

        Args:
            frames: [f, 3, H, W] float32 in [-1, 1], f <= window; padded here (`padding`).
            generator: the video's seeded CPU generator (noise draws, posterior samples).
            memo: the video's shared stages, its `frame_ids` this window's (see the module
                docstring); None: nothing shared.
        Returns:
            {tap name: [f, channels] float32}, padded frames dropped.
        """
        out = {}
        for layer, values in self.window_taps(frames, generator, memo).items():  # [T, f, c]
            for i, t in enumerate(self.timestep_indices):
                out[tap_name(layer, t)] = values[i].float().cpu().numpy()  # float64 runs too
        return out

    @torch.inference_mode()
    def window_taps(
        self, frames: torch.Tensor, generator: torch.Generator, memo: StageMemo | None = None
    ) -> dict[int, torch.Tensor]:
        """Pooled UNet taps of one window for every requested (layer, timestep).

        Args:
            frames: [f, 3, H, W] float32 in [-1, 1], f <= window.
            generator: CPU generator for every random draw (device-independent results).
            memo: the video's shared stages, filled and read here; None: nothing shared.
        Returns:
            {layer: [timesteps, f, channels] float32 on the device}, timesteps in ascending
            index order (`self.timestep_indices`), padded frames dropped.
        """
        num_real = frames.shape[0]
        window = self.decode.window
        if not 1 <= num_real <= window:
            raise ValueError(f"Expected a window of 1..{window} frames, but got {num_real}.")
        # 1. pad to the full window: [f, 3, H, W] -> [window, 3, H, W]; black is the authors'
        #    uint8 zeros after x / 127.5 - 1, grey is 0
        value = -1.0 if self.extract.padding == "black" else 0.0
        padded = F.pad(frames, (0, 0, 0, 0, 0, 0, 0, window - num_real), value=value) if num_real < window else frames
        # one memory layout whatever the caller's (contiguous, or channels-last under that
        # setting): flat (black) frames are ill-conditioned for GroupNorm, and channels-last
        # convolutions round differently, so the layout must be the settings', not the caller's
        padded = padded.to(self.device, self.work_dtype).contiguous(memory_format=self.memory_format)
        with tf32_scope(self.extract.tf32):
            # 2. one VAE pass: posterior mean and log-variance, each [window, 4, h, w] float32
            mean, logvar = self._encode_vae(padded, self.first_stage_encoder, memo)
            # 3. conditioning: context [window, tokens, d] and unscaled concat latent [window, 4, h, w]
            embedding, concat = self._conditioning(padded, mean, num_real, generator, memo)
            # 4. first-stage latent z = scaling_factor * (posterior sample | mean)
            if self.extract.latent == "sample":
                noise = torch.randn(mean.shape, generator=generator).to(mean)
                mean = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise
            z = mean * self.vae.config.scaling_factor
            # 5. all timesteps in one batch, to the deepest layer
            pooled = self._run_timesteps(z, concat, embedding, generator)
        return {layer: values[:, :num_real] for layer, values in pooled.items()}

    def _vae_key(self) -> tuple[Any, ...]:
        """What a VAE chunk's posterior depends on besides its frames (`StageMemo`); the
        padding value makes the padding rows."""
        e = self.extract
        encoder = id(self.first_stage_encoder) if self.first_stage_encoder is not None else None
        return ("vae", id(self.vae), encoder, self.device, e.padding, self.memory_format, e.vae_dtype, self.work_dtype, e.tf32)

    def _clip_key(self) -> tuple[Any, ...]:
        """What a CLIP embedding depends on besides its frames (`StageMemo`)."""
        e = self.extract
        return ("clip", id(self.clip), self.device, e.padding, self.memory_format, self.input_dtype, self.autocast and self.dtype, e.tf32)

    def _encode_vae(
        self, frames: torch.Tensor, encoder: torch.nn.Module | None = None, memo: StageMemo | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, 3, H, W] -> unscaled posterior (mean, logvar), each [n, 4, H/8, W/8] float32
        (float64 in a float64 run).

        In chunks of `vae_chunk` frames to bound memory, in `vae_dtype`; through the VAE's
        encoder and quant_conv, or `encoder` alone (the first-stage copy has no quant_conv).
        `memo` (a shared pass; `frames` are then its window's rows): each chunk once per video.
        """
        chunks, key = [], self._vae_key()
        for start in range(0, frames.shape[0], self.extract.vae_chunk):
            rows = slice(start, start + self.extract.vae_chunk)
            chunks.append(memoised(memo, key, rows, lambda rows=rows: self._encode_chunk(frames[rows], encoder)))
        mean, logvar = torch.cat(chunks).chunk(2, dim=1)  # [n, 8, h, w] -> 2 x [n, 4, h, w]
        return mean, logvar

    def _encode_chunk(self, frames: torch.Tensor, encoder: torch.nn.Module | None) -> torch.Tensor:
        """[c, 3, H, W] -> posterior moments [c, 8, H/8, W/8] in the work dtype."""
        chunk = frames.to(self.vae_dtype)
        moments = encoder(chunk) if encoder is not None else self.vae.quant_conv(self.vae.encoder(chunk))
        return moments.to(self.work_dtype)

    def _clip_embed(self, frames: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] in [-1, 1] -> OpenCLIP image embeddings [n, d].

        The authors' preprocessing: `antialiased_resize` to the CLIP size, [-1, 1] -> [0, 1]
        unclamped (bicubic may overshoot), OpenCLIP mean/std; no crop.
        """
        size = self.clip.visual.image_size
        size = size if isinstance(size, tuple) else (size, size)
        with self._precision():
            images = antialiased_resize(frames.to(self.input_dtype), size)
            images = (images + 1.0) / 2.0
            mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
            std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
            return self.clip.encode_image(((images - mean) / std).to(self.input_dtype))

    def _text_embed(self) -> torch.Tensor:
        """OpenCLIP text embedding of each action name: [n_actions, d], computed once.

        The pooled, projected, unnormalised embedding (the authors' `FrozenOpenCLIPEmbedder2`
        pooled output), one context token per action.
        """
        if self._text_embedding is None:
            import open_clip

            tokenizer = open_clip.get_tokenizer("ViT-H-14")  # the shared BPE vocabulary, bundled
            context = self.clip.context_length
            tokens = tokenizer(list(self.extract.action_names), context_length=context).to(self.device)
            with self._precision():
                self._text_embedding = self.clip.encode_text(tokens)
        return self._text_embedding

    def _conditioning(
        self,
        frames: torch.Tensor,
        mean: torch.Tensor,
        num_real: int,
        generator: torch.Generator,
        memo: StageMemo | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention context [window, tokens, d] and the concat latent [window, 4, h, w].

        Args:
            frames: [window, 3, H, W] float32 in [-1, 1], padded.
            mean: [window, 4, h, w] unscaled posterior means of `frames`.
            num_real: frames before the padding; the middle frame is chosen among them.
        Modes: `middle_frame` (paper text): the middle real frame's CLIP embedding and concat
        latent, repeated over the window; `per_frame` (authors' code): each frame's own, padded
        frames included; `action_text`: one token per action name for every frame, per-frame
        concat latents (authors' code); `none`: all zeros (the authors' unconditional half).
        """
        mode, window = self.extract.conditioning, frames.shape[0]
        if mode == "none":
            embedding = torch.zeros(window, 1, self._embed_dim(), device=self.device, dtype=self.input_dtype)
            return embedding, torch.zeros_like(mean)
        middle = num_real // 2  # middle of the real frames: padding never conditions
        if mode == "middle_frame":
            chosen = slice(middle, middle + 1)
            # [1, d] -> [1, 1, d]
            embedding = memoised(memo, self._clip_key(), chosen, lambda: self._clip_embed(frames[chosen]))[:, None]
        elif mode == "per_frame":
            chosen = slice(None)
            # [window, d] -> [window, 1, d]
            embedding = memoised(memo, self._clip_key(), chosen, lambda: self._clip_embed(frames))[:, None]
        else:  # action_text
            chosen = slice(None)
            embedding = self._text_embed()[None]  # [n_actions, d] -> [1, n_actions, d]
        concat = self._concat_latent(frames[chosen], mean[chosen], generator)  # [1 | window, 4, h, w]
        embedding = embedding.to(self.input_dtype).expand(window, -1, -1)
        return embedding, concat.expand(window, -1, -1, -1)

    def _concat_latent(self, frames: torch.Tensor, mean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The noise-augmented conditioning latent(s), unscaled: [n, 4, h, w] float32.

        `cond_noise: pixel` (authors): the posterior mean (sgm's mode) of a second VAE pass on
        `frames + cond_aug * noise`; `latent`: `mean + cond_aug * noise` in latent space.
        Args:
            frames: [n, 3, H, W] conditioning frames in [-1, 1]; mean: [n, 4, h, w] theirs.
        """
        if self.extract.cond_noise == "pixel":
            noise = torch.randn(frames.shape, generator=generator).to(frames)
            return self._encode_vae(frames + self.extract.cond_aug * noise)[0]
        noise = torch.randn(mean.shape, generator=generator).to(mean)
        return mean + self.extract.cond_aug * noise

    def _embed_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    def _run_timesteps(
        self, z: torch.Tensor, concat: torch.Tensor, embedding: torch.Tensor, generator: torch.Generator
    ) -> dict[int, torch.Tensor]:
        """UNet taps for every timestep in one batch.

        Args:
            z: [window, 4, h, w] scaled first-stage latents; concat: [window, 4, h, w] unscaled.
            embedding: [window, tokens, d] cross-attention context.
        Returns:
            {layer: [timesteps, window, c] float32}.
        """
        num_t, dtype = len(self.timestep_indices), self.input_dtype
        sigma = self.sigma.to(self.device)
        c_in = (1.0 / torch.sqrt(sigma**2 + 1.0)).to(dtype).view(num_t, 1, 1, 1, 1)
        c_noise = (0.25 * torch.log(sigma)).float()
        draws = self.extract.noise_draws if self.extract.noise == "gaussian" else 1
        z, concat = z.to(dtype), concat.to(dtype)
        x = z[None].expand(num_t, *z.shape)  # [window, 4, h, w] -> [T, window, 4, h, w]
        time_ids = torch.tensor(
            [self.extract.fps_id, self.extract.motion_bucket_id, self.extract.cond_aug],
            device=self.device,
            dtype=dtype,
        ).expand(num_t, 3)
        indicator = torch.full((num_t, z.shape[0]), float(self.extract.sdv2), device=self.device, dtype=dtype)
        # embedding: [window, tokens, d] -> [T*window, tokens, d]
        states = embedding.repeat(num_t, 1, 1)
        total: dict[int, torch.Tensor] = {}
        for _ in range(draws):
            noisy = x
            if self.extract.noise == "gaussian":
                noise = torch.randn(x.shape, generator=generator).to(x)
                noisy = x + sigma.to(dtype).view(num_t, 1, 1, 1, 1) * noise
            sample = torch.cat([c_in * noisy, concat[None].expand(num_t, *concat.shape)], dim=2)
            with self._precision():
                pooled = tap_unet(self.unet, sample, c_noise, states, time_ids, indicator, self.extract.layers)
            for layer, value in pooled.items():
                total[layer] = total[layer] + value if layer in total else value
        return {layer: value / draws for layer, value in total.items()}

