"""What GRPO's reward pays for the answers a policy can give instead of the one asked for (xomni/rewards).

    .venv/bin/python bench/reward_holes.py [--n 48] [--checkpoint checkpoints/tiny] [--steps 8]

For --n training-split scenes of each kind (English text, Chinese text, a group of two or more objects) the scene is
rendered as asked and as each alternative below, every image reconstructed through the checkpoint's tokens and
decoder (`--steps` sampling steps, as GRPO decodes its rollouts), and scored against the scene as asked (its dense
caption, or its prompt at `--prompt-level`) with the stage's default components and weights (OCR accuracy with rapidocr, alignment by `reward_judge()`; 1 : 1):

- text scenes: `asked`; `wrong text` (the same plate with other characters of the same length, as a policy that
  cannot yet write the text would draw it); `wrong text, half the sign` (that sign cut to its first line, or to the
  first half of a single line); `blank plate` (the plate without ink); `no sign` (the scene without its text
  element);
- count scenes: `asked`; `one fewer` and `one more` object in the counted group.

A reward without holes ranks `asked` first and every attempt at the text above leaving it out. The table prints the
mean reward of each variant and the shares of scenes where it scores above, the same as, and below the baseline:
`no sign` for text scenes, `asked` for counts.

A second table checks that the reward's judge (`reward_judge()`, which drops components nearer a plate colour than
to their own) still finds the objects the plain scene judge finds: the share of the first --n-exact training scenes
without text whose reconstruction each judge gets exactly (xomni/eval/scene_judge.py, `exact`).
"""

from __future__ import annotations

import argparse
import copy
import random

import numpy as np
import torch

from xomni.data.batches import pixels_of
from xomni.data.world import CHARS_ZH, WORDS_EN, WorldConfig, make_scene, prompts, render
from xomni.eval.ocr import make_ocr_judge
from xomni.eval.scene_judge import SceneJudge, exact
from xomni.pipeline import ImagePipeline, to_image
from xomni.rewards import Rollout, alignment, combine, ocr_accuracy, reward_judge


def with_lines(scene, lines):
    s = copy.deepcopy(scene)
    s.text.lines = lines
    return s


def wrong_lines(scene, rng: random.Random) -> list[str]:
    """Other characters of the same lengths: Chinese characters for Chinese, letters from other words for English."""
    if scene.text.lang == "zh":
        return ["".join(rng.choice([c for c in CHARS_ZH if c != ch]) for ch in line) for line in scene.text.lines]
    letters = "".join(WORDS_EN)
    return ["".join(" " if ch == " " else rng.choice([c for c in letters if c != ch]) for ch in line)
            for line in scene.text.lines]


def half_sign(scene):
    """The sign cut to about half: its first line if it has more than one, else the first half of that line."""
    s = copy.deepcopy(scene)
    t = s.text
    if len(t.lines) > 1:
        t.lines, t.line_boxes = t.lines[:1], t.line_boxes[:1]
    else:
        x0, y0, x1, y1 = t.line_boxes[0]
        keep = (len(t.lines[0]) + 1) // 2
        t.lines, t.line_boxes = [t.lines[0][:keep]], [(x0, y0, x0 + (x1 - x0) * keep // len(t.lines[0]), y1)]
    t.box = t.line_boxes[0]
    return s


def text_variants(scene, rng: random.Random) -> dict:
    no_sign = copy.deepcopy(scene)
    no_sign.text = None
    wrong = with_lines(scene, wrong_lines(scene, rng))
    return {"asked": scene, "wrong text": wrong, "wrong text, half the sign": half_sign(wrong),
            "blank plate": with_lines(scene, [" " * len(line) for line in scene.text.lines]), "no sign": no_sign}


def count_variants(scene) -> dict:
    g = next(g for g in scene.groups if g.count > 1)
    members = [i for i, o in enumerate(scene.objects) if (o.shape, o.color) == (g.shape, g.color)]
    fewer = copy.deepcopy(scene)
    fewer.objects = [o for i, o in enumerate(scene.objects) if i != members[-1]]
    out = {"asked": scene, "one fewer": fewer}
    # one more: a copy of a member in the first free cell-aligned spot of its size that overlaps nothing
    w = scene.objects[members[0]].box[2] - scene.objects[members[0]].box[0]
    h = scene.objects[members[0]].box[3] - scene.objects[members[0]].box[1]
    taken = [o.box for o in scene.objects] + ([scene.text.box] if scene.text is not None else [])
    for y in range(0, scene.height - h + 1, scene.cell):
        for x in range(0, scene.width - w + 1, scene.cell):
            box = (x, y, x + w, y + h)
            if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in taken):
                more = copy.deepcopy(scene)
                extra = copy.deepcopy(scene.objects[members[0]])
                extra.box = box
                more.objects.append(extra)
                out["one more"] = more
                return out
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=48, help="scenes of each kind (English text, Chinese text, counts)")
    p.add_argument("--checkpoint", default="checkpoints/tiny", help="tokenizer + decoder for the reconstructions")
    p.add_argument("--steps", type=int, default=8, help="decoder sampling steps (GRPO's default: 8)")
    p.add_argument("--n-exact", type=int, default=150, help="scenes without text for the judges' exact-match table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt-level", choices=("short", "medium", "dense"), default=None,
                   help="judge each image against the scene's prompt at this level (as GRPO's rollouts are); "
                        "default: against the whole scene (its dense caption)")
    args = p.parse_args()

    kinds: dict[str, list] = {"text en": [], "text zh": [], "count": []}
    for i in range(200_000):
        s = make_scene(WorldConfig(), "train", i)
        kind = (f"text {s.text.lang}" if s.text is not None
                else "count" if any(g.count > 1 for g in s.groups) else None)
        if kind is not None and len(kinds[kind]) < args.n:
            kinds[kind].append(s)
        if all(len(v) == args.n for v in kinds.values()):
            break
    rng = random.Random(args.seed)
    judge, ocr = reward_judge(), [make_ocr_judge("rapidocr")]
    pipe = ImagePipeline.from_pretrained(args.checkpoint)
    print("| scenes | variant | n | reward: mean | ocr: mean | alignment: mean | vs baseline: above / same / below |")
    print("|---|---|---|---|---|---|---|")
    for kind, scenes in kinds.items():
        variants = [text_variants(s, rng) if kind.startswith("text") else count_variants(s) for s in scenes]
        names = list(dict.fromkeys(k for v in variants for k in v))
        baseline = "no sign" if kind.startswith("text") else "asked"
        rewards: dict[str, dict[int, float]] = {}  # variant -> scene index -> reward
        means: dict[str, dict[str, float]] = {}  # variant -> component -> mean over the scenes it applies to
        for name in names:
            idx = [i for i, v in enumerate(variants) if name in v]
            images = [render(variants[i][name]) for i in idx]
            # each scene's noise from its own generator: the same for every variant, whichever scenes have it
            gens = [torch.Generator().manual_seed(args.seed * 100_003 + i) for i in idx]
            images = [to_image(x) for x in pipe.decode(pipe.encode(pixels_of(images)), steps=args.steps, generator=gens)]
            rollouts = [Rollout(scenes[i], im, prompt=prompts(scenes[i])[args.prompt_level] if args.prompt_level
                                else "") for i, im in zip(idx, images)]  # scored against the scene as asked
            parts = {"ocr": ocr_accuracy(rollouts, ocr), "alignment": alignment(rollouts, judge)}
            total, _ = combine(parts, {"ocr": 1.0, "alignment": 1.0})
            rewards[name] = dict(zip(idx, total))
            means[name] = {k: np.mean([x for x in v if x is not None]) if any(x is not None for x in v)
                           else float("nan") for k, v in parts.items()}
        for name in names:
            common = [i for i in rewards[name] if i in rewards[baseline]]
            d = np.array([rewards[name][i] - rewards[baseline][i] for i in common])
            split = f"{np.mean(d > 1e-9):.2f} / {np.mean(abs(d) <= 1e-9):.2f} / {np.mean(d < -1e-9):.2f}"
            m = means[name]
            print(f"| {kind} | {name} | {len(rewards[name])} | {np.mean(list(rewards[name].values())):.3f} | "
                  f"{m['ocr']:.3f} | {m['alignment']:.3f} | {'(baseline)' if name == baseline else split} |")

    plain = [s for s in (make_scene(WorldConfig(), "train", i) for i in range(4 * args.n_exact)) if s.text is None]
    plain = plain[: args.n_exact]
    gen = torch.Generator().manual_seed(args.seed)
    images = [to_image(x) for x in pipe.decode(pipe.encode(pixels_of([render(s) for s in plain])), steps=args.steps,
                                               generator=gen)]
    print("\n| judge | scenes without text | exact on reconstructions |\n|---|---|---|")
    for name, j in (("SceneJudge()", SceneJudge()), ("reward_judge()", judge)):
        print(f"| {name} | {len(plain)} | {np.mean([exact(j.objects(im), s) for s, im in zip(plain, images)]):.3f} |")


if __name__ == "__main__":
    main()
