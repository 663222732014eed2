"""How many objects does a model draw, against how many a GenEval item asks for?

    .venv/bin/python bench/objects_found.py out/exp17/ship_eval_synth-geneval [more synth-geneval eval folders ...]

Reads an `xomni eval synth-geneval` folder (manifest.jsonl: each item's task and asked classes with counts;
judged.jsonl: the scene judge's objects in each image) and prints, per task, the mean number of objects asked, the
mean number the judge finds, and the share of items with more objects than asked (GenEval's own score checks the asked
classes and counts, so a "photo of a hexagon" with three extra objects still passes its single-object task).
A second table says where the found objects sit: the share whose centre falls in each quarter of the image's height,
top to bottom (the engine samples codes row by row, top first).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def table(folder: Path) -> list[tuple]:
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    items = [x for x in map(json.loads, lines) if "metadata" in x]
    found = {j["id"]: len(j["objects"]) for j in map(json.loads, (folder / "judged.jsonl").read_text().splitlines())}
    rows = []
    for task in TASKS:
        sel = [x for x in items if x["metadata"]["tag"] == task]
        if not sel:
            continue
        asked = [sum(c["count"] for c in x["metadata"]["include"]) for x in sel]
        n = [found[x["id"]] for x in sel]
        rows.append((task, len(sel), sum(asked) / len(sel), sum(n) / len(sel), sum(f > a for f, a in zip(n, asked)) / len(sel)))
    return rows


def quarters(folder: Path) -> tuple[int, list[float]]:
    """(objects found, the share of them centred in each quarter of the image's height, top first)."""
    judged = [json.loads(x) for x in (folder / "judged.jsonl").read_text().splitlines()]
    first = next(iter(sorted((folder / "images").glob("*.png"))), None)
    if first is None:
        raise SystemExit(f"{folder} has no images/: an eval folder keeps its images")
    height = Image.open(first).size[1]
    ys = [(o["box"][1] + o["box"][3]) / 2 for j in judged for o in j["objects"]]
    return len(ys), [sum(min(3, int(4 * y / height)) == q for y in ys) / max(1, len(ys)) for q in range(4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args()
    print("| folder | task | items | objects asked | objects found | items with more than asked |")
    print("|---|---|---|---|---|---|")
    for folder in args.folders:
        for task, n, asked, found, over in table(folder):
            print(f"| {folder} | {task} | {n} | {asked:.2f} | {found:.2f} | {over:.2f} |")
    print("\n| folder | objects found | share in each quarter of the height, top to bottom |")
    print("|---|---|---|")
    for folder in args.folders:
        n, q = quarters(folder)
        print(f"| {folder} | {n} | {' / '.join(f'{x:.2f}' for x in q)} |")


if __name__ == "__main__":
    main()
