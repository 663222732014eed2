"""The sampling engine: token ids in, token ids out (gpt-fast's shape: prefill, decode_one_token, generate).

- The KV cache is an explicit object (`xomni.model.unified.KVCache`) allocated here for the whole rollout; the model
  never keeps generation state.
- Batched prompts are left-padded; RoPE positions come from the padding mask, so a padded row computes exactly what
  it would alone.
- Sampling: temperature, top-k, top-p, min-p (X-Omni samples images with temperature 1.0 and min-p 0.03, no CFG);
  a seeded `torch.Generator` makes a rollout reproducible; every sampled token's log-probability under the
  distribution it was drawn from is returned (GRPO needs it).
- Image mode: after the `<SOM>{rows} {cols}<IMAGE>` prefix only image tokens are allowed (the model computes only its
  image head), exactly rows*cols of them, then `<EOM>` is appended. Text mode computes only the text head.
- Optional classifier-free guidance: the unconditional branch is the image prefix alone, and the two are combined
  in `guided_logits`, the one place CFG lives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xomni.model.unified import KVCache, UnifiedModel
from xomni.tokenizer.text import TextTokenizer


@dataclass
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    min_p: float = 0.03  # X-Omni's default; 0: off
    cfg: float = 1.0  # classifier-free guidance scale; 1: off

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or not 0 <= self.min_p < 1 or self.top_k < 0:
            raise ValueError(f"bad sampling settings {self}")


def filter_logits(logits: torch.Tensor, s: Sampling) -> torch.Tensor:
    """(B, V) logits -> (B, V) log-probabilities of the distribution to sample from (temperature, then top-k,
    top-p and min-p; removed tokens at -inf). Temperature 0 keeps only the arg-max."""
    if s.temperature == 0:
        out = torch.full_like(logits, float("-inf"))
        return out.scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
    logits = logits / s.temperature
    if s.top_k:
        kth = logits.topk(min(s.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if s.min_p > 0:
        logits = logits.masked_fill(probs < s.min_p * probs.max(-1, keepdim=True).values, float("-inf"))
    if s.top_p < 1:
        sorted_p, order = logits.softmax(-1).sort(-1, descending=True)
        drop_sorted = sorted_p.cumsum(-1) - sorted_p > s.top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits.log_softmax(-1)


def sample(logits: torch.Tensor, s: Sampling, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V) logits -> sampled ids (B,) and their log-probabilities (B,) under the filtered distribution."""
    logp = filter_logits(logits.float(), s)
    ids = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
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


class Engine:
    def __init__(self, model: UnifiedModel, tokenizer: TextTokenizer):
        self.model = model.eval()
        self.tok = tokenizer
        self.vocab = tokenizer.joint_vocab(model.config.codebook_size)
        if self.vocab.text_vocab_size != model.config.text_vocab_size:
            raise ValueError(f"tokenizer has {self.vocab.text_vocab_size} text tokens, model {model.config.text_vocab_size}")
        self.pad_id = tokenizer.token_id("<|endoftext|>")

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, cache: KVCache, head: str) -> torch.Tensor:
        """Run the prompt (B, L) into an empty cache; the last position's logits over `head`'s ids (B, K or V)."""
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.model(ids, positions=positions, pad_mask=mask, cache=cache, last_only=True, head=head)[:, -1]

    @torch.no_grad()
    def decode_one_token(self, token: torch.Tensor, position: torch.Tensor, mask: torch.Tensor,
                         cache: KVCache, head: str) -> torch.Tensor:
        """One new token per row (B,) at RoPE position (B,); mask (B, S) covers the cache plus it."""
        return self.model(token[:, None], positions=position[:, None], pad_mask=mask, cache=cache, head=head)[:, -1]

    @torch.no_grad()
    def generate_image(self, prompts: list[list[int]], rows: int, cols: int, sampling: Sampling = Sampling(),
                       generator: torch.Generator | None = None) -> Rollout:
        """Prompt ids (each without the image prefix) -> rows*cols image tokens per prompt, then <EOM> (not sampled).
        Returns the image tokens (B, rows*cols) in the joint vocabulary and their log-probabilities."""
        prefix = self.tok.image_prefix(rows, cols)
        cond = [p + prefix for p in prompts]
        guided = sampling.cfg != 1.0
        seqs = cond + [prefix] * len(prompts) if guided else cond
        ids, mask = left_pad(seqs, self.pad_id)
        B, n = len(prompts), rows * cols
        cache = KVCache.allocate(self.model.config, ids.shape[0], ids.shape[1] + n,
                                 dtype=next(self.model.parameters()).dtype)
        V = self.vocab.text_vocab_size
        logits = self.prefill(ids, mask, cache, head="image")  # image mode: only the codes can be drawn
        position = mask.long().sum(-1)  # the next token's RoPE position, per row
        tokens, logps = [], []
        for _ in range(n):
            if guided:
                logits = guided_logits(logits[:B], logits[B:], sampling.cfg)
            code, logp = sample(logits, sampling, generator)
            tok = code + V
            tokens.append(tok), logps.append(logp)
            step = torch.cat([tok, tok]) if guided else tok
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
            if len(tokens) < n:
                logits = self.decode_one_token(step, position, mask, cache, head="image")
                position = position + 1
        return Rollout(torch.stack(tokens, 1), torch.stack(logps, 1), ids[:B], mask[:B, : ids.shape[1]])

    @torch.no_grad()
    def generate_text(self, prompts: list[list[int]], max_new_tokens: int, sampling: Sampling = Sampling(),
                      generator: torch.Generator | None = None, stop: int | None = None) -> Rollout:
        """Text mode: only text tokens are allowed; a row stops after `stop` (default <|im_end|>), then pads."""
        stop = self.tok.token_id("<|im_end|>") if stop is None else stop
        ids, mask = left_pad(prompts, self.pad_id)
        B = len(prompts)
        cache = KVCache.allocate(self.model.config, B, ids.shape[1] + max_new_tokens,
                                 dtype=next(self.model.parameters()).dtype)
        logits = self.prefill(ids, mask, cache, head="text")  # text mode: only text ids can be drawn
        position = mask.long().sum(-1)
        done = torch.zeros(B, dtype=torch.bool)
        tokens, logps = [], []
        for i in range(max_new_tokens):
            tok, logp = sample(logits, sampling, generator)
            tok = torch.where(done, torch.full_like(tok, stop), tok)
            tokens.append(tok), logps.append(torch.where(done, torch.zeros_like(logp), logp))
            done |= tok == stop
            if done.all() or i == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
            logits = self.decode_one_token(tok, position, mask, cache, head="text")
            position = position + 1
        return Rollout(torch.stack(tokens, 1), torch.stack(logps, 1), ids, mask[:, : ids.shape[1]])
