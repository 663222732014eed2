"""What a decoder that memorises one patch per code could draw: the per-code mean patch as a deterministic decoder,
and the decoder's `patch_prior` MLP fitted alone.

    .venv/bin/python bench/code_lookup.py --checkpoint out/tiny4/candidate \
        --shards out/tiny4/shards/train-dense_128x128,out/tiny4/shards/train_128x128 [--fit 8192] [--n 48] \
        [--mlp-steps 3000 --mlp-width 2048] [--objects 64]

The mean pixel patch of every code is accumulated over the first --fit scenes of the shard folders (re-rendered from
the world; codes read from the shards); held-out text scenes are then encoded and drawn by pasting each code's mean
patch (codes never seen in the fit fall back to the decoder's 20-step sample). rapidocr reads them, the decoder's
20-step samples and, for a decoder with a `patch_prior`, what that prior alone draws; the table holds LongText-Bench's
text accuracy for each. If the lookup reads well where the decoder does
not, the codes determine the glyphs and the decoder has not learned to draw them; if it reads badly too, one code
stands for many different patches. With --mlp-steps, the MLP of `DecoderConfig.patch_prior` (zero-initialised
output as in the decoder; AdamW lr 1e-3, 2,048 random (embedding, patch) pairs of the fit per step) is trained on the
same pairs and scored the same way, at a few steps along. With --objects N, the first N held-out scenes are also
drawn the same ways and given to the scene judge (xomni/eval/scene_judge.py): the share of scenes
it gets exactly (every object's shape and colour, boxes overlapping), for the originals too: whether object shapes
survive the codes at all.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from tqdm import tqdm

from xomni.data.batches import pixels_of, scene_batch
from xomni.data.world import WorldConfig, make_scene, render
from xomni.decoder.flux import DecoderConfig, SemanticFlux
from xomni.eval.longtext import match_text, text_accuracy
from xomni.eval.ocr import make_ocr_judge
from xomni.eval.scene_judge import SceneJudge, exact
from xomni.pipeline import ImagePipeline, to_image
from xomni.stages.tokenize import load_shard_folders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/tiny")
    ap.add_argument("--shards", required=True, help="comma-separated token shard folders of the checkpoint's tokenizer")
    ap.add_argument("--fit", type=int, default=8192, help="scenes the per-code means are taken over")
    ap.add_argument("--n", type=int, default=48, help="held-out text scenes scored")
    ap.add_argument("--mlp-steps", type=int, default=0, help="also fit the patch-prior MLP alone for this many steps")
    ap.add_argument("--mlp-width", type=int, default=2048)
    ap.add_argument("--objects", type=int, default=0, help="also score this many held-out scenes with the scene judge")
    args = ap.parse_args()
    torch.manual_seed(0)
    pipe = ImagePipeline.from_pretrained(args.checkpoint)
    codec = pipe.codec
    sources, rows, order = load_shard_folders(args.shards, seed=0)
    K = pipe.tokenizer.config.codebook_size
    total = count = None
    pairs: tuple[list, list] = ([], [])
    for start in tqdm(range(0, min(args.fit, len(order)), 256), desc="per-code means"):
        batch = [rows[k] for k in order[start:min(start + 256, args.fit)]]
        scenes = [make_scene(sources[s][1], sources[s][0], int(sources[s][2][j])) for s, j in batch]
        grid = torch.stack([sources[s][3][j] for s, j in batch])  # B h w
        codes = grid.flatten()
        patches = codec.to_patches(pixels_of([render(sc) for sc in scenes])).flatten(0, 1)  # B*N P
        if total is None:
            total, count = torch.zeros(K, patches.shape[-1]), torch.zeros(K)
        total.index_add_(0, codes, patches)
        if args.mlp_steps:
            with torch.no_grad():
                pairs[0].append(pipe.tokenizer.embed_codes(grid).flatten(0, 2).half())
            pairs[1].append(patches.half())
        count.index_add_(0, codes, torch.ones_like(codes, dtype=torch.float))
    mean = total / count.clamp(min=1)[:, None]
    print(f"{int((count > 0).sum())} of {K} codes seen in {args.fit} scenes")

    def draw(pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Held-out pixels -> (codes, {how: pixels}): the decoder's 20-step sample, its patch prior alone (if it has
        one), and the per-code mean patches (codes unseen in the fit: the sample's patches)."""
        codes = pipe.encode(pixels)  # B h w
        h, w = codes.shape[1:]
        drawn = {"decoder (20 steps)": pipe.decode(codes, steps=20, generator=torch.Generator().manual_seed(0))}
        if pipe.decoder.prior is not None:
            with torch.no_grad():
                prior = pipe.decoder.prior_patches(pipe.tokenizer.embed_codes(codes))
            drawn["the decoder's patch prior alone"] = codec.to_pixels(prior, h, w)
        flat = codes.flatten(1)
        lookup = mean[flat]  # B N P
        unseen = count[flat] == 0
        lookup[unseen] = codec.to_patches(drawn["decoder (20 steps)"])[unseen]
        print(f"{unseen.float().mean():.3%} of held-out positions carry a code unseen in the fit")
        drawn["per-code mean patch"] = codec.to_pixels(lookup, h, w)
        return codes, drawn

    if args.objects:
        judge = SceneJudge()
        scenes, pixels = scene_batch(WorldConfig(), "heldout", range(args.objects))
        _, drawn = draw(pixels)
        print("| drawn by | scenes the scene judge gets exactly |")
        print("|---|---|")
        for name, images in {"original render": pixels, **drawn}.items():
            right = sum(exact(judge.objects(to_image(x)), s) for s, x in zip(scenes, images))
            print(f"| {name} | {right / len(scenes):.3f} ({len(scenes)}) |")

    scenes, pixels = scene_batch(WorldConfig(), "heldout", range(400))
    keep = [k for k, s in enumerate(scenes) if s.text is not None][: args.n]
    scenes, pixels = [scenes[k] for k in keep], pixels[keep]
    codes, drawn = draw(pixels)
    h, w = codes.shape[1:]
    ocr = make_ocr_judge("rapidocr")
    if args.mlp_steps:
        emb = pipe.tokenizer.embed_codes(codes)
        E, P = torch.cat(pairs[0]), torch.cat(pairs[1])
        mlp = SemanticFlux(DecoderConfig(**{**pipe.decoder.config.__dict__, "patch_prior": args.mlp_width})).prior
        opt = torch.optim.AdamW(mlp.parameters(), lr=1e-3)
        marks = {args.mlp_steps // 10, args.mlp_steps // 3, args.mlp_steps}
        for step in tqdm(range(1, args.mlp_steps + 1), desc="patch-prior MLP"):
            idx = torch.randint(0, len(E), (2048,))
            loss = F.mse_loss(mlp(E[idx].float()), P[idx].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step in marks:
                with torch.no_grad():
                    drawn[f"patch-prior MLP alone, {step} steps"] = codec.to_pixels(mlp(emb).flatten(1, 2), h, w)
    print("| drawn by | English text accuracy | Chinese text accuracy |")
    print("|---|---|---|")
    for name, images in drawn.items():
        acc: dict[str, list] = {"en": [], "zh": []}  # TextMatch per image, pooled as the suites pool them
        for s, x in zip(scenes, images):
            acc[s.text.lang].append(match_text(ocr.read(to_image(x)), s.text.text, s.text.lang))
        en, zh = acc["en"], acc["zh"]
        score = {k: text_accuracy(v) if v else float("nan") for k, v in acc.items()}
        print(f"| {name} | {score['en']:.3f} ({len(en)}) | {score['zh']:.3f} ({len(zh)}) |")


if __name__ == "__main__":
    main()
