"""The diffusion decoder: FLUX with the tokenizer's semantic embeddings added into its image stream (paper Sec. 3.1).

X-Omni renders its image tokens with FLUX.1-dev plus one new linear map from the SigLIP-VQ semantic embeddings into
the image stream, zero-initialised so training starts from FLUX unchanged. The network here is diffusers'
`FluxTransformer2DModel`; its forward is written out below (it is short) because the semantic embeddings enter
between the double-stream and the single-stream blocks, a place diffusers' forward has no argument for.

One token covers `token_px` pixels on a side, one FLUX patch `patch_px`; with r = token_px / patch_px, the linear
map emits r*r vectors per token, one for each patch under it (r = 1 at paper scale: 16 px tokens, 8x VAE, 2x2
packing). Tiny runs in pixel space with 16 px RGB patches, so r = 1 there too (measured here: 16 px patches train
~4x faster than 8 px ones at the same width, as the cost goes with the number of patches); the paper preset runs on
FLUX's VAE latents.

Tiny only, `patch_prior`: a per-patch MLP from each token's semantic embedding to its clean patch, added to the
network's clean-patch prediction (zero-initialised, so training starts from the transformer alone). FLUX.1-dev
brings 12B parameters and a VAE decoder to draw what a token means; the tiny transformer (256 wide, pixel space, a
linear map out to 768 pixel values) had not learned to. Measured on run 3's tokens (`bench/code_lookup.py`): pasting
each code's mean training patch reads back 0.985 of the English and 0.60 of the Chinese text, the trained decoder
0.58 and 0.00: the codes determine the glyphs, the decoder had not learned to draw them. The prior draws what a token
alone says; the transformer, which sees the noisy image and every token, the rest (docs/image_side.md, run 4).

The network predicts the flow-matching velocity or the clean sample for one step; the noise schedule and the sampler
live in `xomni/decoder/sampling.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers import FluxTransformer2DModel


@dataclass
class DecoderConfig:
    in_channels: int = 3  # image channels (3 for pixels, 16 for FLUX's VAE latents)
    patch_px: int = 16  # pixels per patch side (for latents: VAE factor * packing)
    patch_size: int = 16  # samples per patch side in the network input (pixels: = patch_px; FLUX latents: 2)
    token_px: int = 16
    num_layers: int = 1
    num_single_layers: int = 4
    attention_head_dim: int = 64
    num_attention_heads: int = 4
    joint_attention_dim: int = 128  # width of prompt embeddings (T5's 4096 at paper scale)
    pooled_projection_dim: int = 128
    axes_dims_rope: tuple[int, int, int] = (8, 28, 28)
    semantic_dim: int = 256  # the tokenizer's adapter_dim
    guidance_embeds: bool = False  # FLUX.1-dev is guidance-distilled: it embeds a guidance value too
    distilled_guidance: float = 1.0  # the value it is given (X-Omni calls its decoder with guidance_scale=1.0)
    vae_path: str | None = None  # paper preset: FLUX's VAE from a local folder
    prediction: str = "sample"  # what the network outputs: "sample" (clean x_0) or "velocity" (FLUX's own)
    patch_prior: int = 0  # hidden width of the per-patch MLP semantic -> clean patch added to the output; 0 = none

    def __post_init__(self):
        if self.prediction not in ("sample", "velocity"):
            raise ValueError(f"prediction must be 'sample' or 'velocity', got {self.prediction!r}")
        if self.patch_prior and self.prediction != "sample":
            raise ValueError("patch_prior predicts clean patches: it needs prediction='sample'")
        if self.token_px % self.patch_px:
            raise ValueError(f"token_px {self.token_px} must be a multiple of patch_px {self.patch_px}")
        self.axes_dims_rope = tuple(self.axes_dims_rope)
        if sum(self.axes_dims_rope) != self.attention_head_dim:
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must sum to attention_head_dim {self.attention_head_dim}")

    @property
    def ratio(self) -> int:
        return self.token_px // self.patch_px

    @property
    def patch_dim(self) -> int:
        return self.in_channels * self.patch_size * self.patch_size


PRESETS = {
    "tiny": DecoderConfig(patch_prior=2048),
    # FLUX.1-dev: 19 double + 38 single blocks, width 3072, on 16-channel VAE latents packed 2x2 (16 px per patch).
    "paper": DecoderConfig(
        in_channels=16, patch_px=16, patch_size=2, token_px=16, num_layers=19, num_single_layers=38,
        attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
        axes_dims_rope=(16, 56, 56), semantic_dim=1536, guidance_embeds=True, vae_path=None, prediction="velocity",
    ),
}


def image_ids(h: int, w: int, device=None) -> torch.Tensor:
    """FLUX's position ids for an h x w patch grid: (h*w, 3) rows of (0, row, col), row-major."""
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).float()


class SemanticFlux(nn.Module):
    def __init__(self, config: DecoderConfig, flux: FluxTransformer2DModel | None = None):
        super().__init__()
        self.config = config
        self.flux = flux if flux is not None else FluxTransformer2DModel(
            patch_size=1,
            in_channels=config.patch_dim,
            num_layers=config.num_layers,
            num_single_layers=config.num_single_layers,
            attention_head_dim=config.attention_head_dim,
            num_attention_heads=config.num_attention_heads,
            joint_attention_dim=config.joint_attention_dim,
            pooled_projection_dim=config.pooled_projection_dim,
            guidance_embeds=config.guidance_embeds,
            axes_dims_rope=config.axes_dims_rope,
        )
        inner = self.flux.inner_dim
        r = config.ratio
        self.semantic_in = nn.Linear(config.semantic_dim, inner * r * r)  # X-Omni's new map, zero-initialised
        self.null_context = nn.Parameter(torch.zeros(1, 1, config.joint_attention_dim))
        self.prior = nn.Sequential(  # tiny only: each token's own clean patch(es), read from its embedding alone
            nn.LayerNorm(config.semantic_dim), nn.Linear(config.semantic_dim, config.patch_prior), nn.GELU(),
            nn.Linear(config.patch_prior, config.patch_dim * r * r),
        ) if config.patch_prior else None
        self.detach_prior = False  # training only: the velocity loss does not train the prior (the stage sets it)
        self.initialize_weights()

    @classmethod
    def from_flux(cls, config: DecoderConfig, path: str, **kwargs) -> "SemanticFlux":
        """FLUX's transformer from a local folder (FLUX.1-dev or its transformer/), plus the new zero map.

        kwargs go to `from_pretrained` (e.g. torch_dtype=torch.bfloat16: the new parts take FLUX's dtype too)."""
        from pathlib import Path

        sub = "transformer" if (Path(path) / "transformer").is_dir() else None
        flux = FluxTransformer2DModel.from_pretrained(path, subfolder=sub, **kwargs)
        c = flux.config
        expected = (config.patch_dim, config.num_layers, config.num_single_layers, config.num_attention_heads,
                    config.attention_head_dim, config.joint_attention_dim, config.pooled_projection_dim)
        found = (c.in_channels, c.num_layers, c.num_single_layers, c.num_attention_heads, c.attention_head_dim,
                 c.joint_attention_dim, c.pooled_projection_dim)
        if expected != found or c.patch_size != 1:
            raise ValueError(f"FLUX at {path} has (in, double, single, heads, head_dim, joint, pooled) = {found}, "
                             f"the decoder config asks for {expected}")
        if c.guidance_embeds != config.guidance_embeds:
            raise ValueError(f"FLUX at {path} has guidance_embeds={c.guidance_embeds}, the config says {config.guidance_embeds}")
        return cls(config, flux).to(flux.dtype)

    def initialize_weights(self) -> None:
        nn.init.zeros_(self.semantic_in.weight)
        nn.init.zeros_(self.semantic_in.bias)
        if self.prior is not None:  # zero output: training starts from the transformer alone
            nn.init.zeros_(self.prior[-1].weight)
            nn.init.zeros_(self.prior[-1].bias)

    def per_patch(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w, D*r*r) per-token vectors -> (B, h*r * w*r, D), row-major over the patch grid."""
        B, h, w, _ = x.shape
        r = self.config.ratio
        x = x.reshape(B, h, w, r, r, -1).permute(0, 1, 3, 2, 4, 5)  # B h r w r D
        return x.reshape(B, h * r * w * r, -1)

    def prior_patches(self, semantic: torch.Tensor) -> torch.Tensor:
        """(B, h, w, Ds) -> (B, h*r * w*r, patch_dim): what the patch prior alone draws for each token."""
        return self.per_patch(self.prior(semantic))

    def inject(self, semantic: torch.Tensor) -> torch.Tensor:
        """(B, h, w, Ds) semantic embeddings -> (B, h*r * w*r, inner), row-major over the patch grid."""
        return self.per_patch(self.semantic_in(semantic))

    def forward(
        self,
        x: torch.Tensor,  # (B, N, patch_dim) noisy patches, N = (h*r) * (w*r)
        t: torch.Tensor,  # (B,) noise level in [0, 1]
        semantic: torch.Tensor,  # (B, h, w, Ds); zeros give the unconditional branch
        prior: torch.Tensor | None = None,  # (B, N, patch_dim) `prior_patches(semantic)`, when the caller has it
    ) -> torch.Tensor:
        f = self.flux
        dtype = self.semantic_in.weight.dtype  # inputs in the network's dtype (a bf16 FLUX takes float32 noise)
        x, semantic = x.to(dtype), semantic.to(dtype)
        prior = prior.to(dtype) if prior is not None else None
        B, N, _ = x.shape
        _, h, w, _ = semantic.shape
        ph, pw = h * self.config.ratio, w * self.config.ratio
        if ph * pw != N:
            raise ValueError(f"{N} patches do not match a {h}x{w} token grid at ratio {self.config.ratio}")
        context = self.null_context.expand(B, 1, -1)  # B 1 Dj: text-free, one learned token in FLUX's text stream
        pooled = x.new_zeros(B, self.config.pooled_projection_dim)  # B Dp

        hidden = f.x_embedder(x)  # B N D
        t = t.to(hidden.dtype) * 1000
        if self.config.guidance_embeds:
            guidance = torch.full_like(t, self.config.distilled_guidance * 1000)
            temb = f.time_text_embed(t, guidance, pooled)  # B D
        else:
            temb = f.time_text_embed(t, pooled)  # B D
        context = f.context_embedder(context)  # B L D
        txt_ids = torch.zeros(context.shape[1], 3, device=x.device)
        rotary = f.pos_embed(torch.cat([txt_ids, image_ids(ph, pw, x.device)], dim=0))
        for block in f.transformer_blocks:
            context, hidden = block(hidden_states=hidden, encoder_hidden_states=context, temb=temb, image_rotary_emb=rotary)
        hidden = hidden + self.inject(semantic)  # the semantic embeddings enter the image stream here
        for block in f.single_transformer_blocks:
            context, hidden = block(hidden_states=hidden, encoder_hidden_states=context, temb=temb, image_rotary_emb=rotary)
        hidden = f.norm_out(hidden, temb)
        out = f.proj_out(hidden)  # B N patch_dim
        if self.prior is not None:
            prior = self.prior_patches(semantic) if prior is None else prior
            out = out + (prior.detach() if self.detach_prior else prior)
        return out
