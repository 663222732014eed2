"""Decoder training throughput by patch size, and under bf16 autocast (`xomni train decoder --bf16 true`), measured
side by side in one run (ratios matter, not seconds).

    .venv/bin/python bench/decoder_speed.py [--steps 4] [--batch 32]

Prints a table: config, parameters, images/s for a training step (forward + backward + AdamW) at 128x128.
"""

import argparse
import time

import torch

from xomni.decoder.flux import PRESETS, DecoderConfig, SemanticFlux


def measure(cfg: DecoderConfig, batch: int, steps: int, bf16: bool = False) -> tuple[float, float]:
    torch.manual_seed(0)
    net = SemanticFlux(cfg)
    opt = torch.optim.AdamW(net.parameters(), 1e-4)
    grid = 128 // cfg.token_px
    n = (grid * cfg.ratio) ** 2
    x, sem, t = torch.randn(batch, n, cfg.patch_dim), torch.randn(batch, grid, grid, cfg.semantic_dim), torch.rand(batch)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = net(x, t, sem).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i:  # the first step warms up allocators
            times.append(time.perf_counter() - t0)
    return sum(p.numel() for p in net.parameters()) / 1e6, batch / (sum(times) / len(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    tiny = PRESETS["tiny"]
    configs = {
        "tiny (16 px patches, r=1)": (tiny, False),
        "tiny, bf16 autocast": (tiny, True),
        "8 px patches (r=2)": (DecoderConfig(**{**tiny.__dict__, "patch_px": 8, "patch_size": 8}), False),
    }
    rows = [(name, *measure(cfg, args.batch, args.steps, bf16)) for name, (cfg, bf16) in configs.items()]
    base = rows[0][2]
    print(f"{'config':30s} {'params (M)':>10s} {'images/s':>9s} {'ratio':>6s}")
    for name, params, ips in rows:
        print(f"{name:30s} {params:10.2f} {ips:9.1f} {ips / base:6.2f}")


if __name__ == "__main__":
    main()
