"""X-Omni's reward system at tiny scale (paper Sec. 3.4): plain reward functions with one signature, combined by a
weighted sum whose weights are configuration.

Every reward takes the batch of `Rollout`s and returns one value per rollout: a float, `None` when it does not apply
(no text was asked for, so no OCR reward), or NaN when the judge failed. `combine` sums the applicable values with
their weights renormalised over what applied, excludes failures and counts them; a failure never becomes a silent 0.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from xomni.data.world import COLORS, PLATES, ZH_CELLS, Scene, TextElement, prompt_aspects
from xomni.eval import longtext
from xomni.eval.suites import answer_dpg, dpg_questions


CLUTTER_PENALTY = 0.5  # alignment's cost of an image whose every judged object is one the prompt did not ask for
PALE = 190  # a pixel whose every channel is at least this is background (the world's backgrounds are >= 210)
SIGN_SHARE = 0.25  # plate-coloured pixels, as a share of the asked text box's area, that make a sign drawn
_OBJECT_RGB = np.asarray([rgb for rgb, _ in COLORS.values()], np.float32)  # C 3
_ASPECT_OF = {"shape": "objects", "count": "objects", "color": "colors", "color_count": "colors", "relation": "relation",
              "text": "text"}


@dataclass
class Rollout:
    scene: Scene  # the prompt's spec: what was asked for
    image: Image.Image  # the decoded image
    codes: list[int] = field(default_factory=list)  # the image tokens the policy sampled
    reread: list[int] = field(default_factory=list)  # the tokenizer's codes of the decoded image
    prompt: str = ""  # the prompt the policy was given; "" = judged against the whole scene (its dense caption)

    def said(self) -> frozenset[str]:
        """What the prompt says of the scene (`prompt_aspects`); everything when there is no prompt."""
        return prompt_aspects(self.scene, self.prompt)


OCR_RULES = ("longtext", "strict")


def prompt_questions(r: Rollout) -> list[dict]:
    """The scene's synth-dpg questions that `r`'s prompt raises (`Rollout.said`): a count asked of a prompt that names
    no colour is of any colour, and so is a relation between two groups of one shape ("a square below a square": any
    two of them). The text question is among them when the prompt asks for text."""
    said = r.said()
    qs = [q for q in dpg_questions(r.scene) if _ASPECT_OF[q["check"]["kind"]] in said]
    if "colors" not in said:  # "are there two stars?" for a prompt that names no colour: of any colour
        qs = [_colourless(q) for q in qs]
    return qs


def _colourless(q: dict) -> dict:
    """A question as a prompt that names no colour asks it: a count of any colour; a relation between two groups of
    one shape between any two of the shape."""
    c = q["check"]
    if c["kind"] == "count":
        return {**q, "check": {**c, "color": None}}
    if "a_color" in c:
        return {**q, "text": f"Is one {c['a']} {c['relation']} another?",
                "check": {**c, "a_color": None, "b_color": None}}
    return q


def ocr_accuracy(rollouts: list[Rollout], judges, rule: str = "longtext") -> list[float | None]:
    """Text accuracy of the asked-for text, averaged over the OCR engines (the paper uses two jointly): by
    LongText-Bench's rule (`longtext`, the share of the asked units read) or `strict` (units read beyond those asked
    are charged too, `longtext.TextMatch.strict`). None for prompts that ask for no text; NaN when any engine
    failed on that image: the other engine's score alone is another reward, and a group scored by both would rank
    its rollouts by two rules (`combine` excludes and counts the NaN)."""
    if rule not in OCR_RULES:
        raise ValueError(f"OCR rule must be one of {OCR_RULES}, got {rule!r}")
    out: list[float | None] = []
    for r in rollouts:
        if r.scene.text is None or "text" not in r.said():
            out.append(None)
            continue
        scores = []
        for judge in judges:
            try:
                read = judge.read(r.image)
            except Exception:  # noqa: BLE001 - a judge crash is a failed reward, counted by `combine`
                scores = [math.nan]
                break
            match = longtext.match_text(read, r.scene.text.text, r.scene.text.lang)
            scores.append(match.strict if rule == "strict" else match.accuracy)
        out.append(sum(scores) / len(scores) if scores else math.nan)
    return out


def text_blends(scene: Scene, plate_named: bool = True) -> list[tuple]:
    """The colour pairs whose blends are not stray ink in an image for `scene`: its text element's plate and ink, or
    every plate's when the prompt does not say which."""
    if scene.text is None:
        return []
    return [PLATES[scene.text.plate][:2]] if plate_named else [pair[:2] for pair in PLATES.values()]


def stray_ink(image: Image.Image, keep_boxes, keep_blends=(), allowance: float = 0.0, margin: int = 2,
              max_color_distance: float = 60.0) -> float:
    """Share of the image's ink (pixels that are not pale background) lying outside every box in `keep_boxes` (grown
    by `margin` pixels for the decoder's soft edges) and farther than `max_color_distance` (RGB) from every blend of
    each colour pair in `keep_blends` (a text element's plate and ink, antialiased edges included), less `allowance`
    pixels of it; 0 for an image without ink. What the scene judge cannot name (glyph fragments, smears, shapes too
    broken to fit) is ink all the same."""
    arr = np.asarray(image.convert("RGB"), np.float32)
    stray = arr.min(-1) < PALE
    ink = int(stray.sum())
    if ink == 0:
        return 0.0
    for x0, y0, x1, y1 in keep_boxes:
        stray[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
    for a, b in keep_blends:
        stray &= ~near_blend(arr, a, b, max_color_distance)
    return max(0.0, float(stray.sum()) - allowance) / ink


def near_blend(arr: np.ndarray, a, b, max_color_distance: float = 60.0) -> np.ndarray:
    """(H, W) bool: the pixels of an RGB array within `max_color_distance` of the segment from colour a to colour b
    (a plate, its ink, and their antialiased blends)."""
    a, d = np.asarray(a, np.float32), np.asarray(b, np.float32) - np.asarray(a, np.float32)
    t = np.clip(((arr - a) @ d) / max(float(d @ d), 1e-6), 0, 1)
    return np.linalg.norm(arr - a - t[..., None] * d, axis=-1) <= max_color_distance


def reward_judge():
    """The scene judge the rewards use: the text plates' colours are no object's, so a sign is never clutter."""
    from xomni.eval.scene_judge import SceneJudge

    return SceneJudge(ignore_colors=tuple(plate for plate, _, _ in PLATES.values()))


def plate_masks(arr: np.ndarray, plates, max_color_distance: float = 60.0) -> dict[str, np.ndarray]:
    """For each plate in `plates` (PLATES names): (H, W) bool, the pixels of an RGB array within `max_color_distance`
    of the plate's colour and nearer it than every object colour."""
    nearest_object = np.linalg.norm(arr[:, :, None, :] - _OBJECT_RGB[None, None], axis=-1).min(-1)
    out = {}
    for plate in plates:
        d = np.linalg.norm(arr - np.asarray(PLATES[plate][0], np.float32), axis=-1)
        out[plate] = (d <= max_color_distance) & (d < nearest_object)
    return out


def plate_shares(image: Image.Image, box, plates, max_color_distance: float = 60.0) -> dict[str, float]:
    """For each plate in `plates` (PLATES names): its `plate_masks` pixels as a share of `box`'s area (anywhere in
    the image: prompts do not place the text)."""
    masks = plate_masks(np.asarray(image.convert("RGB"), np.float32), plates, max_color_distance)
    return {plate: float(mask.sum() / _area(box)) for plate, mask in masks.items()}


def sign_extent(image: Image.Image, scene: Scene, plate_named: bool = True) -> float:
    """How big the drawn sign is: the bounding box of the plate-coloured pixels (`plate_masks`: the asked plate, or any
    coloured plate when the prompt does not name it) of the largest region they form once every gap narrower than a
    Chinese character is bridged (the characters of a reconstructed sign cut its plate into pieces), as a share of
    the asked text box's area, at most 1. Unlike `plate_share` it does not count the ink: a blank plate and one full
    of characters have the same extent. 0 when no plate pixel is drawn."""
    import cv2

    plates = [scene.text.plate] if plate_named else [p for p in PLATES if p != "white"]
    r = ZH_CELLS * scene.cell // 2  # bridges gaps of up to one Chinese character
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    best = 0
    for mask in plate_masks(np.asarray(image.convert("RGB"), np.float32), plates).values():
        mask = mask.astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(mask, kernel), connectivity=8)
        if n < 2:
            continue
        region = (labels == 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())) & (mask > 0)
        ys, xs = np.nonzero(region)
        best = max(best, int((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)))
    return min(1.0, best / _area(scene.text.box))


def plate_share(image: Image.Image, text: TextElement, max_color_distance: float = 60.0) -> float:
    """`plate_shares` of the text element's own plate over its box."""
    return plate_shares(image, text.box, [text.plate], max_color_distance)[text.plate]


def sign_drawn(image: Image.Image, scene: Scene, plate_named: bool = True) -> bool | None:
    """Whether the image has the asked text's plate: `plate_share` at least SIGN_SHARE. On reconstructions of 48
    training scenes (bench/reward_holes.py's variants) the share was at least 0.32 with the asked or a wrong text and
    at most 0.02 without a sign. None for a white plate, which pale backgrounds match as well, and for a scene
    without text. When the prompt does not name the plate's colour (`plate_named` False), a plate of any colour is
    the sign: True when one of the coloured plates covers that share, else None (a white one may be there)."""
    if scene.text is None:
        return None
    if not plate_named:
        coloured = [p for p in PLATES if p != "white"]
        return max(plate_shares(image, scene.text.box, coloured).values()) >= SIGN_SHARE or None
    if scene.text.plate == "white":
        return None
    return plate_share(image, scene.text) >= SIGN_SHARE


def _area(box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def alignment(rollouts: list[Rollout], scene_judge, ocr_judge=None) -> list[float | None]:
    """Prompt-image alignment: the share of the prompt's dependent yes/no questions (synth-dpg's) the judges answer
    yes, with DPG's cascade (the role of the paper's VLM judge), minus `CLUTTER_PENALTY` times (at most 1) the sum
    of two shares: clutter, the share of the objects the scene judge finds that are more than the prompt asked for
    (0 when it finds none) or, if larger, the share of the image's ink that is no object it finds (`stray_ink`; the
    text element's plate and ink colours are not stray when the prompt asks for text, nor as much ink as the
    asked text's plate and the asked-for objects the judge misses would cover); and its mirror, the share of the
    asked objects it does not find: in [-CLUTTER_PENALTY, 1]. Without the mirror one object too few cost only its
    questions and one too many its questions and clutter, so drawing fewer was the safer side, and GRPO's policy
    drew one object for two, three or a relation (docs/unified.md, "Session 37").
    Yes/no questions alone never say no to clutter: a policy trained on them learned to fill the canvas with green
    plates, in which the judge finds some object of every shape (docs/unified.md, "GRPO run 5"). The penalty is
    subtracted rather than multiplied so that an image with clutter and no asked-for object still ranks below an
    empty one: multiplied, almost every rollout of the tiny SFT model scored 0 (GRPO run 6). Counting objects alone
    was hacked too: a policy drew glyph fragments, in which the judge finds no object at all ("GRPO on run 7's SFT
    model"), hence the ink. An image that answers none of the questions of a prompt asking for objects scores
    -CLUTTER_PENALTY, blank or not: when a blank canvas scored 0, above the average attempt, a policy learned to
    draw nothing (docs/unified.md, "GRPO on run 8's SFT model"). Clutter counts objects beyond the asked number,
    not objects of a shape or colour nobody asked for: an asked-for object drawn wrong already fails its questions,
    and charged as clutter too it cost more than leaving it out, so a policy learned to draw one object where two
    were asked, and to drop Chinese text it could not yet write (docs/unified.md, "GRPO on the text-capable
    model"). Dropping the text stayed the better answer after that: a scene judge that read the yellow and dark
    green plates as objects charged a sign as clutter, and no question asked for the sign itself, so the asked
    scene with a wrong text or a blank plate scored below the scene without a sign (bench/reward_holes.py). Pass
    `reward_judge()`, which never reads a plate as an object; and a prompt asking for text on a coloured plate gets
    "is there a sign?" (`sign_asked`, answered by `sign_drawn`), parent of the text question, so an attempt scores
    above leaving it out; it
    scores the sign's size (`sign_extent`, up to the asked box), where a yes for a quarter of the box paid as much
    as the whole sign (docs/unified.md, "What "smaller signs" were"). An
    image that answers none of the object questions of a prompt asking for objects still scores -CLUTTER_PENALTY,
    sign or not.
    Every question is one the prompt's words raise (`Rollout.said`, `prompt_aspects`): a short prompt with text ("a
    sign that says ...") asks for the sign alone, so nothing is clutter and no object is missing; a prompt that does
    not name the plate's colour takes a plate of any colour as the sign (`sign_drawn`), and asks for it whenever the
    scene's plate is coloured; one that names no colour counts objects of any colour, and misses or finds them by
    shape. A judge that fails on an image gives NaN for that rollout. Until session 21 every rollout was judged
    against its whole scene, so GRPO's short and medium text prompts (two in three) paid for objects or a plate
    colour the policy was never told."""
    out: list[float | None] = []
    for r in rollouts:
        try:
            out.append(_alignment(r, scene_judge, ocr_judge))
        except Exception:  # noqa: BLE001 - a judge that fails on one image: NaN for it, excluded and counted by combine
            out.append(math.nan)
    return out


def sign_asked(scene: Scene, said) -> bool:
    """Whether "is there a sign?" is asked of an image for this prompt: when it asks for text on a plate a judge can
    see (not white, which pale backgrounds match): the plate it names, or, when it names none, the scene's. Decided by
    the prompt and its scene, so every rollout of a group is judged on the same questions: decided by the image
    (a coloured plate drawn or not), leaving a sign out dropped the question and scored above a half-size sign."""
    return scene.text is not None and "text" in said and scene.text.plate != "white"


def _alignment(r: Rollout, scene_judge, ocr_judge) -> float | None:
    from xomni.eval.dpg import Question, cascade

    said = r.said()
    qs = prompt_questions(r)
    if ocr_judge is None:
        qs = [q for q in qs if q["check"]["kind"] != "text"]
    objects = scene_judge.objects(r.image)
    read = ocr_judge.read(r.image) if ocr_judge is not None and "text" in said else ""
    questions = [Question(q["qid"], q["text"], tuple(p for p in q["parents"] if any(x["qid"] == p for x in qs)),
                          q["category"]) for q in qs]
    raw = {q["qid"]: float(answer_dpg(q["check"], objects, read) == "yes") for q in qs}
    if sign_asked(r.scene, said):  # "is there a sign?", parent of the text question when there is one
        plate_named = "plate" in said
        sign = bool(sign_drawn(r.image, r.scene, plate_named))  # asked: no coloured plate drawn is a no
        sid = max((q.qid for q in questions), default=0) + 1
        questions = [Question(q.qid, q.text, q.parents + (sid,) if q.category == "other - text" else q.parents,
                              q.category) for q in questions]
        questions.append(Question(sid, f"Is there a {r.scene.text.category}?", (), "entity - whole"))
        raw[sid] = sign_extent(r.image, r.scene, plate_named) if sign else 0.0
    scores = cascade(questions, raw)
    # an object is asked by shape, and by colour when the prompt names colours
    key = (lambda o: (o.shape, o.color)) if "colors" in said else (lambda o: o.shape)
    asked = Counter(key(o) for o in r.scene.objects) if "objects" in said else Counter()
    if not scores:
        return None
    object_scores = [scores[q["qid"]] for q in qs if q["check"]["kind"] != "text"]
    if asked and not any(object_scores):  # asked for objects, answered none of them: a failure whatever is drawn
        return -CLUTTER_PENALTY
    if not asked:  # the prompt names no object (a short prompt with text): none is asked for, none is clutter
        return sum(scores.values()) / len(scores)
    found = Counter(key(o) for o in objects)
    clutter = max(0, len(objects) - sum(asked.values())) / len(objects) if objects else 0.0
    # an asked-for object the judge misses may be drawn too loosely to fit a shape, and asked-for text written
    # badly: their area is not stray (their questions and the OCR reward fail already)
    missing = asked - found
    short = sum(missing.values()) / sum(asked.values())  # the asked objects not found, as clutter's mirror
    allowance = _area(r.scene.text.box) if r.scene.text is not None else 0
    for o in r.scene.objects:
        if missing[key(o)] > 0:
            missing[key(o)] -= 1
            allowance += _area(o.box)
    clutter = max(clutter, stray_ink(r.image, [o.box for o in objects], text_blends(r.scene, "plate" in said),
                                     allowance))
    return sum(scores.values()) / len(scores) - CLUTTER_PENALTY * min(1.0, clutter + short)


def token_consistency(rollouts: list[Rollout]) -> list[float | None]:
    """Agreement between the sampled codes and the tokenizer's reading of the decoded image: whether the decoder drew
    what the policy asked for (the AR/decoder gap the paper says RL closes). It measures that, not beauty."""
    out: list[float | None] = []
    for r in rollouts:
        if not r.codes or len(r.codes) != len(r.reread):
            out.append(math.nan if r.codes else None)
            continue
        out.append(sum(a == b for a, b in zip(r.codes, r.reread)) / len(r.codes))
    return out


def combine(components: dict[str, list[float | None]], weights: dict[str, float]) -> tuple[list[float], dict]:
    """Weighted sum per rollout over the components that apply (weights renormalised). A rollout with a failed (NaN)
    component gets NaN and is counted, so the caller drops it rather than reading it as a 0; so does one to which no
    weighted component applies (not reachable with GRPO's default weights, where alignment or OCR always applies),
    counted in `excluded` but not in `failed`."""
    unknown = set(components) - set(weights)
    if unknown:
        raise ValueError(f"no weight for reward components {sorted(unknown)}")
    n = len(next(iter(components.values())))
    if any(len(v) != n for v in components.values()):
        raise ValueError("reward components disagree on the number of rollouts")
    rewards, failed = [], {k: 0 for k in components}
    for i in range(n):
        total = weight = 0.0
        bad = False
        for name, values in components.items():
            v = values[i]
            if v is None or weights[name] == 0:
                continue
            if not math.isfinite(v):
                failed[name] += 1
                bad = True
                continue
            total += weights[name] * v
            weight += weights[name]
        rewards.append(math.nan if bad or weight == 0 else total / weight)
    return rewards, {"failed": failed, "excluded": sum(not math.isfinite(r) for r in rewards)}
