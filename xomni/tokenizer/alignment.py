"""The alignment LM: a small Qwen2 that reads SigLIP-VQ embeddings and answers about the image (paper Sec. 3.1).

X-Omni trains its tokenizer by connecting it to an LLM on understanding tasks, so the tokens carry what language
needs (objects, colours, counts, text) rather than pixels. The image enters as a prefix of projected semantic
embeddings, one per token, followed by the question; only answer tokens are supervised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from transformers import Qwen2Config, Qwen2ForCausalLM


@dataclass
class AlignmentConfig:
    vocab_size: int = 2048
    semantic_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    max_positions: int = 512

    def qwen2_config(self) -> Qwen2Config:
        return Qwen2Config(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads, max_position_embeddings=self.max_positions,
            tie_word_embeddings=True, attn_implementation="sdpa",
        )


class AlignmentLM(nn.Module):
    def __init__(self, config: AlignmentConfig):
        super().__init__()
        self.config = config
        self.image_proj = nn.Linear(config.semantic_dim, config.hidden_size)
        self.lm = Qwen2ForCausalLM(config.qwen2_config())

    def _inputs(self, semantic: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        image = self.image_proj(semantic.flatten(1, 2))  # B T D
        return torch.cat([image, self.lm.get_input_embeddings()(ids)], dim=1)  # B (T+L) D

    def forward(self, semantic: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """semantic (B, h, w, Ds); ids/labels/mask (B, L) with labels -100 off the answer. Returns the mean loss."""
        B, T = semantic.shape[0], semantic.shape[1] * semantic.shape[2]
        embeds = self._inputs(semantic, ids)
        full_mask = torch.cat([mask.new_ones(B, T), mask], dim=1)
        full_labels = torch.cat([labels.new_full((B, T), -100), labels], dim=1)
        return self.lm(inputs_embeds=embeds, attention_mask=full_mask, labels=full_labels).loss

    @torch.no_grad()
    def answer(self, semantic: torch.Tensor, prompt_ids: list[list[int]], eos_id: int, max_new_tokens: int = 24) -> list[list[int]]:
        """Greedy answers, batched. Each sequence (image prefix + prompt) is left-padded to a common length.

        No KV cache: answers are a few tokens over sequences of ~100, so a full forward per step is cheap here.
        """
        B, T = semantic.shape[0], semantic.shape[1] * semantic.shape[2]
        image = self.image_proj(semantic.flatten(1, 2))  # B T D
        embed = self.lm.get_input_embeddings()
        L = max(len(p) for p in prompt_ids)
        seqs, masks = [], []
        for b, p in enumerate(prompt_ids):
            pad = L - len(p)
            ids = torch.tensor(p, dtype=torch.long, device=semantic.device)
            seqs.append(torch.cat([image.new_zeros(pad, image.shape[-1]), image[b], embed(ids)]))
            masks.append(torch.cat([torch.zeros(pad), torch.ones(T + len(p))]))
        x = torch.stack(seqs)  # B (T+L) D
        mask = torch.stack(masks).long().to(semantic.device)  # B (T+L)
        out = torch.full((B, max_new_tokens), eos_id, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        for step in range(max_new_tokens):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.lm(inputs_embeds=x, attention_mask=mask, position_ids=positions).logits[:, -1]  # B V
            nxt = logits.argmax(-1).cpu()
            nxt[done] = eos_id
            out[:, step] = nxt
            done |= nxt == eos_id
            if done.all():
                break
            x = torch.cat([x, embed(nxt.to(x.device))[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
        return [row[: row.index(eos_id)] if eos_id in row else row for row in out.tolist()]
