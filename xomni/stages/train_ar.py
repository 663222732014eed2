"""Stage: train the unified AR model in the paper's phases (Sec. 3.3), one phase per run of this file.

    python -m xomni.cli train ar --phase text       --out out/tiny/ar_text        (tiny only, see below)
    python -m xomni.cli train ar --phase pretrain1  --init out/tiny/ar_text/model  --out out/tiny/ar_pt1
    python -m xomni.cli train ar --phase pretrain2  --init out/tiny/ar_pt1/model   --out out/tiny/ar_pt2
    python -m xomni.cli train ar --phase pretrain3  --init out/tiny/ar_pt2/model   --out out/tiny/ar_pt3
    python -m xomni.cli train ar --phase sft        --init out/tiny/ar_pt3/model   --out out/tiny/ar_sft

Phases (what trains, what data):
- pretrain1: only the new vision parts (vision-only blocks, image embedding `mm_embed`, image head `mm_head`, image
  norm) train; generation and understanding from the world.
- pretrain2: everything, same mixture (a generation sample is prompted by the dense caption half the time in
  pretrain1 and 2, by a level of detail drawn uniformly otherwise).
- pretrain3: annealing: every prompt level drawn uniformly, the learning rate decaying to `final_lr` (10% by
  default). Deviation: the paper anneals on its best data; every scene of the world is equally clean, so ours
  selects none (runs/cpu_tiny.sh gives every phase the same shards).
- sft: prompts at every level of detail and the understanding questions (fewer captions), the learning rate decaying
  to 0 when `--final-lr 0` is given, as runs/cpu_tiny.sh does (the default, 0.1, is every phase's).
Deviation (tiny scale): the paper's LLM is a pretrained Qwen2.5; ours is a tiny Qwen2 with nothing behind it. Two
stand-ins for that pretraining: phase `text` trains a random one on the world's language alone (captions, prompts,
questions and answers); or `--llm-init DIR` starts pretrain1 from the tokenizer stage's alignment LM, a Qwen2 of the
tiny LLM's shape that has learned the world's language and to answer from the semantic tokens (see
`alignment_start`). The second reads the image after 200 steps, the first had not after 1,800 (docs/unified.md).
At paper scale the LLM starts from Qwen2.5 and `text` is skipped: `--init` given a transformers Qwen2/Qwen2.5
folder builds the unified model on its LLM (`qwen2_unified_config`: its sizes, the preset's vision-only blocks, the
tokenizer's codebook) and loads it (`load_pretrained(..., "qwen2")`); the vision-only blocks, image embedding, head
and norm start new, for pretrain1. Its text tokenizer is Qwen2.5's (`--text-tokenizer DIR/tokenizer.json`, X-Omni's
special tokens added), padded to the model's text rows, after which the image ids start (`TextTokenizer`).

Data: token shards from `xomni tokenize` (the encoder never runs here), scenes re-derived from their indices, one
generation or understanding sample each (xomni/data/sequences.py), packed into rows of `seq_len`. The loss is the
mean over supervised image tokens plus the mean over supervised text tokens, so neither kind drowns the other; each
kind is scored by its own head over its own vocabulary (image codes / text), the distributions the engine samples.
Deviation (tiny scale; opt-in, on in runs/cpu_tiny.sh): `first_cell_weight` weighs the loss of each object's first
cell in raster order (`cell_roles`), the one code per object that its prompt decides rather than the cells before
it; without it the tiny model learned to draw with the prompt ignored (docs/unified.md, "Reading the prompt").
`object_cell_weight` does the same for an object's other cells, which carry the rest of its shape, and
`rest_cell_weight` for the background after every object has started, where the prompt's count says no object may
start any more.
`photo_text_free` keeps GenEval's "a photo of ..." register, which never names text, off scenes with text.
`scene_mix` draws the samples by compositional task (`scene_task`: one object, a count, two groups, a relation)
in the given shares rather than as the shards hold them (one group in 8 of 10 scenes, a relation in 7 of 100).
`text_lang` keeps only the scenes whose text is in one language (a text-dense continuation for Chinese alone).
`image_grid_embed` (deviation, opt-in) adds learned row and column embeddings to the image tokens
(`UnifiedModel.init_grid_embed`): with 1-D RoPE alone a linear probe reads a tiny model's image token's column at
0.35 (chance 0.125) at its best layer (docs/unified.md, "Session 19"). Given to an `--init` model, they are added
to it; in pretrain1 they train with the other new vision parts.
`quote_text_answers` writes what a sign says in quotes in understanding answers, so that a tokenizer trained with
`--spell-quoted` spells the answer letter by letter, as it spells the text a prompt asks for.
A share `cond_drop` of the generation samples has no prompt (the image prefix alone before the codes): the
unconditional branch the engine's CFG reads, which otherwise would be a context the model has never seen.
The step fixes the data and the schedule, so a resumed run reproduces an uninterrupted one (a resume with another
`--steps` is refused where the learning rates of the steps taken would differ: a cosine's). The data are a stream
fixed by (seed, phase, shards): sample k of step t is the same in every run, so two runs that differ only in their
`--init` (a continuation on the same shards) draw the same samples; `--data-start S` starts a run at the stream's
step S, after the S steps an earlier run on the same stream took (runs/cpu_tiny.sh's repeated mixture phases).

Device: `--device auto` (the default) trains on a GPU when torch sees one, else on the CPU (xomni/devices.py).
Distributed: `torchrun --nproc_per_node N -m xomni.cli train ar ...` runs the same loop under DDP (gloo on CPU,
NCCL on GPUs, one GPU per process); rank r takes samples r, r+N, ... of each step and the loss is normalised by the
whole step's target counts, so the loss curve equals one process with the same global batch
(tests/test_distributed.py). `--fsdp true`
shards instead of replicating (FSDP2 `fully_shard` per block and per head; checkpoints gather full weights on rank
0, so a sharded run resumes sharded or not); `--bf16 true` (or auto: where the CPU or GPU computes bfloat16 natively)
autocasts the forward.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from xomni.checkpoint import load_component, load_train_state, open_run_log, save_component, save_train_state
from xomni.data.sequences import IGNORE, Formatter, Sample, image_grids, pack, pack_weights
from xomni.data.batches import answer_text, scene_batch, understanding_pairs
from xomni.data.world import (SCENE_TASKS, Scene, WorldConfig, caption, cell_roles, make_scene, prompts, questions,
                              scene_task)
from xomni.devices import setup
from xomni.errors import check_at_least, parse_shares
from xomni.model.unified import (PRESETS, UnifiedConfig, UnifiedModel, is_qwen2_folder, load_pretrained,
                                 load_pretrained_tensors, qwen2_unified_config)
from xomni.precision import autocast, check_bf16, resolve_bf16
from xomni.schedule import check_resumed_schedule, warmup_cosine
from xomni.stages.tokenize import load_shard_folders
from xomni.stages.train_tokenizer import load_alignment_lm, load_tokenizer
from xomni.tokenizer.alignment import AlignmentLM
from xomni.tokenizer.text import TextTokenizer

PHASES = ("text", "pretrain1", "pretrain2", "pretrain3", "sft")


@dataclass
class Config:
    phase: str = "pretrain2"
    preset: str = "tiny"
    text_tokenizer: str = "out/tiny/text_tokenizer.json"
    tokenizer: str = "out/tiny/tokenizer"  # SigLIP-VQ: its codebook size, and held-out codes for the evaluation
    shards: str = "out/tiny/shards/train_128x128,out/tiny/shards/train-dense_128x128"
    init: str = ""  # the previous phase's model folder, or a Qwen2.5 folder (paper scale) ("" = fresh weights)
    out: str = "out/tiny/ar"
    steps: int = 1000
    batch_size: int = 32  # samples per step (packed into rows of seq_len)
    seq_len: int = 320
    lr: float = 1e-3
    warmup: int = 50
    final_lr: float = 0.1  # fraction of lr at the end (runs/cpu_tiny.sh: 0 for sft)
    weight_decay: float = 0.05
    gen_share: float = 0.5  # share of generation samples
    cond_drop: float = 0.1  # share of generation samples without their prompt (CFG's unconditional branch)
    turns: int = 3  # question/answer turns per understanding sample
    first_cell_weight: float = 1.0  # loss weight of an object's first cell in a prompted generation sample
    object_cell_weight: float = 1.0  # loss weight of an object's other cells in a prompted generation sample
    text_cell_weight: float = 1.0  # loss weight of the text element's cells in a prompted generation sample
    rest_cell_weight: float = 1.0  # loss weight of a background cell after every object has started (raster order)
    photo_text_free: bool = False  # the `photo` prompt level only for scenes without text (it never names the text)
    quote_text_answers: bool = False  # "what does the sign say" answered in quotes (spelled by a spelling tokenizer)
    image_grid_embed: int = 0  # image tokens' row/column embeddings (UnifiedConfig); given to an --init model too
    scene_mix: str = ""  # e.g. "single=0.3,count=0.25,two=0.25,relation=0.2": samples drawn by task (`scene_task`)
    text_lang: str = ""  # "en" or "zh": only the scenes whose text element is in that language ("" = every scene)
    save_every: int = 100
    eval_every: int = 250
    eval_n: int = 64
    seed: int = 0
    data_start: int = 0  # this run's step 0 reads the data of step data_start of the (seed, phase, shards) stream
    resume: bool = True
    bf16: str = "false"  # autocast the forward to bfloat16: true, false, or auto (native bf16 only; bench/ar_step.py)
    device: str = "auto"  # auto (a GPU when one is visible, else the CPU), cpu or cuda (xomni/devices.py)
    fsdp: bool = False  # under torchrun: shard parameters, gradients and optimiser state (FSDP2) instead of DDP
    image_embed_init: str = ""  # "tokenizer": a fresh run starts mm_embed from the tokenizer's per-code vectors
    llm_init: str = ""  # tiny: an alignment_lm folder; a fresh run's LLM and mm_embed start from it (alignment_start)


def parse_scene_mix(spec: str) -> dict[str, float]:
    """"single=0.3,count=0.25,two=0.25,relation=0.2" -> each task's share of the samples (normalised). Every task in
    SCENE_TASKS must be named, so that a share left at 0 is a choice rather than a typo."""
    return parse_shares(spec, SCENE_TASKS, "scene_mix")


def task_pools(sources: list, rows_of: list[tuple[int, int]], order: list[int]) -> dict[str, list[int]]:
    """Row ids of each scene task (`scene_task`), each pool in the shuffled `order`."""
    pools: dict[str, list[int]] = {t: [] for t in SCENE_TASKS}
    for r in tqdm(order, desc="scene tasks", leave=False, mininterval=5):
        src, j = rows_of[r]
        split, scene_world, idx, _ = sources[src]
        pools[scene_task(make_scene(scene_world, split, int(idx[j])))].append(r)
    return pools


def text_lang_rows(sources: list, rows_of: list[tuple[int, int]], order: list[int], lang: str) -> list[int]:
    """The rows of `order` whose scene has a text element in `lang` ("en" or "zh"), in the same order; a scene
    without text is dropped too."""
    if lang not in ("en", "zh"):
        raise ValueError(f"text_lang must be 'en' or 'zh', got {lang!r}")
    keep = []
    for r in tqdm(order, desc=f"{lang} scenes", leave=False, mininterval=5):
        src, j = rows_of[r]
        split, scene_world, idx, _ = sources[src]
        text = make_scene(scene_world, split, int(idx[j])).text
        if text is not None and text.lang == lang:
            keep.append(r)
    if not keep:
        raise ValueError(f"text_lang {lang!r}: the shards hold no scene with text in that language")
    return keep


def sample_row(k: int, order: list[int], pools: dict[str, list[int]] | None, shares: dict[str, float] | None,
               seed: int) -> int:
    """The row of sample k: the shuffled order's k-th (wrapping) without a scene mix; with one, a task drawn by its
    share and then a row of that task's pool (with replacement), both by a generator seeded from (seed, k), so that
    any sample is re-drawn alone, the same on a resume and on whichever DDP rank takes it."""
    if not shares:
        return order[k % len(order)]
    rng = random.Random(f"scene_mix/{seed}/{k}")
    tasks = [t for t in SCENE_TASKS if shares[t] > 0]
    task = rng.choices(tasks, weights=[shares[t] for t in tasks])[0]
    pool = pools[task]
    if not pool:
        raise ValueError(f"scene_mix asks for {task!r} scenes and the shards hold none")
    return pool[rng.randrange(len(pool))]


def with_grid_embed(model: UnifiedModel, n: int) -> UnifiedModel:
    """`model` given row/column embeddings for grids up to n x n (UnifiedConfig.image_grid_embed), started by
    `init_grid_embed` on its trained image embedding. Refuses a model that has them at another size."""
    if model.config.image_grid_embed:
        raise ValueError(f"the --init model has grid embeddings for {model.config.image_grid_embed} rows/columns, "
                         f"not {n}")
    grown = UnifiedModel(replace(model.config, image_grid_embed=n))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert sorted(missing) == ["mm_col.weight", "mm_row.weight"] and not unexpected, (missing, unexpected)
    grown.init_grid_embed()
    return grown


def lr_at(step: int, cfg: Config) -> float:
    return warmup_cosine(step, cfg.steps, cfg.warmup, cfg.lr, cfg.final_lr)


def tokenizer_image_embeddings(vq, like: torch.Tensor) -> torch.Tensor:
    """(K, D) image-token embeddings read from the frozen tokenizer: each code's unit codebook row through its
    decode-side 1x1 projection (`post_quant`, what the decoder and the alignment LM start from), rows rescaled so
    their mean norm is that of `like` (the text embeddings' rows). Codes the tokenizer maps close together start
    close together, so an answer can read a colour or a shape from the image tokens before `mm_embed` has learned
    each of its rows on its own. Needs the model width to equal the tokenizer's adapter width (tiny: 256)."""
    weight = vq.post_quant.weight[:, :, 0, 0]  # Da Dc
    if weight.shape[0] != like.shape[1]:
        raise ValueError(f"image_embed_init=tokenizer needs the model width ({like.shape[1]}) to equal the tokenizer's "
                         f"adapter width ({weight.shape[0]})")
    with torch.no_grad():
        rows = F.normalize(vq.codebook, dim=-1) @ weight.T + vq.post_quant.bias  # K Da
        return rows * (like.norm(dim=-1).mean() / rows.norm(dim=-1).mean())


def trainable(model: UnifiedModel, phase: str) -> list[torch.nn.Parameter]:
    """pretrain1 trains the new vision parts only; text (text-only samples) everything else, the parts its samples
    reach (DDP's reduction waits for a gradient of every trainable parameter: an unreached one stalled it); every
    other phase trains everything."""
    vision = (model.vision_pre, model.vision_post, model.mm_embed, model.mm_head, model.mm_norm,
              *((model.mm_row, model.mm_col) if model.config.image_grid_embed else ()))
    model.requires_grad_(phase != "pretrain1")
    if phase in ("pretrain1", "text"):
        for part in vision:
            part.requires_grad_(phase == "pretrain1")
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def alignment_start(model: UnifiedModel, lm: AlignmentLM, vq, codes: torch.Tensor) -> None:
    """Start a fresh model from the tokenizer's alignment LM (tiny). Its Qwen2 becomes the LLM part (text embedding,
    layers, norm, head), and row k of `mm_embed` becomes the LM's image projection of code k's mean contextual
    semantic embedding (the tokenizer's decode-side adapter output) over `codes` (N, h, w): what that LM learned to
    read at a cell holding code k. Codes that do not occur keep `tokenizer_image_embeddings`. The vision-only
    blocks, image head and norm stay new, for pretrain1 to train."""
    a, m = lm.config, model.config
    mine = (m.text_vocab_size, m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads, m.intermediate_size)
    theirs = (a.vocab_size, a.hidden_size, a.num_layers, a.num_heads, a.num_kv_heads, a.intermediate_size)
    if mine != theirs:
        raise ValueError(f"llm_init: the alignment LM (vocab, width, layers, heads, kv heads, mlp) {theirs} is not "
                         f"this model's LLM {mine}")
    # its head is tied to its embedding: leave the alias out, and the loader gives our separate head the embedding
    load_pretrained_tensors(model, {k: v for k, v in lm.lm.state_dict().items() if k != "lm_head.weight"}, "qwen2",
                            "the alignment LM")
    model.mm_embed.weight.copy_(tokenizer_image_embeddings(vq, model.embed_tokens.weight))
    total = torch.zeros(m.codebook_size, vq.config.adapter_dim)
    count = torch.zeros(m.codebook_size)
    for start in range(0, len(codes), 256):
        batch = codes[start : start + 256]
        total.index_add_(0, batch.flatten(), vq.embed_codes(batch).flatten(0, 2))
        count.index_add_(0, batch.flatten(), torch.ones(batch.numel()))
    seen = count > 0
    model.mm_embed.weight[seen] = lm.image_proj(total[seen] / count[seen, None])


def text_sample(fmt: Formatter, scene: Scene, rng: random.Random, quote_text: bool = False) -> Sample:
    """Language only (phase `text`): a prompt, a caption or a question and its answer, every token supervised."""
    kind = rng.random()
    if kind < 0.3:
        text = rng.choice(list(prompts(scene).values()))
    elif kind < 0.6:
        text = caption(scene)
    else:
        q = rng.choice(questions(scene, rng))
        text = f"{q.question} {answer_text(q, quote_text)}"
    ids = fmt.tok.encode(text) + [fmt.vocab.eos_id]
    return Sample(ids, ids[1:] + [IGNORE])


def world_sample(fmt: Formatter, phase: str, scene: Scene, codes: list[int], rows: int, cols: int,
                 rng: random.Random, gen_share: float, turns: int = 3, max_len: int = 10**9,
                 cond_drop: float = 0.0, role_weights: dict[str, float] | None = None,
                 photo_text_free: bool = False, quote_text: bool = False) -> Sample:
    """One training sample: language only (phase text), a generation sample (a prompt at some level of detail,
    then the image; with probability `cond_drop` no prompt at all, the unconditional branch CFG samples from), or
    an understanding conversation (the image, then up to `turns` questions or the caption). role_weights: the loss
    weight of a prompted generation sample's cells by their role (`cell_roles`; a role not named weighs 1).
    photo_text_free: a scene with text never gets the `photo` level, which names its objects and not its text, so
    that GenEval's register ("a photo of a hexagon") is never followed by text nobody asked for. quote_text:
    answers that read a sign's text are quoted (`answer_text`)."""
    if phase == "text":
        return text_sample(fmt, scene, rng, quote_text)
    if rng.random() < gen_share:
        if cond_drop and rng.random() < cond_drop:
            return fmt.generation(None, codes, rows, cols)
        levels = prompts(scene)
        if photo_text_free and scene.text is not None:
            levels.pop("photo", None)
        level = "dense" if phase in ("pretrain1", "pretrain2") and rng.random() < 0.5 else rng.choice(list(levels))
        weights = None
        if role_weights and any(w != 1.0 for w in role_weights.values()):
            weights = [role_weights.get(role, 1.0) for role in cell_roles(scene, rows, cols)]
        return fmt.generation(levels[level], codes, rows, cols, weights)
    pairs = understanding_pairs(scene, rng, turns, caption_prob=0.3 if phase != "sft" else 0.1, quote_text=quote_text)
    sample = fmt.conversation(codes, rows, cols, pairs)
    while len(sample.ids) > max_len and len(pairs) > 1:  # fewer turns rather than a sample no row can hold
        pairs = pairs[:-1]
        sample = fmt.conversation(codes, rows, cols, pairs)
    return sample


def split_loss(model: UnifiedModel, hidden: torch.Tensor, labels: torch.Tensor,
               counts: dict[str, float] | None = None, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Mean CE over supervised image targets + mean CE over supervised text targets. hidden (N, L, D): the model's
    normalised final states (`head="hidden"`). weights (N, L): each target's weight (`pack_weights`); the means
    are then weighted means (each CE times its weight, over the weights' sum).

    Each head runs only where its targets are: image targets are scored by `mm_head` over the K codes, text targets
    by `lm_head` over the text vocabulary. Those are exactly the distributions the engine samples from (image mode
    computes only the image head, text mode only the text head), and the prompts and padding, most of a packed
    row, get no head at all (bench/ar_step.py measures the saving).

    counts: the image / text targets' total weight over the whole step (all ranks together, `target_counts`); by
    default this batch's. Each term is its weighted CE sum divided by that total, so ranks' losses add up to the
    single-process loss exactly."""
    V = model.config.text_vocab_size
    flat, x = labels.flatten(), hidden.flatten(0, 1)
    w = weights.flatten().float() if weights is not None else torch.ones(flat.shape, device=flat.device)
    masks = {"image": flat >= V, "text": (flat != IGNORE) & (flat < V)}
    counts = counts or {k: float(w[m].sum()) for k, m in masks.items()}
    loss = hidden.new_zeros(())
    parts = {}
    for name, sel in masks.items():  # both heads always run (on no rows if need be): DDP wants every gradient
        head, target = (model.mm_head, flat[sel] - V) if name == "image" else (model.lm_head, flat[sel])
        ce = F.cross_entropy(head(x[sel]).float(), target, reduction="none")
        term = (ce * w[sel]).sum() / (counts[name] if counts[name] > 0 else 1.0)
        loss = loss + term
        if counts[name] > 0:
            parts[name] = term
    return loss, {k: v.item() for k, v in parts.items()}


def target_counts(labels: torch.Tensor, text_vocab_size: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(2,) float: the supervised image targets' total weight, the supervised text targets' (each target weighs 1
    without `weights`)."""
    w = weights.float() if weights is not None else torch.ones(labels.shape, device=labels.device)
    image = labels >= text_vocab_size
    return torch.stack([w[image].sum(), w[(labels != IGNORE) & ~image].sum()])


@torch.no_grad()
def evaluate(model: UnifiedModel, fmt: Formatter, vq, cfg: Config) -> dict:
    """Held-out losses: image tokens of generation samples, answer tokens of understanding samples (scenes of the
    held-out split, encoded by the frozen tokenizer)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scenes, pixels = scene_batch(WorldConfig(), "heldout", range(cfg.eval_n))
    codes = vq.encode(pixels)  # B h w
    rng = random.Random(f"ar-eval/{cfg.seed}")
    out = {}
    for name, share in (("heldout_loss_image", 1.0), ("heldout_loss_text", 0.0)):
        phase = cfg.phase if cfg.phase != "text" else "pretrain2"
        samples = [world_sample(fmt, phase, s, c.flatten().tolist(), *c.shape, rng, share, cfg.turns, cfg.seq_len,
                                quote_text=cfg.quote_text_answers) for s, c in zip(scenes, codes)]
        ids, labels, segments, positions = pack(samples, max(cfg.seq_len, *(len(x.ids) for x in samples)),
                                                fmt.vocab.pad_id)
        grid = image_grids(fmt.tok, ids).to(device) if model.config.image_grid_embed else None
        ids, labels, segments, positions = (x.to(device) for x in (ids, labels, segments, positions))
        _, parts = split_loss(model, model(ids, positions=positions, segments=segments, head="hidden", grid=grid),
                              labels)
        out[name] = parts["image" if share else "text"]
    model.train(was_training)
    return out


def main(cfg: Config) -> dict:
    if cfg.phase not in PHASES:
        raise ValueError(f"unknown phase {cfg.phase!r}; choose one of {PHASES}")
    if cfg.llm_init and (cfg.init or cfg.image_embed_init or cfg.phase == "text"):
        raise ValueError("llm_init starts a fresh model for pretrain1 and sets mm_embed itself: not with --init, "
                         "--image-embed-init or phase text")
    shares = parse_scene_mix(cfg.scene_mix) if cfg.scene_mix else None
    if cfg.text_lang not in ("", "en", "zh"):
        raise ValueError(f"text_lang must be '', 'en' or 'zh', got {cfg.text_lang!r}")
    check_bf16(cfg.bf16)
    check_at_least(cfg, 1, "steps", "batch_size", "seq_len", "save_every", "eval_every", "eval_n", "turns")
    check_at_least(cfg, 0, "data_start")
    # distributed: under torchrun every rank builds the same model and takes every world-th sample of each step
    world, rank, device = setup(cfg.device)
    lead = rank == 0
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    tok = TextTokenizer.from_file(cfg.text_tokenizer)
    state_path = out / "ar_state.pt"
    state = load_train_state(state_path, cfg, ("fsdp",), resume=cfg.resume)  # sharded or not: full weights
    if state is not None:
        check_resumed_schedule(lambda k, n: lr_at(k, replace(cfg, steps=n)), state.get("config", {}).get("steps"),
                               cfg.steps, state["step"])

    # data: every shard folder's (split, world, index, codes), in one fixed shuffled order
    sources, rows_of, order = load_shard_folders(cfg.shards, cfg.seed, cfg.tokenizer)
    h, w = sources[0][3].shape[1:]
    if cfg.text_lang:
        order = text_lang_rows(sources, rows_of, order, cfg.text_lang)
        if lead:
            print(f"text in {cfg.text_lang!r}: {len(order)} of {len(rows_of)} tokenized scenes")
    pools = task_pools(sources, rows_of, order) if shares else None
    if pools and lead:
        print("scene tasks in the shards: " + ", ".join(f"{t} {len(p)}" for t, p in pools.items()))

    # model
    vq = load_tokenizer(cfg.tokenizer)
    if cfg.init and is_qwen2_folder(cfg.init):  # paper scale: the LLM from Qwen2.5, the vision parts new
        model = UnifiedModel(qwen2_unified_config(cfg.init, vq.config.codebook_size,
                                                  PRESETS[cfg.preset].num_vision_layers,
                                                  image_grid_embed=cfg.image_grid_embed))
        load_pretrained(model, cfg.init, "qwen2")
    elif cfg.init:
        model = load_component(cfg.init, UnifiedConfig, UnifiedModel)
        if cfg.image_grid_embed and model.config.image_grid_embed != cfg.image_grid_embed:
            model = with_grid_embed(model, cfg.image_grid_embed)
    else:
        model = UnifiedModel(UnifiedConfig(**{**asdict(PRESETS[cfg.preset]), "text_vocab_size": tok.vocab_size,
                                              "codebook_size": vq.config.codebook_size,
                                              "image_grid_embed": cfg.image_grid_embed}))
    mcfg = model.config
    bf16 = resolve_bf16(cfg.bf16, device)
    cfg = replace(cfg, bf16=str(bf16).lower(), device=str(device))  # the meta records what ran, not "auto"
    if mcfg.padded_text_rows:  # Qwen2.5's embedding has more rows than tokens: image ids start after its rows
        tok = tok.padded_to(mcfg.text_vocab_size)
    if mcfg.text_vocab_size != tok.vocab_size or mcfg.codebook_size != vq.config.codebook_size:
        raise ValueError(f"model vocabulary {mcfg.text_vocab_size} + {mcfg.codebook_size} does not match the "
                         f"tokenizers' {tok.vocab_size} + {vq.config.codebook_size}")
    fmt = Formatter(tok, mcfg.codebook_size)
    if cfg.image_embed_init not in ("", "tokenizer"):
        raise ValueError(f"image_embed_init must be '' or 'tokenizer', got {cfg.image_embed_init!r}")
    if cfg.image_embed_init and state is None:  # a fresh run only: a resumed one has its own trained rows
        model.mm_embed.weight.data.copy_(tokenizer_image_embeddings(vq, model.embed_tokens.weight))
    if cfg.llm_init and state is None:
        starts = [sources[s][3][j] for s, j in (rows_of[k] for k in order[:8192])]
        alignment_start(model, load_alignment_lm(cfg.llm_init), vq, torch.stack(starts))
    if mcfg.image_grid_embed and state is None and not cfg.init:  # a fresh model's, at its final mm_embed's scale
        model.init_grid_embed()
    trainable(model, cfg.phase)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        step = state["step"]
    model.to(device)
    sharded = world > 1 and cfg.fsdp
    if sharded:  # FSDP2: each block, each head and then the rest sharded over the ranks
        for part in [*model.vision_pre, *model.layers, *model.vision_post, model.mm_head, model.lm_head]:
            fully_shard(part)
        fully_shard(model)
    net = DDP(model) if world > 1 and not sharded else model
    params = [p for p in model.parameters() if p.requires_grad]  # after sharding: FSDP replaces the parameters
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    if state is not None:
        if sharded:
            set_optimizer_state_dict(model, opt, state["opt"], options=StateDictOptions(full_state_dict=True))
        else:
            opt.load_state_dict(state["opt"])
        if lead:
            print(f"resumed from {state_path} at step {step}")
    n_train = sum(p.numel() for p in params) / 1e6
    role_weights = {"object, first cell": cfg.first_cell_weight, "object": cfg.object_cell_weight,
                    "text": cfg.text_cell_weight, "background, all started": cfg.rest_cell_weight}
    print(f"unified model {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, {n_train:.2f}M training "
          f"(phase {cfg.phase}); {len(order)} tokenized scenes")

    def checkpoint(metrics: dict) -> None:
        if sharded:  # every rank takes part in gathering the full weights and optimiser state; rank 0 writes them
            full = StateDictOptions(full_state_dict=True, cpu_offload=True)
            weights, opt_state = get_model_state_dict(model, options=full), get_optimizer_state_dict(model, opt, options=full)
        else:
            weights, opt_state = model.state_dict(), opt.state_dict()
        if not lead:
            return
        meta = {"stage": f"train_ar/{cfg.phase}", "step": step, "metrics": metrics, "metrics_step": evaluated_at,
                "config": asdict(cfg)}  # the metrics are the last evaluation's, at metrics_step (None: none yet)
        save_component(out / "model", mcfg, model, meta, state=weights)
        save_train_state(state_path, {"model": weights, "opt": opt_state, "step": step}, cfg)

    log = open_run_log(out / "ar_log.jsonl", state_path, state) if lead else open(os.devnull, "w")
    metrics: dict = {}
    evaluated_at = None
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"ar {cfg.phase}", dynamic_ncols=True, disable=not lead)
    model.train()
    while step < cfg.steps:
        samples = []
        at = step + cfg.data_start  # the data stream's step
        for k in range(at * cfg.batch_size + rank, (at + 1) * cfg.batch_size, world):
            src, j = rows_of[sample_row(k, order, pools, shares, cfg.seed)]
            split, scene_world, idx, codes = sources[src]
            scene = make_scene(scene_world, split, int(idx[j]))
            rng = random.Random(f"ar/{cfg.seed}/{cfg.phase}/{k}")  # sample k's task: the same whichever rank takes it
            samples.append(world_sample(fmt, cfg.phase, scene, codes[j].flatten().tolist(), h, w, rng, cfg.gen_share,
                                        cfg.turns, cfg.seq_len, cfg.cond_drop, role_weights, cfg.photo_text_free,
                                        cfg.quote_text_answers))
        ids, labels, segments, positions = pack(samples, cfg.seq_len, fmt.vocab.pad_id)
        weights = pack_weights(samples, cfg.seq_len)
        grid = image_grids(fmt.tok, ids).to(device) if mcfg.image_grid_embed else None
        ids, labels, segments, positions, weights = (x.to(device) for x in (ids, labels, segments, positions, weights))

        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        counts = target_counts(labels, mcfg.text_vocab_size, weights)
        if world > 1:
            dist.all_reduce(counts)
        with autocast(ids.device, bf16):
            hidden = net(ids, positions=positions, segments=segments, head="hidden", grid=grid)
            loss, parts = split_loss(model, hidden, labels, {"image": float(counts[0]), "text": float(counts[1])},
                                     weights)
        opt.zero_grad(set_to_none=True)
        (loss * world).backward()  # DDP averages gradients over ranks; the step's loss is the ranks' sum
        if world > 1:
            summed = torch.tensor([loss.item(), parts.get("image", 0.0), parts.get("text", 0.0)], device=device)
            dist.all_reduce(summed)
            loss, parts = summed[0], {"image": summed[1].item(), "text": summed[2].item()}
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1

        record = {"step": step, "loss": loss.item(), **{f"loss_{k}": v for k, v in parts.items()},
                  "rows": ids.shape[0], "processes": world, "lr": lr_at(step - 1, cfg),
                  "elapsed_s": round(time.time() - t0, 1)}
        log.write(json.dumps(record) + "\n")
        log.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step % cfg.eval_every == 0 or step == cfg.steps) and (lead or sharded):  # sharded: every rank forwards
            metrics, evaluated_at = evaluate(model, fmt, vq, cfg), step
            if lead:
                tqdm.write(json.dumps({"step": step, **metrics}))
                log.write(json.dumps({"step": step, **metrics}) + "\n")
        if step % cfg.save_every == 0 or step == cfg.steps:
            checkpoint(metrics)
    bar.close()
    log.close()
    if world > 1:
        dist.barrier()
    return metrics


def load_ar(path: str | Path) -> UnifiedModel:
    return load_component(path, UnifiedConfig, UnifiedModel).eval().requires_grad_(False)
