"""OneIG-Bench text-rendering score: pure functions over OCR output.

Official rule (OneIG-Benchmark scripts/text/text_score.py at 41b4983): each non-black tile of a prompt's grid is read
by the judge; OCR text and ground truth are normalised (Han U+4E00-U+9FA5, a-zA-Z0-9, whitespace, French accents;
all whitespace removed when the string holds a Han character, else collapsed; case kept). Per tile: ED = character
Levenshtein distance (not length-normalised), CR = [ED == 0], and the multiset overlap of words (no Han in the
ground truth) or characters. Pooled over all tiles: ED = mean, CR = mean, WAC = sum(match) / sum(gt), and

    text score = 1 - min(M, ED) * (1 - CR) * (1 - WAC) / M,   M = 100 (EN), 50 (ZH).

Official quirks kept: `text_content` (a Python-list literal) is normalised as a raw string, never parsed (brackets,
quotes and commas vanish); each string picks its own mode from its own content, so an OCR answer without Han
characters keeps its spaces even on a Chinese prompt; both "addCriterion" and "No text recognized." are removed
from the judge's answer; a tile is black only when every pixel is exactly (0, 0, 0). Deviation: black is judged
after conversion to RGB, where the official script compares the pixels as opened, so an all-black tile of a
grayscale or palette image (which it OCRs and scores as a miss) is left out here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from xomni.eval.longtext import ACCENTS, NO_TEXT

_DROP = re.compile(rf"[^\u4e00-\u9fa5a-zA-Z0-9\s{ACCENTS}]")
_KEEP_HAN = re.compile(rf"[\u4e00-\u9fa5a-zA-Z0-9{ACCENTS}]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
MAX_ED = {"en": 100, "zh": 50}


def clean_ocr(text: str) -> str:
    for keyword in ("addCriterion", NO_TEXT):
        text = text.replace(keyword, "")
    return text


def normalize(text: str) -> str:
    cleaned = _DROP.sub("", text)
    if _HAN.search(cleaned):
        return "".join(_KEEP_HAN.findall(cleaned))
    return re.sub(r"\s+", " ", cleaned).strip()


def levenshtein(a: str, b: str) -> int:
    """Character edit distance with unit costs (one row of the dynamic programme at a time)."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@dataclass(frozen=True)
class TileScore:
    edit_distance: int
    matched: int
    total: int  # ground-truth units: characters when the ground truth holds Han, else words

    @property
    def complete(self) -> bool:
        return self.edit_distance == 0


def score_tile(ocr: str, text_content: str) -> TileScore:
    gt, pred = normalize(text_content), normalize(clean_ocr(ocr))
    if not gt:
        raise ValueError(f"ground truth {text_content!r} is empty after normalisation")
    gt_units, pred_units = (list(gt), list(pred)) if _HAN.search(gt) else (gt.split(), pred.split())
    return TileScore(levenshtein(pred, gt), sum((Counter(gt_units) & Counter(pred_units)).values()), len(gt_units))


def text_score(tiles: list[TileScore], lang: str) -> dict[str, float]:
    """Pooled ED, CR, WAC and the text score over every scored tile of every prompt."""
    if lang not in MAX_ED:
        raise ValueError(f"lang must be one of {tuple(MAX_ED)}, got {lang!r}")
    if not tiles:
        raise ValueError("no tiles to score")
    ed = sum(t.edit_distance for t in tiles) / len(tiles)
    cr = sum(t.complete for t in tiles) / len(tiles)
    wac = sum(t.matched for t in tiles) / sum(t.total for t in tiles)
    return {"ED": ed, "CR": cr, "WAC": wac, "text_score": text_score_formula(ed, cr, wac, MAX_ED[lang])}


def text_score_formula(ed: float, cr: float, wac: float, max_ed: float) -> float:
    return 1 - min(max_ed, ed) * (1 - cr) * (1 - wac) / max_ed


def split_grid(image: Image.Image, cols: int, rows: int) -> list[Image.Image]:
    """Row-major tiles of a cols x rows grid, all-black tiles (every pixel exactly 0 in RGB) left out."""
    if cols < 1 or rows < 1:
        raise ValueError(f"grid must be at least 1x1, got {cols}x{rows}")
    w, h = image.width // cols, image.height // rows
    tiles = []
    for i in range(rows):
        for j in range(cols):
            tile = image.crop((j * w, i * h, (j + 1) * w, (i + 1) * h))
            if tile.mode == "RGB" and not np.asarray(tile).any():
                continue
            tiles.append(tile)
    return tiles
