"""The sampling engine: token ids in, token ids out (gpt-fast's shape: prefill, decode_one_token, generate).

- The KV cache is an explicit object (`xomni.model.unified.KVCache`) allocated here for the whole rollout; the model
  never keeps generation state.
- Batched prompts are left-padded; RoPE positions come from the padding mask, so a padded row computes exactly what
  it would alone.
- Sampling: temperature, top-k, top-p, min-p (X-Omni samples images with temperature 1.0 and min-p 0.03, no CFG);
  a seeded `torch.Generator` makes a rollout reproducible; every sampled token's log-probability under the
  distribution it was drawn from is returned (GRPO needs it), and in image mode the most likely code's probability
  at each step (`Rollout.top`: where it stays low, the rollout has derailed, `derailed`).
- Image mode: after the `<SOM>{rows} {cols}<IMAGE>` prefix only image tokens are allowed (the model computes only its
  image head), exactly rows*cols of them; `<EOM>` follows them unsampled (the caller appends it: `Pipeline`). Text
  mode computes only the text head.
- Optional classifier-free guidance: the unconditional branch is the image prefix alone, and the two are combined
  in `guided_logits`, the one place CFG lives.
- On the CPU, decoding one token per row does not go through the modules: `DecodeWeights` repacks the weights once
  per call (q/k/v fused, gate/up fused, each matrix transposed once) and `decode_step` runs the whole network
  as plain tensor ops (RoPE from a table, attention written out). At a tiny batch the step is bound by small
  matrix products and per-op overhead, and this is what beats transformers' `generate` (bench/engine_speed.py,
  docs/unified.md). The prompt still runs through the model's own forward, and tests hold the two paths equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xomni.data.sequences import image_grids
from xomni.model.unified import KVCache, UnifiedModel
from xomni.tokenizer.text import TextTokenizer


@dataclass
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    min_p: float = 0.03  # X-Omni's default; 0: off
    cfg: float = 1.0  # classifier-free guidance scale; 1: off, 0: the unconditional branch alone; never negative

    def __post_init__(self):
        finite = all(math.isfinite(x) for x in (self.temperature, self.top_p, self.min_p, self.cfg))
        if (not finite or self.temperature < 0 or not 0 < self.top_p <= 1 or not 0 <= self.min_p < 1
                or self.top_k < 0 or self.cfg < 0):
            raise ValueError(f"bad sampling settings {self}")


def filter_logits(logits: torch.Tensor, s: Sampling) -> torch.Tensor:
    """(B, V) logits -> (B, V) log-probabilities of the distribution to sample from (temperature, then top-k,
    min-p and top-p; removed tokens at -inf). Temperature 0 keeps only the arg-max."""
    if s.temperature == 0:
        out = torch.full_like(logits, float("-inf"))
        return out.scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
    logits = logits / s.temperature
    if s.top_k:
        kth = logits.topk(min(s.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.min_p > 0:  # p < min_p * p_max  <=>  logit < max logit + log(min_p): no softmax needed
        floor = logits.max(-1, keepdim=True).values + math.log(s.min_p)
        logits = logits.masked_fill(logits < floor, float("-inf"))
    if s.top_p < 1:
        sorted_p, order = logits.softmax(-1).sort(-1, descending=True)
        drop_sorted = sorted_p.cumsum(-1) - sorted_p >= s.top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits.log_softmax(-1)


def sample(logits: torch.Tensor, s: Sampling, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V) logits -> sampled ids (B,) and their log-probabilities (B,) under the filtered distribution.

    Inverse-CDF sampling: one uniform per row against the cumulative probabilities (`torch.multinomial` draws an
    exponential per vocabulary entry, ~8% of a tiny image rollout's time here). `right=True` never lands on a
    removed (zero-probability) token."""
    if s.temperature == 0:  # the arg-max, with probability one
        ids = logits.argmax(-1)
        return ids, torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    logp = filter_logits(logits.float(), s)
    cdf = logp.exp().cumsum(-1)
    # drawn where the generator lives (a CPU generator seeds a GPU rollout too), then moved to the logits
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=generator.device if generator else cdf.device)
    u = u.to(cdf.device) * cdf[:, -1:]
    ids = torch.searchsorted(cdf, u, right=True)[:, 0].clamp(max=cdf.shape[-1] - 1)
    return ids, logp.gather(-1, ids[:, None])[:, 0]


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on logits: uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> ids (B, L) left-padded and mask (B, L) bool, True on real tokens."""
    if any(len(s) == 0 for s in seqs):
        raise ValueError("every sequence needs at least one token")
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), L, dtype=torch.bool)
    for b, s in enumerate(seqs):
        ids[b, L - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[b, L - len(s):] = True
    return ids, mask


@dataclass
class Rollout:
    tokens: torch.Tensor  # (B, N) sampled ids (joint vocabulary)
    logprobs: torch.Tensor  # (B, N) their log-probabilities under the sampling distribution
    prompt: torch.Tensor  # (B, L) left-padded prompt ids
    prompt_mask: torch.Tensor  # (B, L)
    top: torch.Tensor | None = None  # image mode: (B, N) the probability of the most likely code at each step


# A derailed image (docs/unified.md, "Rollouts that derail"): the image head goes flat mid-image and stays flat, and
# the decoder draws noise there. A position is flat when the most likely code has probability under FLAT (the tiny
# codebook has 4,096 codes); an image with at least DERAIL_POSITIONS flat positions has derailed.
FLAT = 0.1
DERAIL_POSITIONS = 8


def flat_positions(top: torch.Tensor, flat: float = FLAT) -> torch.Tensor:
    """(B, N) top-code probabilities (`Rollout.top`) -> (B,) how many positions are flat."""
    return (top < flat).sum(-1)


def derailed(top: torch.Tensor, flat: float = FLAT, positions: int = DERAIL_POSITIONS) -> torch.Tensor:
    """(B, N) top-code probabilities -> (B,) bool: the rollouts that derailed."""
    return flat_positions(top, flat) >= positions


def _pack(weight: torch.Tensor) -> torch.Tensor:
    """An nn.Linear weight (out, in) -> (in, out), contiguous: `_linear` multiplies it with `torch.mm`/`addmm`, no
    transpose per call. (oneDNN's pre-packed `torch.ops.mkldnn._linear_pointwise` was tried here: slower than the
    plain product at these sizes, 53 against 35 us for 16 x 256 by 256 x 768 on one thread; docs/unified.md.)"""
    return weight.detach().t().contiguous()


def _linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return torch.addmm(bias, x, w) if bias is not None else x @ w


class DecodeWeights:
    """The model's weights repacked for `decode_step` (float32 on the CPU): rebuilt for every generate call, so a
    policy updated between calls (GRPO) is never sampled with stale weights."""

    def __init__(self, model: UnifiedModel):
        cfg = model.config
        self.cfg, self.model = cfg, model
        self.blocks = []
        for layer in [*model.vision_pre, *model.layers, *model.vision_post]:
            a, mlp = layer.self_attn, layer.mlp
            self.blocks.append({
                "n1": layer.input_layernorm.weight.detach(), "n2": layer.post_attention_layernorm.weight.detach(),
                "qkv": _pack(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])),
                "qkv_bias": torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]).detach(),
                "o": _pack(a.o_proj.weight), "gate_up": _pack(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                "down": _pack(mlp.down_proj.weight), "scale": a.scaling,
            })
        self.n_pre, self.n_llm = len(model.vision_pre), len(model.layers)
        self.heads = {"image": _pack(model.mm_head.weight), "text": _pack(model.lm_head.weight)}
        self.eps = model.norm.variance_epsilon
        dh = cfg.hidden_size // cfg.num_heads
        cos, sin = model.rotary(torch.zeros(1, 1, dh), torch.arange(cfg.max_positions)[None])
        sign = torch.cat([-torch.ones(dh // 2), torch.ones(dh // 2)])
        # rotate_half(x) * sin == roll(x, dh/2) * (sign * sin): one roll instead of two slices, a negation, a cat
        self.cos, self.sin = cos[0], sin[0] * sign


@torch.no_grad()
def decode_step(w: DecodeWeights, token: torch.Tensor, position: torch.Tensor, bias: torch.Tensor,
                cache: KVCache, head: str, cell: torch.Tensor | None = None) -> torch.Tensor:
    """One new token per row (B,) at RoPE position (B,), all image tokens or all text tokens; bias (B, 1, 1, S):
    0 on the keys to attend, -inf on padding, S = cache.length + 1; cell (B, 2): an image token's (row, column), for
    a model with row/column embeddings. Writes its keys/values and returns the logits over `head`'s ids (B, K or V):
    what `UnifiedModel.forward` computes for that token, as plain tensor ops."""
    cfg, m = w.cfg, w.model
    B, D, H, Hkv = token.shape[0], cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads
    dh, I, V = D // H, cfg.intermediate_size, cfg.text_vocab_size
    image = bool(token[0] >= V)
    h = F.embedding(token - V, m.mm_embed.weight) if image else F.embedding(token, m.embed_tokens.weight)  # B D
    if image and cfg.image_grid_embed:
        h = h + m.grid_embed(torch.ones(B, dtype=torch.bool), cell)
    cos, sin = w.cos[position][:, None], w.sin[position][:, None]  # B 1 dh
    t, S = cache.length, cache.length + 1
    for i, blk in enumerate(w.blocks):
        vision = i < w.n_pre or i >= w.n_pre + w.n_llm
        x = F.rms_norm(h, (D,), blk["n1"], w.eps)
        qkv = _linear(x, blk["qkv"], blk["qkv_bias"])  # B (H + 2 Hkv) dh
        q, k, v = qkv.split([D, Hkv * dh, Hkv * dh], dim=-1)
        k = k.view(B, Hkv, dh)
        cache.k[i][:, :, t] = k * cos + k.roll(dh // 2, -1) * sin
        cache.v[i][:, :, t] = v.view(B, Hkv, dh)
        if vision and not image:  # a vision-only block leaves text positions alone (their keys/values still count)
            continue
        q = q.reshape(B, Hkv, H // Hkv, dh)  # query heads grouped by the key/value head they share
        q = q * cos[:, None] + q.roll(dh // 2, -1) * sin[:, None]
        scores = torch.matmul(q, cache.k[i][:, :, :S].transpose(-1, -2)) * blk["scale"] + bias  # B Hkv G S
        h = h + _linear(torch.matmul(scores.softmax(-1), cache.v[i][:, :, :S]).reshape(B, D), blk["o"])
        gate_up = _linear(F.rms_norm(h, (D,), blk["n2"], w.eps), blk["gate_up"])
        h = h + _linear(F.silu(gate_up[:, :I]) * gate_up[:, I:], blk["down"])
    cache.length += 1
    norm = m.mm_norm if image else m.norm
    return _linear(F.rms_norm(h, (D,), norm.weight, w.eps), w.heads[head])


class Engine:
    def __init__(self, model: UnifiedModel, tokenizer: TextTokenizer, fast: bool | None = None):
        """fast: decode through `decode_step` (default: whenever the model is float32 on the CPU, decided at each
        call, so a model moved or cast after the engine was built decodes through its modules)."""
        self.model = model.eval()
        self._fast = fast
        self.tok = tokenizer
        self.vocab = tokenizer.joint_vocab(model.config.codebook_size)
        if self.vocab.text_vocab_size != model.config.text_vocab_size:
            raise ValueError(f"tokenizer has {self.vocab.text_vocab_size} text tokens, model {model.config.text_vocab_size}")
        self.pad_id = tokenizer.token_id("<|endoftext|>")

    @property
    def fast(self) -> bool:
        if self._fast is not None:
            return self._fast
        param = next(self.model.parameters())
        return param.device.type == "cpu" and param.dtype == torch.float32

    def check_grid(self, rows: int, cols: int) -> None:
        """A clear error, before anything is sampled, for an image beyond a model's row/column embeddings (without
        it the first token past them fails mid-rollout)."""
        g = self.model.config.image_grid_embed
        if g and max(rows, cols) > g:
            raise ValueError(f"a {rows} x {cols} token image is beyond the model's {g} x {g} row/column embeddings")

    def check_context(self, prompt_len: int, new_tokens: int, at_most: bool = False) -> int:
        """How many tokens to sample after a prompt: `new_tokens`, or a clear error before anything is sampled when
        they would not fit the model's context; with `at_most` (text, which may stop early), as many as fit."""
        if new_tokens < 1:
            raise ValueError(f"at least one token must be sampled, got {new_tokens}")
        room = self.model.config.max_positions - prompt_len
        if new_tokens > room and not (at_most and room >= 1):
            raise ValueError(f"a prompt of {prompt_len} tokens and {new_tokens} to sample exceed the model's context "
                             f"of {self.model.config.max_positions} tokens")
        return min(new_tokens, room)

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, cache: KVCache, head: str) -> torch.Tensor:
        """Run the prompt (B, L) into an empty cache; the last position's logits over `head`'s ids (B, K or V)."""
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.model(ids, positions=positions, pad_mask=mask, cache=cache, last_only=True, head=head,
                          grid=self.grid(ids))[:, -1]

    def grid(self, ids: torch.Tensor) -> torch.Tensor | None:
        """(B, L, 2) each image token's (row, column) for a model with row/column embeddings, else None."""
        if not self.model.config.image_grid_embed:
            return None
        return image_grids(self.tok, ids).to(ids.device)

    @torch.no_grad()
    def decode_one_token(self, token: torch.Tensor, position: torch.Tensor, mask: torch.Tensor,
                         cache: KVCache, head: str, weights: DecodeWeights | None = None,
                         cell: torch.Tensor | None = None) -> torch.Tensor:
        """One new token per row (B,) at RoPE position (B,); mask (B, S) covers the cache plus it; cell (B, 2): an
        image token's (row, column) (read by a model with row/column embeddings). With `weights` (the CPU path)
        through `decode_step`, else through the model's forward."""
        if weights is not None:
            bias = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))[:, None, None]
            return decode_step(weights, token, position, bias, cache, head, cell)
        grid = cell[:, None] if cell is not None and self.model.config.image_grid_embed else None
        return self.model(token[:, None], positions=position[:, None], pad_mask=mask, cache=cache, head=head,
                          grid=grid)[:, -1]

    @torch.no_grad()
    def generate_image(self, prompts: list[list[int]], rows: int, cols: int, sampling: Sampling = Sampling(),
                       generator: torch.Generator | None = None) -> Rollout:
        """Prompt ids (each without the image prefix) -> rows*cols image tokens per prompt, then <EOM> (not sampled).
        Returns the image tokens (B, rows*cols) in the joint vocabulary, their log-probabilities, and at each step the
        probability of the most likely code under the (guided) logits at temperature 1, before any filtering (`top`:
        a flat head there is where a rollout derails, `derailed`)."""
        self.check_grid(rows, cols)
        prefix = self.tok.image_prefix(rows, cols)
        cond = [p + prefix for p in prompts]
        guided = sampling.cfg != 1.0
        seqs = cond + [prefix] * len(prompts) if guided else cond
        param = next(self.model.parameters())
        ids, mask = (t.to(param.device) for t in left_pad(seqs, self.pad_id))
        B, n = len(prompts), rows * cols
        self.check_context(ids.shape[1], n)
        cache = KVCache.allocate(self.model.config, ids.shape[0], ids.shape[1] + n, dtype=param.dtype,
                                 device=param.device)
        V = self.vocab.text_vocab_size
        weights = DecodeWeights(self.model) if self.fast else None
        logits = self.prefill(ids, mask, cache, head="image")  # image mode: only the codes can be drawn
        position = mask.long().sum(-1)  # the next token's RoPE position, per row
        tokens, logps, tops = [], [], []
        for _ in range(n):
            if guided:
                logits = guided_logits(logits[:B], logits[B:], sampling.cfg)
            tops.append(logits.float().softmax(-1).amax(-1))
            code, logp = sample(logits, sampling, generator)
            tok = code + V
            tokens.append(tok), logps.append(logp)
            step = torch.cat([tok, tok]) if guided else tok
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
            if len(tokens) < n:
                cell = divmod(len(tokens) - 1, cols)  # the cell just drawn
                cell = torch.tensor(cell, device=step.device).expand(step.shape[0], 2)
                logits = self.decode_one_token(step, position, mask, cache, head="image", weights=weights, cell=cell)
                position = position + 1
        return Rollout(torch.stack(tokens, 1), torch.stack(logps, 1), ids[:B], mask[:B, : ids.shape[1]],
                       torch.stack(tops, 1))

    @torch.no_grad()
    def generate_text(self, prompts: list[list[int]], max_new_tokens: int, sampling: Sampling = Sampling(),
                      generator: torch.Generator | None = None, stop: int | None = None) -> Rollout:
        """Text mode: only text tokens are allowed; a row stops after `stop` (default <|im_end|>), then pads. At most
        `max_new_tokens`, and no more than the context has room for after the prompt."""
        if sampling.cfg != 1.0:
            raise ValueError(f"CFG (cfg {sampling.cfg}) guides image tokens only; text is sampled without it")
        stop = self.tok.token_id("<|im_end|>") if stop is None else stop
        param = next(self.model.parameters())
        ids, mask = (t.to(param.device) for t in left_pad(prompts, self.pad_id))
        B = len(prompts)
        max_new_tokens = self.check_context(ids.shape[1], max_new_tokens, at_most=True)  # an answer may stop early
        cache = KVCache.allocate(self.model.config, B, ids.shape[1] + max_new_tokens, dtype=param.dtype,
                                 device=param.device)
        weights = DecodeWeights(self.model) if self.fast else None
        logits = self.prefill(ids, mask, cache, head="text")  # text mode: only text ids can be drawn
        position = mask.long().sum(-1)
        done = torch.zeros(B, dtype=torch.bool, device=ids.device)
        tokens, logps = [], []
        for i in range(max_new_tokens):
            tok, logp = sample(logits, sampling, generator)
            tok = torch.where(done, torch.full_like(tok, stop), tok)
            tokens.append(tok), logps.append(torch.where(done, torch.zeros_like(logp), logp))
            done |= tok == stop
            if done.all() or i == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
            logits = self.decode_one_token(tok, position, mask, cache, head="text", weights=weights)
            position = position + 1
        return Rollout(torch.stack(tokens, 1), torch.stack(logps, 1), ids, mask[:, : ids.shape[1]])
