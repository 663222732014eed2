"""DPG-Bench scoring: yes/no questions with parent dependencies, pure functions over a VQA judge's answers.

Official rule (TencentQQGYLab/ELLA dpg_bench/compute_dpg_bench.py at 3c228f1): a question scores 1 when the judge's
answer is exactly "yes" (case-sensitive, not stripped); then, in question order, a question any of whose parents
(ids in `dependency`, 0 meaning none) scored 0 is set to 0, so zeroes cascade down a chain whose parents come first;
a tile's score is the mean of its cascaded scores, an image's the mean over its tiles, and the benchmark score is
100 x the mean over images. Categories (L1: entity/attribute/relation/global/other, L2: e.g. "entity - whole")
average the raw answers (before the cascade), x 100.

Official quirks kept: categories are computed from the last tile only (the official loop keeps only the last
tile's answers); an answer such as "Yes" or "yes." counts as no; and, by default (`xomni eval dpg
--skip-first-question true`), the official loader's skipping of the table's first question (its `i == 0` check
after the header was already consumed), which leaves that prompt's dependent questions without their parent, so
the prompt drops out (`unresolved`); `--skip-first-question false` scores every question.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    qid: int
    text: str
    parents: tuple[int, ...]  # question ids this one depends on (0 = none, dropped)
    category: str  # L2 category, e.g. "entity - whole"; L1 is the part before " -"

    @property
    def l1(self) -> str:
        return self.category.split("-")[0].strip()


def raw_scores(questions: list[Question], answers: dict[int, str]) -> dict[int, float]:
    missing = [q.qid for q in questions if q.qid not in answers]
    if missing:
        raise ValueError(f"no answer for questions {missing}")
    return {q.qid: float(answers[q.qid] == "yes") for q in questions}


def unresolved(questions: list[Question]) -> list[tuple[int, int]]:
    """(question, parent) pairs whose parent is not among `questions`: such an item cannot be scored."""
    ids = {q.qid for q in questions}
    return [(q.qid, p) for q in questions for p in q.parents if p not in ids]


def cascade(questions: list[Question], raw: dict[int, float]) -> dict[int, float]:
    """Zero every question whose parent scored 0, in question order (one pass, as the official script)."""
    ids = {q.qid for q in questions}
    scores = dict(raw)
    for q in questions:
        for p in q.parents:
            if p not in ids:
                raise ValueError(f"question {q.qid} depends on unknown question {p}")
            if scores[p] == 0:
                scores[q.qid] = 0.0
    return scores


def image_score(questions: list[Question], tile_answers: list[dict[int, str]]) -> float:
    """Mean over tiles of the mean cascaded score."""
    if not tile_answers:
        raise ValueError("an image needs at least one tile of answers")
    per_tile = []
    for answers in tile_answers:
        scores = cascade(questions, raw_scores(questions, answers))
        per_tile.append(sum(scores.values()) / len(scores))
    return sum(per_tile) / len(per_tile)


def summarize(items: list[tuple[list[Question], list[dict[int, str]]]]) -> dict[str, float]:
    """Per image (its questions, its tiles' answers) -> the DPG score and L1/L2 category scores, all x 100."""
    if not items:
        raise ValueError("no images to score")
    scores = [image_score(qs, tiles) for qs, tiles in items]
    l1: dict[str, list[float]] = {}
    l2: dict[str, list[float]] = {}
    for qs, tiles in items:
        raw = raw_scores(qs, tiles[-1])
        for q in qs:
            l1.setdefault(q.l1, []).append(raw[q.qid])
            l2.setdefault(q.category, []).append(raw[q.qid])
    out = {"dpg_score": 100 * sum(scores) / len(scores)}
    out.update({f"l1/{k}": 100 * sum(v) / len(v) for k, v in sorted(l1.items())})
    out.update({f"l2/{k}": 100 * sum(v) / len(v) for k, v in sorted(l2.items())})
    return out
