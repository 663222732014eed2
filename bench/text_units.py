"""What an `xomni eval synth-text-zh` (or -en) folder's OCR read, against what the prompts asked, by text length.

    .venv/bin/python bench/text_units.py out/recipe28/eval_synth-text-zh [more eval folders ...]

For each folder and length (short, long): the share of the asked units (characters for Chinese, words for English)
the OCR read (the suite's score, LongText-Bench's rule: extra units cost nothing), units read per unit asked (above 1:
the image holds more text than asked; for Chinese the rule's units include any Latin letter or digit the OCR reads in
the strokes, so Han characters read per character asked is given apart: until session 34 only the first was), the
score by the strict rule GRPO's `--ocr-rule strict` rewards (the units read
beyond those asked charged too: matched / max(asked, read), micro-averaged as the suite), the images read exactly and
read empty; for Chinese, the share read by the character's frequency rank in `xomni/data/chars_zh.txt` (the world's
300 characters, most frequent first).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from xomni.eval import longtext

CHARS_ZH = (Path(__file__).resolve().parents[1] / "xomni" / "data" / "chars_zh.txt").read_text(encoding="utf-8").strip()
RANKS = ((0, 50), (50, 100), (100, 200), (200, 300))


def rows(folder: Path) -> list[str]:
    items = {x["id"]: x for x in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines()) if "id" in x}
    stats: dict[str, Counter] = {}
    read_by_rank, asked_by_rank = Counter(), Counter()
    rank = {c: i for i, c in enumerate(CHARS_ZH)}
    for judged in map(json.loads, (folder / "judged.jsonl").read_text().splitlines()):
        item = items[judged["id"]]
        lang = item["lang"]
        m = longtext.match_text(judged["ocr"] or "", item["text"], lang)
        s = stats.setdefault(item["length"], Counter())
        s["images"] += 1
        s["asked"] += m.total
        s["read"] += m.read
        s["matched"] += m.matched
        s["strict_total"] += max(m.total, m.read)
        s["exact"] += m.matched == m.total == m.read
        s["empty"] += not m.read
        if lang == "zh":
            s["han_read"] += sum("\u4e00" <= ch <= "\u9fff" for ch in longtext.clean_ocr(judged["ocr"] or ""))
        if lang == "zh":  # which asked characters were read, by their frequency rank
            asked = longtext.units(longtext.normalize(" ".join(item["text"]), lang), lang)
            left = Counter(longtext.units(longtext.normalize(longtext.clean_ocr(judged["ocr"] or ""), lang), lang))
            for c in asked:
                r = next((f"{a}-{b}" for a, b in RANKS if a <= rank.get(c, -1) < b), "other")
                asked_by_rank[r] += 1
                if left[c] > 0:
                    left[c] -= 1
                    read_by_rank[r] += 1
    out = []
    for length in sorted(stats):
        s = stats[length]
        han = f"{s['han_read'] / s['asked']:.2f}" if "han_read" in s else "-"
        out.append(f"| {folder} | {length} | {s['images']} | {s['matched'] / s['asked']:.3f} | "
                   f"{s['read'] / s['asked']:.2f} | {han} | {s['matched'] / s['strict_total']:.3f} | {s['exact']} | "
                   f"{s['empty']} |")
    if asked_by_rank:
        ranks = ", ".join(f"{r}: {read_by_rank[r] / asked_by_rank[r]:.2f} ({asked_by_rank[r]})"
                          for r in [f"{a}-{b}" for a, b in RANKS] + ["other"] if asked_by_rank[r])
        out.append(f"| {folder} | read by frequency rank (characters asked) | {ranks} | | | | | | |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="`xomni eval synth-text-zh/-en` output folders")
    args = p.parse_args()
    print("| folder | length | images | units read (score) | units read per unit asked | Han characters read per "
          "character asked | strict score | read exactly | read empty |")
    print("|---|---|---|---|---|---|---|---|---|")
    for folder in args.folders:
        print("\n".join(rows(folder)))


if __name__ == "__main__":
    main()
