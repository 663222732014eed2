"""Scene judge for the synthetic world: objects (shape, colour, box) and counts recovered from pixels.

It plays the part GenEval's Mask2Former detector and CLIP colour classifier play on photos, for images of the world:
1. colour segmentation: a pixel belongs to object colour c when c is its nearest object colour and lies within
   `max_color_distance` (RGB); backgrounds and text plates are pale or dark colours far from all eight, though the
   yellow and dark green plates lie only 74 and 78 from yellow and green, within reach of the decoder's noise;
2. connected components of each colour (8-connectivity) of at least `min_area` pixels (the world draws objects of
   20-36 px whatever the canvas), less those whose mean colour is nearer one of `ignore_colors` than to their own:
   a judge given the plates' colours (the GRPO reward's) does not read a plate as an object;
3. shape: the world's own drawing of each shape into the component's box, the one with the highest IoU against the
   component's mask; its IoU is the detection's score, and a component below `min_fit` is no object.
It never sees the scene spec. `validate` measures it against the spec on clean renders and reconstructions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from xomni.data.world import COLORS, SHAPES, Scene, draw_shape
from xomni.eval.geneval import Detection

# GenEval's (threshold, counting threshold) for this judge: its detection score is a shape-fit IoU, not a detector's
# confidence, so GenEval's Mask2Former values (0.3 / 0.9) do not carry over; clean renders score 0.65 and up
JUDGE_THRESHOLDS = (0.5, 0.5)
_PALETTE = np.array([rgb for rgb, _ in COLORS.values()], np.float32)  # C 3
_NAMES = list(COLORS)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    score: float  # IoU of the component with the best-fitting shape drawing


@dataclass
class SceneJudge:
    max_color_distance: float = 60.0
    min_area: int = 40
    min_fit: float = 0.5
    ignore_colors: tuple[tuple[int, int, int], ...] = ()  # colours that are no object's (RGB)
    name: str = "world-scene-judge"

    def objects(self, image: Image.Image) -> list[SceneObject]:
        arr = np.asarray(image.convert("RGB"), np.float32)  # H W 3
        dist = np.linalg.norm(arr[:, :, None, :] - _PALETTE[None, None], axis=-1)  # H W C
        nearest, near_d = dist.argmin(-1), dist.min(-1)
        out = []
        for c, color in enumerate(_NAMES):
            mask = ((nearest == c) & (near_d <= self.max_color_distance)).astype(np.uint8)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for k in range(1, n):
                x, y, w, h, area = stats[k]
                if area < self.min_area:
                    continue
                box = (int(x), int(y), int(x + w), int(y + h))
                if self.ignore_colors and self._ignored(arr[y : y + h, x : x + w][labels[y : y + h, x : x + w] == k], c):
                    continue
                shape, fit = self._fit_shape(labels[y : y + h, x : x + w] == k, box)
                if fit >= self.min_fit:
                    out.append(SceneObject(shape, color, box, fit))
        return sorted(out, key=lambda o: (o.box[1], o.box[0]))

    def _ignored(self, pixels: np.ndarray, c: int) -> bool:
        """Whether a component of object colour c (its pixels, n x 3) is, on average, nearer an ignored colour."""
        mean = pixels.mean(0)
        other = np.linalg.norm(np.asarray(self.ignore_colors, np.float32) - mean, axis=-1).min()
        return bool(other < np.linalg.norm(_PALETTE[c] - mean))

    @staticmethod
    def _fit_shape(component: np.ndarray, box) -> tuple[str, float]:
        h, w = component.shape
        best = ("", 0.0)
        for shape in SHAPES:
            canvas = Image.new("L", (w, h), 0)
            draw_shape(ImageDraw.Draw(canvas), shape, (0, 0, w, h), 255)
            template = np.asarray(canvas) > 0
            inter, union = (template & component).sum(), (template | component).sum()
            iou = float(inter / union) if union else 0.0
            if iou > best[1]:
                best = (shape, iou)
        return best

    def detections(self, image: Image.Image) -> dict[str, list[Detection]]:
        """GenEval's input format: class (shape) -> detections, each with its box, score and colour."""
        out: dict[str, list[Detection]] = {}
        for o in self.objects(image):
            out.setdefault(o.shape, []).append(Detection(o.box, o.score, o.color))
        return out


def counts(objects) -> Counter:
    """(shape, colour) -> how many; works on SceneObject and on the world's Obj alike."""
    return Counter((o.shape, o.color) for o in objects)


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def exact(found: list[SceneObject], scene: Scene, min_iou: float = 0.5) -> bool:
    """The judge got the scene exactly: the same (shape, colour) multiset, each true object matched one-to-one by a
    found one of its kind whose box overlaps it by IoU >= min_iou."""
    if counts(found) != counts(scene.objects):
        return False
    free = list(found)
    for obj in scene.objects:
        match = next((f for f in free if (f.shape, f.color) == (obj.shape, obj.color) and _iou(f.box, obj.box) >= min_iou), None)
        if match is None:
            return False
        free.remove(match)
    return True
