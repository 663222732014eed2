"""Pure scorers for reconstructions of world scenes: OCR text accuracy and object colour accuracy.

Text accuracy, LongText-Bench's rule in part: English words lower-cased, Chinese characters, multiset recall of the
ground truth in what the OCR read, micro-averaged over all ground-truth words (characters); unlike
`xomni.eval.longtext.match_text` (the suites' scorer) the read is not stripped of punctuation first, so "Open." does
not match "open" here (1 of 30 reads in a demo run had punctuation, a separate mark that cost nothing). Kept so, for
the image side's numbers measured with it (issue 2).
Colour accuracy: for each object, the median colour of the image over the object's own pixels (its drawn shape,
inside its true box) is named by the nearest reference colour among the object colours and the background colours;
the object counts as correct when that name is its own colour.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from PIL import Image

from xomni.data.world import BACKGROUNDS, COLORS, Scene, object_masks

_REFERENCE = [(name, np.array(rgb, np.float32)) for name, (rgb, _) in COLORS.items()] + \
             [("background:" + name, np.array(rgb, np.float32)) for name, (rgb, _) in BACKGROUNDS.items()]


def text_units(text: str, lang: str) -> list[str]:
    """English: lower-cased whitespace words; Chinese: characters, whitespace dropped."""
    if lang == "en":
        return text.lower().split()
    return [c for c in text if not c.isspace()]


def text_hits(truth: str, read: str, lang: str) -> tuple[int, int]:
    """(ground-truth units found in `read` as a multiset, ground-truth units)."""
    want, got = Counter(text_units(truth, lang)), Counter(text_units(read, lang))
    return sum(min(n, got[u]) for u, n in want.items()), sum(want.values())


def name_color(rgb) -> str:
    rgb = np.asarray(rgb, np.float32)
    return min(_REFERENCE, key=lambda item: float(((item[1] - rgb) ** 2).sum()))[0]


def object_colors(image: Image.Image, scene: Scene) -> list[tuple[str, str]]:
    """(true colour, named colour) for each object of the scene, read from `image`."""
    if image.size != (scene.width, scene.height):
        raise ValueError(f"image {image.size} does not match the scene's {scene.width}x{scene.height}")
    arr = np.asarray(image.convert("RGB"), np.float32)
    masks = object_masks(scene)
    out = []
    for i, obj in enumerate(scene.objects):
        pixels = arr[masks == i + 1]
        out.append((obj.color, name_color(np.median(pixels, axis=0)) if len(pixels) else "<hidden>"))
    return out
