"""Stage: GRPO on the unified model with X-Omni's kind of reward system (paper Sec. 3.4).

    python -m xomni.cli train grpo --preset tiny --checkpoint checkpoints/tiny --out out/tiny/grpo

`--preset` sets the run's size for every one of its fields not given (`PRESETS`): `tiny`, what this CPU runs (100
steps of 16 prompts x 8 rollouts, lr 5e-5, min-p 0.03, 128 x 128 px images: session 18's run, docs/unified.md), or
`paper`, X-Omni's (200 steps of 512 prompts x 16 rollouts, lr 1e-6, min-p 0.03; its images 1024 x 1024 px, our
choice: the paper's RL resolution is not one we have read); beta is 0.01 in both. `--size WIDTHxHEIGHT` sets the
rollouts' size (a whole grid of 16 px tokens within the checkpoint's preset's limits).

Each step, for P prompts from the world's training split (`rl_prompts`: `text_share` ask for text, half of those
short and half long, in English or Chinese as the world draws them, or split by `text_mix` between English and
Chinese, short and long; the rest general scenes, their compositional tasks as the world draws them or split by
`scene_mix`; each prompt at a random level of detail that names what the rewards
ask for):
1. G rollouts per prompt from the current policy with the engine (temperature 1, min-p `min_p`, no CFG),
   decoded to images by the frozen tokenizer + decoder (`decoder_steps` sampling steps). The step's prompts are
   sampled in `chunks`; each decoded chunk goes to the reward pool at once, so the judges work while the next chunk
   samples (xomni/rewards/pool.py, `reward_workers` processes);
2. rewards (xomni/rewards): OCR accuracy of the asked-for text (two engines when `ocr` names two; `ocr_rule`
   longtext, LongText-Bench's share of the asked units read, or strict, which also charges the units read beyond
   those asked: trained under longtext, one run's held-out signs read 2.1 characters per character a short Chinese
   prompt asked for, docs/unified.md "Session 30"; strict stopped that, left the Chinese score where it was and cost
   GenEval on one seed, "Session 31"), prompt alignment by the scene judge (`reward_judge`: plates are no objects; a
   prompt with text asks whether its sign is there; only what the prompt says is asked, `prompt_aspects`),
   token consistency (the tokenizer's reading of the decoded image against the sampled codes;
   weight 0 by default: rewarded at 0.5, the tiny policy filled its canvases with one plate colour, which re-reads
   exactly), summed with the configured weights; a rollout whose reward failed is dropped with its whole group
   (counted);
3. advantages within each group, (r - mean) / (std + 1e-4); a group with equal rewards gets zero advantages
   (counted), so it contributes only the KL term;
4. `updates` optimiser steps on the clipped token-level objective over the image tokens (xomni/rl/grpo.py):

       L = mean_tokens[ -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * k3(pi, pi_ref) ]

   with rho = pi / pi_old (`kl` full: KL(pi_ref || pi) over the image head's whole softmax in k3's place, the
   expected gradient of the k3 term without its one-sample noise, xomni/rl/grpo.py). pi_old and pi_ref are recomputed
   by training forwards (the sampler's log-probs are not trusted): pi_old is the first update's own forward, detached
   (the policy has not moved since it sampled, so the first update's ratio is exactly 1), taken with pi_ref's while
   the judges score the last chunk; all three over the image head's full softmax at temperature 1. Both presets
   sample with X-Omni's min-p 0.03, so the objective's distribution is the unfiltered version of the sampled one (the
   usual approximation); `--min-p 0` samples exactly the distribution the objective trains. That was the tiny default
   while the tiny model's image head was diffuse: min-p 0.03 cut the first code of nearly every object of run 8's
   model, so rollouts were bare backgrounds and a group's rewards hardly differed (docs/unified.md, "Sampling:
   min-p"); the text-capable model samples its objects at 0.03. With CFG the sampled distribution would differ
   further, so the stage samples without CFG (it has no CFG setting). `derail_mask`: at the flat positions of a
   rollout that derailed (`xomni.engine.derailed`, read off the sampler's logits) the policy-gradient term is left
   out and only the KL term acts: the code sampled there says nothing of the prompt, yet the derailed rollout's
   advantage is large and negative, and the gradient of log pi(x) with respect to the logits, e_x - pi, has norm ~1 at a near-uniform
   softmax against ~0.14 at a code of probability 0.9. One run with it derailed more on held-out prompts, not less
   (docs/unified.md, "Session 25"): off by default. `neg_scale` (default 1, GRPO as written) multiplies the negative
   advantages: a rollout worse than its group pushes down every code it sampled, and where the policy is unsure (a
   derail starts at a code of median probability 0.39, docs/unified.md, "Session 26") that push spreads the mass over
   the other codes; below 1 the rollouts that beat their group weigh more than those that lose. As A' = (1 + s) / 2 A
   + (1 - s) / 2 |A| for weight s, that is (1 + s) / 2 of GRPO's gradient plus a term that raises the log-probability
   of every sampled rollout in proportion to |A|: it lowers the policy's entropy. The tiny recipe
   (`runs/cpu_tiny_rl.sh`) runs 0.5: its seed-0 run derailed no held-out image (at 1: a fifth of the Chinese ones)
   and its probe crossed the SFT best of 8 at step 70. `keep_understanding` C (default 0, the paper's objective) adds
   C * mean over answer tokens of KL(pi_ref || pi) of the text head, on `keep_conversations` understanding
   conversations a step about fresh training scenes (`understanding_batch`, laid out as SFT lays them out): it
   distils the reference's answers, to hold understanding while RL moves the shared layers; it cannot teach. Tried at
   1 and 10 on one seed (docs/unified.md, "Session 27"): neither held the text head on conversations the run never
   saw (it drifted about three times as far as without the term), and at 10 GenEval fell below SFT's.
Simplifications, stated: the reference is the starting checkpoint, frozen; the old policy is the policy at the start
of the step (on-policy: one batch of rollouts per step).

`bf16` (auto: where the hardware computes bfloat16 natively, an AVX512-BF16/AMX CPU or a bf16 GPU) autocasts the
decoder and tokenizer (decoding, re-reading) and the training forwards of the update (policy, old policy and
reference alike, so the ratio and the KL compare like with like; the log-softmax over the image head stays in
float32). The rollouts are sampled in float32 (the engine's CPU decode path runs the model's float32 weights).
bench/grpo_throughput.py measures what it saves (docs/unified.md, "Session 24").

The run folder is itself a checkpoint folder (text tokenizer, tokenizer and decoder linked from `--checkpoint`, the
policy in `ar/`), so `xomni generate --checkpoint OUT` and `xomni eval ... --checkpoint OUT` use the RL model; every
`eval_every` steps the held-out suites in `eval_suites` run on it (`eval_n` items each, no CFG, each item at its
suite's own size whatever `--size` is) into OUT/eval/step_NNNN/, and their scores go into the log. At step 0 and
every `probe_every` steps, `probe` scores a fixed set of prompts (G rollouts each, fixed seeds): the log's
`probe_reward` against the starting model's `probe_best_of_g` is the paper's Figure 2b, and
`grpo_samples_STEP.png` shows those rollouts over the run. The log counts the rollouts whose image head went flat
mid-image (`derailed`, `probe_derailed`; docs/unified.md, "Rollouts that derail"), read off the sampler's logits at
no extra cost.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from xomni.checkpoint import load_train_state, open_run_log, save_component, save_train_state
from xomni.data.batches import pixels_of, understanding_pairs
from xomni.data.sequences import IGNORE
from xomni.data.world import SCENE_TASKS, Scene, WorldConfig, make_scene, prompts, render, scene_task
from xomni.devices import resolve_device
from xomni.engine import FLAT, Sampling, derailed, left_pad
from xomni.errors import check_at_least, parse_shares
from xomni.pipeline import Pipeline, check_generation_size, parse_size, to_image
from xomni.precision import autocast, check_bf16, resolve_bf16
from xomni.rewards import OCR_RULES, Rollout, combine
from xomni.rewards.pool import RewardPool
from xomni.rl.grpo import check_neg_scale, forward_kl, group_advantages, grpo_loss, weight_negative


@dataclass
class Config:
    checkpoint: str = "checkpoints/tiny"
    out: str = "out/tiny/grpo"
    preset: str = "tiny"  # sets every field below left unset (None): tiny (this CPU) or paper (X-Omni's)
    steps: int | None = None
    prompts_per_step: int | None = None
    rollouts: int | None = None  # G
    updates: int = 2  # optimiser steps per batch of rollouts (the ratio moves away from 1 after the first)
    lr: float | None = None
    beta: float = 0.01
    kl: str = "k3"  # k3 (the sampled token's estimate) or full (KL(ref || policy) over the whole softmax)
    eps_low: float = 0.2
    eps_high: float = 0.28
    derail_mask: bool = False  # no policy-gradient term at a derailed rollout's flat positions (the KL term stays)
    neg_scale: float = 1.0  # weight of the negative advantages (1: GRPO as written)
    keep_understanding: float = 0.0  # weight of the text head's KL to the reference on conversations (0: off)
    keep_conversations: int = 16  # understanding conversations a step for that term
    min_p: float | None = None  # of the rollouts (X-Omni: 0.03); 0: exactly the distribution the objective trains
    size: str | None = None  # the rollouts' images, WIDTHxHEIGHT px (tiny: 128x128; paper: 1024x1024)
    decoder_steps: int = 8
    device: str = "auto"  # auto (a GPU when one is visible, else the CPU), cpu or cuda (xomni/devices.py)
    bf16: str = "auto"  # autocast decoding and the update's forwards to bfloat16: true, false, or auto (native bf16)
    text_share: float = 0.5  # share of prompts asking for text
    text_mix: str = ""  # e.g. "en-short=1,en-long=1,zh-short=1,zh-long=2": the text prompts' split ("": the world's)
    scene_mix: str = ""  # e.g. "single=1,count=1,two=2,relation=2": the other prompts' tasks ("": the world's)
    w_ocr: float = 1.0
    w_alignment: float = 1.0
    w_consistency: float = 0.0  # off: at 0.5 the policy learned uniform fills the tokenizer re-reads exactly
    ocr: str = "rapidocr"  # comma-separated OCR engines averaged by the OCR reward
    ocr_rule: str = "longtext"  # the OCR reward's rule: longtext (LongText-Bench's recall) or strict (extras charged)
    hps: str = ""  # local HPSv2 folder (transformers CLIPModel layout): the human-preference reward
    vlm: str = ""  # local Qwen2.5-VL folder: alignment answered by the VLM (the paper's alignment judge)
    unified_reward: str = ""  # local Qwen2.5-VL-based reward model (e.g. UnifiedReward): an overall 1-5 rating
    w_hps: float = 1.0
    w_vlm: float = 1.0
    w_unified: float = 1.0
    chunks: int = 2  # sampling batches per step; the judges score one while the next samples
    reward_workers: int = 1  # judge processes (0: judge in this process, no overlap)
    reward_timeout: float = 600.0  # seconds to wait for each chunk's rewards; past it they fail and the judges restart
    stop_after_failed_steps: int = 3  # stop after this many steps in a row in which every group's reward failed
    probe_prompts: int = 16  # fixed prompts scored every probe_every steps and at step 0 (0: no probe)
    probe_every: int = 10  # steps between probes of the policy
    eval_every: int = 0  # held-out suites every this many steps (0: never)
    eval_suites: str = "synth-text-en,synth-text-zh,synth-geneval"
    eval_n: int = 48
    save_every: int = 10
    seed: int = 0
    resume: bool = True


PRESETS = {  # the run's size; a field given explicitly wins
    "tiny": {"steps": 100, "prompts_per_step": 16, "rollouts": 8, "lr": 5e-5, "min_p": 0.03, "size": "128x128"},
    "paper": {"steps": 200, "prompts_per_step": 512, "rollouts": 16, "lr": 1e-6, "min_p": 0.03, "size": "1024x1024"},
}


def resolve(cfg: Config) -> Config:
    """`cfg` with every field left unset (None) taken from its preset."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown GRPO preset {cfg.preset!r}; choose from {sorted(PRESETS)}")
    if cfg.kl not in ("k3", "full"):
        raise ValueError(f"unknown KL term {cfg.kl!r}; choose k3 or full")
    if cfg.ocr_rule not in OCR_RULES:
        raise ValueError(f"unknown OCR rule {cfg.ocr_rule!r}; choose from {OCR_RULES}")
    check_bf16(cfg.bf16)
    check_neg_scale(cfg.neg_scale)
    if cfg.keep_understanding < 0 or cfg.keep_conversations < 1:
        raise ValueError(f"keep_understanding must be >= 0 and keep_conversations >= 1, got "
                         f"{cfg.keep_understanding} and {cfg.keep_conversations}")
    cfg = replace(cfg, **{k: v for k, v in PRESETS[cfg.preset].items() if getattr(cfg, k) is None})
    check_at_least(cfg, 1, "steps", "prompts_per_step", "updates", "save_every", "chunks")
    check_at_least(cfg, 2, "rollouts")  # a group of one has no advantage
    check_at_least(cfg, 0, "stop_after_failed_steps")
    if cfg.reward_timeout <= 0:
        raise ValueError(f"--reward-timeout {cfg.reward_timeout}: must be positive (seconds)")
    if cfg.text_mix:
        parse_shares(cfg.text_mix, TEXT_KINDS, "text_mix")
        if round(cfg.text_share * cfg.prompts_per_step) == 0:
            raise ValueError(f"--text-mix {cfg.text_mix}: no prompt asks for text (--text-share {cfg.text_share})")
    if cfg.scene_mix:
        parse_shares(cfg.scene_mix, SCENE_TASKS, "scene_mix")
        if round(cfg.text_share * cfg.prompts_per_step) == cfg.prompts_per_step:
            raise ValueError(f"--scene-mix {cfg.scene_mix}: every prompt asks for text (--text-share "
                             f"{cfg.text_share})")
    Sampling(temperature=1.0, min_p=cfg.min_p)  # the rollouts' sampler, checked before anything is written
    width, height = parse_size(cfg.size)  # checked against the checkpoint's preset once that is read (`rollout_shape`)
    return replace(cfg, size=f"{width}x{height}")  # one spelling, so a resume compares sizes, not strings


@contextlib.contextmanager
def beside_judges(pool: RewardPool, pending: list):
    """torch's threads lowered by the pool's worker processes, for work done while they judge: if one of the
    `pending` chunks is still being judged as the block starts. torch's default team has a thread per core;
    beside a busy judge process one of them waits for a core, and the whole team with it: 128 rollouts sampled beside
    a judging worker took 11.5 s with 2 threads and about 2 s with 1 on this 2-core machine (bench/grpo_throughput.py,
    docs/unified.md "Session 24")."""
    n = torch.get_num_threads()
    if pool.judging(pending):
        torch.set_num_threads(max(1, n - pool.workers))
    try:
        yield
    finally:
        torch.set_num_threads(n)


TEXT_KINDS = ("en-short", "en-long", "zh-short", "zh-long")  # the text prompts' kinds a `text_mix` splits
MAX_DRAWS = 20_000  # scenes drawn for one prompt of a kind before `rl_prompts` gives up (relation: ~3% of draws)


def split_count(n: int, shares: dict[str, float], rng: random.Random) -> dict[str, int]:
    """`n` split by `shares` (summing to 1) into whole counts summing to n: each name its share's floor, and the rest
    handed out by systematic sampling over the remainders (one `rng` draw u; a name gets one more for each of the
    points u, u + 1, ... its stretch of the remainders' running sum holds), so each count is its share's floor or
    ceiling and its mean over steps is exactly n x share. (Until session 35 the rest went to the largest remainders,
    the same names every step: 1 : 1 : 2 : 2 over 8 prompts was 1 : 1 : 3 : 3 every step.)"""
    counts = {k: math.floor(v * n + 1e-9) for k, v in shares.items()}
    spare = n - sum(counts.values())
    if spare:
        u, edge = rng.random(), 0.0
        for k in shares:  # a fixed order: the names' order in the spec
            lo, edge = edge, edge + (shares[k] * n - counts[k])
            counts[k] += math.floor(edge - u + 1e-9) - math.floor(lo - u + 1e-9)  # points u + i in [lo, edge)
        counts[next(iter(shares))] += n - sum(counts.values())  # rounding of the running sum, if any
    return counts


def rl_prompts(step: int, n: int, text_share: float, seed: int, world: WorldConfig | None = None,
               text_mix: str = "", scene_mix: str = "") -> list[tuple]:
    """The step's (scene, prompt) pairs from the training split (disjoint from every held-out suite), scenes of
    `world`'s size (default 128 x 128; the rewards measure an image against its scene, so both are the rollouts'
    size): `text_share` of them ask for text, half of those short texts and half long ones, each in the language the
    world draws (as many Chinese as English, on average), or, with `text_mix` ("en-short=1,...", every one of
    `TEXT_KINDS`), split by its shares into exact counts (`split_count`); the rest are general scenes without text,
    whose compositional tasks (`scene_task`) come as the world draws them, or, with `scene_mix`
    ("single=1,count=1,two=2,relation=2", every one of `SCENE_TASKS`), split by its shares as the text prompts are.
    Each prompt is one of the scene's levels of detail (`prompts`), drawn at random; a scene with text never gets the
    `photo` level, which does not name the text (the rewards would ask for a text and plate the prompt never said,
    as SFT's `photo_text_free` keeps it off them)."""
    rng = random.Random(f"grpo/{seed}/{step}")
    n_text = round(text_share * n)
    if text_mix:  # ("text", language, length)
        counts = split_count(n_text, parse_shares(text_mix, TEXT_KINDS, "text_mix"), rng)
        want = [("text", *k.split("-")) for k in TEXT_KINDS for _ in range(counts[k])]
    else:  # the language left to the world (None)
        want = [("text", None, "short")] * (n_text - n_text // 2) + [("text", None, "long")] * (n_text // 2)
    if scene_mix:  # ("scene", task)
        counts = split_count(n - n_text, parse_shares(scene_mix, SCENE_TASKS, "scene_mix"), rng)
        want += [("scene", task) for task in SCENE_TASKS for _ in range(counts[task])]
    else:  # the task left to the world (None)
        want += [("scene", None)] * (n - n_text)
    world = world or WorldConfig()
    out = []
    for kind in want:
        for _ in range(MAX_DRAWS):
            scene = make_scene(world, "train", rng.randrange(10**7))
            if wanted(scene, kind):
                break
        else:
            raise ValueError(f"GRPO's prompts: no {kind} scene in {MAX_DRAWS} training scenes of "
                             f"{world.width}x{world.height} px (at that size the world may draw none)")
        levels = prompts(scene)
        if scene.text is not None:
            del levels["photo"]
        out.append((scene, levels[rng.choice(sorted(levels))]))
    return out


def run_prompts(cfg: Config, step: int, n: int) -> list[tuple]:
    """`rl_prompts` with the run's settings: step -1 is the probe's."""
    return rl_prompts(step, n, cfg.text_share, cfg.seed, rollout_world(cfg.size), cfg.text_mix, cfg.scene_mix)


def wanted(scene: Scene, kind: tuple) -> bool:
    """Whether `scene` is of `kind`: ("text", language or None for any, length) or ("scene", task or None for any),
    a scene without text."""
    if kind[0] == "scene":
        return scene.text is None and kind[1] in (None, scene_task(scene))
    _, lang, length = kind
    return scene.text is not None and scene.text.length == length and lang in (None, scene.text.lang)


def link_parts(checkpoint: Path, out: Path) -> None:
    """Make `out` a checkpoint folder: the frozen parts linked from `checkpoint` (the policy goes to out/ar). A link
    an earlier run left to another checkpoint's part (or a dangling one) is replaced; a real file or folder there
    is refused, since the policy would be decoded by parts other than those it was sampled with."""
    for part in ("text_tokenizer.json", "tokenizer", "decoder"):
        target, source = out / part, (checkpoint / part).resolve()
        if target.is_symlink():
            if target.resolve() == source:
                continue
            target.unlink()
        elif target.exists():
            raise FileExistsError(f"{target} is not a link to {source}, the part this run samples with: give another "
                                  "--out, or remove it")
        target.symlink_to(source)


def image_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, n: int, codes: torch.Tensor,
                   grid: torch.Tensor | None = None, full: bool = False) -> tuple[torch.Tensor, ...]:
    """Log-probs (B, n) of the sampled codes and the entropy (B, n) of the image head, by one training forward over
    left-padded prompt + image tokens; with `full`, the whole log-softmax (B, n, K) as well. ids (B, L+n), mask
    (B, L+n), codes (B, n) codebook indices; grid: the image tokens' cells (`Engine.grid(ids)`), for a model with
    row/column embeddings."""
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    # the image head only where it predicts a code (not over the prompt): the final states, then the head on those
    hidden = model(ids, positions=positions, pad_mask=mask, head="hidden", grid=grid)[:, -n - 1 : -1]  # B n D
    logits = model.mm_head(hidden)  # B n K
    logp_all = logits.float().log_softmax(-1)
    logp = logp_all.gather(-1, codes[..., None])[..., 0]
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return (logp, entropy, logp_all) if full else (logp, entropy)


def understanding_batch(pipe: Pipeline, step: int, n: int, seed: int, quote_text: bool,
                        turns: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`n` understanding conversations about training scenes, laid out as SFT lays them out (`understanding_pairs`:
    the caption with SFT's probability 0.1, then up to `turns` questions; a sign's text quoted with `quote_text`),
    the image read by the frozen tokenizer. Returns ids and mask (B, L, left-padded), answer (B, L) bool: the
    positions whose next token is an answer token, and the image grid (None unless the model has row/column
    embeddings). Fixed by (seed, step), so a resumed run sees the same conversations."""
    rng = random.Random(f"grpo-keep/{seed}/{step}")
    scenes = [make_scene(WorldConfig(), "train", rng.randrange(10**7)) for _ in range(n)]
    device = next(pipe.model.parameters()).device
    with torch.no_grad():
        codes = pipe.image.encode(pixels_of([render(s) for s in scenes]).to(device))  # B h w
    rows, cols = codes.shape[1:]
    samples = []
    for scene, c in zip(scenes, codes):
        pairs = understanding_pairs(scene, rng, turns, caption_prob=0.1, quote_text=quote_text)
        sample = pipe.fmt.conversation(c.flatten().tolist(), rows, cols, pairs)
        while len(sample.ids) > pipe.model.config.max_positions and len(pairs) > 1:  # fewer turns, as SFT does
            pairs = pairs[:-1]
            sample = pipe.fmt.conversation(c.flatten().tolist(), rows, cols, pairs)
        samples.append(sample)
    ids, mask = left_pad([x.ids for x in samples], pipe.engine.pad_id)
    labels, _ = left_pad([x.labels for x in samples], IGNORE)
    ids, mask, answer = ids.to(device), mask.to(device), (mask & (labels != IGNORE)).to(device)
    return ids, mask, answer, pipe.engine.grid(ids)


def answer_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, answer: torch.Tensor,
                    grid: torch.Tensor | None = None) -> torch.Tensor:
    """The text head's log-softmax (A, V) at the A answer positions of `answer`, by one training forward (the head
    applied only there)."""
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    hidden = model(ids, positions=positions, pad_mask=mask, head="hidden", grid=grid)
    return model.lm_head(hidden[answer]).float().log_softmax(-1)


def quotes_text_answers(checkpoint: Path) -> bool:
    """Whether the starting model was taught to quote a sign's text in its answers: its AR meta's config says so
    (`xomni train ar --quote-text-answers`), or, for a GRPO policy, the meta's `quote_text_answers`, which GRPO
    carries over from the checkpoint it started from."""
    path = checkpoint / "ar" / "meta.json"
    if not path.is_file():
        return False
    meta = json.loads(path.read_text())
    return bool(meta.get("quote_text_answers", meta.get("config", {}).get("quote_text_answers", False)))


def rollout_shape(size: str, preset: str = "tiny") -> tuple[int, int]:
    """(rows, cols) of the rollouts' token grid for `size` ("WIDTHxHEIGHT" px) under a checkpoint preset's limits."""
    try:
        return check_generation_size(*parse_size(size), preset)
    except ValueError as e:
        raise ValueError(f"GRPO's rollouts (--size {size}): {e}") from None


def rollout_world(size: str) -> WorldConfig:
    """The world the rollouts' prompts are drawn from: scenes the size of the rollouts' images."""
    width, height = parse_size(size)
    return WorldConfig(width=width, height=height)


def reward_weights(cfg: Config, components: tuple[str, ...]) -> dict[str, float]:
    """The configured weight of each reward component the pool computes."""
    weights = {"ocr": cfg.w_ocr, "alignment": cfg.w_alignment, "consistency": cfg.w_consistency,
               "hps": cfg.w_hps, "vlm_alignment": cfg.w_vlm, "unified": cfg.w_unified}
    return {k: v for k, v in weights.items() if k in components}


def seed_of(*parts) -> int:
    """A generator seed fixed by `parts` in every process (Python's own hash of a str is not)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def sample_and_submit(pipe: Pipeline, pairs: list[tuple], G: int, sampling: Sampling, decoder_steps: int,
                      pool: RewardPool, chunks: int, seed: tuple, shape: tuple[int, int],
                      keep_images: list | None = None, bf16: bool = False
                      ) -> tuple[list, torch.Tensor, torch.Tensor, list, dict]:
    """G rollouts of each (scene, prompt) pair, images of `shape` (rows, cols) tokens, sampled and decoded in
    `chunks`; each decoded chunk goes to the reward pool at once, so the judges score it while the next chunk
    samples. Returns the prompt ids (one per rollout), the image tokens (B, N), the sampler's top-code
    probabilities (B, N: where a rollout derails), the pool's pending results, and the seconds spent sampling,
    decoding and judging in this process (a pool without workers judges inside `submit`); the decoded images are
    appended to `keep_images` when given; `bf16` autocasts decoding and re-reading (not sampling)."""
    rows, cols = shape
    device = next(pipe.model.parameters()).device
    prompt_ids = [pipe.fmt.generation_prompt(text) for _, text in pairs for _ in range(G)]
    was_training = pipe.model.training
    pipe.model.eval()
    tokens, tops, pending = [], [], []
    seconds = {"sample": 0.0, "decode": 0.0, "judge_inline": 0.0}
    per_chunk = math.ceil(len(pairs) / max(1, chunks)) * G
    for c, start in enumerate(range(0, len(prompt_ids), per_chunk)):
        # from the second chunk on, the workers judge the ones before: leave them their cores while they do
        with beside_judges(pool, pending):
            ts = time.time()
            gen = torch.Generator().manual_seed(seed_of(*seed, "sample", c))
            rollout = pipe.engine.generate_image(prompt_ids[start : start + per_chunk], rows, cols, sampling, gen)
            chunk_codes = pipe.fmt.vocab.image_code(rollout.tokens)  # b N
            seconds["sample"] += time.time() - ts
        with beside_judges(pool, pending):  # the judges may have finished while this chunk sampled
            ts = time.time()
            gen = torch.Generator().manual_seed(seed_of(*seed, "decode", c))
            with autocast(device, bf16):
                pixels = pipe.image.decode(chunk_codes.reshape(-1, rows, cols), steps=decoder_steps,
                                           generator=gen).float()
                reread = pipe.image.encode(pixels).flatten(1)  # the tokenizer's reading of what was drawn
            images = [to_image(x) for x in pixels]
            seconds["decode"] += time.time() - ts
        if keep_images is not None:
            keep_images += images
        ts = time.time()
        pending.append(pool.submit([
            Rollout(pairs[(start + i) // G][0], images[i], chunk_codes[i].tolist(), reread[i].tolist(),
                    pairs[(start + i) // G][1])
            for i in range(len(images))]))  # judged while the next chunk samples (with workers)
        seconds["judge_inline"] += time.time() - ts
        tokens.append(rollout.tokens), tops.append(rollout.top)
    pipe.model.train(was_training)
    return prompt_ids, torch.cat(tokens), torch.cat(tops), pending, seconds


def probe_rollouts(pipe: Pipeline, cfg: Config, pool: RewardPool, weights: dict, sampling: Sampling,
                   grid: Path | None = None, bf16: bool = False
                   ) -> tuple[list[tuple], torch.Tensor, dict[str, list], torch.Tensor]:
    """The policy's rollouts on the probe's fixed prompts (`rl_prompts` at step -1, never trained on), G each with
    fixed seeds, judged: returns the (scene, prompt) pairs, the rewards (P, G; NaN where a reward failed), the
    reward components (one list over the P * G rollouts each) and the sampler's top-code probabilities (P * G, N).
    grid: where to save the rollouts of the first 8 prompts, one row each, at most 128 px a side (the report shows
    these over steps)."""
    pairs = run_prompts(cfg, -1, cfg.probe_prompts)
    images: list = []
    _, _, top, pending, _ = sample_and_submit(pipe, pairs, cfg.rollouts, sampling, cfg.decoder_steps, pool,
                                              cfg.chunks, seed=(cfg.seed, "probe"),
                                              shape=rollout_shape(cfg.size, pipe.preset), keep_images=images, bf16=bf16)
    if grid is not None:
        rows = min(8, len(pairs))
        tiles = [im.copy() for im in images[: rows * cfg.rollouts]]
        for im in tiles:
            im.thumbnail((128, 128))  # a paper-size probe sheet stays a picture, not gigapixels
        W, H = tiles[0].size
        sheet = Image.new("RGB", (W * cfg.rollouts, H * rows))
        for i, im in enumerate(tiles):
            sheet.paste(im, (W * (i % cfg.rollouts), H * (i // cfg.rollouts)))
        sheet.save(grid)
    parts, _ = pool.gather(pending)
    rewards, _ = combine(parts, weights)
    return pairs, torch.tensor(rewards).reshape(-1, cfg.rollouts), parts, top


def probe(pipe: Pipeline, cfg: Config, pool: RewardPool, weights: dict, sampling: Sampling,
          grid: Path | None = None, bf16: bool = False) -> dict:
    """The policy on the probe's prompts (`probe_rollouts`): the mean reward and the mean over prompts of the best of
    G, over the groups whose rewards all came back, and how many of all its rollouts derailed
    (`xomni.engine.derailed`). At step 0 this is the starting (SFT) model, whose best-of-G is the line the paper's
    Figure 2b has GRPO's mean reward overtake."""
    _, r, parts, top = probe_rollouts(pipe, cfg, pool, weights, sampling, grid, bf16)
    return probe_summary(r, parts, top)


def probe_summary(r: torch.Tensor, parts: dict[str, list], top: torch.Tensor) -> dict:
    """`probe`'s log record from `probe_rollouts`' rewards (P, G), components and top-code probabilities."""
    ok = torch.isfinite(r).all(1)
    # each prompt's mean and best of G (None where its group failed): Fig. 2b compares steps on the prompts whose
    # rewards came back at every probe (`xomni.eval.claims.probe_curve`), not on whichever did each time
    by_prompt = {"probe_prompt_rewards": [float(x.mean()) if o else None for x, o in zip(r, ok)],
                 "probe_prompt_best": [float(x.max()) if o else None for x, o in zip(r, ok)]}
    if not ok.any():  # every group had a failed reward: nothing to report, and no NaN in the log
        return {"probe_reward": None, "probe_best_of_g": None, "probe_groups": 0,
                "probe_derailed": int(derailed(top).sum()), **by_prompt}
    out = {"probe_reward": float(r[ok].mean()), "probe_best_of_g": float(r[ok].max(1).values.mean()),
           "probe_groups": int(ok.sum()), "probe_derailed": int(derailed(top).sum()), **by_prompt}
    for k, vals in parts.items():
        v = [x for x in vals if x is not None and math.isfinite(x)]
        out[f"probe_{k}"] = sum(v) / len(v) if v else None
    return out


def main(cfg: Config) -> dict:
    cfg = resolve(cfg)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    pipe = Pipeline.from_pretrained(cfg.checkpoint).to(device)  # the judges read the images on the CPU
    rows, cols = rollout_shape(cfg.size, pipe.preset)  # before anything is written
    # the probe's and the first step's prompts with their images must fit the context (a longer prompt at a later
    # step stops the run there with the engine's error; it resumes from its last checkpoint)
    first = run_prompts(cfg, -1, cfg.probe_prompts) + run_prompts(cfg, 0, cfg.prompts_per_step)
    longest = max(len(pipe.fmt.generation_prompt(text)) for _, text in first)
    pipe.engine.check_context(longest + len(pipe.tok.image_prefix(rows, cols)), rows * cols)
    pipe.engine.check_grid(rows, cols)
    out.mkdir(parents=True, exist_ok=True)
    policy = pipe.model
    bf16 = resolve_bf16(cfg.bf16, device)
    cfg = replace(cfg, bf16=str(bf16).lower(), device=str(device))  # the run's meta records what ran, not "auto"
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    policy.train().requires_grad_(True)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
    state_path = out / "grpo_state.pt"
    may_change = ("reward_workers", "reward_timeout", "stop_after_failed_steps", "probe_every",
                  "eval_suites")  # besides how long it runs and what it records
    # what runs saved before a setting existed ran: every rollout 128 x 128 px, the prompts as the world draws them,
    # LongText-Bench's OCR rule
    absent = {"size": "128x128", "text_mix": "", "scene_mix": "", "ocr_rule": "longtext"}
    state = load_train_state(state_path, cfg, may_change, absent, resume=cfg.resume)
    step = 0
    if state is not None:
        policy.load_state_dict(state["policy"]), opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed from {state_path} at step {step}")
    link_parts(Path(cfg.checkpoint), out)
    models = {name: path for name, path in (("hps", cfg.hps), ("vlm_alignment", cfg.vlm),
                                            ("unified", cfg.unified_reward)) if path}
    rewards_pool = RewardPool(tuple(e for e in cfg.ocr.split(",") if e), cfg.reward_workers, models, cfg.ocr_rule,
                              cfg.reward_timeout)
    weights = reward_weights(cfg, rewards_pool.components)
    sampling = Sampling(temperature=1.0, min_p=cfg.min_p)
    N, G = rows * cols, cfg.rollouts
    quote_text = quotes_text_answers(Path(cfg.checkpoint))

    def checkpoint(metrics: dict) -> None:
        meta = {"stage": "train_grpo", "step": step, "metrics": metrics, "config": asdict(cfg),
                "quote_text_answers": quote_text}
        save_component(out / "ar", policy.config, policy, meta)
        save_train_state(state_path, {"policy": policy.state_dict(), "opt": opt.state_dict(), "step": step}, cfg)

    log = open_run_log(out / "grpo_log.jsonl", state_path, state)
    metrics: dict = {}
    bar = tqdm(total=cfg.steps, initial=step, desc="grpo", dynamic_ncols=True)
    failed_in_a_row = 0  # steps in a row without a single group whose rewards came back

    def log_record(record: dict) -> None:
        log.write(json.dumps(record) + "\n")
        log.flush()
        tqdm.write(json.dumps(record))

    def log_probe() -> None:
        log_record({"step": step, **probe(pipe, cfg, rewards_pool, weights, sampling,
                                          out / f"grpo_samples_{step:04d}.png", bf16)})

    def log_evaluations() -> None:
        log_record({"step": step, **evaluate_suites(out, step, cfg)})

    if cfg.probe_prompts and step == 0:  # the starting model (the reference): its mean and best-of-G
        # Figure 2b compares every later probe with this one on the prompts they share, and no later step can redo
        # it: a probe the judges failed on some groups of is run once more (the same seeds), then the run stops
        for attempt in range(2):
            start_probe = probe(pipe, cfg, rewards_pool, weights, sampling, out / "grpo_samples_0000.png", bf16)
            if start_probe["probe_groups"] == cfg.probe_prompts:
                break
            log_record({"step": 0, "probe_attempt_groups": start_probe["probe_groups"]})  # no probe_reward: not a probe
        else:
            bar.close(), log.close(), rewards_pool.close()
            raise RuntimeError(
                f"the step-0 probe was scored on {start_probe['probe_groups']} of {cfg.probe_prompts} prompts, twice "
                "(the judges did not score the rest; the same seeds each time). Fix them (or raise "
                "--reward-timeout) and rerun.")
        log_record({"step": 0, **start_probe})
    if state is not None:  # a run killed after a step's checkpoint, before its probe or evaluations were logged
        lines = (out / "grpo_log.jsonl").read_text().splitlines()
        at = [r for r in map(json.loads, filter(str.strip, lines)) if r.get("step") == step]
        if (cfg.probe_prompts and cfg.probe_every and step % cfg.probe_every == 0
                and not any("probe_reward" in r for r in at)):
            log_probe()
        if cfg.eval_every and step % cfg.eval_every == 0 and not any(k.startswith("eval/") for r in at for k in r):
            log_evaluations()
    while step < cfg.steps:
        t0 = time.time()
        pairs = run_prompts(cfg, step, cfg.prompts_per_step)
        prompt_ids, tokens, top, pending, seconds = sample_and_submit(
            pipe, pairs, G, sampling, cfg.decoder_steps, rewards_pool, cfg.chunks, seed=(cfg.seed, step),
            shape=(rows, cols), bf16=bf16)
        codes = pipe.fmt.vocab.image_code(tokens)  # B N

        # what needs no rewards is computed while the judges finish: the reference's log-probs, and the first
        # update's forward with its graph kept. The policy has not moved since it sampled, so that forward's
        # log-probs, detached, are the old policy's: no forward of its own (the first update's ratio is exactly 1)
        t1 = time.time()
        prefix = pipe.tok.image_prefix(rows, cols)
        ids, mask = (x.to(device) for x in left_pad([p + prefix + t for p, t in zip(prompt_ids, tokens.tolist())],
                                                     pipe.engine.pad_id))
        grid = pipe.engine.grid(ids)  # None unless the policy has row/column embeddings
        full = cfg.kl == "full"
        policy.train()
        # each with torch's threads lowered while a worker still judges, and all of them once it is done
        with autocast(device, bf16), beside_judges(rewards_pool, pending):
            first_pass = image_logprobs(policy, ids, mask, N, codes, grid, full=full)
        with torch.no_grad(), autocast(device, bf16), beside_judges(rewards_pool, pending):
            ref_logp, _, *ref_all = image_logprobs(reference, ids, mask, N, codes, grid, full=full)
        keep_batch = None
        if cfg.keep_understanding:  # the reference's answers to hold the policy's text head to
            with torch.no_grad(), autocast(device, bf16), beside_judges(rewards_pool, pending):
                u_ids, u_mask, u_answer, u_grid = understanding_batch(pipe, step, cfg.keep_conversations, cfg.seed,
                                                                      quote_text)
                keep_batch = (u_ids, u_mask, u_answer, u_grid,
                              answer_logprobs(reference, u_ids, u_mask, u_answer, u_grid))
        old_logp = first_pass[0].detach()
        t_before = time.time() - t1

        t2 = time.time()
        parts, failed_chunks = rewards_pool.gather(pending)
        rewards, reward_stats = combine(parts, weights)
        # what judging added to the step: waiting after the last chunk, plus judging done in this process
        t_judge = time.time() - t2 + seconds["judge_inline"]
        r = torch.tensor(rewards).reshape(-1, G)
        valid = torch.isfinite(r).all(1)  # a group with a failed reward is dropped whole

        t3 = time.time()
        stats: dict = {}
        if valid.any():
            adv, flat = group_advantages(r[valid].to(device))
            adv = weight_negative(adv, cfg.neg_scale)
            keep = valid.repeat_interleave(G)
            ids, mask, kept_codes, grid = ids[keep], mask[keep], codes[keep], grid[keep] if grid is not None else None
            old_logp, ref_logp, ref_all = old_logp[keep], ref_logp[keep], [a[keep] for a in ref_all]
            token_mask = torch.ones_like(old_logp)
            pg_mask = None
            if cfg.derail_mask:  # the sampled code at a flat position says nothing of the prompt: only the KL acts
                kept_top = top[keep]
                pg_mask = ~((kept_top < FLAT) & derailed(kept_top)[:, None])
            for update in range(cfg.updates):
                if update == 0:
                    logp, entropy, *logp_all = (x[keep] for x in first_pass) if not valid.all() else first_pass
                    first_pass = None  # its graph and full log-softmax are held by the loss from here on, if at all
                else:
                    with autocast(device, bf16):
                        logp, entropy, *logp_all = image_logprobs(policy, ids, mask, N, kept_codes, grid, full=full)
                kl = forward_kl(logp_all[0], ref_all[0]) if full else None
                loss, stats = grpo_loss(logp, old_logp, ref_logp, adv.flatten(), token_mask, cfg.eps_low,
                                        cfg.eps_high, cfg.beta, kl, pg_mask)
                if keep_batch is not None:
                    *u_batch, u_ref = keep_batch
                    with autocast(device, bf16):
                        u_logp = answer_logprobs(policy, *u_batch)
                    keep_kl = forward_kl(u_logp, u_ref).mean()
                    loss = loss + cfg.keep_understanding * keep_kl
                    stats["keep_kl"] = float(keep_kl.detach())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                opt.step()
            stats.update(loss=loss.item(), entropy=float(entropy.detach().mean()), zero_variance_groups=int(flat.sum()))
            if pg_mask is not None:
                stats["pg_masked"] = float(1 - pg_mask.float().mean())
        first_pass = None  # not carried into the next step (nor used at all when every group was dropped)
        t_update = time.time() - t3 + t_before
        step += 1

        finite = [x for x in rewards if math.isfinite(x)]  # no reward at all: None, never a 0 nor a NaN
        record = {"step": step, "reward": sum(finite) / len(finite) if finite else None,
                  "reward_best_of_g": float(r[valid].max(1).values.mean()) if valid.any() else None,
                  **{f"reward_{k}": (sum(v) / len(v) if (v := [x for x in vals if x is not None and math.isfinite(x)])
                                     else None) for k, vals in parts.items()},
                  "dropped_groups": int((~valid).sum()), "failed_chunks": failed_chunks,
                  "judge_restarts": rewards_pool.restarts, **reward_stats, **stats,
                  "derailed": int(derailed(top).sum()),
                  "rollouts_per_s": round(len(prompt_ids) / (time.time() - t0), 3),
                  "seconds": {"sample": round(seconds["sample"], 2), "decode": round(seconds["decode"], 2),
                              "judge_wait": round(t_judge, 2), "update": round(t_update, 2)}}
        log.write(json.dumps(record) + "\n")
        log.flush()
        failed_in_a_row = 0 if valid.any() else failed_in_a_row + 1
        if cfg.stop_after_failed_steps and failed_in_a_row >= cfg.stop_after_failed_steps:
            message = (
                f"every group's reward failed in {failed_in_a_row} steps in a row (to step {step}; failed chunks and "
                f"dropped groups in {out / 'grpo_log.jsonl'}): the judges are not scoring, so nothing is learned "
                "(the policy was not updated in those steps). Fix the judges (or raise --reward-timeout) and rerun: "
                f"it resumes at step {step - failed_in_a_row} and redoes them.")
            step -= failed_in_a_row  # the policy is as it was before the failed steps: a rerun redoes just them
            if step > 0:  # at 0 the policy is the starting model: a rerun starts the run afresh (its step-0 probe too)
                checkpoint(metrics)
            bar.close(), log.close(), rewards_pool.close()
            raise RuntimeError(message)
        if valid.any():  # what a checkpoint records: the last step whose rewards came back
            metrics = {k: v for k, v in record.items() if k.startswith("reward")}
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward']:.3f}" if record["reward"] is not None else "-")
        if step % cfg.save_every == 0 or step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            checkpoint(metrics)
        judged = failed_in_a_row == 0  # a probe with the reward judges that just failed would wait on them too
        if judged and cfg.probe_prompts and cfg.probe_every and step % cfg.probe_every == 0:
            log_probe()
        if cfg.eval_every and step % cfg.eval_every == 0:  # the suites judge in this process, not in the pool
            log_evaluations()
    bar.close()
    log.close()
    rewards_pool.close()
    return metrics


def evaluate_suites(out: Path, step: int, cfg: Config) -> dict:
    """The held-out suites on the checkpoint just written (out/ with the policy in out/ar), no CFG."""
    from xomni.stages import eval_suite

    scores = {}
    for suite in [s for s in cfg.eval_suites.split(",") if s]:
        source = "renders" if suite in eval_suite.UNDERSTANDING else "model"
        m = eval_suite.main(eval_suite.Config(suite=suite, out=str(out / "eval" / f"step_{step:04d}" / suite),
                                              checkpoint=str(out), n=cfg.eval_n, source=source,
                                              steps=cfg.decoder_steps, min_p=cfg.min_p, seed=cfg.seed))
        scores[f"eval/{suite}"] = m["score"]
    return scores
