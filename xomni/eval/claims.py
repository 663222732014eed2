"""The paper's claims about RL (X-Omni Sec. 4, Fig. 2b) as checks over measured scores: pure functions.

`scores` maps a model to {f"{suite}@{cfg}": score} from the held-out suites (`xomni eval SUITE --source model`);
`probe` is a GRPO run's log rows carrying `probe_reward` (the policy's mean reward on the fixed probe prompts) and,
at step 0, `probe_best_of_g` (the starting SFT model's best of G on the same prompts and seeds). Every claim gives
what was measured, the bar and whether it is met; over several RL seeds, deltas are means with their spread.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

# issue 5's bars: RL minus SFT at no CFG, except `cfg_gap` (best CFG scale minus no CFG, after RL) and `vqa_drop`
BARS = {"synth-text-en": 0.15, "synth-text-zh": 0.15, "synth-geneval": 0.10, "cfg_gap": 0.02, "vqa_drop": 0.02}
NO_CFG = 1.0


@dataclass
class Claim:
    claim: str
    measured: str
    bar: str
    met: bool

    def to_dict(self) -> dict:
        return asdict(self)


def key(suite: str, cfg: float = NO_CFG) -> str:
    return f"{suite}@{cfg:g}"


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pm(values: list[float]) -> str:
    m, s = mean_spread(values)
    return f"{m:+.3f}" + (f" ± {s:.3f} (n={len(values)})" if len(values) > 1 else "")


def probe_curve(rows: list[dict]) -> tuple[list[tuple[int, float]], float | None]:
    """A GRPO log -> ([(step, probe mean reward)], the SFT model's best-of-G at step 0 or None), on one set of
    prompts: where the log has each prompt's rewards (`probe_prompt_rewards`), the prompts whose group came back at
    every probe; a probe whose groups all failed is left out. Logs from before those lists: each probe's mean over
    the groups that came back then."""
    probes = [r for r in rows if "probe_reward" in r]
    if probes and all("probe_prompt_rewards" in r for r in probes):
        start_row = next((r for r in probes if r["step"] == 0), None)
        scored = [r for r in probes if r["probe_reward"] is not None]
        keep = [i for i in range(len(probes[0]["probe_prompt_rewards"]))
                if all(r["probe_prompt_rewards"][i] is not None for r in scored)]
        if not keep:  # judges failed on different prompts at different probes: each probe's own groups, as before
            print("warning: no probe prompt's rewards came back at every probe; Fig. 2b compares each probe's own "
                  "prompts (as logs without per-prompt rewards do)")
            return _probe_means(rows)
        curve = [(r["step"], statistics.fmean(r["probe_prompt_rewards"][i] for i in keep)) for r in scored]
        start = (statistics.fmean(start_row["probe_prompt_best"][i] for i in keep)
                 if start_row is not None and start_row["probe_reward"] is not None else None)
        return sorted(curve), start
    return _probe_means(rows)


def _probe_means(rows: list[dict]) -> tuple[list[tuple[int, float]], float | None]:
    curve = [(r["step"], r["probe_reward"]) for r in rows if isinstance(r.get("probe_reward"), (int, float))]
    start = next((r["probe_best_of_g"] for r in rows if r.get("step") == 0 and "probe_best_of_g" in r), None)
    return sorted(curve), start


def expected_best_of(rewards: list[float], k: int) -> float:
    """The expected best of `k` draws, estimated without bias from n >= k draws: the mean, over every k of the n, of
    their maximum (sorted ascending, the i-th of n is that maximum in C(i-1, k-1) of the C(n, k) subsets). With
    n = k it is the plain maximum; with k = 1 the mean. More draws than k give the same expectation with less noise
    than one group of k."""
    n = len(rewards)
    if not 1 <= k <= n:
        raise ValueError(f"best of {k} needs at least {k} rewards and k >= 1, got {n}")
    total = math.comb(n, k)
    return sum(r * (math.comb(i, k - 1) / total) for i, r in enumerate(sorted(rewards)))  # int / int: correctly rounded, never overflows


def overtaking(curve: list[tuple[int, float]], best_of_g: float, within: int = 100) -> tuple[int | None, float]:
    """(first step <= `within` whose probe mean exceeds the SFT best-of-G, or None; least-squares slope of the probe
    means from that step on, per 100 steps: > 0 is "keeps improving")."""
    cross = next((s for s, v in curve if v > best_of_g and s <= within), None)
    if cross is None:
        return None, 0.0
    tail = [(s, v) for s, v in curve if s >= cross]
    if len(tail) < 2:
        return cross, 0.0
    xs, ys = [s for s, _ in tail], [v for _, v in tail]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return cross, 100 * slope


def check(sft: dict[str, float], rl: list[dict[str, float]], probes: list[list[dict]], cfg_scales: list[float]) -> list[Claim]:
    """Issue 5's claims from the SFT model's scores, each RL seed's scores and each seed's GRPO log."""
    if not rl:
        raise ValueError("no RL model to compare with the SFT model")
    out = []
    crossings = []
    for rows in probes:
        curve, start = probe_curve(rows)
        if start is None or not curve:
            raise ValueError("a GRPO log without a scored step-0 probe (the SFT model's best-of-G): run `xomni train "
                             "grpo` with probe_prompts > 0")
        crossings.append((start, *overtaking(curve, start), curve[-1][1]))
    if crossings:  # no GRPO logs given: no Fig. 2b row (never a vacuous "met")
        met = all(c is not None and slope > 0 for _, c, slope, _ in crossings)
        out.append(Claim(
            "Fig. 2b: GRPO's mean probe reward overtakes the SFT model's best-of-G within 100 steps, and keeps improving",
            "; ".join(f"best-of-G {b:.3f}: overtaken at step {c}, then {slope:+.3f} per 100 steps, last {last:.3f}"
                      if c is not None else f"best-of-G {b:.3f}: not overtaken (last {last:.3f})"
                      for b, c, slope, last in crossings),
            "overtaken by step 100 and a rising trend after, every seed", met))
    for suite in ("synth-text-en", "synth-text-zh", "synth-geneval"):
        k = key(suite)
        if k in sft and all(k in r for r in rl):
            deltas = [r[k] - sft[k] for r in rl]
            out.append(Claim(f"{suite} without CFG: RL minus SFT", f"{sft[k]:.3f} -> {_pm(deltas)}",
                             f">= +{BARS[suite]:.2f}", mean_spread(deltas)[0] >= BARS[suite]))
    scales = [c for c in cfg_scales if c != NO_CFG]
    for suite in ("synth-geneval", "synth-text-en", "synth-text-zh"):
        if not scales or not all(key(suite, c) in sft and all(key(suite, c) in r for r in rl) for c in cfg_scales):
            continue
        sft_gap = max(sft[key(suite, c)] for c in cfg_scales) - sft[key(suite)]
        gaps = [max(r[key(suite, c)] for c in cfg_scales) - r[key(suite)] for r in rl]
        out.append(Claim(f"{suite}: best CFG scale minus no CFG ({', '.join(f'{c:g}' for c in cfg_scales)})",
                         f"SFT {sft_gap:+.3f}; RL {_pm(gaps)}", f"RL <= {BARS['cfg_gap']:.2f}",
                         mean_spread(gaps)[0] <= BARS["cfg_gap"]))
    k = key("synth-vqa")
    if k in sft and all(k in r for r in rl):
        deltas = [r[k] - sft[k] for r in rl]
        out.append(Claim("synth-vqa: understanding kept (RL minus SFT)", f"{sft[k]:.3f} -> {_pm(deltas)}",
                         f">= -{BARS['vqa_drop']:.2f}", mean_spread(deltas)[0] >= -BARS["vqa_drop"]))
    return out


def markdown(claims: list[Claim]) -> str:
    lines = ["| claim | measured | bar | met |", "|---|---|---|---|"]
    lines += [f"| {c.claim} | {c.measured} | {c.bar} | {'yes' if c.met else 'no'} |" for c in claims]
    return "\n".join(lines) + "\n"


def derail_markdown(derailed: dict[str, dict[str, float | None]]) -> str:
    """model -> {key(suite, cfg): share of derailed images, None where not counted} -> a table (empty if none)."""
    keys = sorted({k for row in derailed.values() for k, v in row.items() if v is not None})
    if not keys:
        return ""
    lines = ["| derailed images | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, row in derailed.items():
        cells = [f"{row[k]:.3f}" if row.get(k) is not None else "-" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
