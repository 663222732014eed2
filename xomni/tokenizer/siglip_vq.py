"""SigLIP-VQ: X-Omni's semantic image tokenizer (paper Sec. 3.1).

image -> SigLIP2 ViT (patch 16, position embeddings resized per image, no final norm) -> 1x1 projection ->
L2-normalised nearest neighbour in an L2-normalised codebook (straight-through) -> one token per 16x16 patch.
The decode side maps code ids back to semantic embeddings: codebook rows -> projection -> residual blocks. Those
embeddings feed the alignment LM while the tokenizer is trained and the diffusion decoder afterwards.

The encoder is transformers' `Siglip2VisionEmbeddings` + `Siglip2Encoder`, built from a `Siglip2VisionConfig`; the
final `post_layernorm` is left out, as X-Omni takes the encoder's last hidden states un-normalised.
Deviation at tiny scale: the paper starts from a pretrained SigLIP2; ours starts from scratch (see
`xomni/stages/train_tokenizer.py` for how it is trained instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import Siglip2VisionConfig
from transformers.models.siglip2.modeling_siglip2 import Siglip2Encoder, Siglip2VisionEmbeddings

from xomni.checkpoint import check_fit, read_safetensors


@dataclass
class SiglipVQConfig:
    patch_size: int = 16
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 3
    intermediate_size: int = 768
    position_grid: int = 16  # learned position embeddings form a grid x grid table, resized per image
    codebook_size: int = 4096
    codebook_dim: int = 64
    adapter_dim: int = 256  # width of the semantic embeddings handed to the decoder / alignment LM
    adapter_blocks: int = 2
    layer_norm_eps: float = 1e-6
    commitment: float = 0.25

    def vision_config(self) -> Siglip2VisionConfig:
        return Siglip2VisionConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            patch_size=self.patch_size,
            num_patches=self.position_grid**2,
            layer_norm_eps=self.layer_norm_eps,
            vision_use_head=False,
            attn_implementation="eager",  # set explicitly: the layers are used outside a PreTrainedModel
        )


PRESETS = {
    "tiny": SiglipVQConfig(),
    # SigLIP2-g/16 (width 1536, 40 layers), codebook 16384 x 2048, as X-Omni.
    "paper": SiglipVQConfig(
        hidden_size=1536, num_layers=40, num_heads=16, intermediate_size=6144, position_grid=24,
        codebook_size=16384, codebook_dim=2048, adapter_dim=1536, adapter_blocks=2,
    ),
}

IMAGE_MEAN = 0.5  # SigLIP normalises pixels to [-1, 1]
IMAGE_STD = 0.5


def patchify(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, C*p*p), rows of patches in row-major order."""
    B, C, H, W = pixels.shape
    if H % patch or W % patch:
        raise ValueError(f"image {H}x{W} is not a multiple of the patch size {patch}")
    x = pixels.reshape(B, C, H // patch, patch, W // patch, patch)  # B C h p w p
    return x.permute(0, 2, 4, 1, 3, 5).reshape(B, (H // patch) * (W // patch), C * patch * patch)


def unpatchify(x: torch.Tensor, h: int, w: int, patch: int, channels: int) -> torch.Tensor:
    """(B, h*w, C*p*p) -> (B, C, h*p, w*p); the inverse of `patchify`."""
    B = x.shape[0]
    x = x.reshape(B, h, w, channels, patch, patch)  # B h w C p p
    return x.permute(0, 3, 1, 4, 2, 5).reshape(B, channels, h * patch, w * patch)


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Indices of the nearest L2-normalised codebook rows to L2-normalised z. z (..., D), codebook (K, D) -> (...)."""
    z = F.normalize(z, dim=-1)
    cb = F.normalize(codebook, dim=-1)
    return (z.reshape(-1, z.shape[-1]) @ cb.t()).argmax(-1).reshape(z.shape[:-1])


class ResidualBlock(nn.Module):
    """The official decode-side block: x + conv(GELU(GN(conv(GELU(GN(x)))))), 3x3 convs over the token grid."""

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B C h w
        return x + self.conv2(F.gelu(self.norm2(self.conv1(F.gelu(self.norm1(x))))))


@dataclass
class Quantized:
    codes: torch.Tensor  # (B, h, w) long
    embeddings: torch.Tensor  # (B, h, w, adapter_dim) semantic embeddings (straight-through to the encoder)
    vq_loss: torch.Tensor  # scalar: codebook + commitment terms
    z: torch.Tensor  # (B, h, w, codebook_dim) normalised encoder outputs, for dead-code restarts


class SiglipVQ(nn.Module):
    def __init__(self, config: SiglipVQConfig):
        super().__init__()
        self.config = config
        vision = config.vision_config()
        self.embeddings = Siglip2VisionEmbeddings(vision)
        self.encoder = Siglip2Encoder(vision)
        self.proj = nn.Linear(config.hidden_size, config.codebook_dim)  # the 1x1 projection
        self.codebook = nn.Parameter(torch.randn(config.codebook_size, config.codebook_dim))
        self.post_quant = nn.Conv2d(config.codebook_dim, config.adapter_dim, 1)  # decode side: codebook rows -> width
        self.post_blocks = nn.Sequential(*(ResidualBlock(config.adapter_dim) for _ in range(config.adapter_blocks)))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.embeddings.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.codebook.copy_(F.normalize(torch.randn_like(self.codebook), dim=-1))

    def encode_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, h, w, codebook_dim) projected features before quantisation."""
        B, _, H, W = pixels.shape
        p = self.config.patch_size
        h, w = H // p, W // p
        x = patchify((pixels - IMAGE_MEAN) / IMAGE_STD, p)  # B T 3pp
        shapes = torch.tensor([[h, w]] * B, device=pixels.device)
        x = self.embeddings(x, shapes)  # B T D
        x = self.encoder(inputs_embeds=x).last_hidden_state  # B T D, no final norm
        return self.proj(x).reshape(B, h, w, -1)  # B h w Dc

    def quantize(self, z: torch.Tensor) -> Quantized:
        """Nearest neighbour by cosine similarity with a straight-through estimator. z (B, h, w, Dc).

        The official quantiser is IBQ (gradients through a softmax over all codes); at tiny scale it collapsed here
        to a single code within 300 steps (docs/image_side.md), so the plain straight-through estimator is used.
        """
        z = F.normalize(z, dim=-1)
        cb = F.normalize(self.codebook, dim=-1)
        codes = nearest_codes(z.detach(), self.codebook)  # B h w
        zq = cb[codes]  # B h w Dc
        vq_loss = F.mse_loss(zq, z.detach()) + self.config.commitment * F.mse_loss(z, zq.detach())
        zq = z + (zq - z).detach()
        return Quantized(codes, self.embed_normalized(zq), vq_loss, z.detach())

    def forward(self, pixels: torch.Tensor, quantize: bool = True) -> Quantized:
        """quantize=False bypasses the codebook (the adapter reads the normalised features themselves): the
        training stage's warm-up, which lets the encoder learn before `kmeans_init` places the codes."""
        z = self.encode_features(pixels)
        if quantize:
            return self.quantize(z)
        z = F.normalize(z, dim=-1)
        return Quantized(nearest_codes(z.detach(), self.codebook), self.embed_normalized(z), z.new_zeros(()), z.detach())

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, h, w) code ids."""
        return nearest_codes(self.encode_features(pixels), self.codebook)

    def embed_normalized(self, zq: torch.Tensor) -> torch.Tensor:
        """(B, h, w, Dc) unit code vectors -> (B, h, w, adapter_dim) semantic embeddings."""
        x = self.post_blocks(self.post_quant(zq.permute(0, 3, 1, 2)))  # B Da h w
        return x.permute(0, 2, 3, 1)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode side: code ids (B, h, w) -> semantic embeddings (B, h, w, adapter_dim).

        The official decoder reads raw codebook rows here; ours are trained unit-norm, so we read them normalised.
        """
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size):
            raise ValueError(f"code ids must lie in [0, {self.config.codebook_size})")
        return self.embed_normalized(F.normalize(self.codebook, dim=-1)[codes])

    @torch.no_grad()
    def restart_codes(self, dead: torch.Tensor, samples: torch.Tensor, generator: torch.Generator | None = None) -> int:
        """Re-seed the dead codes (bool mask (K,)) with randomly chosen encoder outputs `samples` (N, Dc)."""
        n = int(dead.sum())
        if n == 0 or samples.shape[0] == 0:
            return 0
        pick = torch.randint(samples.shape[0], (n,), generator=generator, device=samples.device)
        noise = 0.01 * torch.randn(n, samples.shape[1], generator=generator, device=samples.device)
        self.codebook[dead] = F.normalize(samples[pick] + noise, dim=-1).to(self.codebook.dtype)
        return n


@torch.no_grad()
def kmeans(samples: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Spherical k-means: (N, D) samples -> (k, D) unit centroids. A centroid left without samples is re-seeded on
    a random sample, so all k end up on the data."""
    x = F.normalize(samples, dim=-1)
    if x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} samples, got {x.shape[0]}")
    centroids = x[torch.randperm(x.shape[0], generator=generator)[:k]].clone()  # k D
    for _ in range(iters):
        assign = (x @ centroids.t()).argmax(-1)  # N
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        empty = torch.bincount(assign, minlength=k) == 0
        centroids = F.normalize(sums, dim=-1)
        centroids[empty] = x[torch.randint(x.shape[0], (int(empty.sum()),), generator=generator)]
    return centroids


def utilization(codes: torch.Tensor, codebook_size: int) -> float:
    """Fraction of the codebook used at least once in `codes`."""
    return torch.unique(codes).numel() / codebook_size


# ---------------------------------------------------------------------------------------------------------------
# Paper scale: weights from local folders (nothing is fetched from a hub)
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def load_siglip_encoder(vq: SiglipVQ, path: str | Path) -> None:
    """Load a transformers SigLIP or SigLIP2 vision tower (a local folder) into the encoder; the head and the final
    norm are dropped. SigLIP's Conv2d patch embedding and SigLIP2's Linear one (over channel-last patches) are both
    mapped onto our Linear over channel-first patches."""
    state = read_safetensors(Path(path))
    prefix = next((p for p in ("vision_model.", "model.vision_model.", "") if f"{p}embeddings.patch_embedding.weight" in state), None)
    if prefix is None:
        raise ValueError(f"{path} holds no SigLIP vision tower (no embeddings.patch_embedding.weight)")
    c, p = 3, vq.config.patch_size
    mapped = {}
    for key, value in state.items():
        if not key.startswith(prefix) or key[len(prefix):].startswith(("post_layernorm", "head")):
            continue
        name = key[len(prefix):]
        if name == "embeddings.patch_embedding.weight":
            if value.ndim == 4:  # SigLIP: Conv2d (D, C, p, p)
                value = value.reshape(value.shape[0], -1)
            else:  # SigLIP2: Linear over (p, p, C) patches
                value = value.reshape(value.shape[0], p, p, c).permute(0, 3, 1, 2).reshape(value.shape[0], -1)
        mapped[name] = value
    own = {k: v for k, v in vq.state_dict().items() if k.startswith(("embeddings.", "encoder."))}
    check_fit(own, mapped, f"{path} does not fit this SiglipVQConfig")
    vq.load_state_dict({k: mapped[k] for k in own}, strict=False)


OFFICIAL_PROJECTOR_KEYS = {  # the official SigLIP-VQ projector (VQConvProjector) -> ours
    "quant_conv": "proj",
    "quantize.embedding.weight": "codebook",
    "post_quant_conv": "post_quant",
    "post_conv": "post_blocks",
}


@torch.no_grad()
def load_official_projector(vq: SiglipVQ, path: str | Path) -> None:
    """Load X-Omni's released projector weights (a .safetensors file or folder, or a torch .pt/.bin state dict, which
    X-Omni's own code reads with torch.load): 1x1 quant conv, codebook, post-quant conv and the residual blocks.
    Their names map onto ours as OFFICIAL_PROJECTOR_KEYS says."""
    path = Path(path)
    if path.suffix in (".pt", ".bin", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise ValueError(f"{path} is not a state dict of tensors")
    else:
        state = read_safetensors(path)
    mapped = {}
    for key, value in state.items():
        for theirs, ours in OFFICIAL_PROJECTOR_KEYS.items():
            if key == theirs or key.startswith(theirs + "."):
                name = ours + key[len(theirs):]
                if name == "proj.weight":
                    value = value.reshape(value.shape[0], value.shape[1])  # 1x1 conv -> linear
                mapped[name] = value
    own = {k: v for k, v in vq.state_dict().items() if not k.startswith(("embeddings.", "encoder."))}
    check_fit(own, mapped, f"{path} is not an X-Omni projector for this config")
    vq.load_state_dict(mapped, strict=False)
