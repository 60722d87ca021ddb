"""The frozen SVD feature extractor: frames -> per-frame features at each (layer, timestep).

Per window (docs/design.md section 2): one VAE pass and one CLIP pass serve every requested
(layer, timestep); the timesteps, which differ only in c_in and c_noise, run as one batch;
the UNet loop stops after the deepest requested layer; only the conditional half of the
authors' guidance batch is computed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from actiondiff.features import sigmas
from actiondiff.features.unet_taps import modules_needed, tap_unet
from actiondiff.features.weights import WeightsError, load_clip, load_svd
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


class SVDExtractor:
    """Holds the frozen UNet, VAE encoder and OpenCLIP model; extracts features per video."""

    def __init__(
        self,
        unet: torch.nn.Module,
        vae: torch.nn.Module,
        clip: torch.nn.Module,
        decode: DecodeSettings,
        extract: ExtractSettings,
        device: str | torch.device = "cpu",
    ) -> None:
        self.decode, self.extract = decode, extract
        self.device = torch.device(device)
        self.dtype = getattr(torch, extract.dtype)
        self.unet, self.vae, self.clip = unet, vae, clip
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
        dtype = getattr(torch, extract.dtype)
        # Each module is loaded straight into the dtype it runs in: the UNet and CLIP in the
        # run's, the VAE in `vae_dtype` (fp32 by default, as SVD's force_upcast asks).
        unet, vae = load_svd(weights.svd, dtype=dtype, vae_dtype=getattr(torch, extract.vae_dtype))
        if extract.conditioning == "action_text" and not weights.clip_checkpoint:
            raise WeightsError(
                "Expected `weights.clip_checkpoint` to be a full OpenCLIP checkpoint for `action_text` "
                "conditioning (it needs the text tower), but it is empty: the SVD download's image "
                "encoder has no text tower. Download laion/CLIP-ViT-H-14-laion2B-s32B-b79K (README, Getting the weights)."
            )
        clip = load_clip(weights.clip_arch, weights.clip_checkpoint, dtype=dtype, svd=weights.svd)
        return cls(unet, vae, clip, decode, extract, device)

    def _place_needed_modules(self) -> None:
        """Move only the modules that run to the device and dtype.

        Up blocks, down blocks past the deepest tap, the VAE decoder and CLIP's text tower
        (unless `action_text` needs it) stay where they were loaded.
        """
        needed = modules_needed(self.unet, self.extract.deepest_layer)
        for module in (self.vae.encoder, self.vae.quant_conv):  # the VAE runs in its own dtype
            module.to(self.device, getattr(torch, self.extract.vae_dtype))
        if self.extract.conditioning in ("middle_frame", "per_frame"):
            needed.append(self.clip.visual)
        elif self.extract.conditioning == "action_text":
            needed.append(self.clip)
        for module in needed:
            module.to(self.device, self.dtype)

    def extract_video(self, path: str | Path, video_id: str) -> VideoFeatures:
        """Decode one video and return its per-frame features for every requested tap."""
        return extract_windows(path, video_id, self.decode, self.extract, self.extract_window)

    def extract_window(self, frames: torch.Tensor, generator: torch.Generator) -> dict[str, np.ndarray]:
        """Features of one window as arrays.

        Args:
            frames: [f, 3, H, W] float32 in [-1, 1], f <= window; padded here with zero frames.
            generator: the video's seeded CPU generator (noise draws, posterior samples).
        Returns:
            {tap name: [f, channels] float32}, padded frames dropped.
        """
        out = {}
        for layer, values in self.window_taps(frames, generator).items():  # [T, f, c]
            for i, t in enumerate(self.timestep_indices):
                out[tap_name(layer, t)] = values[i].cpu().numpy()
        return out

    @torch.inference_mode()
    def window_taps(self, frames: torch.Tensor, generator: torch.Generator) -> dict[int, torch.Tensor]:
        """Pooled UNet taps of one window for every requested (layer, timestep).

        Args:
            frames: [f, 3, H, W] float32 in [-1, 1], f <= window.
            generator: CPU generator for every random draw (device-independent results).
        Returns:
            {layer: [timesteps, f, channels] float32 on the device}, timesteps in ascending
            index order (`self.timestep_indices`), padded frames dropped.
        """
        num_real = frames.shape[0]
        window = self.decode.window
        if not 1 <= num_real <= window:
            raise ValueError(f"Expected a window of 1..{window} frames, but got {num_real}.")
        # 1. pad to the full window with zero frames: [f, 3, H, W] -> [window, 3, H, W]
        padded = F.pad(frames, (0, 0, 0, 0, 0, 0, 0, window - num_real)) if num_real < window else frames
        padded = padded.to(self.device, self.dtype)
        # 2. one VAE pass: unscaled latents [window, 4, h, w]
        latents = self._encode_vae(padded, generator)
        # 3. conditioning: embedding [window, 1, d] and concat latent [window, 4, h, w]
        embedding, concat = self._conditioning(padded, latents, num_real, generator)
        # 4. all timesteps in one batch, to the deepest layer
        pooled = self._run_timesteps(latents * self.vae.config.scaling_factor, concat, embedding, generator)
        return {layer: values[:, :num_real] for layer, values in pooled.items()}

    def _encode_vae(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[n, 3, H, W] -> unscaled latents [n, 4, H/8, W/8], in chunks to bound memory."""
        chunks = []
        vae_dtype = getattr(torch, self.extract.vae_dtype)
        for start in range(0, frames.shape[0], self.extract.vae_chunk):
            # in `vae_dtype` (fp32 by default), the latents back in the run's dtype
            chunk = frames[start : start + self.extract.vae_chunk].to(vae_dtype)
            moments = self.vae.quant_conv(self.vae.encoder(chunk)).to(self.dtype)
            mean, logvar = moments.chunk(2, dim=1)
            if self.extract.latent == "sample":
                noise = torch.randn(mean.shape, generator=generator).to(mean)
                mean = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise
            chunks.append(mean)
        return torch.cat(chunks)

    def _clip_embed(self, frames: torch.Tensor) -> torch.Tensor:
        """[n, 3, H, W] in [-1, 1] -> OpenCLIP image embeddings [n, d]."""
        size = self.clip.visual.image_size
        size = size if isinstance(size, tuple) else (size, size)
        images = F.interpolate(frames.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
        # [-1, 1] -> [0, 1], unclamped like diffusers' SVD pipeline (bicubic may overshoot)
        images = (images + 1.0) / 2.0
        mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
        return self.clip.encode_image(((images - mean) / std).to(self.dtype))

    def _text_embed(self) -> torch.Tensor:
        """Mean OpenCLIP text embedding of the action names: [1, d], computed once."""
        if self._text_embedding is None:
            import open_clip

            tokenizer = open_clip.get_tokenizer("ViT-H-14")  # the shared BPE vocabulary, bundled
            context = self.clip.context_length
            tokens = tokenizer(list(self.extract.action_names), context_length=context).to(self.device)
            self._text_embedding = self.clip.encode_text(tokens).mean(dim=0, keepdim=True)
        return self._text_embedding

    def _conditioning(
        self, frames: torch.Tensor, latents: torch.Tensor, num_real: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The CLIP embedding [window, 1, d] and concat latent [window, 4, h, w] per frame.

        Args:
            frames: [window, 3, H, W] in [-1, 1], padded.
            latents: [window, 4, h, w] unscaled VAE latents of `frames`.
            num_real: frames before the padding; the middle frame is chosen among them.
        The conditioning latent gets `cond_aug` Gaussian noise once, then is repeated over the
        window (per_frame: each frame's own latent gets its own noise); `none` is all zeros.
        """
        mode, window = self.extract.conditioning, frames.shape[0]
        middle = num_real // 2  # middle of the real frames: padding never conditions
        if mode == "none":
            embedding = torch.zeros(window, 1, self._embed_dim(), device=self.device, dtype=self.dtype)
            return embedding, torch.zeros_like(latents)
        if mode == "per_frame":
            embedding = self._clip_embed(frames)[:, None]  # [window, d] -> [window, 1, d]
            concat = latents
        else:
            if mode == "middle_frame":
                embedding = self._clip_embed(frames[middle : middle + 1])  # [1, d]
            else:  # action_text
                embedding = self._text_embed()  # [1, d]
            embedding = embedding[:, None].expand(window, -1, -1)  # [1, d] -> [window, 1, d]
            concat = latents[middle : middle + 1]  # [1, 4, h, w]
        noise = torch.randn(concat.shape, generator=generator).to(concat)
        concat = concat + self.extract.cond_aug * noise
        return embedding, concat.expand(window, -1, -1, -1)

    def _embed_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    def _run_timesteps(
        self, z: torch.Tensor, concat: torch.Tensor, embedding: torch.Tensor, generator: torch.Generator
    ) -> dict[int, torch.Tensor]:
        """UNet taps for every timestep in one batch: {layer: [timesteps, window, c] float32}."""
        num_t = len(self.timestep_indices)
        sigma = self.sigma.to(self.device)
        c_in = (1.0 / torch.sqrt(sigma**2 + 1.0)).to(self.dtype).view(num_t, 1, 1, 1, 1)
        c_noise = (0.25 * torch.log(sigma)).float()
        draws = self.extract.noise_draws if self.extract.noise == "gaussian" else 1
        x = z[None].expand(num_t, *z.shape)  # [window, 4, h, w] -> [T, window, 4, h, w]
        total: dict[int, torch.Tensor] = {}
        for _ in range(draws):
            noisy = x
            if self.extract.noise == "gaussian":
                noise = torch.randn(x.shape, generator=generator).to(x)
                noisy = x + sigma.to(self.dtype).view(num_t, 1, 1, 1, 1) * noise
            sample = torch.cat([c_in * noisy, concat[None].expand(num_t, *concat.shape)], dim=2)
            time_ids = torch.tensor(
                [self.extract.fps_id, self.extract.motion_bucket_id, self.extract.cond_aug],
                device=self.device,
                dtype=self.dtype,
            ).expand(num_t, 3)
            indicator = torch.full(
                (num_t, z.shape[0]), float(self.extract.sdv2), device=self.device, dtype=self.dtype
            )
            # embedding: [window, 1, d] -> [T*window, 1, d]
            states = embedding.repeat(num_t, 1, 1)
            pooled = tap_unet(self.unet, sample, c_noise, states, time_ids, indicator, self.extract.layers)
            for layer, value in pooled.items():
                total[layer] = total[layer] + value if layer in total else value
        return {layer: value / draws for layer, value in total.items()}
