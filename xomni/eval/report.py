"""`xomni report RUN_DIR...`: one offline page (index.html, plus report.md) comparing runs side by side.

What it collects from each run folder (searched recursively):
- `metrics.json` of every eval (suites, official benchmarks, reconstruction): one table per suite, runs as columns;
- sample grids: the first items of each suite eval (`manifest.jsonl` + `images/` + `judged.jsonl`) with their
  prompt and what the judge read, every `grid.png` the stages wrote and the last four `*_samples_*.png`;
- curves: every `*_log.jsonl` training log, its numeric series drawn as inline SVG.
Images are copied next to the page, so the folder opens anywhere without a network.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SAMPLES_PER_SUITE = 8
CURVE_KEYS = ("loss", "lm", "dense", "glyph", "vq", "vqa_accuracy", "glyph_accuracy_zh", "glyph_accuracy_en",
              "psnr_heldout", "reward", "kl", "probe_reward", "probe_best_of_g")


@dataclass
class Config:
    runs: str = ""  # comma-separated run folders
    out: str = "out/report"


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a log cut short by a crash keeps its readable lines
    return rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return html.escape(str(v))


def run_labels(runs: list[Path]) -> list[str]:
    """A label per run folder: its name, or, where two runs share a name (out/s22/tiny, out/s24/tiny), each one's path
    below their common folder, so that no run's metrics or images overwrite another's."""
    names = [run.name for run in runs]
    if len(set(names)) == len(names):
        return names
    root = Path(os.path.commonpath([run.resolve() for run in runs]))
    return [str(run.resolve().relative_to(root)) or run.name for run in runs]


def collect_metrics(runs: list[Path], labels: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """suite -> run label -> metrics."""
    out: dict[str, dict[str, dict]] = {}
    for run, name in zip(runs, labels or [run.name for run in runs]):
        for path in sorted(run.rglob("metrics.json")):
            metrics = json.loads(path.read_text(encoding="utf-8"))
            suite = metrics.get("suite") or ("reconstruction" if "ocr_word_accuracy_en" in metrics else path.parent.name)
            label = f"{name}/{path.parent.relative_to(run)}".rstrip("/.")
            out.setdefault(str(suite), {})[label] = metrics
    return out


def _reading(row: dict) -> str:
    if row.get("answer") is not None:
        return f"answer: {row['answer']}"
    parts = []
    if row.get("ocr") is not None:
        parts.append(f"OCR: {row['ocr']}")
    if row.get("objects") is not None:
        parts.append("objects: " + (", ".join(f"{o['color']} {o['shape']}" for o in row["objects"]) or "none"))
    return "; ".join(parts)


def collect_samples(run: Path, assets: Path, label: str | None = None) -> list[dict]:
    """Sample tiles (image, caption) of each suite eval and each grid image of a run; images copied to assets, named
    by the run's label and their path in it (two evals or runs of one name do not overwrite each other's)."""
    label = label or run.name

    def asset(path: Path) -> Path:
        return assets / "_".join((label, *path.relative_to(run).parts)).replace("/", "_")

    groups = []
    for manifest in sorted(run.rglob("manifest.jsonl")):
        folder = manifest.parent
        rows = _read_jsonl(manifest)
        header, items = rows[0], rows[1 : 1 + SAMPLES_PER_SUITE]
        judged = {r["id"]: r for r in _read_jsonl(folder / "judged.jsonl")} if (folder / "judged.jsonl").is_file() else {}
        tiles = []
        for k, item in enumerate(items):
            src = folder / "images" / f"{k:04d}.png"
            if not src.is_file():
                continue
            dst = asset(src)
            shutil.copyfile(src, dst)
            truth = item.get("text") or item.get("answer") or ""
            tiles.append({"image": f"assets/{dst.name}", "prompt": item.get("question") or item["prompt"],
                          "truth": truth if isinstance(truth, str) else " ".join(truth),
                          "reading": _reading(judged.get(item["id"], {}))})
        groups.append({"title": f"{label} / {folder.relative_to(run)} ({header.get('suite')}, {header.get('source')})",
                       "tiles": tiles})
    # every grid.png (a reconstruction's), and a training run's last four sample grids
    for grid in [*sorted(run.rglob("grid.png")), *sorted(run.rglob("*_samples_*.png"))[-4:]]:
        dst = asset(grid)
        shutil.copyfile(grid, dst)
        groups.append({"title": f"{label} / {grid.relative_to(run)}", "grid": f"assets/{dst.name}"})
    return groups


def collect_curves(run: Path, label: str | None = None) -> list[tuple[str, str, list[tuple[float, float]]]]:
    """(log name, key, [(step, value)]) for each numeric series worth drawing; values that are not finite (a
    diverged loss logged as NaN) are left out, so the rest of the curve still draws."""
    curves = []
    for log in sorted(run.rglob("*_log.jsonl")):
        rows = _read_jsonl(log)
        for key in CURVE_KEYS:
            pts = [(r["step"], r[key]) for r in rows
                   if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) and "step" in r]
            if len(pts) >= 2:
                curves.append((f"{label or run.name}/{log.relative_to(run)}", key, pts))
    return curves


COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")


def svg_curve(points: list[tuple[float, float]], width: int = 320, height: int = 140) -> str:
    return svg_curves([("", points)], width, height)


def svg_curves(series: list[tuple[str, list[tuple[float, float]]]], width: int = 320, height: int = 140) -> str:
    """One SVG plot of several (label, [(x, y)]) series on shared axes; labels (when given) form a legend."""
    pts = [p for _, points in series for p in points]
    if not pts:
        raise ValueError("nothing to plot")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 50) / ((x1 - x0) or 1)
    sy = (height - 30) / ((y1 - y0) or 1)
    body = [f'<rect x="40" y="10" width="{width - 50}" height="{height - 30}" fill="#fafafa" stroke="#ccc"/>']
    for i, (label, points) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{40 + (x - x0) * sx:.1f},{height - 20 - (y - y0) * sy:.1f}" for x, y in points)
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        if label:
            body.append(f'<text x="{46}" y="{22 + 12 * i}" font-size="10" fill="{colour}">{html.escape(label)}</text>')
    body.append(f'<text x="2" y="16" font-size="10">{_fmt(y1)}</text><text x="2" y="{height - 20}" '
                f'font-size="10">{_fmt(y0)}</text><text x="40" y="{height - 4}" font-size="10">{_fmt(x0)}</text>'
                f'<text x="{width - 40}" y="{height - 4}" font-size="10">{_fmt(x1)}</text>')
    return f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>'


def summary_table(metrics: dict[str, dict[str, dict]]) -> tuple[str, str]:
    """(html, markdown): each evaluation's headline score, a row per (suite, evaluation folder), grouped by suite (a
    run folder may hold several evaluations of one suite: other CFG scales, other steps, other models)."""
    rows = [(suite, label, m.get("score", m.get("ocr_word_accuracy_en")))
            for suite, by_run in sorted(metrics.items()) for label, m in sorted(by_run.items())]
    cells = [(suite, label, "" if score is None else _fmt(score)) for suite, label, score in rows]
    body = "".join(f"<tr><td>{html.escape(s)}</td><td>{html.escape(label)}</td><td>{c}</td></tr>"
                   for s, label, c in cells)
    md = ["| suite | evaluation | score |", "|---|---|---|"] + [f"| {s} | {label} | {c} |" for s, label, c in cells]
    return f"<table><tr><th>suite</th><th>evaluation</th><th>score</th></tr>{body}</table>", "\n".join(md)


def metric_table(suite: str, by_run: dict[str, dict]) -> tuple[str, str]:
    """(html, markdown) table: a row per metric, a column per run."""
    labels = list(by_run)
    keys: list[str] = []
    for m in by_run.values():
        keys += [k for k in m if k not in keys and k != "suite" and not isinstance(m[k], dict)]  # not `settings`
    head = "".join(f"<th>{html.escape(x)}</th>" for x in labels)
    body = "".join(f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{_fmt(by_run[x].get(k, ''))}</td>" for x in labels)
                   + "</tr>" for k in keys)
    md = [f"| {suite} | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    md += [f"| {k} | " + " | ".join(str(by_run[x].get(k, "")).replace("|", "/") for x in labels) + " |" for k in keys]
    return f"<h3>{html.escape(suite)}</h3><table><tr><th>metric</th>{head}</tr>{body}</table>", "\n".join(md)


STYLE = """body{font-family:sans-serif;margin:24px;color:#111}table{border-collapse:collapse;margin-bottom:16px}
td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:left}th{background:#f3f4f6}
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{width:200px;font-size:11px}.tile img{width:192px;image-rendering:pixelated}
.curves{display:flex;flex-wrap:wrap;gap:12px}.curve{font-size:12px}.grid img{max-width:100%}"""


def main(cfg: Config) -> dict:
    runs = [Path(r) for r in cfg.runs.split(",") if r]
    if not runs:
        raise ValueError("give at least one run folder: xomni report --runs DIR[,DIR...]")
    for run in runs:
        if not run.is_dir():
            raise FileNotFoundError(f"run folder {run} not found")
    out = Path(cfg.out)
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    labels = run_labels(runs)
    metrics = collect_metrics(runs, labels)
    parts = [f"<h1>xomni report</h1><p>runs: {', '.join(html.escape(str(r)) for r in runs)}</p><h2>Metrics</h2>"]
    md = ["# xomni report", "", "runs: " + ", ".join(str(r) for r in runs), "", "## Metrics", ""]
    if not metrics:
        parts.append("<p>no metrics.json found</p>")
    else:
        h, m = summary_table(metrics)
        parts.append(h)
        md += [m, ""]
    for suite, by_run in sorted(metrics.items()):
        h, m = metric_table(suite, by_run)
        parts.append(h)
        md += [m, ""]
    parts.append("<h2>Samples</h2>")
    md += ["## Samples", ""]
    for run, label in zip(runs, labels):
        for group in collect_samples(run, assets, label):
            parts.append(f"<h3>{html.escape(group['title'])}</h3>")
            md.append(f"### {group['title']}")
            if "grid" in group:
                parts.append(f'<div class="grid"><img src="{group["grid"]}"></div>')
                md.append(f"![grid]({group['grid']})")
                continue
            parts.append('<div class="tiles">' + "".join(
                f'<div class="tile"><img src="{t["image"]}"><div><b>{html.escape(t["prompt"])}</b></div>'
                f'<div>truth: {html.escape(t["truth"])}</div><div>{html.escape(t["reading"])}</div></div>'
                for t in group["tiles"]) + "</div>")
            md += [f"![{t['prompt']}]({t['image']}) {t['reading']}" for t in group["tiles"]]
            md.append("")
    curves = [c for run, label in zip(runs, labels) for c in collect_curves(run, label)]
    parts.append("<h2>Training curves</h2>")
    if curves:
        parts.append('<div class="curves">' + "".join(
            f'<div class="curve"><div>{html.escape(name)}: {key}</div>{svg_curve(pts)}</div>' for name, key, pts in curves)
            + "</div>")
    else:
        parts.append("<p>no training logs</p>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>xomni report</title><style>{STYLE}</style></head>" \
           f"<body>{''.join(parts)}</body></html>"
    (out / "index.html").write_text(page, encoding="utf-8")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return {"html": str(out / "index.html"), "markdown": str(out / "report.md"), "suites": sorted(metrics),
            "curves": len(curves)}
