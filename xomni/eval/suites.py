"""Synthetic benchmark suites: held-out, versioned, fixed items built from the world's reserved split.

Each suite mirrors an official benchmark in the world's terms and is scored by that benchmark's own scorer:

| suite         | mirrors         | items (held-out scenes)                                   | judge            |
|---------------|-----------------|-----------------------------------------------------------|------------------|
| synth-text-en | LongText (EN)   | English text scenes, balanced over category x length      | OCR              |
| synth-text-zh | LongText (ZH)   | Chinese text scenes, balanced over category x length      | OCR              |
| synth-geneval | GenEval         | the six tags in its clause format, shapes as classes      | scene judge      |
| synth-dpg     | DPG-Bench       | dense prompts, dependent yes/no questions                 | scene judge, OCR |
| synth-vqa     | VQA             | colour / count / position / text questions                | model's answers  |
| synth-pope    | POPE            | presence yes/no, random / popular / adversarial negatives | model's answers  |

An item is a JSON-able dict: `id`, `index` (held-out scene index), `prompt` (what a text-to-image model is asked),
`scene` (the spec: renders and reconstructions come from it) and the suite's ground truth. Items depend only on
`SUITE_VERSION` and the world's `SPLIT_VERSION` (`version`); bump the former when a rule here changes every
suite's items, or the suite's entry in `RULE_VERSIONS` when only its own does.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from xomni.data.world import (CATEGORIES, COLORS, SHAPES, SPLIT_VERSION, SPLITS, Scene, WorldConfig, is_reserved_combo,
                              make_scene, prompts, questions)
from xomni.eval import dpg, geneval, longtext

SUITE_VERSION = "s1"
# suites whose rule changed since SUITE_VERSION, by their own count (bumping SUITE_VERSION would redraw POPE's
# items too): synth-dpg q2 tells groups of one shape apart by colour (`dpg_questions`)
RULE_VERSIONS = {"synth-dpg": "q2"}
TEXT_SUITES = {"synth-text-en": "en", "synth-text-zh": "zh"}
SUITES = ("synth-text-en", "synth-text-zh", "synth-geneval", "synth-dpg", "synth-vqa", "synth-pope")
LENGTHS = ("short", "long")
MAX_SCAN = 200_000  # held-out scene indices scanned for items before giving up


def version(suite: str | None = None) -> str:
    """The items' version: SUITE_VERSION, the world's split and, for a suite in RULE_VERSIONS, its own rule's."""
    return f"{SUITE_VERSION}/{SPLIT_VERSION}" + (f"/{RULE_VERSIONS[suite]}" if suite in RULE_VERSIONS else "")


def _scenes(world: WorldConfig, split: str):
    for index in range(MAX_SCAN):
        yield index, make_scene(world, split, index)


def _all_found(items: list[dict], n: int, suite: str, split: str) -> list[dict]:
    if len(items) < n:
        raise RuntimeError(f"{split} split too small: {len(items)} of {n} {suite} items in {MAX_SCAN} scenes")
    return items


def _item(suite: str, k: int, index: int, scene: Scene, prompt: str, **truth) -> dict:
    return {"id": f"{suite}/{k:04d}", "index": index, "prompt": prompt, "scene": scene.to_dict(), **truth}


def _balanced(n: int, keys: list, key_of, world: WorldConfig, split: str):
    """The split's first scenes filling an equal quota per key (the first keys take the remainder)."""
    quota = {k: n // len(keys) + (i < n % len(keys)) for i, k in enumerate(keys)}
    for index, scene in _scenes(world, split):
        k = key_of(scene)
        if k is not None and quota.get(k, 0) > 0:
            quota[k] -= 1
            yield index, scene, k
            if not any(quota.values()):
                return
    raise RuntimeError(f"{split} split too small for {n} items over {keys}")


# ---------------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------------


def build_text(suite: str, n: int, world: WorldConfig, split: str) -> list[dict]:
    lang = TEXT_SUITES[suite]
    keys = [(c, length) for c in CATEGORIES for length in LENGTHS]

    def key_of(s: Scene):
        return (s.text.category, s.text.length) if s.text is not None and s.text.lang == lang else None

    return [_item(suite, k, index, scene, prompts(scene)["dense"], text=[scene.text.text], lang=lang,
                  category=cat, length=length)
            for k, (index, scene, (cat, length)) in enumerate(_balanced(n, keys, key_of, world, split))]


def _a(shape: str) -> str:
    return "an" if shape[0] in "aeiou" else "a"


def geneval_metadata(scene: Scene, tag: str) -> dict | None:
    """The GenEval line a held-out scene realises for `tag`, or None. Classes are shape names; a scene realises a
    position prompt only when its true boxes satisfy GenEval's own position rule."""
    g = scene.groups
    singles = len(g) == 2 and g[0].count == 1 and g[1].count == 1 and g[0].shape != g[1].shape
    if tag == "single_object" and len(g) == 1 and g[0].count == 1:
        return {"tag": tag, "include": [{"class": g[0].shape, "count": 1}], "prompt": f"a photo of {_a(g[0].shape)} {g[0].shape}"}
    if tag == "colors" and len(g) == 1 and g[0].count == 1:
        return {"tag": tag, "include": [{"class": g[0].shape, "count": 1, "color": g[0].color}],
                "prompt": f"a photo of {_a(g[0].color)} {g[0].color} {g[0].shape}"}
    if tag == "counting" and len(g) == 1 and g[0].count >= 2:
        n = g[0].count
        return {"tag": tag, "include": [{"class": g[0].shape, "count": n}],
                "exclude": [{"class": g[0].shape, "count": n + 1}],
                "prompt": f"a photo of {['', '', 'two', 'three', 'four'][n]} {SHAPES[g[0].shape][0]}"}
    if tag == "two_object" and singles:
        return {"tag": tag, "include": [{"class": x.shape, "count": 1} for x in g],
                "prompt": f"a photo of {_a(g[0].shape)} {g[0].shape} and {_a(g[1].shape)} {g[1].shape}"}
    if tag == "color_attr" and singles:
        return {"tag": tag, "include": [{"class": x.shape, "count": 1, "color": x.color} for x in g],
                "prompt": f"a photo of {_a(g[0].color)} {g[0].color} {g[0].shape} and "
                          f"{_a(g[1].color)} {g[1].color} {g[1].shape}"}
    if tag == "position" and singles and scene.relation is not None:
        a, b = scene.objects  # group 0 (a) stands in `relation` to group 1 (b)
        if scene.relation not in geneval.relative_position(a.box, b.box):
            return None
        return {"tag": tag, "include": [{"class": b.shape, "count": 1},
                                        {"class": a.shape, "count": 1, "position": [scene.relation, 0]}],
                "prompt": f"a photo of {_a(a.shape)} {a.shape} {scene.relation} {_a(b.shape)} {b.shape}"}
    return None


def build_geneval(n: int, world: WorldConfig, split: str) -> list[dict]:
    items = []
    for tag in geneval.TAGS:
        quota = n // len(geneval.TAGS) + (geneval.TAGS.index(tag) < n % len(geneval.TAGS))
        found = 0
        for index, scene in _scenes(world, split):
            if found == quota:
                break
            meta = geneval_metadata(scene, tag)
            if meta is not None:
                items.append(_item("synth-geneval", len(items), index, scene, meta["prompt"], metadata=meta))
                found += 1
        if found < quota:  # never fewer items than asked without saying so
            raise RuntimeError(f"{split} split too small: {found} of {quota} {tag} items in {MAX_SCAN} scenes")
    return items


def dpg_questions(scene: Scene) -> list[dict]:
    """Dependent yes/no questions about a scene, each with a machine-checkable `check` for the judges. Groups that
    share a shape are told apart by colour: each is asked as "are there N <colour> <shapes>?" (kind `color_count`,
    which a prompt naming no colour does not raise), the shape's total as "are there N <shapes>?", and their relation
    names both colours (a prompt naming none asks it of any two of the shape). Asked as the other groups are ("is the triangle red?", a relation of shapes alone), two
    triangles got one question, "is there a triangle?", which one triangle of any colour answered (GRPO learned to
    draw one object where two were asked: docs/unified.md, "Session 37")."""
    qs: list[dict] = []

    def add(text: str, category: str, check: dict, parents=()) -> int:
        qs.append({"qid": len(qs) + 1, "text": text, "category": category, "parents": list(parents), "check": check})
        return len(qs)

    entity = {}
    shapes = Counter(g.shape for g in scene.groups)
    for g in scene.groups:
        if g.shape not in entity:
            entity[g.shape] = add(f"Is there {_a(g.shape)} {g.shape}?", "entity - whole", {"kind": "shape", "shape": g.shape})
            if shapes[g.shape] > 1:
                total = sum(h.count for h in scene.groups if h.shape == g.shape)
                add(f"Are there {total} {SHAPES[g.shape][0]}?", "attribute - count",
                    {"kind": "count", "shape": g.shape, "color": None, "count": total}, [entity[g.shape]])
        if shapes[g.shape] > 1:  # told apart by colour
            text = f"Is there one {g.color} {g.shape}?" if g.count == 1 else f"Are there {g.count} {g.color} {SHAPES[g.shape][0]}?"
            add(text, "attribute - color", {"kind": "color_count", "shape": g.shape, "color": g.color, "count": g.count},
                [entity[g.shape]])
            continue
        add(f"Is the {g.shape} {g.color}?" if g.count == 1 else f"Are the {SHAPES[g.shape][0]} {g.color}?",
            "attribute - color", {"kind": "color", "shape": g.shape, "color": g.color}, [entity[g.shape]])
        if g.count > 1:
            add(f"Are there {g.count} {g.color} {SHAPES[g.shape][0]}?", "attribute - count",
                {"kind": "count", "shape": g.shape, "color": g.color, "count": g.count}, [entity[g.shape]])
    if scene.relation is not None:  # its parents ask for the shapes, not the groups' exact counts: one object too
        a, b = scene.groups         # many fails a count, and a true relation with it
        parents = sorted({entity[a.shape], entity[b.shape]})
        if a.shape != b.shape:
            add(f"Is the {a.shape} {scene.relation} the {b.shape}?", "relation - spatial",
                {"kind": "relation", "a": a.shape, "b": b.shape, "relation": scene.relation}, parents)
        else:
            add(f"Is the {a.color} {a.shape} {scene.relation} the {b.color} {b.shape}?", "relation - spatial",
                {"kind": "relation", "a": a.shape, "b": b.shape, "relation": scene.relation, "a_color": a.color,
                 "b_color": b.color}, parents)
    if scene.text is not None:
        add(f'Does the {scene.text.category} say "{scene.text.text}"?', "other - text",
            {"kind": "text", "text": scene.text.text, "lang": scene.text.lang})
    return qs


def build_dpg(n: int, world: WorldConfig, split: str) -> list[dict]:
    items = []
    for index, scene in _scenes(world, split):
        if len(items) == n:
            break
        if scene.text is None and scene.relation is None and all(g.count == 1 for g in scene.groups):
            continue  # keep the dense ones: text, a relation or a count
        items.append(_item("synth-dpg", len(items), index, scene, prompts(scene)["dense"], questions=dpg_questions(scene)))
    return _all_found(items, n, "synth-dpg", split)


VQA_KINDS = ("color", "count", "position", "text")


def build_vqa(n: int, world: WorldConfig, split: str) -> list[dict]:
    items = []
    for index, scene in _scenes(world, split):
        if len(items) == n:
            break
        kind = VQA_KINDS[len(items) % len(VQA_KINDS)]
        qs = [q for q in questions(scene) if q.kind == kind and not (kind == "position" and q.answer in ("yes", "no"))]
        if qs:
            items.append(_item("synth-vqa", len(items), index, scene, prompts(scene)["dense"], kind=kind,
                               question=qs[0].question, answer=qs[0].answer))
    return _all_found(items, n, "synth-vqa", split)


POPE_SETTINGS = ("random", "popular", "adversarial")


def build_pope(n: int, world: WorldConfig, split: str) -> list[dict]:
    """Pairs per scene: a present (colour, shape) -> "yes", an absent one -> "no". Absent ones are drawn at random,
    from the most frequent training combinations (popular), or sharing the shape or the colour of a present object
    (adversarial), as POPE's three settings."""
    popular = [c for c, _ in Counter((g.color, g.shape) for i in range(2000)
                                     for g in make_scene(world, "train", i).groups).most_common(10)]
    items = []
    for index, scene in _scenes(world, split):
        if len(items) >= n:
            break
        rng = random.Random(f"pope/{SUITE_VERSION}/{index}")
        setting = POPE_SETTINGS[(len(items) // 2) % len(POPE_SETTINGS)]
        present = {(g.color, g.shape) for g in scene.groups}
        color, shape = rng.choice(sorted(present))
        if setting == "random":
            pool = [(c, s) for c in COLORS for s in SHAPES]
        elif setting == "popular":
            pool = popular
        else:
            pool = [(c, shape) for c in COLORS] + [(color, s) for s in SHAPES]
        absent = [p for p in pool if p not in present]
        if not absent:
            continue
        c2, s2 = rng.choice(absent)
        for (c, s), answer in (((color, shape), "yes"), ((c2, s2), "no")):
            items.append(_item("synth-pope", len(items), index, scene, prompts(scene)["dense"], setting=setting,
                               question=f"Is there {_a(c)} {c} {s}?", answer=answer))
    return items[:n]


def build(suite: str, n: int, world: WorldConfig | None = None, split: str = "heldout") -> list[dict]:
    """A suite's first `n` items. `split="train"` builds the same items from training scenes instead: not a
    benchmark number (a model has seen those prompts' attributes together), but read beside the held-out one it
    separates what a model memorised from what it generalises to."""
    world = world or WorldConfig()
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if suite in TEXT_SUITES:
        return build_text(suite, n, world, split)
    builders = {"synth-geneval": build_geneval, "synth-dpg": build_dpg, "synth-vqa": build_vqa, "synth-pope": build_pope}
    if suite not in builders:
        raise ValueError(f"unknown suite {suite!r}; choose one of {SUITES}")
    return builders[suite](n, world, split)


# ---------------------------------------------------------------------------------------------------------------
# Scoring (pure: judge outputs in, metrics out)
# ---------------------------------------------------------------------------------------------------------------


def score_text(items: list[dict], reads: list[str]) -> dict:
    """LongText-Bench's text accuracy over items and their OCR reads, with per-category and per-length splits."""
    matches = [longtext.match_text(r, it["text"], it["lang"]) for it, r in zip(items, reads, strict=True)]
    out = {"score": longtext.text_accuracy(matches), "units": sum(m.total for m in matches)}
    for field in ("category", "length"):
        for value in sorted({it[field] for it in items}):
            sel = [m for it, m in zip(items, matches) if it[field] == value]
            out[f"{field}/{value}"] = longtext.text_accuracy(sel)
    return out


def unseen_pair(metadata: dict) -> bool:
    """Whether a GenEval item's prompt names a (colour, shape) pair that training scenes never hold (`colors` and
    `color_attr` items; the other tags name no colour, so their prompts are ones training prompts ask too)."""
    return any("color" in inc and is_reserved_combo(inc["color"], inc["class"]) for inc in metadata["include"])


def score_geneval(items: list[dict], detections: list[dict], threshold: float, counting_threshold: float) -> dict:
    """GenEval's overall and task scores, and, apart, the colour items (`colors`, `color_attr`) whose prompt names a
    pair training never showed (`colour_pairs/unseen`) and those naming trained pairs only (`colour_pairs/seen`):
    most of the suite's prompts are ones a training prompt also asks (docs/unified.md, session 34)."""
    results, pairs = [], {"unseen": [], "seen": []}
    for it, dets in zip(items, detections, strict=True):
        ok, _ = geneval.evaluate_image(it["metadata"], dets, threshold, counting_threshold)
        results.append((it["metadata"]["tag"], ok))
        if it["metadata"]["tag"] in ("colors", "color_attr"):
            pairs["unseen" if unseen_pair(it["metadata"]) else "seen"].append(ok)
    out = geneval.summarize(results)
    split = {f"colour_pairs/{k}": sum(v) / len(v) for k, v in pairs.items() if v}
    return {"score": out.pop("overall"), **{f"task/{k}": v for k, v in out.items()}, **split,
            **{f"colour_pairs/n_{k}": len(v) for k, v in pairs.items()}}


def answer_dpg(check: dict, objects: list, ocr: str) -> str:
    """The judge's yes/no for one synth-dpg question from the scene judge's objects and the OCR read."""
    kind = check["kind"]
    of_shape = [o for o in objects if o.shape == check.get("shape", check.get("a"))]
    if kind == "shape":
        ok = bool(of_shape)
    elif kind == "color":
        ok = bool(of_shape) and all(o.color == check["color"] for o in of_shape)
    elif kind in ("count", "color_count"):
        ok = sum(check["color"] in (None, o.color) for o in of_shape) == check["count"]  # None: of any colour
    elif kind == "relation":  # each side of its colour too, when the check names one (two groups of one shape)
        of_shape = [o for o in of_shape if check.get("a_color") in (None, o.color)]
        bs = [o for o in objects if o.shape == check["b"] and check.get("b_color") in (None, o.color)]
        if check["a"] == check["b"] and check.get("a_color") == check.get("b_color"):  # "a square below a square":
            ok = any(check["relation"] in geneval.relative_position(a.box, b.box)  # some two of them
                     for a in of_shape for b in bs if a is not b)
        else:
            ok = bool(of_shape) and bool(bs) and all(check["relation"] in geneval.relative_position(a.box, b.box)
                                                     for a in of_shape for b in bs)
    elif kind == "text":
        ok = longtext.match_text(ocr, check["text"], check["lang"]).accuracy == 1.0
    else:
        raise ValueError(f"unknown check {kind!r}")
    return "yes" if ok else "no"


def score_dpg(items: list[dict], objects: list[list], reads: list[str]) -> dict:
    per_image = []
    for it, objs, read in zip(items, objects, reads, strict=True):
        qs = [dpg.Question(q["qid"], q["text"], tuple(q["parents"]), q["category"]) for q in it["questions"]]
        answers = {q["qid"]: answer_dpg(q["check"], objs, read) for q in it["questions"]}
        per_image.append((qs, [answers]))
    out = dpg.summarize(per_image)
    return {"score": out.pop("dpg_score") / 100, **out}


def normalize_answer(text: str) -> str:
    """Lower-case, punctuation and surrounding space removed; spaces inside Chinese dropped."""
    text = re.sub(r"[^\w\s]", "", text.strip().lower())
    text = re.sub(r"\s+", " ", text).strip()
    return text.replace(" ", "") if re.search(r"[\u4e00-\u9fff]", text) else text


def score_vqa(items: list[dict], answers: list[str]) -> dict:
    hits = [normalize_answer(a) == normalize_answer(it["answer"]) for it, a in zip(items, answers, strict=True)]
    out = {"score": sum(hits) / len(hits)}
    for kind in sorted({it["kind"] for it in items}):
        sel = [h for it, h in zip(items, hits) if it["kind"] == kind]
        out[f"kind/{kind}"] = sum(sel) / len(sel)
    return out


def score_pope(items: list[dict], answers: list[str]) -> dict:
    """POPE: accuracy (headline), precision, recall and F1 of "yes", yes-ratio; per setting accuracy. An answer
    that is neither yes nor no counts as wrong."""
    said = [normalize_answer(a) for a in answers]
    truth = [it["answer"] for it in items]
    if len(said) != len(truth):
        raise ValueError(f"{len(said)} answers for {len(truth)} items")
    tp = sum(s == "yes" and t == "yes" for s, t in zip(said, truth))
    fp = sum(s == "yes" and t == "no" for s, t in zip(said, truth))
    fn = sum(s != "yes" and t == "yes" for s, t in zip(said, truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out = {"score": sum(s == t for s, t in zip(said, truth)) / len(truth), "precision": precision, "recall": recall,
           "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
           "yes_ratio": sum(s == "yes" for s in said) / len(said)}
    for setting in POPE_SETTINGS:
        sel = [s == t for it, s, t in zip(items, said, truth) if it["setting"] == setting]
        if sel:
            out[f"setting/{setting}"] = sum(sel) / len(sel)
    return out
