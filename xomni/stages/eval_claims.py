"""Eval: the paper's claims about RL, measured on an SFT model and the GRPO runs started from it.

    python -m xomni.cli eval claims --sft out/tiny/candidate --rl out/tiny/grpo_s0,out/tiny/grpo_s1,out/tiny/grpo_s2 \
        --out out/tiny/claims [--n 100] [--cfg-scales 1,1.5,3] [--min-p 0.03] [--suites synth-geneval]

For the SFT checkpoint and every GRPO run folder (each is a checkpoint folder with the policy in ar/), the generation
suites run at every CFG scale (`xomni eval SUITE --source model`, the same items, seed and sampler for all) and
synth-vqa on the held-out renders; each run's GRPO log gives its probe curve (the policy's mean reward on fixed
prompts against the SFT model's best of G on the same prompts and seeds: Fig. 2b). Evaluations already on disk are
reused (eval_suite keeps images, judgements and scores), so a rerun only scores what is missing.

Writes OUT/claims.md (the table, then the share of derailed images per model, suite and scale, as
`xomni.engine.derailed` counts them), OUT/claims.json (the table, every score and derailed share), OUT/figure2b.svg
(the probe curves of the runs that probed), and each evaluation under OUT/<model>/<suite>_cfg<scale>/. The checks
themselves are xomni/eval/claims.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from xomni.checkpoint import read_jsonl, write_text_atomically
from xomni.engine import Sampling
from xomni.eval import claims as C
from xomni.eval.report import svg_curves
from xomni.stages import eval_suite

GENERATION = ("synth-geneval", "synth-text-en", "synth-text-zh")


@dataclass
class Config:
    sft: str = "out/tiny/candidate"  # the SFT checkpoint the GRPO runs started from
    rl: str = ""  # comma-separated GRPO run folders (one per seed)
    out: str = "out/tiny/claims"
    n: int = 100  # items per suite
    cfg_scales: str = "1,1.5,3"  # CFG scales of the generation suites, comma-separated; must include 1 (no CFG)
    min_p: float = 0.03  # the sampler's min-p for every generation suite (X-Omni's, and GRPO's tiny preset)
    suites: str = ",".join(GENERATION)  # the generation suites to run (a claim on a suite left out is not checked)
    steps: int = 20  # decoder sampling steps
    seed: int = 0


def main(cfg: Config) -> dict:
    runs = [Path(p) for p in cfg.rl.split(",") if p]
    if not runs:
        raise ValueError("--rl names no GRPO run folder")
    for folder in [Path(cfg.sft), *runs]:
        if not (folder / "ar").is_dir():
            raise FileNotFoundError(f"{folder} holds no unified model (ar/)")
    logs = [run / "grpo_log.jsonl" for run in runs]
    missing = [str(p) for p in logs if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no GRPO log in {missing}: --rl takes `xomni train grpo` run folders")
    probes = [read_jsonl(p) for p in logs]  # a killed run's cut last line left out
    for log, rows in zip(logs, probes):  # before any evaluation is spent: Fig. 2b needs every run's probe
        curve, start = C.probe_curve(rows)
        if start is None or not any(s > 0 for s, _ in curve):
            raise ValueError(f"{log} has no scored step-0 probe (the SFT model's best-of-G) or no probe after it: "
                             "claims need GRPO runs with --probe-prompts above 0")
    suites = [s for s in cfg.suites.split(",") if s]
    unknown = sorted(set(suites) - set(GENERATION))
    if unknown or not suites:
        raise ValueError(f"--suites takes some of {', '.join(GENERATION)}; got {cfg.suites!r}")
    try:
        scales = [float(c) for c in cfg.cfg_scales.split(",")]
    except ValueError:
        raise ValueError(f"--cfg-scales takes numbers separated by commas, got {cfg.cfg_scales!r}") from None
    if C.NO_CFG not in scales:
        raise ValueError("--cfg-scales must include 1 (no CFG): every claim compares against it")
    for scale in scales:  # every sampler setting checked before the first evaluation is spent
        Sampling(cfg=scale, min_p=cfg.min_p)
    out = Path(cfg.out)
    names = ["sft"] + [f"rl_{run.name}" for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"--rl folders need distinct names (their evaluations go to OUT/rl_NAME): {cfg.rl}")
    scores: dict[str, dict[str, float]] = {}
    derailed: dict[str, dict[str, float | None]] = {}  # the share of generated images whose sampling derailed
    for name, folder in zip(names, [Path(cfg.sft), *runs]):
        scores[name], derailed[name] = {}, {}
        jobs = [(s, c) for s in suites for c in scales] + [("synth-vqa", C.NO_CFG)]
        for suite, scale in jobs:
            model = suite != "synth-vqa"
            m = eval_suite.main(eval_suite.Config(
                suite=suite, out=str(out / name / (f"{suite}_cfg{scale:g}" if model else suite)), checkpoint=str(folder),
                n=cfg.n, source="model" if model else "renders", steps=cfg.steps, cfg=scale, min_p=cfg.min_p,
                seed=cfg.seed))
            scores[name][C.key(suite, scale)] = m["score"]
            if model:
                derailed[name][C.key(suite, scale)] = m.get("derailed")
    table = C.check(scores["sft"], [scores[n] for n in names[1:]], probes, scales)
    out.mkdir(parents=True, exist_ok=True)
    skipped = [s for s in GENERATION if s not in suites]
    note = f"\nNot measured (left out by --suites): {', '.join(skipped)}.\n" if skipped else ""
    if derail := C.derail_markdown(derailed):
        note += "\n" + derail
    write_text_atomically(out / "claims.md", C.markdown(table) + note)
    record = {"config": asdict(cfg), "claims": [c.to_dict() for c in table], "scores": scores, "derailed": derailed}
    write_text_atomically(out / "claims.json", json.dumps(record, indent=2) + "\n")
    # Figure 2b: every run's probe mean against its SFT best-of-G (each run probed; checked above)
    curves = [(run.name, *C.probe_curve(rows)) for run, rows in zip(runs, probes)]
    last = max(s for _, curve, _ in curves for s, _ in curve)
    series = [(f"GRPO {name}: probe mean", curve) for name, curve, _ in curves]
    series += [(f"SFT best-of-G ({name}'s probe)", [(0, best), (last, best)]) for name, _, best in curves]
    write_text_atomically(out / "figure2b.svg", svg_curves(series, width=480, height=220))
    print(C.markdown(table) + note)
    return {"out": str(out), "met": sum(c.met for c in table), "claims": len(table)}
