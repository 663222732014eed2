"""Engine speed, side by side in one run: cached batched image sampling against transformers' `generate` on the same
network and tokens, against the compute floor (one teacher-forced forward over the same sequences), CFG against no
CFG, and the vision-only blocks on image positions only against on every position (as the official code runs them).
The engine's row is also set against its decode steps' matrix products alone (the same products on the same weights,
nothing else): what is left of the engine's time is attention, norms, sampling and per-op overhead.

    .venv/bin/python bench/engine_speed.py [--batch 16] [--rows 8 --cols 8] [--repeats 3] [--profile]

On a shared machine, pin it: `OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python bench/engine_speed.py` (and keep
other work off that core) so all rows see the same CPU.

For the transformers comparison the unified model is built without vision-only blocks and with one final norm, so a
`Qwen2ForCausalLM` over the joint vocabulary holds exactly the same weights; both decode greedily (same tokens).
`generate` computes that joint head (text and image rows) at each step where the engine computes the image rows
only: about a tenth more head work on its side, a few percent of its step. The floor is the forward the engine's
work amounts to: the image head at the positions that predict a code (until session 34 it took the joint head at
every position, about 8% more work than the engine's).
Timing: the rows of a group (the engine's five, CFG's two, the vision blocks' two) are timed in rounds, each round
every row once in an order rotated from round to round, and a row's ratio is the median over rounds of its time over
the group's first row's time in the same round. On a shared virtual machine the CPU's speed drifts from second to
second (five runs of the earlier best-of-N script, one after another, put transformers at 1.17-1.73x the engine):
timed side by side, a drift lands on both sides of a ratio. The seconds printed are each row's best round; the
range is the ratios' lowest and highest round. Record results in docs/ with the command.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import Qwen2ForCausalLM

from xomni.engine import DecodeWeights, Engine, Sampling, _linear
from xomni.model.unified import PRESETS, UnifiedConfig, UnifiedModel
from xomni.tokenizer.text import TextTokenizer


def rounds(fns: dict, repeats: int) -> list[tuple[str, float, float, float, float]]:
    """Time each function once a round for `repeats` rounds, the order rotated each round, after one warm-up call
    each (allocator, kernels, caches). -> (name, best seconds, median ratio, lowest, highest ratio) per function,
    its ratio in a round being its time over the first function's in that round."""
    for fn in fns.values():
        fn()
    names, times = list(fns), {name: [] for name in fns}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    ref = times[names[0]]
    out = []
    for name in names:
        ratios = [t / t0 for t, t0 in zip(times[name], ref)]
        out.append((name, min(times[name]), statistics.median(ratios), min(ratios), max(ratios)))
    return out


def hf_twin(model: UnifiedModel) -> Qwen2ForCausalLM:
    """A Qwen2ForCausalLM over the joint vocabulary with the same weights (the model has no vision blocks)."""
    cfg = model.config
    qc = cfg.qwen2_config()
    qc.vocab_size = cfg.vocab_size
    hf = Qwen2ForCausalLM(qc).eval()
    with torch.no_grad():
        hf.model.embed_tokens.weight.copy_(torch.cat([model.embed_tokens.weight, model.mm_embed.weight]))
        hf.lm_head.weight.copy_(torch.cat([model.lm_head.weight, model.mm_head.weight]))
        hf.model.layers.load_state_dict(model.layers.state_dict())
        hf.model.norm.load_state_dict(model.norm.state_dict())
        model.mm_norm.load_state_dict(model.norm.state_dict())
    return hf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7, help="rounds: every row of a group timed once a round")
    ap.add_argument("--profile", action="store_true",
                    help="also print torch.profiler's ops by self time over one of the engine's greedy rollouts")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = TextTokenizer.train_bpe(["a red circle and a blue square on a white background"] * 50, 400)
    prompts = [tok.encode("a red circle and a blue square on a white background")] * args.batch
    n = args.rows * args.cols
    greedy = Sampling(temperature=0, min_p=0)
    rows = []

    # engine vs transformers' generate, no vision blocks (identical networks)
    base = {**PRESETS["tiny"].__dict__, "text_vocab_size": tok.vocab_size, "num_vision_layers": 0}
    flat = UnifiedModel(UnifiedConfig(**base)).eval()
    hf = hf_twin(flat)
    engine = Engine(flat, tok)
    prefix = [p + tok.image_prefix(args.rows, args.cols) for p in prompts]
    ids = torch.tensor(prefix)
    ours = engine.generate_image(prompts, args.rows, args.cols, greedy)

    def run_hf():
        # image mode: text tokens suppressed (a tensorised processor), as the engine masks them
        return hf.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           suppress_tokens=list(range(tok.vocab_size)), pad_token_id=0, eos_token_id=None)

    same = torch.equal(run_hf()[:, ids.shape[1]:], ours.tokens)
    modules = Engine(flat, tok, fast=False)  # the same engine decoding through the model's modules
    same_paths = torch.equal(modules.generate_image(prompts, args.rows, args.cols, greedy).tokens, ours.tokens)
    full = torch.cat([ids, ours.tokens], 1)

    def floor():  # what the engine computes, teacher-forced: the image head at the positions that predict a code
        return flat.mm_head(flat(full, head="hidden")[:, ids.shape[1] - 1 : -1])

    w = DecodeWeights(flat)  # the decode step's matrix products alone, in its order, as many steps as the rollout
    x, u = torch.randn(args.batch, flat.config.hidden_size), torch.randn(args.batch, flat.config.intermediate_size)

    def products():
        for _ in range(n - 1):
            for blk in w.blocks:
                _linear(x, blk["qkv"], blk["qkv_bias"]), _linear(x, blk["o"])
                _linear(x, blk["gate_up"]), _linear(u, blk["down"])
            _linear(x, w.heads["image"])

    if args.profile:  # where the engine's own time goes (the profiler adds its overhead to every op)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            engine.generate_image(prompts, args.rows, args.cols, greedy)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    with torch.no_grad():
        rows += rounds({
            "engine, KV cache (no vision blocks)": lambda: engine.generate_image(prompts, args.rows, args.cols, greedy),
            "its decode steps' matrix products alone": products,
            "engine decoding through the modules (fast=False)":
                lambda: modules.generate_image(prompts, args.rows, args.cols, greedy),
            "transformers generate, same weights": run_hf,
            "one teacher-forced forward (floor)": floor}, args.repeats)

    # the tiny preset itself: CFG cost, vision blocks on image positions vs all
    model = UnifiedModel(UnifiedConfig(**{**base, "num_vision_layers": PRESETS["tiny"].num_vision_layers})).eval()
    engine = Engine(model, tok)
    rows += rounds({
        "tiny preset: sampling, no CFG": lambda: engine.generate_image(prompts, args.rows, args.cols, Sampling()),
        "tiny preset: sampling, CFG 3.0": lambda: engine.generate_image(prompts, args.rows, args.cols, Sampling(cfg=3.0))},
        args.repeats)
    seq = torch.cat([ids, engine.generate_image(prompts, args.rows, args.cols, greedy).tokens], 1)
    with torch.no_grad():
        rows += rounds({"forward, vision blocks on image positions": lambda: model(seq),
                        "forward, vision blocks on all positions (official)": lambda: model(seq, vision_on_all=True)},
                       args.repeats)

    print(f"batch {args.batch}, {args.rows}x{args.cols} image tokens, prompt {ids.shape[1]} tokens; "
          f"greedy tokens identical to transformers: {same}, to the module path: {same_paths}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{args.repeats} rounds; ratio: the median over rounds of the row's time over its group's first row's")
    print("| what | best seconds | ratio | lowest - highest |")
    print("|---|---|---|---|")
    for name, t, r, lo, hi in rows:
        print(f"| {name} | {t:.3f} | {r:.2f} | {lo:.2f} - {hi:.2f} |")


if __name__ == "__main__":
    main()
