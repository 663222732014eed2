"""LongText-Bench (X-Omni, textbench/) text accuracy: pure functions over OCR output.

Official rule (textbench/evaluate_text_reward.py + summary_scores.py at X-Omni 2b8237b): OCR text and ground truth
(the prompt's `text` list joined by spaces) are normalised the same way; English counts words (lower-cased), Chinese
counts characters; an image's match is the size of the multiset intersection of ground-truth and OCR units, and
the score is sum(match) / sum(ground truth) over every image (micro average; each of a prompt's images counts on
its own). Recall only: extra OCR text costs nothing. `TextMatch.strict` (ours, not the benchmark's) also charges
what was read beyond the ground truth: matched / max(ground truth, read).

Official quirks kept (so numbers compare with published tables):
- the judge's "No text recognized." is removed, but not "addCriterion" (the official loop rebuilds the string from
  the raw text on every pass, so only its last keyword takes effect), nor a "No text recognized" without the period;
- apostrophes and hyphens vanish without a space ("it's" -> "its"); Han characters survive in English mode.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

ACCENTS = "àâäéèêëîïôöùûüçÀÂÄÉÈÊËÎÏÔÖÙÛÜÇ"
_DROP = re.compile(rf"[^\u4e00-\u9fa5a-zA-Z0-9\s{ACCENTS}]")
_KEEP_ZH = re.compile(rf"[\u4e00-\u9fa5a-zA-Z0-9{ACCENTS}]")
NO_TEXT = "No text recognized."
LANGS = ("en", "zh")


def clean_ocr(text: str) -> str:
    """The official clean-up of the judge's answer (see the module docstring for what it leaves)."""
    return text.replace(NO_TEXT, "")


def normalize(text: str, lang: str) -> str:
    """EN: keep Han/ASCII letters and digits/whitespace/French accents, collapse spaces, lower-case.
    ZH: keep the same characters without whitespace, no lower-casing."""
    if lang == "en":
        return re.sub(r"\s+", " ", _DROP.sub("", text)).strip().lower()
    if lang == "zh":
        return "".join(_KEEP_ZH.findall(text)).strip()
    raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")


def units(normalized: str, lang: str) -> list[str]:
    return normalized.split() if lang == "en" else list(normalized)


@dataclass(frozen=True)
class TextMatch:
    matched: int
    total: int  # ground-truth units
    read: int = 0  # units the OCR read (after the same normalisation)

    @property
    def accuracy(self) -> float:
        """LongText-Bench's: the share of the ground truth's units read (recall)."""
        return self.matched / self.total if self.total else float("nan")

    @property
    def strict(self) -> float:
        """Recall with extra units charged: matched / max(total, read). Writing the text twice reads 1.0 by
        `accuracy` and 0.5 here; a reward on `accuracy` alone pays for a second chance at every unit."""
        return self.matched / max(self.total, self.read) if self.total else float("nan")


def match_text(ocr: str, target: list[str] | str, lang: str) -> TextMatch:
    """One image: OCR output (raw) against the prompt's target strings (joined by spaces, as the official scorer)."""
    gt = units(normalize(" ".join(target) if isinstance(target, list) else target, lang), lang)
    if not gt:
        raise ValueError(f"ground truth {target!r} has no {lang} units after normalisation")
    pred = units(normalize(clean_ocr(ocr), lang), lang)
    return TextMatch(sum((Counter(gt) & Counter(pred)).values()), len(gt), len(pred))


def text_accuracy(matches: list[TextMatch]) -> float:
    """Micro average over images: sum(matched) / sum(total)."""
    total = sum(m.total for m in matches)
    if not total:
        raise ValueError("no images to score")
    return sum(m.matched for m in matches) / total
