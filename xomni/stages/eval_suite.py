"""Eval: run a synthetic suite (xomni/eval/suites.py) on a source of images, judge them, score them.

    python -m xomni.cli eval synth-text-en [--out DIR] [--n 200] [--source renders|reconstructions|model]

Three steps, each kept on disk so nothing is lost and scoring re-runs without regenerating:
1. images: `DIR/images/NNNN.png` for every item, from the item's scene rendered (`renders`), passed through the
   tokenizer and decoder (`reconstructions`), or generated from its prompt by the unified model (`model`, once it
   exists); `DIR/manifest.jsonl` holds the items. Images already there for the same manifest are kept. A generated
   image's count of flat positions (`xomni.engine.flat_positions`) goes to `DIR/sampled.jsonl`.
2. judge: `DIR/judged.jsonl`, the judge's raw output per item (OCR text, scene-judge objects, the model's answer),
   appended as it goes; a rerun continues after the last judged item.
3. score: `DIR/metrics.json`, a flat object with `suite`, `score` (the headline in [0, 1]), `n`, `judge`, `source`,
   the suite version and the suite's detailed metrics; for generated images whose sampling was recorded, the share
   that derailed (`derailed`, and `derailed/length/...` by text length).
Understanding suites (synth-vqa, synth-pope) are answered by the model under test: the unified model when the
checkpoint has one (`ar/`), otherwise the tokenizer's alignment LM reading the image's tokens. `--cfg` and
`--min-p` set the sampler for `--source model`, as for `xomni generate`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from xomni.checkpoint import open_jsonl, read_jsonl, weights_stamp, write_text_atomically
from xomni.data.batches import pixels_of
from xomni.data.world import Scene, render
from xomni.eval import suites
from xomni.eval.geneval import Detection
from xomni.errors import MissingPart, check_at_least
from xomni.eval.ocr import ENGINES, OCRPool
from xomni.eval.scene_judge import JUDGE_THRESHOLDS, SceneJudge, SceneObject
from xomni.engine import DERAIL_POSITIONS, Sampling, flat_positions
from xomni.pipeline import DEFAULT_CHECKPOINT, ImagePipeline, Pipeline, to_image

SOURCES = ("renders", "reconstructions", "model")
UNDERSTANDING = ("synth-vqa", "synth-pope")  # answered by the model under test


@dataclass
class Config:
    suite: str = "synth-text-en"
    out: str = ""  # default: out/eval/SUITE-SOURCE
    checkpoint: str = str(DEFAULT_CHECKPOINT)
    n: int = 200
    source: str = "renders"
    ocr: str = "rapidocr"  # OCR engine: rapidocr | tesseract
    ocr_workers: int = 1
    steps: int = 20  # decoder sampling steps
    cfg: float = 1.0  # classifier-free guidance scale for --source model (1: off, X-Omni's default)
    min_p: float = 0.03  # the sampler's min-p for --source model
    temperature: float = 1.0  # the sampler's temperature for --source model (X-Omni's: 1)
    batch_size: int = 32
    seed: int = 0
    split: str = "heldout"  # train: the suite built from training scenes (memory, not a benchmark number)


def _manifest_header(cfg: Config) -> dict:
    uses_checkpoint = cfg.source != "renders" or cfg.suite in UNDERSTANDING
    return {"suite": cfg.suite, "version": suites.version(cfg.suite), "n": cfg.n, "source": cfg.source,
            "checkpoint": cfg.checkpoint if uses_checkpoint else None,
            "weights": weights_stamp(cfg.checkpoint) if uses_checkpoint else None,
            "steps": cfg.steps, "seed": cfg.seed, "ocr": cfg.ocr, "cfg": cfg.cfg, "min_p": cfg.min_p,
            "temperature": cfg.temperature, "split": cfg.split,
            # reconstructions decode each item with its own noise (`make_images`), not its batch's: a folder made
            # before that is made again rather than mixed
            **({"noise": "per item"} if cfg.source == "reconstructions" else {})}


def needed_parts(cfg: Config) -> list[str]:
    """The checkpoint parts the run reads: the unified model's for --source model, the image side's for
    reconstructions, and the answering model's for an understanding suite (the unified model's when the checkpoint
    has one, else the alignment LM's)."""
    parts: list[str] = []
    if cfg.source == "model":
        parts += Pipeline.PARTS
    elif cfg.source == "reconstructions":
        parts += ["tokenizer", "decoder"]
    if cfg.suite in UNDERSTANDING:
        parts += (Pipeline.PARTS if (Path(cfg.checkpoint) / "ar").is_dir()
                  else ["tokenizer", "alignment_lm", "text_tokenizer.json"])
    return list(dict.fromkeys(parts))


# what a header written before a setting existed ran with
ABSENT = {"temperature": 1.0}


def _same_run(old: dict, header: dict) -> bool:
    """Whether a folder's manifest header is this run's (a header written before weights were stamped is held to
    everything else; one written before a setting of `ABSENT` existed ran at its value there)."""
    return all(old.get(k, ABSENT.get(k)) == v for k, v in header.items() if k in old or k != "weights")


def _sample(model: Pipeline, cfg: Config, item: dict, k: int) -> tuple:
    """Item k's prompt at its scene's size, seeded by its index: the rollout, its codes and the generator (which the
    decoder goes on with, as in Pipeline.generate)."""
    s = item["scene"]
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + k)
    sampling = Sampling(temperature=cfg.temperature, min_p=cfg.min_p, cfg=cfg.cfg)
    rollout, codes = model.sample_codes([item["prompt"]], s["width"], s["height"], sampling, gen)
    return rollout, codes, gen


def _record(sampled: Path, rows: list[tuple[str, int]]) -> None:
    with open_jsonl(sampled) as f:  # after a line a kill cut short, if any
        f.writelines(json.dumps({"id": i, "flat_positions": n}) + "\n" for i, n in rows)


def make_images(cfg: Config, items: list[dict], folder: Path, sampled: Path | None = None) -> list[Path]:
    """Write any missing image of the items; returns every image path in item order. `sampled` (generated images):
    where each image's flat positions are appended, before the image is written; an image already there without
    its count (made before counts were kept) is sampled again with its seed, without the decoder, to count them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{k:04d}.png" for k in range(len(items))]
    todo = [k for k, p in enumerate(paths) if not p.is_file()]
    recorded = {r["id"] for r in read_jsonl(sampled)} if sampled is not None and sampled.is_file() else set()
    uncounted = [k for k, p in enumerate(paths)
                 if sampled is not None and p.is_file() and items[k]["id"] not in recorded]
    if not todo and not uncounted:
        return paths
    if cfg.source == "model":
        if not (Path(cfg.checkpoint) / "ar").is_dir():
            raise MissingPart(f"--source model needs a unified AR model ({cfg.checkpoint}/ar): train one with "
                              "runs/cpu_tiny.sh, or use --source renders or --source reconstructions")
        model = Pipeline.from_pretrained(cfg.checkpoint)
    if uncounted:
        counts = [(items[k]["id"], int(flat_positions(_sample(model, cfg, items[k], k)[0].top)[0]))
                  for k in tqdm(uncounted, desc="count flat positions", dynamic_ncols=True)]
        _record(sampled, counts)
    pipe = ImagePipeline.from_pretrained(cfg.checkpoint) if cfg.source == "reconstructions" else None
    for start in tqdm(range(0, len(todo), cfg.batch_size), desc=f"images ({cfg.source})", dynamic_ncols=True):
        batch = todo[start : start + cfg.batch_size]
        flat: list[tuple[str, int]] = []
        if cfg.source == "model":
            images = []
            for k in batch:
                rollout, codes, gen = _sample(model, cfg, items[k], k)
                images += model.render(codes, cfg.steps, gen)
                flat.append((items[k]["id"], int(flat_positions(rollout.top)[0])))
        else:
            images = [render(Scene.from_dict(items[k]["scene"])) for k in batch]
        if pipe is not None:
            by_size: dict[tuple, list[int]] = {}
            for j, im in enumerate(images):
                by_size.setdefault(im.size, []).append(j)
            for js in by_size.values():
                codes = pipe.encode(pixels_of([images[j] for j in js]))
                gens = [torch.Generator().manual_seed(cfg.seed * 7919 + batch[j]) for j in js]  # each item its own
                for j, x in zip(js, pipe.decode(codes, steps=cfg.steps, generator=gens)):
                    images[j] = to_image(x)
        if sampled is not None and flat:
            _record(sampled, flat)
        for k, im in zip(batch, images):
            tmp = paths[k].with_suffix(".tmp.png")
            im.save(tmp)
            tmp.replace(paths[k])
    return paths


def derail_metrics(items: list[dict], sampled: Path) -> dict:
    """The share of derailed images, overall and by text length, when every item's sampling was recorded."""
    rows = {r["id"]: r["flat_positions"] for r in read_jsonl(sampled)} if sampled.is_file() else {}
    if any(it["id"] not in rows for it in items):
        return {}  # images made before sampling was recorded (or not generated): no count
    out = {"derailed": sum(rows[it["id"]] >= DERAIL_POSITIONS for it in items) / len(items)}
    for length in sorted({it["length"] for it in items if "length" in it}):
        group = [it for it in items if it.get("length") == length]
        out[f"derailed/length/{length}"] = sum(rows[it["id"]] >= DERAIL_POSITIONS for it in group) / len(group)
    return out


class ModelAnswerer:
    """The unified model answers (greedy), reading each image through the tokenizer."""

    name = "unified-model"

    def __init__(self, checkpoint: str | Path):
        self.pipe = Pipeline.from_pretrained(checkpoint)

    def answer(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        return [self.pipe.understand(im, q, max_new_tokens=48) for im, q in zip(images, questions)]


class AlignmentAnswerer:
    """The model under test for understanding suites on a checkpoint without a unified model (the image side alone):
    the tokenizer's alignment LM."""

    name = "alignment-lm"

    def __init__(self, checkpoint: str | Path):
        from xomni.stages.train_tokenizer import load_alignment_lm, load_tokenizer
        from xomni.tokenizer.text import TextTokenizer

        ckpt = Path(checkpoint)
        for part in ("tokenizer", "alignment_lm", "text_tokenizer.json"):
            if not (ckpt / part).exists():
                raise FileNotFoundError(f"{ckpt / part} is missing: understanding suites need a checkpoint with "
                                        "tokenizer/, alignment_lm/ and text_tokenizer.json")
        self.vq, self.lm = load_tokenizer(ckpt / "tokenizer"), load_alignment_lm(ckpt / "alignment_lm")
        self.tok = TextTokenizer.from_file(ckpt / "text_tokenizer.json")

    def answer(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        semantic = self.vq.embed_codes(self.vq.encode(pixels_of(images)))
        ids = self.lm.answer(semantic, [self.tok.encode(q + "\n") for q in questions], self.tok.token_id("<|im_end|>"))
        return [self.tok.decode(a).strip() for a in ids]


def judge_items(cfg: Config, items: list[dict], paths: list[Path], judged_path: Path) -> tuple[list[dict], str]:
    """Raw judge outputs per item, resumed from `judged_path`; returns them and the judge's name."""
    done = read_jsonl(judged_path) if judged_path.is_file() else []
    if cfg.suite in UNDERSTANDING:  # the model under test: the unified model once the checkpoint has one
        answerer = ModelAnswerer if (Path(cfg.checkpoint) / "ar").is_dir() else AlignmentAnswerer
        judge, name = answerer(cfg.checkpoint), answerer.name
    else:
        scene_judge = SceneJudge() if cfg.suite in ("synth-geneval", "synth-dpg") else None
        ocr = OCRPool(cfg.ocr, workers=cfg.ocr_workers) if cfg.suite != "synth-geneval" else None
        name = " + ".join(x.name for x in (scene_judge, ocr) if x is not None)
    with open_jsonl(judged_path) as f:  # a kill's cut line dropped: the rerun goes on after the last whole one
        for start in tqdm(range(len(done), len(items), cfg.batch_size), desc="judge", dynamic_ncols=True):
            ks = range(start, min(len(items), start + cfg.batch_size))
            images = [Image.open(paths[k]).convert("RGB") for k in ks]
            if cfg.suite in UNDERSTANDING:
                outputs = [{"answer": a} for a in judge.answer(images, [items[k]["question"] for k in ks])]
            else:
                reads = ocr.read_batch(images) if ocr is not None else [None] * len(images)
                objs = [scene_judge.objects(im) for im in images] if scene_judge else [None] * len(images)
                outputs = [{"ocr": r, "objects": [asdict(o) for o in ob] if ob is not None else None}
                           for r, ob in zip(reads, objs)]
            for k, out in zip(ks, outputs):
                row = {"id": items[k]["id"], **out}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                done.append(row)
            f.flush()
    if cfg.suite not in UNDERSTANDING and ocr is not None:
        ocr.close()
    return done, name


def score(suite: str, items: list[dict], judged: list[dict]) -> dict:
    if [j["id"] for j in judged] != [it["id"] for it in items]:
        raise ValueError("judged outputs do not match the manifest's items; delete judged.jsonl to judge again")
    if suite in suites.TEXT_SUITES:
        return suites.score_text(items, [j["ocr"] for j in judged])
    objects = [[SceneObject(o["shape"], o["color"], tuple(o["box"]), o["score"]) for o in j["objects"]]
               if j.get("objects") is not None else None for j in judged]
    if suite == "synth-geneval":
        dets = []
        for objs in objects:
            per_class: dict[str, list[Detection]] = {}
            for o in objs:
                per_class.setdefault(o.shape, []).append(Detection(o.box, o.score, o.color))
            dets.append(per_class)
        return {**suites.score_geneval(items, dets, *JUDGE_THRESHOLDS), "thresholds": list(JUDGE_THRESHOLDS)}
    if suite == "synth-dpg":
        return suites.score_dpg(items, objects, [j["ocr"] for j in judged])
    if suite == "synth-vqa":
        return suites.score_vqa(items, [j["answer"] for j in judged])
    return suites.score_pope(items, [j["answer"] for j in judged])


def main(cfg: Config) -> dict:
    if cfg.suite not in suites.SUITES:
        raise ValueError(f"unknown suite {cfg.suite!r}; choose one of {suites.SUITES}")
    if cfg.source not in SOURCES:
        raise ValueError(f"unknown source {cfg.source!r}; choose one of {SOURCES}")
    # every setting checked before a folder's earlier results are replaced (a different header deletes them)
    items = suites.build(cfg.suite, cfg.n, split=cfg.split)
    check_at_least(cfg, 1, "steps", "batch_size")
    if cfg.source == "model":
        Sampling(temperature=cfg.temperature, min_p=cfg.min_p, cfg=cfg.cfg)
    if cfg.ocr not in ENGINES:  # in the header whatever the suite: a typo would replace a folder's results
        raise ValueError(f"unknown OCR engine {cfg.ocr!r}; choose one of {ENGINES}")
    if missing := [p for p in needed_parts(cfg) if not (Path(cfg.checkpoint) / p).exists()]:
        hint = (" (--source renders or --source reconstructions need no unified AR model)"
                if "ar" in missing and cfg.source == "model" else "")
        raise MissingPart(f"checkpoint {cfg.checkpoint} lacks {', '.join(missing)}, which --source {cfg.source} on "
                          f"{cfg.suite} needs: train them with runs/cpu_tiny.sh, or pass --checkpoint DIR{hint}")
    out = Path(cfg.out or f"out/eval/{cfg.suite}-{cfg.source}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    header = _manifest_header(cfg)
    manifest = out / "manifest.jsonl"
    if manifest.is_file():
        old = read_jsonl(manifest)
        if old and not _same_run(old[0], header):  # another suite, source, checkpoint, weights or judge: afresh
            for p in (out / "images").glob("*.png"):
                p.unlink()
            for name in ("judged.jsonl", "sampled.jsonl", "metrics.json"):  # no earlier run's metrics left behind
                (out / name).unlink(missing_ok=True)
    write_text_atomically(manifest, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in [header, *items]))
    sampled = out / "sampled.jsonl"
    paths = make_images(cfg, items, out / "images", sampled if cfg.source == "model" else None)
    judged, judge_name = judge_items(cfg, items, paths, out / "judged.jsonl")
    metrics = {"suite": cfg.suite, **score(cfg.suite, items, judged), "n": len(items), "judge": judge_name,
               "source": cfg.source, "split": cfg.split, "version": suites.version(cfg.suite),
               "checkpoint": header["checkpoint"], "seconds": round(time.time() - t0, 1),
               **({"cfg": cfg.cfg, "min_p": cfg.min_p, "temperature": cfg.temperature,
                   **derail_metrics(items, sampled)}
                  if cfg.source == "model" else {})}
    metrics = {"suite": metrics.pop("suite"), "score": metrics.pop("score"), **metrics}
    write_text_atomically(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics
