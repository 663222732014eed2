"""Eval: score a folder of images laid out as an official benchmark's scripts expect, with a chosen judge.

    python -m xomni.cli eval longtext --images DIR --lang en [--judge rapidocr]     <prompt_id>_<k>.png
    python -m xomni.cli eval oneig --images DIR --lang zh [--tiles 2,2]              <id>*.png, one grid per prompt
    python -m xomni.cli eval geneval --images DIR                                    <NNNNN>/metadata.jsonl + samples/
    python -m xomni.cli eval dpg --images DIR --questions dpg_bench.csv --judge qwen2.5-vl:PATH   <item_id>.png

Prompt and metadata files come from `--bench` (the official files, as in ../shared/bench; `$XOMNI_BENCH` sets the
default). Judges: `rapidocr` and `tesseract` run here; `qwen2.5-vl:PATH` and `got-ocr2:PATH` load the official
judges from a local folder (`pip install -e .[judges]`); `scene` is the synthetic world's scene judge, meaningful
only on images of that world. The judge used is written into every output: a number is never passed off as the
official judge's when it is not. Per-image results go to `OUT/results.jsonl` as they are judged; a rerun
continues after the images already there, so an interrupted or failed run loses nothing, and judges again an image
whose file changed since (each result records its file's digest). The scene judge scores GenEval at its own
thresholds (`scene_judge.JUDGE_THRESHOLDS`, as synth-geneval does), not Mask2Former's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from xomni.checkpoint import REPO_ROOT, file_digest, open_jsonl, read_jsonl, write_text_atomically
from xomni.errors import MissingPart
from xomni.eval import dpg, geneval, longtext, oneig
from xomni.eval.ocr import ENGINES, OCRPool

BENCHMARKS = ("longtext", "oneig", "geneval", "dpg")
DEFAULT_BENCH = os.environ.get("XOMNI_BENCH", str(REPO_ROOT.parent / "shared" / "bench"))


@dataclass
class Config:
    benchmark: str = "longtext"
    images: str = ""
    out: str = ""  # default: IMAGES/xomni_eval_BENCHMARK (+ _LANG for the text benchmarks)
    bench: str = DEFAULT_BENCH
    lang: str = "en"
    judge: str = ""  # default: rapidocr for longtext and oneig, scene for geneval (dpg needs qwen2.5-vl:PATH)
    ocr_workers: int = 1
    tiles: str = "2,2"  # OneIG: columns,rows of the grid of samples in each image
    questions: str = ""  # DPG: the official dpg_bench.csv
    pic_num: int = 4  # DPG: tiles per image (1 or 4, in a 2x2 grid)
    skip_first_question: bool = True  # DPG: the official loader's off-by-one (see xomni/eval/dpg.py)


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None


def _load_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set --bench to the folder of the official files)")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: does not parse ({e})") from None
    return out


def _close(judge) -> None:
    """Stop a judge's worker processes, if it has any."""
    if hasattr(judge, "close"):
        judge.close()


def make_text_judge(spec: str, workers: int):
    """An OCR-style judge: rapidocr | tesseract | qwen2.5-vl:PATH | got-ocr2:PATH."""
    if spec in ENGINES:
        return OCRPool(spec, workers=workers)
    name, _, path = spec.partition(":")
    if name in ("qwen2.5-vl", "got-ocr2") and path:
        from xomni.eval.official_judges import load_official_judge

        return load_official_judge(name, path)
    raise ValueError(f"unknown judge {spec!r}; use one of {ENGINES}, qwen2.5-vl:PATH or got-ocr2:PATH")


class Results:
    """results.jsonl, appended per image; a rerun skips an image judged already, if it was judged by the same judge
    with the same settings (each row records them; rows from before settings were recorded are held to the judge
    alone) and the file is the same (each row records its digest: an image generated again under the same name is
    judged again, its old row replaced). A last line cut short by a kill is dropped. `current` gives the rows of the
    images a run was given (an image since removed no longer counts)."""

    def __init__(self, path: Path, judge: str, settings: dict | None = None):
        self.path, self.judge, self.settings = path, judge, settings or {}
        self.rows = read_jsonl(path) if path.is_file() else []
        if self.rows and self.rows[0].get("judge") != judge:
            raise ValueError(f"{path} holds results of judge {self.rows[0].get('judge')!r}, not {judge!r}; "
                             "pass another --out or delete it")
        if self.rows and self.rows[0].get("settings", self.settings) != self.settings:
            raise ValueError(f"{path} holds results made with {self.rows[0]['settings']}, not {self.settings}; "
                             "pass another --out or delete it")
        self.digests = {r["image"]: r.get("digest") for r in self.rows}
        if path.is_file():
            open_jsonl(path).close()  # a last line cut by a kill dropped once, so that rows append after whole lines

    def pending(self, key: str, image: Path) -> bool:
        """Whether the image file `image`, named `key` in the results, still has to be judged (a row from before
        digests were recorded is taken as it is, as rows from before settings were)."""
        if key in self.digests and self.digests[key] is None:
            return False
        return self.digests.get(key) != file_digest(image)

    def add(self, row: dict, image: Path) -> None:
        row = {"judge": self.judge, "settings": self.settings, **row, "digest": file_digest(image)}
        stale = row["image"] in self.digests
        self.rows = [r for r in self.rows if r["image"] != row["image"]] + [row]
        # a stale row is dropped first (the file rewritten); otherwise the row is appended
        with (open_jsonl(self.path, lambda r: r.get("image") != row["image"]) if stale
              else self.path.open("a", encoding="utf-8")) as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.digests[row["image"]] = row["digest"]
        if stale:
            print(f"{row['image']} changed since it was judged: judged again")

    def current(self, keys) -> list[dict]:
        keys = set(keys)
        return [r for r in self.rows if r["image"] in keys]


def _prompt_id(name: str) -> int:
    stem = name.split("_")[0] if "_" in name else name.split(".")[0]
    if not stem.isdigit():
        raise ValueError(f"{name}: LongText-Bench images are named <prompt_id>_<k>.png")
    return int(stem)


def run_longtext(cfg: Config, out: Path) -> dict:
    prompts = {p["prompt_id"]: p for p in _load_jsonl(Path(cfg.bench) / "longtext" /
                                                      ("text_prompts.jsonl" if cfg.lang == "en" else "text_prompts_zh.jsonl"))}
    files = sorted(Path(cfg.images).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no .png images in {cfg.images} (expected <prompt_id>_<k>.png)")
    judge = make_text_judge(cfg.judge, cfg.ocr_workers)
    results = Results(out / "results.jsonl", judge.name, _settings(cfg))
    todo = [f for f in files if results.pending(f.name, f)]
    for path in todo:  # every name checked before anything is judged
        if _prompt_id(path.name) not in prompts:
            raise ValueError(f"{path}: prompt id {_prompt_id(path.name)} is not in the {cfg.lang} prompt file")
    chunk = max(1, 4 * cfg.ocr_workers)  # read in batches, so that --ocr-workers processes share them
    try:
        with tqdm(total=len(todo), desc="longtext", dynamic_ncols=True) as bar:
            for start in range(0, len(todo), chunk):
                paths, images, unreadable = todo[start : start + chunk], [], None
                for path in paths:  # the images before an unreadable one are judged and kept, then it is reported
                    try:
                        images.append(open_image(path))
                    except ValueError as e:
                        unreadable = e
                        break
                for path, read in zip(paths, judge.read_batch(images) if images else []):
                    pid = _prompt_id(path.name)
                    m = longtext.match_text(read, prompts[pid]["text"], cfg.lang)
                    results.add({"image": path.name, "prompt_id": pid, "ocr": read, "matched": m.matched,
                                 "total": m.total}, path)
                if unreadable is not None:
                    raise unreadable
                bar.update(len(paths))
    finally:
        _close(judge)
    rows = results.current(f.name for f in files)
    matches = [longtext.TextMatch(r["matched"], r["total"]) for r in rows]
    out_metrics = {"score": longtext.text_accuracy(matches)}
    for field in ("category", "length"):
        for value in sorted({prompts[r["prompt_id"]][field] for r in rows}):
            sel = [m for r, m in zip(rows, matches) if prompts[r["prompt_id"]][field] == value]
            out_metrics[f"{field}/{value}"] = longtext.text_accuracy(sel)
    return {**out_metrics, "n": len(rows), "judge": judge.name}


def run_oneig(cfg: Config, out: Path) -> dict:
    name = "text_content.csv" if cfg.lang == "en" else "text_content_zh.csv"
    path = Path(cfg.bench) / "oneig" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set --bench to the folder of the official files)")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    cols, rows_n = (int(x) for x in cfg.tiles.split(","))
    judge = make_text_judge(cfg.judge, cfg.ocr_workers)
    results = Results(out / "results.jsonl", judge.name, _settings(cfg))
    skipped, names = [], []
    try:
        for row in tqdm(rows, desc="oneig", dynamic_ncols=True):
            matches = sorted(Path(cfg.images).glob(f"{row['id']}*"))
            if len(matches) != 1:  # the official scorer skips a prompt without exactly one image
                skipped.append(row["id"])
                continue
            names.append(matches[0].name)
            if not results.pending(matches[0].name, matches[0]):
                continue
            jpegs = []
            for tile in oneig.split_grid(open_image(matches[0]), cols, rows_n):
                buf = io.BytesIO()
                tile.save(buf, format="JPEG")  # the official scorer OCRs each tile's JPEG re-encode
                jpegs.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            scored = []
            for read in judge.read_batch(jpegs):  # an image's tiles at once: --ocr-workers processes share them
                t = oneig.score_tile(read, row["text_content"])
                scored.append({"ocr": read, "ed": t.edit_distance, "matched": t.matched, "total": t.total})
            results.add({"image": matches[0].name, "id": row["id"], "tiles": scored}, matches[0])
    finally:
        _close(judge)
    rows = results.current(names)
    tiles = [oneig.TileScore(t["ed"], t["matched"], t["total"]) for r in rows for t in r["tiles"]]
    scores = oneig.text_score(tiles, cfg.lang)
    return {"score": scores.pop("text_score"), **scores, "n": len(rows), "tiles": len(tiles),
            "skipped_prompts": len(skipped), "judge": judge.name}


def run_geneval(cfg: Config, out: Path) -> dict:
    if cfg.judge != "scene":
        raise MissingPart(f"GenEval's official judges (Mask2Former + CLIP ViT-L/14) are not available here; "
                          f"--judge scene (the synthetic world's scene judge) is the only one, got {cfg.judge!r}")
    from xomni.eval.scene_judge import JUDGE_THRESHOLDS, SceneJudge

    judge = SceneJudge()
    folders = sorted(p for p in Path(cfg.images).iterdir() if p.is_dir() and p.name.isdigit()) \
        if Path(cfg.images).is_dir() else []
    if not folders:
        raise FileNotFoundError(f"no <NNNNN>/ prompt folders in {cfg.images} (GenEval layout: "
                                "<NNNNN>/metadata.jsonl and <NNNNN>/samples/<k>.png)")
    results = Results(out / "results.jsonl", judge.name, _settings(cfg))
    keys = []
    for folder in tqdm(folders, desc="geneval", dynamic_ncols=True):
        meta_path = folder / "metadata.jsonl"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            meta["tag"], meta["include"]  # noqa: B018 - both are required
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{meta_path}: not a GenEval metadata file ({e})") from None
        for image in sorted((folder / "samples").glob("*.png")):
            key = f"{folder.name}/samples/{image.name}"
            keys.append(key)
            if not results.pending(key, image):
                continue
            dets = judge.detections(open_image(image))
            ok, reasons = geneval.evaluate_image(meta, dets, *JUDGE_THRESHOLDS)  # the scene judge's, not Mask2Former's
            details = {c: [[*d.box, d.score] for d in v] for c, v in dets.items()}
            results.add({"image": key, "tag": meta["tag"], "prompt": meta.get("prompt", ""), "correct": ok,
                         "reason": "\n".join(reasons), "details": details}, image)
    rows = results.current(keys)
    summary = geneval.summarize([(r["tag"], r["correct"]) for r in rows])
    return {"score": summary.pop("overall"), **{f"task/{k}": v for k, v in summary.items()},
            "n": len(rows), "judge": judge.name}


def read_dpg_questions(path: Path, skip_first: bool) -> dict[str, list[dpg.Question]]:
    """dpg_bench.csv -> item_id -> questions. skip_first keeps the official loader's off-by-one (it drops the
    table's first question, so that prompt's dependent questions cannot be scored and it drops out)."""
    if not path.is_file():
        raise MissingPart(f"DPG-Bench needs its question table (--questions dpg_bench.csv from the ELLA repository); "
                          f"{path} not found")
    out: dict[str, list[dpg.Question]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if skip_first and i == 0:
                continue
            try:
                parents = tuple(int(x) for x in re.split(r"\s*,\s*", row["dependency"].strip()) if x and x != "0")
                q = dpg.Question(int(row["proposition_id"]), row["question_natural_language"], parents,
                                 row["tuple"].split("(")[0].strip())
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}:{i + 2}: not a DPG-Bench question row ({e})") from None
            out.setdefault(row["item_id"], []).append(q)
    return out


def run_dpg(cfg: Config, out: Path) -> dict:
    table = read_dpg_questions(Path(cfg.questions), cfg.skip_first_question)
    name, _, path = cfg.judge.partition(":")
    if name != "qwen2.5-vl" or not path:
        raise MissingPart("DPG-Bench needs a VQA judge: --judge qwen2.5-vl:PATH (the official mPLUG-large is not "
                          f"supported here), got {cfg.judge!r}")
    from xomni.eval.official_judges import load_official_judge

    judge = load_official_judge(name, path)
    results = Results(out / "results.jsonl", judge.name, _settings(cfg))
    files = sorted(p for p in Path(cfg.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if missing := [f.name for f in files if f.stem not in table]:
        raise ValueError(f"{missing[0]}: no questions for item {Path(missing[0]).stem!r} in {cfg.questions}")
    # the official script drops an item whose dependencies cannot be resolved: known from the table, before judging
    skipped = [f for f in files if dpg.unresolved(table[f.stem])]
    for f in skipped:
        print(f"skipped {f.name}: question {dpg.unresolved(table[f.stem])[0][0]} depends on one the table lacks")
    files = [f for f in files if f not in skipped]
    for path_ in tqdm([f for f in files if results.pending(f.name, f)], desc="dpg", dynamic_ncols=True):
        qs = table[path_.stem]
        image = open_image(path_)
        r = image.width // (2 if cfg.pic_num == 4 else 1)
        boxes = [(0, 0, r, r), (r, 0, 2 * r, r), (0, r, r, 2 * r), (r, r, 2 * r, 2 * r)][: cfg.pic_num]
        tiles = [{q.qid: judge.answer(image.crop(b), q.text) for q in qs} for b in boxes]
        score = dpg.image_score(qs, tiles)
        results.add({"image": path_.name, "item_id": path_.stem, "score": score,
                     "answers": [{str(k): v for k, v in t.items()} for t in tiles]}, path_)
    rows = results.current(f.name for f in files)
    items = [(table[r["item_id"]], [{int(k): v for k, v in t.items()} for t in r["answers"]]) for r in rows]
    summary = dpg.summarize(items)
    return {"score": summary.pop("dpg_score") / 100, **summary, "n": len(rows),
            "skipped": len(skipped), "judge": judge.name}


def _settings(cfg: Config) -> dict:
    """What a benchmark's results depend on besides the images and the judge."""
    return {"longtext": {"lang": cfg.lang}, "oneig": {"lang": cfg.lang, "tiles": cfg.tiles}, "geneval": {},
            "dpg": {"pic_num": cfg.pic_num, "skip_first_question": cfg.skip_first_question}}[cfg.benchmark]


def main(cfg: Config) -> dict:
    if cfg.pic_num not in (1, 4):
        raise ValueError(f"--pic-num is 1 or 4 (a 2x2 grid), got {cfg.pic_num}")
    if cfg.benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {cfg.benchmark!r}; choose one of {BENCHMARKS}")
    cfg = replace(cfg, judge=cfg.judge or {"geneval": "scene", "dpg": ""}.get(cfg.benchmark, "rapidocr"))
    if cfg.lang not in ("en", "zh"):
        raise ValueError(f"--lang must be en or zh, got {cfg.lang!r}")
    if not cfg.images or not Path(cfg.images).is_dir():
        raise FileNotFoundError(f"--images {cfg.images!r} is not a folder")
    suffix = f"_{cfg.lang}" if cfg.benchmark in ("longtext", "oneig") else ""
    out = Path(cfg.out or Path(cfg.images) / f"xomni_eval_{cfg.benchmark}{suffix}")
    out.mkdir(parents=True, exist_ok=True)
    run = {"longtext": run_longtext, "oneig": run_oneig, "geneval": run_geneval, "dpg": run_dpg}[cfg.benchmark]
    metrics = run(cfg, out)
    metrics = {"suite": cfg.benchmark + ("" if cfg.benchmark in ("geneval", "dpg") else f"-{cfg.lang}"),
               "score": metrics.pop("score"), **metrics, "source": str(cfg.images)}
    write_text_atomically(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics
