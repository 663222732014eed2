"""Do the letters a model draws follow the prompt? Character recall of a text suite's OCR output, against chance.

    .venv/bin/python bench/text_copy.py out/tiny9/eval_synth-text-en [more eval folders ...]

Reads an `xomni eval synth-text-en|zh` output folder (manifest.jsonl, judged.jsonl). Text accuracy counts whole
words and is 0 until a model spells them; this asks for less. For each item, the share of the asked characters
(lines joined by spaces, lower case) that the OCR reading contains in order (longest matching blocks /
asked length); the mean over items is printed next to the same measure against another item's asked text (a
fixed derangement), which is what a model that draws letters unrelated to its prompt scores.
"""

from __future__ import annotations

import argparse
import json
from difflib import SequenceMatcher
from pathlib import Path


def recall(asked: str, read: str) -> float:
    """Share of `asked`'s characters found in order in `read`."""
    return sum(b.size for b in SequenceMatcher(None, asked, read, autojunk=False).get_matching_blocks()) / len(asked)


def pairs(folder: Path) -> list[tuple[str, str]]:
    items = {x["id"]: x for x in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines()) if "text" in x}
    judged = [json.loads(line) for line in (folder / "judged.jsonl").read_text().splitlines()]
    return [(" ".join(items[j["id"]]["text"]).lower(), j["ocr"].lower()) for j in judged]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args()
    print("| eval folder | items | items with >= 3 characters read | character recall | against another item's text |")
    print("|---|---|---|---|---|")
    for folder in args.folders:
        p = pairs(folder)
        other = [p[(i + 1) % len(p)][0] for i in range(len(p))]  # the next item's asked text
        own = sum(recall(a, r) for a, r in p) / len(p)
        chance = sum(recall(o, r) for o, (_, r) in zip(other, p)) / len(p)
        read = sum(len(r.replace(" ", "")) >= 3 for _, r in p)
        print(f"| {folder} | {len(p)} | {read} | {own:.3f} | {chance:.3f} |")


if __name__ == "__main__":
    main()
