"""How legible the world's text is to the OCR judge on clean renders, by glyph cell layout.

    .venv/bin/python bench/text_legibility.py [--n 100]

English words from the training vocabulary rendered one letter per cell, on a 128 px canvas: cells one token tall
(16x16, font 18) against the world's layout (16 wide x 32 tall, font 26). Prints word accuracy per layout.
"""

import argparse

from PIL import Image, ImageDraw

from xomni.data.world import WORDS_EN, font
from xomni.eval.ocr import RapidOCRJudge


def render(word: str, cell_h: int, size: int) -> Image.Image:
    im = Image.new("RGB", (128, 128), (230, 230, 200))
    d = ImageDraw.Draw(im)
    x0, y0 = (8 - len(word)) // 2 * 16, 48
    d.rectangle([x0, y0, x0 + 16 * len(word) - 1, y0 + cell_h - 1], fill=(255, 255, 255))
    for i, ch in enumerate(word):
        d.text((x0 + 16 * i + 8, y0 + cell_h * 25 / 32 if cell_h == 32 else y0 + 8), ch, font=font(size),
               fill=(20, 20, 20), anchor="ms" if cell_h == 32 else "mm")
    return im


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    judge = RapidOCRJudge()
    words = WORDS_EN[:: max(1, len(WORDS_EN) // args.n)][: args.n]
    print(f"{'layout':28s} {'words':>5s} {'read exactly':>12s}")
    for name, cell_h, size in (("16x16 cells, font 18", 16, 18), ("16x32 cells, font 26 (world)", 32, 26)):
        ok = sum(judge.read(render(w, cell_h, size)).strip().lower() == w for w in words)
        print(f"{name:28s} {len(words):5d} {ok / len(words):12.2f}")


if __name__ == "__main__":
    main()
