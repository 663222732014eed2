"""Two models' answers to the same understanding items, compared item by item: the difference of their scores with
its paired standard error, and how many items each gets right that the other gets wrong. Two evaluations of one
suite on the same items share every item's difficulty, so their difference is measured far more tightly than
either score alone (a binomial score over 200 items has a standard error near 0.03).

    .venv/bin/python bench/paired_answers.py out/s26/claims/sft/synth-vqa out/s26/claims/rl_grpo_s0_neg05/synth-vqa ...

Every folder is an `xomni eval synth-vqa|synth-pope` output (its manifest.jsonl and judged.jsonl); the first is the
base each other one is compared with, on the items both asked (the suite's first n, the smaller n of the two). The
folders must hold one suite at one version on one split.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from xomni.checkpoint import read_jsonl
from xomni.eval import suites


def hits(folder: Path) -> tuple[tuple[str, str, str], list[bool]]:
    """(suite, version, split) and each item's right/wrong, in item order, from the folder's own manifest (the
    items as that evaluation asked them) and answers."""
    header, *items = read_jsonl(folder / "manifest.jsonl")
    suite = header["suite"]
    if suite not in ("synth-vqa", "synth-pope"):
        raise SystemExit(f"{folder}: {suite} is not an understanding suite (synth-vqa, synth-pope)")
    said = {r["id"]: r["answer"] for r in read_jsonl(folder / "judged.jsonl")}
    if missing := [it["id"] for it in items if it["id"] not in said]:
        raise SystemExit(f"{folder}: {len(missing)} of {len(items)} items unanswered (first {missing[0]}): "
                         "an evaluation that did not finish")
    right = [suites.normalize_answer(said[it["id"]]) == suites.normalize_answer(it["answer"]) for it in items]
    return (suite, header.get("version", "?"), header.get("split", "heldout")), right


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path, help="the evaluation every other one is compared with (e.g. the SFT model's)")
    ap.add_argument("others", type=Path, nargs="+")
    args = ap.parse_args()
    suite, base = hits(args.base)
    print(f"{suite[0]} {suite[1]}, {suite[2]} split, base {args.base}\n")
    print("| model | n | base | model | difference ± paired s.e. | right only here | right only in base |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.others:
        other_suite, other = hits(folder)
        if other_suite != suite:  # another suite, version or split: not the same items
            raise SystemExit(f"{folder} is {other_suite} (suite, version, split), the base is {suite}")
        n = min(len(base), len(other))
        d = [int(o) - int(b) for b, o in zip(base[:n], other[:n])]
        mean = sum(d) / n
        se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan")
        print(f"| {folder} | {n} | {sum(base[:n]) / n:.3f} | {sum(other[:n]) / n:.3f} | {mean:+.3f} ± {se:.3f} | "
              f"{d.count(1)} | {d.count(-1)} |")


if __name__ == "__main__":
    main()
