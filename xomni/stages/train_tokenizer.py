"""Stage: train the SigLIP-VQ tokenizer by aligning it with a small LM on understanding tasks, then freeze it.

    python -m xomni.cli train tokenizer --preset tiny [--out out/tiny] [--steps N]

The paper aligns SigLIP-VQ with an LLM on captioning and VQA so its tokens carry semantics. We do the same: image ->
SigLIP-VQ -> semantic embeddings -> a tiny Qwen2 that answers (loss on answer tokens only), plus the VQ codebook and
commitment terms.

Deviations at tiny scale, each because the paper's tokenizer starts from a pretrained SigLIP2 and ours from scratch:
- Dense heads. SigLIP2's pretraining (LocCa decoder, self-distillation) already gives dense, text-reading features.
  Here linear heads on the semantic embeddings (the decode-side adapter's output, which is also what the diffusion
  decoder reads) predict each cell's ground-truth semantics (glyph, plate, object colour and shape, background).
  The targets are semantic, never pixels. Heads on single code vectors trained far slower (docs/image_side.md).
- Text-dense scenes. `dense_share` of every batch is drawn with `WorldConfig.dense_text`, so each of the world's
  Chinese characters (300, `N_CHARS_ZH`) is seen hundreds of times rather than a few dozen (run 1 read 0.4% of
  them from its tokens).
- Dense heads first. For `heads_first` steps only the heads train the encoder (no LM): SigLIP2 is pretrained
  before X-Omni aligns it, and a glyph head trained alone learned the 500 characters the world had then in ~400
  steps here, while with the LM from the start it had learned 5% of them after 600 (docs/image_side.md).
- Codes placed after the features exist. For `codebook_after` steps the quantiser is bypassed (the adapter reads
  the normalised features); then spherical k-means on the encoder's outputs places every code on the data and
  quantisation starts. Codes placed on a random encoder's outputs, then kept alive by restarts, merged glyphs that
  the encoder later learned to tell apart. Dead-code restarts continue every `restart_every` steps until
  `restart_until` of the run (a restart right before the final evaluation moved held-out VQA from 0.94 at step 900
  to 0.63 at step 1200 in run 1, as the re-seeded codes change the embeddings the LM reads).

Outputs in --out: `text_tokenizer.json` (BPE trained on the training split's text), `tokenizer/` (SigLIP-VQ),
`alignment_lm/`, `tokenizer_state.pt` (resume) and `tokenizer_log.jsonl`.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from xomni.checkpoint import (load_component, load_train_state, open_run_log, save_component, save_train_state,
                              write_text_atomically)
from xomni.data.batches import label_batch, pixels_of, scene_batch, understanding_pairs
from xomni.data.world import (BACKGROUND_LABELS, CHARS_ZH, COLOR_LABELS, GLYPH_INDEX, GLYPHS, PLATE_LABELS,
                              SHAPE_LABELS, SILHOUETTE, WORDS_EN, WorldConfig, caption, is_reserved_word, make_scene,
                              ZH_QUADRANTS, prompts, render, questions)
from xomni.devices import resolve_device
from xomni.errors import check_at_least
from xomni.schedule import check_resumed_schedule, warmup_cosine
from xomni.tokenizer.alignment import AlignmentConfig, AlignmentLM
from xomni.tokenizer.siglip_vq import (PRESETS, SiglipVQ, SiglipVQConfig, kmeans, load_official_projector,
                                       load_siglip_encoder, utilization)
from xomni.tokenizer.text import TextTokenizer

DENSE_HEADS = {"glyph": len(GLYPHS), "plate": len(PLATE_LABELS), "color": len(COLOR_LABELS),
               "shape": len(SHAPE_LABELS), "background": len(BACKGROUND_LABELS),
               "silhouette": SILHOUETTE * SILHOUETTE}  # the last: per-sub-square object coverage, not classes


def dense_losses(heads: nn.ModuleDict, embeddings: torch.Tensor, labels: dict) -> dict[str, torch.Tensor]:
    """One loss per dense head: cross-entropy over each cell's class; for the silhouette, binary cross-entropy
    against the covered share of each sub-square."""
    out = {k: F.cross_entropy(heads[k](embeddings).flatten(0, 2), labels[k].flatten())
           for k in heads if k != "silhouette"}
    out["silhouette"] = F.binary_cross_entropy_with_logits(heads["silhouette"](embeddings), labels["silhouette"])
    return out


@dataclass
class Config:
    preset: str = "tiny"
    out: str = "out/tiny"
    steps: int = 1500
    batch_size: int = 32
    dense_share: float = 0.5  # share of each batch drawn as text-dense scenes (WorldConfig.dense_text)
    lr: float = 1e-3  # tokenizer and dense heads
    lm_lr: float = 5e-4  # alignment LM
    turns: int = 4  # (question, answer) turns per image in the LM's sequences
    warmup: int = 100
    weight_decay: float = 0.05
    dense_weight: float = 1.0  # per dense head
    glyph_weight: float = 3.0  # the glyph head's extra weight: the characters are the slowest thing to learn
    heads_first: int = 500  # first steps: the dense heads alone (no LM), as SigLIP2 is pretrained before alignment
    codebook_after: int = 800  # steps on continuous features, then k-means places the codes and quantisation starts
    kmeans_scenes: int = 768
    kmeans_iters: int = 10
    restart_every: int = 50
    restart_until: float = 0.9  # no restarts after this fraction of the steps: the LM must settle on the final codes
    save_every: int = 100
    eval_every: int = 300
    eval_n: int = 128
    sizes: str = "128x128,128x128,128x128,128x192,192x128"  # one size per batch, cycled (height x width)
    bpe_vocab: int = 2048
    bpe_scenes: int = 4000
    spell_quoted: bool = True  # the BPE splits quoted text into characters (xomni/tokenizer/text.py)
    seed: int = 0
    device: str = "auto"  # auto (a GPU when one is visible, else the CPU), cpu or cuda (xomni/devices.py)
    resume: bool = True
    lm_only: bool = False  # keep the tokenizer frozen and train only the alignment LM (and the dense heads)
    shards: str = ""  # with lm_only: token shard folders (comma-separated) to read the codes from; no encoder runs
    siglip_path: str = ""  # paper scale: a local SigLIP/SigLIP2 vision tower to start the encoder from
    projector_path: str = ""  # paper scale: X-Omni's released projector (quant conv, codebook, decode adapter); its
    # codebook is kept: quantised from step 0, no k-means, no restarts


def parse_sizes(sizes: str) -> list[tuple[int, int]]:
    """"128x128,64x128" -> [(128, 128), (64, 128)] (height x width), or a clear error."""
    out = []
    for item in sizes.split(","):
        try:
            h, w = (int(x) for x in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"--sizes takes HEIGHTxWIDTH[,HEIGHTxWIDTH...], got {sizes!r}") from None
        out.append((h, w))
    return out


def train_text_corpus(n_scenes: int) -> list[str]:
    """Training-split text only, so that held-out sign words do not become single BPE tokens by accident. Not all of
    them: a held-out word that is also a word of the captions and questions (colour and shape names such as "red" or
    "circle", or "ground" of "background") is learned from those (8 in the shipped text tokenizer). The signs' text
    is spelled character by character in quotes (`spell_quoted`), so no sign's word is one token either way."""
    cfg = WorldConfig()
    texts = [" ".join(w for w in WORDS_EN if not is_reserved_word(w)), CHARS_ZH]
    for i in range(n_scenes):
        s = make_scene(cfg, "train", i)
        texts += [caption(s), *prompts(s).values(), *(q.question + " " + q.answer for q in questions(s))]
    return texts


def encode_pairs(tok: TextTokenizer, pairs: list, eos_id: int):
    """Per sequence one (question, answer) or a list of them (turns, one after the other) -> ids, labels (answers +
    eos only), mask; right-padded (B, L)."""
    seqs = []
    for turns in pairs:
        ids, labels = [], []
        for q, a in [turns] if isinstance(turns, tuple) else turns:
            qi, ai = tok.encode(q + "\n"), tok.encode(a) + [eos_id]
            ids += qi + ai
            labels += [-100] * len(qi) + ai
        seqs.append((ids, labels))
    L = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), L), eos_id, dtype=torch.long)
    labels = torch.full((len(seqs), L), -100, dtype=torch.long)
    mask = torch.zeros(len(seqs), L, dtype=torch.long)
    for b, (s, lab) in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
        labels[b, : len(s)] = torch.tensor(lab)
        mask[b, : len(s)] = 1
    return ids, labels, mask


def shard_batches(folders: str, batch_size: int, seed: int, tokenizer: Path | None = None):
    """step -> (scenes, codes (B, h, w)) from token shard folders, in one fixed shuffled order (resumable); the
    shards must hold training scenes, written by `tokenizer` when given."""
    from xomni.stages.tokenize import load_shard_folders  # tokenize imports this module

    sources, rows, order = load_shard_folders(folders, seed, tokenizer)

    def batch(step: int):
        picked = [rows[order[k % len(order)]] for k in range(step * batch_size, (step + 1) * batch_size)]
        scenes = [make_scene(sources[i][1], sources[i][0], int(sources[i][2][j])) for i, j in picked]
        return scenes, torch.stack([sources[i][3][j] for i, j in picked])

    return batch


def lr_at(step: int, cfg: Config, peak: float) -> float:
    return warmup_cosine(step, cfg.steps, cfg.warmup, peak, 0.1)


def training_batch(cfg: Config, step: int, offset: int = 0) -> tuple[list, torch.Tensor]:
    """The step's scenes (a fixed share of them text-dense) and pixels; the step fixes which scenes and which size,
    so a resumed run sees the same order."""
    sizes = parse_sizes(cfg.sizes)
    H, W = sizes[step % len(sizes)]
    n_dense = round(cfg.dense_share * cfg.batch_size)
    n_plain = cfg.batch_size - n_dense
    plain = [make_scene(WorldConfig(width=W, height=H), "train", offset + step * n_plain + j) for j in range(n_plain)]
    dense = [make_scene(WorldConfig(width=W, height=H, dense_text=True), "train", offset + step * n_dense + j)
             for j in range(n_dense)]
    scenes = plain + dense
    return scenes, pixels_of([render(s) for s in scenes])


@torch.no_grad()
def init_codebook(vq: SiglipVQ, cfg: Config) -> None:
    """k-means on the encoder's (normalised) outputs over `kmeans_scenes` training scenes drawn like the batches,
    from indices no training step reaches."""
    was_training = vq.training
    vq.eval()
    device = vq.codebook.device
    z = [F.normalize(vq.encode_features(training_batch(cfg, i, offset=10**8)[1].to(device)), dim=-1).flatten(0, 2)
         for i in range(max(1, cfg.kmeans_scenes // cfg.batch_size))]
    vq.codebook.copy_(kmeans(torch.cat(z), vq.config.codebook_size, cfg.kmeans_iters, torch.Generator().manual_seed(cfg.seed)))
    vq.train(was_training)


EVAL_KINDS = ("color", "count", "presence")


def _eval_question(scene, i: int):
    """The held-out question for scene i: kinds rotate with i; a scene without that kind gives its first other."""
    qs = [q for q in questions(scene) if q.kind in EVAL_KINDS]
    of_kind = [q for q in qs if q.kind == EVAL_KINDS[i % 3]] or qs
    return of_kind[(i // 3) % len(of_kind)]  # presence alternates between its "yes" and its "no" question


@torch.no_grad()
def evaluate(vq: SiglipVQ, lm: AlignmentLM, tok: TextTokenizer, n: int, batch_size: int = 32,
             heads: nn.ModuleDict | None = None, quantize: bool = True) -> dict:
    """Held-out: VQA accuracy on colour/count/presence questions, codebook utilisation, text-code purity (the share
    of text cells whose code's most frequent (glyph, plate) label is their own; 1.0: codes name glyphs) and, given
    the dense heads, how often they read each English letter-half / Chinese character / object colour correctly
    from the semantic embeddings: what the decoder can possibly render. quantize=False reads the continuous
    features (the warm-up before the codes exist); utilisation and purity then describe the unused codebook."""
    vq.eval(), lm.eval()
    eos = tok.token_id("<|im_end|>")
    cfg = WorldConfig()
    correct = total = 0
    codes_all = []
    text_cells: dict[int, Counter] = defaultdict(Counter)  # code -> (glyph, plate) labels of the text cells it took
    hits = {"glyph_accuracy_en": [0, 0], "glyph_accuracy_zh": [0, 0], "object_color_head_accuracy": [0, 0],
            "silhouette_accuracy": [0, 0]}
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        scenes, pixels = scene_batch(cfg, "heldout", idx)
        q = vq(pixels.to(vq.codebook.device), quantize=quantize)
        codes_all.append(q.codes.flatten())
        labels = {k: v.to(q.codes.device) for k, v in label_batch(scenes).items()}
        key = labels["glyph"] * len(PLATE_LABELS) + labels["plate"]
        for code, k, glyph in zip(q.codes.flatten().tolist(), key.flatten().tolist(), labels["glyph"].flatten().tolist()):
            if glyph > 0:
                text_cells[code][k] += 1
        if heads is not None:
            glyph, color = heads["glyph"](q.embeddings).argmax(-1), heads["color"](q.embeddings).argmax(-1)
            first_zh = GLYPH_INDEX[CHARS_ZH[0] + ZH_QUADRANTS[0]]
            for name, mask, pred, truth in (
                ("glyph_accuracy_en", (labels["glyph"] > 1) & (labels["glyph"] < first_zh), glyph, labels["glyph"]),
                ("glyph_accuracy_zh", labels["glyph"] >= first_zh, glyph, labels["glyph"]),
                ("object_color_head_accuracy", labels["color"] > 0, color, labels["color"]),
            ):
                hits[name][0] += int((pred[mask] == truth[mask]).sum())
                hits[name][1] += int(mask.sum())
            # sub-squares of the cells an object touches, read as covered / not at one half
            edge = (labels["silhouette"] > 0).any(-1)
            inside = heads["silhouette"](q.embeddings)[edge] > 0
            hits["silhouette_accuracy"][0] += int((inside == (labels["silhouette"][edge] > 0.5)).sum())
            hits["silhouette_accuracy"][1] += int(inside.numel())
        qa = [_eval_question(s, i) for s, i in zip(scenes, idx)]
        answers = lm.answer(q.embeddings, [tok.encode(x.question + "\n") for x in qa], eos)
        for x, a in zip(qa, answers):
            correct += tok.decode(a).strip() == x.answer
            total += 1
    vq.train(), lm.train()
    n_text = sum(sum(c.values()) for c in text_cells.values())
    purity = sum(c.most_common(1)[0][1] for c in text_cells.values()) / n_text if n_text else float("nan")
    out = {"vqa_accuracy": correct / total,
           "codebook_utilization": utilization(torch.cat(codes_all), vq.config.codebook_size),
           "text_code_purity": purity}
    if heads is not None:
        out.update({k: a / b if b else float("nan") for k, (a, b) in hits.items()})
    return out


def main(cfg: Config) -> dict:
    check_at_least(cfg, 1, "steps", "batch_size", "save_every", "eval_every", "eval_n", "restart_every", "turns")
    if cfg.shards and not cfg.lm_only:
        raise ValueError("--shards is for --lm-only: the tokenizer itself trains on pixels")
    parse_sizes(cfg.sizes)  # before anything is written
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    state_path = out / "tokenizer_state.pt"
    # `--lm-only` continues a finished tokenizer run's state (runs/cpu_tiny.sh): those two may change on a resume
    state = load_train_state(state_path, cfg, may_change=("lm_only", "shards"), resume=cfg.resume)
    saved = (state or {}).get("config") or {}
    # a run resumed as what it was is held to its schedule; `--lm-only` after the tokenizer (or the tokenizer's command
    # rerun after that, as runs/cpu_tiny.sh does: it finds the later run's state and has nothing left to do) is another
    # phase, and a finished `--lm-only` run continued ("more alignment") is a new plan, as long as its --steps says
    same_phase = bool(saved.get("lm_only", False)) == cfg.lm_only
    finished = state is not None and state["step"] >= saved.get("steps", 0)
    if state is not None and same_phase and not (cfg.lm_only and finished):
        check_resumed_schedule(lambda k, n: (lr_at(k, replace(cfg, steps=n), cfg.lr),
                                             lr_at(k, replace(cfg, steps=n), cfg.lm_lr)),
                               saved.get("steps"), cfg.steps, state["step"])

    if cfg.lm_only and state is None and not cfg.projector_path:
        raise ValueError(f"--lm-only trains the alignment LM on a finished tokenizer: {out} holds no tokenizer run's "
                         "state (train the tokenizer there first), and no --projector-path gives its codebook")
    if not cfg.lm_only and not cfg.projector_path and cfg.steps <= cfg.codebook_after:
        print(f"warning: --steps {cfg.steps} ends before --codebook-after {cfg.codebook_after}: the codebook is never "
              "placed, so the saved tokenizer's codes mean nothing (fine for a smoke test, not for `xomni tokenize`)")

    out.mkdir(parents=True, exist_ok=True)
    # text tokenizer: trained once on the training split's text, then fixed for every later stage; the settings it
    # was trained with are kept beside it, so a run that asks for other ones is refused rather than given this one
    text_path = out / "text_tokenizer.json"
    bpe = {"bpe_vocab": cfg.bpe_vocab, "bpe_scenes": cfg.bpe_scenes, "spell_quoted": cfg.spell_quoted}
    bpe_path = out / "text_tokenizer_settings.json"
    if not text_path.is_file():
        TextTokenizer.train_bpe(train_text_corpus(cfg.bpe_scenes), cfg.bpe_vocab, cfg.spell_quoted).save(text_path)
        write_text_atomically(bpe_path, json.dumps(bpe) + "\n")
    tok = TextTokenizer.from_file(text_path)
    kept = json.loads(bpe_path.read_text()) if bpe_path.is_file() else {"spell_quoted": tok.spells_quoted}
    if tok.spells_quoted != kept["spell_quoted"]:
        raise ValueError(f"{text_path} does not match {bpe_path}: delete both to train the text tokenizer again")
    if changed := [f"{k}={kept[k]!r}" for k in kept if kept[k] != bpe[k]]:  # trained once and kept: as asked
        raise ValueError(f"{text_path} was trained with {', '.join(changed)}, the run asks for "
                         f"{', '.join(f'{k}={bpe[k]!r}' for k in kept if kept[k] != bpe[k])}: give another --out, or "
                         "delete it to train it again")
    eos = tok.token_id("<|im_end|>")

    # models
    vq_config: SiglipVQConfig = PRESETS[cfg.preset]
    vq = SiglipVQ(vq_config)
    if cfg.siglip_path:
        load_siglip_encoder(vq, cfg.siglip_path)
    if cfg.projector_path:
        load_official_projector(vq, cfg.projector_path)
    placed = cfg.lm_only or bool(cfg.projector_path)  # the codes exist already: the frozen tokenizer's, or X-Omni's
    lm_config = AlignmentConfig(vocab_size=tok.vocab_size, semantic_dim=vq_config.adapter_dim)
    lm = AlignmentLM(lm_config)
    heads = nn.ModuleDict({k: nn.Linear(vq_config.adapter_dim, n) for k, n in DENSE_HEADS.items()})
    vq.to(device), lm.to(device), heads.to(device)  # before the optimiser and its saved state, which follow them
    cfg = replace(cfg, device=str(device))  # the meta records where it ran
    params = list(vq.parameters()) + list(lm.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW([{"params": list(vq.parameters()) + list(heads.parameters()), "peak": cfg.lr},
                             {"params": list(lm.parameters()), "peak": cfg.lm_lr}],
                            lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    if cfg.lm_only:  # the optimiser keeps every parameter so a resumed state loads; frozen ones get no gradient
        vq.requires_grad_(False)
    usage = torch.zeros(vq_config.codebook_size, device=device)
    step = 0
    if state is not None:
        vq.load_state_dict(state["vq"]), lm.load_state_dict(state["lm"]), heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["opt"])
        usage, step = state["usage"].to(device), state["step"]
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:  # restarts draw on the GPU there
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        print(f"resumed from {state_path} at step {step}")
    n_params = sum(p.numel() for p in vq.parameters()) / 1e6
    print(f"SigLIP-VQ {n_params:.2f}M params, alignment LM {sum(p.numel() for p in lm.parameters()) / 1e6:.2f}M")

    def checkpoint(metrics: dict) -> None:
        meta = {"stage": "train_tokenizer", "step": step, "metrics": metrics, "config": asdict(cfg)}
        save_component(out / "tokenizer", vq_config, vq, meta)
        save_component(out / "alignment_lm", lm_config, lm, meta)
        save_train_state(state_path, {"vq": vq.state_dict(), "lm": lm.state_dict(), "heads": heads.state_dict(),
                                      "opt": opt.state_dict(), "usage": usage, "step": step,
                                      "torch_rng": torch.get_rng_state(),
                                      "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                         cfg)

    written = out / "tokenizer" if (out / "tokenizer" / "model.safetensors").is_file() else None  # the frozen one
    from_shards = shard_batches(cfg.shards, cfg.batch_size, cfg.seed, written) if cfg.shards else None
    log = open_run_log(out / "tokenizer_log.jsonl", state_path, state)
    metrics: dict = {}
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="tokenizer", dynamic_ncols=True)
    while step < cfg.steps:
        # the step's scenes: rendered and encoded, or (from_shards) their frozen codes read from disk, no encoder
        if from_shards is not None:
            scenes, codes = from_shards(step)
            codes = codes.to(device)
        else:
            scenes, pixels = training_batch(cfg, step)
            pixels, labels = pixels.to(device), {k: v.to(device) for k, v in label_batch(scenes).items()}
        rng = random.Random(f"tokenizer-text/{step}")
        ids, lm_labels, mask = (x.to(device) for x in encode_pairs(
            tok, [understanding_pairs(s, rng, cfg.turns) for s in scenes], eos))

        if step == cfg.codebook_after and not placed:  # a resumed run redoes it: same weights, same codes
            init_codebook(vq, cfg)
            usage.zero_()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg, group["peak"])
        parts: dict[str, torch.Tensor] = {}
        if from_shards is not None:  # the LM alone on the frozen codes
            with torch.no_grad():
                embeddings = vq.embed_codes(codes)
            lm_loss = loss = lm(embeddings, ids, lm_labels, mask)
        else:
            q = vq(pixels, quantize=step >= cfg.codebook_after or placed)
            lm_loss = lm(q.embeddings, ids, lm_labels, mask) if step >= cfg.heads_first or cfg.lm_only else q.vq_loss * 0
            dense = dense_losses(heads, q.embeddings, labels)
            dense_loss = sum(dense.values()) + (cfg.glyph_weight - 1) * dense["glyph"]
            loss = lm_loss + cfg.dense_weight * dense_loss + q.vq_loss
            parts = {"dense": dense_loss, "vq": q.vq_loss, "glyph": dense["glyph"]}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if from_shards is None:
            usage += torch.bincount(q.codes.flatten(), minlength=vq_config.codebook_size).float()
        step += 1

        restarted = None
        if (step % cfg.restart_every == 0 and cfg.codebook_after < step <= cfg.restart_until * cfg.steps
                and not placed):
            restarted = vq.restart_codes(usage == 0, q.z.flatten(0, 2))
            usage.zero_()
        record = {"step": step, "loss": loss.item(), "lm": lm_loss.item(), **{k: v.item() for k, v in parts.items()},
                  "lr": lr_at(step - 1, cfg, cfg.lr), "elapsed_s": round(time.time() - t0, 1)}
        if restarted is not None:
            record["restarted_codes"] = restarted
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = evaluate(vq, lm, tok, cfg.eval_n, heads=heads, quantize=step > cfg.codebook_after or placed)
            record.update(metrics)
            tqdm.write(json.dumps(record))
        log.write(json.dumps(record) + "\n")
        log.flush()
        bar.update(1)
        bar.set_postfix({k: f"{record[k]:.3f}" for k in ("lm", "dense") if k in record})
        if step % cfg.save_every == 0 or step == cfg.steps:
            checkpoint(metrics)
    bar.close()
    log.close()
    return metrics


def load_tokenizer(path: str | Path) -> SiglipVQ:
    return load_component(path, SiglipVQConfig, SiglipVQ).eval().requires_grad_(False)


def load_alignment_lm(path: str | Path) -> AlignmentLM:
    return load_component(path, AlignmentConfig, AlignmentLM).eval().requires_grad_(False)
