"""`xomni eval longtext|oneig|geneval|dpg --images DIR` on small folders laid out as the official scripts expect."""

import json

import pytest
from PIL import Image, ImageDraw

from xomni.checkpoint import read_jsonl
from xomni.cli import main as cli
from xomni.data.world import WorldConfig, font, make_scene, render
from xomni.errors import MissingPart
from xomni.eval import geneval
from xomni.eval.suites import geneval_metadata
from xomni.stages import eval_official


def _text_image(text: str, size=(256, 64)) -> Image.Image:
    im = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(im).text((8, 12), text, font=font(32), fill=(0, 0, 0))
    return im


@pytest.fixture
def bench(tmp_path):
    root = tmp_path / "bench"
    (root / "longtext").mkdir(parents=True)
    rows = [{"prompt_id": 3, "category": "sign", "length": "short", "prompt": "a sign", "text": ["open", "now"]},
            {"prompt_id": 12, "category": "label", "length": "long", "prompt": "a label", "text": ["fresh bread"]}]
    (root / "longtext" / "text_prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "oneig").mkdir()
    (root / "oneig" / "text_content.csv").write_text(',id,prompt_en,text_content\n0,000,"a sign","[\'open now\']"\n'
                                                      '1,001,"a label","[\'fresh bread\']"\n')
    return root


def test_longtext_scores_a_folder_and_keeps_partial_results(tmp_path, bench):
    images = tmp_path / "imgs"
    images.mkdir()
    _text_image("open now").save(images / "3_0.png")
    _text_image("fresh bread").save(images / "12_0.png")
    (images / "12_1.png").write_bytes(b"not a png")
    cfg = eval_official.Config(benchmark="longtext", images=str(images), out=str(tmp_path / "out"), bench=str(bench))
    with pytest.raises(ValueError, match="12_1.png"):
        eval_official.main(cfg)
    kept = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(kept) == 1  # 12_0 was judged before the bad file stopped the run
    (images / "12_1.png").unlink()
    metrics = eval_official.main(cfg)
    assert metrics["score"] == 1.0 and metrics["n"] == 2 and metrics["judge"] == "rapidocr-ppocr"
    assert metrics["suite"] == "longtext-en" and metrics["category/label"] == 1.0
    results = tmp_path / "out" / "results.jsonl"
    results.write_text(results.read_text() + '{"judge": "rapidocr-ppocr", "image": "3_1.png", "pr')  # a kill
    _text_image("closed").save(images / "3_0.png")  # generated again under the same name
    (images / "12_0.png").unlink()  # and an image removed
    metrics = eval_official.main(cfg)
    assert metrics["n"] == 1 and metrics["score"] == 0.0  # 3_0 judged again; 12_0 no longer counts
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert sorted(r["image"] for r in rows) == ["12_0.png", "3_0.png"]  # the stale row replaced, the cut line gone
    results.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "digest"}) + "\n" for r in rows))
    _text_image("open now").save(images / "3_0.png")
    assert eval_official.main(cfg)["score"] == 0.0  # a row from before digests were recorded is taken as it is


def test_longtext_rejects_names_and_ids_it_does_not_know(tmp_path, bench):
    images = tmp_path / "imgs"
    images.mkdir()
    _text_image("open").save(images / "99_0.png")
    cfg = eval_official.Config(benchmark="longtext", images=str(images), out=str(tmp_path / "o"), bench=str(bench))
    with pytest.raises(ValueError, match="prompt id 99"):
        eval_official.main(cfg)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        eval_official.main(eval_official.Config(images=str(tmp_path / "missing"), bench=str(bench)))


def test_oneig_splits_grids_and_skips_black_tiles(tmp_path, bench):
    images = tmp_path / "imgs"
    images.mkdir()
    grid = Image.new("RGB", (512, 128), (0, 0, 0))
    grid.paste(_text_image("open now"), (0, 0))
    grid.save(images / "000.png")  # one sample and a black tile in a 2x1 grid
    cfg = eval_official.Config(benchmark="oneig", images=str(images), out=str(tmp_path / "out"), bench=str(bench),
                               tiles="2,1")
    metrics = eval_official.main(cfg)
    assert metrics["tiles"] == 1 and metrics["skipped_prompts"] == 1  # 001 has no image
    assert metrics["score"] == 1.0 and metrics["ED"] == 0
    with pytest.raises(ValueError, match="made with"):  # other tiles, same --out: not mixed with those results
        eval_official.main(eval_official.Config(**{**cfg.__dict__, "tiles": "1,1"}))
    with pytest.raises(ValueError, match="pic-num"):
        eval_official.main(eval_official.Config(**{**cfg.__dict__, "benchmark": "dpg", "pic_num": 2}))


def test_geneval_layout_with_the_scene_judge(tmp_path):
    world = WorldConfig()
    scene = next(s for i in range(200) if geneval_metadata(s := make_scene(world, "heldout", i), "colors"))
    meta = geneval_metadata(scene, "colors")
    folder = tmp_path / "imgs" / "00000"
    (folder / "samples").mkdir(parents=True)
    (folder / "metadata.jsonl").write_text(json.dumps(meta))
    render(scene).save(folder / "samples" / "0000.png")
    wrong = dict(meta, include=[{**meta["include"][0], "color": "brown" if meta["include"][0]["color"] != "brown" else "red"}])
    (tmp_path / "imgs" / "00001" / "samples").mkdir(parents=True)
    (tmp_path / "imgs" / "00001" / "metadata.jsonl").write_text(json.dumps(wrong))
    render(scene).save(tmp_path / "imgs" / "00001" / "samples" / "0000.png")
    stars = make_scene(world, "heldout", 14)  # two stars the scene judge fits at 0.66 and 0.72, under GenEval's 0.9
    (tmp_path / "imgs" / "00002" / "samples").mkdir(parents=True)
    (tmp_path / "imgs" / "00002" / "metadata.jsonl").write_text(json.dumps(geneval_metadata(stars, "counting")))
    render(stars).save(tmp_path / "imgs" / "00002" / "samples" / "0000.png")
    metrics = eval_official.main(eval_official.Config(benchmark="geneval", images=str(tmp_path / "imgs")))  # scene judge: default
    assert metrics["task/colors"] == 0.5 and metrics["judge"] == "world-scene-judge"
    assert metrics["task/counting"] == 1.0  # judged at the scene judge's thresholds
    rows = [json.loads(x) for x in (tmp_path / "imgs" / "xomni_eval_geneval" / "results.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [True, False, True] and "expected" in rows[1]["reason"]
    assert set(geneval.TAGS) >= {r["tag"] for r in rows}


def test_missing_official_judges_are_clear(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    assert cli(["eval", "geneval", "--images", str(tmp_path / "imgs"), "--judge", "mask2former"]) == 2
    assert "Mask2Former" in capsys.readouterr().err
    assert cli(["eval", "dpg", "--images", str(tmp_path / "imgs"), "--questions", str(tmp_path / "q.csv")]) == 2
    assert "question table" in capsys.readouterr().err
    with pytest.raises(MissingPart, match="weights not found"):
        eval_official.make_text_judge(f"qwen2.5-vl:{tmp_path}", 1)
    with pytest.raises(ValueError, match="unknown judge"):
        eval_official.make_text_judge("easyocr", 1)


def test_dpg_question_table_follows_the_official_loader(tmp_path, monkeypatch):
    path = tmp_path / "dpg_bench.csv"
    path.write_text("item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,"
                    "question_natural_language\n"
                    "a,t,k,1,0,entity,whole,entity - whole (cat),Is there a cat?\n"
                    "a,t,k,2,1,attribute,color,attribute - color (cat; black),Is the cat black?\n"
                    "b,t,k,1,0,entity,whole,entity - whole (dog),Is there a dog?\n")
    table = eval_official.read_dpg_questions(path, skip_first=True)
    assert [q.qid for q in table["a"]] == [2] and table["b"][0].category == "entity - whole"
    full = eval_official.read_dpg_questions(path, skip_first=False)
    assert full["a"][1].parents == (1,) and full["a"][1].l1 == "attribute"

    asked = []

    class Says:  # a VQA judge that says yes and counts its questions
        name = "fake-vqa"

        def answer(self, image, question):
            asked.append(question)
            return "yes"

    import xomni.eval.official_judges as official

    monkeypatch.setattr(official, "load_official_judge", lambda name, path: Says())
    images = tmp_path / "imgs"
    images.mkdir()
    for item in ("a", "b"):
        Image.new("RGB", (64, 64), (255, 255, 255)).save(images / f"{item}.png")
    cfg = eval_official.Config(benchmark="dpg", images=str(images), questions=str(path), judge="qwen2.5-vl:/x",
                               out=str(tmp_path / "out"))
    for _ in range(2):  # item a drops out before it is judged, on every run; b is judged once
        metrics = eval_official.main(cfg)
        assert metrics["skipped"] == 1 and metrics["n"] == 1 and metrics["score"] == 1.0
        assert asked == ["Is there a dog?"] * 4  # b's one question on each of its four tiles


def test_results_append_after_a_cut_line_and_rewrite_only_a_stale_row(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    path = tmp_path / "results.jsonl"
    results = eval_official.Results(path, "judge")
    results.add({"image": "a.png", "score": 1}, a)
    path.write_text(path.read_text() + '{"judge": "judge", "image": "b.pn')  # a kill mid-write
    results = eval_official.Results(path, "judge")
    assert results.pending("b.png", b) and not results.pending("a.png", a)
    results.add({"image": "b.png", "score": 2}, b)  # a new row: appended after whole lines only
    assert [(r["image"], r["score"]) for r in read_jsonl(path)] == [("a.png", 1), ("b.png", 2)]
    a.write_bytes(b"drawn again")
    assert results.pending("a.png", a)
    results.add({"image": "a.png", "score": 3}, a)  # a stale row: replaced, not duplicated
    assert [(r["image"], r["score"]) for r in read_jsonl(path)] == [("b.png", 2), ("a.png", 3)]
