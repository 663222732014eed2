"""Rebuild the shipped font: a subset of Noto Sans Mono CJK SC Bold (SIL OFL 1.1, see OFL.txt).

The synthetic world must render identically on every machine, so it never asks the system for a font: it uses
this file. The subset keeps printable ASCII, the world's Chinese characters and a little CJK punctuation.

    apt-get install fonts-noto-cjk
    python xomni/assets/fonts/make_subset.py
"""

from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection

HERE = Path(__file__).resolve().parent
SOURCE = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
FACE = "Noto Sans Mono CJK SC Bold"
OUT = HERE / "XomniSansMono-Bold.otf"
FAMILY = "Xomni Sans Mono"  # a Modified Version may not keep the original's name (OFL condition 3)


def main() -> None:
    chars = (HERE.parent.parent / "data" / "chars_zh.txt").read_text(encoding="utf-8").strip()
    text = "".join(chr(c) for c in range(0x20, 0x7F)) + chars + "，。、“”：？！"
    font = next(f for f in TTCollection(str(SOURCE)).fonts if f["name"].getDebugName(4) == FACE)
    options = subset.Options()
    options.name_IDs = ["*"]
    options.layout_features = ["*"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    for record in font["name"].names:
        if record.nameID in (1, 4, 6, 16):
            name = FAMILY + (" Bold" if record.nameID == 4 else "")
            record.string = name.replace(" ", "") + "-Bold" if record.nameID == 6 else name
    font.save(str(OUT))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {len(set(text))} characters)")


if __name__ == "__main__":
    main()
