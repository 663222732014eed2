"""Mean reward and best-of-G of checkpoints on GRPO's fixed probe prompts, side by side (the paper's Figure 2b as a
table: does the RL model's mean reward beat the SFT model's best-of-G on the same prompts?), overall and by kind of
prompt.

    .venv/bin/python bench/grpo_probe.py --checkpoints out/recipe28/candidate,out/s30/grpo_two \\
        [--like out/s30/grpo_two] [--prompts 16 --rollouts 8 --seed 0 --scene-mix single=1,count=1,two=2,relation=2]
        [--rollouts 32 --best-of 8]

Each checkpoint is scored as `xomni train grpo` scores its probe (`probe_rollouts` in xomni/stages/train_grpo.py:
the prompts its seed and mixes draw, the same rollout seeds, decoder steps, judges, OCR rule, weights and bfloat16
setting). `--like RUN` takes every one of those settings from a GRPO run folder's saved config (`ar/meta.json`), so
the first table reproduces that run's logged `probe_*` values; without it they are the stage's defaults. Flags given
here override either (another --prompts draws another list of prompts, of the same kinds in the same shares; `auto`
bf16 resolves on this machine). The second table splits the prompts by kind (text: language and length; scenes:
`scene_task`) and gives each checkpoint's mean reward and best of G over that kind's prompts, every column over the
same prompts (those whose rewards all checkpoints scored), so that a gap between an RL model's mean and the SFT
model's best of G can be traced to the kinds that make it; its first row, over all prompts, gives that gap with its
standard error over prompts. `--best-of K` puts the best of K in both tables, estimated from all the rollouts a
prompt when there are more (`--rollouts 32 --best-of 8`: the logged best of 8, with less noise). Also saves each
checkpoint's probe rollouts as OUT/probe_<name>.png (one row per prompt, the first 8).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from dataclasses import fields
from pathlib import Path

import torch

from xomni.data.world import scene_task
from xomni.engine import Sampling
from xomni.eval.claims import expected_best_of
from xomni.pipeline import Pipeline
from xomni.precision import resolve_bf16
from xomni.rewards.pool import RewardPool
from xomni.stages.train_grpo import (PRESETS, Config, probe_rollouts, probe_summary, resolve,
                                      reward_weights)


def label(path) -> str:
    """A checkpoint's name in the table and the grids: its last two path parts (out/s30/grpo_two and
    out/s31/grpo_two, or two runs' candidate/ folders, are not one column)."""
    return "_".join(Path(path).resolve().parts[-2:])


def kind(scene) -> str:
    """A probe prompt's kind: "zh-long" and the like for text, the compositional task for a scene without text."""
    return f"{scene.text.lang}-{scene.text.length}" if scene.text is not None else scene_task(scene)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", required=True,
                    help="comma-separated checkpoint folders (a GRPO run folder is one); the first is the baseline")
    ap.add_argument("--like", default="", help="a GRPO run folder whose saved settings the probe takes")
    ap.add_argument("--prompts", type=int, help=f"probe prompts (default {Config.probe_prompts})")
    ap.add_argument("--rollouts", type=int, help=f"rollouts a prompt (default {PRESETS['tiny']['rollouts']})")
    ap.add_argument("--best-of", type=int,
                    help="K in the best-of-K columns (default: all the rollouts a prompt). With more rollouts than K, "
                         "each prompt's best of K is the expected maximum of K of its rollouts, estimated from all of "
                         "them (xomni.eval.claims.expected_best_of): with K the run's G (`--like RUN --rollouts 32 "
                         "--best-of 8` for a run of 8 rollouts a prompt) the quantity the run logs as its best of G, "
                         "with less noise")
    ap.add_argument("--min-p", type=float, help=f"(default {PRESETS['tiny']['min_p']})")
    ap.add_argument("--seed", type=int, help="the run's seed: it draws the probe's prompts (default 0)")
    ap.add_argument("--text-share", type=float)
    ap.add_argument("--text-mix", help="the run's --text-mix (default: the world's)")
    ap.add_argument("--scene-mix", help="the run's --scene-mix (default: the world's)")
    ap.add_argument("--bf16", help="as `xomni train grpo --bf16`: true, false or auto (default auto)")
    ap.add_argument("--out", default="out/grpo_probe")
    args = ap.parse_args()
    base = {"rollouts": PRESETS["tiny"]["rollouts"], "min_p": PRESETS["tiny"]["min_p"]}
    if args.like:
        meta = json.loads((Path(args.like) / "ar" / "meta.json").read_text())
        base = {k: v for k, v in meta["config"].items() if k in {f.name for f in fields(Config)} and v is not None}
    given = {"probe_prompts": args.prompts, "rollouts": args.rollouts, "min_p": args.min_p, "seed": args.seed,
             "text_share": args.text_share, "text_mix": args.text_mix, "scene_mix": args.scene_mix, "bf16": args.bf16}
    cfg = resolve(Config(**{**base, **{k: v for k, v in given.items() if v is not None}}))
    best_k = cfg.rollouts if args.best_of is None else args.best_of
    if not 1 <= best_k <= cfg.rollouts:
        ap.error(f"--best-of {best_k}: needs 1 <= K <= the rollouts a prompt ({cfg.rollouts})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = args.checkpoints.split(",")
    scored = []  # per checkpoint: (pairs, rewards (P, G))
    models = {name: path for name, path in (("hps", cfg.hps), ("vlm_alignment", cfg.vlm),
                                            ("unified", cfg.unified_reward)) if path}
    with RewardPool(tuple(e for e in cfg.ocr.split(",") if e), 0, models, cfg.ocr_rule) as pool:
        weights = reward_weights(cfg, pool.components)
        print(f"probe: {cfg.probe_prompts} prompts x {cfg.rollouts} rollouts, seed {cfg.seed}, min-p {cfg.min_p}, "
              f"weights {weights}, OCR {cfg.ocr} ({cfg.ocr_rule}), text mix {cfg.text_mix or 'world'}, "
              f"scene mix {cfg.scene_mix or 'world'}, bf16 {cfg.bf16}{f', settings of {args.like}' if args.like else ''}")
        print(f"| checkpoint | mean reward | best of {best_k} | groups | alignment | OCR |")
        print("|---|---|---|---|---|---|")
        for i, path in enumerate(paths):
            pipe = Pipeline.from_pretrained(path)
            bf16 = resolve_bf16(cfg.bf16, next(pipe.model.parameters()).device)
            pairs, r, parts, top = probe_rollouts(pipe, cfg, pool, weights, Sampling(temperature=1.0, min_p=cfg.min_p),
                                                out / f"probe_{label(path)}.png", bf16)
            summary = probe_summary(r, parts, top)  # the run's logged probe record
            came_back = torch.isfinite(r).all(1)
            if best_k != cfg.rollouts and came_back.any():  # the best of K, estimated from all G
                summary["probe_best_of_g"] = statistics.fmean(expected_best_of(row.tolist(), best_k)
                                                              for row in r[came_back])
            cells = ["-" if summary.get(f"probe_{k}") is None else f"{summary[f'probe_{k}']:.3f}"
                     for k in ("reward", "best_of_g", "alignment", "ocr")]
            print(f"| {path} | {' | '.join(cells[:2])} | {summary['probe_groups']} | {' | '.join(cells[2:])} |")
            scored.append((pairs, r))
    # by kind, every checkpoint over the same prompts: a group with a failed reward is left out (as the stage's probe
    # does) for every checkpoint, so no column's mean is over prompts another's is not
    ok = torch.stack([torch.isfinite(r).all(1) for _, r in scored]).all(0)
    by_kind: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))  # kind -> checkpoint # -> (mean, best)
    for i, (pairs, r) in enumerate(scored):
        for (scene, _), row, good in zip(pairs, r, ok):
            if good:
                by_kind[kind(scene)][i].append((float(row.mean()), expected_best_of(row.tolist(), best_k)))
    print()
    print("| kind | prompts | " + " | ".join(f"{label(p)}: mean / best of {best_k}" for p in paths)
          + f" | last mean minus {Path(paths[0]).name}'s best of {best_k} |")
    print("|---|---|" + "---|" * (len(paths) + 1))
    if len(paths) > 1:  # the first table's comparison, prompt by prompt: its spread says how far 16 prompts go
        gaps = [float(last.mean()) - expected_best_of(first.tolist(), best_k)
                for first, last, good in zip(scored[0][1], scored[-1][1], ok) if good]
        se = statistics.stdev(gaps) / len(gaps) ** 0.5 if len(gaps) > 1 else float("nan")
        blank = " | ".join("" for _ in paths)
        print(f"| all | {len(gaps)} | {blank} | {statistics.fmean(gaps):+.3f} ± {se:.3f} "
              "(standard error over prompts) |")
    for k in sorted(by_kind):
        got = by_kind[k]
        means = {i: sum(m for m, _ in got[i]) / len(got[i]) for i in range(len(paths)) if got[i]}
        bests = {i: sum(b for _, b in got[i]) / len(got[i]) for i in range(len(paths)) if got[i]}
        cells = [f"{means[i]:.3f} / {bests[i]:.3f}" if i in means else "-" for i in range(len(paths))]
        last = len(paths) - 1
        gap = f"{means[last] - bests[0]:+.3f}" if last in means and 0 in bests else "-"
        print(f"| {k} | {len(got[0])} | {' | '.join(cells)} | {gap} |")


if __name__ == "__main__":
    main()
