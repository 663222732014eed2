"""Stage: run the frozen SigLIP-VQ once over a slice of the world and store the codes in shards.

    python -m xomni.cli tokenize --tokenizer checkpoints/tiny/tokenizer --split train --n 32768 --out out/tiny/shards
    python -m xomni.cli tokenize ... --dense-text true      # the text-dense training scenes, in their own folder

Later stages (decoder, AR model) read codes from here and never run the encoder, as LlamaGen extracts its codes
once. A shard is a safetensors file with `indices` (N,) scene indices and `codes` (N, h, w) int16, plus metadata
(split, image size, tokenizer path and a digest of its weights). Scenes are deterministic from (split, index,
size), so pixels and text are re-derived from the world on demand. A shard already written for the same world
version, scenes and tokenizer weights is skipped, so an interrupted run resumes; one written otherwise (another
tokenizer at the same path, another --start or --shard-size) is written again, and shards beyond --n are removed,
since later stages read every shard in the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from xomni.checkpoint import file_digest, write_text_atomically
from xomni.data.batches import scene_batch
from xomni.data.world import SPLIT_VERSION, WorldConfig, make_scene
from xomni.errors import check_at_least
from xomni.stages.train_tokenizer import load_tokenizer


@dataclass
class Config:
    tokenizer: str = "checkpoints/tiny/tokenizer"
    out: str = "out/tiny/shards"
    split: str = "train"
    dense_text: bool = False  # WorldConfig.dense_text scenes (training split only)
    n: int = 32768
    start: int = 0
    height: int = 128
    width: int = 128
    shard_size: int = 4096
    batch_size: int = 64


def shard_dir(out: str | Path, split: str, height: int, width: int, dense_text: bool = False) -> Path:
    return Path(out) / f"{split}{'-dense' if dense_text else ''}_{height}x{width}"


def shard_world(folder: str | Path) -> tuple[str, WorldConfig]:
    """(split, world) a shard folder was tokenized from, read back from its name (see `shard_dir`)."""
    name, size = Path(folder).name.rsplit("_", 1)
    split, dense = name.removesuffix("-dense"), name.endswith("-dense")
    h, w = (int(x) for x in size.split("x"))
    return split, WorldConfig(width=w, height=h, dense_text=dense)


def main(cfg: Config) -> Path:
    check_at_least(cfg, 1, "n", "shard_size", "batch_size")
    vq = load_tokenizer(cfg.tokenizer)
    digest = tokenizer_digest(cfg.tokenizer)
    world = WorldConfig(width=cfg.width, height=cfg.height, dense_text=cfg.dense_text)
    make_scene(world, cfg.split, cfg.start)  # the split, size and kind checked before a folder is made
    folder = shard_dir(cfg.out, cfg.split, cfg.height, cfg.width, cfg.dense_text)
    folder.mkdir(parents=True, exist_ok=True)
    n_shards = (cfg.n + cfg.shard_size - 1) // cfg.shard_size
    for s in tqdm(range(n_shards), desc=f"tokenize {cfg.split} {cfg.height}x{cfg.width}", dynamic_ncols=True):
        path = folder / f"shard_{s:05d}.safetensors"
        lo = cfg.start + s * cfg.shard_size
        hi = min(cfg.start + cfg.n, lo + cfg.shard_size)
        want = {"split_version": SPLIT_VERSION, "tokenizer_digest": digest, "first": str(lo), "stop": str(hi)}
        if path.is_file() and all(shard_meta(path).get(k) == v for k, v in want.items()):
            continue  # done
        codes = []
        for b in range(lo, hi, cfg.batch_size):
            _, pixels = scene_batch(world, cfg.split, range(b, min(hi, b + cfg.batch_size)))
            codes.append(vq.encode(pixels).to(torch.int16))
        tmp = path.with_suffix(".tmp")
        meta = {"split": cfg.split, "height": str(cfg.height), "width": str(cfg.width),
                "dense_text": str(cfg.dense_text), "tokenizer": str(cfg.tokenizer), **want}
        save_file({"indices": torch.arange(lo, hi), "codes": torch.cat(codes)}, str(tmp), metadata=meta)
        tmp.replace(path)
    for extra in sorted(folder.glob("shard_*.safetensors"))[n_shards:]:  # from an earlier, larger --n
        extra.unlink()
    info = {"n": cfg.n, "start": cfg.start, "dense_text": cfg.dense_text, "tokenizer": cfg.tokenizer}
    write_text_atomically(folder / "info.json", json.dumps(info) + "\n")
    return folder


def tokenizer_digest(path: str | Path) -> str:
    """A short digest of a tokenizer's weights: which tokenizer wrote a shard, whatever its folder is called."""
    return file_digest(Path(path) / "model.safetensors")


def shard_meta(path: Path) -> dict:
    """A shard's metadata (split, world version, scenes, tokenizer)."""
    with safe_open(str(path), "pt") as h:
        return h.metadata() or {}


def load_shards(folder: str | Path, tokenizer: str | Path | None = None,
                split: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All shards of a folder -> (indices (N,), codes (N, h, w) long). With `tokenizer`, every shard must have been
    written by it (the digest of its weights: codes of another codebook would train silently); with `split`, every
    shard must hold that split's scenes (a training stage on held-out shards would train on the suites' scenes)."""
    files = sorted(Path(folder).glob("shard_*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no token shards in {folder}; run `xomni tokenize` first")
    digest = tokenizer_digest(tokenizer) if tokenizer is not None else None
    try:  # the stages re-render each scene from the world the folder's name says (`shard_world`)
        named = shard_world(folder)
        named = {"split": named[0], "height": str(named[1].height), "width": str(named[1].width),
                 "dense_text": str(named[1].dense_text)}
    except ValueError:  # not a `shard_dir` name: nothing to hold the shards to
        named = {}
    for f in files:  # a shard holds scene indices: under another split version they name other scenes
        meta = shard_meta(f)
        if wrong := [f"{k} {meta[k]} (the folder's name says {v})" for k, v in named.items() if k in meta and meta[k] != v]:
            raise ValueError(f"{f} holds scenes of another world than its folder's name says: {', '.join(wrong)}; the "
                             "stages would pair its codes with other scenes. Tokenize into the folder `xomni tokenize` "
                             "names, or rename the folder back")
        if (version := meta.get("split_version")) != SPLIT_VERSION:
            raise ValueError(f"{f} was tokenized from world split {version}, this xomni renders {SPLIT_VERSION}: its "
                             "indices name other scenes; run `xomni tokenize` again (it rewrites such shards)")
        if split is not None and meta.get("split") != split:
            raise ValueError(f"{f} holds {meta.get('split')!r} scenes; this stage trains on the {split!r} split only")
        if digest is not None and meta.get("tokenizer_digest") not in (None, digest):
            raise ValueError(f"{f} was written by another tokenizer than {tokenizer} (weights' digest "
                             f"{meta['tokenizer_digest']}, not {digest}): its codes index another codebook; run "
                             f"`xomni tokenize --tokenizer {tokenizer}` into another folder and train on that")
    parts = [load_file(str(f)) for f in files]
    return torch.cat([p["indices"] for p in parts]), torch.cat([p["codes"] for p in parts]).long()


def load_shard_folders(folders: str, seed: int, tokenizer: str | Path | None = None,
                       split: str | None = "train") -> tuple[list, list[tuple[int, int]], list[int]]:
    """Comma-separated shard folders -> sources [(split, world, indices, codes)], rows [(source, j)] and one fixed
    shuffled order over the rows: the seed fixes it, so a resumed stage reads the same samples in the same order.
    `tokenizer` and `split` are held to every shard as in `load_shards` (training stages read the train split)."""
    sources, rows = [], []
    for i, folder in enumerate(folders.split(",")):
        idx, codes = load_shards(folder, tokenizer, split)
        sources.append((*shard_world(folder), idx, codes))
        rows += [(i, j) for j in range(len(idx))]
    grids = {tuple(src[3].shape[1:]) for src in sources}
    if len(grids) != 1:
        raise ValueError(f"shard folders hold different token grids: {sorted(grids)}")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    return sources, rows, order
