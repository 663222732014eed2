"""Where the decoder's flow runs: pixels (tiny) or FLUX's VAE latents (paper), as a sequence of patches.

`PixelCodec`: RGB in [0, 1] <-> patches of `patch_size` px in [-1, 1].
`LatentCodec`: RGB <-> FLUX VAE latents, shifted and scaled as FLUX does, packed 2x2 into 64-channel patches
(the same (C, 2, 2) order as diffusers' FluxPipeline packing). The VAE comes from a local folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xomni.decoder.flux import DecoderConfig
from xomni.tokenizer.siglip_vq import patchify, unpatchify


class PixelCodec:
    def __init__(self, config: DecoderConfig):
        if config.in_channels != 3 or config.patch_size != config.patch_px:
            raise ValueError("PixelCodec needs in_channels=3 and patch_size == patch_px")
        self.config = config

    def to(self, device) -> "PixelCodec":
        return self  # no weights

    def to_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, N, 3*p*p) in [-1, 1]."""
        return patchify(pixels * 2 - 1, self.config.patch_size)

    def to_pixels(self, patches: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, N, P) on an h x w patch grid -> (B, 3, h*p, w*p) in [0, 1]."""
        x = unpatchify(patches, h, w, self.config.patch_size, 3)
        return ((x + 1) / 2).clamp(0, 1)


class LatentCodec:
    def __init__(self, config: DecoderConfig, vae=None):
        from diffusers import AutoencoderKL

        if vae is None:
            if config.vae_path is None:
                raise ValueError("LatentCodec needs DecoderConfig.vae_path (a local FLUX.1-dev folder or its vae/)")
            path = Path(config.vae_path)
            sub = "vae" if (path / "vae").is_dir() else None
            vae = AutoencoderKL.from_pretrained(path, subfolder=sub)
        self.vae = vae.eval().requires_grad_(False)
        self.config = config
        self.scale = vae.config.scaling_factor
        self.shift = vae.config.shift_factor or 0.0
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if factor * config.patch_size != config.patch_px or vae.config.latent_channels != config.in_channels:
            raise ValueError(f"VAE ({factor}x, {vae.config.latent_channels} channels) does not fit the decoder config")

    def to(self, device) -> "LatentCodec":
        self.vae.to(device)
        return self

    @torch.no_grad()
    def to_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        latents = self.vae.encode(pixels * 2 - 1).latent_dist.mode()  # B C H/f W/f
        return patchify((latents - self.shift) * self.scale, self.config.patch_size)  # B N C*2*2

    @torch.no_grad()
    def to_pixels(self, patches: torch.Tensor, h: int, w: int) -> torch.Tensor:
        latents = unpatchify(patches, h, w, self.config.patch_size, self.config.in_channels)
        x = self.vae.decode(latents / self.scale + self.shift).sample
        return ((x + 1) / 2).clamp(0, 1)


def make_codec(config: DecoderConfig):
    return PixelCodec(config) if config.vae_path is None else LatentCodec(config)
