"""A held-out suite on a checkpoint's generated images sampled at another temperature (`xomni eval` samples at 1):
does sharpening the model's per-code distributions alone change what it draws?

    .venv/bin/python bench/eval_temperature.py --checkpoint out/recipe34/candidate --temperature 0.5 \
        --out out/s38/sft_t0.5_geneval [--suite synth-geneval] [--n 48] [--steps 8]

Runs `xomni.stages.eval_suite` as `xomni eval SUITE --source model` does (min-p 0.03, no CFG, seed 0), with the
sampler's temperature set; n 48 and 8 decoder steps are GRPO's in-run evaluation (`--eval-every`). Read the folder
with bench/objects_found.py. The folder's manifest does not record the temperature (its header is `xomni eval`'s,
which would take the images for temperature 1's), so the script keeps it in OUT/temperature.json and refuses a folder
that holds another temperature's images, or `xomni eval`'s.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from xomni.engine import Sampling
from xomni.stages import eval_suite


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--temperature", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--suite", default="synth-geneval")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--steps", type=int, default=8, help="decoder sampling steps")
    args = ap.parse_args()
    Sampling(temperature=args.temperature)  # a bad temperature fails here, before anything is written
    out, mark = Path(args.out), Path(args.out) / "temperature.json"
    if out.exists() and any(out.iterdir()):
        held = json.loads(mark.read_text())["temperature"] if mark.is_file() else None
        if held != args.temperature:
            raise SystemExit(f"{out} holds images sampled at temperature {held if held is not None else '1 (xomni eval)'}"
                             f", not {args.temperature}: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps({"temperature": args.temperature}) + "\n")
    eval_suite.Sampling = functools.partial(Sampling, temperature=args.temperature)  # the stage builds its sampler
    eval_suite.main(eval_suite.Config(suite=args.suite, source="model", checkpoint=args.checkpoint, n=args.n,
                                      steps=args.steps, out=args.out))


if __name__ == "__main__":
    main()
