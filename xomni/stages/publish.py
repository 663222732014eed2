"""Stage: copy a finished tiny run into a shippable checkpoint folder (fp16 weights, metrics in meta.json).

    python -m xomni.cli publish --run out/tiny --dest checkpoints/tiny [--metrics out/tiny/eval/metrics.json]
                                [--ar out/tiny/ar_sft/model] [--alignment-lm false] [--decoder DIR]

The folder holds text_tokenizer.json, tokenizer/, decoder/, and when given ar/ (the unified model) and alignment_lm/
(the tokenizer's alignment LM: only `xomni eval reconstruction` reads it, for its VQA number); every command
defaults to it. With `--sft-ar` it also holds sft/: a checkpoint folder whose ar/ is the SFT model the shipped policy
started from and whose other parts are links to the folder's own (relative, so the folder moves as one), so GRPO
and the claims can start from the shipped SFT model (`runs/cpu_tiny_rl.sh` does when its run folder has none).
The folder changes as one (`updating_folder`): a publish that fails or is killed leaves it as it was.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from xomni.checkpoint import copy_file_atomically, export_component, updating_folder, write_text_atomically

REQUIRED = ("tokenizer", "decoder")
OPTIONAL = ("ar", "alignment_lm", "sft")
# sft/'s parts besides its ar/: links to the folder's own (alignment_lm where the folder has one)
SFT_LINKS = ("text_tokenizer.json", "tokenizer", "decoder", "alignment_lm")
INT8_MIN = 65536  # with --int8: the matrices stored as int8 (embeddings, heads, attention and MLP weights)
# The tokenizer stays in fp16 under --int8: its codes are the vocabulary every other part was trained on, and int8
# encoder weights change 1.6% of them (bench/int8_weights.py, docs/unified.md).
INT8_EXEMPT = ("tokenizer",)


@dataclass
class Config:
    run: str = "out/tiny"
    dest: str = "checkpoints/tiny"
    metrics: str = ""  # an eval metrics.json to record in every component's meta.json (default: the decoder's own)
    command: str = "bash runs/cpu_tiny.sh"
    fp16: bool = True
    int8: bool = False  # store the decoder's, AR's and LM's large matrices as int8 rows + fp16 scales (not the tokenizer's)
    ar: str = ""  # the unified model's folder (e.g. out/tiny/ar_sft/model), shipped as ar/
    decoder: str = ""  # a decoder folder to ship instead of RUN/decoder (a decoder trained in another --out)
    alignment_lm: bool = True  # ship the alignment LM too
    sft_ar: str = ""  # the SFT model the policy in `ar` started from, shipped as sft/ar/ (sft/ links the other parts)


def main(cfg: Config) -> dict:
    run, dest = Path(cfg.run), Path(cfg.dest)
    sources = {c: run / c for c in REQUIRED + (("alignment_lm",) if cfg.alignment_lm else ())}
    if cfg.ar:
        sources["ar"] = Path(cfg.ar)
    if cfg.decoder:
        sources["decoder"] = Path(cfg.decoder)
    if cfg.sft_ar:
        sources["sft/ar"] = Path(cfg.sft_ar)
    missing = [str(p) for p in sources.values() if not (p / "model.safetensors").is_file()]
    if missing or not (run / "text_tokenizer.json").is_file():
        raise FileNotFoundError(f"missing {missing or [str(run / 'text_tokenizer.json')]}; train every stage first")
    if cfg.metrics:
        metrics = json.loads(Path(cfg.metrics).read_text())
    else:  # the image side's reconstruction metrics where the decoder shipped carries them: a recipe on an image side
        # published before (IMAGE_SIDE, or runs/cpu_tiny_rl.sh from the shipped SFT model) keeps them on every part
        decoder_meta = sources["decoder"] / "meta.json"
        metrics = json.loads(decoder_meta.read_text()).get("eval_reconstruction") if decoder_meta.is_file() else None
    sizes = {}
    if cfg.sft_ar and (dest / "sft").is_symlink():  # its writes would go through the link, into another folder
        raise ValueError(f"{dest / 'sft'} is a link; --sft-ar writes sft/ in {dest} itself: remove the link first")
    with updating_folder(dest) as new:  # DEST's parts as they are (read from, with --run DEST), the new ones written
        for c, source in sources.items():
            int8 = cfg.int8 and c not in INT8_EXEMPT
            (new / c).parent.mkdir(exist_ok=True)  # sft/ for sft/ar
            export_component(source, new / c, torch.float16 if cfg.fp16 else torch.float32, INT8_MIN if int8 else 0)
            meta_path = new / c / "meta.json"
            meta = json.loads(meta_path.read_text())
            meta["rebuild_command"] = cfg.command
            meta["weights_dtype"] = ("int8 rows + " if int8 else "") + ("float16" if cfg.fp16 else "float32")
            if metrics is not None:
                meta["eval_reconstruction"] = metrics
            write_text_atomically(meta_path, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
            sizes[c] = round((new / c / "model.safetensors").stat().st_size / 2**20, 2)
        copy_file_atomically(run / "text_tokenizer.json", new / "text_tokenizer.json")  # never into the linked file
        if cfg.sft_ar:
            for name in SFT_LINKS:
                link = new / "sft" / name
                if link.is_symlink() or link.is_file():
                    link.unlink()
                elif link.is_dir():
                    shutil.rmtree(link)
                if (new / name).exists():
                    link.symlink_to(Path("..") / name, target_is_directory=name != "text_tokenizer.json")
    # a part an earlier publish left that this one does not ship is read with the new parts (an old AR model beside a
    # new tokenizer): said, not removed (runs/cpu_tiny.sh publishes the image side, then the AR model, into one folder)
    kept = [c for c in OPTIONAL if c not in {k.split("/")[0] for k in sources} and (dest / c).is_dir()]
    if kept:
        print(f"publish: {dest} still holds {', '.join(kept)} from before, not shipped by this publish; remove it if "
              "it does not belong with the parts just written")
    return {"dest": str(dest), "megabytes": sizes, **({"not_shipped_here": kept} if kept else {})}
