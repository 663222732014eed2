"""Mean reward and best-of-G of checkpoints on GRPO's fixed probe prompts, side by side (the paper's Figure 2b as a
table: does the RL model's mean reward beat the SFT model's best-of-G on the same prompts?).

    .venv/bin/python bench/grpo_probe.py --checkpoints out/ar5/candidate,out/grpo5 [--prompts 16 --rollouts 8]

Each checkpoint is scored exactly as `xomni train grpo` scores its probe (`probe` in xomni/stages/train_grpo.py:
the same prompts, rollout seeds, decoder steps, judges and weights; its defaults unless given here), so a run's
logged `probe_*` values and this table agree. Also saves each checkpoint's probe rollouts as
OUT/probe_<name>.png (one row per prompt).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xomni.engine import Sampling
from xomni.pipeline import Pipeline
from xomni.rewards.pool import RewardPool
from xomni.stages.train_grpo import PRESETS, Config, probe, resolve, reward_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoints", required=True,
                    help="comma-separated checkpoint folders (a GRPO run folder is one)")
    ap.add_argument("--prompts", type=int, default=Config.probe_prompts)
    ap.add_argument("--rollouts", type=int, default=PRESETS["tiny"]["rollouts"])
    ap.add_argument("--min-p", type=float, default=PRESETS["tiny"]["min_p"])
    ap.add_argument("--out", default="out/grpo_probe")
    args = ap.parse_args()
    cfg = resolve(Config(probe_prompts=args.prompts, rollouts=args.rollouts, min_p=args.min_p))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with RewardPool(tuple(cfg.ocr.split(",")), 0, ocr_rule=cfg.ocr_rule) as pool:
        weights = reward_weights(cfg, pool.components)
        print(f"probe: {cfg.probe_prompts} prompts x {cfg.rollouts} rollouts, min-p {cfg.min_p}, weights {weights}")
        print("| checkpoint | mean reward | best of G | alignment | OCR | consistency |")
        print("|---|---|---|---|---|---|")
        for path in args.checkpoints.split(","):
            pipe = Pipeline.from_pretrained(path)
            name = Path(path).name
            r = probe(pipe, cfg, pool, weights, Sampling(temperature=1.0, min_p=cfg.min_p), out / f"probe_{name}.png")
            cells = ["-" if r.get(f"probe_{k}") is None else f"{r[f'probe_{k}']:.3f}"
                     for k in ("reward", "best_of_g", "alignment", "ocr", "consistency")]
            print(f"| {path} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
