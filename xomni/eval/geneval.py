"""GenEval correctness: pure functions over a detector's output (and a colour judge's labels).

Official rule (djghosh13/geneval evaluation/evaluate_images.py + summary_scores.py at af4902f): per class, keep the
detections scoring above 0.3 (0.9 for every class of a `counting` prompt), most confident first, at most 16, no NMS.
An image is correct when every `include` clause holds and no `exclude` clause does:
- include {class, count, color?, position?: [rel, i]}: the `count` most confident detections of `class` exist; with
  `color`, at least `count` of them are classified as that colour; with `position`, every one of them stands in
  `rel` to every detection matched by include clause i (a clause that failed matches nothing, so it fails too);
- exclude {class, count}: fails when `count` or more detections of `class` were kept.
Task score = mean over its images; overall = unweighted mean of the task scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
POSITION_THRESHOLD = 0.1
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels (y grows downward)
    score: float
    color: str | None = None  # the colour judge's label, when it ran


def relative_position(a, b, c: float = POSITION_THRESHOLD) -> set[str]:
    """Relations of box a to box b: the official rule with margin c * (size_a + size_b) per axis."""
    (ax, ay), (bx, by) = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    offset = (ax - bx, ay - by)
    dims = (abs(a[2] - a[0]) + abs(b[2] - b[0]), abs(a[3] - a[1]) + abs(b[3] - b[1]))
    revised = [max(abs(o) - c * d, 0) * math.copysign(1, o) for o, d in zip(offset, dims)]
    if all(abs(r) < 1e-3 for r in revised):
        return set()
    norm = math.hypot(*offset)
    dx, dy = revised[0] / norm, revised[1] / norm
    out = set()
    if dx < -0.5:
        out.add("left of")
    if dx > 0.5:
        out.add("right of")
    if dy < -0.5:
        out.add("above")
    if dy > 0.5:
        out.add("below")
    return out


def keep_detections(raw: dict[str, list[Detection]], tag: str, threshold: float = THRESHOLD,
                    counting_threshold: float = COUNTING_THRESHOLD) -> dict[str, list[Detection]]:
    """The official filter: above the (tag's) threshold, most confident first, at most 16 per class. The thresholds
    are Mask2Former's; a judge with differently calibrated scores passes its own (and reports them)."""
    threshold = counting_threshold if tag == "counting" else threshold
    kept = {}
    for cls, dets in raw.items():
        dets = [d for d in sorted(dets, key=lambda d: -d.score) if d.score > threshold][:MAX_OBJECTS]
        if dets:
            kept[cls] = dets
    return kept


def evaluate_image(metadata: dict, raw: dict[str, list[Detection]], threshold: float = THRESHOLD,
                   counting_threshold: float = COUNTING_THRESHOLD) -> tuple[bool, list[str]]:
    """(correct, reasons) for one image, given its metadata line and the detector's raw output per class."""
    objects = keep_detections(raw, metadata["tag"], threshold, counting_threshold)
    reasons: list[str] = []
    matched: list[list[Detection] | None] = []
    for clause in metadata["include"]:
        cls, count = clause["class"], clause["count"]
        found = objects.get(cls, [])[:count]
        ok = len(found) >= count
        if not ok:
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        elif "color" in clause:
            if any(d.color is None for d in found):
                raise ValueError(f"clause needs colours but detections of {cls!r} carry none")
            n = sum(d.color == clause["color"] for d in found)
            if n < count:
                ok = False
                colors = ", ".join(str(d.color) for d in found)
                reasons.append(f"expected {clause['color']} {cls}>={count}, found {n} {clause['color']}; and {colors}")
        if ok and "position" in clause:
            rel, target = clause["position"]
            group = matched[target] if target < len(matched) else None
            if group is None:
                ok = False
                reasons.append(f"no target for {cls} to be {rel}")
            else:
                for d in found:
                    for t in group:
                        if rel not in relative_position(d.box, t.box):
                            ok = False
                            reasons.append(f"expected {cls} {rel} target, found {relative_position(d.box, t.box)}")
                            break
                    if not ok:
                        break
        matched.append(found if ok else None)
    for clause in metadata.get("exclude", []):
        n = len(objects.get(clause["class"], []))
        if n >= clause["count"]:
            reasons.append(f"expected {clause['class']}<{clause['count']}, found {n}")
    return not reasons, reasons


def summarize(results: list[tuple[str, bool]]) -> dict[str, float]:
    """(tag, correct) per image -> each task's mean and the overall (unweighted mean of the task means)."""
    by_tag: dict[str, list[bool]] = {}
    for tag, correct in results:
        by_tag.setdefault(tag, []).append(correct)
    if not by_tag:
        raise ValueError("no images to score")
    out = {tag: sum(v) / len(v) for tag, v in by_tag.items()}
    out["overall"] = sum(out.values()) / len(by_tag)
    return out
