"""Any-resolution preprocessing for the image tokenizer.

Paper preset (as the official code): refuse images whose short side is under 128 px or whose aspect exceeds 3;
scale so the short side is at least 384 and the long side at most 1152; round both sides to multiples of 16.
Tiny preset: the same rules at the world's scale (short side 128, long side at most 384; refuse under 64 px).

Modes: greyscale and palette images are converted to RGB; images with alpha (RGBA, LA, palette transparency) are
composited over white, the world's lightest background. Files that are not images, or are truncated, raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


@dataclass(frozen=True)
class ResizeRule:
    min_side: int  # refuse below this
    short_side: int  # scale up so the short side is at least this
    long_side: int  # ... and down so the long side is at most this
    multiple: int = 16
    max_aspect: float = 3.0


RULES = {"tiny": ResizeRule(64, 128, 384), "paper": ResizeRule(128, 384, 1152)}


def load_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file, with a clear error for missing, non-image or truncated files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(ImageOps.exif_transpose(im))  # a phone photo stands as it was taken
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file PIL can read") from None
    except OSError as e:
        raise ValueError(f"{path} could not be decoded ({e}); is it truncated?") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: transparency over white, 16- and 32-bit integer greyscale scaled to 8 bits by their
    range (PIL's own convert clips them: a 16-bit gradient came out almost all white)."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # mode I says no depth: its largest value does
        top = max(im.getextrema())
        bits = 16 if im.mode.startswith("I;16") else 8 if top <= 255 else 16 if top <= 65535 else 32
        arr = np.asarray(im, dtype=np.float64) / (2**bits - 1) * 255
        return Image.fromarray(arr.clip(0, 255).round().astype(np.uint8), "L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        base = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(base, im).convert("RGB")
    return im.convert("RGB")


def target_size(width: int, height: int, rule: ResizeRule) -> tuple[int, int]:
    """(width, height) an image is resized to, or ValueError if it is too small or too elongated."""
    short, long = min(width, height), max(width, height)
    if short < rule.min_side:
        raise ValueError(f"image {width}x{height} is below the minimum side of {rule.min_side} px")
    if long / short > rule.max_aspect:
        raise ValueError(f"image {width}x{height} has aspect {long / short:.2f}, beyond the limit of {rule.max_aspect}")
    scale = max(rule.short_side / short, 1.0)
    scale = min(scale, rule.long_side / long)
    m = rule.multiple
    w = max(m, int(round(width * scale / m)) * m)
    h = max(m, int(round(height * scale / m)) * m)
    return w, h


def prepare_image(im: Image.Image, preset: str = "tiny") -> Image.Image:
    """RGB, resized to the preset's rule (bicubic). An image already at its target size is returned as is."""
    if preset not in RULES:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(RULES)}")
    im = to_rgb(im)
    size = target_size(im.width, im.height, RULES[preset])
    return im if size == im.size else im.resize(size, Image.BICUBIC)
