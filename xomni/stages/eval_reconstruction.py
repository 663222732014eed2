"""Eval: held-out scenes -> tokens -> decoder, scored by the OCR judge, the colour check and the alignment LM.

    python -m xomni.cli eval reconstruction --out out/eval_recon [--n 256] [--checkpoint checkpoints/tiny]

Writes DIR/metrics.json (n, ocr_word_accuracy_en, ocr_char_accuracy_zh, the same two with the suffix `_original`
for the judge on the original renders, object_color_accuracy (+ `_original`), codebook_utilization (over
`utilization_n` held-out scenes, encoded only), vqa_accuracy, psnr, judge, timings, and `settings`), DIR/grid.png
(original | reconstruction pairs) and DIR/samples.jsonl (what the judge read for each scene).

A rerun into the same DIR returns its metrics.json at once when they were computed with the same settings on the
same weights (`settings`: the counts, steps, seed, world and metrics versions, and a digest of the tokenizer,
decoder, alignment LM and text tokenizer), so a resumed `runs/cpu_tiny.sh` does not evaluate the image side again;
anything else evaluates afresh.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from xomni.checkpoint import weights_stamp, write_text_atomically
from xomni.data.batches import scene_batch
from xomni.data.world import SPLIT_VERSION, WorldConfig, font
from xomni.errors import check_at_least
from xomni.eval.ocr import RapidOCRJudge
from xomni.eval.reconstruction import object_colors, text_hits
from xomni.pipeline import DEFAULT_CHECKPOINT, ImagePipeline, to_image
from xomni.stages.train_tokenizer import evaluate as evaluate_alignment, load_alignment_lm
from xomni.tokenizer.siglip_vq import utilization
from xomni.tokenizer.text import TextTokenizer


@dataclass
class Config:
    out: str = "out/eval_reconstruction"
    checkpoint: str = str(DEFAULT_CHECKPOINT)
    n: int = 256
    steps: int = 20
    batch_size: int = 32
    seed: int = 0
    grid: int = 16  # pairs shown in grid.png
    utilization_n: int = 4096  # held-out scenes encoded (not decoded) to measure codebook utilisation
    ocr_threads: int = 1


METRICS_VERSION = "r1"  # bump when what a metric measures changes: earlier results are then evaluated afresh


def settings(cfg: Config) -> dict:
    """What the metrics depend on: a rerun with the same settings on the same weights gives the same numbers (the
    parts this reads only: an AR model published beside them later changes nothing here)."""
    return {"version": METRICS_VERSION, "n": cfg.n, "steps": cfg.steps, "batch_size": cfg.batch_size,
            "seed": cfg.seed, "utilization_n": cfg.utilization_n, "world": SPLIT_VERSION,
            "checkpoint": str(Path(cfg.checkpoint)),
            "weights": weights_stamp(cfg.checkpoint, ("tokenizer", "decoder", "alignment_lm"),
                                     ("text_tokenizer.json",))}


def earlier_result(out: Path, current: dict) -> dict | None:
    """The metrics an earlier run wrote into `out` with these settings, or None (none, others, or a file cut short)."""
    path = out / "metrics.json"
    if not (path.is_file() and (out / "samples.jsonl").is_file()):
        return None
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return metrics if metrics.get("settings") == current else None


def main(cfg: Config) -> dict:
    check_at_least(cfg, 1, "n", "steps", "batch_size")
    out = Path(cfg.out)
    ckpt = Path(cfg.checkpoint)
    pipe = ImagePipeline.from_pretrained(ckpt)  # checks the folder before anything is written
    current = settings(cfg)
    if (earlier := earlier_result(out, current)) is not None:
        print(f"{out / 'metrics.json'} holds this evaluation (same settings, same weights): not run again")
        return earlier
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)  # no earlier result beside this run's samples if it is cut short
    judge = RapidOCRJudge(threads=cfg.ocr_threads)
    world = WorldConfig()
    t0 = time.time()

    hits = {"en": [0, 0], "zh": [0, 0], "en_original": [0, 0], "zh_original": [0, 0]}
    colors = {"recon": [0, 0], "original": [0, 0]}
    sq_err, all_codes, rows, pairs = 0.0, [], [], []
    t_decode = t_judge = 0.0
    for start in tqdm(range(0, cfg.n, cfg.batch_size), desc="eval reconstruction", dynamic_ncols=True):
        scenes, pixels = scene_batch(world, "heldout", range(start, min(cfg.n, start + cfg.batch_size)))
        ts = time.time()
        codes = pipe.encode(pixels)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + start)
        recon = pipe.decode(codes, steps=cfg.steps, generator=gen)
        t_decode += time.time() - ts
        all_codes.append(codes.flatten())
        sq_err += (recon - pixels).pow(2).mean(dim=(1, 2, 3)).sum().item()
        ts = time.time()
        for scene, orig_t, rec_t in zip(scenes, pixels, recon):
            orig, rec = to_image(orig_t), to_image(rec_t)
            row = {"seed": scene.seed}
            if scene.text is not None:
                lang = scene.text.lang
                read_orig, read_rec = judge.read(orig), judge.read(rec)
                for key, read in ((lang, read_rec), (lang + "_original", read_orig)):
                    h, n = text_hits(scene.text.text, read, lang)
                    hits[key][0] += h
                    hits[key][1] += n
                row.update(text=scene.text.text, lang=lang, read=read_rec, read_original=read_orig)
            for key, img in (("recon", rec), ("original", orig)):
                named = object_colors(img, scene)
                colors[key][0] += sum(t == c for t, c in named)
                colors[key][1] += len(named)
            row["colors"] = object_colors(rec, scene)
            rows.append(row)
            if len(pairs) < cfg.grid:
                pairs.append((orig, rec, row.get("read", "")))
        t_judge += time.time() - ts

    def ratio(pair):
        return pair[0] / pair[1] if pair[1] else float("nan")

    for start in tqdm(range(cfg.n, cfg.utilization_n, 256), desc="codebook utilisation", dynamic_ncols=True):
        _, pixels = scene_batch(world, "heldout", range(start, min(cfg.utilization_n, start + 256)))
        all_codes.append(pipe.encode(pixels).flatten())
    tok = TextTokenizer.from_file(ckpt / "text_tokenizer.json")
    # the alignment LM is optional in a shipped folder (it only serves this number): without it, vqa_accuracy is null
    alignment = (evaluate_alignment(pipe.tokenizer, load_alignment_lm(ckpt / "alignment_lm"), tok, cfg.n)
                 if (ckpt / "alignment_lm").is_dir() else {"vqa_accuracy": None})
    mse = sq_err / cfg.n
    metrics = {
        "n": cfg.n,
        "ocr_word_accuracy_en": ratio(hits["en"]),
        "ocr_char_accuracy_zh": ratio(hits["zh"]),
        "ocr_word_accuracy_en_original": ratio(hits["en_original"]),
        "ocr_char_accuracy_zh_original": ratio(hits["zh_original"]),
        "object_color_accuracy": ratio(colors["recon"]),
        "object_color_accuracy_original": ratio(colors["original"]),
        "codebook_utilization": utilization(torch.cat(all_codes), pipe.tokenizer.config.codebook_size),
        "codebook_utilization_scenes": max(cfg.n, cfg.utilization_n),
        "vqa_accuracy": alignment["vqa_accuracy"],
        "psnr": 10 * math.log10(1 / max(mse, 1e-10)),
        "en_words": hits["en"][1],
        "zh_chars": hits["zh"][1],
        "objects": colors["recon"][1],
        "judge": judge.name,
        "split": "heldout",
        "decoder_steps": cfg.steps,
        "checkpoint": str(ckpt),
        "seconds_decode": round(t_decode, 1),
        "seconds_judge": round(t_judge, 1),
        "seconds_total": round(time.time() - t0, 1),
        "settings": current,
    }
    write_text_atomically(out / "samples.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    save_pair_grid(pairs, out / "grid.png")
    # last: a metrics.json with these settings is what a rerun takes as done
    write_text_atomically(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics


def save_pair_grid(pairs: list[tuple[Image.Image, Image.Image, str]], path: Path, per_row: int = 4) -> None:
    """Pairs (original | reconstruction) in a grid, what the OCR read under each reconstruction."""
    if not pairs:
        return
    W, H = pairs[0][0].size
    label = 14
    cols = min(per_row, len(pairs))
    n_rows = (len(pairs) + cols - 1) // cols
    grid = Image.new("RGB", (cols * (2 * W + 8), n_rows * (H + label + 8)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, (orig, rec, read) in enumerate(pairs):
        x, y = (i % cols) * (2 * W + 8), (i // cols) * (H + label + 8)
        grid.paste(orig, (x, y))
        grid.paste(rec, (x + W, y))
        draw.text((x + 2, y + H + 1), f"OCR: {read}"[:40], font=font(11), fill=(0, 0, 0))
    grid.save(path)
