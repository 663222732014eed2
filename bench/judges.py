"""Judges on clean renders of the held-out suites: OCR accuracy and speed per engine, scene-judge exactness.

    .venv/bin/python bench/judges.py [--n 200] [--engines rapidocr,tesseract] [--checkpoint DIR]

OCR: synth-text-en / synth-text-zh items rendered, read by each engine (one thread, one process), scored with
LongText-Bench's rule. Scene judge: synth-geneval and synth-dpg scenes, exact when it recovers every object's
shape, colour and box (IoU >= 0.5) and nothing else. With --checkpoint, the same scenes passed through the tokenizer
and decoder too, to show how far the judges can be trusted on generated images.
"""

from __future__ import annotations

import argparse
import time

import torch

from xomni.data.batches import pixels_of
from xomni.data.world import Scene, render
from xomni.eval import suites
from xomni.eval.ocr import make_ocr_judge
from xomni.eval.scene_judge import SceneJudge, exact
from xomni.pipeline import ImagePipeline, to_image


def reconstruct(pipe: ImagePipeline, images, batch: int = 32):
    out = []
    for i in range(0, len(images), batch):
        codes = pipe.encode(pixels_of(images[i : i + batch]))
        out += [to_image(x) for x in pipe.decode(codes, generator=torch.Generator().manual_seed(i))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--engines", default="rapidocr,tesseract")
    ap.add_argument("--checkpoint", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = ImagePipeline.from_pretrained(args.checkpoint) if args.checkpoint else None
    sources = ["renders"] + (["reconstructions"] if pipe else [])

    print("| judge | suite | source | n | accuracy | images/s |")
    print("|---|---|---|---|---|---|")
    for suite in ("synth-text-en", "synth-text-zh"):
        items = suites.build(suite, args.n)
        rendered = [render(Scene.from_dict(it["scene"])) for it in items]
        by_source = {"renders": rendered}
        if pipe:
            by_source["reconstructions"] = reconstruct(pipe, rendered)
        for engine in args.engines.split(","):
            judge = make_ocr_judge(engine)
            for source in sources:
                t0 = time.time()
                reads = judge.read_batch(by_source[source])
                dt = time.time() - t0
                score = suites.score_text(items, reads)["score"]
                print(f"| {judge.name} | {suite} | {source} | {len(items)} | {score:.3f} | {len(items) / dt:.1f} |")

    judge = SceneJudge()
    for suite in ("synth-geneval", "synth-dpg"):
        items = suites.build(suite, args.n)
        scenes = [Scene.from_dict(it["scene"]) for it in items]
        rendered = [render(s) for s in scenes]
        by_source = {"renders": rendered}
        if pipe:
            by_source["reconstructions"] = reconstruct(pipe, rendered)
        for source in sources:
            t0 = time.time()
            hits = [exact(judge.objects(im), s) for im, s in zip(by_source[source], scenes)]
            dt = time.time() - t0
            print(f"| {judge.name} | {suite} | {source} | {len(items)} | {sum(hits) / len(hits):.3f} | "
                  f"{len(items) / dt:.1f} |")


if __name__ == "__main__":
    main()
