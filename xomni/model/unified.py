"""The unified autoregressive model: one Qwen2 over text tokens and semantic image tokens (paper Sec. 3.2).

    ids (B, T) over the joint vocabulary (text ids < V, image code k at V + k; xomni/tokenizer/text.py)
      -> embed: text ids through `embed_tokens`, image ids through `mm_embed`
      -> `vision_pre` blocks, updating image positions only
      -> the LLM's `layers`, every position
      -> `vision_post` blocks, image positions only
      -> final norm per position kind (`norm` for text, `mm_norm` for image positions)
      -> logits over the joint vocabulary: [lm_head | mm_head] (B, T, V + K)

Built from transformers' Qwen2 modules (config, `Qwen2DecoderLayer` weights, RMSNorm, rotary embedding) so a Qwen2.5
checkpoint's LLM part loads as is and X-Omni's released weights map name by name (`load_pretrained`, `official_key`;
the table is in docs/unified.md). The block
forward is written out here (gpt-fast style) so the KV cache is an explicit object (`KVCache`) the engine owns and
the vision-only blocks can skip work on text positions: their attention still reads every position (keys and
values), as the official blocks do, but their MLP runs on image positions only, which is what the official code
computes and then discards elsewhere. Plain 1-D RoPE over the whole sequence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import (Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding,
                                                      apply_rotary_pos_emb)

from xomni.checkpoint import check_fit, read_safetensors


@dataclass
class UnifiedConfig:
    text_vocab_size: int = 2048  # text tokens including X-Omni's specials; image code k is id text_vocab_size + k
    codebook_size: int = 4096
    hidden_size: int = 256
    num_layers: int = 4  # the LLM's layers
    num_vision_layers: int = 1  # vision-only blocks before the LLM, and as many after it
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    max_positions: int = 512
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    # Deviation (tiny, opt-in): learned row and column embeddings, for grids of up to this many rows and columns, added
    # to each image token's embedding (`init_grid_embed`). 0: none, as X-Omni (1-D RoPE is all the position it has).
    image_grid_embed: int = 0
    # True for a model on an LLM whose embedding has more text rows than its tokenizer has tokens (Qwen2.5-7B:
    # 152,064 rows): image ids start after the rows, and the text tokenizer is padded to them (`TextTokenizer`).
    # False: the tokenizer's vocabulary must be exactly the text rows (a mismatched tokenizer is an error).
    padded_text_rows: bool = False

    @property
    def vocab_size(self) -> int:
        return self.text_vocab_size + self.codebook_size

    def qwen2_config(self) -> Qwen2Config:
        return Qwen2Config(
            vocab_size=self.text_vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads, max_position_embeddings=self.max_positions,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta}, rms_norm_eps=self.rms_norm_eps,
            tie_word_embeddings=self.tie_word_embeddings, attn_implementation="sdpa",
        )


PRESETS = {
    # Sized by the CPU: a training step of 32 samples (~4,000 tokens) is compute-bound here, and 6 + 2 + 2 blocks
    # took 1.75x as long as 4 + 1 + 1 at the same width (bench/ar_step.py, docs/unified.md).
    "tiny": UnifiedConfig(),
    # Qwen2.5-7B with X-Omni's 4 + 4 vision-only blocks and a 16384-code image vocabulary.
    "paper": UnifiedConfig(
        text_vocab_size=152064, codebook_size=16384, hidden_size=3584, num_layers=28, num_vision_layers=4,
        num_heads=28, num_kv_heads=4, intermediate_size=18944, max_positions=32768, rope_theta=1e6,
        padded_text_rows=True,
    ),
}


@dataclass
class KVCache:
    """Keys and values of every attention layer, preallocated: k[i], v[i] (B, Hkv, T_max, Dh); `length` filled."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    length: int = 0

    @classmethod
    def allocate(cls, config: UnifiedConfig, batch: int, max_len: int, dtype=torch.float32, device=None) -> "KVCache":
        n = config.num_layers + 2 * config.num_vision_layers
        dh = config.hidden_size // config.num_heads
        shape = (batch, config.num_kv_heads, max_len, dh)
        return cls([torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
                   [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)])

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]


def _attention(layer: Qwen2DecoderLayer, x: torch.Tensor, cos, sin, mask: torch.Tensor,
               cache: KVCache | None, slot: int) -> torch.Tensor:
    """Self-attention of one Qwen2 layer on normalised x (B, T, D); with a cache, the T new keys/values are written
    at positions [cache.length, cache.length + T) and attention reads everything up to there."""
    attn = layer.self_attn
    B, T, _ = x.shape
    q = attn.q_proj(x).view(B, T, -1, attn.head_dim).transpose(1, 2)  # B H T Dh
    k = attn.k_proj(x).view(B, T, -1, attn.head_dim).transpose(1, 2)  # B Hkv T Dh
    v = attn.v_proj(x).view(B, T, -1, attn.head_dim).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    if cache is not None:
        start = cache.length
        cache.k[slot][:, :, start : start + T] = k
        cache.v[slot][:, :, start : start + T] = v
        k, v = cache.k[slot][:, :, : start + T], cache.v[slot][:, :, : start + T]  # B Hkv S Dh
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling,
                                         enable_gqa=attn.num_key_value_groups > 1)  # B H T Dh
    return attn.o_proj(out.transpose(1, 2).reshape(B, T, -1))  # B T D


class Block(Qwen2DecoderLayer):
    """A Qwen2 decoder layer (its weights and parameter names, so checkpoints map one to one) whose forward is
    written out here: the explicit KV cache, and `only` (B, T) bool to update just those positions (the vision-only
    blocks). Being a module call, it is also where FSDP's per-block gathering hooks fire."""

    def forward(self, h: torch.Tensor, cos, sin, mask, cache: KVCache | None, slot: int,
                only: torch.Tensor | None = None) -> torch.Tensor:
        a = _attention(self, self.input_layernorm(h), cos, sin, mask, cache, slot)  # B T D
        if only is None or bool(only.all()):  # every position updated (e.g. decoding an image token): no gather
            h = h + a
            return h + self.mlp(self.post_attention_layernorm(h))
        if not only.any():
            return h
        sel = h[only] + a[only]  # N D: image positions, packed
        sel = sel + self.mlp(self.post_attention_layernorm(sel))
        out = h.clone()
        out[only] = sel
        return out


class UnifiedModel(nn.Module):
    def __init__(self, config: UnifiedConfig):
        super().__init__()
        self.config = config
        qc = config.qwen2_config()
        nv, D = config.num_vision_layers, config.hidden_size
        self.embed_tokens = nn.Embedding(config.text_vocab_size, D)
        self.mm_embed = nn.Embedding(config.codebook_size, D)
        self.vision_pre = nn.ModuleList(Block(qc, i) for i in range(nv))
        self.layers = nn.ModuleList(Block(qc, i) for i in range(config.num_layers))
        self.vision_post = nn.ModuleList(Block(qc, i) for i in range(nv))
        self.norm = Qwen2RMSNorm(D, eps=config.rms_norm_eps)
        self.mm_norm = Qwen2RMSNorm(D, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(D, config.text_vocab_size, bias=False)
        self.mm_head = nn.Linear(D, config.codebook_size, bias=False)
        self.rotary = Qwen2RotaryEmbedding(qc)
        if config.image_grid_embed:
            self.mm_row = nn.Embedding(config.image_grid_embed, D)
            self.mm_col = nn.Embedding(config.image_grid_embed, D)
        self.initialize_weights()
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def initialize_weights(self, std: float = 0.02) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, Qwen2RMSNorm):
                nn.init.ones_(m.weight)
        if self.config.image_grid_embed:
            self.init_grid_embed()

    @torch.no_grad()
    def init_grid_embed(self, scale: float = 0.3) -> None:
        """Row and column embeddings start as 2-D sine-cosine codes (rows on the first half of the width, columns on
        the second, as MAE's), each row of norm `scale` times the image embedding's mean row norm: readable by a
        linear map from the first step and in proportion to the codes they are added to. (At 0 they stayed at 0.1%
        of the trained image embeddings' norm after 300 steps and nothing read them: docs/unified.md.)"""
        n, D = self.config.image_grid_embed, self.config.hidden_size
        half = D // 2
        freq = 1.0 / 100.0 ** (torch.arange(half // 2) / max(1, half // 2))
        angle = torch.arange(n)[:, None] * freq[None]  # n half/2
        code = torch.cat([angle.sin(), angle.cos()], -1)  # n half
        code = code / code.norm(dim=-1, keepdim=True) * scale * self.mm_embed.weight.norm(dim=-1).mean()
        self.mm_row.weight.zero_()
        self.mm_col.weight.zero_()
        self.mm_row.weight[:, :half] = code
        self.mm_col.weight[:, half : 2 * half] = code

    def is_image(self, ids: torch.Tensor) -> torch.Tensor:
        return ids >= self.config.text_vocab_size

    def embed(self, ids: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) joint ids -> (B, T, D). grid (B, T, 2): each image token's (row, column), -1 elsewhere
        (`TextTokenizer.image_grid`); needed, and only read, when the model has row/column embeddings."""
        V = self.config.text_vocab_size
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        image = self.is_image(ids)
        if bool(image.all()):
            h = self.mm_embed(ids - V)
        elif not image.any():
            return self.embed_tokens(ids)
        else:
            text_emb = self.embed_tokens(ids.clamp(max=V - 1))
            image_emb = self.mm_embed((ids - V).clamp(min=0))
            h = torch.where(image[..., None], image_emb, text_emb)
        return h + self.grid_embed(image, grid) if self.config.image_grid_embed else h

    def grid_embed(self, image: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
        """(B, T, D): the row and column embeddings of each image token's cell, 0 at text tokens."""
        n = self.config.image_grid_embed
        if grid is None:
            raise ValueError("this model adds row/column embeddings to image tokens (image_grid_embed): pass `grid`, "
                             "each token's (row, column) from TextTokenizer.image_grid")
        if grid.shape != (*image.shape, 2):
            raise ValueError(f"grid of shape {tuple(grid.shape)} for ids of shape {tuple(image.shape)}: want (B, T, 2)")
        r, c = grid[..., 0], grid[..., 1]
        if bool(((r < 0) & image).any()) or bool((grid >= n).any()):
            raise ValueError(f"every image token needs a cell within the model's {n} x {n} grid embeddings")
        e = self.mm_row(r.clamp(0, n - 1)) + self.mm_col(c.clamp(0, n - 1))
        return torch.where(image[..., None], e, torch.zeros((), dtype=e.dtype))

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None, pad_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, segments: torch.Tensor | None = None,
                vision_on_all: bool = False, last_only: bool = False, head: str = "joint",
                grid: torch.Tensor | None = None) -> torch.Tensor:
        """Joint logits (B, T, V + K) for ids (B, T).

        positions (B, T): RoPE positions (default: cache.length + arange(T)). pad_mask (B, S) bool over every key
        position the call can see (cache included), False on padding. With a cache the new keys/values are stored
        and cache.length advances by T. vision_on_all runs the vision-only blocks' MLP on every position and keeps
        the image ones, as the official code does (for the benchmark that measures what skipping saves).
        segments (B, T): packed training rows (xomni/data/sequences.py); attention stays inside a segment.
        last_only: logits of the last position only (B, 1, .). head: "joint" (V + K), "image" (K: image codes only,
        the engine's image mode), "text" (V), or "hidden": the normalised final states (B, T, D) before any head, for
        a loss that applies each head only where it is needed (xomni/stages/train_ar.py). grid (B, T, 2): each image
        token's (row, column), -1 elsewhere; only for a model with row/column embeddings (`embed`).
        """
        B, T = ids.shape
        start = cache.length if cache is not None else 0
        if cache is not None and start + T > cache.capacity:
            raise ValueError(f"sequence of {start + T} tokens exceeds the cache's {cache.capacity}")
        if start + T > self.config.max_positions:
            raise ValueError(f"sequence of {start + T} tokens exceeds the model's context of {self.config.max_positions}")
        if positions is None:
            positions = torch.arange(start, start + T, device=ids.device).expand(B, T)
        S = start + T
        if T == 1 and pad_mask is not None:  # one new token sees the whole cache: the padding mask is the mask
            mask = pad_mask[:, None, None, :S]
        else:
            causal = torch.ones(T, S, dtype=torch.bool, device=ids.device).tril(start)  # T S: token t sees <= start+t
            mask = causal[None, None].expand(B, 1, T, S)
            if pad_mask is not None:
                mask = mask & pad_mask[:, None, None, :S]
        if segments is not None:
            if cache is not None:
                raise ValueError("packed segments are for training forwards, not cached decoding")
            mask = mask & (segments[:, :, None] == segments[:, None, :])[:, None]
        image = self.is_image(ids)  # B T
        h = self.embed(ids, grid)  # B T D
        cos, sin = self.rotary(h, positions)
        slot = 0
        for stack, vision in ((self.vision_pre, True), (self.layers, False), (self.vision_post, True)):
            for layer in stack:
                if not vision:
                    h = layer(h, cos, sin, mask, cache, slot)
                elif vision_on_all:
                    h = torch.where(image[..., None], layer(h, cos, sin, mask, cache, slot), h)
                else:
                    h = layer(h, cos, sin, mask, cache, slot, only=image)
                slot += 1
        if cache is not None:
            cache.length += T
        if last_only:
            h, image = h[:, -1:], image[:, -1:]
        if bool(image.all()):  # decoding image tokens: one norm, no select
            x = self.mm_norm(h)
        elif not image.any():
            x = self.norm(h)
        else:
            x = torch.where(image[..., None], self.mm_norm(h), self.norm(h))  # B T D
        if head == "hidden":
            return x
        if head == "image":
            return self.mm_head(x)  # B T K
        if head == "text":
            return self.lm_head(x)  # B T V
        return torch.cat([self.lm_head(x), self.mm_head(x)], dim=-1)  # B T V+K


def loss_on(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy. logits (B, T, V+K) at positions 0..T-1; labels (B, T) are the ids to predict
    at each position (already shifted), -100 where nothing is supervised."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


# ---------------------------------------------------------------------------------------------------------------
# Paper scale: Qwen2.5 and X-Omni weights from local folders
# ---------------------------------------------------------------------------------------------------------------


def official_key(name: str, config: UnifiedConfig) -> str | None:
    """X-Omni's parameter name (its `XOmniForCausalLM`) -> ours; None for what we do not keep (RoPE buffers).

    X-Omni numbers all its blocks in one `model.layers` list: the first `num_mm_adap_layers` are the vision-only
    blocks before the LLM, the last `num_mm_head_layers` those after it (both 4 = our `num_vision_layers`)."""
    nv, n = config.num_vision_layers, config.num_layers
    fixed = {"model.lm_embed_tokens.weight": "embed_tokens.weight", "model.mm_embed_tokens.weight": "mm_embed.weight",
             "model.lm_norm.weight": "norm.weight", "model.mm_norm.weight": "mm_norm.weight",
             "lm_head.weight": "lm_head.weight", "mm_head.weight": "mm_head.weight"}
    if name.endswith("rotary_emb.inv_freq"):  # a buffer older checkpoints stored per layer; ours is computed
        return None
    if name in fixed:
        return fixed[name]
    if name.startswith("model.layers."):
        i, rest = name[len("model.layers."):].split(".", 1)
        i = int(i)
        if i < nv:
            return f"vision_pre.{i}.{rest}"
        if i < nv + n:
            return f"layers.{i - nv}.{rest}"
        return f"vision_post.{i - nv - n}.{rest}"
    raise ValueError(f"unknown X-Omni parameter {name!r}")


def qwen2_key(name: str, config: UnifiedConfig) -> str | None:
    """A Qwen2/Qwen2.5 `Qwen2ForCausalLM` parameter name -> ours (the LLM part only)."""
    if name.endswith("rotary_emb.inv_freq"):
        return None
    if name.startswith("model.layers."):
        return "layers." + name[len("model.layers."):]
    fixed = {"model.embed_tokens.weight": "embed_tokens.weight", "model.norm.weight": "norm.weight",
             "lm_head.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    raise ValueError(f"unknown Qwen2 parameter {name!r}")


def is_qwen2_folder(path) -> bool:
    """A local transformers Qwen2/Qwen2.5 folder (its config.json says model_type qwen2), not one of our checkpoints."""
    config = Path(path) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "qwen2"


def qwen2_unified_config(path, codebook_size: int, num_vision_layers: int, **overrides) -> UnifiedConfig:
    """The UnifiedConfig of a Qwen2.5 folder's LLM with `num_vision_layers` vision-only blocks before and after it
    and an image vocabulary of `codebook_size` codes (X-Omni's paper preset from Qwen2.5-7B's config.json)."""
    c = json.loads((Path(path) / "config.json").read_text())
    theta = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    return UnifiedConfig(**{
        "text_vocab_size": c["vocab_size"], "codebook_size": codebook_size, "hidden_size": c["hidden_size"],
        "num_layers": c["num_hidden_layers"], "num_vision_layers": num_vision_layers,
        "num_heads": c["num_attention_heads"], "num_kv_heads": c.get("num_key_value_heads", c["num_attention_heads"]),
        "intermediate_size": c["intermediate_size"], "max_positions": c["max_position_embeddings"],
        "rope_theta": float(theta), "rms_norm_eps": c.get("rms_norm_eps", 1e-6),
        "tie_word_embeddings": c.get("tie_word_embeddings", False), "padded_text_rows": True, **overrides})


@torch.no_grad()
def load_pretrained(model: UnifiedModel, path, source: str) -> list[str]:
    """Load local safetensors weights into `model`; returns the names of ours they left at their initialisation.

    source "official": an X-Omni checkpoint folder; every tensor of ours must be set. The image embedding and head
    keep their first `codebook_size` rows (X-Omni's `mm_vocab_size` may reserve more than its image vocabulary).
    source "qwen2": a Qwen2.5 folder (paper pre-training starts here): the LLM part is set; the vision-only blocks,
    the image embedding, head and norm stay new, as the paper's stage 1 trains them. A Qwen2.5 with tied embeddings
    (no lm_head.weight) gets its embedding as the head."""
    return load_pretrained_tensors(model, read_safetensors(path), source, str(path))


@torch.no_grad()
def load_pretrained_tensors(model: UnifiedModel, tensors: dict[str, torch.Tensor], source: str,
                            where: str = "the weights") -> list[str]:
    """`load_pretrained` on tensors already in memory under the source's names (e.g. a Qwen2 module's state dict)."""
    if source not in ("official", "qwen2"):
        raise ValueError(f"unknown source {source!r}; expected 'official' or 'qwen2'")
    to_ours = official_key if source == "official" else qwen2_key
    mapped = {}
    for name, value in tensors.items():
        ours = to_ours(name, model.config)
        if ours is not None:
            mapped[ours] = value
    if source == "qwen2" and "lm_head.weight" not in mapped and "embed_tokens.weight" in mapped:
        mapped["lm_head.weight"] = mapped["embed_tokens.weight"]
    K = model.config.codebook_size
    for name in ("mm_embed.weight", "mm_head.weight"):
        if name in mapped and mapped[name].shape[0] > K:
            mapped[name] = mapped[name][:K]
    own = model.state_dict()
    expected = own if source == "official" else {k: v for k, v in own.items() if k in mapped or
                                                 k.startswith(("layers.", "embed_tokens.", "norm.", "lm_head."))}
    check_fit(expected, mapped, f"{where} does not fit this UnifiedConfig")
    if extra := sorted(set(mapped) - set(own)):  # e.g. more layers or vision-only blocks than the config has
        raise ValueError(f"{where} does not fit this UnifiedConfig: {len(extra)} tensors it has no place for, "
                         f"e.g. {extra[:4]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=False)
    return sorted(set(own) - set(mapped))
