"""Stage: train the diffusion decoder to reconstruct images from frozen SigLIP-VQ tokens, then freeze it.

    python -m xomni.cli train decoder --preset tiny --tokenizer out/tiny/tokenizer \
        --shards out/tiny/shards/train_128x128,out/tiny/shards/train-dense_128x128

Objective: rectified-flow velocity regression (xomni/decoder/sampling.py) on clean patches, conditioned on the
tokenizer's semantic embeddings of the image's own codes (read from token shards; the encoder never runs here).
Several shard folders (comma-separated, one token grid size) are shuffled together once, with a fixed seed.
The codes are frozen; only the decoder trains, its new semantic map starting at zero as X-Omni's does.
`cond_drop` > 0 replaces a sample's semantic embeddings by zeros so decoder-side guidance becomes possible.
With a `patch_prior` (tiny), the prior MLP also regresses the clean patches directly (`prior_weight`, its own
`prior_lr`): alone it is a per-token regression onto E[patch | embedding], while inside the flow loss its gradient
is weighted 1/t^2 toward the nearly clean inputs, where the transformer can copy the image and needs no prior.
`--prior-flow-grad false` stops the flow loss's gradient at the prior, so that it learns its regression only.
`--prior-first N` spends the first N steps on the prior's regression alone (a fraction of a full step each), so the
transformer starts from a prior that already draws E[patch | embedding] and learns what the prior cannot.
`--init DIR` starts a fresh run from a trained decoder's weights (a fine-tune; the preset must match).
`--flux DIR` (paper scale: `--preset paper`) starts the transformer from a local FLUX.1 folder (its transformer/)
and makes its VAE (vae/) the codec the decoder reconstructs in, recorded in the saved decoder's config.
`--bf16 true` (or auto: where the device computes bf16 natively) autocasts the training forward to bfloat16 (on this
project's 2-core CPU with native bf16, 1.38x the images a second of float32, bench/decoder_speed.py; not the tiny
recipe's default until a whole run shows the reconstructions hold).

Outputs in --out: `decoder/` (component checkpoint), `decoder_state.pt` (resume), `decoder_log.jsonl`,
`decoder_samples_STEP.png` (held-out originals over reconstructions).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from xomni.checkpoint import load_component, load_train_state, open_run_log, save_component, save_train_state
from xomni.data.batches import pixels_of, scene_batch
from xomni.data.world import WorldConfig, make_scene, render
from xomni.decoder.flux import PRESETS, DecoderConfig, SemanticFlux
from xomni.decoder.sampling import flow_matching_loss
from xomni.devices import resolve_device
from xomni.errors import check_at_least
from xomni.pipeline import ImagePipeline, to_image
from xomni.precision import autocast, check_bf16, resolve_bf16
from xomni.schedule import check_resumed_schedule, warmup_cosine
from xomni.stages.tokenize import load_shards, shard_world
from xomni.stages.train_tokenizer import load_tokenizer


@dataclass
class Config:
    preset: str = "tiny"
    tokenizer: str = "out/tiny/tokenizer"
    shards: str = "out/tiny/shards/train_128x128,out/tiny/shards/train-dense_128x128"  # comma-separated folders
    out: str = "out/tiny"
    steps: int = 3500
    batch_size: int = 32
    lr: float = 3e-4
    prior_lr: float = 1e-3  # the patch prior's peak learning rate (same schedule)
    prior_weight: float = 1.0  # weight of the prior's own clean-patch regression; 0: only the flow loss trains it
    prior_flow_grad: bool = True  # false: the prior learns from its own regression only, the flow loss trains the rest
    prior_first: int = 0  # first steps: the patch prior alone, by its regression (no transformer pass, cheap)
    init: str = ""  # a decoder checkpoint to start from (weights only: fresh optimiser and schedule); fresh runs only
    flux: str = ""  # a local FLUX.1 folder (transformer/, vae/): the transformer starts from it, its VAE is the codec
    warmup: int = 100
    weight_decay: float = 0.0
    cond_drop: float = 0.0
    bf16: str = "false"  # autocast the training forward (prior, transformer, losses) to bfloat16: true, false, auto
    device: str = "auto"  # auto (a GPU when one is visible, else the CPU), cpu or cuda (xomni/devices.py)
    save_every: int = 100
    eval_every: int = 700
    sample_steps: int = 20
    seed: int = 0
    resume: bool = True


def lr_at(step: int, cfg: Config, peak: float | None = None, start: int = 0) -> float:
    """Linear warm-up to `peak` (default cfg.lr), then cosine down to 5% of it by cfg.steps; the schedule of a
    parameter group that starts training at step `start` (the transformer after `prior_first`) begins there."""
    return warmup_cosine(max(0, step - start), cfg.steps - start, cfg.warmup, cfg.lr if peak is None else peak, 0.05)


def group_schedules(cfg: Config) -> list[tuple[float, int]]:
    """Per parameter group (the transformer's, the patch prior's): its peak rate and the step it starts at."""
    return [(cfg.lr, cfg.prior_first), (cfg.prior_lr, 0)]


def group_rates(cfg: Config):
    """(step, steps) -> both parameter groups' learning rates in a run of `steps`, each from the step it starts
    training at (before it, 0: the transformer before `prior_first`, where the flow loss does not train it)."""
    return lambda k, n: tuple(lr_at(k, replace(cfg, steps=n), peak, start) if k >= start else 0.0
                              for peak, start in group_schedules(cfg))


@torch.no_grad()
def sample_grid(pipe: ImagePipeline, n: int, steps: int, path: Path) -> float:
    """Held-out originals (top) over reconstructions (bottom); returns their PSNR in dB."""
    was_training = pipe.decoder.training
    pipe.decoder.eval()
    _, pixels = scene_batch(WorldConfig(), "heldout", range(n))
    recon = pipe.decode(pipe.encode(pixels), steps=steps, generator=torch.Generator().manual_seed(0)).cpu()
    mse = (recon - pixels).pow(2).mean().item()
    H, W = pixels.shape[-2:]
    grid = Image.new("RGB", (W * n, H * 2))
    for i in range(n):
        grid.paste(to_image(pixels[i]), (W * i, 0))
        grid.paste(to_image(recon[i]), (W * i, H))
    grid.save(path)
    pipe.decoder.train(was_training)
    return 10 * math.log10(1 / max(mse, 1e-10))


def render_rows(sources: list[tuple[str, WorldConfig]], source_of: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(B,) source ids and scene indices -> (B, 3, H, W) pixels, re-rendered from the world in row order."""
    scenes = [make_scene(sources[s][1], sources[s][0], i) for s, i in zip(source_of.tolist(), indices.tolist())]
    return pixels_of([render(scene) for scene in scenes])


def main(cfg: Config) -> dict:
    check_bf16(cfg.bf16)
    check_at_least(cfg, 1, "steps", "batch_size", "save_every", "eval_every", "sample_steps")
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    state_path = out / "decoder_state.pt"
    state = load_train_state(state_path, cfg, ("sample_steps",), resume=cfg.resume)
    if state is not None:
        check_resumed_schedule(group_rates(cfg), state.get("config", {}).get("steps"), cfg.steps, state["step"])

    vq = load_tokenizer(cfg.tokenizer)
    sources, indices, codes, source_of = [], [], [], []
    for i, folder in enumerate(cfg.shards.split(",")):
        idx, c = load_shards(folder, cfg.tokenizer, split="train")
        sources.append(shard_world(folder))
        indices.append(idx), codes.append(c), source_of.append(torch.full_like(idx, i))
        print(f"{len(idx)} tokenized {sources[-1][0]} scenes {tuple(c.shape[1:])} from {folder}")
    if len({c.shape[1:] for c in codes}) != 1:
        raise ValueError(f"shard folders hold different token grids: {[tuple(c.shape[1:]) for c in codes]}")
    indices, codes, source_of = torch.cat(indices), torch.cat(codes), torch.cat(source_of)
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(cfg.seed))  # data order, fixed

    dec_config: DecoderConfig = PRESETS[cfg.preset]
    if dec_config.semantic_dim != vq.config.adapter_dim:
        raise ValueError(f"decoder preset expects {dec_config.semantic_dim}-d embeddings, tokenizer gives {vq.config.adapter_dim}")
    if cfg.flux:  # paper scale: X-Omni's decoder is FLUX.1-dev with a new zero-initialised semantic map
        if cfg.init:
            raise ValueError("--flux and --init both give the starting weights: choose one")
        vae = Path(cfg.flux) / "vae"
        if not vae.is_dir():
            raise FileNotFoundError(f"--flux {cfg.flux} has no vae/ folder (FLUX.1's layout: transformer/, vae/)")
        dec_config = replace(dec_config, vae_path=str(vae.resolve()))  # saved in the decoder's config: its codec
        net = SemanticFlux.from_flux(dec_config, cfg.flux)
    else:
        net = SemanticFlux(dec_config)
    bf16 = resolve_bf16(cfg.bf16, device)
    cfg = replace(cfg, bf16=str(bf16).lower(), device=str(device))  # the meta records what ran, not "auto"
    net.to(device), vq.to(device)  # before the optimiser and its saved state, which follow the parameters
    prior = list(net.prior.parameters()) if net.prior is not None else []
    rest = [p for n, p in net.named_parameters() if not n.startswith("prior.")]
    groups = [{"params": rest}] + ([{"params": prior}] if prior else [])
    schedules = group_schedules(cfg)  # from cfg, also on resume
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    step = 0
    if state is not None:
        net.load_state_dict(state["net"]), opt.load_state_dict(state["opt"])
        step = state["step"]
        print(f"resumed from {state_path} at step {step}")
    elif cfg.init:
        source = load_component(cfg.init, DecoderConfig, SemanticFlux)
        if source.config != dec_config:
            raise ValueError(f"--init {cfg.init} is a different decoder than preset {cfg.preset!r}: "
                             f"{source.config} vs {dec_config}")
        net.load_state_dict(source.state_dict())
        print(f"starting from the weights of {cfg.init}")
    print(f"decoder {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M params")
    pipe = ImagePipeline(vq, net, cfg.preset).to(device)  # and the codec (FLUX's VAE at paper scale)
    if not cfg.prior_flow_grad and (net.prior is None or cfg.prior_weight <= 0):
        raise ValueError("prior_flow_grad=false needs a patch prior and prior_weight > 0, or nothing would train it")
    if cfg.prior_first and (net.prior is None or cfg.prior_weight <= 0):
        raise ValueError("prior_first needs a patch prior and prior_weight > 0")
    net.detach_prior = not cfg.prior_flow_grad

    metrics: dict = {}

    def checkpoint() -> None:
        meta = {"stage": "train_decoder", "step": step, "metrics": metrics, "config": asdict(cfg)}
        save_component(out / "decoder", dec_config, net, meta)
        save_train_state(state_path, {"net": net.state_dict(), "opt": opt.state_dict(), "step": step}, cfg)

    log = open_run_log(out / "decoder_log.jsonl", state_path, state)
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="decoder", dynamic_ncols=True)
    net.train()
    while step < cfg.steps:
        rows = order[torch.arange(step * cfg.batch_size, (step + 1) * cfg.batch_size) % len(order)]  # by step
        pixels = render_rows(sources, source_of[rows], indices[rows]).to(device)
        with torch.no_grad():
            semantic = vq.embed_codes(codes[rows].to(device))  # B h w Ds
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        if cfg.cond_drop > 0:
            keep = (torch.rand(len(rows), generator=gen) >= cfg.cond_drop).float().to(device)
            semantic = semantic * keep[:, None, None, None]
        x0 = pipe.codec.to_patches(pixels)  # B N P
        for group, (peak, start) in zip(opt.param_groups, schedules):
            group["lr"] = lr_at(step, cfg, peak, start)
        with autocast(x0.device, bf16):
            prior = net.prior_patches(semantic) if net.prior is not None else None  # once, for both losses
            losses, loss = {}, 0.0
            if step >= cfg.prior_first:
                flow = flow_matching_loss(net, x0, semantic, gen, prior)
                losses["flow"], loss = flow.item(), flow
            if prior is not None and cfg.prior_weight > 0:
                prior_loss = F.mse_loss(prior.float(), x0)
                losses["prior"] = prior_loss.item()
                loss = loss + cfg.prior_weight * prior_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1

        record = {"step": step, "loss": loss.item(), **losses, "lr": opt.param_groups[0]["lr"],
                  "elapsed_s": round(time.time() - t0, 1)}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = {"psnr_heldout": sample_grid(pipe, 8, cfg.sample_steps, out / f"decoder_samples_{step:06d}.png")}
            record.update(metrics)
            tqdm.write(json.dumps(record))
        log.write(json.dumps(record) + "\n")
        log.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            checkpoint()
    bar.close()
    log.close()
    return metrics
