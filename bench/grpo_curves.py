"""GRPO runs side by side from their logs: derailed rollouts, KL to the reference, entropy and reward over steps.

    .venv/bin/python bench/grpo_curves.py out/s24/tiny/grpo_s0 out/s26/grpo_s0_b01 [--window 10 --svg FILE]

Reads each run's grpo_log.jsonl (no model is loaded). Prints, per window of `window` steps, each run's mean of the
step records' `derailed` (rollouts of the step whose image head went flat mid-image: `xomni.engine.derailed`),
`kl_full` (KL(reference || policy) over the image head's softmax; logged by runs with `--kl full`), `kl` (the k3
estimate at the sampled codes, whose mean estimates KL(policy || reference)), `entropy` and `reward`, and the
probe's mean reward at the window's last step. `--svg` also draws the derailed rollouts a step (window means), one
line per run.
A log that predates a field shows "-" there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xomni.eval.report import svg_curves

FIELDS = ("derailed", "kl_full", "kl", "entropy", "reward")


def read_log(run: Path) -> tuple[list[dict], dict[int, float]]:
    """A run folder -> its step records (in step order) and {step: probe mean reward}."""
    path = run / "grpo_log.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run}: no grpo_log.jsonl (not a `xomni train grpo` run folder)")
    steps, probes = {}, {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "reward" in record:
            steps[record["step"]] = record  # a resumed run may log a step twice: the last one counts
        if "probe_reward" in record:
            probes[record["step"]] = record["probe_reward"]
    return [steps[s] for s in sorted(steps)], probes


def windows(records: list[dict], field: str, width: int) -> dict[int, float]:
    """{last step of the window: mean of `field`} over full windows of `width` steps; records lacking it are skipped."""
    out: dict[int, float] = {}
    for end in range(width, (records[-1]["step"] if records else 0) + 1, width):
        vals = [r[field] for r in records if end - width < r["step"] <= end and r.get(field) is not None]
        if vals:
            out[end] = sum(vals) / len(vals)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="GRPO run folders")
    ap.add_argument("--window", type=int, default=10, help="steps per row")
    ap.add_argument("--svg", default="",
                    help="also write the derailed rollouts a step (window means) as an SVG plot here")
    args = ap.parse_args()
    if args.window < 1:
        raise SystemExit("--window must be >= 1")
    series = []
    for run in map(Path, args.runs):
        records, probes = read_log(run)
        per = {f: windows(records, f, args.window) for f in FIELDS}
        print(f"\n{run} ({len(records)} steps)\n")
        print("| steps | derailed rollouts a step | KL(ref \\|\\| policy) | k3 | entropy | reward | probe |")
        print("|---|---|---|---|---|---|---|")
        for end in sorted(per["reward"]):
            cells = [f"{per[f][end]:.3f}" if end in per[f] else "-" for f in FIELDS]
            probe = f"{probes[end]:.3f}" if end in probes else "-"
            print(f"| {end - args.window + 1}-{end} | " + " | ".join(cells) + f" | {probe} |")
        if per["derailed"]:
            series.append((run.name, sorted(per["derailed"].items())))
    if args.svg:
        if not series:
            raise SystemExit("no run logged `derailed`: nothing to plot")
        Path(args.svg).write_text(svg_curves(series, width=480, height=220))
        print(f"\nwrote {args.svg}")


if __name__ == "__main__":
    main()
