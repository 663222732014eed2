"""Do the letters a model draws follow the prompt? Character recall of a text suite's OCR output, against chance.

    .venv/bin/python bench/text_copy.py out/tiny9/eval_synth-text-en [more eval folders ...]

Reads an `xomni eval synth-text-en|zh` output folder (manifest.jsonl, judged.jsonl). Text accuracy counts whole
words and is 0 until a model spells them; this asks for less. For each item, the share of the asked characters
(lines joined by spaces, lower case) that the OCR reading contains in order (longest matching blocks /
asked length); the mean over items is printed next to the same measure against another item's asked text (a
fixed derangement), which is what a model that draws letters unrelated to its prompt scores. The last two columns
say whether the model drew the sign at all, on the items whose plate is coloured (a white plate is the background's
colour): the share of them with a plate of the asked colour covering at least a quarter of the asked box's area
(GRPO's "is there a sign?", `sign_drawn` in xomni/rewards), the median of that coverage (`plate_share`: the ink and
anything else drawn on the plate lower it), and the mean size of the sign (`sign_extent`: the plate's bounding box
over the asked box, at most 1) with the share of signs under half the asked box. With
--by-share, a second table: the character recall of the items with coloured plates, by how much of the asked box
the plate covers (does a larger sign read better?).
"""

from __future__ import annotations

import argparse
import json
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
from PIL import Image

from xomni.data.world import Scene, TextElement
from xomni.rewards import SIGN_SHARE, plate_share, sign_extent


def recall(asked: str, read: str) -> float:
    """Share of `asked`'s characters found in order in `read`."""
    return sum(b.size for b in SequenceMatcher(None, asked, read, autojunk=False).get_matching_blocks()) / len(asked)


def pairs(folder: Path) -> list[tuple[str, str]]:
    items = {x["id"]: x for x in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines()) if "text" in x}
    judged = [json.loads(line) for line in (folder / "judged.jsonl").read_text().splitlines()]
    return [(" ".join(items[j["id"]]["text"]).lower(), j["ocr"].lower()) for j in judged]


def coloured_plates(folder: Path) -> list[tuple[float, float, float]]:
    """(`plate_share`, character recall, `sign_extent`) of every item whose text element has a coloured plate, in
    manifest order."""
    items = [x for x in map(json.loads, (folder / "manifest.jsonl").read_text().splitlines()) if "text" in x]
    read = {j["id"]: j["ocr"].lower() for j in map(json.loads, (folder / "judged.jsonl").read_text().splitlines())}
    out = []
    for k, item in enumerate(items):
        text = TextElement(**item["scene"]["text"])
        if text.plate != "white":
            image = Image.open(folder / "images" / f"{k:04d}.png")
            out.append((plate_share(image, text), recall(" ".join(item["text"]).lower(), read[item["id"]]),
                        sign_extent(image, Scene.from_dict(item["scene"]))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--by-share", action="store_true",
                    help="also: character recall by how much of the asked box the drawn plate covers")
    args = ap.parse_args()
    print("| eval folder | items | items with >= 3 characters read | character recall | against another item's text "
          "| coloured plates: sign drawn | median plate share | mean sign extent | extent < 0.5 |")
    print("|---|---|---|---|---|---|---|---|---|")
    plates = {folder: coloured_plates(folder) for folder in args.folders}
    for folder in args.folders:
        p = pairs(folder)
        other = [p[(i + 1) % len(p)][0] for i in range(len(p))]  # the next item's asked text
        own = sum(recall(a, r) for a, r in p) / len(p)
        chance = sum(recall(o, r) for o, (_, r) in zip(other, p)) / len(p)
        read = sum(len(r.replace(" ", "")) >= 3 for _, r in p)
        shares = np.array([share for share, _, _ in plates[folder]])
        extents = np.array([extent for _, _, extent in plates[folder]])
        print(f"| {folder} | {len(p)} | {read} | {own:.3f} | {chance:.3f} | "
              f"{(shares >= SIGN_SHARE).mean():.2f} of {len(shares)} | {np.median(shares):.2f} | "
              f"{extents.mean():.2f} | {(extents < 0.5).mean():.2f} |")
    if args.by_share:
        bins = [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, float("inf"))]
        heads = " | ".join(f"plate share [{a}, {b}): items, recall" for a, b in bins)
        print(f"\n| eval folder (coloured plates) | {heads} |\n|---|" + "---|" * len(bins))
        for folder in args.folders:
            cells = []
            for a, b in bins:
                r = [x for share, x, _ in plates[folder] if a <= share < b]
                cells.append(f"{len(r)}, {sum(r) / len(r):.3f}" if r else "0, -")
            print(f"| {folder} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
