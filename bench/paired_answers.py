"""Two models' answers to the same understanding items, compared item by item: the difference of their scores with
its paired standard error, and how many items each gets right that the other gets wrong. Two evaluations of one
suite on the same items share every item's difficulty, so their difference is measured far more tightly than
either score alone (a binomial score over 200 items has a standard error near 0.03).

    .venv/bin/python bench/paired_answers.py out/s26/claims/sft/synth-vqa out/s26/claims/rl_grpo_s0_neg05/synth-vqa ...

Every folder is an `xomni eval synth-vqa|synth-pope` output (its judged.jsonl and metrics.json); the first is the
base each other one is compared with, on the items both answered (the suite's first n, the smaller n of the two).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from xomni.eval import suites


def hits(folder: Path) -> tuple[str, list[bool]]:
    """The suite and each item's right/wrong, in item order."""
    metrics = json.loads((folder / "metrics.json").read_text())
    suite = metrics["suite"]
    if suite not in ("synth-vqa", "synth-pope"):
        raise SystemExit(f"{folder}: {suite} is not an understanding suite (synth-vqa, synth-pope)")
    items = suites.build(suite, metrics["n"], split=metrics.get("split", "heldout"))
    said = {r["id"]: r["answer"] for r in map(json.loads, (folder / "judged.jsonl").read_text().splitlines())}
    return suite, [suites.normalize_answer(said[it["id"]]) == suites.normalize_answer(it["answer"]) for it in items]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path, help="the evaluation every other one is compared with (e.g. the SFT model's)")
    ap.add_argument("others", type=Path, nargs="+")
    args = ap.parse_args()
    suite, base = hits(args.base)
    print(f"{suite}, base {args.base}\n")
    print("| model | n | base | model | difference ± paired s.e. | right only here | right only in base |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.others:
        other_suite, other = hits(folder)
        if other_suite != suite:
            raise SystemExit(f"{folder} is {other_suite}, the base is {suite}")
        n = min(len(base), len(other))
        d = [int(o) - int(b) for b, o in zip(base[:n], other[:n])]
        mean = sum(d) / n
        se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan")
        print(f"| {folder} | {n} | {sum(base[:n]) / n:.3f} | {sum(other[:n]) / n:.3f} | {mean:+.3f} ± {se:.3f} | "
              f"{d.count(1)} | {d.count(-1)} |")


if __name__ == "__main__":
    main()
