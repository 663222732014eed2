"""Stage: GRPO on the unified model with X-Omni's kind of reward system (paper Sec. 3.4).

    python -m xomni.cli train grpo --checkpoint checkpoints/tiny --out out/tiny/grpo

Each step, for P prompts from the world's training split:
1. G rollouts per prompt from the current policy with the engine (temperature 1, min-p 0.03, no CFG by default),
   decoded to images by the frozen tokenizer + decoder (`decoder_steps` sampling steps);
2. rewards (xomni/rewards): OCR accuracy of the asked-for text (two engines when `ocr` names two), prompt alignment
   by the scene judge, token consistency (the tokenizer's reading of the decoded image against the sampled codes),
   summed with the configured weights; a rollout whose reward failed is dropped with its whole group (counted);
3. advantages within each group, (r - mean) / (std + 1e-4); a group with equal rewards gets zero advantages
   (counted), so it contributes only the KL term;
4. `updates` optimiser steps on the clipped token-level objective over the image tokens (xomni/rl/grpo.py):

       L = mean_tokens[ -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * k3(pi, pi_ref) ]

   with rho = pi / pi_old. pi_old and pi_ref are recomputed by training forwards (the sampler's log-probs are not
   trusted), all three over the image head's full softmax at temperature 1: the objective's distribution, while the
   sampler draws from its min-p-filtered version of the same softmax (the usual approximation; with CFG the sampled
   distribution would differ further, so CFG rollouts are refused here).
Simplifications, stated: rewards are computed after sampling, not overlapped with it; the reference is the starting
checkpoint, frozen; no held-out evaluation inside the loop yet (run `xomni eval ... --source model` on a checkpoint).
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from xomni.checkpoint import load_train_state, save_component, save_train_state
from xomni.data.world import WorldConfig, make_scene, prompts
from xomni.engine import Sampling, left_pad
from xomni.eval.ocr import make_ocr_judge
from xomni.eval.scene_judge import SceneJudge
from xomni.pipeline import Pipeline, to_image
from xomni.rewards import Rollout, alignment, combine, ocr_accuracy, token_consistency
from xomni.rl.grpo import group_advantages, grpo_loss


@dataclass
class Config:
    checkpoint: str = "checkpoints/tiny"
    out: str = "out/tiny/grpo"
    steps: int = 100
    prompts_per_step: int = 4
    rollouts: int = 8  # G
    updates: int = 2  # optimiser steps per batch of rollouts (the ratio moves away from 1 after the first)
    lr: float = 1e-5
    beta: float = 0.01
    eps_low: float = 0.2
    eps_high: float = 0.28
    min_p: float = 0.03
    decoder_steps: int = 8
    text_share: float = 0.5  # share of prompts asking for text
    w_ocr: float = 1.0
    w_alignment: float = 1.0
    w_consistency: float = 0.5
    ocr: str = "rapidocr"  # comma-separated OCR engines averaged by the OCR reward
    save_every: int = 10
    seed: int = 0
    resume: bool = True


def rl_prompt_scenes(step: int, n: int, text_share: float, seed: int) -> list:
    """The step's prompt scenes from the training split (disjoint from every held-out suite): `text_share` of them
    ask for text (short and long alike, as drawn), the rest are general scenes without text."""
    rng = random.Random(f"grpo/{seed}/{step}")
    out = []
    while len(out) < n:
        scene = make_scene(WorldConfig(), "train", rng.randrange(10**7))
        if (scene.text is not None) == (len(out) < round(text_share * n)):
            out.append(scene)
    return out


def image_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, n: int, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (B, n) of the sampled codes and the entropy (B, n) of the image head, by one training forward over
    left-padded prompt + image tokens. ids (B, L+n), mask (B, L+n), codes (B, n) codebook indices."""
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(ids, positions=positions, pad_mask=mask, head="image")[:, -n - 1 : -1]  # B n K
    logp_all = logits.float().log_softmax(-1)
    logp = logp_all.gather(-1, codes[..., None])[..., 0]
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def main(cfg: Config) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    pipe = Pipeline.from_pretrained(cfg.checkpoint)
    policy = pipe.model
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    policy.train().requires_grad_(True)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
    state_path = out / "grpo_state.pt"
    state = load_train_state(state_path) if cfg.resume else None
    step = 0
    if state is not None:
        policy.load_state_dict(state["policy"]), opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed from {state_path} at step {step}")
    ocr_judges = [make_ocr_judge(e) for e in cfg.ocr.split(",") if e]
    scene_judge = SceneJudge()
    weights = {"ocr": cfg.w_ocr, "alignment": cfg.w_alignment, "consistency": cfg.w_consistency}
    sampling = Sampling(temperature=1.0, min_p=cfg.min_p)
    rows, cols = 8, 8
    N, G = rows * cols, cfg.rollouts

    def checkpoint(metrics: dict) -> None:
        meta = {"stage": "train_grpo", "step": step, "metrics": metrics, "config": asdict(cfg)}
        save_component(out / "ar", policy.config, policy, meta)
        save_train_state(state_path, {"policy": policy.state_dict(), "opt": opt.state_dict(), "step": step})

    log = open(out / "grpo_log.jsonl", "a")
    metrics: dict = {}
    bar = tqdm(total=cfg.steps, initial=step, desc="grpo", dynamic_ncols=True)
    while step < cfg.steps:
        t0 = time.time()
        scenes = rl_prompt_scenes(step, cfg.prompts_per_step, cfg.text_share, cfg.seed)
        prompt_ids = [pipe.fmt.generation_prompt(prompts(s)["short"]) for s in scenes for _ in range(G)]
        policy.eval()
        rollout = pipe.engine.generate_image(prompt_ids, rows, cols, sampling,
                                             torch.Generator().manual_seed(cfg.seed * 100_003 + step))
        codes = pipe.fmt.vocab.image_code(rollout.tokens)  # B N
        t_sample = time.time() - t0

        t1 = time.time()
        gen = torch.Generator().manual_seed(step)
        pixels = pipe.image.decode(codes.reshape(-1, rows, cols), steps=cfg.decoder_steps, generator=gen)
        reread = pipe.image.encode(pixels).flatten(1)  # the tokenizer's reading of what was drawn
        images = [to_image(x) for x in pixels]
        t_decode = time.time() - t1

        t2 = time.time()
        batch = [Rollout(scenes[i // G], images[i], codes[i].tolist(), reread[i].tolist()) for i in range(len(images))]
        parts = {"ocr": ocr_accuracy(batch, ocr_judges), "alignment": alignment(batch, scene_judge),
                 "consistency": token_consistency(batch)}
        rewards, reward_stats = combine(parts, weights)
        r = torch.tensor(rewards).reshape(-1, G)
        valid = torch.isfinite(r).all(1)  # a group with a failed reward is dropped whole
        t_judge = time.time() - t2

        t3 = time.time()
        stats: dict = {}
        if valid.any():
            adv, flat = group_advantages(r[valid])
            keep = valid.repeat_interleave(G)
            prefix = pipe.tok.image_prefix(rows, cols)
            seqs = [p + prefix + t for p, t, k in zip(prompt_ids, rollout.tokens.tolist(), keep.tolist()) if k]
            ids, mask = left_pad(seqs, pipe.engine.pad_id)
            kept_codes = codes[keep]
            with torch.no_grad():
                old_logp, _ = image_logprobs(policy, ids, mask, N, kept_codes)
                ref_logp, _ = image_logprobs(reference, ids, mask, N, kept_codes)
            policy.train()
            token_mask = torch.ones_like(old_logp)
            for _ in range(cfg.updates):
                logp, entropy = image_logprobs(policy, ids, mask, N, kept_codes)
                loss, stats = grpo_loss(logp, old_logp, ref_logp, adv.flatten(), token_mask, cfg.eps_low,
                                        cfg.eps_high, cfg.beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                opt.step()
            stats.update(loss=loss.item(), entropy=float(entropy.detach().mean()), zero_variance_groups=int(flat.sum()))
        t_update = time.time() - t3
        step += 1

        finite = [x for x in rewards if math.isfinite(x)]
        record = {"step": step, "reward": sum(finite) / max(1, len(finite)),
                  "reward_best_of_g": float(r[valid].max(1).values.mean()) if valid.any() else float("nan"),
                  **{f"reward_{k}": (sum(v) / len(v) if (v := [x for x in vals if x is not None and math.isfinite(x)])
                                     else None) for k, vals in parts.items()},
                  "dropped_groups": int((~valid).sum()), **reward_stats, **stats,
                  "seconds": {"sample": round(t_sample, 2), "decode": round(t_decode, 2), "judge": round(t_judge, 2),
                              "update": round(t_update, 2)}}
        log.write(json.dumps(record) + "\n")
        log.flush()
        metrics = {k: v for k, v in record.items() if k.startswith("reward")}
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward']:.3f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            checkpoint(metrics)
    bar.close()
    log.close()
    return metrics
