"""The only place that wires the components together.

`ImagePipeline`: image -> SigLIP-VQ codes -> semantic embeddings -> diffusion decoder -> image (the "render engine"
with its tokenizer). The unified AR model will join here for text -> image and image -> text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xomni.checkpoint import REPO_ROOT, load_component
from xomni.data.batches import pixels_of
from xomni.decoder.codec import make_codec
from xomni.decoder.flux import DecoderConfig, SemanticFlux
from xomni.decoder.sampling import sample
from xomni.tokenizer.preprocess import prepare_image
from xomni.tokenizer.siglip_vq import SiglipVQ, SiglipVQConfig

DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "tiny"


@dataclass
class ImagePipeline:
    tokenizer: SiglipVQ
    decoder: SemanticFlux
    preset: str = "tiny"

    def __post_init__(self):
        self.codec = make_codec(self.decoder.config)  # pixels (tiny) or FLUX VAE latents (paper)

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_CHECKPOINT, preset: str = "tiny") -> "ImagePipeline":
        path = Path(path)
        if not (path / "tokenizer" / "config.json").is_file():
            raise FileNotFoundError(f"no checkpoint at {path}; train one with `bash runs/cpu_tiny.sh` "
                                    "(it writes checkpoints/tiny) or pass --checkpoint DIR")
        tokenizer = load_component(path / "tokenizer", SiglipVQConfig, SiglipVQ).eval().requires_grad_(False)
        decoder = load_component(path / "decoder", DecoderConfig, SemanticFlux).eval().requires_grad_(False)
        if decoder.config.semantic_dim != tokenizer.config.adapter_dim:
            raise ValueError(f"decoder expects {decoder.config.semantic_dim}-d semantic embeddings, "
                             f"tokenizer gives {tokenizer.config.adapter_dim}")
        return cls(tokenizer, decoder, preset)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, h, w) codes."""
        return self.tokenizer.encode(pixels)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, steps: int = 20, generator: torch.Generator | None = None,
               guidance: float = 1.0) -> torch.Tensor:
        """(B, h, w) codes -> (B, 3, h*16, w*16) pixels in [0, 1]."""
        _, h, w = codes.shape
        semantic = self.tokenizer.embed_codes(codes)  # B h w Ds
        patches = sample(self.decoder, semantic, steps=steps, generator=generator, guidance=guidance)  # B N P
        r = self.decoder.config.ratio
        return self.codec.to_pixels(patches, h * r, w * r)  # B 3 H W

    def reconstruct_images(self, images: list[Image.Image], steps: int = 20, seed: int = 0) -> list[Image.Image]:
        """Images of one size -> reconstructions through the tokens. Each image is validated and prepared first."""
        prepared = [prepare_image(im, self.preset) for im in images]
        if len({im.size for im in prepared}) != 1:
            raise ValueError("reconstruct_images takes images that prepare to one size; call it per size")
        codes = self.encode(pixels_of(prepared))
        out = self.decode(codes, steps=steps, generator=torch.Generator().manual_seed(seed))
        return [to_image(x) for x in out]


def to_image(pixels: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> PIL RGB."""
    return Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), "RGB")
