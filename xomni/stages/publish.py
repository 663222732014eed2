"""Stage: copy a finished tiny run into a shippable checkpoint folder (fp16 weights, metrics in meta.json).

    python -m xomni.cli publish --run out/tiny --dest checkpoints/tiny [--metrics out/tiny/eval/metrics.json]

The folder holds text_tokenizer.json, tokenizer/, alignment_lm/ and decoder/; every command defaults to it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from xomni.checkpoint import export_component

COMPONENTS = ("tokenizer", "alignment_lm", "decoder")


@dataclass
class Config:
    run: str = "out/tiny"
    dest: str = "checkpoints/tiny"
    metrics: str = ""  # an eval metrics.json to record in every component's meta.json
    command: str = "bash runs/cpu_tiny.sh"
    fp16: bool = True


def main(cfg: Config) -> dict:
    run, dest = Path(cfg.run), Path(cfg.dest)
    missing = [c for c in COMPONENTS if not (run / c / "model.safetensors").is_file()]
    if missing or not (run / "text_tokenizer.json").is_file():
        raise FileNotFoundError(f"{run} lacks {missing or ['text_tokenizer.json']}; train every stage first")
    dest.mkdir(parents=True, exist_ok=True)
    metrics = json.loads(Path(cfg.metrics).read_text()) if cfg.metrics else None
    sizes = {}
    for c in COMPONENTS:
        export_component(run / c, dest / c, torch.float16 if cfg.fp16 else torch.float32)
        meta_path = dest / c / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["rebuild_command"] = cfg.command
        meta["weights_dtype"] = "float16" if cfg.fp16 else "float32"
        if metrics is not None:
            meta["eval_reconstruction"] = metrics
        meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        sizes[c] = round((dest / c / "model.safetensors").stat().st_size / 2**20, 2)
    shutil.copyfile(run / "text_tokenizer.json", dest / "text_tokenizer.json")
    return {"dest": str(dest), "megabytes": sizes}
