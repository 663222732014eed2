"""Look at what models drew for the same held-out prompts: one row per eval folder, one column per item.

    .venv/bin/python bench/eval_grid.py EVAL_DIR [EVAL_DIR ...] --n 8 --out grid.jpg

Reads `xomni eval` output folders (manifest.jsonl, judged.jsonl, images/) of one suite. Above each column the item's
asked text (or its prompt, for a suite without text); under each image what the judge read (the OCR for text suites);
each row starts with its folder's name. The folders must hold the same suite and items (the same held-out split and
n), so a column is one prompt across models. Characters outside the world's font subset are drawn as its empty box.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from xomni.data.world import FONT_PATH

SCALE = 2  # each 128 px image drawn at 256 px
LINE = 20  # px of one caption line


def items(folder: Path) -> list[dict]:
    """The folder's items (manifest order) with what the judge read, as {"id", "asked", "read", "image"}."""
    if not (folder / "manifest.jsonl").exists():
        raise SystemExit(f"{folder} is not an eval output folder (no manifest.jsonl)")
    rows = [json.loads(x) for x in (folder / "manifest.jsonl").read_text().splitlines()]
    judged = {}
    if (folder / "judged.jsonl").exists():
        judged = {j["id"]: j for j in map(json.loads, (folder / "judged.jsonl").read_text().splitlines())}
    out = []
    for x in rows:
        if "id" not in x:  # the header line
            continue
        j = judged.get(x["id"], {})
        read = j.get("ocr")
        if read is None and j.get("objects") is not None:
            read = f"{len(j['objects'])} objects"
        out.append({"id": x["id"], "asked": " / ".join(x["text"]) if x.get("text") else x["prompt"],
                    "read": read if read is not None else "",
                    "image": folder / "images" / f"{x['id'].split('/')[-1]}.png"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="xomni eval output folders of one suite, one row each")
    ap.add_argument("--n", type=int, default=8, help="items (columns): the first n of each folder")
    ap.add_argument("--out", type=Path, required=True, help="the grid image (.jpg or .png)")
    a = ap.parse_args()
    if a.n < 1:
        raise SystemExit("--n must be at least 1")
    table = [items(f)[: a.n] for f in a.folders]
    ids = [x["id"] for x in table[0]]
    for f, row in zip(a.folders, table):
        if [x["id"] for x in row] != ids:
            raise SystemExit(f"{f} does not hold the same items as {a.folders[0]} (different suite or n)")
    font = ImageFont.truetype(str(FONT_PATH), 14)
    side = 128 * SCALE
    label_w, head_h = 220, 2 * LINE
    canvas = Image.new("RGB", (label_w + len(ids) * side, head_h + len(table) * (side + LINE)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, x in enumerate(table[0]):  # the asked text, two lines at most
        words = x["asked"]
        per_line = side // 9
        for k, line in enumerate([words[:per_line], words[per_line : 2 * per_line]]):
            draw.text((label_w + c * side + 4, 2 + k * LINE), line, fill="black", font=font)
    for r, (folder, row) in enumerate(zip(a.folders, table)):
        y = head_h + r * (side + LINE)
        name = str(folder)
        for k in range(0, min(len(name), 4 * 26), 26):
            draw.text((4, y + 4 + (k // 26) * LINE), name[k : k + 26], fill="black", font=font)
        for c, x in enumerate(row):
            canvas.paste(Image.open(x["image"]).convert("RGB").resize((side, side), Image.NEAREST),
                         (label_w + c * side, y))
            draw.text((label_w + c * side + 4, y + side + 2), x["read"][: side // 9], fill="darkblue", font=font)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(a.out, quality=80)
    print(f"{a.out}: {len(table)} rows x {len(ids)} items")


if __name__ == "__main__":
    main()
