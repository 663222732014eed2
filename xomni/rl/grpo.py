"""GRPO maths as pure functions (paper Sec. 3.4; Shao et al. 2024), shapes: P prompts, G rollouts, T tokens.

    A_i        = (r_i - mean(r_group)) / (std(r_group) + eps)          sample std, as trl
    ratio_it   = exp(logp_it - old_logp_it)
    L_it       = -min(ratio_it * A_i, clip(ratio_it, 1 - eps_low, 1 + eps_high) * A_i) + beta * k3_it
    k3_it      = exp(ref_logp_it - logp_it) - (ref_logp_it - logp_it) - 1                (KL to the reference)
    loss       = sum_it(L_it * mask_it) / sum_it(mask_it)                  token-level over the image tokens

With `kl_per_token` given (`forward_kl`: KL(reference || policy) over the whole softmax at each position) it takes
the k3 term's place. Its gradient is the k3 term's expected gradient, computed exactly: at a sampled x,
grad k3 = (1 - pi_ref(x) / pi(x)) grad log pi(x), whose mean over x ~ pi is -sum_x pi_ref(x) grad log pi(x), the
gradient of KL(reference || policy). One sample per position estimates it badly where the policy has gone flat and
the reference is sure: the sampled token is one the reference rejects, and k3's gradient can only push it down
(docs/unified.md, "Rollouts that derail").

Every rollout of an image has the same rows*cols tokens, so token-level aggregation equals trl's per-sequence
("grpo") and per-batch ("bnpo") loss types here; `tests/test_grpo.py` checks the equality with trl's formula.
A group whose rewards are all equal has no signal: its advantages are zero (it then contributes only the KL term),
and `group_advantages` says which groups those were so the stage can log them.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards (P, G) -> advantages (P, G) and a (P,) bool mask of zero-variance groups (advantages 0 there)."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, rollouts >= 2), got {tuple(rewards.shape)}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite; drop failed rollouts before computing advantages")
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(1, keepdim=True)  # sample std (unbiased), as trl
    flat = (rewards == rewards[:, :1]).all(1)
    adv = (rewards - mean) / (std + eps)
    return adv.masked_fill(flat[:, None], 0.0), flat


def check_neg_scale(scale: float) -> None:
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"the weight of negative advantages must be in [0, 1], got {scale}")


def weight_negative(advantages: torch.Tensor, scale: float) -> torch.Tensor:
    """Advantages with the negative ones multiplied by `scale` in [0, 1] (1: GRPO as written; 0: learn only from the
    rollouts that beat their group). A departure from the paper, off by default: `xomni train grpo --neg-scale`."""
    check_neg_scale(scale)
    return torch.where(advantages < 0, advantages * scale, advantages)


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference), always >= 0."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def forward_kl(logp_all: torch.Tensor, ref_logp_all: torch.Tensor) -> torch.Tensor:
    """Per-position KL(reference || policy) = sum_x pi_ref(x) (log pi_ref(x) - log pi(x)) over the last dimension (the
    whole vocabulary): (B, T, V) log-softmaxes -> (B, T), >= 0."""
    return (ref_logp_all.exp() * (ref_logp_all - logp_all)).sum(-1)


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor,
              mask: torch.Tensor, eps_low: float = 0.2, eps_high: float = 0.2, beta: float = 0.01,
              kl_per_token: torch.Tensor | None = None,
              pg_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """logp/old_logp/ref_logp/mask (B, T), advantages (B,) -> scalar loss and stats (kl: the k3 estimate; kl_full:
    the mean of `kl_per_token` when given, which then replaces k3 in the loss; clip fraction; ratio).
    pg_mask (B, T): where given, the tokens whose policy-gradient term counts (the KL term counts on all of `mask`,
    and the mean is still over `mask`'s tokens)."""
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    unclipped, clipped = ratio * a, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * a
    per_token = -torch.min(unclipped, clipped)
    if pg_mask is not None:
        per_token = per_token * pg_mask.to(logp.dtype)
    kl = k3(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    if beta:
        per_token = per_token + beta * (kl if kl_per_token is None else kl_per_token)
    n = mask.sum().clamp(min=1)
    loss = (per_token * mask).sum() / n
    with torch.no_grad():
        was_clipped = ((ratio < 1 - eps_low) & (a < 0)) | ((ratio > 1 + eps_high) & (a > 0))
        stats = {"kl": float((kl * mask).sum() / n), "clip_fraction": float((was_clipped.to(mask.dtype) * mask).sum() / n),
                 "ratio": float((ratio * mask).sum() / n)}
        if kl_per_token is not None:
            stats["kl_full"] = float((kl_per_token * mask).sum() / n)
    return loss, stats
