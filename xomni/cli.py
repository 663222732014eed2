"""`xomni <command> --key value`: each command is a stage or eval whose Config dataclass becomes its flags.

    xomni train tokenizer --preset tiny      align SigLIP-VQ with a small LM, then freeze it
    xomni tokenize                           run the frozen tokenizer once over the world into shards
    xomni train decoder --preset tiny        train the diffusion decoder on those tokens
    xomni train ar --phase pretrain2         the unified AR model, one training phase per run
    xomni train grpo --checkpoint DIR        GRPO with the reward system
    xomni generate --prompt TEXT --out DIR   text -> image (AR model -> tokens -> decoder)
    xomni understand --image P --question Q  image + question(s) -> answers
    xomni reconstruct IMAGE --out PNG        image -> tokens -> decoder -> image
    xomni render --out PNG [--index N]       a held-out world scene, with its prompts and questions' answers
    xomni eval reconstruction --out DIR      held-out scenes through the tokens, scored (metrics.json + grid.png)
    xomni eval synth-text-en --out DIR       a synthetic suite (also synth-text-zh, synth-geneval, synth-dpg,
                                             synth-vqa, synth-pope) on renders, reconstructions or the model
    xomni eval longtext --images DIR         score a folder on an official benchmark (also oneig, geneval, dpg)
    xomni eval claims --sft DIR --rl DIRS    the paper's RL claims measured: SFT model vs its GRPO runs
    xomni report RUN_DIR...                  offline HTML + markdown: metric tables, sample grids, curves
    xomni publish --run out/tiny             a trained run -> checkpoints/tiny (fp16 or int8), every command's default
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import typing

from xomni.errors import MissingPart

HELP = {
    "preset": "model size: tiny (trains on this CPU) or paper (X-Omni's sizes; needs local weights)",
    "out": "output folder (created; a run resumes from what it finds there)",
    "steps": "optimiser steps in all (a resumed run continues to this number; the learning rate's cosine is laid over "
             "it, so a resume that changes it changes the learning rate from the resumed step on); for eval: decoder "
             "sampling steps",
    "batch_size": "images per step",
    "lr": "peak learning rate (linear warm-up, cosine decay)",
    "resume": "continue from the folder's last checkpoint if there is one; false starts over (the earlier run's "
              "training state and log are removed once the run's settings pass their checks)",
    "tokenizer": "SigLIP-VQ checkpoint folder",
    "shards": "token shard folder(s) written by `xomni tokenize`, comma-separated",
    "dense_text": "text-dense training scenes (lines of text fill the canvas) instead of ordinary ones",
    "dense_share": "share of each batch drawn as text-dense scenes",
    "prompts_per_step": "prompts per GRPO step",
    "rollouts": "rollouts per prompt (G)",
    "updates": "optimiser steps per batch of rollouts",
    "beta": "weight of the KL to the reference",
    "kl": "the KL term: k3 (trl's and the paper's estimate at the sampled token) or full (KL(reference || policy) "
          "over the image head's whole softmax: k3's expected gradient, without the one-sample noise)",
    "eps_low": "clip range below 1 of the importance ratio",
    "eps_high": "clip range above 1 of the importance ratio",
    "neg_scale": "weight of the negative advantages, in [0, 1] (1: GRPO as written; lower: rollouts worse than "
                 "their group push their codes down less)",
    "keep_understanding": "weight of KL(reference || policy) over the text head at the answers of understanding "
                          "conversations about training scenes (0: off, the paper's objective; holds understanding "
                          "while RL trains generation)",
    "keep_conversations": "understanding conversations a GRPO step for --keep-understanding",
    "min_p": "min-p filter of the image sampler (X-Omni: 0.03)",
    "cfg": "classifier-free guidance scale of the image sampler (1: off, X-Omni's default)",
    "decoder_steps": "diffusion decoder steps when decoding rollouts",
    "text_share": "share of RL prompts that ask for text",
    "text_mix": "split of the text prompts, e.g. en-short=1,en-long=1,zh-short=1,zh-long=2 (every kind named; "
                "empty: half short, half long, the language as the world draws it)",
    "ocr_rule": "the OCR reward's rule: longtext (LongText-Bench's share of the asked words/characters read; extra "
                "text costs nothing) or strict (read units beyond those asked are charged: matched / max(asked, read))",
    "w_ocr": "weight of the OCR reward", "w_alignment": "weight of the scene-judge alignment reward",
    "w_consistency": "weight of the token-consistency reward",
    "phase": "AR training phase: text (tiny LLM language pretraining), pretrain1, pretrain2, pretrain3, sft",
    "init": "model folder of the previous phase to start from (empty: fresh weights)",
    "train_decoder.init": "a decoder checkpoint folder to start from (weights only: a fresh optimiser and schedule; "
                          "fresh runs only)",
    "train_ar.batch_size": "samples per step, packed into rows of --seq-len tokens",
    "train_grpo.ocr": "comma-separated OCR engines whose accuracies the OCR reward averages: rapidocr, tesseract",
    "eval_suite.out": "output folder (default: out/eval/SUITE-SOURCE; a rerun with the same settings resumes there)",
    "eval_official.out": "output folder (default: IMAGES/xomni_eval_BENCHMARK, + _LANG for longtext and oneig)",
    "eval_official.judge": "rapidocr | tesseract | qwen2.5-vl:PATH | got-ocr2:PATH | scene (default: rapidocr for "
                           "longtext and oneig, scene for geneval; dpg needs qwen2.5-vl:PATH)",
    "text_tokenizer": "text tokenizer (tokenizer.json) of the run",
    "seq_len": "tokens per packed training row",
    "final_lr": "learning rate at the end, as a fraction of the peak",
    "gen_share": "share of generation samples (the rest are understanding)",
    "lm_lr": "peak learning rate of the alignment LM",
    "heads_first": "first steps train the encoder with the dense heads alone (no alignment LM)",
    "codebook_after": "steps on continuous features before k-means places the codes and quantisation starts",
    "kmeans_scenes": "training scenes whose encoder outputs the k-means runs on",
    "kmeans_iters": "k-means iterations",
    "checkpoint": "folder holding text_tokenizer.json, tokenizer/, alignment_lm/ and decoder/",
    "n": "number of held-out scenes (eval) or scenes to tokenize",
    "split": "world split: train or heldout",
    "seed": "random seed (sampling noise; the world's scenes are fixed by split and index)",
    "sizes": "comma-separated HxW training sizes, one per batch, cycled",
    "cond_drop": "probability of dropping the semantic condition (enables decoder-side guidance)",
    "train_grpo.preset": "run size for every field left unset: tiny (this CPU: 100 steps x 16 prompts x 8 rollouts, "
                         "lr 5e-5, min-p 0.03) or paper (X-Omni's: 200 x 512 x 16, lr 1e-6, min-p 0.03)",
    "train_grpo.lr": "learning rate (constant)",
    "train_grpo.steps": "GRPO steps in all (a resumed run continues to this number)",
    "train_grpo.checkpoint": "checkpoint folder to start from: its ar/ is the policy (and the frozen reference), its "
                             "text tokenizer, tokenizer and decoder sample and decode the rollouts",
    "train_grpo.scene_mix": "split of the prompts without text by compositional task, e.g. "
                            "single=1,count=1,two=2,relation=2 (every task named; empty: as the world draws them)",
    "eval_suite.split": "build the suite from heldout scenes (the benchmark) or from train scenes: the same items' "
                        "kinds over scenes a model was trained on, to read memory against generalisation",
    "eval_claims.n": "held-out items per suite, for every model and CFG scale",
    "eval_claims.steps": "decoder sampling steps of every generated image",
    "eval_claims.seed": "sampling seed of every generation suite (the same for every model)",
    "eval_claims.out": "output folder: claims.md, claims.json, figure2b.svg and every evaluation (reused on a rerun)",
    "train_ar.cond_drop": "share of generation samples without their prompt: the image prefix alone, the context "
                          "the engine's CFG reads as its unconditional branch",
    "first_cell_weight": "loss weight of an object's first cell (raster order) in a prompted generation sample: the "
                         "code the prompt decides and the cells before it do not",
    "object_cell_weight": "loss weight of an object's cells after its first in a prompted generation sample (its "
                          "shape spans 2-3 cells per side, so those codes still depend on the prompt)",
    "text_cell_weight": "loss weight of the text element's cells in a prompted generation sample",
    "rest_cell_weight": "loss weight of a background cell after every object's first cell (raster order) in a "
                        "prompted generation sample: where the prompt's count says no object may start any more",
    "photo_text_free": "give the photo prompt level (GenEval's register, which never names text) only to scenes "
                       "without text",
    "data_start": "start at this step of the data stream that --seed, --phase and --shards fix (0: its start); give "
                  "a run continuing an earlier one on the same stream the steps that run took, so it draws new samples",
    "warmup": "linear warm-up steps (at most half of --steps: a shorter run warms up over its first half)",
    "weight_decay": "AdamW weight decay",
    "dense_weight": "weight of each dense semantic head's loss (tiny-scale stand-in for SigLIP2 pretraining)",
    "glyph_weight": "weight of the glyph head's loss (the others weigh dense_weight)",
    "restart_every": "steps between dead-code restarts of the VQ codebook",
    "restart_until": "fraction of the steps after which codes are no longer restarted",
    "save_every": "steps between checkpoints (atomic; the run resumes from the last one)",
    "eval_every": "steps between held-out evaluations",
    "eval_n": "held-out scenes per evaluation",
    "bpe_vocab": "size of the tiny BPE text vocabulary",
    "spell_quoted": "the tiny BPE splits quoted text (what a prompt asks to render) into single characters",
    "bpe_scenes": "training scenes whose text trains the BPE",
    "start": "first scene index",
    "height": "image height in pixels",
    "width": "image width in pixels",
    "shard_size": "scenes per shard file",
    "sample_steps": "decoder sampling steps for the sample grids",
    "grid": "original|reconstruction pairs drawn in grid.png",
    "command": "the command recorded in meta.json as the way to rebuild",
    "ocr_threads": "onnxruntime threads for the OCR judge",
    "ocr": "OCR engine judging text: rapidocr (PP-OCR models in the wheel) or tesseract (Debian packages)",
    "ocr_workers": "OCR worker processes",
    "images": "folder of images laid out as the official benchmark's scripts expect",
    "bench": "folder of the official prompt/metadata files (longtext/, oneig/, geneval/, dpg/)",
    "lang": "en or zh",
    "judge": "rapidocr | tesseract | qwen2.5-vl:PATH | got-ocr2:PATH (text); scene (GenEval); qwen2.5-vl:PATH (DPG)",
    "tiles": "OneIG: columns,rows of the grid of samples in each image",
    "questions": "DPG: the official dpg_bench.csv question table",
    "pic_num": "DPG: tiles per image (1, or 4 in a 2x2 grid)",
    "skip_first_question": "DPG: keep the official loader's off-by-one that drops the table's first question",
    "source": "images to judge: renders (the scenes themselves), reconstructions (through the tokens) or model",
    "lm_only": "freeze the tokenizer and train only the alignment LM (a probe of what the frozen tokens carry)",
    "siglip_path": "local folder of a SigLIP/SigLIP2 vision tower to start the encoder from (paper scale)",
    "projector_path": "X-Omni's released projector weights (.safetensors file or folder), paper scale",
    "run": "run folder holding every trained component",
    "dest": "destination checkpoint folder",
    "metrics": "an eval metrics.json to record in meta.json",
    "fp16": "store weights as float16",
    "int8": "store the decoder's, AR model's and alignment LM's matrices of >= 65,536 values as int8 rows with an fp16 "
            "scale each (weight-only; loaded back to fp32): about half their fp16 size. The tokenizer stays fp16",
}


PRESET_NAMES = ("tiny", "paper")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def field_comments(config_cls) -> dict[str, str]:
    """The comment at the end of each field's line in a Config dataclass's source: `name: type = default  # text`."""
    try:
        source = inspect.getsource(config_cls)
    except (OSError, TypeError):
        return {}
    found = (re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line) for line in source.splitlines())
    return {m.group(1): m.group(2).strip().replace("%", "%%") for m in found if m}  # argparse formats %


def add_config_args(parser: argparse.ArgumentParser, config_cls, fixed: dict | None = None) -> None:
    """One flag per field of the Config dataclass; `fixed` fields take a set value and get no flag. The help text is
    HELP's entry for "stage.field" (a field whose name means something else in another stage), else for "field",
    else the comment on the field's line, else the field's name."""
    stage = config_cls.__module__.rsplit(".", 1)[-1]
    hints = typing.get_type_hints(config_cls)
    comments = field_comments(config_cls)
    fixed = fixed or {}
    parser.set_defaults(**fixed)
    for f in dataclasses.fields(config_cls):
        if f.name in fixed:
            continue
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if f.default is None and len(args) == 1:  # `X | None = None`: unset, filled in by the stage (its preset)
            kind = args[0]
        convert = _bool if kind is bool else kind if kind in (int, float, str) else str
        text = HELP.get(f"{stage}.{f.name}") or HELP.get(f.name) or comments.get(f.name) or f.name.replace("_", " ")
        default = "set by --preset" if f.default is None and hasattr(config_cls, "preset") else f.default
        choices = PRESET_NAMES if f.name == "preset" else None  # every component's presets are these two
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=convert, default=f.default,
                            choices=choices, metavar=kind.__name__.upper() if hasattr(kind, "__name__") else "VALUE",
                            help=f"{text} (default: {default})")


def _stage_command(subparsers, name: str, help: str, module, fixed: dict | None = None) -> None:
    """`name` runs `module.main(module.Config(...))`, one flag per Config field, the module's docstring as --help."""
    p = subparsers.add_parser(name, help=help, description=module.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, module.Config, fixed)
    p.set_defaults(handler=lambda a: module.main(_config(module.Config, a)))


def build_parser() -> argparse.ArgumentParser:
    from xomni.eval import report
    from xomni.eval.suites import SUITES
    from xomni.stages import (eval_claims, eval_official, eval_reconstruction, eval_suite, publish, tokenize, train_ar,
                              train_decoder, train_grpo, train_tokenizer)
    from xomni.stages.eval_official import BENCHMARKS

    parser = argparse.ArgumentParser(prog="xomni", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a component").add_subparsers(dest="what", required=True)
    _stage_command(train, "tokenizer", "SigLIP-VQ aligned with a small LM (xomni/stages/train_tokenizer.py)",
                   train_tokenizer)
    _stage_command(train, "decoder", "diffusion decoder on frozen tokens (xomni/stages/train_decoder.py)",
                   train_decoder)
    _stage_command(train, "ar", "the unified AR model, one phase per run (xomni/stages/train_ar.py)", train_ar)
    _stage_command(train, "grpo", "GRPO on the unified model with the reward system (xomni/stages/train_grpo.py)",
                   train_grpo)
    _stage_command(sub, "tokenize", "world scenes -> token shards on disk", tokenize)

    p = sub.add_parser("reconstruct", help="image -> tokens -> decoder -> image",
                       description="Reconstruct one image through the semantic tokens. The image is converted to RGB "
                                   "(alpha composited over white) and resized by the checkpoint's preset's rule.")
    p.add_argument("image", help="input image file")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped tiny checkpoint)")
    p.add_argument("--steps", type=int, default=20, help="decoder sampling steps (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.set_defaults(handler=_reconstruct)

    p = sub.add_parser("render", help="a scene of the synthetic world, with its ground truth",
                       description="Render one scene of the synthetic world (xomni/data/world.py) to a PNG and print "
                                   "its prompts, caption and questions with their exact answers.")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--split", default="heldout", choices=("train", "heldout"), help="split (default: heldout)")
    p.add_argument("--index", type=int, default=0, help="scene index within the split (default: 0)")
    p.add_argument("--size", default="128x128", help="WIDTHxHEIGHT in pixels (default: 128x128)")
    p.set_defaults(handler=_render)

    p = sub.add_parser("generate", help="text -> image with the unified model (PNG files + manifest.jsonl)",
                       description="Generate images from a prompt: AR model -> semantic tokens -> diffusion decoder. "
                                   "X-Omni samples with temperature 1.0 and min-p 0.03 and no classifier-free guidance.")
    p.add_argument("--prompt", required=True, help="what to draw (English or Chinese)")
    p.add_argument("--out", required=True, help="output folder: 0000.png ... and manifest.jsonl")
    p.add_argument("--n", type=int, default=1, help="images to draw (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; the same seed draws the same images")
    p.add_argument("--size", default="128x128", help="WIDTHxHEIGHT in pixels, multiples of 16 (default: 128x128)")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale (1: off, X-Omni's default)")
    p.add_argument("--min-p", dest="min_p", type=float, default=0.03, help="min-p filter (default: 0.03)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    p.add_argument("--top-k", dest="top_k", type=int, default=0, help="top-k filter (0: off)")
    p.add_argument("--decoder-steps", dest="decoder_steps", type=int, default=20, help="diffusion decoder steps")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped tiny checkpoint)")
    p.set_defaults(handler=_generate)

    p = sub.add_parser("understand", help="image + question(s) -> answers with the unified model",
                       description="Answer questions about an image: tokenizer -> AR model (greedy). Each question is "
                                   "asked on its own (not as a conversation); the weights load once.")
    p.add_argument("--image", required=True,
                   help="image file (converted to RGB, resized by the rule of the checkpoint's preset)")
    p.add_argument("--question", required=True, action="append", help="a question; repeat the flag to ask several")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=64, help="answer length limit")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped tiny checkpoint)")
    p.set_defaults(handler=_understand)

    _stage_command(sub, "publish", "copy a trained run into a shippable checkpoint folder (fp16)", publish)

    ev = sub.add_parser("eval", help="evaluations").add_subparsers(dest="what", required=True)
    _stage_command(ev, "reconstruction", "held-out reconstructions scored by the judges", eval_reconstruction)
    _stage_command(ev, "claims", "the paper's RL claims: an SFT model against its GRPO runs", eval_claims)
    for bench in BENCHMARKS:
        _stage_command(ev, bench, f"score a folder of images on the official {bench} prompts", eval_official,
                       fixed={"benchmark": bench})
    for suite in SUITES:
        _stage_command(ev, suite, f"synthetic suite {suite} (xomni/eval/suites.py)", eval_suite, fixed={"suite": suite})
    p = sub.add_parser("report", help="an offline HTML + markdown page comparing runs (tables, samples, curves)",
                       description=report.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (searched for metrics.json, eval samples and training logs)")
    p.add_argument("--out", default="out/report", help="report folder (default: out/report)")
    p.set_defaults(handler=lambda a: report.main(report.Config(runs=",".join(a.runs), out=a.out)))
    return parser


def _config(config_cls, args):
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})


def _reconstruct(args) -> dict:
    from pathlib import Path

    from xomni.pipeline import DEFAULT_CHECKPOINT, ImagePipeline, checkpoint_preset
    from xomni.tokenizer.preprocess import load_image, prepare_image

    preset = checkpoint_preset(args.checkpoint or DEFAULT_CHECKPOINT)  # the checkpoint's own image rules
    image = prepare_image(load_image(args.image), preset)  # validate before loading any weights
    _check_file_out(args.out)
    pipe = ImagePipeline.from_pretrained(args.checkpoint or DEFAULT_CHECKPOINT, preset)
    out = pipe.reconstruct_images([image], steps=args.steps, seed=args.seed)[0]
    _save_image(out, Path(args.out))
    return {"out": args.out, "size": list(out.size)}


def _check_file_out(path: str) -> None:
    """An image file to write: refused before any work if the path is a folder or names no image format."""
    from pathlib import Path

    from PIL import Image

    if Path(path).is_dir():
        raise ValueError(f"--out {path} is a folder; give the image file to write")
    if Path(path).suffix.lower() not in Image.registered_extensions():
        raise ValueError(f"--out {path}: its extension names no image format PIL writes; end it in .png or .jpg")


def _save_image(image, path) -> None:
    """Write an image whole or not at all (a temporary file renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    image.save(tmp)
    tmp.replace(path)


def _render(args) -> dict:
    from pathlib import Path

    from xomni.data.world import WorldConfig, caption, make_scene, prompts, questions, render
    from xomni.pipeline import parse_size

    if args.index < 0:
        raise ValueError("--index must be >= 0")
    width, height = parse_size(args.size)
    _check_file_out(args.out)
    scene = make_scene(WorldConfig(width=width, height=height), args.split, args.index)
    out = Path(args.out)
    _save_image(render(scene), out)
    return {"out": str(out), "split": args.split, "index": args.index, "prompts": prompts(scene),
            "caption": caption(scene), "questions": [[q.question, q.answer] for q in questions(scene)]}


def _generate(args) -> dict:
    from pathlib import Path

    from xomni.engine import Sampling
    from xomni.pipeline import DEFAULT_CHECKPOINT, Pipeline, check_generation_size, checkpoint_preset, parse_size

    width, height = parse_size(args.size)
    preset = checkpoint_preset(args.checkpoint or DEFAULT_CHECKPOINT)  # the checkpoint's own image rules
    check_generation_size(width, height, preset)  # before any weights load
    if not args.prompt.strip():
        raise ValueError("the prompt is empty")
    if args.n < 1:
        raise ValueError("--n must be at least 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the images and their manifest")
    sampling = Sampling(temperature=args.temperature, top_k=args.top_k, min_p=args.min_p, cfg=args.cfg)
    pipe = Pipeline.from_pretrained(args.checkpoint or DEFAULT_CHECKPOINT, preset)
    images, _ = pipe.generate([args.prompt] * args.n, width, height, sampling, args.seed, args.decoder_steps)
    rows = []
    for k, im in enumerate(images):
        path = out / f"{k:04d}.png"
        _save_image(im, path)
        rows.append({"file": path.name, "prompt": args.prompt, "seed": args.seed, "index": k, "size": args.size,
                     "cfg": args.cfg, "min_p": args.min_p, "temperature": args.temperature,
                     "checkpoint": str(args.checkpoint or DEFAULT_CHECKPOINT)})
    tmp = out / ".manifest.jsonl.tmp"  # the manifest names exactly this run's images, whole or not at all
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out / "manifest.jsonl")
    return {"out": str(out), "images": len(images)}


def _understand(args) -> dict:
    from xomni.pipeline import DEFAULT_CHECKPOINT, Pipeline, checkpoint_preset
    from xomni.tokenizer.preprocess import load_image, prepare_image

    if not all(q.strip() for q in args.question):
        raise ValueError("a question is empty")
    preset = checkpoint_preset(args.checkpoint or DEFAULT_CHECKPOINT)  # the checkpoint's own image rules
    image = prepare_image(load_image(args.image), preset)  # validate before loading any weights
    pipe = Pipeline.from_pretrained(args.checkpoint or DEFAULT_CHECKPOINT, preset)
    return {"image": args.image, "answers": [{"question": q, "answer": pipe.understand(image, q, args.max_new_tokens)}
                                             for q in args.question]}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except (ValueError, OSError, MissingPart) as e:  # OSError: a file or folder that cannot be read or written
        print(f"xomni: error: {e}", file=sys.stderr)
        return 2
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
