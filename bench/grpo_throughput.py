"""GRPO throughput: rollouts per second and the step-time split, with the judges in this process after sampling
against judges in a worker process overlapped with sampling (xomni/rewards/pool.py), and with decoding and the
update's forwards in bfloat16 (`--bf16 true`; pays where the CPU has native bf16).

    .venv/bin/python bench/grpo_throughput.py --checkpoint checkpoints/tiny [--steps 3] [--prompts 4 --rollouts 8]
                                              [--only TEXT] [--bf16 false]

Runs `xomni train grpo` for --steps steps in each arrangement (fresh temporary folders, same seed, same prompts) and
prints a markdown table of means over the steps after the first (the first pays for start-up): seconds sampling,
decoding, judging that was not overlapped (in this process, or waiting for the worker after the last chunk),
updating, and rollouts per second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from xomni.stages import train_grpo

ARRANGEMENTS = {
    "judges after sampling (1 chunk, in process)": {"chunks": 1, "reward_workers": 0, "bf16": "false"},
    "judges overlapped (2 chunks, 1 worker)": {"chunks": 2, "reward_workers": 1, "bf16": "false"},
    "judges overlapped, bf16 decoding and update": {"chunks": 2, "reward_workers": 1, "bf16": "true"},
    "the same in 4 chunks": {"chunks": 4, "reward_workers": 1, "bf16": "true"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny", help="a checkpoint folder with ar/")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--only", default="", help="run only the arrangements whose name contains this text")
    ap.add_argument("--bf16", default="", choices=["", "true", "false", "auto"],
                    help="override every arrangement's bf16 setting (e.g. false on a CPU without native bf16, where "
                         "autocast to bf16 is far slower)")
    args = ap.parse_args()
    if args.steps < 2:
        ap.error("--steps must be at least 2: the first step (start-up) is left out of the means")
    print(f"{args.prompts} prompts x {args.rollouts} rollouts per step, {args.steps} steps, checkpoint {args.checkpoint}")
    print("| arrangement | sample s | decode s | judge wait s | update s | rollouts/s |")
    print("|---|---|---|---|---|---|")
    for name, change in ARRANGEMENTS.items():
        if args.only not in name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cfg = train_grpo.Config(checkpoint=args.checkpoint, out=str(Path(tmp) / "grpo"), steps=args.steps,
                                    prompts_per_step=args.prompts, rollouts=args.rollouts, save_every=10**6,
                                    probe_prompts=0, kl="full", neg_scale=0.5,  # as runs/cpu_tiny_rl.sh
                                    scene_mix="single=1,count=1,two=2,relation=2",
                                    **{**change, **({"bf16": args.bf16} if args.bf16 else {})})
            train_grpo.main(cfg)
            rows = [json.loads(x) for x in (Path(cfg.out) / "grpo_log.jsonl").read_text().splitlines()]
        rows = [r for r in rows if "seconds" in r][1:]
        mean = lambda key: sum(r["seconds"][key] for r in rows) / len(rows)  # noqa: E731
        speed = sum(r["rollouts_per_s"] for r in rows) / len(rows)
        bf16 = change["bf16"] if not args.bf16 else args.bf16
        label = name if bf16 == change["bf16"] else f"{name} [--bf16 {bf16}]"  # what ran, not what the name says
        print(f"| {label} | {mean('sample'):.2f} | {mean('decode'):.2f} | {mean('judge_wait'):.2f} | "
              f"{mean('update'):.2f} | {speed:.2f} |")


if __name__ == "__main__":
    main()
