"""The report: built from real eval outputs and a training log, and looked at in a headless browser."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from xomni.cli import main as cli
from xomni.eval.ocr import make_ocr_judge
from xomni.stages import eval_suite


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "runA"
    eval_suite.main(eval_suite.Config(suite="synth-geneval", out=str(folder / "geneval"), n=6))
    (folder / "tokenizer_log.jsonl").write_text("".join(json.dumps({"step": i, "loss": 5 / (i + 1)}) + "\n"
                                                        for i in range(1, 30)) + '{"step": 30, "lo')  # cut short
    return folder


def test_report_has_tables_samples_and_curves(run, tmp_path, capsys):
    assert cli(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "synth-geneval" in page and "task/position" in page and "<svg" in page
    assert "a photo of" in page and "objects:" in page  # prompts and the judge's readings under the samples
    shown = [p.name for p in (tmp_path / "rep" / "assets").iterdir()]
    assert len(shown) == 6 and all(f'assets/{n}' in page for n in shown)  # images copied: the page is offline
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| synth-geneval | runA/geneval | 1.0000 |" in md
    assert cli(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r2")]) == 2


def test_runs_of_one_name_keep_their_own_metrics_images_and_curves(run, tmp_path):
    twin = tmp_path / "s24" / "runA"  # a second run folder named like the first
    shutil.copytree(run, twin)
    metrics = json.loads((twin / "geneval" / "metrics.json").read_text())
    (twin / "geneval" / "metrics.json").write_text(json.dumps({**metrics, "score": 0.25}))
    (twin / "tokenizer_log.jsonl").write_text("".join(json.dumps({"step": i, "loss": v}) + "\n"
                                                      for i, v in enumerate([float("nan"), 2.0, 1.0])))
    assert cli(["report", str(run), str(twin), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| synth-geneval | runA/geneval | 1.0000 |" in md  # a row each, labelled by their paths
    assert "| synth-geneval | s24/runA/geneval | 0.2500 |" in md
    assert len(list((tmp_path / "rep" / "assets").iterdir())) == 12
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "s24/runA/tokenizer_log.jsonl" in page and "nan" not in page.split("Training curves")[1]


def test_the_summary_keeps_every_evaluation_of_a_suite_in_one_run():
    from xomni.eval.report import summary_table

    _, md = summary_table({"synth-geneval": {"claims/rl_g/geneval_cfg1": {"score": 0.47},
                                             "claims/rl_g/geneval_cfg3": {"score": 0.52},
                                             "claims/sft/geneval_cfg1": {"score": 0.38}}})
    assert md.splitlines()[2:] == ["| synth-geneval | claims/rl_g/geneval_cfg1 | 0.4700 |",
                                   "| synth-geneval | claims/rl_g/geneval_cfg3 | 0.5200 |",
                                   "| synth-geneval | claims/sft/geneval_cfg1 | 0.3800 |"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is installed by runs/setup.sh")
def test_report_renders_in_a_headless_browser(run, tmp_path):
    assert cli(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,1400", f"--screenshot={shot}", (tmp_path / "rep" / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    pixels = np.asarray(image)
    assert pixels.std() > 10  # not a blank page
    read = make_ocr_judge().read(image.crop((0, 0, 1000, 320))).lower()
    assert "xomni report" in read and "synth-geneval" in read  # the title and the summary table are drawn
