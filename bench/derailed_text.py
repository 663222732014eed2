"""How much of a text suite's score do derailed images cost? Text accuracy of the clean and the derailed images apart.

    .venv/bin/python bench/derailed_text.py out/s25/derail/sft_synth-text-zh out/s25/derail/s0_synth-text-zh

Reads `xomni eval synth-text-en|zh --source model` folders (manifest.jsonl, judged.jsonl, and sampled.jsonl: each
image's flat positions, which eval writes as it samples, or counts on a rerun by sampling the tokens again). An image
with at least `xomni.engine.DERAIL_POSITIONS` flat positions has derailed. For each folder and text length, printed:
the images, the derailed ones, the suite's text accuracy (the LongText-Bench rule, micro-averaged) over the clean
images and over the derailed ones, and how many of each the OCR read nothing on; then the suite's accuracy over the
clean images alone (what the model scores when it does not derail; not the suite's score).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xomni.engine import DERAIL_POSITIONS
from xomni.eval.longtext import match_text, text_accuracy


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="text-suite eval folders of generated images")
    ap.add_argument("--grid", default="", help="save derailed images of the last folder over the first's here")
    ap.add_argument("--show", type=int, default=12, help="derailed images in --grid")
    args = ap.parse_args()
    print("| eval folder | length | images | derailed | accuracy: clean / derailed | read nothing: clean / derailed |")
    print("|---|---|---|---|---|---|")
    for folder in map(Path, args.folders):
        items = read_jsonl(folder / "manifest.jsonl")[1:]
        if not (folder / "sampled.jsonl").is_file():
            raise SystemExit(f"{folder} has no sampled.jsonl: rerun its `xomni eval` to count flat positions")
        ocr = {r["id"]: r["ocr"] for r in read_jsonl(folder / "judged.jsonl")}
        flat = {r["id"]: r["flat_positions"] for r in read_jsonl(folder / "sampled.jsonl")}
        missing = [it["id"] for it in items if it["id"] not in flat or it["id"] not in ocr]
        if missing:
            raise SystemExit(f"{folder}: {len(missing)} items not judged or not counted (first {missing[0]})")
        match = {it["id"]: match_text(ocr[it["id"]], it["text"], it["lang"]) for it in items}
        for length in sorted({it["length"] for it in items}):
            group = [it for it in items if it["length"] == length]
            parts = [[it for it in group if (flat[it["id"]] >= DERAIL_POSITIONS) == d] for d in (False, True)]
            acc = [f"{text_accuracy([match[it['id']] for it in p]):.3f}" if p else "-" for p in parts]
            blank = [sum(not ocr[it["id"]].strip() for it in p) for p in parts]
            print(f"| {folder} | {length} | {len(group)} | {len(parts[1])} | {acc[0]} / {acc[1]} | "
                  f"{blank[0]} / {blank[1]} |")
        clean = [match[it["id"]] for it in items if flat[it["id"]] < DERAIL_POSITIONS]
        print(f"| {folder} | clean images only | {len(clean)} | 0 | {text_accuracy(clean):.3f} | |")
    if args.grid:
        save_grid(Path(args.folders[0]), Path(args.folders[-1]), Path(args.grid), args.show)


def save_grid(below: Path, above: Path, path: Path, show: int, size: int = 128) -> None:
    """The first `show` derailed images of `above` over `below`'s images of the same items (images/NNNN.png)."""
    from PIL import Image

    ids = [r["id"] for r in read_jsonl(above / "sampled.jsonl") if r["flat_positions"] >= DERAIL_POSITIONS][:show]
    if not ids:
        raise SystemExit(f"{above}: no derailed images to show")
    grid = Image.new("RGB", (size * len(ids), 2 * size), "white")
    for i, item in enumerate(ids):
        for j, folder in enumerate((above, below)):
            image = Image.open(folder / "images" / f"{item.split('/')[-1]}.png").convert("RGB")
            grid.paste(image.resize((size, size)), (i * size, j * size))
    grid.save(path)
    print(f"wrote {path}: {len(ids)} derailed images of {above} (top) over {below}'s (bottom)")


if __name__ == "__main__":
    main()
