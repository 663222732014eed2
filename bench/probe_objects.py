"""Where a GRPO run's probe rollouts put their objects, over the run's steps.

    .venv/bin/python bench/probe_objects.py out/recipe34/grpo_s0 [more GRPO run folders ...]

Reads a run's probe sheets (`grpo_samples_STEP.png`: the probe's first 8 prompts, one row of G rollouts each, the same
prompts and seeds at every step) and runs the reward's scene judge (`xomni.rewards.reward_judge`: sign plates are not
objects) on every tile. Prints per step the mean number of objects found in a rollout and the share of them whose
centre falls in each quarter of the tile's height, top to bottom: the engine samples codes row by row from the top,
so a policy that puts off its objects to the last rows shows here. The probe's first prompts ask for text, so these
are the objects drawn beside a sign; `bench/objects_found.py` reads the same on the held-out synth-geneval items.
The sheet's layout (G rollouts a row, the rollouts' size) comes from the run's saved settings (`ar/meta.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from xomni.rewards import reward_judge


def sheet_layout(run: Path) -> tuple[int, float]:
    """(G, the rollouts' height over width) from the run's saved settings."""
    meta = run / "ar" / "meta.json"
    if not meta.is_file():
        raise SystemExit(f"{run} has no ar/meta.json: not a GRPO run folder, or it has not saved a step yet")
    cfg = json.loads(meta.read_text())["config"]
    width, height = map(int, cfg["size"].split("x"))
    return cfg["rollouts"], height / width


def sheet_objects(path: Path, rollouts: int, aspect: float, judge) -> tuple[float, list[float]]:
    """(objects per tile, share of them centred in each quarter of a tile's height) over one probe sheet of
    `rollouts` tiles a row, each `aspect` times as high as wide."""
    sheet = Image.open(path).convert("RGB")
    w = sheet.size[0] // rollouts
    h = round(w * aspect)
    rows = sheet.size[1] // h
    if sheet.size[0] != w * rollouts or sheet.size[1] != h * rows:
        raise SystemExit(f"{path} is {sheet.size[0]} x {sheet.size[1]} px: not rows of {rollouts} tiles of {w} x {h}")
    ys = []
    for r in range(rows):
        for c in range(rollouts):
            tile = sheet.crop((c * w, r * h, (c + 1) * w, (r + 1) * h))
            ys += [(o.box[1] + o.box[3]) / 2 for o in judge.objects(tile)]
    return len(ys) / (rows * rollouts), [sum(min(3, int(4 * y / h)) == q for y in ys) / max(1, len(ys))
                                         for q in range(4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="GRPO run folders (xomni train grpo --out)")
    args = ap.parse_args()
    judge = reward_judge()
    print("| run | step | objects per rollout | share in each quarter of the height, top to bottom |")
    print("|---|---|---|---|")
    for run in args.runs:
        rollouts, aspect = sheet_layout(run)
        sheets = sorted(run.glob("grpo_samples_*.png"))
        if not sheets:
            raise SystemExit(f"{run} has no grpo_samples_*.png: not a GRPO run folder, or no probe has run yet")
        for path in sheets:
            n, q = sheet_objects(path, rollouts, aspect, judge)
            print(f"| {run} | {int(path.stem.rsplit('_', 1)[1])} | {n:.2f} | {' / '.join(f'{x:.2f}' for x in q)} |")


if __name__ == "__main__":
    main()
